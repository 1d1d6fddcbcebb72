"""Fewer dimensions per vector, fitted on a sample of the collection's own vectors.

A reduction is a spec string, `KIND:DIM` (`pca:128`, `mrl:256`, `rp:64`, `umap:16`), and a fitted
state saved beside the index, so a query is reduced exactly as the stored vectors were. Every
reduction ends with an L2 normalisation: the index scores inner products, and on unit vectors
those are the cosines the rest of mmrag expects.

Kinds, one registry entry each:
- `pca`: the top DIM principal axes of the centred sample (a DIM x dim matrix and a mean).
- `mrl`: the first DIM coordinates, for models trained for it (Matryoshka representation
  learning); other models' leading coordinates carry no more than any others, so asking for it
  on them raises NotMatryoshkaError. Nothing to fit.
- `rp`: a seeded Gaussian random projection, the baseline any fitted reduction must beat.
- `umap`: umap-learn's UMAP (cosine input metric), which can place new points with `transform`;
  needs the `umap` extra. It is measured by `mmrag bench reduce` but never stored with a space:
  a fitted UMAP saves only as a pickle, and unpickling a file of a collection would let whoever
  made the collection run code on the machine that opens it (mmrag unpickles no collection file).

t-SNE is absent on purpose: it cannot place a new query (docs/compression.md).
"""

from __future__ import annotations

import hashlib
import io
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from indexes.atomic import atomic_write_bytes
from indexes.errors import IndexFileError, NotMatryoshkaError, ReductionError

UMAP_FIT_MAX = 20_000  # UMAP's fit is superlinear; beyond this sample it costs minutes and adds little
RP_SEED = 0  # the projection is saved, so the seed only makes a rebuild reproducible
_SPEC_RE = re.compile(r"^\s*([a-z]+)\s*:\s*(\d+)\s*$")


@dataclass(frozen=True)
class ReduceSpec:
    """A parsed `KIND:DIM`."""

    kind: str
    dim: int

    def __str__(self) -> str:
        return f"{self.kind}:{self.dim}"


def parse_reduce(spec: str) -> ReduceSpec:
    """'pca:128' -> ReduceSpec('pca', 128); ReductionError naming the valid kinds otherwise."""
    m = _SPEC_RE.match(spec or "") if isinstance(spec, str) else None
    if m is None or m.group(1) not in REDUCERS or int(m.group(2)) < 1:
        raise ReductionError(
            f"Bad reduction {spec!r}: write it as KIND:DIM with DIM >= 1, kinds: {sorted(REDUCERS)} "
            "(e.g. pca:128)"
        )
    return ReduceSpec(m.group(1), int(m.group(2)))


def check_reduce(spec: str | ReduceSpec, in_dim: int, *, matryoshka: bool = False) -> ReduceSpec:
    """The parsed spec if it can reduce vectors of `in_dim`; ReductionError (or its subclass
    NotMatryoshkaError) saying why not."""
    s = parse_reduce(spec) if isinstance(spec, str) else spec
    if s.dim >= in_dim:
        raise ReductionError(f"Reduction {s} must keep fewer than the {in_dim} dimensions the vectors have")
    if s.kind == "mrl" and not matryoshka:
        raise NotMatryoshkaError(
            f"Reduction {s} keeps the first {s.dim} coordinates, which only a model trained for it "
            "(Matryoshka) supports; this space's model is not declared Matryoshka. Use pca:"
            f'{s.dim}, or mark the encoder in the model set: matryoshka = ["SPEC"]'
        )
    return s


class Reducer(ABC):
    """Fit on a sample, then map (n, in_dim) float32 to unit (n, out_dim) float32."""

    kind: ClassVar[str]
    pickled: ClassVar[bool] = False  # its fitted state is a Python object, not plain arrays: never stored

    def __init__(self, in_dim: int, out_dim: int):
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        self.fitted = False

    @property
    def spec(self) -> ReduceSpec:
        return ReduceSpec(self.kind, self.out_dim)

    def min_fit(self) -> int:
        """Sample vectors fit() needs."""
        return 0

    def fit(self, x: np.ndarray) -> Reducer:
        x = self._check(x)
        if len(x) < self.min_fit():
            raise ReductionError(
                f"Reduction {self.spec} needs at least {self.min_fit()} vectors to fit, got {len(x)}"
            )
        self._fit(x)
        self.fitted = True
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Unit (n, out_dim) vectors, as the index stores and searches them."""
        return normalize(self.project(x))

    def project(self, x: np.ndarray) -> np.ndarray:
        """The reduced coordinates before normalisation (a 2-d map's positions, for instance)."""
        if not self.fitted:
            raise ReductionError(f"Reduction {self.spec} is not fitted yet")
        return np.asarray(self._transform(self._check(x)), dtype=np.float32)

    @abstractmethod
    def _fit(self, x: np.ndarray) -> None: ...

    @abstractmethod
    def _transform(self, x: np.ndarray) -> np.ndarray: ...

    def arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as plain arrays (not for pickled kinds)."""
        return {}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what arrays() gave; a kind with nothing fitted takes nothing."""
        if arrays:
            raise IndexFileError(f"Reduction {self.spec} stores no arrays, got {sorted(arrays)}")

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"Expected vectors of shape (n, {self.in_dim}), got {x.shape}")
        return x


def normalize(y: np.ndarray) -> np.ndarray:
    """Rows to unit length; an all-zero row stays zero rather than becoming NaN."""
    y = np.ascontiguousarray(y, dtype=np.float32)
    norms = np.linalg.norm(y, axis=1, keepdims=True)
    return y / np.where(norms > 0, norms, 1.0)


class _Linear(Reducer):
    """y = (x - mean) @ matrix: PCA and random projection."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__(in_dim, out_dim)
        self.mean = np.zeros(in_dim, np.float32)
        self.matrix = np.zeros((in_dim, out_dim), np.float32)

    def _transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) @ self.matrix

    def arrays(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "matrix": self.matrix}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        mean, matrix = arrays["mean"], arrays["matrix"]
        if mean.shape != (self.in_dim,) or matrix.shape != (self.in_dim, self.out_dim):
            raise IndexFileError(f"Stored {self.spec} arrays have shapes {mean.shape}, {matrix.shape}")
        self.mean = mean.astype(np.float32)
        self.matrix = matrix.astype(np.float32)


class PCAReducer(_Linear):
    kind = "pca"

    def min_fit(self) -> int:
        return self.out_dim + 1  # a centred sample of n vectors spans at most n - 1 axes

    def _fit(self, x: np.ndarray) -> None:
        mean = x.mean(axis=0, dtype=np.float64)
        centred = x.astype(np.float64) - mean
        cov = centred.T @ centred / max(len(x) - 1, 1)
        values, vectors = np.linalg.eigh(cov)  # ascending
        top = vectors[:, np.argsort(values)[::-1][: self.out_dim]]
        # a deterministic sign per axis (largest coordinate positive), as sklearn's svd_flip does
        signs = np.sign(top[np.abs(top).argmax(axis=0), np.arange(top.shape[1])])
        self.matrix = (top * np.where(signs == 0, 1, signs)).astype(np.float32)
        self.mean = mean.astype(np.float32)
        self.explained = float(np.sort(values)[::-1][: self.out_dim].sum() / max(values.sum(), 1e-30))


class RandomProjection(_Linear):
    kind = "rp"

    def _fit(self, x: np.ndarray) -> None:
        rng = np.random.default_rng(RP_SEED)
        self.matrix = (rng.standard_normal((self.in_dim, self.out_dim)) / np.sqrt(self.out_dim)).astype(
            np.float32
        )
        self.mean = np.zeros(self.in_dim, np.float32)  # a projection of the raw vectors, no centring


class Truncate(Reducer):
    """Matryoshka: the leading coordinates, renormalised."""

    kind = "mrl"

    def _fit(self, x: np.ndarray) -> None:
        pass

    def _transform(self, x: np.ndarray) -> np.ndarray:
        return x[:, : self.out_dim]


class UMAPReducer(Reducer):
    """umap-learn's UMAP; its embedding is centred before the normalisation so the angle between
    two points reflects where they sit around the embedding's middle."""

    kind = "umap"
    pickled = True

    def min_fit(self) -> int:
        return max(self.out_dim + 2, 20)  # its spectral start needs more points than dimensions

    def _fit(self, x: np.ndarray) -> None:
        try:
            import umap
        except ImportError as e:
            raise ReductionError("Reduction umap needs umap-learn: pip install 'mmrag[umap]'") from e
        if len(x) > UMAP_FIT_MAX:
            x = x[np.sort(np.random.default_rng(0).choice(len(x), UMAP_FIT_MAX, replace=False))]
        n_neighbors = min(15, len(x) - 1)
        self.model = umap.UMAP(
            n_components=self.out_dim,
            n_neighbors=n_neighbors,
            metric="cosine",
            random_state=0,  # the same map on every fit: reproducible measurements
            n_jobs=1,  # a seed makes UMAP single-threaded anyway; said here, it does not warn
        ).fit(x)
        self.centre = self.model.embedding_.mean(axis=0).astype(np.float32)

    def _transform(self, x: np.ndarray) -> np.ndarray:
        return self.model.transform(x).astype(np.float32) - self.centre


REDUCERS: dict[str, type[Reducer]] = {
    cls.kind: cls for cls in (PCAReducer, Truncate, RandomProjection, UMAPReducer)
}


def make_reducer(spec: str | ReduceSpec, in_dim: int, *, matryoshka: bool = False) -> Reducer:
    """An unfitted reducer for `spec` on vectors of `in_dim` (checked as check_reduce does)."""
    s = check_reduce(spec, in_dim, matryoshka=matryoshka)
    return REDUCERS[s.kind](in_dim, s.dim)


# ---- persistence ---------------------------------------------------------------------------


_NOT_STORED = (
    "reduction {spec} cannot be stored with a space: its fitted model saves only as a pickle, which "
    "mmrag never loads from a collection; `mmrag bench reduce` measures it, and pca:D is stored"
)


def check_storable(spec: str | ReduceSpec) -> None:
    """ReductionError for a reduction a space cannot keep (UMAP), before anything is fitted."""
    s = parse_reduce(spec) if isinstance(spec, str) else spec
    if REDUCERS[s.kind].pickled:
        raise ReductionError(_NOT_STORED.format(spec=s))


def save_reducer(reducer: Reducer, path: str | Path) -> str:
    """Write the fitted state atomically; returns its sha256, which the index sidecar records so a
    reduction file from another save is caught on load."""
    if not reducer.fitted:
        raise ReductionError(f"Reduction {reducer.spec} is not fitted; nothing to save")
    if reducer.pickled:
        raise ReductionError(_NOT_STORED.format(spec=reducer.spec))
    buf = io.BytesIO()
    np.savez(buf, **reducer.arrays())
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def load_reducer(path: str | Path, spec: str, in_dim: int, sha256: str) -> Reducer:
    """The reducer save_reducer wrote; IndexFileError if the file is missing, altered or foreign."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise IndexFileError(f"Cannot read reduction file {path}: {e}") from e
    if hashlib.sha256(data).hexdigest() != sha256:
        raise IndexFileError(f"{path} is not the reduction its index was saved with (checksum differs)")
    s = parse_reduce(spec)
    cls = REDUCERS[s.kind]
    if cls.pickled:
        raise IndexFileError(f"{path}: {_NOT_STORED.format(spec=s)}")
    reducer = cls(in_dim, s.dim)
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        reducer.set_arrays({k: npz[k] for k in npz.files})
    reducer.fitted = True
    return reducer
