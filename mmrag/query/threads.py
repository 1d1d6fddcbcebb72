"""How many threads one query's index search gets: measured on this machine, not assumed.

A query is a batch of one. On busy cores faiss's OpenMP fan-out waits for threads that others
hold (0.1 ms calls became 15 ms waits), so one thread wins; on idle cores the same fan-out
splits an IVF scan and one thread runs at ~2.5x faiss's own time. Which holds changes with the
load and the index, so each route keeps a small calibration: its first single-query searches
alternate one thread and all of them, the faster median is kept for the next `REFRESH` searches
or `REFRESH_S` seconds, then both are measured again. When the load average already fills every
core there is nothing to gain from fanning out, and one thread is taken without measuring.
Batches (more than `SINGLE_MAX` queries) always get every thread.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

SINGLE_MAX = 8  # up to this many queries in one call count as "a query": a fan-out rarely pays
SAMPLES = 3  # timings per thread count before choosing
REFRESH = 512  # searches between calibrations
REFRESH_S = 30.0  # ... or seconds, whichever comes first: load changes faster than counts show


def cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def busy(n_cores: int) -> bool:
    """The 1-minute load average already fills every core: fan-out could only wait."""
    try:
        return os.getloadavg()[0] >= n_cores
    except OSError:
        return False


@dataclass
class _Calibration:
    timings: dict[int, list[float]] = field(default_factory=dict)
    chosen: int | None = None
    used: int = 0
    since: float = 0.0


class ThreadChooser:
    """Per key (a route), the thread count for single-query searches; thread-safe."""

    def __init__(self, n_cores: int | None = None):
        self.cores = n_cores or cores()
        self._state: dict[str, _Calibration] = {}
        self._lock = threading.Lock()

    def choose(self, key: str) -> int:
        if self.cores == 1 or busy(self.cores):
            return 1
        with self._lock:
            cal = self._state.setdefault(key, _Calibration())
            if cal.chosen is not None:
                if cal.used < REFRESH and time.monotonic() - cal.since < REFRESH_S:
                    cal.used += 1
                    return cal.chosen
                cal.timings, cal.chosen = {}, None  # stale: measure both again
            options = (1, self.cores)
            return min(options, key=lambda n: len(cal.timings.get(n, ())))  # the one measured least

    def record(self, key: str, threads: int, seconds: float) -> None:
        with self._lock:
            cal = self._state.setdefault(key, _Calibration())
            if cal.chosen is not None:
                return
            cal.timings.setdefault(threads, []).append(seconds)
            if len(cal.timings) == 2 and all(len(t) >= SAMPLES for t in cal.timings.values()):
                cal.chosen = min(cal.timings, key=lambda n: statistics.median(cal.timings[n]))
                cal.used, cal.since = 0, time.monotonic()

    def chosen(self, key: str) -> int | None:
        """The calibrated count for `key`, or None while it is being measured (for reports)."""
        cal = self._state.get(key)
        return None if cal is None else cal.chosen


CHOOSER = ThreadChooser()


@contextmanager
def search_threads(key: str, n_queries: int, chooser: ThreadChooser | None = None) -> Iterator[int]:
    """Run the block (one index search of `n_queries`) with torch and faiss threads chosen for it.

    A single query's block is timed to feed the calibration; a batch keeps the default threads.
    """
    chooser = chooser or CHOOSER
    if n_queries > SINGLE_MAX:
        yield 0
        return
    n = chooser.choose(key)
    t0 = time.perf_counter()
    with threads_set(n):
        try:
            yield n
        finally:
            chooser.record(key, n, time.perf_counter() - t0)


@contextmanager
def threads_set(n: int | None) -> Iterator[None]:
    """torch and faiss (OpenMP) threads set to n for the block, where loaded, then restored; None: as is."""
    torch, faiss = sys.modules.get("torch"), sys.modules.get("faiss")
    if n is None:
        yield
        return
    old_torch = torch.get_num_threads() if torch is not None else None
    old_faiss = faiss.omp_get_max_threads() if faiss is not None else None
    if torch is not None:
        torch.set_num_threads(n)
    if faiss is not None:
        faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        if old_torch is not None:
            torch.set_num_threads(old_torch)
        if old_faiss is not None:
            faiss.omp_set_num_threads(old_faiss)
