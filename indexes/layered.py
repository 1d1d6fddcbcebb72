"""An on-disk IVF-PQ base plus an in-RAM delta: a larger-than-RAM index that still takes adds and removes.

An OnDiskIndex is never rewritten once merged. Vectors added after its build go to `delta`, an
exact (Flat) VectorIndex in RAM; vectors removed after it become excluded base rows, which FAISS
skips while it scans the lists, so a search still returns k live results. A query searches both
and merges by score. The base rescores its candidates exactly from the stored vectors and the
delta is exact, so both give the same inner product and the scores compare directly. The owner
decides when the delta or the excluded rows have grown enough to rebuild the base
(mmrag/storage/ondisk_space.py does this for a collection).

Folder: the OnDiskIndex's own files (absent while there are too few vectors to train one),
plus delta.faiss (+ its .json sidecar) and removed.npy, each written atomically by save().
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from indexes.allowed import as_allowed
from indexes.atomic import atomic_save_npy
from indexes.errors import IndexFileError
from indexes.ondisk import OnDiskIndex
from indexes.vector import VectorIndex, check_vectors

DELTA_FILE = "delta.faiss"
REMOVED_FILE = "removed.npy"
PARAMS = ("nprobe", "rescore_k")  # the search settings of the base; the Flat delta has none


class LayeredIndex:
    """Base (OnDiskIndex or None) + delta (Flat VectorIndex) + excluded base rows; search, ids, save."""

    def __init__(
        self,
        folder: str | Path | None,
        dim: int,
        base: OnDiskIndex | None = None,
        delta: VectorIndex | None = None,
    ):
        if base is not None and (not base.merged or base.dim != dim):
            raise IndexFileError(f"The base index in {base.folder} is not merged or not {dim}-d")
        self.folder = Path(folder) if folder is not None else None  # None: in RAM only, cannot save
        self._dim = int(dim)
        self.base = base
        self.delta = delta if delta is not None else VectorIndex(dim, "Flat")
        self._params: dict[str, int] = {}

    # ---- description -------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def factory(self) -> str:
        """The base's FAISS factory string; "Flat" while all vectors are in the delta."""
        return self.base.config.factory if self.base is not None else "Flat"

    @property
    def params(self) -> dict[str, int]:
        """Search settings in effect: the base config's, overridden by set_params."""
        if self.base is None:
            return dict(self._params)
        return {"nprobe": self.base.config.nprobe, "rescore_k": self.base.config.rescore_k, **self._params}

    def set_params(self, params: dict[str, float]) -> None:
        """Override nprobe and/or rescore_k for later searches (not saved: the config holds defaults)."""
        for name, value in params.items():
            if name not in PARAMS:
                raise ValueError(f"Unknown parameter {name!r} for an on-disk index; valid: {PARAMS}")
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            self._params[name] = int(value)

    @property
    def base_rows(self) -> int:
        return self.base.ntotal if self.base is not None else 0

    @property
    def removed_rows(self) -> np.ndarray:
        return self.base.excluded if self.base is not None else np.zeros(0, np.int64)

    @property
    def ntotal(self) -> int:
        """Live vectors: base rows not removed, plus the delta."""
        return self.base_rows - len(self.removed_rows) + len(self.delta)

    def __len__(self) -> int:
        return self.ntotal

    def __repr__(self) -> str:
        return (
            f"LayeredIndex(dim={self._dim}, factory={self.factory!r}, base={self.base_rows}, "
            f"removed={len(self.removed_rows)}, delta={len(self.delta)})"
        )

    # ---- ids and changes ---------------------------------------------------------------------

    def base_ids(self) -> np.ndarray:
        """Id of every base row in row order, removed rows included."""
        return self.base.row_ids() if self.base is not None else np.zeros(0, np.int64)

    def ids(self) -> np.ndarray:
        """Sorted int64 ids of the live vectors."""
        parts = [self.delta.ids()]
        if self.base is not None:
            keep = np.ones(self.base_rows, dtype=bool)
            keep[self.removed_rows] = False
            parts.append(self.base_ids()[keep])
        return np.sort(np.concatenate(parts))

    def set_removed(self, rows: np.ndarray) -> None:
        """Base rows (not ids) whose vectors are gone; replaces the earlier set."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if self.base is None:
            if len(rows):
                raise ValueError("No base index to remove rows from")
            return
        self.base.exclude(rows)

    # ---- search ------------------------------------------------------------------------------

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product over base and delta: scores (m, k) float32, ids (m, k) int64,
        padded with -inf / -1. `allowed`: only these ids may be returned (indexes/allowed.py)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k must be a positive int, got {k!r}")
        k = int(k)
        q = check_vectors(queries, self._dim)
        allowed = as_allowed(allowed) if allowed is not None else None
        scores, ids = [], []
        if self.base is not None and self.base_rows > len(self.removed_rows):
            s, i = self.base.search(
                q,
                k,
                nprobe=self._params.get("nprobe"),
                rescore_k=self._params.get("rescore_k"),
                rows=self._allowed_rows(allowed) if allowed is not None else None,
            )
            scores.append(s)
            ids.append(i)
        if len(self.delta):
            s, i = self.delta.search(q, k, allowed=allowed)
            scores.append(s)
            ids.append(i)
        if not scores:
            return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        s, i = np.concatenate(scores, axis=1), np.concatenate(ids, axis=1)
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]  # -inf padding sorts last
        return np.take_along_axis(s, top, axis=1), np.take_along_axis(i, top, axis=1)

    def _allowed_rows(self, allowed: np.ndarray) -> np.ndarray:
        """Sorted base rows holding allowed ids, removed rows left out."""
        row_ids = self.base_ids()
        order = np.argsort(row_ids, kind="stable")
        sorted_ids = row_ids[order]
        pos = np.searchsorted(sorted_ids, allowed)
        ok = pos < len(sorted_ids)
        ok[ok] = sorted_ids[pos[ok]] == allowed[ok]
        rows = np.sort(order[pos[ok]])
        removed = self.removed_rows
        return rows[~np.isin(rows, removed)] if len(removed) else rows

    # ---- persistence -------------------------------------------------------------------------

    def save(self) -> None:
        """Write the delta and the removed rows into the folder; the base is already on disk."""
        if self.folder is None:
            raise IndexFileError("This layered index has no folder to save into")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.delta.save(self.folder / DELTA_FILE)
        atomic_save_npy(self.folder / REMOVED_FILE, self.removed_rows)

    @classmethod
    def load(cls, folder: str | Path, dim: int, *, mmap: bool = True) -> LayeredIndex:
        """Reopen a folder written by save(); the base is memory-mapped unless mmap=False."""
        folder = Path(folder)
        if not folder.is_dir():
            raise IndexFileError(f"No layered index folder at {folder}")
        base = OnDiskIndex.load(folder, mmap=mmap) if (folder / "config.json").exists() else None
        if base is not None and not base.merged:
            raise IndexFileError(f"The on-disk index in {folder} was never merged (an interrupted build)")
        delta = VectorIndex.load(folder / DELTA_FILE) if (folder / DELTA_FILE).exists() else None
        if delta is not None and (delta.dim != dim or delta.factory != "Flat"):
            raise IndexFileError(f"{folder / DELTA_FILE} is not a {dim}-d Flat index")
        index = cls(folder, dim, base, delta)
        removed_path = folder / REMOVED_FILE
        if removed_path.exists():
            try:
                rows = np.load(removed_path, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise IndexFileError(f"Unreadable {removed_path}: {e}") from e
            if rows.ndim != 1 or rows.dtype != np.int64:
                raise IndexFileError(f"{removed_path} does not hold int64 rows")
            try:
                index.set_removed(rows)
            except ValueError as e:
                raise IndexFileError(f"{removed_path}: {e}") from e
        return index
