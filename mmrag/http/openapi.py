"""What the OpenAPI spec of the server says, and the two rules it states that no route enforces.

Every error answer has one shape (`Problem`) and each operation lists the statuses it can give
(`errors`); request bodies are required JSON (`json_body`). `MethodGuard` answers 405 for a
method no route declares (the UI mounted at `/` would answer 404), and the token's carriers are
named as security schemes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import FastAPI
from pydantic import BaseModel, BeforeValidator

from mmrag.http.security import TOKEN_COOKIE

# A query or question must hold something that is not white space; one that holds no letter or digit
# finds nothing, and says so (200, no hits, a warning). "A letter or digit in any script" has no
# portable pattern (validators that follow ECMA-262, as jsonschema-rs does, read \w as ASCII), so
# the schema states only what every validator reads alike: white space is listed, not `\s`.
_SPACE = "\t\n\x0b\x0c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff\x1c-\x1f"
QUERY_PATTERN = f"[^{_SPACE}]"


def has_text(text: str) -> bool:
    """Whether `text` holds anything but white space, exactly as QUERY_PATTERN says it."""
    return re.search(QUERY_PATTERN, text) is not None


def _whole(value: Any) -> Any:
    """A path or query parameter is text: "5" is the integer 5, "5.0" is not (the schema says integer)."""
    if isinstance(value, str) and not re.fullmatch(r"-?[0-9]+", value):
        raise ValueError(f"{value[:40]!r} is not a whole number")
    return value


# an integer path or query parameter, held to the digits the schema's `integer` allows; with bounds,
# `Annotated[int, Query(ge=1), WHOLE]` (the Query first, or FastAPI writes `ge` into the schema as is)
WHOLE = BeforeValidator(_whole)
Whole = Annotated[int, WHOLE]


class Problem(BaseModel):
    """Every error answer: what went wrong, in words, and the error's kind."""

    detail: str
    error: str = ""


_ERRORS = {
    400: "bad request: a Host this server does not answer to, or a query it cannot run",
    401: "the token is missing or wrong (or the language model refused the server's key)",
    403: "a cross-origin request, a path outside the allowed folders, or the read token asked to index",
    404: "no such item, or its file is gone",
    409: "an indexing run is already in progress",
    413: "the body or upload is over its limit",
    415: "the body is not JSON (or the upload not an image)",
    422: "the body or a parameter does not match the schema",
    429: "the language model's rate limit",
    502: "the language model endpoint failed",
    503: "a model's weights are not available, or the server stopped the indexing job",
    507: "the disk filled up while indexing (what was committed is kept)",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with the problem schema.

    400 and 403 are on every operation: the Host and Origin guards answer them before any route."""
    return {s: {"model": Problem, "description": _ERRORS[s]} for s in sorted({400, 403, *statuses})}


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """Objects keyed by pattern accept no other keys (pydantic leaves additionalProperties open)."""
    if isinstance(schema, dict):
        if "patternProperties" in schema:
            schema["additionalProperties"] = False
        for v in schema.values():
            _strict(v)
    elif isinstance(schema, list):
        for v in schema:
            _strict(v)
    return schema


def json_body(model: type[BaseModel], required: Sequence[str] = (), word: Sequence[str] = ()) -> dict:
    """A required JSON request body of `model`; `required`/`word` fields must be given / hold text."""
    schema = _strict(model.model_json_schema(ref_template="#/components/schemas/{model}"))
    schema["required"] = sorted({*schema.get("required", ()), *required})
    for name in word:
        schema["properties"][name]["pattern"] = QUERY_PATTERN
        schema["properties"][name]["minLength"] = 1
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def document_security(app: FastAPI) -> None:
    """Name the token's two carriers in the spec, so clients (and schemathesis) know them; with a
    token set (`app.state.guard`), every operation but /health requires one of them."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            guard = getattr(app.state, "guard", None)
            cookie = f"{TOKEN_COOKIE}-{guard.bind if guard else 'HOST'}-PORT"
            schema.setdefault("components", {})["securitySchemes"] = {
                "token": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "tokenCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": cookie,
                    "description": "set by opening the URL the server printed; named after its host and port",
                },
            }
            if guard is not None and guard.token is not None:
                schema["security"] = [{"token": []}, {"tokenCookie": []}]
                for op in schema["paths"].get("/health", {}).values():
                    op["security"] = []
        return app.openapi_schema

    app.openapi = openapi


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")


class MethodGuard:
    """405 with `Allow` for a method no route of the path declares, 404 for a path under the API's
    own folders that no route has (ASGI), both in the problem shape.

    The UI is mounted at `/` and would otherwise answer both with its own `{"detail": "Not Found"}`
    (`/items/..%2F..%2Fetc/content` decodes to a path no route matches, so it reaches the UI)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            allowed, api = _methods_of(scope)
            if allowed and scope["method"] not in allowed:
                detail = f"{scope['method']} is not a method of {scope['path']}; allowed: {', '.join(sorted(allowed))}"
                allow = [(b"allow", ", ".join(sorted(allowed)).encode())]
                await _problem(send, 405, detail, "MethodNotAllowed", allow)
                return
            if not allowed and api:
                await _problem(send, 404, f"No such resource: {scope['path'][:200]}", "NotFound")
                return
        await self.app(scope, receive, send)


async def _problem(send, status: int, detail: str, error: str, headers: Sequence = ()) -> None:
    body = json.dumps({"detail": detail, "error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                *headers,
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _methods_of(scope) -> tuple[set[str], bool]:
    """The methods the app's own routes (not the mounted UI) answer at this path (empty: none), and
    whether the path lies under a folder of those routes (`/items/...`), where the UI has nothing."""
    from starlette.routing import Match, Mount

    app = scope.get("app")
    routes = [r for r in getattr(getattr(app, "router", None), "routes", ()) if not isinstance(r, Mount)]
    methods: set[str] = set()
    for method in _METHODS:
        probe = {**scope, "method": method}
        if any(r.matches(probe)[0] == Match.FULL for r in routes):
            methods.add(method)
    first = scope["path"].lstrip("/").split("/", 1)[0]
    api = bool(first) and any(p.lstrip("/").split("/", 1)[0] == first for p in _paths(routes))
    return methods, api


def _paths(routes, prefix: str = "") -> list[str]:
    """The path of every route, those of included routers too (FastAPI keeps those as one entry)."""
    out: list[str] = []
    for r in routes:
        inner = getattr(r, "original_router", None)
        if inner is not None:
            context = getattr(r, "include_context", None)
            out += _paths(inner.routes, prefix + (getattr(context, "prefix", "") or ""))
        elif isinstance(getattr(r, "path", None), str):
            out.append(prefix + r.path)
    return out
