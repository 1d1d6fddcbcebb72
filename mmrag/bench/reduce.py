"""`mmrag bench reduce`: what each smaller form of a space's vectors costs in retrieval, on its own vectors.

Every reduction (indexes/reduce.py: PCA, Matryoshka truncation where the model allows it, UMAP,
random projection) at several dimensions, times every code (fp32, fp16, SQ8, PQ, binary), is fitted
on a sample of the collection's vectors and searched with queries reduced the same way:
- retention: with BEIR queries and qrels, MRR and nDCG@10 over those of the exact full-dimension
  search (the smaller of the two ratios); without, the overlap of the top 10 with that search, the
  queries being collection vectors held out of the fit and of the searched set;
- trustworthiness (sklearn) of the 10 nearest neighbours of a sample, after reduction and coding;
- bytes per vector, queries/s over the whole query set, and the time to fit the reduction.
One table, a retention-versus-bytes plot, and the smallest setting within `--keep`, with the
`mmrag compact` command that applies it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import faiss
import numpy as np

from mmrag.errors import ConfigError

REDUCTIONS = ("pca", "mrl", "umap", "rp")
CODES = ("fp32", "fp16", "sq8", "pq", "binary")
STORABLE = ("fp32", "fp16", "sq8", "pq")  # codes `mmrag compact` can store (pqM too); binary is measured only
HELD_OUT = 500  # collection vectors held out as queries when no queries are given
TRUST_SAMPLE = 1000  # trustworthiness is O(n^2): 1,000 points take ~0.1 s a row
TRUST_K = 10
FIT_SAMPLE = 50_000  # PCA on 50k vectors is exact to the third decimal of retention and takes a second
UMAP_SAMPLE = 5_000  # UMAP's fit is the slowest step by far; its sample is capped harder
UMAP_MAX_DIM = 32  # UMAP past a few dozen dimensions costs minutes and is not what it is used for
DEPTH = 100  # ranks kept per query: MRR@100 (a rank past 100 adds < 0.01 to it)


@dataclass(frozen=True)
class ReduceRow:
    reduction: str  # "none", "pca", "mrl", "umap", "rp"
    dim: int
    code: str
    bytes_per_vector: float
    retention: float  # min(MRR, nDCG@10) ratio with qrels, else overlap@10 with exact full-dim search
    overlap10: float
    mrr: float | None
    ndcg10: float | None
    trust: float
    qps: float
    fit_s: float
    note: str = ""

    @property
    def setting(self) -> str:
        head = "none" if self.reduction == "none" else f"{self.reduction}:{self.dim}"
        return f"{head},{self.code}"


def code_index(code: str, dim: int) -> faiss.Index | faiss.IndexBinary | None:
    """An untrained index storing `code`; None where the code cannot hold `dim`-d vectors."""
    if code == "binary":
        return faiss.IndexBinaryFlat(dim) if dim % 8 == 0 else None
    if code.startswith("pq"):  # pq: one byte per 4 dims (16x smaller than fp32); pqM: M bytes
        m = int(code[2:]) if code[2:] else max(1, dim // 4)
        return (
            faiss.index_factory(dim, f"PQ{m}", faiss.METRIC_INNER_PRODUCT)
            if dim % m == 0 and m <= dim
            else None
        )
    factory = {"fp32": "Flat", "fp16": "SQfp16", "sq8": "SQ8"}[code]
    return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)


def _bits(y: np.ndarray) -> np.ndarray:
    return np.packbits(y > 0, axis=1)


def coded(code: str, y: np.ndarray, train: np.ndarray) -> tuple[Callable, np.ndarray, float]:
    """(search(queries, k) -> ids, decoded sample for trustworthiness, bytes per vector)."""
    index = code_index(code, y.shape[1])
    if index is None:
        raise ValueError(f"{code} cannot hold {y.shape[1]}-d vectors")
    if code == "binary":
        index.add(_bits(y))
        sample = np.where(y[:TRUST_SAMPLE] > 0, 1.0, -1.0).astype(np.float32)
        return (lambda q, k: index.search(_bits(q), k)[1]), sample, y.shape[1] / 8
    if not index.is_trained:
        pq = faiss.downcast_index(index)
        if isinstance(pq, faiss.IndexPQ):
            pq.do_polysemous_training = False
            # a small collection trains its codebooks on fewer than 39 points a centroid: said once
            # in the table's note (measure), not by FAISS once per sub-quantizer
            pq.pq.cp.min_points_per_centroid = 1
        index.train(train)
    index.add(y)
    sample = index.sa_decode(index.sa_encode(y[:TRUST_SAMPLE]))
    return (lambda q, k: index.search(q, k)[1]), sample, float(index.sa_code_size())


@dataclass
class Data:
    """The vectors of one space, the queries, and what counts as a hit."""

    space: str
    db: np.ndarray  # (n, D) unit vectors searched
    keys: list[str]  # item key per db row
    queries: np.ndarray  # (q, D) unit vectors
    relevant: list[dict[str, float]] | None  # qrels per query, or None (overlap only)
    matryoshka: bool


def load_data(path: str, space: str | None, queries: str | None, qrels: str | None, sample: int) -> Data:
    from mmrag.storage.collection import Collection

    with Collection.open(path) as coll:
        sizes = {s: len(coll.store.vector_ids(s)) for s in coll.spaces()}
        if not sizes or max(sizes.values()) == 0:
            raise ConfigError(f"{path} holds no vectors to measure")
        space = space or max(sizes, key=lambda s: sizes[s])  # ties: the first in SPACES order
        if space not in sizes:
            raise ConfigError(f"No space {space!r} in {path}; it has {sorted(sizes)}")
        ids = coll.store.vector_ids(space)
        if len(ids) > sample:
            ids = np.sort(np.random.default_rng(0).choice(ids, sample, replace=False))
        ids, db = coll.store.vectors(space, ids, coll.manifest.dims[space])
        keys_of = coll.store.fetch_items(ids.tolist())
        keys = [keys_of[int(i)]["key"] for i in ids]
        matryoshka = coll.matryoshka(space)
        models = dict(coll.manifest.models)
    if queries:
        if not qrels:
            raise ConfigError("--queries needs --qrels (without both, held-out vectors are the queries)")
        from encoders.modelsets import ModelSet
        from mmrag.evaluate import load_queries
        from mmrag.metrics import load_qrels
        from mmrag.models import Models

        texts, judged = load_queries(queries), load_qrels(qrels)
        qids = [q for q in judged if q in texts]
        if not qids:
            raise ConfigError(f"No query in {queries} has a judgement in {qrels}")
        role = {"image": "clip", "caption": "clip"}.get(space, space)
        enc = Models(ModelSet.from_dict(models)).query(role)
        q = enc.encode_text([texts[i] for i in qids], query=True).astype(np.float32)
        return Data(space, db, keys, _unit(q), [judged[i] for i in qids], matryoshka)
    if len(db) < 2 * HELD_OUT:
        raise ConfigError(f"Space {space!r} has {len(db)} vectors; without --queries it needs {2 * HELD_OUT}")
    held = np.zeros(len(db), bool)
    held[np.random.default_rng(1).choice(len(db), HELD_OUT, replace=False)] = True
    return Data(space, db[~held], [k for k, h in zip(keys, held) if not h], db[held], None, matryoshka)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _quality(found: np.ndarray, data: Data) -> tuple[float | None, float | None]:
    """MRR@DEPTH and nDCG@10 of the ranked rows against the qrels; (None, None) without qrels."""
    if data.relevant is None:
        return None, None
    from mmrag.metrics import ndcg_at, reciprocal_rank

    ranked = [[data.keys[i] for i in row if i >= 0] for row in found]
    mrr = float(np.mean([reciprocal_rank(r, rel, DEPTH) for r, rel in zip(ranked, data.relevant)]))
    ndcg = float(np.mean([ndcg_at(r, rel, 10) for r, rel in zip(ranked, data.relevant)]))
    return mrr, ndcg


def _overlap(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(found, truth)]))


def measure(
    data: Data,
    dims: list[int],
    reductions: tuple[str, ...] = REDUCTIONS,
    codes: tuple[str, ...] = CODES,
    progress: Callable[[str], None] | None = None,
) -> list[ReduceRow]:
    """Every (reduction, dim, code) row, the full-dimension ones first (the reference is none,fp32)."""
    from sklearn.manifold import trustworthiness

    from indexes.errors import ReductionError
    from indexes.reduce import check_reduce, make_reducer

    big = data.db.shape[1]
    rng = np.random.default_rng(0)
    trust_rows = rng.choice(len(data.db), min(TRUST_SAMPLE, len(data.db)), replace=False)
    fit_rows = np.sort(rng.choice(len(data.db), min(FIT_SAMPLE, len(data.db)), replace=False))
    db = np.ascontiguousarray(data.db[np.r_[trust_rows, np.setdiff1d(np.arange(len(data.db)), trust_rows)]])
    keys = [data.keys[i] for i in np.r_[trust_rows, np.setdiff1d(np.arange(len(data.db)), trust_rows)]]
    data = Data(data.space, db, keys, data.queries, data.relevant, data.matryoshka)  # trust sample first
    x_trust = db[: len(trust_rows)]
    truth = faiss.knn(data.queries, db, DEPTH, metric=faiss.METRIC_INNER_PRODUCT)[1]
    rows: list[ReduceRow] = []
    base: dict[str, float] = {}

    def add_rows(kind: str, dim: int, y: np.ndarray, yq: np.ndarray, fit_s: float) -> None:
        train = y[np.sort(rng.choice(len(y), min(len(y), 65_536), replace=False))]
        for code in codes:
            try:
                search, sample, nbytes = coded(code, y, train)
            except (ValueError, RuntimeError) as e:
                if progress:
                    progress(f"{kind}:{dim},{code}: skipped ({e})")
                continue
            t = time.perf_counter()
            found = search(yq, DEPTH)
            qps = len(yq) / max(time.perf_counter() - t, 1e-9)
            mrr, ndcg = _quality(found, data)
            overlap = _overlap(found, truth)
            if not base:  # the first row is none,fp32: the exact full-dimension reference
                base.update(mrr=mrr or 0.0, ndcg=ndcg or 0.0)
            if mrr is not None and base["mrr"] > 0 and base["ndcg"] > 0:
                retention = min(mrr / base["mrr"], ndcg / base["ndcg"])
            else:
                retention = overlap
            trust = float(trustworthiness(x_trust, sample, n_neighbors=TRUST_K))
            row = ReduceRow(kind, dim, code, nbytes, retention, overlap, mrr, ndcg, trust, qps, fit_s)
            rows.append(row)
            if progress:
                progress(f"{row.setting}: retention {retention:.4f}, {nbytes:g} B/vector")

    if progress and any(c.startswith("pq") for c in codes) and len(db) < 39 * 256:
        progress(
            f"note: PQ codebooks are trained on all {len(db)} vectors they encode (FAISS asks for 9,984)"
        )
    add_rows("none", big, db, data.queries, 0.0)
    for kind in reductions:
        if kind == "mrl" and not data.matryoshka:
            if progress:
                progress("mrl: skipped, this space's model is not declared Matryoshka (truncation refused)")
            continue
        for dim in dims:
            if dim >= big or (kind == "umap" and dim > UMAP_MAX_DIM):
                continue
            try:
                reducer = make_reducer(check_reduce(f"{kind}:{dim}", big, matryoshka=data.matryoshka), big)
            except ReductionError as e:
                if progress:
                    progress(f"{kind}:{dim}: {e}")
                continue
            cap = UMAP_SAMPLE if kind == "umap" else FIT_SAMPLE
            t = time.perf_counter()
            reducer.fit(db[fit_rows[:cap]] if len(fit_rows) > cap else db[fit_rows])
            fit_s = time.perf_counter() - t
            y, yq = reducer.transform(db), reducer.transform(data.queries)
            add_rows(kind, dim, y, yq, fit_s)
    return rows


@dataclass(frozen=True)
class MapRow:
    """A 2-d layout judged as a search space: where it puts held-out queries among the items."""

    method: str
    overlap10: float  # top 10 by distance in the layout vs exact full-dimension top 10
    mrr: float | None
    trust: float
    fit_s: float
    place_s: float  # time to place the queries (and items outside the fit sample)


class _TSNE:
    """openTSNE fitted on the sample; `transform` places new points against the fixed embedding
    (openTSNE's own out-of-sample method), the only way t-SNE can take a query."""

    def __init__(self) -> None:
        from openTSNE import TSNE

        self._tsne = TSNE(n_components=2, perplexity=30, metric="cosine", random_state=0, n_jobs=-1)

    def fit(self, x: np.ndarray) -> _TSNE:
        self._embedding = self._tsne.fit(x)
        return self

    def project(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._embedding.transform(x), dtype=np.float32)


def measure_maps(data: Data, progress: Callable[[str], None] | None = None) -> list[MapRow]:
    """PCA, UMAP and t-SNE to 2-d, fitted on the same sample, neighbours taken by distance in the map."""
    from sklearn.manifold import trustworthiness

    from indexes.reduce import make_reducer

    big = data.db.shape[1]
    rng = np.random.default_rng(0)
    fit_rows = np.sort(rng.choice(len(data.db), min(UMAP_SAMPLE, len(data.db)), replace=False))
    trust_rows = fit_rows[:TRUST_SAMPLE]
    truth = faiss.knn(data.queries, data.db, 10, metric=faiss.METRIC_INNER_PRODUCT)[1]
    rows = []
    makers = {
        "pca": lambda: make_reducer("pca:2", big),
        "umap": lambda: make_reducer("umap:2", big),
        "tsne": _TSNE,
    }
    for method, make in makers.items():
        try:
            reducer = make()
            t = time.perf_counter()
            reducer.fit(data.db[fit_rows])
            fit_s = time.perf_counter() - t
            t = time.perf_counter()
            y, yq = reducer.project(data.db), reducer.project(data.queries)
            place_s = time.perf_counter() - t
        except (ImportError, ValueError) as e:  # umap-learn or openTSNE missing
            if progress:
                progress(f"2-d map {method}: skipped ({e})")
            continue
        found = faiss.knn(np.ascontiguousarray(yq), np.ascontiguousarray(y), DEPTH, metric=faiss.METRIC_L2)[1]
        mrr, _ = _quality(found, data)
        trust = float(trustworthiness(data.db[trust_rows], y[trust_rows], n_neighbors=TRUST_K))
        rows.append(MapRow(method, _overlap(found, truth), mrr, trust, fit_s, place_s))
        if progress:
            progress(f"2-d map {method}: top-10 overlap {rows[-1].overlap10:.4f}")
    return rows


def format_maps(rows: list[MapRow]) -> str:
    lines = [
        "| 2-d map | top-10 overlap | MRR | trustworthiness | fit s | place s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        mrr = f"{r.mrr:.4f}" if r.mrr is not None else "-"
        lines.append(
            f"| {r.method} | {r.overlap10:.4f} | {mrr} | {r.trust:.4f} | {r.fit_s:.1f} | {r.place_s:.1f} |"
        )
    return "\n".join(lines)


def recommend(rows: list[ReduceRow], keep: float) -> ReduceRow | None:
    """The storable row with the fewest bytes whose retention reaches `keep` (ties: higher retention)."""
    ok = [r for r in rows if (r.code in STORABLE or r.code[:2] == "pq") and r.retention >= keep]
    return min(ok, key=lambda r: (r.bytes_per_vector, -r.retention)) if ok else None


def format_rows(rows: list[ReduceRow], qrels: bool) -> str:
    head = (
        "| reduction | d | code | bytes/vector | retention | top-10 overlap | "
        + ("MRR | nDCG@10 | " if qrels else "")
        + "trustworthiness | QPS | fit s |"
    )
    sep = "|" + "---|" * (head.count("|") - 1)
    lines = [head, sep]
    for r in rows:
        q = f"{r.mrr:.4f} | {r.ndcg10:.4f} | " if qrels and r.mrr is not None else ""
        lines.append(
            f"| {r.reduction} | {r.dim} | {r.code} | {r.bytes_per_vector:g} | {r.retention:.4f} | "
            f"{r.overlap10:.3f} | {q}{r.trust:.4f} | {r.qps:,.0f} | {r.fit_s:.2f} |"
        )
    return "\n".join(lines)


def plot_rows(rows: list[ReduceRow], path: str, keep: float) -> None:
    """Retention against bytes per vector (log), one line per reduction and code."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ConfigError("The plot needs matplotlib: pip install 'mmrag[bench]'") from e
    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = dict(zip(CODES, "os^Dx"))
    colours = dict(zip(("none", *REDUCTIONS), ("black", "tab:blue", "tab:green", "tab:red", "tab:orange")))
    for kind in ("none", *REDUCTIONS):
        for code in dict.fromkeys(r.code for r in rows):
            pts = sorted(
                (r.bytes_per_vector, r.retention) for r in rows if r.reduction == kind and r.code == code
            )
            if pts:
                ax.plot(
                    *zip(*pts),
                    marker=markers.get(code, "v"),
                    color=colours[kind],
                    label=f"{kind},{code}",
                    lw=1,
                    ms=4,
                )
    ax.axhline(keep, color="grey", ls="--", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bytes per vector (log)")
    ax.set_ylabel("retention (1 = exact full dimension)")
    ax.set_title("retention versus size per reduction and code")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6, ncol=3, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="mmrag bench reduce",
        description="Measure each reduction x code on a collection's own vectors: retention, "
        "trustworthiness, bytes/vector, QPS, fit time; recommend the smallest setting within --keep.",
    )
    p.add_argument("-c", "--collection", required=True, metavar="DIR")
    p.add_argument("--space", default=None, help="space to measure (default: the one with most vectors)")
    p.add_argument("--queries", default=None, help="BEIR queries JSONL (with --qrels): MRR and nDCG@10")
    p.add_argument("--qrels", default=None, help="BEIR qrels TSV")
    p.add_argument("--keep", type=float, default=0.99, help="retention to keep (default 0.99)")
    p.add_argument(
        "--dims", default=None, help="comma list of dimensions (default: powers of 2 from 16 below D)"
    )
    p.add_argument("--reductions", default=",".join(REDUCTIONS), help=f"comma list of {REDUCTIONS}")
    p.add_argument("--codes", default=",".join(CODES), help=f"comma list of {CODES}, or pqM (M bytes)")
    p.add_argument("--sample", type=int, default=200_000, help="collection vectors measured at most")
    p.add_argument("--plot", default=None, metavar="PNG", help="draw retention versus bytes per vector")
    p.add_argument(
        "--maps",
        action="store_true",
        help="also judge 2-d layouts (PCA, UMAP, t-SNE with openTSNE's transform) as search spaces",
    )
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def _choices(value: str, valid: tuple[str, ...], what: str) -> tuple[str, ...]:
    got = tuple(v.strip().lower() for v in value.split(",") if v.strip())
    bad = [v for v in got if v not in valid and not (what == "codes" and re.fullmatch(r"pq\d+", v))]
    if bad or not got:
        raise ConfigError(f"Unknown {what} {bad or value!r}; valid: {list(valid)}")
    return got


def _without_missing(reductions: tuple[str, ...], asked: bool) -> tuple[tuple[str, ...], dict[str, str]]:
    """Drop UMAP when umap-learn is not installed (an optional extra): by default with a note in
    the output, and as an error when the user asked for it by name."""
    if "umap" not in reductions:
        return reductions, {}
    try:
        import umap  # noqa: F401
    except ImportError:
        why = "needs umap-learn: pip install 'mmrag[umap]'"
        if asked:
            raise ConfigError(f"--reductions umap {why}") from None
        return tuple(r for r in reductions if r != "umap"), {"umap": why}
    return reductions, {}


def run_bench_reduce(args: argparse.Namespace) -> int:
    reductions = _choices(args.reductions, REDUCTIONS, "reductions")
    codes = _choices(args.codes, CODES, "codes")
    if not 0 < args.keep <= 1:
        raise ConfigError(f"--keep is a retention in (0, 1], got {args.keep}")
    reductions, skipped = _without_missing(reductions, asked=args.reductions != ",".join(REDUCTIONS))
    say = None if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    for kind, why in skipped.items():
        if say:
            say(f"{kind}: skipped, {why}")
    data = load_data(args.collection, args.space, args.queries, args.qrels, args.sample)
    big = data.db.shape[1]
    if args.dims:
        try:
            dims = sorted({int(d) for d in args.dims.split(",")}, reverse=True)
        except ValueError:
            raise ConfigError(f"--dims takes integers, got {args.dims!r}") from None
    else:
        dims = [2**e for e in range(int(math.log2(big - 1)), 3, -1)]
    if say:
        say(f"space {data.space}: {len(data.db)} vectors of {big} dims, {len(data.queries)} queries")
    rows = measure(data, dims, reductions, codes, say)
    best = recommend(rows, args.keep)
    maps = measure_maps(data, say) if args.maps else []
    if args.json:
        out = {"space": data.space, "rows": [asdict(r) for r in rows], "keep": args.keep, "skipped": skipped}
        out["recommended"] = best.setting if best else None
        out["maps"] = [asdict(m) for m in maps]
        print(json.dumps(out, indent=1))
    else:
        print(format_rows(rows, data.relevant is not None))
        if best is None:
            print(f"no storable setting keeps {args.keep} of the full-dimension retrieval; keep fp32")
        else:
            to = best.setting.replace("none,", "")
            print(
                f"smallest within --keep {args.keep}: {best.setting} ({best.bytes_per_vector:g} bytes/vector, "
                f"retention {best.retention:.4f}): mmrag compact -c {args.collection} --space {data.space} --to {to}"
            )
        if maps:
            print(format_maps(maps))
    if args.plot:  # after the table: a plot that cannot be drawn must not cost the measurements
        plot_rows(rows, args.plot, args.keep)
        if not args.json:
            print(f"plot: {os.path.abspath(args.plot)}")
    return 0
