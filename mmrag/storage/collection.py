"""One folder on disk: manifest.json, SQLite metadata and vectors, and the index files.

The SQLite store is the source of truth and commits per batch; FAISS and BM25 files are caches
rebuilt or caught up from it, and the manifest is written last, so a crash at any point leaves a
collection that opens and is consistent. One writer at a time holds `.lock`.

Each space's vectors are served either from an in-RAM VectorIndex (indexes/<space>.faiss) or,
when forced or when they would not fit the RAM budget (mmrag/storage/placement.py), from a memory-mapped
on-disk IVF-PQ index with an in-RAM delta (mmrag/storage/ondisk_space.py). A writer decides on save and
records the kind in the manifest; readers follow the manifest.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indexes.atomic import atomic_write_bytes
from indexes.errors import IndexFileError
from indexes.factory import choose_factory, default_params, min_training_vectors
from indexes.hubness import HubnessPrior
from indexes.hubness import refresh as refresh_prior
from indexes.layered import LayeredIndex
from indexes.lexical import LexicalIndex
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
        """The in-RAM factory: the user's, else chosen by size within the RAM budget."""
        o = self._override(space)
        if o and o != ONDISK:
            return o
        return choose_factory(n, self.manifest.dims[space], ram_budget_bytes=self.ram_budget())

    def placement(self, space: str, n: int) -> str:
        """RAM or DISK for n vectors in `space`: mmrag/storage/placement.py has the rule."""
        return choose_kind(self._override(space), n, self.manifest.dims[space], self.ram_budget())

    def vector_index(self, space: str) -> VectorIndex | LayeredIndex:
        """The index of a space, caught up with the store if the files are behind.

        An in-RAM VectorIndex, or for an on-disk space a LayeredIndex: the memory-mapped IVF-PQ
        (exact rescoring) with an in-RAM delta. Both search(queries, k) -> (scores, ids)."""
        if space not in self._vector:
            self._vector[space] = self._sync_vector(space)
        return self._vector[space]

    def _index_path(self, space: str) -> Path:
        return self.path / "indexes" / f"{space}.faiss"

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
        if idx is not None and current:
            return idx
        want = self.store.vector_ids(space)
        factory = self.factory_for(space, len(want))
        if len(want) < min_training_vectors(factory):
            factory = "Flat"  # too few vectors to train the quantizers: exact search is then cheap anyway
        if idx is None or idx.factory != factory:
            idx = VectorIndex(dim, factory, default_params(factory, len(want)))
            have = np.zeros(0, np.int64)
        if not idx.is_trained:  # train on a sample of everything, not on the first chunk added
            n_train = min(len(want), max(min_training_vectors(factory), TRAIN_SAMPLE))
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

    def _prior_path(self, space: str) -> Path:
        return self.path / "indexes" / f"{space}.hubness.npz"

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

    def _save_prior(self, space: str, idx: VectorIndex) -> HubnessPrior:
        """Bring the space's prior up to its index: new items computed, all of them past a share.

        The old prior is reused only while the space's manifest record stands: whoever replaces
        vectors under the same ids (`fit-joint`) drops that record, and with it the prior."""
        path = self._prior_path(space)
        old = None
        if path.exists() and "hubness" in self.manifest.indexes.get(space, {}):
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
                self.manifest.indexes[space] = {
                    "kind": RAM,
                    "factory": idx.factory,
                    "params": idx.params,
                    "count": int(idx.ntotal),
                    "hubness": {"k": prior.k, "count": len(prior.ids)},
                }
            self._vector[space] = idx
        lex = self.lexical_index()
        lex.save(str(self.path / "lexical"))
        self.manifest.generation = gen
        self.manifest.write(self.path / MANIFEST)
        for space in self.spaces():
            self._drop_stale(space)

    def _drop_stale(self, space: str) -> None:
        """Files of the kind a space left: on-disk folders not named, or the in-RAM file."""
        rec = self.manifest.indexes.get(space, {})
        ondisk_space.drop_stale(self.path / "indexes", space, rec.get("folder"))
        if rec.get("kind") == DISK:
            path = self._index_path(space)
            names = (path.name + ".json", path.name + ".dead.npy", self._prior_path(space).name)
            for stale in (path, *(path.with_name(n) for n in names)):
                stale.unlink(missing_ok=True)

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
