"""A 2-D map of one space: openTSNE over the stored unit vectors, computed once per generation.

t-SNE keeps each item's nearest neighbours near it on the map, which is what a person reads a
map for (which items sit together), and scores high on sklearn's trustworthiness at small k;
openTSNE is compiled ahead (no JIT warm-up), places new points on an existing map, and lays out
100k points with FFT-accelerated gradients (docs/performance.md). The layout is cached in the
collection folder (mmrag/explore/cache.py) and recomputed after any committed change.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from mmrag.storage.collection import Collection

from . import cache
from .spaces import space_vectors

Progress = Callable[[str, int, int], None]  # (stage, done, total), as the indexer reports
THREADS_FROM = 5000


@dataclass(frozen=True)
class MapCfg:
    perplexity: float = 30.0  # openTSNE's default: ~90 neighbours shape each point's place
    early_iter: int = 250  # early exaggeration phase: clusters form before they are spread out
    n_iter: int = 500  # openTSNE's default; the layout changes little after that
    seed: int = 0  # one collection, one map: the same layout on every machine and rerun
    # None: one thread below THREADS_FROM points (threads cost more than they save there: 3.5 s
    # against 9 s for 62 points on 2 busy cores), else up to 8 for the neighbour search and FFT
    n_jobs: int | None = None


@dataclass(frozen=True)
class MapLayout:
    space: str
    ids: np.ndarray  # int64 (n,), ordered by id
    xy: np.ndarray  # float32 (n, 2)
    cached: bool  # loaded from the collection folder rather than computed now
    seconds: float  # time to compute (or load) it


def load_map(
    coll: Collection, space: str = "joint", cfg: MapCfg | None = None, progress: Progress | None = None
) -> MapLayout:
    """The space's map: from the cache when the collection has not changed since, else computed."""
    cfg = cfg or MapCfg()
    params = {"what": "map", "space": space, **{k: v for k, v in asdict(cfg).items() if k != "n_jobs"}}
    t0 = time.perf_counter()

    def compute() -> dict[str, np.ndarray]:
        ids, vecs = space_vectors(coll, space)
        return {"ids": ids, "xy": project(vecs, cfg, progress)}

    arrays, hit = cache.cached(coll, f"map-{space}", params, compute)
    return MapLayout(space, arrays["ids"], arrays["xy"], hit, time.perf_counter() - t0)


def project(vecs: np.ndarray, cfg: MapCfg | None = None, progress: Progress | None = None) -> np.ndarray:
    """float32 (n, 2) t-SNE layout of unit vectors (cosine), scaled to about [-1, 1]."""
    cfg = cfg or MapCfg()
    n = len(vecs)
    if n < 4:  # too few points to have neighbourhoods: a line in id order
        return np.stack([np.linspace(-1, 1, n) if n > 1 else np.zeros(n), np.zeros(n)], 1).astype(np.float32)
    from openTSNE import TSNE

    # the perplexity must leave 3 x perplexity neighbours to find
    perplexity = min(cfg.perplexity, (n - 1) / 3)
    total = cfg.early_iter + cfg.n_iter
    done = [0]

    def tick(iteration, error, embedding) -> bool:
        if done[0] == 0 and progress:  # the first callback comes once the affinities are built
            progress("map neighbours", 1, 1)
        done[0] += 1
        if progress:
            progress("map layout", min(done[0] * 10, total), total)
        return False

    if progress:
        progress("map neighbours", 0, 1)
    tsne = TSNE(
        perplexity=perplexity,
        early_exaggeration_iter=cfg.early_iter,
        n_iter=cfg.n_iter,
        metric="cosine",
        neighbors="exact" if n <= 2000 else "auto",  # exact is cheap below a few thousand
        n_jobs=cfg.n_jobs or (1 if n < THREADS_FROM else max(1, min(8, os.cpu_count() or 1))),
        random_state=cfg.seed,
        callbacks=tick if progress else None,
        callbacks_every_iters=10,
    )
    embedding = tsne.fit(np.asarray(vecs, dtype=np.float32))
    if progress:
        progress("map layout", total, total)
    xy = np.asarray(embedding, dtype=np.float32)
    xy -= xy.mean(axis=0)
    return xy / max(float(np.abs(xy).max()), 1e-9)


def place(layout: MapLayout, neighbour_ids: np.ndarray) -> tuple[float, float] | None:
    """Where a query sits on the map: the median place of its nearest items, as openTSNE starts a new point."""
    row = {int(i): n for n, i in enumerate(layout.ids.tolist())}
    rows = [row[int(i)] for i in neighbour_ids if int(i) in row]
    if not rows:
        return None
    x, y = np.median(layout.xy[rows], axis=0)
    return float(x), float(y)


def trustworthiness(
    vecs: np.ndarray, xy: np.ndarray, k: int = 10, sample: int = 10_000, seed: int = 0
) -> float:
    """sklearn's trustworthiness at k over at most `sample` items: 1 when no map neighbour is a stranger.

    It holds an n x n distance matrix, so larger sets are measured on a random sample."""
    from sklearn.manifold import trustworthiness as tw

    if len(vecs) > sample:
        pick = np.random.default_rng(seed).choice(len(vecs), sample, replace=False)
        vecs, xy = vecs[pick], xy[pick]
    return float(tw(vecs, xy, n_neighbors=k))
