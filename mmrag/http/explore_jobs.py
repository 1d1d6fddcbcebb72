"""The map, clusters and outliers as jobs of the server: computed in a thread, reported while they run.

A first map of 100k items takes minutes. So GET /map, /clusters and /outliers start (or join) the
job that computes their answer and wait a few seconds for it: a small collection's answer comes in
that time, as before; a large one's request is answered 202 with the job's progress, and asking
again later gives the result (or, still, the progress). One job per question and collection
generation; one computes at a time (the rest queue), at a lower CPU priority than searches, on a
read-only view of the collection, so searches and indexing go on meanwhile. Results are cached in
the collection folder as before (mmrag/explore/cache.py); the last few are also kept here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from mmrag.errors import MMRagError
from mmrag.http.jobs import JobStopped, JobThreads

WAIT_S = 3.0  # how long a request waits for its job before answering 202 with the progress
KEEP_FINISHED = 8  # finished jobs whose results are kept in memory (a map of 100k items: a few MB)


@dataclass
class ExploreJob:
    """One exploration (a map, a clustering, an outlier ranking) as GET /map and kin report it."""

    id: str
    what: str  # map | clusters | outliers
    key: Hashable  # the question and the collection generation it is asked of
    state: str = "queued"  # queued -> running -> done | failed | stopped
    stage: str = ""
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.time)
    finished: float | None = None
    result: Any = None
    error: BaseException | None = None
    stop: threading.Event = field(default_factory=threading.Event, repr=False)
    ended: threading.Event = field(default_factory=threading.Event, repr=False)

    def progress(self, stage: str, done: int, total: int) -> None:
        """The computation's progress callback (mmrag/explore's `progress`); raises once stopped."""
        self.stage, self.done, self.total = stage, done, total
        if self.stop.is_set():
            raise JobStopped(f"The {self.what} job was stopped by the server")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "what": self.what,
            "state": self.state,
            "progress": {"stage": self.stage, "done": self.done, "total": self.total},
            "started": self.started,
            "seconds": round((self.finished or time.time()) - self.started, 3),
        }


class ExploreRunner(JobThreads):
    """Runs exploration jobs one at a time in daemon threads; the same question joins its job."""

    QUIET = (MMRagError, OSError, LookupError)

    def __init__(self) -> None:
        super().__init__()
        self._one = threading.Lock()  # one computation at a time: each may use every core

    def submit(self, what: str, key: Hashable, work: Callable[[ExploreJob], Any]) -> ExploreJob:
        """The job answering `key`: the running or finished one, else a new one running `work(job)`.

        A failed or stopped job is not reused: asking again computes again."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job.state not in ("failed", "stopped"):
                return job
            job = ExploreJob(id=str(next(self._ids)), what=what, key=key)
            self._jobs[key] = job
            finished = [k for k, j in self._jobs.items() if j.ended.is_set()]
            for k in finished[: max(0, len(finished) - KEEP_FINISHED)]:
                del self._jobs[k]
            thread = self._spawn(job, work, f"explore-{what}-{job.id}", daemon=True)
        thread.start()
        return job

    def _compute(self, job: ExploreJob, work: Callable[[ExploreJob], Any]) -> None:
        with self._one:  # queued until the one before it ends
            job.state = "running"
            job.progress("starting", 0, 0)
            job.result = work(job)

    def running(self) -> list[ExploreJob]:
        with self._lock:
            return [j for j in self._jobs.values() if not j.ended.is_set()]
