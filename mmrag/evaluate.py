"""Scoring a collection against BEIR-style queries and qrels, through the product's own search."""

from __future__ import annotations

import json
import math
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
    save_run: str | None = None,
    **search_options,
) -> dict[str, float]:
    """MRR@cutoff, nDCG@10, recall@{1,10,100}, P@{1,10} over the queries that have qrels.

    `save_run` writes the rankings as a TREC run file, for trec_eval, ranx or pytrec_eval."""
    queries = load_queries(queries_path)
    qrels = load_qrels(qrels_path)
    qids = [q for q in qrels if q in queries]
    if not qids:
        raise ConfigError(f"No query in {queries_path} has a judgement in {qrels_path}")
    if save_run:  # a path that cannot be written fails now, not after every query has been searched
        write_trec_run(save_run, {})
    scored: dict[str, list[tuple[str, float]]] = {}
    for start in range(0, len(qids), batch):
        chunk = qids[start : start + batch]
        results = engine.search_many([queries[q] for q in chunk], k=cutoff, **search_options)
        for q, res in zip(chunk, results):
            scored[q] = [(h.key, h.score) for h in res.hits]
        if progress:
            progress(min(start + batch, len(qids)), len(qids))
    run = {q: [key for key, _ in hits] for q, hits in scored.items()}
    metrics = evaluate_run(run, {q: qrels[q] for q in qids}, cutoff)
    if save_run:
        write_trec_run(save_run, scored)
    metrics["cutoff"] = cutoff
    return metrics


def write_trec_run(path: str, run: dict[str, list[tuple[str, float]]], tag: str = "mmrag") -> None:
    """`qid Q0 doc rank score tag` per line, in rank order.

    Tools re-sort each query's lines by score, so tied or rising scores (fusion can tie) are
    nudged just under the score above: the file then ranks exactly as the product did."""
    try:
        with open(path, "w", encoding="utf-8") as f:
            for qid, hits in run.items():
                seen: set[str] = set()
                last = float("inf")
                for key, score in hits:
                    if key in seen:  # one line per document, its best rank, as the format wants
                        continue
                    seen.add(key)
                    score = score if score < last else math.nextafter(last, -math.inf)
                    last = score
                    f.write(f"{qid} Q0 {key} {len(seen)} {score!r} {tag}\n")
    except OSError as e:
        raise ConfigError(f"Cannot write run file {path}: {e}") from e
