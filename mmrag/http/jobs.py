"""Indexing jobs of the server: one at a time, in a thread, off the request path.

POST /index starts a job and GET /index/{job} reports it; the UI and `mmrag demo` wait for one.
A job that is asked to stop (SIGTERM, Ctrl-C) stops at the indexer's next progress point: every
batch committed before it stays committed (the store commits per batch), and the job then
saves the collection, so the index files and the manifest match what was committed.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mmrag.errors import CollectionLockedError, MMRagError
from mmrag.indexing.indexer import IndexReport

KEEP_FINISHED = 100  # finished jobs kept for GET /index/{job}; older ones are forgotten
# the job thread's niceness: searches come first on busy cores (Linux sets it per thread, and the
# runtime threads the job's first inference starts, such as OpenMP's team, inherit it)
JOB_NICENESS = 10


class JobStopped(MMRagError):
    """The server stopped the job (it is shutting down); what was committed before stays."""


@dataclass
class IndexJob:
    """One indexing run: its state as GET /index/{job} shows it."""

    id: str
    paths: list[str]
    state: str = "queued"  # queued -> running -> done | failed | stopped
    stage: str = ""
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.time)
    finished: float | None = None
    report: IndexReport | None = None
    error: BaseException | None = None
    stop: threading.Event = field(default_factory=threading.Event, repr=False)
    ended: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def running(self) -> bool:
        return not self.ended.is_set()

    def progress(self, stage: str, done: int, total: int) -> None:
        """The indexer's progress callback; raises JobStopped once the job is asked to stop."""
        self.stage, self.done, self.total = stage, done, total
        if self.stop.is_set() and stage != "saving":
            raise JobStopped(f"Indexing stopped by the server after {done} of {total} {stage}")

    def to_dict(self, report: Callable[[IndexReport], dict[str, Any]]) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "url": f"/index/{self.id}",
            "state": self.state,
            "paths": self.paths,
            "progress": {"stage": self.stage, "done": self.done, "total": self.total},
            "started": self.started,
            "finished": self.finished,
            "report": report(self.report) if self.report is not None else None,
            "error": None,
        }
        if self.error is not None:
            d["error"] = {"detail": str(self.error), "error": type(self.error).__name__}
        return d


class JobThreads:
    """What the server's job runners share: the job table, one thread per job at a lower CPU
    priority, the end state recorded whatever happens, and stop/join for shutdown."""

    QUIET: tuple[type[BaseException], ...] = (MMRagError, OSError)  # failures reported without a traceback

    def __init__(self) -> None:
        self._jobs: dict[Any, Any] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._threads: list[threading.Thread] = []

    def _spawn(
        self, job: Any, work: Callable[[Any], Any], name: str, *, daemon: bool = False
    ) -> threading.Thread:
        """The job's thread, remembered for join(); call under self._lock, start it after."""
        thread = threading.Thread(target=self._run, args=(job, work), name=name, daemon=daemon)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        return thread

    def _compute(self, job: Any, work: Callable[[Any], Any]) -> None:
        """Run `work(job)` and keep its answer on the job; sets state "running" when it starts."""
        raise NotImplementedError

    def _run(self, job: Any, work: Callable[[Any], Any]) -> None:
        _lower_priority()
        try:
            self._compute(job, work)
            job.state = "done"
        except JobStopped as e:
            job.error, job.state = e, "stopped"
        except BaseException as e:  # reported to whoever asks; the server keeps serving
            job.error, job.state = e, "failed"
            if not isinstance(e, self.QUIET):
                traceback.print_exc()
        finally:
            job.finished = time.time()
            job.ended.set()

    def stop_all(self) -> None:
        """Ask every job to stop at its next progress point (returns at once)."""
        with self._lock:
            for job in self._jobs.values():
                job.stop.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the job threads to end (after stop_all: their current step, then what they save)."""
        for t in list(self._threads):
            t.join(timeout)


class JobRunner(JobThreads):
    """Runs one indexing job at a time in its own thread; keeps the last few for reports."""

    @property
    def busy(self) -> bool:
        with self._lock:
            return any(j.running for j in self._jobs.values())

    def start(self, paths: Sequence[str], work: Callable[[IndexJob], IndexReport]) -> IndexJob:
        """Start `work(job)` in a thread; CollectionLockedError while another job runs."""
        with self._lock:
            if any(j.running for j in self._jobs.values()):
                raise CollectionLockedError("An indexing run is already in progress; wait for it to finish")
            job = IndexJob(id=str(next(self._ids)), paths=list(paths))
            self._jobs[job.id] = job
            for old in [j for j in self._jobs.values() if not j.running][:-KEEP_FINISHED]:
                del self._jobs[old.id]
            thread = self._spawn(job, work, f"index-job-{job.id}")
        thread.start()
        return job

    def _compute(self, job: IndexJob, work: Callable[[IndexJob], IndexReport]) -> None:
        job.state = "running"
        job.report = work(job)

    def get(self, job_id: str) -> IndexJob:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise LookupError(f"No indexing job {job_id!r} (this server keeps its last {KEEP_FINISHED})")
        return job


def _lower_priority() -> None:
    """Lower this thread's CPU priority (Linux: per thread); elsewhere, or when refused, nothing."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + JOB_NICENESS))
    except (AttributeError, OSError):
        pass
