"""IVF-PQ indexes larger than RAM: trained on a sample, built shard by shard, served from disk.

The approach of autofaiss and clip-retrieval for LAION-5B. A compressed IVF-PQ index
(OPQ rotation optional) is trained once on a sample; each shard of vectors is added to a
copy of the trained index and written alone, so building never holds more than one shard;
the shards' inverted lists are then merged into one FAISS on-disk file (OnDiskInvertedLists)
that is memory-mapped at search time, so only the lists a query probes are paged in.
PQ codes rank candidates roughly; the top `rescore_k` are rescored exactly against the
stored vectors, kept per shard as fp16 (or int8 with a per-vector scale) in memory-mapped
.npy files.

FAISS labels are global row numbers (shard offset + position); rows map to the caller's
int64 ids through per-shard id files. The ANN stage uses L2 on unit vectors, which ranks
as inner product does and is FAISS's best-tested IVF-PQ path; rescoring is exact inner product.

Folder layout: config.json, trained.faiss, shards/NNNNN.{faiss,vec.npy,ids.npy[,scale.npy]},
merged.faiss + merged.ivfdata (after merge). Shard .faiss files are dropped after merge.
With load(mmap=True) the lists are memory-mapped and the vector stores are read row by row
with pread (see RowFile); with mmap=False both are copied into RAM.

A merged index is never rewritten. Rows whose vectors were removed afterwards can be excluded
(`exclude`): FAISS skips them while it scans the lists, so a search still returns k live rows.
indexes/layered.py builds adds and removes on top of that.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from indexes.allowed import EXACT_MAX, Selector, widened_nprobe
from indexes.atomic import atomic_path, atomic_save_npy, atomic_write_json
from indexes.errors import IndexFileError, NotTrainedError

FORMAT_VERSION = 1
STORE_DTYPES = ("float16", "int8")
PQ_CHOICES = (128, 96, 64, 48, 32, 16, 8)  # bytes per code, best recall first
MAX_NLIST = 262_144  # beyond 2**18 lists k-means training dominates even on GPUs
# An HNSW graph over the centroids (efConstruction 40) put half of the vectors of the 50M run in the
# wrong list at efSearch 16 (the beam a trained index keeps for adding), and 16 % still at 2048,
# which is slower than exact: one list held 1.56M vectors and a query scanned 7.2M codes at
# nprobe 32. An exact (BLAS) search of 8192 x 512 centroids assigns 18.8k vectors/s on 2 cores and
# takes ~1 ms a query, so the flat quantizer is used up to 2**16 lists (docs/scale.md).
HNSW_QUANTIZER_MIN_NLIST = 65_536
TRAIN_POINTS_PER_LIST = 39  # faiss k-means warns below 39 points per centroid
PQ_TRAIN_MIN = 65_536  # 256 centroids x 256 points: faiss's own cap for PQ codebook training
MIN_DIMS_PER_SUBQUANTIZER = 8  # finer splits cost training and add time for little recall once rescored
_INT8_SCALE = 127.0


@dataclass(frozen=True)
class LargeIndexConfig:
    """How a larger-than-RAM index is built and searched; stored as config.json with it."""

    factory: str  # FAISS factory string, e.g. "OPQ64,IVF4096_HNSW32,PQ64"
    nprobe: int = 32  # lists visited per query
    rescore_k: int = 200  # PQ candidates rescored exactly; 20x k absorbs PQ ranking error at k=10
    store_dtype: str = "float16"  # half the disk of fp32 and exact enough for rescoring unit vectors
    train_size: int = 160_000  # sample for k-means and PQ codebooks
    quantizer_ef: int = 128  # HNSW coarse-quantizer beam; must stay above nprobe

    def __post_init__(self) -> None:
        if self.store_dtype not in STORE_DTYPES:
            raise ValueError(f"store_dtype {self.store_dtype!r} is not one of {STORE_DTYPES}")
        for name in ("nprobe", "rescore_k", "train_size", "quantizer_ef"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def choose_large(n: int, dim: int, ram_budget_bytes: int, *, opq: bool = False) -> LargeIndexConfig:
    """Config for n vectors of `dim` served with about `ram_budget_bytes` of RAM.

    opq=True adds an OPQ rotation: it helps when variance sits on a few raw axes; embeddings
    whose variance is already spread across dimensions gain little, and OPQ training costs
    minutes on a few cores whatever n is.

    nlist ~ sqrt(n) (a power of two) keeps k-means training cheap; the PQ code is the largest
    one whose codes plus ids fit the budget, so the hot lists stay in the page cache. The
    rescoring store is on disk and only touched for `rescore_k` rows per query.
    """
    if n < 1 or dim < 1:
        raise ValueError(f"Need n >= 1 and dim >= 1, got n={n}, dim={dim}")
    if ram_budget_bytes <= 0:
        raise ValueError(f"ram_budget_bytes must be positive, got {ram_budget_bytes}")
    nlist = 2 ** max(4, round(math.log2(math.sqrt(n))))
    while nlist > 16 and n < nlist * TRAIN_POINTS_PER_LIST:
        nlist //= 2
    nlist = min(nlist, MAX_NLIST)
    divisors = [m for m in PQ_CHOICES if dim % m == 0 and dim // m >= MIN_DIMS_PER_SUBQUANTIZER] or [
        m for m in range(min(dim, 64), 0, -1) if dim % m == 0
    ]
    fixed = 4 * dim * nlist + 4 * dim * dim  # centroids and OPQ matrix stay resident
    pq = next((m for m in divisors if n * (m + 8) + fixed <= ram_budget_bytes), divisors[-1])
    rotation = f"OPQ{pq}," if opq and dim % pq == 0 else ""
    coarse = f"IVF{nlist}_HNSW32" if nlist >= HNSW_QUANTIZER_MIN_NLIST else f"IVF{nlist}"
    nprobe = max(8, min(nlist // 256, 64))  # 16 at 10M: recall@10 0.92 after rescoring, p50 < 50 ms
    train = min(max(nlist * TRAIN_POINTS_PER_LIST, PQ_TRAIN_MIN), n)
    return LargeIndexConfig(
        factory=f"{rotation}{coarse},PQ{pq}",
        nprobe=nprobe,
        quantizer_ef=max(128, 2 * nprobe),
        train_size=train,
    )


class OnDiskIndex:
    """train -> add_shard ... -> merge -> search; load(folder, mmap=...) to reopen."""

    def __init__(self, folder: str | Path, dim: int, config: LargeIndexConfig):
        self.folder = Path(folder)
        self.dim = dim
        self.config = config
        self._index: faiss.Index | None = None  # merged index, set by merge() or load()
        self._shards: list[dict] = []  # {"name", "rows"} in row order
        self._stores: list[np.ndarray | RowFile] = []
        self._scales: list[np.ndarray | None] = []
        self._ids: list[np.ndarray | RowFile] = []
        self._offsets = np.zeros(1, dtype=np.int64)
        self._excluded = np.zeros(0, dtype=np.int64)  # sorted rows left out of searches
        self._selector: tuple | None = None  # (IDSelectorBatch, IDSelectorNot) while rows are excluded

    # ---- build -------------------------------------------------------------------------------

    @classmethod
    def create(cls, folder: str | Path, dim: int, config: LargeIndexConfig) -> OnDiskIndex:
        """A new empty index in `folder` (which must not hold one already)."""
        folder = Path(folder)
        if (folder / "config.json").exists():
            raise IndexFileError(f"{folder} already holds an on-disk index; load it or pick another folder")
        try:
            faiss.index_factory(dim, config.factory, faiss.METRIC_L2)
        except RuntimeError as e:
            raise ValueError(f"FAISS rejects factory {config.factory!r} for dim={dim}: {e}") from None
        index = cls(folder, dim, config)
        (folder / "shards").mkdir(parents=True, exist_ok=True)
        index._write_meta()
        return index

    def train(self, sample: np.ndarray) -> None:
        """Train coarse centroids, OPQ and PQ codebooks on a sample; written as trained.faiss."""
        x = self._check(sample)
        need = min_train(self.config.factory)
        if len(x) < need:
            raise NotTrainedError(f"{self.config.factory} needs >= {need} training vectors, got {len(x)}")
        index = faiss.index_factory(self.dim, self.config.factory, faiss.METRIC_L2)
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        if isinstance(ivf, faiss.IndexIVFPQ):
            ivf.do_polysemous_training = (
                False  # Hamming-ordered codes only help polysemous search, unused here
            )
        index.train(x)
        with atomic_path(self.folder / "trained.faiss") as tmp:
            faiss.write_index(index, str(tmp))

    @property
    def is_trained(self) -> bool:
        return (self.folder / "trained.faiss").exists()

    @property
    def ntotal(self) -> int:
        return int(sum(s["rows"] for s in self._shards))

    @property
    def merged(self) -> bool:
        """Whether the index is merged and open for search."""
        return self._index is not None

    def shard_names(self) -> list[str]:
        return [s["name"] for s in self._shards]

    def add_shard(self, vectors: np.ndarray, ids: np.ndarray, name: str | None = None) -> str:
        """Encode one shard into its own IVF file and store its vectors; returns the shard name.

        A shard whose name is already recorded is skipped, so an interrupted build resumes.
        """
        if not self.is_trained:
            raise NotTrainedError("Train the index before adding shards")
        if self._index is not None:
            raise IndexFileError("The index is already merged; build a new one to add shards")
        name = name or f"{len(self._shards):05d}"
        if name in self.shard_names():
            return name
        x = self._check(vectors)
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) != len(x):
            raise ValueError(f"Got {len(x)} vectors but {len(ids)} ids")
        start = self.ntotal
        index = faiss.read_index(str(self.folder / "trained.faiss"))
        quantizer = faiss.downcast_index(faiss.extract_index_ivf(index).quantizer)
        if isinstance(quantizer, faiss.IndexHNSW):  # a stored graph keeps efSearch 16: far too narrow
            quantizer.hnsw.efSearch = max(self.config.quantizer_ef, quantizer.hnsw.efSearch)
        index.add_with_ids(x, np.arange(start, start + len(x), dtype=np.int64))
        base = self.folder / "shards" / name
        with atomic_path(base.with_suffix(".faiss")) as tmp:
            faiss.write_index(index, str(tmp))
        store, scale = _quantize(x, self.config.store_dtype)
        atomic_save_npy(base.with_suffix(".vec.npy"), store)
        if scale is not None:
            atomic_save_npy(base.with_suffix(".scale.npy"), scale)
        atomic_save_npy(base.with_suffix(".ids.npy"), ids)
        self._shards.append({"name": name, "rows": len(x)})
        self._write_meta()  # last: a shard is recorded only once all its files exist
        return name

    def merge(self) -> None:
        """Merge every shard's inverted lists into merged.faiss + merged.ivfdata, then open it."""
        from faiss.contrib.ondisk import merge_ondisk

        if not self._shards:
            raise IndexFileError(f"No shards to merge in {self.folder}")
        trained = faiss.read_index(str(self.folder / "trained.faiss"))
        shard_files = [str(self.folder / "shards" / f"{s['name']}.faiss") for s in self._shards]
        ivfdata = (self.folder / "merged.ivfdata").absolute()
        ivfdata.unlink(missing_ok=True)
        with _c_stdout_to_stderr():  # the merge printf()s its progress
            merge_ondisk(trained, shard_files, str(ivfdata))
        with atomic_path(self.folder / "merged.faiss") as tmp:
            faiss.write_index(trained, str(tmp))
        del trained
        meta = self._read_meta()
        meta["merged"] = True
        meta["ivfdata"] = str(ivfdata)  # the path merged.faiss holds; a moved folder is found on load
        atomic_write_json(self.folder / "config.json", meta)
        for f in shard_files:
            Path(f).unlink(missing_ok=True)
        self._open(mmap=True)

    # ---- search ------------------------------------------------------------------------------

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        nprobe: int | None = None,
        rescore_k: int | None = None,
        rows: np.ndarray | None = None,
        _selector: tuple | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query: PQ candidates, then exact inner product on stored vectors.

        Missing results are id -1 with score -inf. Excluded rows are never candidates. `rows`
        (sorted, none excluded): search only these, exactly when few, else with nprobe widened
        for their share (indexes/allowed.py).
        """
        if self._index is None:
            raise IndexFileError("Merge or load the index before searching")
        q = self._check(queries)
        if rows is not None:
            return self._search_rows(q, k, rows, nprobe, rescore_k)
        kk = min(max(k, rescore_k or self.config.rescore_k), max(self.ntotal, 1))  # no more than it holds
        params, keep_alive = self._search_params(nprobe, _selector)
        _, rows = self._index.search(q, kk, params=params)
        del keep_alive
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        ids = np.full((len(q), k), -1, dtype=np.int64)
        for i in range(len(q)):
            cand = rows[i][rows[i] >= 0]
            if len(cand) == 0:
                continue
            cand = np.sort(cand)  # ascending rows read the mmap'd store sequentially
            exact = self._rows_vectors(cand) @ q[i]
            top = np.argsort(-exact, kind="stable")[:k]
            scores[i, : len(top)] = exact[top]
            ids[i, : len(top)] = self._rows_ids(cand[top])
        return scores, ids

    def _search_rows(
        self, q: np.ndarray, k: int, rows: np.ndarray, nprobe: int | None, rescore_k: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        ids = np.full((len(q), k), -1, dtype=np.int64)
        if len(rows) == 0:
            return scores, ids
        if len(rows) <= EXACT_MAX:  # the allowed rows' stored vectors, compared exactly
            exact = q @ self._rows_vectors(rows).T
            top = np.argsort(-exact, axis=1, kind="stable")[:, :k]
            scores[:, : top.shape[1]] = np.take_along_axis(exact, top, axis=1)
            ids[:, : top.shape[1]] = self._rows_ids(rows[top.reshape(-1)]).reshape(top.shape)
            return scores, ids
        fraction = len(rows) / max(self.ntotal, 1)
        wide = widened_nprobe(
            int(nprobe or self.config.nprobe), int(faiss.extract_index_ivf(self._index).nlist), fraction
        )
        allowed = Selector(rows)
        return self.search(q, k, nprobe=wide, rescore_k=rescore_k, _selector=(allowed, allowed.sel))

    def candidates(self, queries: np.ndarray, kk: int, *, nprobe: int | None = None) -> np.ndarray:
        """Rows of the PQ stage alone (before rescoring); for tests and diagnostics."""
        if self._index is None:
            raise IndexFileError("Merge or load the index before searching")
        params, keep_alive = self._search_params(nprobe)
        rows = self._index.search(self._check(queries), kk, params=params)[1]
        del keep_alive
        return rows

    def exclude(self, rows: np.ndarray) -> None:
        """Leave these rows (replacing any excluded before) out of every later search.

        For vectors removed after the merge: the index files stay as they are, and FAISS skips
        the rows while scanning, so a search still fills k results with live rows.
        """
        rows = np.unique(np.asarray(rows, dtype=np.int64).reshape(-1))
        if len(rows) and (rows[0] < 0 or rows[-1] >= self.ntotal):
            raise ValueError(f"Rows to exclude must lie in [0, {self.ntotal}), got {rows[0]}..{rows[-1]}")
        self._excluded = rows
        if len(rows):
            batch = faiss.IDSelectorBatch(rows)
            self._selector = (batch, faiss.IDSelectorNot(batch))  # the Not holds a raw pointer to batch
        else:
            self._selector = None

    @property
    def excluded(self) -> np.ndarray:
        """Sorted rows left out of searches."""
        return self._excluded.copy()

    def row_ids(self) -> np.ndarray:
        """The caller's id of every row, in row order, excluded rows included."""
        if self._ids:
            parts = [ids[np.arange(len(ids))] if isinstance(ids, RowFile) else ids for ids in self._ids]
        else:  # not opened (unmerged): read the shards' id files
            shards = self.folder / "shards"
            parts = [np.load(shards / f"{s['name']}.ids.npy", allow_pickle=False) for s in self._shards]
        return np.concatenate(parts).astype(np.int64, copy=False) if parts else np.zeros(0, np.int64)

    def _search_params(
        self, nprobe: int | None, selector: tuple | None = None
    ) -> tuple[faiss.SearchParameters, list]:
        """Per-call nprobe and exclusion (or the given allowed rows' selector, which already leaves
        excluded rows out); the list keeps the SWIG objects alive during the search."""
        ivf = faiss.SearchParametersIVF()
        ivf.nprobe = int(nprobe or self.config.nprobe)
        selector = selector if selector is not None else self._selector
        if selector is not None:
            ivf.sel = selector[1]
        if isinstance(self._index, faiss.IndexPreTransform):  # OPQ: the IVF parameters go one level down
            outer = faiss.SearchParametersPreTransform()
            outer.index_params = ivf
            return outer, [ivf, selector]
        return ivf, [selector]

    # ---- load --------------------------------------------------------------------------------

    @classmethod
    def load(cls, folder: str | Path, *, mmap: bool = True) -> OnDiskIndex:
        """Reopen a folder. mmap=True pages lists and vectors from disk; False copies them into RAM."""
        folder = Path(folder)
        meta = _read_json(folder / "config.json")
        if meta.get("format") != FORMAT_VERSION:
            raise IndexFileError(
                f"{folder}/config.json has format {meta.get('format')!r}, need {FORMAT_VERSION}"
            )
        fields = {f.name for f in dataclasses.fields(LargeIndexConfig)}
        config = LargeIndexConfig(**{k: v for k, v in meta["config"].items() if k in fields})
        index = cls(folder, int(meta["dim"]), config)
        index._shards = list(meta["shards"])
        if meta.get("merged"):
            index._open(mmap=mmap)
        return index

    def _open(self, *, mmap: bool) -> None:
        path = self.folder / "merged.faiss"
        if not path.exists() or not (self.folder / "merged.ivfdata").exists():
            raise IndexFileError(f"{path} or merged.ivfdata is missing; run merge() again")
        if self._read_meta().get("ivfdata") == str((self.folder / "merged.ivfdata").absolute()):
            index = faiss.read_index(str(path))  # merged.faiss names this very .ivfdata
        else:  # the folder moved: FAISS finds the data next to merged.faiss, and printf()s that it did
            with _c_stdout_to_stderr():
                index = faiss.read_index(str(path), faiss.IO_FLAG_ONDISK_SAME_DIR)
        ivf = faiss.extract_index_ivf(index)
        if not mmap:
            in_ram = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
            in_ram.merge_from(ivf.invlists, 0)
            ivf.replace_invlists(in_ram, True)
            in_ram.this.disown()
        quantizer = faiss.downcast_index(ivf.quantizer)
        if isinstance(quantizer, faiss.IndexHNSW):
            quantizer.hnsw.efSearch = max(self.config.quantizer_ef, self.config.nprobe)
        self._index, self._ivf = index, ivf
        shards = self.folder / "shards"
        self._stores, self._scales, self._ids = [], [], []

        def open_rows(path: Path) -> np.ndarray | RowFile:
            return RowFile(path) if mmap else np.load(path, allow_pickle=False)

        for s in self._shards:
            base = shards / s["name"]
            self._stores.append(open_rows(base.with_suffix(".vec.npy")))
            scale = base.with_suffix(".scale.npy")
            self._scales.append(np.load(scale, allow_pickle=False) if scale.exists() else None)
            self._ids.append(open_rows(base.with_suffix(".ids.npy")))
        self._offsets = np.cumsum([0] + [s["rows"] for s in self._shards]).astype(np.int64)

    # ---- internals ---------------------------------------------------------------------------

    def _rows_vectors(self, rows: np.ndarray) -> np.ndarray:
        """float32 (len(rows), dim) from the per-shard stores; rows must be sorted."""
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        shard = np.searchsorted(self._offsets, rows, side="right") - 1
        for s in np.unique(shard):
            sel = shard == s
            local = rows[sel] - self._offsets[s]
            v = np.asarray(self._stores[s][local], dtype=np.float32)
            if self._scales[s] is not None:
                v *= self._scales[s][local, None]
            out[sel] = v
        return out

    def _rows_ids(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty(len(rows), dtype=np.int64)
        shard = np.searchsorted(self._offsets, rows, side="right") - 1
        for s in np.unique(shard):
            sel = shard == s
            local = rows[sel] - self._offsets[s]
            order = np.argsort(local, kind="stable")
            got = np.empty(len(local), dtype=np.int64)
            got[order] = self._ids[s][local[order]]
            out[sel] = got
        return out

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"Expected vectors of shape (n, {self.dim}), got {x.shape}")
        return x

    def _read_meta(self) -> dict:
        return _read_json(self.folder / "config.json")

    def _write_meta(self) -> None:
        path = self.folder / "config.json"
        merged = _read_json(path).get("merged", False) if path.exists() else False
        atomic_write_json(
            path,
            {
                "format": FORMAT_VERSION,
                "dim": self.dim,
                "config": dataclasses.asdict(self.config),
                "shards": self._shards,
                "merged": merged,
            },
        )


def min_train(factory: str) -> int:
    """Training vectors `factory` needs: one per coarse list, 256 per PQ codebook."""
    import re

    ivf = re.search(r"IVF(\d+)", factory)
    return max(int(ivf.group(1)) if ivf else 1, 256)


def _quantize(x: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    """fp16 as is; int8 with a per-vector max-abs scale, so rescoring loses < 1% of a unit dot."""
    if dtype == "float16":
        return x.astype(np.float16), None
    scale = np.abs(x).max(axis=1).astype(np.float32) / _INT8_SCALE
    scale[scale == 0] = 1.0
    return np.round(x / scale[:, None]).astype(np.int8), scale


class RowFile:
    """Rows of a 2-D (or 1-D) .npy read on demand with pread: `rf[sorted_rows]`.

    Memory-mapping the store would let the kernel map neighbouring cached pages into the
    process on every fault (fault-around), so RSS grew by ~16 pages per rescored row;
    pread leaves the pages in the shared page cache and the process holds only what it copies.
    """

    def __init__(self, path: Path):
        with open(path, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(f)
            self._offset = f.tell()
        if fortran:
            raise IndexFileError(f"{path} is Fortran-ordered; stores are written C-ordered")
        self.shape, self.dtype = shape, np.dtype(dtype)
        self._row_bytes = self.dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
        self._fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return int(self.shape[0])

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        buf = bytearray(len(rows) * self._row_bytes)
        view = memoryview(buf)
        i = 0
        while i < len(rows):  # one read per run of consecutive rows
            j = i + 1
            while j < len(rows) and rows[j] == rows[j - 1] + 1:
                j += 1
            want = (j - i) * self._row_bytes
            got = os.preadv(
                self._fd,
                [view[i * self._row_bytes : j * self._row_bytes]],
                self._offset + int(rows[i]) * self._row_bytes,
            )
            if got != want:
                raise IndexFileError(f"Short read from a vector store: {got} of {want} bytes")
            i = j
        return np.frombuffer(buf, dtype=self.dtype).reshape((len(rows), *self.shape[1:]))

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)


@contextmanager
def _c_stdout_to_stderr() -> Iterator[None]:
    """Send what C code prints to stdout to stderr instead, so stdout stays the program's output
    (`mmrag search --json`). FAISS's on-disk code printf()s unconditionally."""
    libc = ctypes.CDLL(None)
    if sys.stdout is not None:
        sys.stdout.flush()
    libc.fflush(None)
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexFileError(f"{path} is missing; is this an on-disk index folder?") from None
    except (OSError, json.JSONDecodeError) as e:
        raise IndexFileError(f"{path} is unreadable: {e}") from None
