"""The service behind the REST routes and the UI: one collection, its models loaded once.

Reads (search, items, /dupes) run on a snapshot: the reader engine current when they start,
held by a count, so none waits for another. When the store's generation moves (a job or another
process committed), a new reader is opened and warmed outside the lock and swapped in under it;
the old one closes when its last read ends. Indexing runs as a job in its own thread
(mmrag/http/jobs.py) with a writer collection, one job at a time; the map, clusters and outliers
are jobs too (mmrag/http/explore_jobs.py). Both the routes and the demo UI call this object, never
the engine directly.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from encoders.modelsets import ModelSet, resolve_model_set
from mmrag.api import Engine
from mmrag.dupes import find_dupes
from mmrag.errors import CollectionError, CollectionLockedError, ConfigError, QueryError
from mmrag.http.explore_jobs import ExploreRunner
from mmrag.http.jobs import IndexJob, JobRunner, JobStopped
from mmrag.http.security import check_index_paths, inside_roots
from mmrag.indexing.indexer import IndexCfg, IndexReport, Progress
from mmrag.ingest import IngestCfg
from mmrag.models import Models
from mmrag.query.search import SearchResult
from mmrag.rag import DEFAULT_K, Answer, LLMCfg, generate
from mmrag.storage.collection import MANIFEST, Collection

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# a symlink inside an allowed folder may point anywhere: indexing on a request reads real files only;
# 256-item commits: searches see a job's progress, and a stop (SIGTERM) lands within one batch
SERVED_INDEX = IndexCfg(batch_items=256, ingest=IngestCfg(follow_symlinks=False))
REFRESH_EVERY_S = 1.0  # at most one reader reopen a second while another process or a job commits

IMAGE_SEARCH_HELP = (
    "Image search is off: this collection's models have no image encoder (CLIP). Pictures with a "
    "caption are found by it, and text and code search work. "
    "To search by image, fetch the weights on a machine with network (`hf download "
    "laion/CLIP-ViT-B-32-laion2B-s34B-b79K`, or let mmrag download them once; `mmrag models` lists "
    "what is missing), then index into a new collection with --models default; `mmrag demo` does that "
    "by itself once the weights are here. A collection keeps the models it was made with."
)


class _KeptModels:
    """The service's loaded models, lent to an indexing job: shared, but never forgotten.

    `Engine.index` drops CLIP's loaded encoder at each start (so a first run embeds its photos
    through the freshly exported towers); in a server every search holds that encoder, and
    rebuilding it per job, under the models' lock, stalled all searches for the rebuild (~0.5 s a
    job, measured with `mmrag bench serve`). The server loaded its encoders from the towers at
    start where they existed; on a model's very first run its photos go through torch instead.
    """

    def __init__(self, models: Models):
        self._models = models

    def __getattr__(self, name: str) -> Any:
        return getattr(self._models, name)

    def forget(self, role: str) -> None:
        pass


class _Reader:
    """One reader engine and how many reads hold it; closed once retired and released by all."""

    def __init__(self, engine: Engine, generation: int):
        self.engine = engine
        self.generation = generation
        self.users = 0
        self.retired = False


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
        engine = Engine.open(self.path, models=model_set)
        if loaded:
            engine = Engine(engine.collection, loaded)
        self.models = engine.models
        self._lock = threading.Lock()  # guards the swap of readers and their counts, nothing slow
        self._refreshing = False
        self._last_refresh = 0.0
        self.jobs = JobRunner()
        self.explore = ExploreRunner()  # the map, clusters and outliers, computed off the request path
        self._warm_models()
        self._warm(engine)
        self._reader = _Reader(engine, engine.collection.store.generation())

    # --- state ------------------------------------------------------------------------------
    def _warm_models(self) -> None:
        """Load every encoder now, so the first search is as fast as the rest."""
        for role in ("clip", "code", "text"):
            if self.models.has(role):
                self.models.get(role)

    @staticmethod
    def _warm(engine: Engine) -> None:
        """Load every index of a reader before it serves, so no search pays for it (or races it)."""
        coll = engine.collection
        for space in coll.spaces():
            coll.vector_index(space)
            coll.hubness_prior(space)
        coll.lexical_index()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Engine]:
        """The current reader engine, held until the block ends (a swap meanwhile does not close it)."""
        with self._lock:
            reader = self._reader
            reader.users += 1
        try:
            self._maybe_refresh(reader)
            yield reader.engine
        finally:
            with self._lock:
                reader.users -= 1
                done = reader.retired and reader.users == 0
            if done:
                reader.engine.close()

    @property
    def engine(self) -> Engine:
        """The current reader engine (for a caller that holds it briefly; reads use snapshot())."""
        return self._reader.engine

    def _maybe_refresh(self, reader: _Reader) -> None:
        """Reopen in the background when the store moved on; this read keeps the reader it has."""
        try:
            gen = reader.engine.collection.store.generation()
        except Exception:  # a closed or busy database: the next read asks again
            return
        with self._lock:
            due = time.monotonic() - self._last_refresh >= REFRESH_EVERY_S
            if gen == reader.generation or self._refreshing or not due or reader is not self._reader:
                return
            self._refreshing = True
        threading.Thread(target=self._refresh_locked_out, name="reader-refresh", daemon=True).start()

    def _refresh_locked_out(self) -> None:
        try:
            self.refresh()
        except Exception:  # the old reader keeps serving; the next read tries again
            pass
        finally:
            with self._lock:
                self._refreshing = False

    def refresh(self) -> None:
        """Open and warm a reader at the store's current generation, then swap it in."""
        with self._lock:
            self._last_refresh = time.monotonic()
        coll = Collection.open(self.path)
        try:
            gen = coll.store.generation()
            engine = Engine(coll, self.models)
            self._warm(engine)
        except BaseException:
            coll.close()
            raise
        with self._lock:
            old, self._reader = self._reader, _Reader(engine, gen)
            old.retired = True
            done = old.users == 0
        if done:
            old.engine.close()

    @property
    def image_search(self) -> bool:
        return self.models.has("clip")

    @property
    def banner(self) -> str | None:
        """What the UI should say about the models in use, or None when all is well."""
        if not self.image_search:
            return IMAGE_SEARCH_HELP
        return self.models.set.warning

    def stop_jobs(self) -> None:
        """Ask a running indexing job to stop after its current batch (SIGTERM), and the
        explorations at their next progress point; returns at once."""
        self.jobs.stop_all()
        self.explore.stop_all()

    def close(self, timeout: float | None = 120) -> None:
        """Stop the job (what it committed is saved) and the explorations, then close the reader."""
        self.jobs.stop_all()
        self.explore.stop_all()
        self.jobs.join(timeout)
        # daemon threads: a t-SNE between two of its progress points is not waited for long
        self.explore.join(10 if timeout is None else min(timeout, 10))
        with self._lock:
            reader = self._reader
            reader.retired = True
            done = reader.users == 0
        if done:
            reader.engine.close()

    # --- reads ------------------------------------------------------------------------------
    def search(self, query: str, images: Sequence[str] = (), **options) -> SearchResult:
        if images and not self.image_search:
            raise QueryError(IMAGE_SEARCH_HELP)
        with self.snapshot() as engine:
            return engine.search(query, images=images, **options)

    def check_filter(self, where: Any) -> None:
        """Raise the FilterError a search with this filter would raise (a field it does not know, a
        value of the wrong type), for a request answered without searching."""
        from mmrag.query.filtered import allowed_for

        if where is not None:
            with self.snapshot() as engine:
                allowed_for(engine.collection, where)

    def similar(self, item_id: int, k: int = 10) -> SearchResult:
        self.item(item_id)  # an unknown item is a LookupError (404), not a bad query
        with self.snapshot() as engine:
            return engine.similar(item_id, k)

    def items(self, ids: Sequence[int]) -> dict[int, dict]:
        ids = [i for i in ids if INT64_MIN <= i <= INT64_MAX]  # SQLite ids are int64; others exist nowhere
        with self.snapshot() as engine:
            return engine.collection.store.fetch_items(ids)

    def item(self, item_id: int) -> dict:
        row = self.items([item_id]).get(item_id)
        if row is None:
            raise LookupError(f"No item with id {item_id}")
        return row

    def stats(self) -> dict[str, Any]:
        with self.snapshot() as engine:
            stats = engine.collection.stats()
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
        """Text deltas then one Answer; retrieval holds the lock, the slow model call does not. A
        question without a letter or digit retrieves nothing and is answered as a dry run."""
        cfg = cfg or self.llm_cfg()
        if not any(ch.isalnum() for ch in question):  # nothing to search for, nothing to ask a model
            yield from generate(question, [], cfg=cfg, dry_run=True)
            return
        hits = self.search(question, k=k, modalities=tuple(modalities) if modalities else None).hits
        yield from generate(question, hits, cfg=cfg)

    def content_file(self, item_id: int) -> tuple[dict, Path | None]:
        """The item and its file, which must lie inside the collection's roots (None for a JSONL
        record, and for a document's text or code: its own chunk, not the PDF or notebook, is its content)."""
        row = self.item(item_id)
        source = row["image"] or row["source"]
        in_document = bool((row.get("meta") or {}).get("locator"))
        if row["modality"] != "image" and (source.endswith(".jsonl") or in_document):
            return row, None
        with self.snapshot() as engine:
            roots = list(engine.collection.manifest.roots)
            if row["modality"] == "image":  # a document's figure lives in the collection (ingest/pictures.py)
                roots.append(str(engine.collection.path / "pictures"))
        path = inside_roots(source, roots)
        if path is None:
            raise PermissionError(f"Item {item_id}'s file is outside the indexed folders")
        if not path.is_file():
            raise FileNotFoundError(f"Item {item_id}'s file {source} no longer exists")
        return row, path

    def document_file(self, item_id: int) -> tuple[dict, Path]:
        """The whole document a document's part comes from (the PDF of a page's chunk or figure, the
        notebook of a cell), inside the collection's roots, so a card can open it where the hit is."""
        row = self.item(item_id)
        if not (row.get("meta") or {}).get("locator"):
            raise LookupError(f"Item {item_id} is not part of a document (PDF, notebook)")
        with self.snapshot() as engine:
            roots = list(engine.collection.manifest.roots)
        path = inside_roots(row["source"], roots)
        if path is None:
            raise PermissionError(f"Item {item_id}'s document is outside the indexed folders")
        if not path.is_file():
            raise FileNotFoundError(f"Item {item_id}'s document {row['source']} no longer exists")
        return row, path

    def page_png(self, item_id: int, size: int) -> bytes:
        """The PDF page a hit sits on, as a PNG thumbnail (rendered in the parser's worker process)."""
        row, path = self.document_file(item_id)
        page = ((row.get("meta") or {}).get("locator") or {}).get("page")
        if path.suffix.lower() != ".pdf" or not page:
            raise LookupError(f"Item {item_id} is not on a PDF page")
        from mmrag.ingest.pdf import page_png

        return page_png(str(path), int(page), size)

    # --- writes -----------------------------------------------------------------------------
    def dupe_groups(
        self, modalities: Sequence[str] | None, threshold: float | None, limit: int
    ) -> list[dict[str, Any]]:
        """Near-duplicate groups as JSON-ready dicts, each member with its content URL (REST and UI)."""
        with self.snapshot() as engine:  # a snapshot: searches run on meanwhile, a swap waits for none
            found = find_dupes(engine.collection, modalities, threshold, limit)
        out = []
        for g in found:
            d = g.to_dict()
            for m in d["members"]:
                m["content_url"] = f"/items/{m['id']}/content"
            out.append(d)
        return out

    def index_roots(self) -> list[str]:
        """Where indexing may read: the collection's own roots and the folders allowed at start."""
        with self.snapshot() as engine:
            roots = list(engine.collection.manifest.roots)
        return sorted({*roots, *self.allow_index})

    def start_index(self, paths: Sequence[str]) -> IndexJob:
        """Check the paths and take the writer lock here (errors are the caller's), then index in a job."""
        if self.read_only:
            raise PermissionError("This server is read-only: indexing is off")
        check_index_paths(paths, self.index_roots())
        missing = [p for p in paths if not os.path.exists(p)]
        if not paths or missing:
            raise ConfigError(f"Nothing to index at {missing or 'no path'}: give existing folders or files")
        if self.jobs.busy:
            raise CollectionLockedError("An indexing run is already in progress; wait for it to finish")
        coll = Collection.open(self.path, write=True)  # CollectionLockedError if another process indexes
        try:
            return self.jobs.start(paths, lambda job: self._run_job(coll, job))
        except BaseException:
            coll.close()
            raise

    def _run_job(self, coll: Collection, job: IndexJob) -> IndexReport:
        """The job's thread: index with a writer engine sharing the loaded models; the reader then reopens."""
        try:
            try:
                engine = Engine(coll, _KeptModels(self.models))  # type: ignore[arg-type]
                return engine.index(list(job.paths), cfg=SERVED_INDEX, progress=job.progress)
            except JobStopped:
                coll.save()  # the batches committed so far, into the index files and the manifest
                raise
        finally:
            coll.close()
            with contextlib.suppress(Exception):  # else the old reader serves on, the next read retries
                self.refresh()  # searches after the job see all of it

    def index(self, paths: Sequence[str], progress: Progress | None = None) -> IndexReport:
        """Index paths as a job and wait for it, passing its progress on (the UI, `mmrag demo`)."""
        job = self.start_index(paths)
        while not job.ended.wait(0.2):
            if progress is not None and job.stage:
                progress(job.stage, job.done, job.total)
        if job.error is not None:
            raise job.error
        assert job.report is not None
        return job.report


def _model_set(spec: Any) -> ModelSet:
    return spec if isinstance(spec, ModelSet) else resolve_model_set(spec)
