"""Searching only allowed ids: FAISS selectors, search settings widened as the allowed share falls,
and an exact scan where that is cheaper than a graph or list walk.

A filter is evaluated elsewhere (SQLite) into the ids it allows; FAISS then skips every other
vector while it searches (`SearchParameters.sel`), so the k results are all allowed and none is
lost to post-filtering. An ANN index visits a fixed share of the collection per query; when only
a fraction p is allowed it would meet p times as many allowed vectors, so nprobe (IVF) and
efSearch (HNSW) are scaled by WIDEN / p, up to the whole index. Below EXACT_MAX allowed vectors,
or where the scan would touch most lists anyway, the allowed vectors are compared exactly.
"""

from __future__ import annotations

import math
import re

import faiss
import numpy as np

# the k-th allowed neighbour lies ~1/p ranks deep, where recall per probe is lower. At 1M x 512
# (IVF4096,PQ128x4fs,Refine(SQ8), nprobe 64) WIDEN 1 / 1.5 / 2 measured R@10 0.962 / 0.969 / 0.976
# keeping 50% and 0.966 / 0.972 / 0.975 keeping 10%: 2 leaves a margin on sets less kind than that one
WIDEN = 2.0
EXACT_MAX = 20_000  # allowed vectors compared exactly (Flat storage): 20k x 512 dims is ~1 ms a query
HNSW_EXACT_FRACTION = 0.05  # a graph walk that must skip 19 of 20 nodes costs more than a scan
MAX_EF = 4096  # beam widths past this cost more than the exact scan they approximate
BITMAP_MAX_BYTES = 64 << 20  # a bitmap selector up to 512M ids; larger id ranges use a hash set

_IVF_RE = re.compile(r"IVF(\d+)")


def as_allowed(ids: np.ndarray) -> np.ndarray:
    """Sorted unique int64 ids."""
    arr = np.asarray(ids)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ValueError(f"allowed ids must be a 1-D integer array, got shape {arr.shape} dtype {arr.dtype}")
    return np.unique(arr.astype(np.int64, copy=False))


def present(allowed: np.ndarray, live_sorted: np.ndarray) -> np.ndarray:
    """The allowed ids (sorted) that the index holds (`live_sorted`): O(m log n), no full sort."""
    if not len(allowed) or not len(live_sorted):
        return np.zeros(0, np.int64)
    pos = np.searchsorted(live_sorted, allowed)
    ok = pos < len(live_sorted)
    ok[ok] = live_sorted[pos[ok]] == allowed[ok]
    return allowed[ok]


class Selector:
    """A FAISS IDSelector over non-negative int64 labels, and the buffers it points into."""

    def __init__(self, labels: np.ndarray):
        labels = np.asarray(labels, dtype=np.int64)
        top = int(labels.max()) + 1 if len(labels) else 1
        if labels.min(initial=0) >= 0 and top <= 8 * BITMAP_MAX_BYTES:
            bits = np.zeros(top, dtype=bool)
            bits[labels] = True
            self._buf = np.packbits(bits, bitorder="little")
            self.sel = faiss.IDSelectorBitmap(len(self._buf), faiss.swig_ptr(self._buf))  # n is in bytes
        else:
            self._buf = np.ascontiguousarray(labels)
            self.sel = faiss.IDSelectorBatch(self._buf)


def widened_nprobe(nprobe: int, nlist: int, fraction: float) -> int:
    return int(min(nlist, max(nprobe, math.ceil(nprobe * WIDEN / max(fraction, 1e-12)))))


def widened_ef(ef: int, fraction: float) -> int:
    return int(min(MAX_EF, max(ef, math.ceil(ef * WIDEN / max(fraction, 1e-12)))))


def nlist_of(index: faiss.Index) -> int | None:
    ivf = faiss.try_extract_index_ivf(index)
    return int(ivf.nlist) if ivf is not None else None


def search_params(
    index: faiss.Index, sel: faiss.IDSelector, fraction: float, base: dict[str, float]
) -> tuple[faiss.SearchParameters, list]:
    """Per-call parameters for `index` (no IDMap above it) searching only `sel`, widened for `fraction`.

    Returns the parameters and the SWIG objects that must outlive the search."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexRefine):
        inner, keep = search_params(index.base_index, sel, fraction, base)
        p = faiss.IndexRefineSearchParameters()
        p.k_factor = float(base.get("k_factor_rf", getattr(index, "k_factor", 1.0)))
        p.base_index_params = inner
        return p, [inner, *keep]
    if isinstance(index, faiss.IndexIVF):
        p = faiss.SearchParametersIVF()
        p.nprobe = widened_nprobe(int(base.get("nprobe", index.nprobe)), int(index.nlist), fraction)
        p.sel = sel
        return p, []
    if isinstance(index, faiss.IndexHNSW):
        p = faiss.SearchParametersHNSW()
        p.efSearch = widened_ef(int(base.get("efSearch", index.hnsw.efSearch)), fraction)
        p.sel = sel
        return p, []
    if isinstance(index, faiss.IndexPreTransform):
        inner, keep = search_params(index.index, sel, fraction, base)
        p = faiss.SearchParametersPreTransform()
        p.index_params = inner
        return p, [inner, *keep]
    p = faiss.SearchParameters()
    p.sel = sel
    return p, []


def exact_storage(index: faiss.Index) -> faiss.Index | None:
    """The exact float vectors behind `index`, position by position, where it keeps them (Flat, HNSW-Flat)."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexFlat):
        return index
    if isinstance(index, faiss.IndexHNSW):
        storage = faiss.downcast_index(index.storage)
        return storage if isinstance(storage, faiss.IndexFlat) else None
    return None


def exact_scan(
    storage: faiss.Index, positions: np.ndarray, q: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Inner product of q with the vectors at `positions` of a Flat storage: top-k (scores, positions)."""
    kk = min(k, len(positions))
    scores = np.full((len(q), k), -np.inf, np.float32)
    out = np.full((len(q), k), -1, np.int64)
    if kk == 0:
        return scores, out
    if len(positions) <= EXACT_MAX:
        vecs = storage.reconstruct_batch(np.ascontiguousarray(positions, dtype=np.int64))
        sims = q @ vecs.T  # (m, n_allowed)
        top = (
            np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
            if kk < sims.shape[1]
            else np.tile(np.arange(sims.shape[1]), (len(q), 1))
        )
        s = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-s, axis=1, kind="stable")
        scores[:, :kk] = np.take_along_axis(s, order, axis=1)
        out[:, :kk] = positions[np.take_along_axis(top, order, axis=1)]
        return scores, out
    sel = Selector(positions)
    p = faiss.SearchParameters()
    p.sel = sel.sel
    dist, pos = storage.search(q, k, params=p)
    ok = pos >= 0
    scores[ok], out[ok] = dist[ok], pos[ok]
    return scores, out
