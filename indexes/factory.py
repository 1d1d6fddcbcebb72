"""Pick a FAISS factory string from the collection's size, the way autofaiss does.

The string is the whole index config: it is stored with the index and can be overridden.
Thresholds are module constants so that a benchmark (1M vectors: recall@10 >= 0.95,
>= 1000 QPS, <= 600 MB) can tune them in one place.
"""

from __future__ import annotations

import math
import re

import faiss

FLAT_MAX_N = 50_000  # exact brute force over 50k vectors costs ~1-10 ms/query and needs no training
HNSW_M = 32  # graph degree 32: the usual recall/memory balance for 128-1024-d embeddings
# the memory target of the 1M-vector benchmark: at 1M x 512 HNSW32 (2.6 GB) does not fit and
# IVF4096,SQ8 (504 MB measured) does, so the automatic choice there is IVF-SQ8
DEFAULT_RAM_BUDGET_BYTES = 600 * 1024**2
IVF_LISTS_PER_SQRT_N = 4  # faiss guidelines: nlist between 4*sqrt(n) and 16*sqrt(n); fewer lists train faster
IVF_MIN_POINTS_PER_LIST = 39  # faiss k-means warns below 39 training points per centroid
PQ_MAX_M = 64  # SQ4 did not fit, so codes stay small; 64 bytes is faiss' usual ceiling for IVF-PQ
PQ_NBITS = 8  # 256 centroids per sub-quantizer: the faiss default, one byte per sub-vector
DEFAULT_EF_SEARCH = 64  # HNSW search beam; 64 reaches recall@10 ~0.95+ on unit embeddings at 1M
# probe 1/32 of the lists: at 1M x 512 mixture vectors IVF4096,SQ8 measured recall@10 0.947 at
# nprobe 64 and 0.970 at 128 (docs/performance.md); the recall target needs the latter
IVF_NPROBE_FRACTION = 1 / 32
IVF_MIN_NPROBE = 8  # below 8 probes recall drops fast whatever nlist is
# 4-bit fast-scan PQ candidates rescored with SQ8 codes: at 1M x 512 (IVF4096,PQ128x4fs,Refine(SQ8))
# measured recall@10 0.956 at 1,790 QPS with nprobe 64, k_factor 10, vs 0.970 at 49 QPS for
# IVF4096,SQ8 at nprobe 128 on the same loaded machine (docs/performance.md): ~35x the speed
FASTSCAN_SUBVECTOR_DIM = 4  # PQ{dim/4}x4fs: half a byte per 4 dims, the size measured above
REFINE_NPROBE_FRACTION = 1 / 64  # the candidate list is rescored, so fewer probes reach the target
REFINE_K_FACTOR = 10  # rescore 10k candidates: recall +0.007 over 4k at 1M, for ~25% of the QPS

_IVF_RE = re.compile(r"IVF(\d+)")
_PQ_RE = re.compile(r"(?<![A-Za-z])(?:O?PQ)(\d+)(?:x(\d+))?")
_HNSW_RE = re.compile(r"HNSW(\d+)")
_EXAMPLES = ("Flat", "HNSW32", "IVF1024,Flat", "IVF1024,SQ8", "IVF4096,PQ32")


def validate_factory(factory: str, dim: int) -> None:
    """Raise ValueError unless FAISS can build `factory` for vectors of `dim` (an empty, untrained build)."""
    if not isinstance(factory, str) or not factory.strip():
        raise ValueError(f"Empty FAISS factory string {factory!r}; examples of valid ones: {_EXAMPLES}")
    if isinstance(dim, bool) or not hasattr(dim, "__index__") or int(dim) <= 0:
        raise ValueError(f"Vector dimension must be a positive int, got {dim!r}")
    try:
        faiss.index_factory(int(dim), factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        reason = _faiss_reason(e)
        raise ValueError(
            f"FAISS rejects factory string {factory!r} for dim={dim}: {reason}. "
            f"Examples of valid ones: {_EXAMPLES} (PQ m must divide dim)"
        ) from None


def _faiss_reason(error: RuntimeError) -> str:
    """FAISS messages start with a C++ location; keep the part after it."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
    return text.rsplit(": ", 1)[-1] if " at " in text else text


def ivf_nlist(n: int) -> int:
    """Number of inverted lists: ~4*sqrt(n) rounded to a power of 2, with enough points per list."""
    target = IVF_LISTS_PER_SQRT_N * math.sqrt(max(n, 1))
    nlist = 2 ** max(0, round(math.log2(target)))
    while nlist > 1 and n < nlist * IVF_MIN_POINTS_PER_LIST:
        nlist //= 2
    return nlist


def default_nprobe(nlist: int) -> int:
    return min(nlist, max(IVF_MIN_NPROBE, round(nlist * IVF_NPROBE_FRACTION)))


def min_training_vectors(factory: str) -> int:
    """How many vectors `factory` needs to train: one per IVF list, 2**nbits per PQ codebook."""
    need = 1
    ivf = _IVF_RE.search(factory)
    if ivf:
        need = max(need, int(ivf.group(1)))
    for pq in _PQ_RE.finditer(factory):
        nbits = int(pq.group(2)) if pq.group(2) else PQ_NBITS
        need = max(need, 2**nbits)
    return need


def estimate_bytes(factory: str, n: int, dim: int) -> int:
    """Rough resident size of `factory` holding n vectors (codes + ids + graph/centroids)."""
    ids = 8 * n
    ivf = _IVF_RE.search(factory)
    centroids = 4 * dim * int(ivf.group(1)) if ivf else 0
    pq = _PQ_RE.search(factory)
    if pq:
        m = int(pq.group(1))
        nbits = int(pq.group(2)) if pq.group(2) else PQ_NBITS
        code = math.ceil(m * nbits / 8)
        codebooks = 4 * dim * 2**nbits
    elif "SQ8" in factory:
        code, codebooks = dim, 0
    elif "SQ4" in factory:
        code, codebooks = math.ceil(dim / 2), 0
    elif "SQfp16" in factory:
        code, codebooks = 2 * dim, 0
    else:
        code, codebooks = 4 * dim, 0
    hnsw = _HNSW_RE.search(factory)
    graph = 0
    if hnsw and not ivf:
        m = int(hnsw.group(1))
        graph = n * (
            2 * m * 4 + 8 + 4
        )  # level-0 links (2M int32), offsets, level; upper levels are ~1/M of it
    if "Refine(SQ8)" in factory:
        code += dim
    return n * code + ids + centroids + codebooks + graph


def choose_factory(n: int, dim: int, *, ram_budget_bytes: int | None = None) -> str:
    """Factory string for n vectors of `dim`: Flat, then HNSW, then compressed IVF as n grows."""
    if n < 0 or dim <= 0:
        raise ValueError(f"Need n >= 0 and dim > 0, got n={n}, dim={dim}")
    budget = DEFAULT_RAM_BUDGET_BYTES if ram_budget_bytes is None else ram_budget_bytes
    if n <= FLAT_MAX_N:
        return "Flat"
    hnsw = f"HNSW{HNSW_M}"
    if estimate_bytes(hnsw, n, dim) <= budget:
        return hnsw  # raw vectors plus graph fit: best recall per ms
    nlist = ivf_nlist(n)
    if dim % (2 * FASTSCAN_SUBVECTOR_DIM) == 0:
        fast = f"IVF{nlist},PQ{dim // FASTSCAN_SUBVECTOR_DIM}x4fs,Refine(SQ8)"
        if estimate_bytes(fast, n, dim) <= budget:
            return fast  # fast-scan candidates, SQ8 rescoring: recall of SQ8 at many times its speed
    sq8 = f"IVF{nlist},SQ8"
    if estimate_bytes(sq8, n, dim) <= budget:
        return sq8  # one byte per dimension keeps recall close to exact
    sq4 = f"IVF{nlist},SQ4"
    if estimate_bytes(sq4, n, dim) <= budget:
        return sq4  # half a byte per dimension still beats PQ's recall at the same size
    return f"IVF{nlist},PQ{_pq_m(n, dim, nlist, budget)}"


def _pq_m(n: int, dim: int, nlist: int, budget: int) -> int:
    """Largest PQ sub-quantizer count dividing dim that fits the budget; the smallest sensible one if none."""
    divisors = [m for m in range(1, min(dim, PQ_MAX_M) + 1) if dim % m == 0]
    fitting = [m for m in divisors if estimate_bytes(f"IVF{nlist},PQ{m}", n, dim) <= budget]
    if fitting:
        return max(fitting)
    return min(m for m in divisors if m >= min(4, dim))  # below 4 bytes a code carries almost nothing


def default_params(factory: str, n: int) -> dict[str, float]:
    """Search-time defaults for `factory`: nprobe for IVF, efSearch for HNSW, nothing for Flat.

    `n` bounds nprobe so a small IVF index is not probed past its list count.
    """
    ivf = _IVF_RE.search(factory)
    if ivf and "Refine(" in factory:
        nlist = int(ivf.group(1))
        nprobe = min(nlist, max(IVF_MIN_NPROBE, round(nlist * REFINE_NPROBE_FRACTION)))
        return {"nprobe": max(1, min(nprobe, max(n, 1))), "k_factor_rf": REFINE_K_FACTOR}
    if ivf:
        nlist = int(ivf.group(1))
        return {"nprobe": max(1, min(default_nprobe(nlist), nlist, max(n, 1)))}
    if _HNSW_RE.search(factory):
        return {"efSearch": DEFAULT_EF_SEARCH}
    return {}


CODES = {"fp16": "SQfp16", "sq8": "SQ8", "sq4": "SQ4"}  # code name -> FAISS storage; pq[M] and fp32 below


def code_factory(code: str, n: int, dim: int) -> str | None:
    """Factory storing n vectors of `dim` as `code` (fp32, fp16, sq8, sq4, pq or pqM): a flat scan of
    the codes up to FLAT_MAX_N, an IVF over them above. fp32 gives None: the size-based choice."""
    c = code.strip().lower()
    pq = re.fullmatch(r"pq(\d*)", c)
    if c == "fp32":
        return None
    if c in CODES:
        body = CODES[c]
    elif pq:
        m = int(pq.group(1)) if pq.group(1) else max(1, dim // FASTSCAN_SUBVECTOR_DIM)
        if dim % m:
            raise ValueError(f"Code {code!r}: PQ{m} must divide the {dim} dimensions")
        body = f"PQ{m}"
    else:
        raise ValueError(f"Unknown code {code!r}; valid: fp32, {', '.join(CODES)}, pq or pqM (M bytes)")
    return body if n <= FLAT_MAX_N else f"IVF{ivf_nlist(n)},{body}"


def needs_disk(n: int, dim: int, ram_budget_bytes: int) -> bool:
    """Whether n vectors of `dim` should be served from disk (indexes.ondisk) rather than from RAM.

    True when the in-RAM choice for this budget would exceed it, or when it would fit only as
    plain IVF-PQ, the last resort of choose_factory: there the on-disk IVF-PQ holds as many code
    bytes in RAM and also rescores its candidates exactly from vectors kept on disk, so it ranks better.
    """
    factory = choose_factory(n, dim, ram_budget_bytes=ram_budget_bytes)
    plain_pq = _IVF_RE.search(factory) is not None and _PQ_RE.search(factory) and "Refine(" not in factory
    return bool(plain_pq) or estimate_bytes(factory, n, dim) > ram_budget_bytes
