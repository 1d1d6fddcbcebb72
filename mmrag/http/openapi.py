"""What the OpenAPI spec of the server says, and the two rules it states that no route enforces.

Every error answer has one shape (`Problem`) and each operation lists the statuses it can give
(`errors`); request bodies are required JSON (`json_body`). `MethodGuard` answers 405 for a
method no route declares (the UI mounted at `/` would answer 404), and the token's carriers are
named as security schemes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from mmrag.http.security import TOKEN_COOKIE

# A query must hold a letter or digit (str.isalnum, in any script) to have anything to search. No
# JSON Schema pattern says that portably (validators read \w as ASCII), so the spec names it as a format.
QUERY_FORMAT = "mmrag-query"


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
    """A required JSON request body of `model`; `required`/`word` fields must be given / hold a word."""
    schema = _strict(model.model_json_schema(ref_template="#/components/schemas/{model}"))
    schema["required"] = sorted({*schema.get("required", ()), *required})
    for name in word:
        schema["properties"][name]["format"] = QUERY_FORMAT
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
    """405 with `Allow` for a method no route of the path declares (ASGI).

    The UI is mounted at `/` and would otherwise answer every undeclared method with its own 404."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            allowed = _methods_of(scope)
            if allowed and scope["method"] not in allowed:
                body = json.dumps(
                    {
                        "detail": f"{scope['method']} is not a method of {scope['path']}; "
                        f"allowed: {', '.join(sorted(allowed))}",
                        "error": "MethodNotAllowed",
                    }
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 405,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"allow", ", ".join(sorted(allowed)).encode()),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _methods_of(scope) -> set[str]:
    """The methods the app's own routes (not the mounted UI) answer at this path; empty: none."""
    from starlette.routing import Match, Mount

    app = scope.get("app")
    routes = [r for r in getattr(getattr(app, "router", None), "routes", ()) if not isinstance(r, Mount)]
    methods: set[str] = set()
    for method in _METHODS:
        probe = {**scope, "method": method}
        if any(r.matches(probe)[0] == Match.FULL for r in routes):
            methods.add(method)
    return methods
