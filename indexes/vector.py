"""A FAISS index keyed by arbitrary int64 ids, inner-product metric, any factory string.

Vectors are unit float32, so inner product is cosine. IVF indexes keep ids themselves;
every other factory is wrapped in an IndexIDMap. Indexes FAISS cannot remove from (HNSW)
keep tombstones: a dead flag per stored position, filtered out of results by over-fetching,
and the index is rebuilt once the dead pass COMPACT_FRACTION of what it stores.

An optional reduction (indexes/reduce.py) sits in front of FAISS: the index takes and is searched
with full vectors of `dim`, fits the reduction on its training sample, and stores codes of
`code_dim`; the fitted reduction is saved beside the FAISS file, so queries are reduced alike.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import faiss
import numpy as np

from indexes.allowed import (
    EXACT_MAX,
    HNSW_EXACT_FRACTION,
    Selector,
    as_allowed,
    exact_scan,
    exact_storage,
    present,
    search_params,
)
from indexes.atomic import atomic_path, atomic_save_npy, atomic_write_json
from indexes.errors import IndexFileError, NotTrainedError
from indexes.factory import min_training_vectors, validate_factory
from indexes.reduce import Reducer, load_reducer, save_reducer

FORMAT_VERSION = 1
COMPACT_FRACTION = 0.25  # past a quarter dead, over-fetching costs more than one rebuild of the graph
TRAIN_SAMPLE = 262_144  # vectors used to retrain on compaction: ample for 4096 lists or 256-centroid PQ
_ADD_CHUNK = 65_536  # rows per batch when moving vectors during compaction, to bound peak memory
_PARAM_HINT = (
    "IVF takes nprobe; HNSW takes efSearch and efConstruction; Refine(...) takes k_factor_rf; Flat takes none"
)


class VectorIndex:
    """Vectors to int64 ids: add, remove, search, save, load. Re-adding an id replaces its vector."""

    def __init__(
        self,
        dim: int,
        factory: str = "Flat",
        params: dict[str, float] | None = None,
        reducer: Reducer | None = None,
    ):
        if reducer is not None and reducer.in_dim != int(dim):
            raise ValueError(f"Reduction {reducer.spec} takes {reducer.in_dim}-d vectors, not {dim}-d")
        self._reducer = reducer
        self._code_dim = reducer.out_dim if reducer is not None else int(dim)
        validate_factory(factory, self._code_dim)
        self._dim = dim = int(dim)
        self._factory = factory
        self._params = _check_params(params)
        self._index = _build(self._code_dim, factory)
        self._tombstones = not _can_remove(self._index)
        self._dead = np.zeros(0, dtype=bool)  # (stored,) dead flag per position; tombstone mode only
        self._mmap_path: Path | None = None
        self._labels_cache: np.ndarray | None = None
        self._live_cache: np.ndarray | None = None
        self._apply_params(self._index)

    # ---- description -------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def factory(self) -> str:
        return self._factory

    @property
    def code_dim(self) -> int:
        """Dimensions FAISS stores per vector: `dim`, or fewer after a reduction."""
        return self._code_dim

    @property
    def reduction(self) -> str | None:
        """The reduction's spec (`pca:128`), or None when vectors are stored at full dimension."""
        return str(self._reducer.spec) if self._reducer is not None else None

    @property
    def reducer(self) -> Reducer | None:
        return self._reducer

    @property
    def params(self) -> dict[str, float]:
        return dict(self._params)

    @property
    def faiss_index(self) -> faiss.Index:
        """The FAISS object searched, for benchmarks against bare faiss; it still holds tombstoned rows."""
        return self._index

    @property
    def ntotal(self) -> int:
        """Live vectors: stored minus tombstoned."""
        return int(self._index.ntotal) - int(self._dead.sum())

    @property
    def is_trained(self) -> bool:
        return bool(self._index.is_trained) and (self._reducer is None or self._reducer.fitted)

    def __len__(self) -> int:
        return self.ntotal

    def __repr__(self) -> str:
        return f"VectorIndex(dim={self._dim}, factory={self._factory!r}, ntotal={self.ntotal})"

    def set_params(self, params: dict[str, float]) -> None:
        """Change search parameters (nprobe, efSearch, ...) in place; they are saved with the index."""
        merged = {**self._params, **_check_params(params)}
        self._apply_params(self._index, merged)
        self._params = merged

    # ---- ids ---------------------------------------------------------------------------------

    def ids(self) -> np.ndarray:
        """Sorted int64 ids of the live vectors."""
        return self._live_ids().copy()

    def __contains__(self, id_: object) -> bool:
        if isinstance(id_, bool) or not isinstance(id_, (int, np.integer)) or not -(2**63) <= id_ < 2**63:
            return False
        key = np.int64(id_)
        live = self._live_ids()
        pos = int(np.searchsorted(live, key))
        return pos < len(live) and live[pos] == key

    # ---- mutation ----------------------------------------------------------------------------

    def train(self, vectors: np.ndarray) -> None:
        """Fit the reduction and train the quantizers on a sample; a no-op for Flat and HNSW
        without a reduction, which need none."""
        if self.is_trained:
            return
        x = self._check_vectors(vectors)
        if self._reducer is not None and not self._reducer.fitted:
            self._reducer.fit(x)
        x = self._encode(x)
        if self._index.is_trained:
            return
        need = min_training_vectors(self._factory)
        if len(x) < need:
            raise NotTrainedError(
                f"Factory {self._factory!r} needs at least {need} training vectors, got {len(x)}; "
                f"train on a larger sample or pick a smaller factory (indexes.choose_factory)"
            )
        self._make_writable()
        try:
            self._index.train(x)
        except RuntimeError as e:
            raise NotTrainedError(
                f"Training factory {self._factory!r} on {len(x)} vectors failed: {e}"
            ) from e

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add (n,) int64 ids with (n, dim) float32 vectors; an id already present is replaced."""
        ids, x = self._check_batch(ids, vectors)
        if len(ids) == 0:
            return
        if not self.is_trained:
            self.train(x)
        x = self._encode(x)
        self._make_writable()
        self.remove(ids)
        self._index.add_with_ids(x, ids)
        if self._tombstones:
            self._dead = np.concatenate([self._dead, np.zeros(len(ids), dtype=bool)])
        # keep the id caches in step (O(n) copies) rather than rebuilding them (a sort) per batch
        if self._labels_cache is not None:
            self._labels_cache = np.concatenate([self._labels_cache, ids])
        if self._live_cache is not None:
            new = np.sort(ids)
            self._live_cache = np.insert(self._live_cache, np.searchsorted(self._live_cache, new), new)

    def remove(self, ids: np.ndarray) -> int:
        """Remove the given ids; returns how many were present. Unknown ids are ignored."""
        ids = _as_ids(np.atleast_1d(np.asarray(ids)))
        present = np.unique(ids[np.isin(ids, self._live_ids())])
        if len(present) == 0:
            return 0
        self._make_writable()
        live = self._live_ids()
        self._live_cache = np.delete(live, np.searchsorted(live, present))  # present is sorted and live
        if self._tombstones:
            self._dead |= np.isin(self._labels(), present)
            if self._dead.sum() > COMPACT_FRACTION * len(self._dead):
                self.compact()
        else:
            self._index.remove_ids(faiss.IDSelectorBatch(present))
            self._labels_cache = None  # FAISS compacted its id map
        return len(present)

    def compact(self) -> None:
        """Rebuild without tombstones (HNSW): reconstruct live vectors and add them to a fresh index."""
        if not self._tombstones or not self._dead.any():
            return
        self._make_writable()
        inner = faiss.downcast_index(self._index.index)
        live_pos = np.flatnonzero(~self._dead)
        labels = self._labels()
        fresh = _build(self._code_dim, self._factory)
        if not fresh.is_trained and len(live_pos):
            sample = np.sort(np.random.default_rng(0).permutation(live_pos)[:TRAIN_SAMPLE])
            fresh.train(_reconstruct(inner, sample))
        self._apply_params(fresh)
        if fresh.is_trained:
            for start in range(0, len(live_pos), _ADD_CHUNK):
                chunk = live_pos[start : start + _ADD_CHUNK]
                fresh.add_with_ids(_reconstruct(inner, chunk), labels[chunk])
        self._index = fresh
        self._dead = np.zeros(int(fresh.ntotal), dtype=bool)
        self._invalidate()

    # ---- search ------------------------------------------------------------------------------

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: scores float32 (m, k) and ids int64 (m, k), padded with -inf / -1.

        `allowed`: only these ids may be returned; FAISS skips the rest while searching
        (indexes/allowed.py), so up to k allowed results come back, none lost to post-filtering."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k must be a positive int, got {k!r}")
        k = int(k)
        q = self._check_vectors(queries)
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        out = np.full((len(q), k), -1, dtype=np.int64)
        if self.ntotal == 0 or len(q) == 0:
            return scores, out
        q = self._encode(q)
        if allowed is not None:
            self._search_allowed(q, k, allowed, scores, out)
            return scores, out
        if self._tombstones:
            self._search_tombstoned(q, k, scores, out)
            return scores, out
        dist, found = self._index.search(q, k)
        hit = found >= 0
        scores[hit] = dist[hit]
        out[hit] = found[hit]
        return scores, out

    def _search_tombstoned(self, q: np.ndarray, k: int, scores: np.ndarray, out: np.ndarray) -> None:
        """Search stored positions, drop dead ones, double the fetch for rows left short."""
        inner = self._index.index
        stored = int(inner.ntotal)
        labels = self._labels()
        fetch = min(stored, k + min(int(self._dead.sum()), k))
        rows = np.arange(len(q))
        while len(rows):
            dist, pos = inner.search(q[rows], fetch)
            ok = pos >= 0
            ok[ok] = ~self._dead[pos[ok]]
            done = (ok.sum(axis=1) >= k) | (fetch >= stored)
            take = np.argsort(~ok, axis=1, kind="stable")[:, :k]  # live columns first, in rank order
            keep = np.take_along_axis(ok, take, axis=1)
            chosen_pos = np.take_along_axis(pos, take, axis=1)
            chosen_ids = np.where(keep, labels[np.where(keep, chosen_pos, 0)], -1)
            chosen_scores = np.where(keep, np.take_along_axis(dist, take, axis=1), -np.inf)
            width = take.shape[1]
            out[rows[done], :width] = chosen_ids[done]
            scores[rows[done], :width] = chosen_scores[done]
            rows = rows[~done]
            fetch = min(stored, 2 * fetch)

    def _search_allowed(
        self, q: np.ndarray, k: int, allowed: np.ndarray, scores: np.ndarray, out: np.ndarray
    ) -> None:
        """Search only the allowed live ids: a selector over positions (IDMap) or ids (IVF), widened
        search settings, or an exact scan of the allowed vectors where the storage is exact."""
        ids = present(as_allowed(allowed), self._live_ids())
        if not len(ids):
            return
        fraction = len(ids) / max(self.ntotal, 1)
        if isinstance(self._index, faiss.IndexIDMap):
            positions = self._positions(ids)
            inner = self._index.index
            storage = exact_storage(inner)
            if storage is not None and (
                len(positions) <= EXACT_MAX or (storage is not inner and fraction <= HNSW_EXACT_FRACTION)
            ):
                dist, pos = exact_scan(storage, positions, q, k)
            else:
                sel = Selector(positions)
                params, keep = search_params(inner, sel.sel, fraction, self._params)
                dist, pos = inner.search(q, k, params=params)
                del keep
            hit = pos >= 0
            out[hit] = self._labels()[pos[hit]]
        else:  # a top-level IVF keeps the caller's ids itself
            sel = Selector(ids)
            params, keep = search_params(self._index, sel.sel, fraction, self._params)
            dist, found = self._index.search(q, k, params=params)
            del keep
            hit = found >= 0
            out[hit] = found[hit]
        scores[hit] = dist[hit]

    def _positions(self, ids: np.ndarray) -> np.ndarray:
        """Stored positions of live ids (IDMap indexes), sorted."""
        labels = self._labels()
        n_dead = int(self._dead.sum())
        cache = getattr(self, "_order_cache", None)  # (labels it was built from, dead count, order)
        if cache is None or cache[0] is not labels or cache[1] != n_dead:
            order = np.argsort(labels, kind="stable")
            if n_dead:
                order = order[~self._dead[order]]
            cache = self._order_cache = (labels, n_dead, order, labels[order])
        order, sorted_labels = cache[2], cache[3]
        pos = order[np.searchsorted(sorted_labels, ids)]
        return np.sort(pos)

    # ---- persistence -------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the FAISS file at `path`, `<path>.json` and, with tombstones, `<path>.dead.npy`."""
        path = Path(path)
        with atomic_path(path) as tmp:
            if self._mmap_path is not None:
                # unchanged since it was mapped, and a mapped IVF cannot be re-serialised: copy the file
                shutil.copyfile(self._mmap_path, tmp)
            else:
                faiss.write_index(self._index, str(tmp))
        dead_name = None
        if self._dead.any():
            dead_name = path.name + ".dead.npy"
            atomic_save_npy(path.with_name(dead_name), np.flatnonzero(self._dead).astype(np.int64))
        reduce_meta: dict = {}
        reduce_path = path.with_name(path.name + ".reduce")
        if self._reducer is not None and self._reducer.fitted:
            sha = save_reducer(self._reducer, reduce_path)
            reduce_meta = {"reduce": self.reduction, "reduce_file": reduce_path.name, "reduce_sha256": sha}
        meta = {
            "format_version": FORMAT_VERSION,
            "factory": self._factory,
            "dim": self._dim,
            "metric": "inner_product",
            "params": self._params,
            "ntotal": self.ntotal,
            "stored": int(self._index.ntotal),
            "dead_file": dead_name,
            "code_dim": self._code_dim,
            **reduce_meta,
        }
        atomic_write_json(_sidecar(path), meta)
        if not reduce_meta:
            reduce_path.unlink(missing_ok=True)  # the reduction of an earlier save, no longer named
        stale = path.with_name(path.name + ".dead.npy")
        if dead_name is None and stale.exists():
            stale.unlink()  # tombstones of an earlier save, no longer named by the sidecar

    @classmethod
    def load(cls, path: str | os.PathLike[str], mmap: bool = False) -> VectorIndex:
        """Read an index written by save(); mmap=True maps it read-only (copied in on first change)."""
        path = Path(path)
        meta = _read_meta(path)
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        index = _read_faiss(path, flags)
        code_dim = int(meta.get("code_dim", meta["dim"]))
        if index.d != code_dim or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise IndexFileError(
                f"{path} holds a dim={index.d}, metric={index.metric_type} index but its sidecar says "
                f"dim={code_dim}, inner product"
            )
        self = cls.__new__(cls)
        self._dim = int(meta["dim"])
        self._code_dim = code_dim
        self._reducer = None
        if meta.get("reduce"):
            self._reducer = load_reducer(
                path.with_name(str(meta.get("reduce_file"))),
                str(meta["reduce"]),
                self._dim,
                str(meta.get("reduce_sha256")),
            )
            if self._reducer.out_dim != code_dim:
                raise IndexFileError(f"{path}: reduction {meta['reduce']} does not give {code_dim}-d codes")
        self._factory = str(meta["factory"])
        self._params = _check_params(meta.get("params"))
        self._index = index
        try:
            self._tombstones = not _can_remove(
                _build(self._code_dim, self._factory)
            )  # probe a fresh, empty one
        except (RuntimeError, ValueError) as e:
            raise IndexFileError(f"{path}: sidecar names an unusable factory {self._factory!r}: {e}") from e
        self._dead = _read_dead(path, meta, int(index.ntotal))
        self._mmap_path = path.resolve() if mmap else None
        self._labels_cache = None
        self._live_cache = None
        if self.ntotal != meta["ntotal"] or index.ntotal != meta["stored"]:
            raise IndexFileError(
                f"{path} holds {index.ntotal} stored / {self.ntotal} live vectors but its sidecar says "
                f"{meta['stored']} / {meta['ntotal']}: the files come from different saves"
            )
        self._apply_params(index)
        return self

    # ---- internals ---------------------------------------------------------------------------

    def _make_writable(self) -> None:
        """An mmap'd index is read-only: read it fully into memory before the first change."""
        if self._mmap_path is None:
            return
        index = _read_faiss(self._mmap_path, 0)
        if index.ntotal != self._index.ntotal or index.d != self._code_dim:
            raise IndexFileError(f"{self._mmap_path} changed on disk since it was mapped; load it again")
        self._apply_params(index)
        self._index = index
        self._mmap_path = None
        self._invalidate()

    def _apply_params(self, index: faiss.Index, params: dict[str, float] | None = None) -> None:
        space = faiss.ParameterSpace()
        for name, value in (self._params if params is None else params).items():
            try:
                space.set_index_parameter(index, name, float(value))
            except RuntimeError:
                raise ValueError(
                    f"Parameter {name}={value!r} does not apply to factory {self._factory!r} ({_PARAM_HINT})"
                ) from None

    def _invalidate(self) -> None:
        self._labels_cache = None
        self._live_cache = None
        self._order_cache = None

    def _labels(self) -> np.ndarray:
        """Id of each stored position (IDMap indexes)."""
        if self._labels_cache is None:
            self._labels_cache = faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)
        return self._labels_cache

    def _live_ids(self) -> np.ndarray:
        if self._live_cache is None:
            if isinstance(self._index, faiss.IndexIDMap):
                live = self._labels()[~self._dead] if self._tombstones else self._labels()
            else:
                live = _ivf_ids(self._index)
            self._live_cache = np.sort(live)
        return self._live_cache

    def _check_vectors(self, vectors: np.ndarray) -> np.ndarray:
        return check_vectors(vectors, self._dim)

    def _encode(self, x: np.ndarray) -> np.ndarray:
        """Checked full vectors to what FAISS stores: reduced (unit) where there is a reduction."""
        return x if self._reducer is None else self._reducer.transform(x)

    def _check_batch(self, ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = _as_ids(np.atleast_1d(np.asarray(ids)))
        x = self._check_vectors(vectors)
        if len(ids) != len(x):
            raise ValueError(f"Got {len(ids)} ids for {len(x)} vectors")
        if len(np.unique(ids)) != len(ids):
            uniq, counts = np.unique(ids, return_counts=True)
            raise ValueError(f"Duplicate ids in one add: {uniq[counts > 1][:10].tolist()}")
        if (ids == -1).any():
            raise ValueError("Id -1 is reserved: search pads missing results with it")
        return ids, x


def _as_ids(ids: np.ndarray) -> np.ndarray:
    if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
        raise ValueError(f"Ids must be a 1-D integer array, got shape {ids.shape} dtype {ids.dtype}")
    return np.ascontiguousarray(ids, dtype=np.int64)


def _check_params(params: dict[str, float] | None) -> dict[str, float]:
    params = dict(params or {})
    for name, value in params.items():
        if not isinstance(name, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"Index parameters map names to numbers ({_PARAM_HINT}); got {name!r}={value!r}")
    return params


def _build(dim: int, factory: str) -> faiss.Index:
    """A top-level IVF keeps its own ids; everything else (Flat, HNSW, an IVF under Refine) gets an
    IndexIDMap so ids can be any int64."""
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.try_extract_index_ivf(index)
    core = faiss.downcast_index(ivf if ivf is not None else index)
    if hasattr(core, "do_polysemous_training"):
        # polysemous codes only serve polysemous_ht search, which is off; their training is 50x the PQ's
        core.do_polysemous_training = False
    top_is_ivf = ivf is not None and isinstance(faiss.downcast_index(index), faiss.IndexIVF)
    if not top_is_ivf and not isinstance(index, faiss.IndexIDMap):  # e.g. IVF under Refine(...)
        index = faiss.IndexIDMap(index)
    return index


def _can_remove(index: faiss.Index) -> bool:
    """Ask FAISS itself: removing nothing raises where removal is not implemented."""
    try:
        index.remove_ids(faiss.IDSelectorBatch(np.zeros(0, dtype=np.int64)))
    except RuntimeError:
        return False
    return True


def _reconstruct(inner: faiss.Index, positions: np.ndarray) -> np.ndarray:
    return inner.reconstruct_batch(np.ascontiguousarray(positions, dtype=np.int64))


def _ivf_ids(index: faiss.Index) -> np.ndarray:
    invlists = faiss.extract_index_ivf(index).invlists
    parts = []
    for list_no in range(invlists.nlist):
        size = invlists.list_size(list_no)
        if size:
            ptr = invlists.get_ids(list_no)
            parts.append(faiss.rev_swig_ptr(ptr, size).astype(np.int64, copy=True))
            invlists.release_ids(list_no, ptr)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _read_meta(path: Path) -> dict:
    meta_path = _sidecar(path)
    if not path.is_file():
        raise IndexFileError(f"No index file at {path}")
    if not meta_path.is_file():
        raise IndexFileError(f"No sidecar {meta_path} next to {path}; VectorIndex.save writes both")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IndexFileError(f"Unreadable sidecar {meta_path}: {e}") from e
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise IndexFileError(f"{meta_path} has format_version {version!r}; this code reads {FORMAT_VERSION}")
    missing = [key for key in ("factory", "dim", "ntotal", "stored") if key not in meta]
    if missing:
        raise IndexFileError(f"{meta_path} lacks keys {missing}")
    return meta


def _read_faiss(path: Path, flags: int) -> faiss.Index:
    try:
        return faiss.read_index(str(path), flags)
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[0][-200:] if str(e).strip() else repr(e)
        raise IndexFileError(f"Corrupt or unreadable FAISS file {path}: {reason}") from e


def _read_dead(path: Path, meta: dict, stored: int) -> np.ndarray:
    dead = np.zeros(stored, dtype=bool)
    if not meta.get("dead_file"):
        return dead
    dead_path = path.with_name(str(meta["dead_file"]))
    try:
        positions = np.load(dead_path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise IndexFileError(f"Unreadable tombstone file {dead_path}: {e}") from e
    if (
        positions.ndim != 1
        or positions.dtype != np.int64
        or (positions < 0).any()
        or (positions >= stored).any()
    ):
        raise IndexFileError(f"{dead_path} does not hold positions below {stored} as int64")
    dead[positions] = True
    return dead


def check_vectors(vectors: np.ndarray, dim: int) -> np.ndarray:
    """A contiguous (n, dim) float32 matrix; one vector becomes one row. FAISS would crash or
    silently misread anything else, so bad shapes and NaN/inf raise ValueError here."""
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"Expected vectors of shape (n, {dim}), got {np.shape(vectors)}")
    if not np.isfinite(x).all():
        raise ValueError("Vectors contain NaN or infinity")
    return np.ascontiguousarray(x)
