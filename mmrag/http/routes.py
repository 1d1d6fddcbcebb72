"""The REST routes of the server: request models, /search, /ask (SSE), /index, content, errors.

Every bad request gets a 4xx JSON answer `{"detail": "..."}`; library errors are mapped by type
(`error_status`), never left to 500. Bodies are size-bounded before they are parsed.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from encoders.base import EncoderError, WeightsNotFoundError
from mmrag.errors import (
    CollectionError,
    CollectionLockedError,
    ConfigError,
    FilterError,
    MMRagError,
    QueryError,
)
from mmrag.http.filter_schema import MARK, document_filter, filter_field_schema
from mmrag.http.openapi import (  # noqa: F401 (errors: used by routes_dupes too)
    WHOLE,
    Whole,
    document_security,
    errors,
    has_text,
    json_body,
)
from mmrag.indexing.indexer import IndexReport
from mmrag.query.fusion import DEFAULT_FUSION, weights_from
from mmrag.query.router import MAX_QUERY_CHARS, WEIGHT_NAME_PATTERN
from mmrag.query.search import MAX_K, SearchResult
from mmrag.rag import DEFAULT_K, Answer
from mmrag.rag.client import LLMAuthError, LLMError, LLMRateLimitError

if TYPE_CHECKING:
    from mmrag.http.security import Guard
    from mmrag.http.service import Service

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # a query image larger than this is not a photo but a mistake
THUMBNAIL_MAX = 1024  # largest thumbnail edge served; originals stay on disk
MAX_TEXT_BYTES = 2 * 1024 * 1024  # source text served per file; larger files are cut
MAX_JSON_BYTES = 1024 * 1024  # a search request body; queries are sentences or snippets, not files
MAX_PATHS = 256  # folders or files per POST /index; a longer list is a script, not a person


def report_dict(report: IndexReport) -> dict[str, Any]:
    d = asdict(report)
    d["errors"] = [{"path": p, "reason": r} for p, r in report.errors]
    return d


# --- REST routes ----------------------------------------------------------------------------
Modality = Literal["image", "code", "text"]
# a weight's name, as --weights takes it: [KIND:]ROUTE[@N] or [KIND:]joint.MODALITY
RouteName = Annotated[str, StringConstraints(pattern="^" + WEIGHT_NAME_PATTERN + "$")]
Finite = Annotated[float, Field(allow_inf_nan=False)]


def _integral(v: Any) -> Any:
    """JSON has one number type: 5.0 is the integer 5 (as JSON Schema reads it), "5" is not."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


Count = Annotated[int, BeforeValidator(_integral)]


class SearchRequest(BaseModel):
    """POST /search as JSON; as multipart the same fields are form fields plus an `image` file."""

    model_config = ConfigDict(extra="forbid", strict=True)  # JSON types as the schema says: no "5" for 5
    query: str = Field(
        "",
        max_length=MAX_QUERY_CHARS,
        description="text, a code snippet, or terms joined by ' + ' / ' - '; "
        "as JSON it must hold more than white space; one without a letter or digit finds nothing (a warning says so)",
    )
    k: Count = Field(10, ge=1, le=MAX_K)
    modalities: list[Modality] | None = Field(None, description="subset of image, code, text")
    weights: dict[RouteName, Finite] | None = Field(
        None,
        description="route -> weight, e.g. {'lexical': 0.5}; 'prose:code' weighs a route for one query kind, "
        "'joint.code' the joint route's code items (docs/quality.md)",
    )
    fusion: Literal["calibrated", "rrf", "zsum", "max"] = DEFAULT_FUSION
    min_score: Finite | None = None
    hubness: float | None = Field(
        None, ge=0, le=1, description="weight of the neighbourhood-density correction; 0 turns it off"
    )
    path: str | None = Field(None, description="only sources matching this glob")
    filter: dict[str, Any] | None = Field(None, json_schema_extra=filter_field_schema)


class AskRequest(BaseModel):
    """POST /ask: a question answered from the collection, streamed as server-sent events or not."""

    model_config = ConfigDict(extra="forbid", strict=True)  # JSON types as the schema says: no "5" for 5
    question: str = Field(
        "",
        max_length=MAX_QUERY_CHARS,
        description="a question in words; the answer cites items as [n] "
        "(one without a letter or digit retrieves nothing and is not sent to the model)",
    )
    k: Count = Field(DEFAULT_K, ge=1, le=MAX_K, description="items retrieved as context")
    modalities: list[Modality] | None = Field(None, description="subset of image, code, text")
    stream: bool = Field(False, description='SSE: `data: {"delta": ...}` events, then `{"answer": ...}`')


class IndexRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # JSON types as the schema says: no "5" for 5
    paths: list[str] = Field(
        ...,
        min_length=1,
        max_length=MAX_PATHS,
        description="folders or files on the server's disk, inside the folders it may index",
    )


class HTTPProblem(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


DOCUMENT_TYPES = {".pdf": "application/pdf", ".ipynb": "application/x-ipynb+json"}


def _ascii_name(name: str) -> str:
    """A file name safe inside a quoted header value."""
    return "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)


_WEIGHT = WEIGHT_NAME_PATTERN + r"=-?[0-9]{1,6}(\.[0-9]{1,6})?"
_FORM_PATTERNS = {  # form fields are strings: these say which strings, and the server holds them to it
    "modalities": "^((image|code|text)(,(image|code|text))*)?$",
    "weights": f"^({_WEIGHT}(,{_WEIGHT})*)?$",
}


def _search_openapi(image_search: bool = True) -> dict[str, Any]:
    """JSON always; multipart (an image and the same fields as form fields) where images can be searched."""
    form = {
        "type": "object",
        "required": ["image"],
        "additionalProperties": False,
        "properties": {
            "query": {"type": "string", "maxLength": MAX_QUERY_CHARS},
            "k": {"type": "integer", "default": 10, "minimum": 1, "maximum": MAX_K},
            "modalities": {
                "type": "string",
                "description": "comma list: image,code,text",
                "pattern": _FORM_PATTERNS["modalities"],
            },
            "weights": {
                "type": "string",
                "description": "e.g. code=2,lexical=0.5",
                "pattern": _FORM_PATTERNS["weights"],
            },
            "fusion": {"type": "string", "enum": ["calibrated", "rrf", "zsum", "max"]},
            "min_score": {"type": "number"},
            "hubness": {"type": "number", "minimum": 0, "maximum": 1},
            "path": {"type": "string"},
            "filter": {MARK: True},  # the Filter component (linked by document_filter), sent as JSON
            "image": {
                "type": "string",
                "format": "binary",
                "minLength": 1,
                # the size cap is said, not declared as maxLength: an upload over it is a 413, and a
                # maxLength of 20 MB only made schemathesis's negative phase claim a violation it
                # could not draw (a short upload flagged as "over maxLength", now and then)
                "contentMediaType": "image/png",
                "description": f"an image Pillow reads (PNG, JPEG, WebP, ...), max {MAX_UPLOAD_BYTES >> 20} MB "
                "(413 beyond); "
                "bytes it cannot read are left out of the query, and the answer's `warnings` say so",
            },
        },
    }
    body = json_body(SearchRequest, required=["query"], word=["query"])
    if image_search:
        body["requestBody"]["content"]["multipart/form-data"] = {
            "schema": form,
            "encoding": {"filter": {"contentType": "application/json"}},
        }
    return body


def add_routes(app: FastAPI, svc: Service, guard: Guard) -> None:
    for exc in (MMRagError, EncoderError, LookupError, PermissionError, FileNotFoundError, HTTPProblem):
        app.add_exception_handler(exc, _error_response)
    app.add_exception_handler(RequestValidationError, _validation_response)
    app.add_exception_handler(StarletteHTTPException, _http_response)  # 404 and kin: the same shape

    @app.get("/health", summary="Is the server up, and what does it serve", responses=errors())
    def health() -> dict[str, Any]:
        s = svc.stats()
        return {
            "status": "ok",
            "items": s["items"],
            "models": svc.models.set.name,
            "image_search": s["image_search"],
        }

    @app.get("/stats", summary="Counts per modality, models, indexes and indexed roots", responses=errors())
    def stats() -> dict[str, Any]:
        return svc.stats()

    @app.post(
        "/search",
        summary="Search with text, code, an image, or a mix",
        openapi_extra=_search_openapi(svc.image_search),
        responses=errors(413, 415, 422, 503),
    )
    async def search(request: Request) -> dict[str, Any]:
        image, unread = None, None
        if _media_type(request) == "multipart/form-data":
            req, image, unread = await _read_multipart(request)
        else:
            req = await _read_json(request, SearchRequest)
        try:
            if not has_text(req.query) and image is None and not unread:
                raise HTTPProblem(400, "Empty query: send `query` text or an `image` file")
            if image is None and not any(ch.isalnum() for ch in req.query):  # nothing to search: say why
                await run_in_threadpool(svc.check_filter, req.filter)  # a bad filter is still a 422
                why = unread or "The query holds no letter or digit: nothing to search"
                return {"hits": [], "timings": {"total_ms": 0.0}, "routes": {}, "warnings": [why]}
            options = dict(k=req.k, weights=req.weights, fusion=req.fusion, min_score=req.min_score)
            options.update(hubness=req.hubness)
            options.update(modalities=tuple(req.modalities) if req.modalities else None, path_glob=req.path)
            options.update(where=req.filter)  # mmrag/http/filter_schema.py documents it
            res = await run_in_threadpool(svc.search, req.query, [image] if image else [], **options)
        finally:
            if image:
                os.unlink(image)
        out = _result(res)
        if unread:
            out["warnings"] = [unread, *out.get("warnings", ())]
        return out

    @app.post(
        "/ask",
        summary="Answer a question from the collection, citing items as [n]",
        description="Without a configured language model the answer is a dry run: the retrieved "
        "context and the exact request that would be sent, with a note on how to configure one.",
        openapi_extra=json_body(AskRequest, required=["question"], word=["question"]),
        responses={
            200: {
                "description": "the answer as JSON, or with `stream` as server-sent events",
                "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "text/event-stream": {
                        "schema": {
                            "type": "object",
                            "description": 'each event\'s data is JSON: {"delta": text}, then {"answer": ...}',
                            "properties": {"data": {"type": "string"}},
                        }
                    },
                },
            },
            **errors(401, 413, 415, 422, 429, 502, 503),
        },
    )
    async def ask(request: Request) -> Response:
        req = await _read_json(request, AskRequest)
        if not has_text(req.question):
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

    @app.get("/items/{item_id}", summary="One item's metadata", responses=errors(404, 422))
    def item(item_id: Whole) -> dict[str, Any]:
        row = svc.item(item_id)
        return {**row, "content_url": f"/items/{item_id}/content"}

    @app.get(
        "/items/{item_id}/content",
        summary="An image's thumbnail, or a code/text item's source text",
        response_class=Response,
        responses={
            200: {
                "description": "a PNG thumbnail for an image, the source text otherwise",
                "content": {
                    "image/png": {"schema": {"type": "string", "format": "binary"}},
                    "text/plain": {"schema": {"type": "string"}},
                },
            },
            **errors(404, 422),
        },
    )
    def content(
        item_id: Whole,
        size: Annotated[
            int, Query(ge=16, le=THUMBNAIL_MAX, description="thumbnail edge in pixels"), WHOLE
        ] = 256,
    ) -> Response:
        row, path = svc.content_file(item_id)
        if path is None:
            return PlainTextResponse(row["text"] or "")
        if row["modality"] == "image":
            return Response(thumbnail_bytes(path, size), media_type="image/png")
        with open(path, "rb") as f:
            data = f.read(MAX_TEXT_BYTES)
        return PlainTextResponse(data.decode("utf-8", errors="replace"))

    @app.get(
        "/items/{item_id}/document",
        summary="The whole document a PDF page's or notebook cell's item comes from",
        description="Served inline: a browser opens a PDF at the hit's page with `#page=N` (the UI's cards "
        "link there).",
        response_class=Response,
        responses={
            200: {
                "description": "the document's bytes",
                "content": {
                    "application/pdf": {"schema": {"type": "string", "format": "binary"}},
                    "application/x-ipynb+json": {"schema": {"type": "string"}},
                },
            },
            **errors(404, 422),
        },
    )
    def document(item_id: Whole) -> Response:
        row, path = svc.document_file(item_id)
        media = DOCUMENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
        return FileResponse(
            path,
            media_type=media,
            headers={"Content-Disposition": f'inline; filename="{_ascii_name(path.name)}"'},
        )

    @app.get(
        "/items/{item_id}/page",
        summary="The PDF page a hit sits on, as a PNG thumbnail",
        response_class=Response,
        responses={
            200: {
                "description": "the page",
                "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            },
            **errors(404, 422),
        },
    )
    def page_image(
        item_id: Whole,
        size: Annotated[int, Query(ge=16, le=THUMBNAIL_MAX, description="long edge in pixels"), WHOLE] = 256,
    ) -> Response:
        return Response(svc.page_png(item_id, size), media_type="image/png")

    @app.get(
        "/items/{item_id}/similar",
        summary="More like this: items near this one in its own index",
        responses=errors(404, 422),
    )
    def similar(item_id: Whole, k: Annotated[int, Query(ge=1, le=MAX_K), WHOLE] = 10) -> dict[str, Any]:
        return _result(svc.similar(item_id, k))

    # POST /index and GET /index/{job}: mmrag/http/routes_index.py
    document_security(app)
    document_filter(app)


def _result(res: SearchResult) -> dict[str, Any]:
    out = {"hits": [h.to_dict() for h in res.hits], "timings": res.timings, "routes": res.routes}
    if res.warnings:  # what the search left out, e.g. an image term no encoder here can see
        out["warnings"] = list(res.warnings)
    return out


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


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _problems(errors: Sequence[dict[str, Any]]) -> str:
    def one(x: dict[str, Any]) -> str:
        where = ".".join(str(p) for p in x["loc"] if p != "body") or "body"
        shown = repr(x["input"])[:60] if "input" in x and not isinstance(x["input"], dict | list) else ""
        return f"{where}: {x['msg']}" + (f" (got {shown})" if shown else "")

    return "; ".join(one(x) for x in errors)


async def _read_json(request: Request, model: type[BaseModel]) -> Any:
    """The body as `model`: JSON only (a form or text/plain body, as a page elsewhere sends, is 415)."""
    media_type = _media_type(request)
    body = await _bounded_body(request, MAX_JSON_BYTES)
    if not body:
        raise HTTPProblem(422, "Bad request body: body: a JSON body is required")
    if not _is_json(media_type):
        raise HTTPProblem(
            415, f"The body must be JSON (Content-Type: application/json), not {media_type or 'untyped'}"
        )
    try:
        return model.model_validate_json(body)
    except ValidationError as e:
        raise HTTPProblem(422, f"Bad request body: {_problems(e.errors())}") from None


def _http_response(request: Request, err: StarletteHTTPException) -> JSONResponse:
    """Starlette's own answers (no route at this path, say) in the problem shape too."""
    names = {404: "NotFound", 405: "MethodNotAllowed"}
    return JSONResponse(
        {"detail": str(err.detail), "error": names.get(err.status_code, "HTTPException")},
        status_code=err.status_code,
        headers=getattr(err, "headers", None),
    )


def _validation_response(request: Request, err: RequestValidationError) -> JSONResponse:
    """A bad path or query parameter, in the problem shape every other error has."""
    return JSONResponse(
        {"detail": f"Bad request: {_problems(err.errors())}", "error": "RequestValidationError"},
        status_code=422,
    )


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


async def _read_multipart(request: Request) -> tuple[SearchRequest, str | None, str | None]:
    """The form fields as a SearchRequest, the uploaded image saved to a temporary file, and (instead
    of the file) why the upload was left out: bytes Pillow cannot read are no image to search by."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES + 65536:
        raise HTTPProblem(413, f"Upload of {declared} bytes is over the {MAX_UPLOAD_BYTES >> 20} MB limit")
    form = await request.form(max_files=1, max_fields=16)
    upload = form.get("image")
    fields = {k: v for k, v in form.items() if isinstance(v, str)}  # "" is a value: k="" is no integer
    unknown = set(fields) - set(SearchRequest.model_fields) - {"image"}
    if unknown:
        raise HTTPProblem(
            422,
            f"Unknown form field(s) {sorted(unknown)}; valid: {sorted(SearchRequest.model_fields)}, image",
        )
    for name, pattern in _FORM_PATTERNS.items():
        if name in fields and not re.fullmatch(pattern, fields[name]):
            raise HTTPProblem(422, f"Bad form field: {name}: {fields[name][:60]!r} does not match {pattern}")
    data: dict[str, Any] = {k: v for k, v in fields.items() if k not in ("modalities", "weights", "filter")}
    if "modalities" in fields:
        data["modalities"] = [m.strip() for m in fields["modalities"].split(",") if m.strip()]
    if "weights" in fields:
        data["weights"] = weights_from(fields["weights"])
    if "filter" in fields:  # a JSON part, as POST /search's JSON body has it
        try:
            data["filter"] = json.loads(fields["filter"])
        except ValueError:
            raise HTTPProblem(
                422, "Bad form field: filter: not JSON (send the filter as a JSON object)"
            ) from None
    try:
        req = SearchRequest.model_validate(data, strict=False)  # form values are strings: "10" is k=10
    except ValidationError as e:
        raise HTTPProblem(422, f"Bad form field: {_problems(e.errors())}") from None
    if upload is None or isinstance(upload, str):
        raise HTTPProblem(422, "A multipart search needs an `image` file; send JSON for a text-only search")
    raw = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(raw) > MAX_UPLOAD_BYTES:
        raise HTTPProblem(413, f"Image upload is over the {MAX_UPLOAD_BYTES >> 20} MB limit")
    if not raw:
        raise HTTPProblem(400, "The uploaded image file is empty")
    try:
        fmt = sniff_image(raw)
    except HTTPProblem as e:
        if e.status != 415:
            raise
        return req, None, f"{e.detail}: the upload was left out of the query"
    return req, save_upload(raw, "." + fmt.lower()), None


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

    from mmrag.ingest.camera import is_heif, is_raw

    try:
        if is_heif(str(path)) or is_raw(str(path)):  # HEIC and RAW: opened and developed as indexing does
            from mmrag.errors import IngestError
            from mmrag.ingest import load_image

            try:
                img = load_image(str(path), max_pixels=Image.MAX_IMAGE_PIXELS * 2, target_size=size)
            except IngestError as e:
                raise HTTPProblem(422, f"Cannot read image {path.name}: {e.reason}") from None
        else:
            img = Image.open(path)
        with img:
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
    if isinstance(err, FilterError):  # the filter does not fit the fields: like a schema mismatch
        return 422
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
