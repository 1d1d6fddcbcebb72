"""One folder on disk: manifest.json, SQLite metadata and vectors, and the index files.

The SQLite store is the source of truth and commits per batch; FAISS and BM25 files are caches
rebuilt or caught up from it, and the manifest is written last, so a crash at any point leaves a
collection that opens and is consistent. One writer at a time holds `.lock`.

Each space's vectors are served either from an in-RAM VectorIndex (indexes/<space>.faiss) or,
when forced or when they would not fit the RAM budget (mmrag/storage/placement.py), from a memory-mapped
on-disk IVF-PQ index with an in-RAM delta (mmrag/storage/ondisk_space.py). A writer decides on save and
records the kind in the manifest; readers follow the manifest.

An in-RAM space may store reduced vectors (indexes/reduce.py: `pca:128` ...), chosen per space by
`mmrag index --reduce`, the model set's `reduce`, or `mmrag compact`; the fitted reduction is saved
with the index, which reduces each query itself. The store keeps the full vectors, so a reduction
can be changed or dropped without re-embedding.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from encoders.modelsets import is_matryoshka
from indexes.atomic import atomic_write_bytes
from indexes.errors import IndexFileError, ReductionError
from indexes.factory import choose_factory, default_params, min_training_vectors, validate_factory
from indexes.hubness import HubnessPrior
from indexes.hubness import refresh as refresh_prior
from indexes.layered import LayeredIndex
from indexes.lexical import LexicalIndex
from indexes.reduce import Reducer, ReduceSpec, check_reduce, check_storable, make_reducer
from indexes.vector import VectorIndex
from mmrag.errors import CollectionError, CollectionLockedError, ConfigError
from mmrag.items import waits_for_clip
from mmrag.storage import ondisk_space
from mmrag.storage.placement import DISK, ONDISK, RAM, choose_kind, resolve_ram_budget
from mmrag.storage.store import SCHEMA_VERSION, Store

MANIFEST = "manifest.json"
SPACES = ("image", "caption", "code", "text", "joint")
TRAIN_SAMPLE = 200_000  # IVF/PQ training vectors: ~50 per list at 4096 lists, seconds of k-means


@dataclass
class Manifest:
    schema_version: int = SCHEMA_VERSION
    models: dict[str, Any] = field(default_factory=dict)  # the ModelSet as a dict
    dims: dict[str, int] = field(default_factory=dict)  # space -> vector dim
    joint: dict[str, Any] = field(default_factory=dict)  # space encoder and how each modality gets there
    # space -> kind ("ram" or "ondisk"), factory, params, count (+ folder and layer sizes on disk)
    indexes: dict[str, dict[str, Any]] = field(default_factory=dict)
    factory_overrides: dict[str, str] = field(default_factory=dict)  # space (or "*") -> factory or "ondisk"
    reductions: dict[str, str] = field(default_factory=dict)  # space (or "*") -> "pca:128" ..., or "none"
    ram_budget: int | None = None  # bytes per space's index, from `mmrag index --ram-budget`
    roots: list[str] = field(default_factory=list)  # folders/files indexed: content is served only from these
    generation: int = 0  # the store generation the index files reflect
    created: float = field(default_factory=time.time)

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as e:
            raise CollectionError(f"Cannot read {path}: {e}") from e
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise CollectionError(
                f"{path.parent} was written with collection schema {version}; this mmrag reads schema "
                f"{SCHEMA_VERSION}. Re-index into a new collection (mmrag index ... -c NEW)."
            )
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def write(self, path: Path) -> None:
        atomic_write_bytes(path, json.dumps(self.__dict__, indent=2, sort_keys=True).encode())


class Collection:
    """Open with `Collection.open(path)` to search, `Collection.open(path, write=True)` to index."""

    def __init__(self, path: Path, manifest: Manifest, store: Store, lock_fd: int | None):
        self.path = path
        self.manifest = manifest
        self.store = store
        self._lock_fd = lock_fd
        self._vector: dict[str, VectorIndex | LayeredIndex] = {}
        self._lexical: LexicalIndex | None = None
        self._priors: dict[str, HubnessPrior | None] = {}
        self._ram_budget: int | None = None  # this run's --ram-budget, ahead of $MMRAG_RAM_BUDGET

    # --- opening ----------------------------------------------------------------------------
    @classmethod
    def open(
        cls, path: str | os.PathLike, *, write: bool = False, create: bool = False, lock_timeout: float = 0.0
    ) -> Collection:
        root = Path(path).absolute()
        mpath = root / MANIFEST
        if not mpath.exists() and not create:
            raise CollectionError(
                f"No collection at {root} (no {MANIFEST}); create one with `mmrag index PATH -c {path}`"
            )
        if create:
            root.mkdir(parents=True, exist_ok=True)
            (root / "indexes").mkdir(exist_ok=True)
        lock_fd = _acquire_lock(root, lock_timeout) if write else None
        try:
            manifest = Manifest.read(mpath) if mpath.exists() else Manifest()
            store = Store(str(root / "meta.sqlite"), readonly=not write)
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        return cls(root, manifest, store, lock_fd)

    def close(self) -> None:
        self.store.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def writable(self) -> bool:
        return self._lock_fd is not None

    # --- model set --------------------------------------------------------------------------
    def bind_models(
        self, model_set_dict: dict[str, Any], dims: dict[str, int], joint: dict[str, Any]
    ) -> None:
        """Record the model set of a new collection, or check it matches the existing one."""
        if self.manifest.models:
            old = {k: self.manifest.models.get(k) for k in ("clip", "code", "text")}
            new = {k: model_set_dict.get(k) for k in ("clip", "code", "text")}
            if old != new:
                raise ConfigError(
                    f"Collection {self.path} was built with encoders {old}, not {new}. Vectors from "
                    "different models cannot be mixed: use the same --models, or index into a new collection."
                )
            return
        self.manifest.models = dict(model_set_dict)
        self.manifest.dims = dict(dims)
        self.manifest.joint = dict(joint)
        for (
            space
        ) in self.spaces():  # the model set's `reduce`, refused before any embedding if it cannot apply
            self.reduce_spec(space)

    # --- index caches -----------------------------------------------------------------------
    def spaces(self) -> list[str]:
        """The spaces this collection has, ensemble members (`code@2`) after their role's space."""
        dims = self.manifest.dims
        out: list[str] = []
        for space in SPACES:
            if space in dims:
                members = [d for d in dims if d.startswith(space + "@") and d.partition("@")[2].isdigit()]
                out += [space, *sorted(members, key=lambda d: int(d.partition("@")[2]))]
        return out

    def set_ram_budget(self, nbytes: int) -> None:
        """RAM one space's index may hold, for this run and (recorded) for later ones."""
        if nbytes <= 0:
            raise ConfigError(f"RAM budget must be positive, got {nbytes}")
        self._ram_budget = self.manifest.ram_budget = int(nbytes)

    def ram_budget(self) -> int:
        return resolve_ram_budget(self._ram_budget, self.manifest.ram_budget)

    def _override(self, space: str) -> str | None:
        o = self.manifest.factory_overrides
        return o.get(space) or o.get("*")

    def factory_for(self, space: str, n: int) -> str:
        """The in-RAM factory: the user's, else chosen by size (of the reduced codes) within the RAM budget."""
        o = self._override(space)
        if o and o != ONDISK:
            return o
        return choose_factory(n, self._code_dim(space), ram_budget_bytes=self.ram_budget())

    def placement(self, space: str, n: int) -> str:
        """RAM or DISK for n vectors in `space`: mmrag/storage/placement.py has the rule."""
        return choose_kind(self._override(space), n, self._code_dim(space), self.ram_budget())

    # --- reductions -------------------------------------------------------------------------
    def reduce_spec(self, space: str, spec: str | None = None) -> ReduceSpec | None:
        """The reduction `space` stores (`spec`, else the recorded choice: --reduce or compact, then
        the model set's `reduce`), checked against its dim and model; None for full vectors."""
        if spec is None:
            chosen = self.manifest.reductions
            from_set = self.manifest.models.get("reduce") or {}
            from_set = {"*": from_set} if isinstance(from_set, str) else from_set
            spec = next(
                (
                    c.get(k)
                    for c in (chosen, from_set)
                    for k in (space, "*")
                    if isinstance(c, dict) and c.get(k)
                ),
                None,
            )
        if spec is None or spec == "none":
            return None
        try:
            checked = check_reduce(spec, self.manifest.dims[space], matryoshka=self.matryoshka(space))
            check_storable(checked)
            return checked
        except ReductionError as e:
            raise ConfigError(f"Space {space!r}: {e}") from e

    def matryoshka(self, space: str) -> bool:
        """Whether the encoder of `space` was trained for truncation (encoders/modelsets.py)."""
        models = self.manifest.models
        role, _, n = space.partition("@")
        if role in ("image", "caption"):
            role = "clip"
        if role == "joint":
            spec = self.manifest.joint.get("spec")
        else:
            member = models.get(role)
            members = member if isinstance(member, list) else [member]
            spec = members[int(n) - 1] if n.isdigit() and int(n) <= len(members) else members[0]
        return is_matryoshka(spec, models.get("matryoshka") or ())

    def _code_dim(self, space: str) -> int:
        spec = self.reduce_spec(space)
        return spec.dim if spec is not None else self.manifest.dims[space]

    def _reduction_name(self, space: str, n: int) -> str | None:
        reducer = self._reducer(space, n)
        return str(reducer.spec) if reducer is not None else None

    def _reducer(self, space: str, n: int) -> Reducer | None:
        """An unfitted reducer for the space's reduction; None without one or below what it needs to fit
        (a few vectors are served at full dimension until there are enough)."""
        spec = self.reduce_spec(space)
        if spec is None:
            return None
        reducer = make_reducer(spec, self.manifest.dims[space], matryoshka=self.matryoshka(space))
        return reducer if n >= reducer.min_fit() else None

    def vector_index(self, space: str) -> VectorIndex | LayeredIndex:
        """The index of a space, caught up with the store if the files are behind.

        An in-RAM VectorIndex, or for an on-disk space a LayeredIndex: the memory-mapped IVF-PQ
        (exact rescoring) with an in-RAM delta. Both search(queries, k) -> (scores, ids)."""
        if space not in self._vector:
            self._vector[space] = self._sync_vector(space)
        return self._vector[space]

    def _index_path(self, space: str, rec: dict[str, Any] | None = None) -> Path:
        """The in-RAM index file the record names: `<space>.faiss`, or the fresh name compact() gave it."""
        rec = self.manifest.indexes.get(space, {}) if rec is None else rec
        name = rec.get("file")
        if not (isinstance(name, str) and _RAM_FILE.fullmatch(name) and name.startswith(space + ".")):
            name = f"{space}.faiss"
        return self.path / "indexes" / name

    def _sync_vector(self, space: str, *, writer: bool = False) -> VectorIndex | LayeredIndex:
        """A reader follows the kind the manifest records; a writer (saving) decides it anew."""
        rec = self.manifest.indexes.get(space, {})
        current = self.store.generation() == self.manifest.generation
        kind = rec.get("kind", RAM)
        if writer:
            n = rec.get("count") if current and isinstance(rec.get("count"), int) else None
            kind = self.placement(space, len(self.store.vector_ids(space)) if n is None else n)
        elif kind == DISK and not (self.path / "indexes" / str(rec.get("folder"))).is_dir():
            rec, current = self._newer_record(space, rec, current)
            kind = rec.get("kind", RAM)
        if kind == DISK:
            return ondisk_space.sync(
                self.store,
                self.path / "indexes",
                space,
                self.manifest.dims[space],
                rec,
                current=current,
                ram_budget=self.ram_budget() if writer else None,
            )
        return self._sync_ram(space, rec, current)

    def _newer_record(self, space: str, rec: dict[str, Any], current: bool) -> tuple[dict[str, Any], bool]:
        """A writer replaced the folder this reader's manifest names, and deleted it: take the space's
        entry from the manifest on disk now, rather than rebuilding the space in RAM."""
        try:
            fresh = Manifest.read(self.path / MANIFEST)
        except CollectionError:
            return rec, current
        new = fresh.indexes.get(space, {})
        if new.get("folder") == rec.get("folder"):
            return rec, current
        return new, self.store.generation() == fresh.generation

    def _sync_ram(self, space: str, rec: dict[str, Any], current: bool) -> VectorIndex:
        dim = self.manifest.dims[space]
        path = self._index_path(space)
        idx: VectorIndex | None = None
        if path.exists() and rec and rec.get("kind", RAM) == RAM:
            try:
                idx = VectorIndex.load(str(path))
            except Exception:  # a damaged cache is rebuilt from the store, never trusted
                idx = None
        if idx is not None and current and idx.reduction == self._reduction_name(space, idx.ntotal):
            return idx  # a reduction chosen since the save (--reduce with nothing new to index) rebuilds it
        want = self.store.vector_ids(space)
        factory = self.factory_for(space, len(want))
        if len(want) < min_training_vectors(factory):
            factory = "Flat"  # too few vectors to train the quantizers: exact search is then cheap anyway
        reducer = self._reducer(space, len(want))
        reduction = str(reducer.spec) if reducer is not None else None
        if idx is None or idx.factory != factory or idx.reduction != reduction:
            idx = VectorIndex(dim, factory, default_params(factory, len(want)), reducer=reducer)
            have = np.zeros(0, np.int64)
        if not idx.is_trained:  # train on a sample of everything, not on the first chunk added
            need = max(min_training_vectors(factory), reducer.min_fit() if reducer is not None else 0)
            n_train = min(len(want), max(need, TRAIN_SAMPLE))
            sample = np.sort(np.random.default_rng(0).choice(want, n_train, replace=False))
            idx.train(self.store.vectors(space, sample, dim)[1])
        else:
            have = idx.ids()
        gone = np.setdiff1d(have, want, assume_unique=True)
        if len(gone):
            idx.remove(gone)
        new = np.setdiff1d(want, have, assume_unique=True)
        for start in range(0, len(new), 50_000):  # bounded memory on big catch-ups
            ids, vecs = self.store.vectors(space, new[start : start + 50_000], dim)
            if len(ids):
                idx.add(ids, vecs)
        return idx

    def _prior_path(self, space: str, rec: dict[str, Any] | None = None) -> Path:
        """Beside the index it was computed from: `<space>.hubness.npz` for `<space>.faiss`."""
        return self._index_path(space, rec).with_suffix(".hubness.npz")

    def hubness_prior(self, space: str) -> HubnessPrior | None:
        """The space's neighbourhood-density prior (indexes/hubness.py), or None where there is none.

        A missing or damaged file means no correction, never a failed search: the prior is a cache."""
        if space not in self._priors:
            prior = None
            if "hubness" in self.manifest.indexes.get(space, {}):
                try:
                    prior = HubnessPrior.load(self._prior_path(space))
                except IndexFileError:
                    prior = None
            self._priors[space] = prior
        return self._priors[space]

    def _save_prior(self, space: str, idx: VectorIndex, rec: dict[str, Any] | None = None) -> HubnessPrior:
        """Bring the space's prior up to its index: new items computed, all of them past a share.

        The old prior is reused only while the space's manifest record stands: whoever replaces
        vectors under the same ids (`fit-joint`) drops that record, and with it the prior."""
        rec = self.manifest.indexes.get(space, {}) if rec is None else rec
        path = self._prior_path(space, rec)
        old = None
        if path.exists() and "hubness" in rec:
            try:
                old = HubnessPrior.load(path)
            except IndexFileError:
                old = None  # a damaged cache is recomputed, never trusted
        dim = self.manifest.dims[space]
        prior = refresh_prior(old, idx.ids(), lambda ids: self.store.vectors(space, ids, dim), idx.search)
        if prior is not old:
            prior.save(path)
        self._priors[space] = prior
        return prior

    def lexical_index(self) -> LexicalIndex:
        if self._lexical is None:
            path = self.path / "lexical"
            lex = None
            if path.exists() and self.store.generation() == self.manifest.generation:
                try:
                    lex = LexicalIndex.load(str(path))
                except Exception:
                    lex = None
            if lex is None:
                lex = LexicalIndex()
                pairs = list(self.store.iter_texts())
                if pairs:
                    lex.add(np.array([p[0] for p in pairs], np.int64), [p[1] for p in pairs])
            self._lexical = lex
        return self._lexical

    def save(self) -> None:
        """Bring every index file up to the store and write the manifest last.

        On-disk spaces build any new base in a fresh folder; the folders and in-RAM files the new
        manifest no longer names are deleted only after it is written."""
        if not self.writable:
            raise CollectionError("Collection opened read-only; open with write=True to save")
        gen = self.store.generation()
        self._vector.clear()  # re-sync from files + store so what is saved is what is committed
        self._lexical = None
        self._priors.clear()
        for space in self.spaces():
            idx = self._sync_vector(space, writer=True)
            if isinstance(idx, LayeredIndex):
                # no prior on disk-sized spaces: a k-NN pass over every item would cost more than
                # the whole build; their searches run uncorrected (docs/quality.md)
                idx.save()
                self.manifest.indexes[space] = ondisk_space.record(idx)
            else:
                idx.save(str(self._index_path(space)))
                prior = self._save_prior(space, idx)
                self.manifest.indexes[space] = self._ram_record(space, idx, prior)
            self._vector[space] = idx
        lex = self.lexical_index()
        lex.save(str(self.path / "lexical"))
        self.manifest.generation = gen
        self.manifest.write(self.path / MANIFEST)
        for space in self.spaces():
            self._drop_stale(space)

    def _ram_record(self, space: str, idx: VectorIndex, prior: HubnessPrior) -> dict[str, Any]:
        """The manifest entry of a saved in-RAM space; it keeps naming the file it was saved to."""
        rec = {
            "kind": RAM,
            "factory": idx.factory,
            "params": idx.params,
            "count": int(idx.ntotal),
            "hubness": {"k": prior.k, "count": len(prior.ids)},
        }
        name = self.manifest.indexes.get(space, {}).get("file")
        if self._index_path(space).name == name:
            rec["file"] = name
        if idx.reduction:
            rec["reduce"], rec["code_dim"] = idx.reduction, idx.code_dim
        return rec

    def compact(self, space: str, reduce: str | None, factory: str | None = None) -> dict[str, Any]:
        """Re-encode one in-RAM space from its stored vectors (no re-embedding): `reduce` ("pca:128",
        None for full vectors) and `factory` (None: chosen by size). Returns the new manifest entry.

        The new index goes to a fresh file name beside the old one, which keeps serving until the
        manifest naming the new one is written; a kill before that leaves the old index in use and
        the new files unnamed, deleted by the next save. The choice is recorded like --reduce."""
        if not self.writable:
            raise CollectionError("Collection opened read-only; open with write=True to compact")
        if space not in self.manifest.dims:
            raise ConfigError(f"No space {space!r} in {self.path}; it has {self.spaces()}")
        spec = self.reduce_spec(space, reduce or "none")
        if factory is not None:
            try:
                validate_factory(factory, spec.dim if spec else self.manifest.dims[space])
            except ValueError as e:
                raise ConfigError(f"Space {space!r}: {e}") from None
        reductions, overrides = dict(self.manifest.reductions), dict(self.manifest.factory_overrides)
        self.manifest.reductions[space] = str(spec) if spec else "none"
        if factory is not None:
            self.manifest.factory_overrides[space] = factory
        elif self.manifest.factory_overrides.get(space) != ONDISK:
            self.manifest.factory_overrides.pop(space, None)
        try:
            if self.placement(space, len(self.store.vector_ids(space))) == DISK:
                raise ConfigError(
                    f"Space {space!r} is served from disk (IVF-PQ with exact rescoring from full vectors); "
                    "compact re-encodes in-RAM spaces: raise --ram-budget or pass a smaller code"
                )
            self._vector.pop(space, None)
            idx = self._sync_ram(space, {}, False)  # a fresh build from the store, never the old file
            rec: dict[str, Any] = {"kind": RAM, "file": f"{space}.{secrets.token_hex(4)}.faiss"}
            idx.save(str(self._index_path(space, rec)))
            prior = self._save_prior(space, idx, rec)
        except BaseException:
            self.manifest.reductions, self.manifest.factory_overrides = reductions, overrides
            raise
        entry = {**self._ram_record(space, idx, prior), "file": rec["file"]}
        self.manifest.indexes[space] = entry
        self.manifest.write(self.path / MANIFEST)  # the switch: from here readers open the new index
        self._vector[space] = idx
        self._priors[space] = prior
        self._drop_stale(space)
        return entry

    def _drop_stale(self, space: str) -> None:
        """Files of the kind a space left: on-disk folders not named, and in-RAM index files (with
        their sidecars, reductions and priors) other than the one the manifest names."""
        rec = self.manifest.indexes.get(space, {})
        indexes = self.path / "indexes"
        ondisk_space.drop_stale(indexes, space, rec.get("folder"))
        keep = set()
        if rec.get("kind", RAM) == RAM:
            keep = {self._index_path(space).name, self._prior_path(space).name}
        for path in indexes.glob(f"{space}.*"):
            name = path.name
            base = name[: name.index(".faiss") + 6] if ".faiss" in name else name
            if _RAM_FILE.fullmatch(base) and base not in keep and name not in keep and path.is_file():
                path.unlink(missing_ok=True)

    # --- facts ------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        counts = self.store.counts()
        waiting = sum(1 for _, reason in self.store.errors() if waits_for_clip(reason))
        return {
            "path": str(self.path),
            "items": sum(counts.values()),
            "by_modality": counts,
            "sources": self.store.n_sources(),
            "errors": len(self.store.errors()) - waiting,  # files that failed
            "waiting": waiting,  # pictures that only need CLIP weights (mmrag/items.py)
            "models": self.manifest.models,
            "indexes": self.manifest.indexes,
            "joint": self.manifest.joint,
            "roots": self.manifest.roots,
            "generation": self.store.generation(),
            "index_generation": self.manifest.generation,
        }


# an in-RAM index file and what sits beside it: <space>[.<8 hex>].faiss, or the matching .hubness.npz
_RAM_FILE = re.compile(r"[A-Za-z0-9_@]+(?:\.[0-9a-f]{8})?\.(?:faiss|hubness\.npz)")


def _acquire_lock(root: Path, timeout: float) -> int:
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise CollectionLockedError(
                    f"Collection {root} is being written by another process; wait for it to finish "
                    "or pass --wait SECONDS"
                ) from None
            time.sleep(0.2)
