"""Ranking metrics as BEIR and the CoSQA papers define them, on plain lists of keys."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def reciprocal_rank(ranked: Sequence[str], relevant: Mapping[str, float], cutoff: int = 1000) -> float:
    """1/rank of the first relevant key within `cutoff`, else 0 (the published CoSQA MRR)."""
    for rank, key in enumerate(ranked[:cutoff], start=1):
        if relevant.get(key, 0) > 0:
            return 1.0 / rank
    return 0.0


def recall_at(ranked: Sequence[str], relevant: Mapping[str, float], k: int) -> float:
    rel = {key for key, grade in relevant.items() if grade > 0}
    if not rel:
        return 0.0
    return len(rel.intersection(ranked[:k])) / len(rel)


def precision_at(ranked: Sequence[str], relevant: Mapping[str, float], k: int) -> float:
    """Relevant keys in the top k over k (BEIR's P@k divides by k, not by what was returned)."""
    return sum(1 for key in ranked[:k] if relevant.get(key, 0) > 0) / k


def ndcg_at(ranked: Sequence[str], relevant: Mapping[str, float], k: int = 10) -> float:
    """nDCG with linear gains, as pytrec_eval computes it for BEIR."""
    dcg = sum(relevant.get(key, 0) / math.log2(i + 2) for i, key in enumerate(ranked[:k]))
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def evaluate_run(
    run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, float]], cutoff: int = 1000
) -> dict[str, float]:
    """Mean metrics over the queries in `qrels`; a query missing from `run` scores 0 everywhere."""
    names = ["mrr", "ndcg@10", "recall@1", "recall@10", "recall@100", "p@1", "p@10"]
    sums = dict.fromkeys(names, 0.0)
    for qid, rel in qrels.items():
        ranked = list(run.get(qid, ()))[:cutoff]
        sums["mrr"] += reciprocal_rank(ranked, rel, cutoff)
        sums["ndcg@10"] += ndcg_at(ranked, rel, 10)
        for k in (1, 10, 100):
            sums[f"recall@{k}"] += recall_at(ranked, rel, k)
        sums["p@1"] += precision_at(ranked, rel, 1)
        sums["p@10"] += precision_at(ranked, rel, 10)
    n = max(len(qrels), 1)
    out = {name: total / n for name, total in sums.items()}
    out["queries"] = len(qrels)
    return out


def load_qrels(path: str) -> dict[str, dict[str, float]]:
    """BEIR qrels TSV (query-id, corpus-id, score) with or without a header row."""
    qrels: dict[str, dict[str, float]] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or (n == 0 and not _is_number(parts[2])):
                continue
            qrels.setdefault(parts[0], {})[parts[1]] = float(parts[2])
    return qrels


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True
