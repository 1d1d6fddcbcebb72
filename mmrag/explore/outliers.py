"""Outliers of one space: the items least like their nearest neighbours.

`knn` scores an item by 1 - its mean cosine to its k nearest items (a lonely item scores high);
`density` divides that distance by its neighbours' own (a local density ratio in the manner of
LOF), so an item of a sparse but coherent group is not flagged for the group's looseness. The
neighbours come from the space's own index (exact Flat on small collections), the scores are
cached per generation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mmrag.errors import QueryError
from mmrag.storage.collection import Collection

from . import cache
from .spaces import label_of, source_of, space_for, space_vectors

METHODS = ("knn", "density")
K = 10  # neighbours an item is compared with: enough to be stable, small enough to stay local
BLOCK = 4096  # queries per search call
Progress = Callable[[str, int, int], None]  # (stage, done, total), as the indexer reports


@dataclass(frozen=True)
class Outlier:
    id: int
    key: str
    source: str
    label: str
    modality: str
    score: float  # higher: less like its neighbours
    neighbour_similarity: float  # its mean cosine to its k nearest items
    rank: int  # 1: the most isolated item of the space

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def find_outliers(
    coll: Collection,
    modality: str | None = None,
    limit: int = 20,
    *,
    method: str = "knn",
    k: int = K,
    space: str | None = None,
    progress: Progress | None = None,
) -> list[Outlier]:
    """The `limit` items of the space that are least like their neighbours, most isolated first."""
    if method not in METHODS:
        raise QueryError(f"Unknown outlier method {method!r}; valid: {list(METHODS)}")
    if limit < 1 or k < 1:
        raise QueryError(f"limit and k must be at least 1, got limit={limit}, k={k}")
    space = space_for(coll, modality, space)
    arrays, _ = cache.cached(
        coll,
        f"outliers-{space}-k{k}",
        {"what": "outliers", "space": space, "k": k},
        lambda: neighbour_similarity(coll, space, k, progress),
    )
    ids, sim, nbr = arrays["ids"], arrays["similarity"], arrays["neighbours"]
    scores = outlier_scores(sim, nbr, method)
    top = np.argsort(-scores, kind="stable")[:limit]
    rows = coll.store.fetch_items([int(ids[r]) for r in top])
    out = []
    for rank, r in enumerate(top.tolist(), 1):
        row = rows.get(int(ids[r]))
        if row is not None:
            out.append(
                Outlier(
                    int(ids[r]),
                    row["key"],
                    source_of(row),
                    label_of(row),
                    row["modality"],
                    float(scores[r]),
                    float(sim[r]),
                    rank,
                )
            )
    return out


def neighbour_similarity(
    coll: Collection, space: str, k: int, progress: Progress | None = None
) -> dict[str, np.ndarray]:
    """ids, each item's mean cosine to its k nearest other items, and those items as rows (-1: none)."""
    ids, vecs = space_vectors(coll, space)
    n = len(ids)
    if n < 2:
        return {"ids": ids, "similarity": np.ones(n, np.float32), "neighbours": np.full((n, k), -1, np.int64)}
    index = coll.vector_index(space)
    row_of = {int(i): r for r, i in enumerate(ids.tolist())}
    kk = min(k + 1, n)
    sims = np.zeros(n, np.float32)
    nbrs = np.full((n, k), -1, np.int64)
    for start in range(0, n, BLOCK):
        if progress:
            progress("outlier neighbours", start, n)
        scores, found = index.search(vecs[start : start + BLOCK], kk)
        for q in range(len(found)):
            me = ids[start + q]
            keep = [(s, f) for s, f in zip(scores[q].tolist(), found[q].tolist()) if f != me and f >= 0][:k]
            if keep:
                sims[start + q] = np.mean([s for s, _ in keep])
                rows = [row_of.get(f, -1) for _, f in keep]
                nbrs[start + q, : len(rows)] = rows
    return {"ids": ids, "similarity": sims, "neighbours": nbrs}


def outlier_scores(sim: np.ndarray, neighbours: np.ndarray, method: str = "knn") -> np.ndarray:
    """float (n,): higher is more isolated; `density` is the distance over the neighbours' mean distance."""
    dist = np.clip(1.0 - sim.astype(np.float64), 0.0, 2.0)
    if method == "knn" or not len(dist):
        return dist
    valid = neighbours >= 0
    nd = np.where(valid, dist[np.where(valid, neighbours, 0)], 0.0)
    mean_nd = nd.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
    return dist / np.maximum(mean_nd, 1e-6)
