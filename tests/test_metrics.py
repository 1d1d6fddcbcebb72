from __future__ import annotations

import math

import pytest

from mmrag.metrics import evaluate_run, load_qrels, ndcg_at, precision_at, recall_at, reciprocal_rank


def test_reciprocal_rank_by_hand():
    assert reciprocal_rank(["a", "b", "c"], {"c": 1}) == pytest.approx(1 / 3)
    assert reciprocal_rank(["a", "b", "c"], {"c": 1}, cutoff=2) == 0.0
    assert reciprocal_rank([], {"c": 1}) == 0.0


def test_recall_precision_ndcg_by_hand():
    rel = {"a": 1, "d": 1}
    ranked = ["x", "a", "y", "d"]
    assert recall_at(ranked, rel, 1) == 0.0
    assert recall_at(ranked, rel, 2) == 0.5
    assert recall_at(ranked, rel, 10) == 1.0
    assert precision_at(ranked, rel, 2) == 0.5
    assert precision_at(ranked, rel, 10) == pytest.approx(0.2)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at(ranked, rel, 10) == pytest.approx(dcg / idcg)


def test_evaluate_run_means_and_missing_queries(tmp_path):
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    m = evaluate_run({"q1": ["a", "b"]}, qrels)  # q2 never ran: counts as zero
    assert m["mrr"] == pytest.approx(0.5) and m["recall@1"] == pytest.approx(0.5) and m["queries"] == 2
    p = tmp_path / "q.tsv"
    p.write_text("query-id\tcorpus-id\tscore\nq1\ta\t1\nq2\tb\t1\n")
    assert load_qrels(str(p)) == {"q1": {"a": 1.0}, "q2": {"b": 1.0}}
