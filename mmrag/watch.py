"""A collection that keeps itself current: re-index watched folders as their files change.

    with Engine.open("my.coll", write=True) as eng:
        Watcher(eng, ["src/", "docs/"]).run()     # until .stop is set (Ctrl-C, SIGTERM)

Each burst of changes (debounced: a save that writes three times is one run) re-runs the same
incremental indexing as `mmrag index` over the watched folders: unchanged files are skipped by
size and mtime, changed ones re-embed only their changed items, vanished ones are dropped, and a
rename is a removal plus an addition. Each run commits per batch and ends by saving the index files
and the manifest, moving the collection to a new generation; a server or MCP server over the
collection reopens its reader when it sees that (mmrag/http/service.py), so no restart is needed.

Stopping: `stop` is checked at every progress point of a run. A run asked to stop raises out of the
indexer there, then saves what was committed, so the index files match the store; what a SIGKILL
interrupts is recovered the same way at the next open (batches are committed transactions).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mmrag.api import Engine
from mmrag.errors import MMRagError
from mmrag.indexing.indexer import IndexCfg, IndexReport

WAKE_MS = 300  # the watcher's first wake-up, after which the catch-up run starts; later ones do nothing


@dataclass(frozen=True)
class WatchCfg:
    debounce_ms: int = 400  # changes within this window are one run: editors write a file in several steps
    step_ms: int = 50  # how often the watcher looks for changes and for `stop`
    # small batches: a search sees each batch, and a stop lands within one
    index: IndexCfg = field(default_factory=lambda: IndexCfg(batch_items=256))


@dataclass
class WatchRun:
    """One re-indexing run: what set it off, what it did, how long it took."""

    changes: int  # file events in the debounced burst (0: the catch-up run at start)
    report: IndexReport | None
    seconds: float
    generation: int
    stopped: bool = False


class WatchStopped(MMRagError):
    """The watcher was asked to stop mid-run; batches committed before stay."""


class Watcher:
    """Re-indexes `paths` into an open writer engine whenever files under them change."""

    def __init__(
        self,
        engine: Engine,
        paths: Sequence[str | os.PathLike],
        cfg: WatchCfg | None = None,
        on_run: Callable[[WatchRun], None] | None = None,
    ):
        if not engine.collection.writable:
            raise MMRagError("Watching needs a writer engine: Engine.open(path, write=True)")
        self.engine = engine
        self.paths = [os.path.abspath(p) for p in paths]
        missing = [p for p in self.paths if not os.path.exists(p)]
        if missing:
            raise FileNotFoundError(2, "No such file or folder to watch", missing[0])
        self.cfg = cfg or WatchCfg()
        self.on_run = on_run or (lambda run: None)
        self.stop = threading.Event()
        self.ready = threading.Event()  # set once the catch-up run is done and changes are being watched

    def run(self) -> None:
        """Watch, catch up with what changed while nobody watched, then re-index each burst until `stop`.

        The watcher is set up before the catch-up run, so a change made while it runs is not lost:
        it sets off the next run."""
        import watchfiles

        caught_up = False
        for changes in watchfiles.watch(
            *self.paths,
            watch_filter=_Filter(self.engine.collection.path),
            debounce=self.cfg.debounce_ms,
            step=self.cfg.step_ms,
            stop_event=self.stop,
            rust_timeout=WAKE_MS,
            yield_on_timeout=True,  # the first wake-up, changes or none, means the watcher is in place
            raise_interrupt=False,
        ):
            if not caught_up:
                self.index_once(0)
                caught_up = True
                self.ready.set()
            elif changes:
                self.index_once(len(changes))
            if self.stop.is_set():
                return

    def index_once(self, changes: int) -> WatchRun:
        """One incremental run over the watched paths; a stop mid-run saves what was committed."""
        t0 = time.perf_counter()
        report, stopped = None, False
        try:
            report = self.engine.index(self.paths, cfg=self.cfg.index, progress=self._progress)
        except WatchStopped:
            stopped = True
            self.engine.collection.save()  # the committed batches, into the index files and the manifest
        run = WatchRun(
            changes, report, time.perf_counter() - t0, self.engine.collection.store.generation(), stopped
        )
        self.on_run(run)
        return run

    def _progress(self, stage: str, done: int, total: int) -> None:
        if self.stop.is_set() and stage != "saving":
            raise WatchStopped(f"Stopped after {done} of {total} {stage}")


class _Filter:
    """watchfiles' default filter (VCS folders, caches, editor swap files), and never the collection
    itself: a collection kept inside a watched folder would otherwise set off a run by being saved."""

    def __init__(self, collection: Path):
        import watchfiles

        self._default = watchfiles.DefaultFilter()
        self._collection = os.path.realpath(collection)

    def __call__(self, change, path: str) -> bool:
        real = os.path.realpath(path)
        if real == self._collection or real.startswith(self._collection + os.sep):
            return False
        return self._default(change, path)
