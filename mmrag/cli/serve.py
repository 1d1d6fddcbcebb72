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
        description="Serve COLLECTION over HTTP. Every route but /health needs the token printed in the "
        "URL at start (MMRAG_API_KEY replaces the random one; --no-auth turns it off); --read-token "
        "prints a second URL whose token may search and read but not index. "
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
        help="no token at all: any program on this machine may search, read and index (a warning says so "
        "at every start)",
    )
    p.add_argument(
        "--read-token",
        action="store_true",
        help="also print a URL with a second token that may search and read but not index, for sharing",
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
    """The token (MMRAG_API_KEY, else a random one), and whether writes must be off.

    With --no-auth there is no token, and a warning on every start; on a non-loopback address
    that also turns indexing off, since anyone who reaches the port could index."""
    from mmrag.http.security import new_token

    if not no_auth:
        return os.environ.get("MMRAG_API_KEY") or new_token(), False
    print(
        "mmrag: warning: --no-auth: no token; any program on this machine can search, read and index",
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
    read = _read_token(key, args)
    _serve(_app(svc, key, args, ui=not args.no_ui, read_token=read), svc, args, key, read)
    return EXIT_OK


def _read_token(key: str | None, args: argparse.Namespace) -> str | None:
    """A second, random token for --read-token (none without a token at all)."""
    from mmrag.http.security import new_token

    if not getattr(args, "read_token", False):
        return None
    if key is None:
        print("mmrag: warning: --read-token with --no-auth: everything is open anyway", file=sys.stderr)
        return None
    return new_token()


def _app(svc, key: str | None, args: argparse.Namespace, ui: bool = True, read_token: str | None = None):
    from mmrag.http.server import create_app

    return create_app(
        svc.path,
        api_key=key,
        read_token=read_token,
        ui=ui,
        service=svc,
        host=args.host,
        allow_hosts=args.allow_host,
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
    read = _read_token(key, args)
    _serve(_app(svc, key, args, read_token=read), svc, args, key, read)
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


def _serve(app, svc, args: argparse.Namespace, token: str | None, read_token: str | None = None) -> None:
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
            "mmrag: open that URL: every route but /health needs its token, sent as X-API-Key by "
            "other clients",
            file=sys.stderr,
        )
    if read_token:
        print(
            f"mmrag: read-only URL to share: {serve_url(args.host, args.port, read_token)} "
            "(search and read; no indexing)",
            file=sys.stderr,
        )
    _raise_open_files_limit()
    try:
        _server(app, svc, args).run()
    finally:
        svc.close()


def _server(app, svc, args: argparse.Namespace):
    """uvicorn, with the indexing job told to stop at SIGTERM/Ctrl-C and saved before the exit.

    uvicorn first waits for open requests (a POST /index waiting for its job among them), so the
    job is asked to stop at the signal itself: it ends after its current batch, and the service
    is closed (the job's save awaited) before uvicorn re-raises the signal to exit."""
    import asyncio

    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            svc.stop_jobs()
            super().handle_exit(sig, frame)

        async def shutdown(self, sockets=None) -> None:
            await super().shutdown(sockets)
            await asyncio.to_thread(svc.close)

    from mmrag.http.server import MAX_REQUEST_HEAD_BYTES

    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        timeout_graceful_shutdown=30,
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
    )
    return Server(config)


def _raise_open_files_limit() -> None:
    """Every open connection is a file: lift the soft limit to the hard one (1,024 is common)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard)
            )
    except (ImportError, ValueError, OSError):
        pass
