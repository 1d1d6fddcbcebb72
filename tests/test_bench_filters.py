"""`mmrag bench search --filter` at its quick size: every selectivity meets the recall target, no
result falls outside its filter, and post-filtering (the contrast it prints) loses recall as p falls."""

from __future__ import annotations


def test_filtered_bench_quick(tmp_path, monkeypatch):
    monkeypatch.setenv("MMRAG_BENCH_DIR", str(tmp_path))
    from mmrag.bench.filters import SELECTIVITIES, run

    figures = run(quick=True)
    rows = [f for f in figures if f.name.startswith("filtered recall@10")]
    assert len(rows) == len(SELECTIVITIES)
    for f in rows:
        assert f.met, (f.name, f.value, f.note)
        assert f.extra["outside"] == 0 and f.extra["qps"] > 0
    assert rows[-1].extra["post_filter_recall"] < 0.5 <= rows[-1].value  # 0.1% kept: post-filtering fails
    assert "IVF" in figures[-1].note
