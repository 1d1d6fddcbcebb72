"""Scoring a collection against BEIR-style queries and qrels, through the product's own search."""

from __future__ import annotations

import json
from collections.abc import Callable

from .api import Engine
from .errors import ConfigError
from .metrics import evaluate_run, load_qrels


def load_queries(path: str) -> dict[str, str]:
    """BEIR queries JSONL: {"_id", "text"} per line."""
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    out[str(rec["_id"])] = str(rec["text"])
                except (ValueError, KeyError, TypeError) as e:
                    raise ConfigError(f"{path}:{n}: not a BEIR query record ({e})") from e
    except OSError as e:
        raise ConfigError(f"Cannot read queries {path}: {e}") from e
    return out


def evaluate(
    engine: Engine,
    queries_path: str,
    qrels_path: str,
    *,
    cutoff: int = 1000,
    batch: int = 64,
    progress: Callable[[int, int], None] | None = None,
    **search_options,
) -> dict[str, float]:
    """MRR@cutoff, nDCG@10, recall@{1,10,100}, P@{1,10} over the queries that have qrels."""
    queries = load_queries(queries_path)
    qrels = load_qrels(qrels_path)
    qids = [q for q in qrels if q in queries]
    if not qids:
        raise ConfigError(f"No query in {queries_path} has a judgement in {qrels_path}")
    run: dict[str, list[str]] = {}
    for start in range(0, len(qids), batch):
        chunk = qids[start : start + batch]
        results = engine.search_many([queries[q] for q in chunk], k=cutoff, **search_options)
        for q, res in zip(chunk, results):
            run[q] = [h.key for h in res.hits]
        if progress:
            progress(min(start + batch, len(qids)), len(qids))
    metrics = evaluate_run(run, {q: qrels[q] for q in qids}, cutoff)
    metrics["cutoff"] = cutoff
    return metrics
