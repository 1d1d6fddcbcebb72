"""The REST server: one collection, its models loaded once, and the demo UI mounted at `/`.

    app = create_app("my.coll")          # uvicorn.run(app, host="127.0.0.1", port=7860)

Reads are open; writes (POST /index) need `X-API-Key` when an API key is set. Every bad request
gets a 4xx JSON answer `{"detail": "..."}`; library errors are mapped by type, never left to 500.
POST /ask answers from the collection through the language model named by `llm` or, when none is
given, by the MMRAG_LLM_* environment read at each request (a dry run when nothing is configured).
"""

from __future__ import annotations

import io
import json
import os
import secrets
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from encoders.base import EncoderError, WeightsNotFoundError
from encoders.modelsets import ModelSet, resolve_model_set

from .api import Engine
from .collection import MANIFEST, Collection
from .errors import CollectionError, CollectionLockedError, ConfigError, MMRagError, QueryError
from .fusion import weights_from
from .indexer import IndexReport, Progress
from .models import Models
from .rag import DEFAULT_K, Answer, LLMCfg, generate
from .rag.client import LLMAuthError, LLMError, LLMRateLimitError
from .search import MAX_K, SearchResult

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # a query image larger than this is not a photo but a mistake
THUMBNAIL_MAX = 1024  # largest thumbnail edge served; originals stay on disk
MAX_TEXT_BYTES = 2 * 1024 * 1024  # source text served per file; larger files are cut
MAX_JSON_BYTES = 1024 * 1024  # a search request body; queries are sentences or snippets, not files
IMAGE_SEARCH_HELP = (
    "Image search is off: the CLIP weights could not be loaded. To turn it on, let mmrag download them "
    "once from the Hugging Face hub (network needed; `huggingface-cli download "
    "laion/CLIP-ViT-B-32-laion2B-s34B-b79K` also fills the cache), or point a model-set TOML at a local "
    'checkpoint (`clip = "clip:ViT-B-32@/path/to/open_clip_model.safetensors"`) and pass it with --models. '
    "Text and code search work meanwhile."
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
    ):
        self.path = Path(collection_path).expanduser().absolute()
        self.read_only = read_only
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
        with self._lock:
            return self.engine.similar(item_id, k)

    def items(self, ids: Sequence[int]) -> dict[int, dict]:
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
    def index(self, paths: Sequence[str], progress: Progress | None = None) -> IndexReport:
        """Index paths with a writer engine sharing the loaded models; the reader then reopens."""
        if self.read_only:
            raise PermissionError("This server is read-only: indexing is off")
        missing = [p for p in paths if not os.path.exists(p)]
        if not paths or missing:
            raise ConfigError(f"Nothing to index at {missing or 'no path'}: give existing folders or files")
        if not self._index_lock.acquire(blocking=False):
            raise CollectionLockedError("An indexing run is already in progress; wait for it to finish")
        try:
            coll = Collection.open(self.path, write=True)
            try:
                return Engine(coll, self.models).index(list(paths), progress=progress)
            finally:
                coll.close()
        finally:
            self._index_lock.release()


def _model_set(spec: Any) -> ModelSet:
    return spec if isinstance(spec, ModelSet) else resolve_model_set(spec)


def inside_roots(path: str, roots: Sequence[str]) -> Path | None:
    """The real path of `path` when it lies in one of `roots` (after resolving links and `..`)."""
    real = Path(os.path.realpath(path))
    for root in roots:
        base = Path(os.path.realpath(root))
        if real == base or base in real.parents:
            return real
    return None


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
) -> FastAPI:
    """The REST API over one collection, with the Gradio demo at `/` when `ui` and demo/ exist.

    `llm` fixes the language model for /ask; without it the MMRAG_LLM_* env is read per request.
    """
    from . import __version__

    svc = service or Service(collection_path, models=models, read_only=read_only, llm=llm)
    if llm is not None:
        svc.llm = llm
    app = FastAPI(
        title="mmrag",
        version=__version__,
        description="Search images, code and text in one collection. Writes need X-API-Key when set.",
        docs_url="/docs",
    )
    app.state.service = svc
    add_routes(app, svc, api_key)
    if ui:
        mount_ui(app, svc, api_key)
    return app


def mount_ui(app: FastAPI, svc: Service, api_key: str | None) -> bool:
    """Mount the demo's Blocks at `/`; False (API only) when demo/ is not shipped alongside."""
    demo = load_demo()
    if demo is None:
        return False
    demo.app.mount(app, svc, api_key=api_key)
    return True


def load_demo():
    """The demo/ package of a clone, imported as `mmrag_demo` (it is not installed with mmrag)."""
    import importlib
    import importlib.util
    import sys

    if "mmrag_demo" in sys.modules:
        return sys.modules["mmrag_demo"]
    root = Path(__file__).resolve().parents[1] / "demo"
    if not (root / "__init__.py").is_file():
        return None
    spec = importlib.util.spec_from_file_location(
        "mmrag_demo", root / "__init__.py", submodule_search_locations=[str(root)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["mmrag_demo"] = module
    spec.loader.exec_module(module)
    importlib.import_module("mmrag_demo.app")
    return module


def report_dict(report: IndexReport) -> dict[str, Any]:
    d = asdict(report)
    d["errors"] = [{"path": p, "reason": r} for p, r in report.errors]
    return d


# --- REST routes ----------------------------------------------------------------------------
class SearchRequest(BaseModel):
    """POST /search as JSON; as multipart the same fields are form fields plus an `image` file."""

    model_config = ConfigDict(extra="forbid")
    query: str = Field("", description="text, a code snippet, or terms joined by ' + ' / ' - '")
    k: int = Field(10, ge=1, le=MAX_K)
    modalities: list[str] | None = Field(None, description="subset of image, code, text")
    weights: dict[str, float] | None = Field(None, description="route -> weight, e.g. {'lexical': 0.5}")
    fusion: str = "rrf"
    min_score: float | None = None
    hubness: float | None = Field(
        None, ge=0, le=1, description="weight of the neighbourhood-density correction; 0 turns it off"
    )
    path: str | None = Field(None, description="only sources matching this glob")


class AskRequest(BaseModel):
    """POST /ask: a question answered from the collection, streamed as server-sent events or not."""

    model_config = ConfigDict(extra="forbid")
    question: str = Field("", description="a question in words; the answer cites items as [n]")
    k: int = Field(DEFAULT_K, ge=1, le=MAX_K, description="items retrieved as context")
    modalities: list[str] | None = Field(None, description="subset of image, code, text")
    stream: bool = Field(False, description='SSE: `data: {"delta": ...}` events, then `{"answer": ...}`')


class IndexRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paths: list[str] = Field(..., min_length=1, description="folders or files on the server's disk")


class HTTPProblem(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _search_openapi() -> dict[str, Any]:
    form = {
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "k": {"type": "integer", "default": 10},
            "modalities": {"type": "string", "description": "comma list: image,code,text"},
            "weights": {"type": "string", "description": "e.g. code=2,lexical=0.5"},
            "path": {"type": "string"},
            "image": {
                "type": "string",
                "format": "binary",
                "description": f"max {MAX_UPLOAD_BYTES >> 20} MB",
            },
        },
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": SearchRequest.model_json_schema()},
                "multipart/form-data": {"schema": form},
            },
        }
    }


def add_routes(app: FastAPI, svc: Service, api_key: str | None) -> None:
    for exc in (MMRagError, EncoderError, LookupError, PermissionError, FileNotFoundError, HTTPProblem):
        app.add_exception_handler(exc, _error_response)

    @app.get("/health", summary="Is the server up, and what does it serve")
    def health() -> dict[str, Any]:
        s = svc.stats()
        return {
            "status": "ok",
            "items": s["items"],
            "models": svc.models.set.name,
            "image_search": s["image_search"],
        }

    @app.get("/stats", summary="Counts per modality, models, indexes and indexed roots")
    def stats() -> dict[str, Any]:
        return svc.stats()

    @app.post(
        "/search", summary="Search with text, code, an image, or a mix", openapi_extra=_search_openapi()
    )
    async def search(request: Request) -> dict[str, Any]:
        image = None
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            req, image = await _read_multipart(request)
        else:
            req = await _read_json(request, SearchRequest)
        try:
            if not req.query.strip() and image is None:
                raise HTTPProblem(400, "Empty query: send `query` text or an `image` file")
            options = dict(k=req.k, weights=req.weights, fusion=req.fusion, min_score=req.min_score)
            options.update(hubness=req.hubness)
            options.update(modalities=tuple(req.modalities) if req.modalities else None, path_glob=req.path)
            res = await run_in_threadpool(svc.search, req.query, [image] if image else [], **options)
        finally:
            if image:
                os.unlink(image)
        return _result(res)

    @app.post(
        "/ask",
        summary="Answer a question from the collection, citing items as [n]",
        description="Without a configured language model the answer is a dry run: the retrieved "
        "context and the exact request that would be sent, with a note on how to configure one.",
    )
    async def ask(request: Request) -> Response:
        req = await _read_json(request, AskRequest)
        if not req.question.strip():
            raise HTTPProblem(400, "Empty question: send `question` text")
        events = svc.ask(req.question, k=req.k, modalities=req.modalities)
        # the first event (a delta or a dry-run Answer) comes before the status line, so a failed
        # retrieval or an endpoint refusing the call is still a plain JSON error with its status
        first = await run_in_threadpool(next, events, None)
        if not req.stream:
            answer = first if isinstance(first, Answer) else await run_in_threadpool(_final, events)
            return JSONResponse(answer.to_dict())
        return StreamingResponse(
            _sse(first, events),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get("/items/{item_id}", summary="One item's metadata")
    def item(item_id: int) -> dict[str, Any]:
        row = svc.item(item_id)
        return {**row, "content_url": f"/items/{item_id}/content"}

    @app.get("/items/{item_id}/content", summary="An image's thumbnail, or a code/text item's source text")
    def content(item_id: int, size: int = 256) -> Response:
        if not 16 <= size <= THUMBNAIL_MAX:
            raise HTTPProblem(400, f"size must be between 16 and {THUMBNAIL_MAX}, got {size}")
        row, path = svc.content_file(item_id)
        if path is None:
            return PlainTextResponse(row["text"] or "")
        if row["modality"] == "image":
            return Response(thumbnail_bytes(path, size), media_type="image/png")
        with open(path, "rb") as f:
            data = f.read(MAX_TEXT_BYTES)
        return PlainTextResponse(data.decode("utf-8", errors="replace"))

    @app.get("/items/{item_id}/similar", summary="More like this: items near this one in its own index")
    def similar(item_id: int, k: int = 10) -> dict[str, Any]:
        return _result(svc.similar(item_id, k))

    @app.post("/index", summary="Index folders or files on the server (needs X-API-Key when set)")
    async def index(request: Request) -> dict[str, Any]:
        given = request.headers.get("x-api-key", "")
        if api_key and not secrets.compare_digest(given.encode(), api_key.encode()):
            raise HTTPProblem(401, "Indexing needs the server's API key in the X-API-Key header")
        req = await _read_json(request, IndexRequest)
        report = await run_in_threadpool(svc.index, req.paths)
        return {"report": report_dict(report), "stats": svc.stats()}


def _result(res: SearchResult) -> dict[str, Any]:
    return {"hits": [h.to_dict() for h in res.hits], "timings": res.timings, "routes": res.routes}


def _final(events: Iterator[str | Answer]) -> Answer:
    """Drain an ask stream to its Answer (generate() always ends with one)."""
    answer = None
    for event in events:
        if isinstance(event, Answer):
            answer = event
    if answer is None:
        raise LLMError("The language model gave no answer")
    return answer


def _sse_event(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


async def _sse(first: str | Answer | None, events: Iterator[str | Answer]) -> AsyncIterator[bytes]:
    """`{"delta": text}` per piece, then `{"answer": ...}`; a failure mid-stream is an `{"error": ...}`."""
    from starlette.concurrency import iterate_in_threadpool

    async def rest() -> AsyncIterator[str | Answer]:
        if first is not None:
            yield first
        async for event in iterate_in_threadpool(events):
            yield event

    try:
        async for event in rest():
            if isinstance(event, Answer):
                yield _sse_event({"answer": event.to_dict()})
            else:
                yield _sse_event({"delta": event})
    except (MMRagError, EncoderError) as e:  # the status line is sent: say it in the stream
        yield _sse_event({"error": {"detail": str(e), "error": type(e).__name__, "status": error_status(e)}})


def _error_response(request: Request, err: Exception) -> JSONResponse:
    status = err.status if isinstance(err, HTTPProblem) else error_status(err)
    headers = {}
    if isinstance(err, LLMRateLimitError) and err.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(err.retry_after)))
    return JSONResponse(
        {"detail": str(err), "error": type(err).__name__}, status_code=status, headers=headers
    )


async def _read_json(request: Request, model: type[BaseModel]) -> Any:
    body = await _bounded_body(request, MAX_JSON_BYTES)
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'body'}: {x['msg']}" for x in e.errors())
        raise HTTPProblem(422, f"Bad request body: {problems}") from None


async def _bounded_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPProblem(413, f"Request body of {declared} bytes is over the {limit}-byte limit")
    chunks, n = [], 0
    async for chunk in request.stream():
        n += len(chunk)
        if n > limit:
            raise HTTPProblem(413, f"Request body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_multipart(request: Request) -> tuple[SearchRequest, str | None]:
    """The form fields as a SearchRequest, and the uploaded image saved to a temporary file."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES + 65536:
        raise HTTPProblem(413, f"Upload of {declared} bytes is over the {MAX_UPLOAD_BYTES >> 20} MB limit")
    form = await request.form(max_files=1, max_fields=16)
    upload = form.get("image")
    fields = {k: v for k, v in form.items() if isinstance(v, str) and v != ""}
    unknown = set(fields) - set(SearchRequest.model_fields) - {"image"}
    if unknown:
        raise HTTPProblem(
            422,
            f"Unknown form field(s) {sorted(unknown)}; valid: {sorted(SearchRequest.model_fields)}, image",
        )
    data: dict[str, Any] = {k: v for k, v in fields.items() if k not in ("modalities", "weights")}
    if "modalities" in fields:
        data["modalities"] = [m.strip() for m in fields["modalities"].split(",") if m.strip()]
    if "weights" in fields:
        data["weights"] = weights_from(fields["weights"])
    try:
        req = SearchRequest.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise HTTPProblem(422, f"Bad form field: {problems}") from None
    if upload is None or isinstance(upload, str):
        return req, None
    raw = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(raw) > MAX_UPLOAD_BYTES:
        raise HTTPProblem(413, f"Image upload is over the {MAX_UPLOAD_BYTES >> 20} MB limit")
    if not raw:
        raise HTTPProblem(400, "The uploaded image file is empty")
    fmt = sniff_image(raw)
    return req, save_upload(raw, "." + fmt.lower())


def sniff_image(raw: bytes) -> str:
    """The image format Pillow reads in `raw`; 415 when it is not an image Pillow can decode."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(raw)) as img:
            img.verify()
            return img.format or "png"
    except Image.DecompressionBombError as e:
        raise HTTPProblem(413, f"Image has too many pixels: {e}") from None
    except Exception:
        raise HTTPProblem(
            415, "The upload is not an image Pillow can read (PNG, JPEG, WebP, GIF, BMP, TIFF)"
        ) from None


def thumbnail_bytes(path: Path, size: int) -> bytes:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.thumbnail((size, size))
            out = io.BytesIO()
            img.convert("RGBA" if img.mode in ("RGBA", "LA", "P") else "RGB").save(out, "PNG")
    except (OSError, Image.DecompressionBombError) as e:
        raise HTTPProblem(422, f"Cannot read image {path.name}: {e}") from None
    return out.getvalue()


def error_status(err: BaseException) -> int:
    """HTTP status of a library error: the caller's fault is 4xx, a missing model is 503."""
    if isinstance(err, LookupError | FileNotFoundError):
        return 404
    if isinstance(err, PermissionError):
        return 403
    if isinstance(err, CollectionLockedError):
        return 409
    if isinstance(err, WeightsNotFoundError):
        return 503
    if isinstance(err, LLMError):  # the model endpoint's fault or its refusal, not the caller's query
        if isinstance(err, LLMAuthError):
            return 401
        return 429 if isinstance(err, LLMRateLimitError) else 502
    if isinstance(err, QueryError | ConfigError | EncoderError):
        return 400
    if isinstance(err, MMRagError):
        return 500 if isinstance(err, CollectionError) else 400
    return 500


def save_upload(data: bytes, suffix: str = "") -> str:
    fd, path = tempfile.mkstemp(prefix="mmrag-query-", suffix=suffix)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path
