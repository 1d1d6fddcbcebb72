"""The REST server: one collection, its models loaded once, and the demo UI mounted at `/`.

    app = create_app("my.coll")          # uvicorn.run(app, host="127.0.0.1", port=7860)

Reads are open to this machine's own clients; writes (POST /index, the UI's Index tab) need the
token when one is set. Host, Origin and token checks are in mmrag/security.py; the routes
themselves, and how errors become 4xx answers, are in mmrag/routes.py.
POST /ask answers from the collection through the language model named by `llm` or, when none is
given, by the MMRAG_LLM_* environment read at each request (a dry run when nothing is configured).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from encoders.modelsets import ModelSet, resolve_model_set

from .api import Engine
from .collection import MANIFEST, Collection
from .errors import CollectionError, CollectionLockedError, ConfigError, QueryError
from .indexer import IndexCfg, IndexReport, Progress
from .ingest import IngestCfg
from .models import Models
from .rag import DEFAULT_K, Answer, LLMCfg, generate
from .routes import add_routes
from .routes_dupes import router as dupes_router
from .search import SearchResult
from .security import Guard, GuardMiddleware, check_index_paths, inside_roots
from .spec import MethodGuard

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


# --- the FastAPI app ------------------------------------------------------------------------
def create_app(
    collection_path: str | os.PathLike,
    *,
    models: Any = None,
    api_key: str | None = None,
    read_only: bool = False,
    ui: bool = True,
    service: Service | None = None,
    llm: LLMCfg | None = None,
    host: str = "127.0.0.1",
    allow_hosts: Sequence[str] = (),
    allow_index: Sequence[str | os.PathLike] = (),
) -> FastAPI:
    """The REST API over one collection, with the Gradio demo at `/` when `ui` (it needs mmrag[serve]).

    `api_key` is the token writes need (None: writes are open; `mmrag serve` always passes one
    unless --no-auth). `host` is the address bound: with `allow_hosts` it names the Host headers
    answered (mmrag/security.py). `allow_index` adds folders indexing may read to the collection's
    roots. `llm` fixes the language model for /ask; without it the MMRAG_LLM_* env is read per request.
    """
    from . import __version__

    svc = service or Service(
        collection_path, models=models, read_only=read_only, llm=llm, allow_index=allow_index
    )
    if llm is not None:
        svc.llm = llm
    if service is not None and allow_index:
        svc.allow_index = sorted({*svc.allow_index, *(os.path.realpath(d) for d in allow_index)})
    app = FastAPI(
        title="mmrag",
        version=__version__,
        description="Search images, code and text in one collection. Requests must use a Host name "
        "of this server and come from no other site's page; POST /index needs the server's token "
        "(X-API-Key, or the cookie set by opening the URL the server printed) unless started with "
        "--no-auth.",
        docs_url="/docs",
    )
    app.state.service = svc
    guard = Guard.for_bind(host, api_key, allow_hosts)
    app.state.guard = guard
    add_routes(app, svc, guard)
    app.include_router(dupes_router)  # GET /dupes (mmrag/routes_dupes.py)
    if ui:
        mount_ui(app, svc, api_key)
    app.add_middleware(MethodGuard)  # inner: 405 for a method no route of the path declares
    app.add_middleware(GuardMiddleware, guard=guard)  # outer: Host and Origin before anything
    return app


def mount_ui(app: FastAPI, svc: Service, api_key: str | None) -> None:
    """Mount the demo's Blocks at `/`; raises, naming what to install, rather than serve no page."""
    load_demo().app.mount(app, svc, api_key=api_key)


def load_demo():
    """The demo package, `mmrag_demo` (the top-level demo/ of a clone, installed with mmrag)."""
    import importlib

    from .extras import require_extra

    require_extra("serve", "The web UI")
    try:
        importlib.import_module("mmrag_demo.app")
    except ModuleNotFoundError as e:
        if e.name != "mmrag_demo":
            raise
        raise ConfigError(
            "The web UI's package mmrag_demo is not installed: reinstall mmrag "
            "(in a clone: pip install -e '.[serve]'), or pass --no-ui for the REST API alone"
        ) from e
    return importlib.import_module("mmrag_demo")
