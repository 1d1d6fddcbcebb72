"""serve and demo: the REST API and the web UI over one collection, in one process."""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

from . import EXIT_OK
from .core import MODEL_HELP
from .output import Progress

LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEMO_DIR = Path(__file__).resolve().parents[2] / "demo"  # shipped next to the package in a clone


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a collection: REST API, OpenAPI docs at /docs, and the web UI at /",
        description="Serve COLLECTION over HTTP. Reads are open; POST /index needs the X-API-Key header "
        "when MMRAG_API_KEY is set, and is off on a non-loopback address without a key.",
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


def _api_key(host: str) -> tuple[str | None, bool]:
    """The API key from MMRAG_API_KEY, and whether writes must be off (exposed without a key)."""
    key = os.environ.get("MMRAG_API_KEY") or None
    exposed = host not in LOOPBACK and key is None
    if exposed:
        print(
            f"mmrag: warning: serving on {host} without MMRAG_API_KEY: indexing is off; set a key to allow it",
            file=sys.stderr,
        )
    return key, exposed


def run_serve(args: argparse.Namespace) -> int:
    from mmrag.server import Service, create_app

    key, exposed = _api_key(args.host)
    svc = Service(args.collection, models=args.models, read_only=args.read_only or exposed)
    _serve(create_app(args.collection, api_key=key, ui=not args.no_ui, service=svc), svc, args)
    return EXIT_OK


def run_demo(args: argparse.Namespace) -> int:
    from mmrag.server import Service, create_app

    key, exposed = _api_key(args.host)
    if args.collection:
        svc = Service(args.collection, models=args.models, read_only=exposed)
    else:
        sample = DEMO_DIR / "sample"
        if not sample.is_dir():
            from mmrag.errors import ConfigError

            raise ConfigError(
                f"No sample corpus at {sample}: run the demo from a clone of mmrag, or pass -c DIR"
            )
        models = demo_models(args.models)
        svc = Service(demo_collection(models.set), models=models, read_only=exposed)
        print(f"mmrag: indexing the sample corpus into {svc.path}", file=sys.stderr)
        with Progress(enabled=sys.stderr.isatty()) as prog:
            svc.index([str(sample)], progress=prog.update)
    _serve(create_app(svc.path, api_key=key, service=svc), svc, args)
    return EXIT_OK


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


def _serve(app, svc, args: argparse.Namespace) -> None:
    import uvicorn

    if svc.banner:
        print(f"mmrag: note: {svc.banner}", file=sys.stderr)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"mmrag: serving {svc.path} at http://{host}:{args.port}/ (API docs at /docs); Ctrl-C stops",
        file=sys.stderr,
    )
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        svc.close()
