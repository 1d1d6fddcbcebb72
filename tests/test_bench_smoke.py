"""Each benchmark runs in --quick mode on tiny models and returns well-formed figures."""

from __future__ import annotations

import json
import math
import os

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module", autouse=True)
def _dirs(tmp_path_factory: pytest.TempPathFactory):
    saved = {k: os.environ.get(k) for k in ("MMRAG_CACHE", "MMRAG_BENCH_DIR")}
    os.environ["MMRAG_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["MMRAG_BENCH_DIR"] = str(tmp_path_factory.mktemp("bench"))
    torch.set_num_threads(1)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def check(figures, names):
    assert [f.name for f in figures][: len(names)] == names
    for f in figures:
        assert math.isfinite(f.value) and f.value >= 0
        if f.reference is not None and f.ratio is not None:
            assert f.ratio > 0
        json.dumps(f.to_dict())


def test_report_table_and_verdicts():
    from mmrag.bench.report import Figure, format_table, paired_ratio, speed_ratio

    fast = speed_ratio("enc", 30.0, 10.0, "texts/s", 3.0)
    slow = Figure("lat", 40.0, "ms", target=30.0, higher_is_better=False)
    assert fast.ratio == 3.0 and fast.met is True and slow.met is False
    assert Figure("info", 1.0).met is None
    table = format_table([fast, slow]).splitlines()
    assert table[0].split(" | ")[0].strip() == "figure" and "met?" in table[0]
    assert "yes" in table[2] and "NO" in table[3]
    assert paired_ratio([2.0, 4.0, 6.0], [1.0, 1.0, 2.0]) == 3.0


def test_encode_quick():
    from mmrag.bench import encode

    figs = encode.run(True, n=16, batch_size=8, chunks=2)
    check(figs, ["encode texts/s (CoSQA functions)"])


@pytest.mark.heavy  # ~17 s: exports and times an image tower
def test_images_quick():
    from mmrag.bench import images

    figs = images.run(True, rounds=1)  # mmrag alone, tiny CLIP: whole processes, as a user runs them
    (w, h), names = images.QUICK_SIZES[0], ["whole process", "peak RSS", "GFLOP/s"]
    assert len(images.QUICK_SIZES) == 1 and len(figs) == 5
    assert all(n in f.name and f"6 JPEGs {w}x{h}" in f.name for n, f in zip(names, figs))
    assert figs[3].name == "cold query by image, whole process" and figs[3].value > 0
    assert figs[4].name == "cold text query, whole process" and figs[4].value > 0
    assert figs[0].value > 0 and 0.01 < figs[1].value < 8  # images/s; GB


def test_search_quick_recall_against_exact():
    from mmrag.bench import search

    figs = search.run(True, n=3000, dim=32)
    check(figs, [f.name for f in figs])
    recall = next(f for f in figs if f.name.startswith("recall@10"))
    assert recall.value >= 0.95  # Flat at this size: exact


def test_mixture_is_unit_and_clustered():
    import numpy as np

    from mmrag.bench.search import mixture

    x = mixture(2000, 32, 20, seed=0)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    sims = x[:200] @ x.T
    assert np.sort(sims, axis=1)[:, -2].mean() > 0.7  # neighbours share a component
    np.testing.assert_array_equal(x, mixture(2000, 32, 20, seed=0))


def test_latency_quick():
    from mmrag.bench import latency

    figs = latency.run(True, n=300, repeats=3)
    check(figs, ["query latency p50 (warm)", "query latency p99 (warm)"])
    assert figs[1].value >= figs[0].value


@pytest.mark.heavy
def test_coldstart_quick():
    from mmrag.bench import coldstart

    figs = coldstart.run(True, repeats=1)
    check(figs, ["cold start: `mmrag search` to first result"])
