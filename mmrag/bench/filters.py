"""Filtered search (`mmrag bench search --filter`): recall@10 against brute force over the allowed
set, and QPS, with filters keeping 50%, 10%, 1% and 0.1% of 1M vectors.

The vectors, queries and index are those of `mmrag bench search` (mmrag/bench/search.py: the
embedding-like mixture, and the factory the collection picks at 1M, trained as a collection trains
it). The filters are real: a collection store (mmrag.storage.store.Store) holds one item per vector
with a facts row whose `width` is drawn uniformly from 0..9,999, uncorrelated with the vectors, and
`width < W` is parsed, compiled to SQL and evaluated there (its time is a figure of its own). The
allowed ids then go to VectorIndex.search(allowed=...) (indexes/allowed.py). Ground truth is exact
inner product over the allowed vectors only. For contrast, post-filtering (the unfiltered top 100,
then the filter) is measured on the same queries: that is the recall a filter loses without this.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .report import Figure
from .search import CHUNK, TARGET_RECALL, build_index, cached, mixture, recall_at

SELECTIVITIES = (0.5, 0.1, 0.01, 0.001)
WIDTHS = 10_000  # width drawn from 0..WIDTHS-1: `width < W` keeps W / WIDTHS of the items
QUICK_FACTORY = "IVF128,PQ16x4fs,Refine(SQ8)"  # the shape picked at 1M x 512, small enough for seconds
POST_FILTER_DEPTH = 100  # what a route fetches before fusion (mmrag.query.search.ROUTE_DEPTH)


def build_store(path: Path, n: int, seed: int = 7):
    """A collection store with n items (ids 0..n-1 as the vectors') and a random width each."""
    from mmrag.storage.facts import FACTS_VERSION
    from mmrag.storage.store import Store

    fresh = not path.is_file()
    store = Store(str(path))
    if not fresh and store.db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == n:
        return store
    widths = np.random.default_rng(seed).integers(0, WIDTHS, n)
    with store.transaction() as con:
        con.execute("DELETE FROM items")
        for start in range(0, n, CHUNK):
            rows = range(start, min(n, start + CHUNK))
            con.executemany(
                "INSERT INTO items(id, key, modality, source, content_hash) VALUES(?,?,?,?,?)",
                ((i, f"item{i}", "image", f"/bench/{i}.jpg", "h") for i in rows),
            )
            con.executemany(
                "INSERT INTO item_facts(item_id, version, name, ext, width) VALUES(?,?,?,?,?)",
                ((i, FACTS_VERSION, f"{i}.jpg", "jpg", int(widths[i])) for i in rows),
            )
    return store


def quick_index(base: np.ndarray):
    """An IVF-fast-scan index with SQ8 rescoring at the quick size, where the automatic choice is Flat."""
    from indexes.vector import VectorIndex

    index = VectorIndex(base.shape[1], QUICK_FACTORY, {"nprobe": 4, "k_factor_rf": 10})
    index.train(base)
    index.add(np.arange(len(base), dtype=np.int64), base)
    return index


def exact_allowed(base: np.ndarray, queries: np.ndarray, allowed: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k ids among the allowed rows (ids are row numbers)."""
    import faiss

    flat = faiss.IndexFlatIP(base.shape[1])
    for start in range(0, len(allowed), CHUNK):
        flat.add(base[allowed[start : start + CHUNK]])
    found = flat.search(queries, k)[1]
    return np.where(found >= 0, allowed[np.maximum(found, 0)], -1)


def run(quick: bool = False, *, n: int | None = None, dim: int | None = None) -> list[Figure]:
    from mmrag.query.filter_sql import evaluate
    from mmrag.query.filters import parse_filter

    from . import work_dir

    n = n or (20_000 if quick else 1_000_000)
    dim = dim or (32 if quick else 512)
    components = 200 if quick else 10_000
    nq = 100 if quick else 200  # brute force over 50% of 1M per query is the slow part
    root = work_dir()
    tag = f"{n}x{dim}-c{components}"
    base = cached(root / f"vectors-{tag}.npy", lambda: mixture(n, dim, components, seed=1))
    queries = cached(root / f"queries-{tag}.npy", lambda: mixture(1000, dim, components, seed=2))[:nq]
    index = quick_index(base) if quick else build_index(base, root / f"index-{tag}.faiss")
    store = build_store(root / f"filters-{tag}.sqlite", n)
    params = ", ".join(f"{k}={v:g}" for k, v in index.params.items()) or "none"
    figures = []
    try:
        index.search(queries[:10], 10)  # warm-up
        t0 = time.perf_counter()
        _, unfiltered = index.search(queries, POST_FILTER_DEPTH)
        t_post = time.perf_counter() - t0
        for fraction in SELECTIVITIES:
            where = f"width < {round(fraction * WIDTHS)}"
            t0 = time.perf_counter()
            allowed = evaluate(store.db, parse_filter(where)).ids
            sql_ms = 1e3 * (time.perf_counter() - t0)
            truth = exact_allowed(base, queries, allowed, 10)
            index.search(queries[:5], 10, allowed=allowed)  # warm-up: selector caches
            t0 = time.perf_counter()
            _, found = index.search(queries, 10, allowed=allowed)
            qps = len(queries) / (time.perf_counter() - t0)
            outside = int((~np.isin(found[found >= 0], allowed)).sum())
            recall = recall_at(found, truth, 10)
            post = np.array(
                [([i for i in row if i >= 0 and _has(allowed, i)] + [-1] * 10)[:10] for row in unfiltered]
            )
            post_recall = recall_at(post, truth, 10)
            figures.append(
                Figure(
                    f"filtered recall@10, {fraction:.1%} kept ({len(allowed):,} of {n:,})",
                    recall,
                    "",
                    target=TARGET_RECALL,
                    note=f"{qps:,.0f} QPS (batch of {nq}); filter in SQLite {sql_ms:,.0f} ms; "
                    f"post-filtering the top {POST_FILTER_DEPTH}: R@10 {post_recall:.3f} at "
                    f"{len(queries) / t_post:,.0f} QPS; results outside the filter: {outside}",
                    extra={
                        "qps": qps,
                        "sql_ms": sql_ms,
                        "allowed": len(allowed),
                        "post_filter_recall": post_recall,
                        "outside": outside,
                        "where": where,
                    },  # fmt: skip
                )
            )
        figures.append(
            Figure(
                f"filtered search index at {n:,} x {dim}",
                float(index.ntotal),
                "vectors",
                note=f"{index.factory}, {params}; filters `width < W` on a uniform width",
            )  # fmt: skip
        )
    finally:
        store.close()
    return figures


def _has(sorted_ids: np.ndarray, i: int) -> bool:
    pos = np.searchsorted(sorted_ids, i)
    return bool(pos < len(sorted_ids) and sorted_ids[pos] == i)
