"""The REST server: one collection, its models loaded once, and the demo UI mounted at `/`.

    app = create_app("my.coll")          # uvicorn.run(app, host="127.0.0.1", port=7860)

With a token set, every route but /health needs it (the read token, when given, may search and
read but not index); without one (`--no-auth`, or a library caller's choice) all is open. Host,
Origin and token checks are in mmrag/http/security.py; the routes themselves, and how errors
become 4xx answers, are in mmrag/http/routes.py (indexing jobs: routes_index.py).
POST /ask answers from the collection through the language model named by `llm` or, when none is
given, by the MMRAG_LLM_* environment read at each request (a dry run when nothing is configured).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

from mmrag.errors import ConfigError
from mmrag.http.openapi import MethodGuard
from mmrag.http.routes import add_routes
from mmrag.http.routes_dupes import router as dupes_router
from mmrag.http.routes_explore import router as explore_router
from mmrag.http.routes_index import router as index_router
from mmrag.http.security import BodyLimit, Guard, GuardMiddleware
from mmrag.http.service import Service
from mmrag.mcp.http import mount_mcp
from mmrag.rag import LLMCfg

# uvicorn's HTTP parser answers a request head larger than this itself, with a text/plain 400 the app
# never sees; 1 MiB lets every request reach the app, whose errors all have one JSON shape (h11's
# default is 16 KiB: a map URL highlighting a few hundred results went past it)
MAX_REQUEST_HEAD_BYTES = 1 << 20


# --- the FastAPI app ------------------------------------------------------------------------
def create_app(
    collection_path: str | os.PathLike,
    *,
    models: Any = None,
    api_key: str | None = None,
    read_token: str | None = None,
    read_only: bool = False,
    ui: bool = True,
    service: Service | None = None,
    llm: LLMCfg | None = None,
    host: str = "127.0.0.1",
    allow_hosts: Sequence[str] = (),
    allow_index: Sequence[str | os.PathLike] = (),
) -> FastAPI:
    """The REST API over one collection, with the Gradio demo at `/` when `ui` (it needs mmrag[serve]).

    `api_key` is the token every route but /health needs (None: all is open; `mmrag serve` always
    passes one unless --no-auth); `read_token` may search and read but not index. `host` is the
    address bound: with `allow_hosts` it names the Host headers
    answered (mmrag/http/security.py). `allow_index` adds folders indexing may read to the collection's
    roots. `llm` fixes the language model for /ask; without it the MMRAG_LLM_* env is read per request.
    """
    from mmrag import __version__

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
        "of this server and come from no other site's page; every route but /health needs the "
        "server's token (X-API-Key, or the cookie set by opening the URL the server printed) unless "
        "started with --no-auth. The read token (--read-token) may search and read, not index.",
        docs_url="/docs",
    )
    app.state.service = svc
    guard = Guard.for_bind(host, api_key, allow_hosts, read_token=read_token)
    app.state.guard = guard
    add_routes(app, svc, guard)
    app.include_router(dupes_router)  # GET /dupes (mmrag/http/routes_dupes.py)
    app.include_router(explore_router)  # GET /map, /clusters, /outliers (mmrag/http/routes_explore.py)
    app.include_router(index_router)  # POST /index, GET /index/{job} (mmrag/http/routes_index.py)
    mount_mcp(app, svc)  # /mcp: MCP over streamable HTTP when mmrag[mcp] is installed (mmrag/mcp/http.py)
    if ui:
        mount_ui(app, svc, api_key)
    app.add_middleware(MethodGuard)  # inner: 405 for a method no route of the path declares
    app.add_middleware(GuardMiddleware, guard=guard)  # Host, Origin and token before any route
    app.add_middleware(BodyLimit)  # outermost: a body over the limit is refused before it is read
    return app


def mount_ui(app: FastAPI, svc: Service, api_key: str | None) -> None:
    """Mount the demo's Blocks at `/`; raises, naming what to install, rather than serve no page."""
    load_demo().app.mount(app, svc, api_key=api_key)


def load_demo():
    """The demo package, `mmrag_demo` (the top-level demo/ of a clone, installed with mmrag)."""
    import importlib

    from mmrag.extras import require_extra

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
