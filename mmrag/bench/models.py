"""`mmrag bench models`: model sets compared on the user's own corpus, for quality and for speed.

Each set indexes the corpus into a fresh collection (`Engine.index`, timed: documents/s), is scored
on the BEIR queries and qrels by `mmrag.evaluate.evaluate` (MRR, nDCG@10, R@10, as `mmrag eval`
prints them), and answers queries one at a time as `mmrag search` does (query p50). The index size
is the collection folder on disk. One table, and a quality-versus-speed plot (matplotlib).

Sets that differ only in their weights (`[weights.prose]`, `ensemble_weights`, ...) share one index:
the first of them indexes the corpus, the others are searched over its collection with their own
weights, so trying a weight costs a search, not a re-index; their row names the set indexed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mmrag.errors import ConfigError

LATENCY_QUERIES = 50  # single-query searches timed per set: enough for a stable median


@dataclass(frozen=True)
class ModelSetRun:
    name: str
    mrr: float
    ndcg10: float
    recall10: float
    docs_per_s: float
    query_p50_ms: float
    index_mb: float
    items: int
    index_of: str = ""  # the set whose collection this one searched (same encoders); "" for its own


def encoders_of(model_set: str) -> tuple:
    """Every encoder of a set, per role: two sets with equal tuples index identical vectors."""
    from encoders import resolve_model_set

    s = resolve_model_set(model_set)
    return tuple(s.members(role) for role in ("clip", "code", "text"))


def bench_model_set(
    model_set: str, corpus: str, queries: str, qrels: str, work: Path, indexed: ModelSetRun | None = None
) -> ModelSetRun:
    """Index (unless `indexed` is the run of a set with the same encoders), evaluate, time queries."""
    from mmrag.api import Engine
    from mmrag.evaluate import evaluate, load_queries

    if indexed is None:
        coll = work / f"{Path(model_set).stem}.coll"
        if coll.exists():
            raise ConfigError(
                f"{coll} exists: give --work an empty folder, so indexing is timed from scratch"
            )
        t0 = time.perf_counter()
        with Engine.open(coll, write=True, models=model_set) as eng:
            eng.index([corpus])
            items = sum(eng.collection.store.counts().values())
        index_s = time.perf_counter() - t0
    else:
        coll = work / f"{indexed.name}.coll"
        items, index_s = indexed.items, indexed.items / indexed.docs_per_s
    with Engine.open(coll, models=model_set) as eng:  # this set's weights over the collection
        m = evaluate(eng, queries, qrels)
        texts = list(load_queries(queries).values())[:LATENCY_QUERIES]
        eng.search(texts[0], k=10)  # the first search loads the query encoders: not a warm figure
        times = []
        for text in texts:
            t = time.perf_counter()
            eng.search(text, k=10)
            times.append(1e3 * (time.perf_counter() - t))
    size = sum(f.stat().st_size for f in coll.rglob("*") if f.is_file())
    return ModelSetRun(
        name=Path(model_set).stem,
        mrr=m["mrr"],
        ndcg10=m["ndcg@10"],
        recall10=m["recall@10"],
        docs_per_s=items / index_s,
        query_p50_ms=statistics.median(times),
        index_mb=size / 2**20,
        items=items,
        index_of=indexed.name if indexed is not None else "",
    )


def format_runs(runs: list[ModelSetRun]) -> str:
    head = "| model set | MRR | nDCG@10 | R@10 | documents/s | query p50 ms | index MB |\n|---|---|---|---|---|---|---|"
    rows = [
        f"| {_label(r)} | {r.mrr:.4f} | {r.ndcg10:.4f} | {r.recall10:.3f} | {r.docs_per_s:.1f} | "
        f"{r.query_p50_ms:.1f} | {r.index_mb:.1f} |"
        for r in runs
    ]
    return "\n".join([head, *rows])


def _label(r: ModelSetRun) -> str:
    return f"{r.name} (index of {r.index_of})" if r.index_of else r.name


def plot_runs(runs: list[ModelSetRun], path: str) -> None:
    """MRR against documents/s (log scale), one labelled point per model set."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display, no GUI toolkit
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError as e:
        raise ConfigError("The plot needs matplotlib: pip install 'mmrag[bench]'") from e
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([r.docs_per_s for r in runs], [r.mrr for r in runs])
    for r in runs:
        ax.annotate(
            f"{r.name} ({r.query_p50_ms:.0f} ms/query)",
            (r.docs_per_s, r.mrr),
            textcoords="offset points",
            xytext=(5, 5),
        )
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap at 2-3 points
    ax.margins(0.25)
    ax.set_xlabel("indexing speed, documents/s (log)")
    ax.set_ylabel("MRR")
    ax.set_title("quality versus speed per model set")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="mmrag bench models",
        description="Index a corpus with each model set, score it on BEIR queries and qrels, time it, "
        "and print one table plus a quality-versus-speed plot.",
    )
    p.add_argument("sets", nargs="+", metavar="SET", help="two or more model sets or TOML files")
    p.add_argument("--corpus", required=True, help="folder, file or BEIR corpus.jsonl")
    p.add_argument("--queries", required=True, help="BEIR queries JSONL")
    p.add_argument("--qrels", required=True, help="BEIR qrels TSV")
    p.add_argument("--work", default=None, help="empty folder for the collections (default: a temp dir)")
    p.add_argument("--plot", default="bench-models.png", help="PNG path (default bench-models.png)")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def run_bench_models(args: argparse.Namespace) -> int:
    if len(args.sets) < 2:
        raise ConfigError(f"mmrag bench models compares two or more model sets, got {args.sets}")
    stems = [Path(s).stem for s in args.sets]
    if len(set(stems)) != len(stems):  # each set's collection is named after it
        raise ConfigError(f"Model sets need distinct names (file stems), got {stems}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        runs: list[ModelSetRun] = []
        first_of: dict[tuple, ModelSetRun] = {}  # encoders -> the run that indexed them
        for s in args.sets:
            key = encoders_of(s)
            run = bench_model_set(s, args.corpus, args.queries, args.qrels, work, first_of.get(key))
            first_of.setdefault(key, run)
            runs.append(run)
    # the table first: a plot that cannot be drawn must not cost the measurements
    print(json.dumps([asdict(r) for r in runs], indent=1) if args.json else format_runs(runs))
    plot_runs(runs, args.plot)
    if not args.json:
        print(f"plot: {os.path.abspath(args.plot)}")
    return 0
