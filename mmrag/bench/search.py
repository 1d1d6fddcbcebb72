"""Vector search: mmrag's VectorIndex against raw faiss on the same index and queries, and the
recall/QPS/memory of the index `choose_factory` picks at 1M embedding-like vectors.

Vectors (`mixture`): 10k Gaussian components. Centres are unit vectors drawn with a power-law
spectrum (variance of axis i ~ 1/(i+1)) under a random rotation, so a few directions dominate as in
real embedding sets; component weights are lognormal (a few big topics, many small ones); each point
is its centre plus an offset with its own power-law spectrum (effective dimension ~30) scaled so
cos(point, centre) is ~0.8 on average; all rows are normalised. Queries are fresh draws from the same
mixture. Ground truth is exact inner-product search. Everything is cached under the bench dir.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np

from indexes.atomic import atomic_save_npy

from .report import Figure, interleaved, paired_ratio

TARGET_OVERHEAD = 1.1
TARGET_RECALL = 0.95
TARGET_QPS = 1000.0
TARGET_RAM_MB = 600.0
CHUNK = 100_000


def mixture(n: int, dim: int, components: int, seed: int) -> np.ndarray:
    """n unit float32 rows from the seeded embedding-like mixture described in the module doc."""
    base = np.random.default_rng(1234 + dim + components)  # the mixture itself: shared by data and queries
    rotation, _ = np.linalg.qr(base.standard_normal((dim, dim)))
    spectrum = 1 / np.sqrt(np.arange(1, dim + 1))
    centres = (base.standard_normal((components, dim)) * spectrum) @ rotation
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = base.lognormal(0, 1, components)
    weights /= weights.sum()
    noise_spec = 1 / np.sqrt(np.arange(1, dim + 1)) * np.exp(-np.arange(dim) / 30)
    noise_spec *= 0.75 / np.sqrt((noise_spec**2).sum())  # |offset| ~0.75: cos(point, centre) ~0.8
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        comp = rng.choice(components, m, p=weights)
        offset = (rng.standard_normal((m, dim)) * noise_spec) @ rotation.T
        x = centres[comp] + offset
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def cached(path: Path, make) -> np.ndarray:
    if path.is_file():
        return np.load(path, allow_pickle=False)
    arr = make()
    atomic_save_npy(path, arr)
    return arr


def exact_top(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    import faiss

    flat = faiss.IndexFlatIP(base.shape[1])
    for start in range(0, len(base), CHUNK):
        flat.add(base[start : start + CHUNK])
    return flat.search(queries, k)[1]


def recall_at(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth)]))


def build_index(base: np.ndarray, path: Path):
    """The index mmrag's automatic choice builds for this size, trained on a sample; cached on disk."""
    from indexes.factory import choose_factory, default_params, min_training_vectors
    from indexes.vector import VectorIndex

    n, dim = base.shape
    factory = choose_factory(n, dim)
    path = path.with_name(
        f"{path.stem}-{re.sub(r'[^A-Za-z0-9]+', '_', factory)}.faiss"
    )  # one cache per choice
    if path.is_file():
        return VectorIndex.load(path)
    index = VectorIndex(dim, factory, default_params(factory, n))
    from mmrag.storage.collection import TRAIN_SAMPLE

    # trained exactly as a collection trains it: a sample of TRAIN_SAMPLE vectors, faiss' k-means defaults
    n_train = min(n, max(min_training_vectors(factory), TRAIN_SAMPLE))
    sample = base[np.sort(np.random.default_rng(0).choice(n, n_train, replace=False))]
    index.train(sample)
    for start in range(0, n, CHUNK):
        index.add(np.arange(start, min(n, start + CHUNK), dtype=np.int64), base[start : start + CHUNK])
    index.save(path)
    return index


def _chosen() -> str:
    from mmrag.query.threads import CHOOSER, busy

    n = CHOOSER.chosen("bench")
    return str(n) if n is not None else "1 (load average fills the cores)" if busy(CHOOSER.cores) else "?"


def one_query(index, q: np.ndarray):
    """One query as mmrag's search runs it: threads chosen by mmrag/query/threads.py."""
    from mmrag.query.threads import search_threads

    with search_threads("bench", 1):
        return index.search(q[None], 10)


def run(quick: bool = False, *, n: int | None = None, dim: int | None = None) -> list[Figure]:
    import faiss

    from . import work_dir

    n = n or (20_000 if quick else 1_000_000)
    dim = dim or (64 if quick else 512)
    components = 200 if quick else 10_000
    nq = 200 if quick else 1000
    root = work_dir()
    tag = f"{n}x{dim}-c{components}"
    base = cached(root / f"vectors-{tag}.npy", lambda: mixture(n, dim, components, seed=1))
    queries = cached(root / f"queries-{tag}.npy", lambda: mixture(nq, dim, components, seed=2))
    truth = cached(root / f"truth-{tag}.npy", lambda: exact_top(base, queries, 10))
    index = build_index(base, root / f"index-{tag}.faiss")
    raw = index.faiss_index  # the very faiss object mmrag searches
    ram_mb = len(faiss.serialize_index(raw)) / 2**20

    curve = []
    knob = "nprobe" if "IVF" in index.factory else "efSearch" if "HNSW" in index.factory else None
    chosen = dict(index.params)
    for value in (8, 16, 32, 64, 128) if knob else (None,):
        if knob:
            index.set_params({knob: value})
        index.search(queries[:50], 10)
        t0 = time.perf_counter()
        _, found = index.search(queries, 10)
        curve.append((value, recall_at(found, truth, 10), len(queries) / (time.perf_counter() - t0)))
    index.set_params(chosen)
    _, found = index.search(queries, 10)
    recall = recall_at(found, truth, 10)

    single = queries[: min(200, nq)]
    times = interleaved(
        {
            "faiss": lambda: raw.search(queries, 10),
            "mmrag": lambda: index.search(queries, 10),
            "faiss1": lambda: [raw.search(q[None], 10) for q in single],
            "mmrag1": lambda: [one_query(index, q) for q in single],
        },
        rounds=5 if quick else 3,
    )
    qps = len(queries) / float(np.median(times["mmrag"]))
    raw_qps = len(queries) / float(np.median(times["faiss"]))
    curve_txt = "; ".join(f"{knob}={v}: R@10 {r:.3f} at {q:,.0f} QPS" for v, r, q in curve)
    params = ", ".join(f"{k}={v:g}" for k, v in chosen.items()) or "none"
    return [
        Figure(
            "search overhead, batch of queries (mmrag / faiss time)",
            qps,
            "QPS",
            raw_qps,
            paired_ratio(times["mmrag"], times["faiss"]),
            TARGET_OVERHEAD,
            higher_is_better=False,
        ),
        Figure(
            "search overhead, one query per call (mmrag / faiss time)",
            len(single) / float(np.median(times["mmrag1"])),
            "QPS",
            len(single) / float(np.median(times["faiss1"])),
            paired_ratio(times["mmrag1"], times["faiss1"]),
            TARGET_OVERHEAD,
            higher_is_better=False,
            note=f"mmrag's threads for one query: {_chosen()} of {os.cpu_count()} (measured, "
            "mmrag/query/threads.py); faiss: its OpenMP default",
        ),
        Figure(
            f"recall@10 at {n:,} x {dim}", recall, "", target=TARGET_RECALL, note=f"{index.factory}, {params}"
        ),
        Figure(
            f"QPS at {n:,} x {dim} (batch of {nq})", qps, "QPS", target=TARGET_QPS, note=f"curve: {curve_txt}"
        ),
        Figure(
            "index RAM", ram_mb, "MB", target=TARGET_RAM_MB, higher_is_better=False, note="serialised size"
        ),
    ]
