"""Held-out retrieval quality of paired embeddings: query i should retrieve document i."""

from __future__ import annotations

import numpy as np

from ..metrics import evaluate_run


def pair_mrr(queries: np.ndarray, documents: np.ndarray, cutoff: int = 1000) -> float:
    """MRR of ranking all `documents` for each query, where row i of both is the relevant pair.

    Goes through `mmrag.metrics.evaluate_run` so the number means what the CoSQA MRR means.
    """
    scores = np.asarray(queries, dtype=np.float32) @ np.asarray(documents, dtype=np.float32).T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :cutoff]
    run = {str(i): [str(j) for j in row] for i, row in enumerate(top)}
    qrels = {str(i): {str(i): 1.0} for i in range(len(scores))}
    return float(evaluate_run(run, qrels, cutoff)["mrr"])
