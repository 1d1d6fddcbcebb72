"""Choose an ensemble's fusion on dev, through the product, and say what the choice is worth unseen.

Opens a collection built with an ensemble model set (e.g. `mmrag index ... --models quality`), runs
every (fusion, member weight) setting over the dev queries with the product's search, and prints
each one's MRR. Then, as scripts/cosqa_experiment.py --csls-split-half does for the prior: over
50 random halves of the queries, the setting best on one half is scored on the other, next to
the shipped setting, so the gain of tuning on dev can be told from its noise.

Usage: python scripts/ensemble_fusion.py COLLECTION QUERIES.jsonl QRELS.tsv
"""

from __future__ import annotations

import argparse
import dataclasses
import random

import numpy as np

from mmrag.api import Engine
from mmrag.evaluate import load_queries
from mmrag.metrics import load_qrels, reciprocal_rank

# (fusion inside the role, weight of the second member); the first member's weight stays 0.3, so
# w is mpnet's weight relative to MiniLM's 0.3
SETTINGS = [("zsum", w) for w in (0.3, 0.6, 1.0, 1.5, 2.5)] + [("rrf", 0.3), ("rrf", 1.0)]


def per_query_rr(eng: Engine, queries: dict[str, str], qrels: dict, fusion: str, w: float) -> np.ndarray:
    eng.models.set = dataclasses.replace(eng.models.set, ensemble_fusion=fusion)
    weights = {s: w for s in eng.collection.spaces() if "@" in s}
    qids = [q for q in qrels if q in queries]
    out = []
    for start in range(0, len(qids), 64):
        chunk = qids[start : start + 64]
        results = eng.search_many([queries[q] for q in chunk], k=1000, weights=weights)
        out += [reciprocal_rank([h.key for h in r.hits], qrels[q]) for q, r in zip(chunk, results)]
    return np.array(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("collection")
    ap.add_argument("queries")
    ap.add_argument("qrels")
    ap.add_argument("--splits", type=int, default=50)
    args = ap.parse_args()
    queries, qrels = load_queries(args.queries), load_qrels(args.qrels)
    rr = {}
    with Engine.open(args.collection) as eng:
        shipped = (eng.models.set.ensemble_fusion, eng.models.set.member_weight(2))
        for fusion, w in SETTINGS:
            rr[(fusion, w)] = per_query_rr(eng, queries, qrels, fusion, w)
            print(
                f"{fusion} mpnet weight {w:.2f} (MiniLM 0.3): dev MRR {rr[(fusion, w)].mean():.4f}",
                flush=True,
            )
    n = len(next(iter(rr.values())))
    rng = random.Random(0)
    gains, picked_scores, shipped_scores = [], [], []
    for _ in range(args.splits):
        idx = list(range(n))
        rng.shuffle(idx)
        a, b = np.array(idx[: n // 2]), np.array(idx[n // 2 :])
        best = max(rr, key=lambda s: rr[s][a].mean())
        picked_scores.append(rr[best][b].mean())
        shipped_scores.append(rr[shipped][b].mean())
        gains.append(rr[best][b].mean() - rr[shipped][b].mean())
    print(
        f"held-out halves ({args.splits} splits): setting picked on one half scores {np.mean(picked_scores):.4f} "
        f"on the other; the shipped {shipped} scores {np.mean(shipped_scores):.4f} (gain of re-tuning "
        f"{np.mean(gains):+.4f}, range {min(gains):+.4f} to {max(gains):+.4f})"
    )


if __name__ == "__main__":
    main()
