"""mcp: the collection as an MCP server over stdio, for Claude Code, Claude Desktop, Cursor, VS Code."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from .core import MODEL_HELP
from .exits import EXIT_OK


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mcp",
        help="serve a collection to AI agents over MCP (stdio): search, fetch, similar, collection_info",
        description="Serve COLLECTION as a Model Context Protocol server on stdin/stdout, the way an "
        "agent client starts it (docs/agents.md has each client's configuration). Its tools are "
        "read-only: search (ranked hits with path and lines, a link per hit, pictures as images), "
        "fetch, similar, collection_info, and answer where a language model is configured "
        "(MMRAG_LLM_*, docs/rag.md). The index tool exists only with --index or --allow-index. The "
        "server sees new generations of the collection (mmrag index, mmrag watch) without a restart.",
    )
    p.add_argument("-c", "--collection", required=True, metavar="DIR", help="collection folder")
    p.add_argument("--models", default=None, help=MODEL_HELP + ". Default: the collection's own")
    p.add_argument(
        "--index",
        action="store_true",
        help="offer the index tool, which may (re-)index inside the collection's folders",
    )
    p.add_argument(
        "--allow-index",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder the index tool may read besides the collection's own; repeatable (implies --index)",
    )
    p.add_argument(
        "--no-images", action="store_true", help="never send pictures as image content (paths and links only)"
    )
    p.add_argument(
        "--max-images", type=int, default=4, metavar="N", help="pictures sent per tool call (default 4)"
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=512,
        metavar="PX",
        help="longest side of a picture sent, in pixels (default 512)",
    )
    p.set_defaults(run=run_mcp)


def run_mcp(args: argparse.Namespace) -> int:
    from mmrag.extras import require_extra

    require_extra("mcp", "mmrag mcp")
    from mmrag.errors import CollectionError, ConfigError
    from mmrag.http.service import Service
    from mmrag.mcp.backend import LazyBackend
    from mmrag.mcp.render import ImageCfg
    from mmrag.mcp.server import McpCfg, build_server
    from mmrag.rag import LLMCfg
    from mmrag.storage.collection import MANIFEST

    if args.max_images < 0 or args.image_size < 16:
        raise ConfigError("--max-images must be 0 or more and --image-size at least 16 pixels")
    if not (Path(args.collection) / MANIFEST).exists():  # said now, on stderr, not at the first tool call
        raise CollectionError(
            f"No collection at {args.collection}; create one with `mmrag index PATH -c {args.collection}`"
        )
    allow_index = bool(args.index or args.allow_index)
    backend = LazyBackend(
        lambda: Service(
            args.collection, models=args.models, read_only=not allow_index, allow_index=args.allow_index
        )
    )
    try:
        answer = LLMCfg.load().configured
    except ConfigError:
        answer = False
    images = ImageCfg(
        enabled=not args.no_images and args.max_images > 0,
        max_per_call=args.max_images,
        max_side=args.image_size,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_server):
        backend.start()  # the transport holds stdout by now: loaders' output goes to stderr
        try:
            yield {}
        finally:
            backend.close()

    server = build_server(backend, McpCfg(images=images, allow_index=allow_index, answer=answer), lifespan)
    server.run("stdio")
    return EXIT_OK
