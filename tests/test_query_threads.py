"""Single-query search threads are chosen by measurement (mmrag/query/threads.py)."""

from __future__ import annotations

import os

import pytest

from mmrag.query import threads
from mmrag.query.threads import SAMPLES, ThreadChooser, search_threads


def calibrate(chooser: ThreadChooser, key: str, seconds: dict[int, float]) -> list[int]:
    """Drive the calibration with fixed timings per thread count; the counts it tried, in order."""
    tried = []
    while chooser.chosen(key) is None:
        n = chooser.choose(key)
        tried.append(n)
        chooser.record(key, n, seconds[n])
    return tried


@pytest.fixture
def idle(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))


@pytest.mark.parametrize("faster", [1, 4])
def test_the_faster_count_is_kept(idle, faster):
    chooser = ThreadChooser(n_cores=4)
    tried = calibrate(chooser, "image", {1: 2e-3 if faster == 4 else 1e-4, 4: 1e-4 if faster == 4 else 2e-3})
    assert sorted(set(tried)) == [1, 4] and len(tried) == 2 * SAMPLES  # both measured, alternately
    assert chooser.chosen("image") == faster
    assert all(chooser.choose("image") == faster for _ in range(50))
    assert chooser.chosen("text") is None  # each route calibrates on its own


def test_refresh_measures_again(idle, monkeypatch):
    chooser = ThreadChooser(n_cores=2)
    calibrate(chooser, "joint", {1: 1e-3, 2: 1e-4})
    assert chooser.chosen("joint") == 2
    monkeypatch.setattr(threads, "REFRESH", 3)
    for _ in range(3):
        chooser.choose("joint")
    chooser.choose("joint")  # past REFRESH: the load may have changed
    assert chooser.chosen("joint") is None
    calibrate(chooser, "joint", {1: 1e-4, 2: 1e-3})  # now the machine is busy
    assert chooser.chosen("joint") == 1


def test_full_load_means_one_thread_without_measuring(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (7.5, 6.0, 5.0))
    chooser = ThreadChooser(n_cores=2)
    assert chooser.choose("image") == 1
    assert chooser.chosen("image") is None


def test_block_sets_and_restores_faiss_threads(idle):
    faiss = pytest.importorskip("faiss")
    before = faiss.omp_get_max_threads()
    chooser = ThreadChooser(n_cores=max(2, before))
    seen = []
    for _ in range(2 * SAMPLES):
        with search_threads("code", 1, chooser) as n:
            seen.append((n, faiss.omp_get_max_threads()))
        assert faiss.omp_get_max_threads() == before
    assert all(n == omp for n, omp in seen)
    with search_threads("code", 100, chooser) as n:  # a batch: left alone, not timed
        assert n == 0 and faiss.omp_get_max_threads() == before
    assert chooser.chosen("code") in (1, chooser.cores)
