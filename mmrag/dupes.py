"""Near-duplicates in one space: a range search over the space's vectors, then connected components.

As clip-retrieval's dedup does it: every pair of items whose cosine reaches the threshold is an
edge, and each connected component of two or more items is a group. The search is exact (a flat
inner-product index over the stored vectors, searched in blocks), so a group never depends on
how an approximate index happened to be trained; its cost grows with n^2, seconds at 50k items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmrag.storage.collection import Collection

from .errors import QueryError

# Cosine at or above which two items are near-duplicates, per space (docs/quality.md, "Near-duplicates"):
# the best F1 among thresholds with precision >= 0.9 on planted copies, ties to the higher one.
# code 0.85 and text 0.90: all-MiniLM-L6-v2 on CoSQA functions copied with renamed variables and
# docs paragraphs copied with light edits. image 0.95: no trained CLIP weights were at hand to
# measure with, so it is a prior above the cosine of distinct photos, not a measured choice.
DEFAULT_THRESHOLDS: dict[str, float] = {"image": 0.95, "code": 0.85, "text": 0.90}
SPACE_OF = {"image": "image", "code": "code", "text": "text"}  # -m modality -> the space searched
BLOCK = 2048  # query rows per range search: bounds the result buffers, not the answer
MAX_ITEMS = 200_000  # exact all-pairs search past this would take hours; say so instead


def empty_space_note(modality: str, sizes: dict[str, int], pictures: int) -> str | None:
    """Why a space has nothing to compare, and which spaces do; None when it has two items or more.

    `sizes` maps space -> vectors held, `pictures` counts image items (indexed by caption when the
    models have no image encoder). The CLI prints this as it is, the UI as a sentence.
    """
    space = SPACE_OF[modality]
    n = sizes.get(space, 0)
    if n > 1:
        return None
    if modality == "image" and pictures and not n:
        why = (
            f"the image space is empty: the collection's pictures ({pictures}) are indexed by caption only "
            "(its models have no image encoder), so they cannot be compared as pictures"
        )
    elif n == 1:
        why = f"the {space} space holds one item: nothing to compare it with"
    else:
        why = f"the {space} space is empty: this collection has no {modality} items"
    full = [f"{m} ({sizes[SPACE_OF[m]]})" for m in SPACE_OF if sizes.get(SPACE_OF[m], 0) > 1]
    return why + (f"; spaces with items: {', '.join(full)}" if full else "; no space has two items yet")


@dataclass(frozen=True)
class DupeMember:
    id: int
    key: str
    source: str
    similarity: float  # its highest cosine to another member of the group


@dataclass(frozen=True)
class DupeGroup:
    space: str
    similarity: float  # the weakest link that holds the group together (its lowest edge kept)
    members: tuple[DupeMember, ...]

    def to_dict(self) -> dict:
        return {
            "space": self.space,
            "similarity": self.similarity,
            "members": [m.__dict__ for m in self.members],
        }


def find_dupes(
    coll: Collection,
    modalities: Sequence[str] | None = None,
    threshold: float | None = None,
    limit: int | None = None,
) -> list[DupeGroup]:
    """Groups of near-duplicates per modality's space, largest and tightest first."""
    wanted = list(modalities or SPACE_OF)
    bad = [m for m in wanted if m not in SPACE_OF]
    if bad:
        raise QueryError(f"Unknown modality {bad} for duplicates; valid: {list(SPACE_OF)}")
    if threshold is not None and not 0 < threshold <= 1:
        raise QueryError(f"Duplicate threshold must be in (0, 1], got {threshold}")
    groups: list[DupeGroup] = []
    for modality in wanted:
        space = SPACE_OF[modality]
        if space not in coll.spaces():
            continue
        thr = DEFAULT_THRESHOLDS[space] if threshold is None else threshold
        groups += _space_groups(coll, space, thr)
    groups.sort(key=lambda g: (-len(g.members), -g.similarity, g.members[0].id))
    return groups[:limit] if limit else groups


def _space_groups(coll: Collection, space: str, threshold: float) -> list[DupeGroup]:
    ids, vecs = coll.store.vectors(space, None, coll.manifest.dims[space])
    if len(ids) > MAX_ITEMS:
        raise QueryError(
            f"{len(ids)} items in the {space!r} space: exact duplicate search is capped at {MAX_ITEMS}"
        )
    if len(ids) < 2:
        return []
    edges = similar_pairs(vecs, threshold)
    if not len(edges[0]):
        return []
    comps = components(len(ids), edges[0], edges[1])
    best = np.full(len(ids), -np.inf, np.float32)
    np.maximum.at(best, edges[0], edges[2])
    np.maximum.at(best, edges[1], edges[2])
    weakest: dict[int, float] = {}
    for a, sim in zip(edges[0].tolist(), edges[2].tolist()):
        root = int(comps[a])
        weakest[root] = min(weakest.get(root, np.inf), sim)
    members: dict[int, list[int]] = {}
    for row in np.unique(np.concatenate(edges[:2])).tolist():
        members.setdefault(int(comps[row]), []).append(row)
    meta = coll.store.fetch_items([int(ids[r]) for rows in members.values() for r in rows])
    out = []
    for root, rows in members.items():
        group = []
        for r in sorted(rows, key=lambda r: int(ids[r])):
            m = meta.get(int(ids[r]))
            if m is None:  # a vector whose item is gone
                continue
            source = m["key"] if m["source"].endswith(".jsonl") else m["source"]
            group.append(DupeMember(int(ids[r]), m["key"], source, float(best[r])))
        if len(group) >= 2:
            out.append(DupeGroup(space, float(weakest[root]), tuple(group)))
    return out


def similar_pairs(vecs: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows a, rows b, cosine) for every pair a < b of unit vectors with cosine >= threshold."""
    import faiss

    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    index = faiss.IndexFlatIP(vecs.shape[1])
    index.add(vecs)
    a_parts, b_parts, s_parts = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
    # range_search keeps scores > radius; nudged down so a pair exactly at the threshold counts
    radius = float(np.nextafter(np.float32(threshold), np.float32(-1)))
    for start in range(0, len(vecs), BLOCK):
        lims, sims, found = index.range_search(vecs[start : start + BLOCK], radius)
        rows = start + np.repeat(np.arange(len(lims) - 1), np.diff(lims.astype(np.int64)))
        keep = found > rows  # each pair once, and never an item with itself
        a_parts.append(rows[keep])
        b_parts.append(found[keep])
        s_parts.append(sims[keep])
    return (
        np.concatenate(a_parts).astype(np.int64),
        np.concatenate(b_parts).astype(np.int64),
        np.concatenate(s_parts).astype(np.float32),
    )


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Union-find: the root row of each of n rows, given edges a[i]-b[i]."""
    parent = np.arange(n)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(a.tolist(), b.tolist()):
        rx, ry = find(x), find(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    return np.array([find(x) for x in range(n)])
