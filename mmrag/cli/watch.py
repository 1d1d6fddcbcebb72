"""watch: keep a collection current while its folders change."""

from __future__ import annotations

import argparse
import signal
import sys

from .core import MODEL_HELP
from .exits import EXIT_OK


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "watch",
        help="index PATHs into a collection, then re-index them as files change",
        description="Index PATHs into COLLECTION, then watch them: each burst of changes (debounced) "
        "re-runs the incremental indexing of `mmrag index` (changed files re-read, vanished ones "
        "dropped, a rename is both). A running `mmrag serve` or `mmrag mcp` sees each new "
        "generation without a restart. Ctrl-C or SIGTERM stops after the current batch and saves "
        "what was committed; a second Ctrl-C stops at once. Holds the collection's writer lock.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="folders or files to watch")
    p.add_argument("-c", "--collection", required=True, metavar="DIR", help="collection folder")
    p.add_argument(
        "--models", default=None, help=MODEL_HELP + ". Default: the collection's own (a new one needs it)"
    )
    p.add_argument(
        "--debounce",
        type=int,
        default=400,
        metavar="MS",
        help="changes within this many milliseconds are one re-index (default 400)",
    )
    p.add_argument(
        "--batch-items",
        type=int,
        default=256,
        metavar="N",
        help="items embedded and committed together (default 256): searches see each batch, a stop lands "
        "within one, and a kill loses at most one",
    )
    p.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS", help="wait this long for another writer"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(run=run_watch)


def run_watch(args: argparse.Namespace) -> int:
    from mmrag.api import Engine
    from mmrag.errors import ConfigError
    from mmrag.extras import require_extra
    from mmrag.indexing.indexer import IndexCfg
    from mmrag.watch import WatchCfg, Watcher, WatchRun

    require_extra("watch", "mmrag watch")
    if args.debounce < 1 or args.batch_items < 1:
        raise ConfigError("--debounce and --batch-items must be at least 1")

    def report(run: WatchRun) -> None:
        if args.quiet:
            return
        r = run.report
        why = "catch-up" if run.changes == 0 else f"{run.changes} changes"
        if run.stopped or r is None:
            print(f"mmrag watch: {why}: stopped, committed batches saved", file=sys.stderr)
            return
        print(
            f"mmrag watch: {why}: {r.changed_sources} files read, {r.items_added} items embedded, "
            f"{r.items_removed} removed, {len(r.errors)} unreadable ({run.seconds:.1f} s, "
            f"generation {run.generation})",
            file=sys.stderr,
            flush=True,
        )
        if run.changes == 0:  # the catch-up run is done and the watcher in place since before it
            print(f"mmrag watch: watching {', '.join(watcher.paths)}", file=sys.stderr, flush=True)

    with Engine.open(args.collection, write=True, models=args.models, lock_timeout=args.wait) as eng:
        watcher = Watcher(
            eng,
            args.paths,
            WatchCfg(debounce_ms=args.debounce, index=IndexCfg(batch_items=args.batch_items)),
            on_run=report,
        )

        def stop(signum, frame) -> None:
            if watcher.stop.is_set():  # asked twice: stop now (committed batches stay committed)
                raise KeyboardInterrupt
            watcher.stop.set()

        previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            watcher.run()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    if not args.quiet:
        print("mmrag watch: stopped; the collection is saved", file=sys.stderr)
    return EXIT_OK
