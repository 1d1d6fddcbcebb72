"""The service behind the REST routes and the UI: one collection, its models loaded once.

Searches share one reader engine under a lock; indexing runs one job at a time. Both the
routes (mmrag/http/routes.py) and the demo UI call this object, never the engine directly.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from encoders.modelsets import ModelSet, resolve_model_set
from mmrag.api import Engine
from mmrag.dupes import find_dupes
from mmrag.errors import CollectionError, CollectionLockedError, ConfigError, QueryError
from mmrag.http.security import check_index_paths, inside_roots
from mmrag.indexing.indexer import IndexCfg, IndexReport, Progress
from mmrag.ingest import IngestCfg
from mmrag.models import Models
from mmrag.query.search import SearchResult
from mmrag.rag import DEFAULT_K, Answer, LLMCfg, generate
from mmrag.storage.collection import MANIFEST, Collection

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# a symlink inside an allowed folder may point anywhere: indexing on a request reads real files only
SERVED_INDEX = IndexCfg(ingest=IngestCfg(follow_symlinks=False))

IMAGE_SEARCH_HELP = (
    "Image search is off: the CLIP weights could not be loaded. To turn it on, let mmrag download them "
    "once from the Hugging Face hub (network needed; `hf download "
    "laion/CLIP-ViT-B-32-laion2B-s34B-b79K` also fills the cache), or point a model-set TOML at a local "
    'checkpoint (`clip = "clip:ViT-B-32@/path/to/open_clip_model.safetensors"`) and pass it with --models. '
    "`mmrag models` lists what is missing. Text and code search work meanwhile."
)


class Service:
    """One collection and its loaded models, shared by the REST routes and the UI.

    The reader engine is reopened when the store's generation moves (this server or another
    process indexed), so searches see committed batches without a restart.
    """

    def __init__(
        self,
        collection_path: str | os.PathLike,
        *,
        models: Any = None,
        read_only: bool = False,
        llm: LLMCfg | None = None,
        allow_index: Sequence[str | os.PathLike] = (),
    ):
        self.path = Path(collection_path).expanduser().absolute()
        self.read_only = read_only
        # folders indexing may read besides the collection's own roots (real paths, checked per run)
        self.allow_index = [os.path.realpath(os.path.expanduser(d)) for d in allow_index]
        self.llm = llm  # None: read the MMRAG_LLM_* environment at each question
        loaded = models if isinstance(models, Models) else None  # encoders already loaded by the caller
        model_set = loaded.set if loaded else models
        if not (self.path / MANIFEST).exists():
            if model_set is None:
                raise CollectionError(
                    f"No collection at {self.path}; create one with `mmrag index PATH -c {collection_path}` "
                    "or pass --models to start an empty one"
                )
            coll = Collection.open(self.path, write=True, create=True)
            try:  # an empty run records the model set and writes the manifest
                Engine(coll, loaded or Models(_model_set(model_set))).index([])
            finally:
                coll.close()
        self._engine = Engine.open(self.path, models=model_set)
        if loaded:
            self._engine = Engine(self._engine.collection, loaded)
        self.models = self._engine.models
        self._lock = threading.RLock()
        self._index_lock = threading.Lock()
        self._generation = self._engine.collection.store.generation()
        self._warm()

    # --- state ------------------------------------------------------------------------------
    def _warm(self) -> None:
        """Load every encoder and index now, so the first search is as fast as the rest."""
        for role in ("clip", "code", "text"):
            if self.models.has(role):
                self.models.get(role)
        coll = self._engine.collection
        for space in coll.spaces():
            coll.vector_index(space)
        coll.lexical_index()

    @property
    def engine(self) -> Engine:
        with self._lock:
            gen = self._engine.collection.store.generation()
            if gen != self._generation:
                old = self._engine
                self._engine = Engine(Collection.open(self.path), self.models)
                self._generation = gen
                old.close()
            return self._engine

    @property
    def image_search(self) -> bool:
        return self.models.has("clip")

    @property
    def banner(self) -> str | None:
        """What the UI should say about the models in use, or None when all is well."""
        if not self.image_search:
            return IMAGE_SEARCH_HELP
        return self.models.set.warning

    def close(self) -> None:
        with self._lock:
            self._engine.close()

    # --- reads ------------------------------------------------------------------------------
    def search(self, query: str, images: Sequence[str] = (), **options) -> SearchResult:
        if images and not self.image_search:
            raise QueryError(IMAGE_SEARCH_HELP)
        with self._lock:
            return self.engine.search(query, images=images, **options)

    def similar(self, item_id: int, k: int = 10) -> SearchResult:
        self.item(item_id)  # an unknown item is a LookupError (404), not a bad query
        with self._lock:
            return self.engine.similar(item_id, k)

    def items(self, ids: Sequence[int]) -> dict[int, dict]:
        ids = [i for i in ids if INT64_MIN <= i <= INT64_MAX]  # SQLite ids are int64; others exist nowhere
        with self._lock:
            return self.engine.collection.store.fetch_items(ids)

    def item(self, item_id: int) -> dict:
        row = self.items([item_id]).get(item_id)
        if row is None:
            raise LookupError(f"No item with id {item_id}")
        return row

    def stats(self) -> dict[str, Any]:
        with self._lock:
            stats = self.engine.collection.stats()
        stats["model_warning"] = self.banner
        stats["image_search"] = self.image_search
        return stats

    def llm_cfg(self) -> LLMCfg:
        """The endpoint to ask: the one given, else the environment as it is now (so no restart)."""
        return self.llm if self.llm is not None else LLMCfg.load()

    def ask(
        self,
        question: str,
        *,
        k: int = DEFAULT_K,
        modalities: Sequence[str] | None = None,
        cfg: LLMCfg | None = None,
    ) -> Iterator[str | Answer]:
        """Text deltas then one Answer; retrieval holds the lock, the slow model call does not."""
        cfg = cfg or self.llm_cfg()
        hits = self.search(question, k=k, modalities=tuple(modalities) if modalities else None).hits
        yield from generate(question, hits, cfg=cfg)

    def vectors(self, space: str = "joint"):
        """(ids, float32 matrix) of a space, with each id's modality, for maps and exports."""
        with self._lock:
            store = self.engine.collection.store
            ids, mat = store.vectors(space)
            rows = store.fetch_items(ids.tolist())
        return ids, mat, [rows[i]["modality"] if i in rows else "" for i in ids.tolist()]

    def content_file(self, item_id: int) -> tuple[dict, Path | None]:
        """The item and its file, which must lie inside the collection's roots (None for JSONL)."""
        row = self.item(item_id)
        source = row["image"] or row["source"]
        if row["modality"] != "image" and source.endswith(".jsonl"):
            return row, None
        with self._lock:
            roots = list(self.engine.collection.manifest.roots)
        path = inside_roots(source, roots)
        if path is None:
            raise PermissionError(f"Item {item_id}'s file is outside the indexed folders")
        if not path.is_file():
            raise FileNotFoundError(f"Item {item_id}'s file {source} no longer exists")
        return row, path

    # --- writes -----------------------------------------------------------------------------
    def dupe_groups(
        self, modalities: Sequence[str] | None, threshold: float | None, limit: int
    ) -> list[dict[str, Any]]:
        """Near-duplicate groups as JSON-ready dicts, each member with its content URL (REST and UI)."""
        with self._lock:  # the reader lock: the engine may be swapped by a newer generation
            found = find_dupes(self.engine.collection, modalities, threshold, limit)
        out = []
        for g in found:
            d = g.to_dict()
            for m in d["members"]:
                m["content_url"] = f"/items/{m['id']}/content"
            out.append(d)
        return out

    def index_roots(self) -> list[str]:
        """Where indexing may read: the collection's own roots and the folders allowed at start."""
        with self._lock:
            roots = list(self.engine.collection.manifest.roots)
        return sorted({*roots, *self.allow_index})

    def index(self, paths: Sequence[str], progress: Progress | None = None) -> IndexReport:
        """Index paths with a writer engine sharing the loaded models; the reader then reopens."""
        if self.read_only:
            raise PermissionError("This server is read-only: indexing is off")
        check_index_paths(paths, self.index_roots())
        missing = [p for p in paths if not os.path.exists(p)]
        if not paths or missing:
            raise ConfigError(f"Nothing to index at {missing or 'no path'}: give existing folders or files")
        if not self._index_lock.acquire(blocking=False):
            raise CollectionLockedError("An indexing run is already in progress; wait for it to finish")
        try:
            coll = Collection.open(self.path, write=True)
            try:
                return Engine(coll, self.models).index(list(paths), cfg=SERVED_INDEX, progress=progress)
            finally:
                coll.close()
        finally:
            self._index_lock.release()


def _model_set(spec: Any) -> ModelSet:
    return spec if isinstance(spec, ModelSet) else resolve_model_set(spec)
