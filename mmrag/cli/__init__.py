"""The `mmrag` command: one sub-command per module under mmrag/cli/, registered in COMMANDS."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .exits import EXIT_ERROR, EXIT_OK, EXIT_SKIPPED, EXIT_USAGE  # noqa: F401  (EXIT_SKIPPED: mmrag.cli's name too)

# sub-command -> module defining add_parser(subparsers) and run(args) -> exit code
COMMANDS: dict[str, str] = {
    "index": "mmrag.cli.core",
    "search": "mmrag.cli.core",
    "info": "mmrag.cli.core",
    "remove": "mmrag.cli.core",
    "eval": "mmrag.cli.core",
    "serve": "mmrag.cli.serve",
    "demo": "mmrag.cli.serve",
    "ask": "mmrag.cli.ask",
    "bench": "mmrag.cli.bench",
    "train": "mmrag.cli.train",
    "fit-joint": "mmrag.cli.train",
    "bench-scale": "mmrag.cli.scale",
    "models": "mmrag.cli.models",
    "dupes": "mmrag.cli.dupes",
    "map": "mmrag.cli.explore",
    "clusters": "mmrag.cli.explore",
    "outliers": "mmrag.cli.explore",
    "compact": "mmrag.cli.compact",
    "mcp": "mmrag.cli.mcp",
    "watch": "mmrag.cli.watch",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or where `command` names a sub-command, only the module that defines
    it: `mmrag search` then imports no other command's module (dupes, explore, serve ...), which
    a cold query would otherwise pay for in time."""
    parser = argparse.ArgumentParser(
        prog="mmrag",
        description="Multimodal retrieval: index folders of images, code and text, then search them with one query.",
        epilog="Run `mmrag COMMAND --help` for a command's options. Exit codes: 0 ok, 1 error, 2 bad usage, "
        "3 indexing finished but some files could not be read (see `mmrag info --errors`; pictures that "
        "only wait for CLIP weights are not counted).",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for module in modules:
        importlib.import_module(module).add_parsers(sub)
    return parser


def _version() -> str:
    from mmrag import __version__

    return f"mmrag {__version__}"


def main(argv: list[str] | None = None) -> int:
    # model loaders draw their own bars; mmrag shows one progress display of its own
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:  # its own sub-commands and --help: hand the rest over whole
        from mmrag.cli.train import run_train

        return run_train(argparse.Namespace(argv=argv[1:]))
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return EXIT_USAGE
    from indexes.errors import IndexesError
    from mmrag.errors import FilterError, MMRagError

    try:
        from encoders.base import EncoderError
    except ImportError:  # pragma: no cover
        EncoderError = MMRagError  # noqa: N806
    try:
        return int(args.run(args) or 0)
    except FilterError as e:  # a bad --where is bad usage: the message names the field and the valid ones
        print(f"mmrag: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (MMRagError, EncoderError, IndexesError) as e:  # the library's typed errors: one line each
        print(f"mmrag: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:  # a file the user named
        where = f": {e.filename}" if e.filename else ""
        print(f"mmrag: error: {e.strerror or e}{where}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(
            "mmrag: interrupted; committed batches are kept, run the command again to finish", file=sys.stderr
        )
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
