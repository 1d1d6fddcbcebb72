"""A per-item hubness prior: how crowded each vector's neighbourhood is.

In embedding spaces some items (boilerplate, near-duplicates, generic helpers) sit close to
very many others, so they rank high for queries they do not answer. CSLS (Conneau et al.,
"Word translation without parallel data", 2018) evens this out by subtracting each item's
mean similarity to its k nearest neighbours from its scores. The prior is computed from the
indexed vectors alone: it needs no queries and no labels, and it is rebuilt as items change.

Scores are corrected by `weight * (density - mean density)`: centred, so an item added after
the prior was computed (penalty 0) is treated as an average item, not favoured.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from indexes.atomic import atomic_write_bytes
from indexes.errors import IndexFileError

# 5 neighbours: on CoSQA dev (docs/quality.md) k from 3 to 20 all gave +0.006 to +0.014 MRR at
# weight 0.25-0.4; fewer neighbours react to single duplicates, more blur into the global mean
DEFAULT_K = 5
# past this share of items added or removed since the last full pass, every density is recomputed:
# the neighbourhoods of the items kept have moved; below it, only new items are computed
REFRESH_SHARE = 0.1
FETCH_BATCH = 50_000  # vectors read from the store at once during a full pass
SEARCH_BATCH = 4096  # queries per search call while computing densities: bounded memory

Search = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class HubnessPrior:
    """Neighbourhood density per item id; `ids` sorted ascending, `density` aligned with it."""

    ids: np.ndarray  # (n,) int64
    density: np.ndarray  # (n,) float32: mean score of the item's k nearest other items
    k: int = DEFAULT_K
    stale: int = 0  # items added or removed since every density was last computed

    def __post_init__(self) -> None:
        if self.ids.shape != self.density.shape or self.ids.ndim != 1:
            raise ValueError(
                f"ids {self.ids.shape} and density {self.density.shape} must be equal 1-d shapes"
            )

    @cached_property
    def mean(self) -> float:  # computed once: penalty() runs on every search
        return float(self.density.mean()) if len(self.density) else 0.0

    def penalty(self, ids: np.ndarray) -> np.ndarray:
        """density - mean for known ids; 0 for ids the prior has not seen (and FAISS's -1)."""
        ids = np.asarray(ids, np.int64)
        out = np.zeros(ids.shape, np.float32)
        if not len(self.ids):
            return out
        pos = np.searchsorted(self.ids, ids)
        pos = np.minimum(pos, len(self.ids) - 1)
        known = (self.ids[pos] == ids) & (ids >= 0)
        out[known] = self.density[pos[known]] - self.mean
        return out

    def apply(self, scores: np.ndarray, ids: np.ndarray, weight: float) -> tuple[np.ndarray, np.ndarray]:
        """(scores - weight * penalty, ids), re-sorted best first along the last axis; -1 slots last."""
        if weight == 0 or not len(self.ids):
            return scores, ids
        adjusted = (scores - np.float32(weight) * self.penalty(ids)).astype(np.float32)
        key = np.where(ids >= 0, adjusted, -np.inf)
        order = np.argsort(-key, axis=-1, kind="stable")
        return np.take_along_axis(adjusted, order, -1), np.take_along_axis(ids, order, -1)

    def updated(self, ids: np.ndarray, density: np.ndarray, keep: np.ndarray) -> HubnessPrior:
        """This prior restricted to the ids in `keep`, with (ids, density) set or added."""
        kept = np.isin(self.ids, keep)
        mask = kept & ~np.isin(self.ids, ids)
        all_ids = np.concatenate([self.ids[mask], np.asarray(ids, np.int64)])
        all_density = np.concatenate([self.density[mask], np.asarray(density, np.float32)])
        order = np.argsort(all_ids)
        changed = int((~kept).sum()) + len(ids)
        return HubnessPrior(all_ids[order], all_density[order], self.k, self.stale + changed)

    def save(self, path: str | os.PathLike[str]) -> None:
        buf = io.BytesIO()
        np.savez(buf, ids=self.ids, density=self.density, k=np.int64(self.k), stale=np.int64(self.stale))
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> HubnessPrior:
        try:
            with np.load(path, allow_pickle=False) as data:
                ids, density = data["ids"].astype(np.int64), data["density"].astype(np.float32)
                return cls(ids, density, int(data["k"]), int(data["stale"]))
        except (OSError, ValueError, KeyError) as e:
            raise IndexFileError(f"Cannot read hubness prior {path}: {e}") from e


def neighbour_density(search: Search, ids: np.ndarray, vectors: np.ndarray, k: int = DEFAULT_K) -> np.ndarray:
    """Mean score of each vector's k nearest *other* items, found with `search(queries, k)`.

    The item itself is dropped by id; where the index did not return it (approximate indexes,
    duplicates), the k best of the k + 1 results are used."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    ids = np.asarray(ids, np.int64)
    out = np.zeros(len(ids), np.float32)
    for start in range(0, len(ids), SEARCH_BATCH):
        chunk = slice(start, start + SEARCH_BATCH)
        scores, found = search(np.ascontiguousarray(vectors[chunk], np.float32), k + 1)
        valid = found >= 0
        other = valid & (found != ids[chunk, None])
        # keep at most k of the others, best first (search returns rows sorted)
        other &= np.cumsum(other, axis=1) <= k
        counts = other.sum(axis=1)
        sums = np.where(other, scores, 0.0).sum(axis=1)
        out[chunk] = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    return out


def refresh(
    old: HubnessPrior | None,
    want: np.ndarray,
    fetch: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    search: Search,
    k: int = DEFAULT_K,
) -> HubnessPrior:
    """The prior for the items `want` (sorted ids), reusing `old` where little has changed.

    `fetch(ids) -> (ids, vectors)` reads stored vectors; `search` is the space's index, already
    holding exactly `want`."""
    want = np.asarray(want, np.int64)
    if old is not None and old.k == k:
        new = np.setdiff1d(want, old.ids, assume_unique=True)
        gone = len(old.ids) - (len(want) - len(new))
        if not len(new) and not gone:
            return old
        if old.stale + len(new) + gone <= REFRESH_SHARE * max(len(want), 1):
            ids, vecs = fetch(new) if len(new) else (new, np.zeros((0, 0), np.float32))
            return old.updated(ids, neighbour_density(search, ids, vecs, k), keep=want)
    ids_parts, density_parts = [], []
    for start in range(0, len(want), FETCH_BATCH):
        ids, vecs = fetch(want[start : start + FETCH_BATCH])
        ids_parts.append(ids)
        density_parts.append(neighbour_density(search, ids, vecs, k))
    if not ids_parts:
        return HubnessPrior(np.zeros(0, np.int64), np.zeros(0, np.float32), k)
    return HubnessPrior(np.concatenate(ids_parts), np.concatenate(density_parts), k)
