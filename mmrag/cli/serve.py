"""serve and demo: the REST API and the web UI over one collection, in one process."""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

from .core import MODEL_HELP
from .exits import EXIT_OK
from .output import Progress

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a collection: REST API, OpenAPI docs at /docs, and the web UI at /",
        description="Serve COLLECTION over HTTP. Writes (POST /index, the UI's Index tab) need the token "
        "printed in the URL at start (MMRAG_API_KEY replaces the random one; --no-auth turns it off). "
        "Only this server's Host names are answered, no other site's page may call it, and indexing "
        "reads only inside the collection's roots and --allow-index folders.",
    )
    p.add_argument("-c", "--collection", required=True, metavar="DIR", help="collection folder")
    _server_args(p)
    p.add_argument("--no-ui", action="store_true", help="REST API only, no web UI at /")
    p.add_argument("--read-only", action="store_true", help="refuse indexing requests")
    p.set_defaults(run=run_serve)

    p = sub.add_parser(
        "demo",
        help="the web demo over the bundled sample corpus, or over your collection with -c",
        description="With no -c, indexes demo/sample (captioned images, code, docs) into a cache folder "
        "on first run, then serves the UI. Without CLIP weights the demo still starts, with text and "
        "code search only.",
    )
    p.add_argument("-c", "--collection", default=None, metavar="DIR", help="serve this collection instead")
    _server_args(p)
    p.set_defaults(run=run_demo)


def _server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument(
        "--models",
        default=None,
        help=MODEL_HELP
        + ". Default: the collection's own (demo: 'default', else 'offline' without CLIP weights)",
    )
    p.add_argument(
        "--no-auth",
        action="store_true",
        help="writes need no token: any program on this machine may index (a warning says so at every start)",
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests for this Host name (e.g. behind a proxy); repeatable. Default: "
        "localhost, 127.0.0.1, ::1 and the address bound",
    )
    p.add_argument(
        "--allow-index",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder indexing may read besides the collection's roots (demo: and the sample corpus); "
        "repeatable",
    )


def _api_key(host: str, no_auth: bool = False) -> tuple[str | None, bool]:
    """The write token (MMRAG_API_KEY, else a random one), and whether writes must be off.

    With --no-auth there is no token, and a warning on every start; on a non-loopback address
    that also turns indexing off, since anyone who reaches the port could index."""
    from mmrag.http.security import new_token

    if not no_auth:
        return os.environ.get("MMRAG_API_KEY") or new_token(), False
    print(
        "mmrag: warning: --no-auth: writes need no token; any program on this machine can index",
        file=sys.stderr,
    )
    exposed = host not in LOOPBACK
    if exposed:
        print(f"mmrag: warning: serving on {host} with --no-auth: indexing is off", file=sys.stderr)
    return None, exposed


def run_serve(args: argparse.Namespace) -> int:
    _require_serve("mmrag serve --no-ui" if args.no_ui else "mmrag serve", ui=not args.no_ui)
    from mmrag.http.service import Service

    key, exposed = _api_key(args.host, args.no_auth)
    svc = Service(
        args.collection,
        models=args.models,
        read_only=args.read_only or exposed,
        allow_index=args.allow_index,
    )
    _serve(_app(svc, key, args, ui=not args.no_ui), svc, args, key)
    return EXIT_OK


def _app(svc, key: str | None, args: argparse.Namespace, ui: bool = True):
    from mmrag.http.server import create_app

    return create_app(
        svc.path, api_key=key, ui=ui, service=svc, host=args.host, allow_hosts=args.allow_host
    )


def run_demo(args: argparse.Namespace) -> int:
    _require_serve("mmrag demo", ui=True)
    from mmrag.http.server import load_demo
    from mmrag.http.service import Service

    key, exposed = _api_key(args.host, args.no_auth)
    if args.collection:
        svc = Service(args.collection, models=args.models, read_only=exposed, allow_index=args.allow_index)
    else:
        sample = load_demo().sample_corpus()  # package data of the installed demo
        models = demo_models(args.models)
        allowed = [str(sample), *args.allow_index]
        svc = Service(demo_collection(models.set), models=models, read_only=exposed, allow_index=allowed)
        print(f"mmrag: indexing the sample corpus into {svc.path}", file=sys.stderr)
        with Progress(enabled=sys.stderr.isatty()) as prog:
            svc.index([str(sample)], progress=prog.update)
    _serve(_app(svc, key, args), svc, args, key)
    return EXIT_OK


def _require_serve(feature: str, ui: bool) -> None:
    """Name the extra to install before anything imports FastAPI, uvicorn or Gradio."""
    from mmrag.extras import require_extra

    require_extra("serve", feature, None if ui else ("fastapi", "uvicorn", "multipart"))


def demo_models(name: str | None):
    """The demo's encoders, loaded: `name` when given, else 'default', else 'offline' (no CLIP)."""
    from encoders.base import WeightsNotFoundError
    from encoders.modelsets import resolve_model_set
    from mmrag.models import Models

    for candidate in [name] if name else ["default", "offline"]:
        models = Models(resolve_model_set(candidate))
        try:
            for role in ("clip", "code", "text"):
                if models.has(role):
                    models.get(role)
        except WeightsNotFoundError as e:
            if name or candidate == "offline":
                raise
            print(
                f"mmrag: the 'default' models are not available here ({str(e)[:160]}…); using 'offline'",
                file=sys.stderr,
            )
            continue
        return models
    raise AssertionError("unreachable: 'offline' either loads or raises")


def demo_collection(model_set) -> Path:
    """One cached demo collection per model set: vectors of different models never mix."""
    from encoders.weights import mmrag_cache_dir

    specs = "|".join(str(getattr(model_set, r)) for r in ("clip", "code", "text"))
    return mmrag_cache_dir() / f"demo-{model_set.name}-{hashlib.sha1(specs.encode()).hexdigest()[:8]}"


def serve_url(host: str, port: int, token: str | None) -> str:
    """The URL to open: with the token in it, as Jupyter prints it (the page then keeps it in a cookie)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def _serve(app, svc, args: argparse.Namespace, token: str | None) -> None:
    import uvicorn

    if svc.banner:
        print(f"mmrag: note: {svc.banner}", file=sys.stderr)
    from_env = token is not None and token == os.environ.get("MMRAG_API_KEY")
    url = serve_url(args.host, args.port, None if from_env else token)
    if from_env:
        url += "?token=$MMRAG_API_KEY"
    print(
        f"mmrag: serving {svc.path} at {url} (API docs at /docs); Ctrl-C stops",
        file=sys.stderr,
    )
    if token:
        print(
            "mmrag: open that URL: writes (indexing) need its token, sent as X-API-Key by other clients",
            file=sys.stderr,
        )
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        svc.close()
