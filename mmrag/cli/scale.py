"""`mmrag bench-scale` (or `mmrag bench scale`): build and search an on-disk IVF-PQ index of N synthetic embeddings."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

QUICK_N = 200_000


DESCRIPTION = (
    "Generate N embedding-like unit vectors (a seeded mixture of 10k Gaussian components, "
    "in chunks), build an on-disk IVF-PQ index shard by shard, then search it from a fresh process: "
    "build time, RSS, recall@k after exact rescoring, p50/p99 latency, QPS, disk bytes. A killed run "
    "resumes from its last shard when run again with the same options (--fresh starts over)."
)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench-scale",
        help="benchmark a memory-mapped IVF-PQ index at millions of vectors (also: mmrag bench scale)",
        description=DESCRIPTION,
    )
    add_arguments(p)
    p.set_defaults(run=run_bench_scale)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The benchmark's options, shared by `mmrag bench-scale` and `mmrag bench scale`."""
    p.add_argument("--n", type=int, default=None, help="number of vectors (default 5,000,000)")
    p.add_argument("--quick", action="store_true", help=f"smoke test at {QUICK_N:,} vectors")
    p.add_argument("--dim", type=int, default=512, help="vector dimension (default 512)")
    p.add_argument("--queries", type=int, default=300, help="queries for recall and latency (default 300)")
    p.add_argument("--chunk", type=int, default=250_000, help="vectors per shard (default 250,000)")
    p.add_argument(
        "--ram-gb",
        type=float,
        default=2.0,
        help="RAM budget at query time: sizes the PQ code, and is the peak search RSS the run is judged against (default 2)",
    )
    p.add_argument("--threads", type=int, default=2, help="build threads (default 2)")
    p.add_argument(
        "--store",
        choices=("float16", "int8"),
        default="float16",
        help="the on-disk vectors that rescore the PQ candidates: float16 (default, 1 KB a 512-d vector) "
        "or int8 (half that; for runs whose fp16 store would not fit the disk)",
    )
    p.add_argument(
        "--sweep",
        type=_sweep,
        default=None,
        metavar="NPROBE:RESCORE,...",
        help="the search settings to measure (default 32:200,64:200,128:400,256:400); a new sweep "
        "on a finished build kept with --keep searches it again without rebuilding",
    )
    p.add_argument("--out", default="runs/scale", help="work folder (default runs/scale)")
    p.add_argument("--keep", action="store_true", help="keep the index files afterwards")
    p.add_argument("--fresh", action="store_true", help="start over instead of resuming a killed run")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    real = p.add_argument_group(
        "real vectors",
        "instead of the synthetic build: what the code chosen for --n/--ram-gb/--store (PQ bytes per "
        "dimension, store dtype, rescore_k) keeps of exact search on a collection's own vectors",
    )
    real.add_argument("--real", metavar="COLLECTION", default=None, help="a collection folder")
    real.add_argument("--real-space", default=None, help="its space (default: the one with most vectors)")
    real.add_argument(
        "--real-queries", metavar="JSONL", default=None, help="BEIR queries (with --real-qrels)"
    )
    real.add_argument("--real-qrels", metavar="TSV", default=None, help="BEIR qrels: MRR and nDCG@10")


def _sweep(text: str) -> tuple[tuple[int, int], ...]:
    """`32:200,64:400` -> ((32, 200), (64, 400)): lists probed and PQ candidates rescored."""
    try:
        pairs = tuple(tuple(int(v) for v in item.split(":")) for item in text.split(","))
    except ValueError:
        pairs = ()
    if not pairs or any(len(p) != 2 or min(p) < 1 for p in pairs):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected NPROBE:RESCORE pairs of positive integers, comma-separated, e.g. 32:200,64:400"
        )
    return pairs  # type: ignore[return-value]


def parse_args(argv: list[str], prog: str = "mmrag bench scale") -> argparse.Namespace:
    """The benchmark's options alone, for the `mmrag bench scale ...` spelling."""
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_arguments(p)
    return p.parse_args(argv)


def run_bench_scale(args: argparse.Namespace) -> int:
    from mmrag.bench.scale import MixtureSpec, ScaleSpec, Targets, run_scale, verdict

    n = QUICK_N if args.quick and args.n is None else (args.n or 5_000_000)
    spec = ScaleSpec(
        n=n,
        queries=args.queries,
        chunk=args.chunk,
        ram_budget=int(args.ram_gb * 1024**3),
        threads=args.threads,
        store=args.store,
        mixture=MixtureSpec(dim=args.dim),
        **({"sweep": args.sweep} if args.sweep else {}),
    )
    if args.real:
        return _run_real(args, spec)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:7.0f} s] {msg}", file=sys.stderr, flush=True)

    folder = Path(args.out) / f"n{n}"
    report = run_scale(spec, folder, keep=args.keep, log=log, fresh=args.fresh)
    report["verdict"] = verdict(report, Targets(rss_bytes=spec.ram_budget))
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    mb = 1024**2
    print(f"N={n:,} dim={args.dim} factory={report['config']['factory']}")
    resumed = f", over {report['runs']} runs (resumed)" if report.get("runs", 1) > 1 else ""
    print(
        f"build {report['build_s']:.0f} s (train {report['train_s']:.0f}, add {report['add_s']:.0f}, "
        f"merge {report['merge_s']:.0f}{resumed}); {report['disk_bytes'] / 1e9:.2f} GB on disk "
        f"({report['disk_bytes'] / n:.0f} bytes/vector); add rate {n / max(report['add_s'], 1e-9):,.0f} vectors/s"
    )
    rss = report["search"][0]["rss"]
    last = list(rss.values())[-1]
    print(
        f"search process RSS {last['VmRSS'] / mb:.0f} MB (anon {last['RssAnon'] / mb:.0f} MB, "
        f"mapped files {last['RssFile'] / mb:.0f} MB), peak {last['VmHWM'] / mb:.0f} MB"
    )
    print(
        f"{'nprobe':>6} {'rescore':>7} {'pass':>5} {'recall@10':>9} {'p50 ms':>7} {'p99 ms':>7} {'cpu p50':>7} "
        f"{'QPS':>6}"
    )
    for s in report["search"][0]["settings"]:
        print(
            f"{s['nprobe']:>6} {s['rescore_k']:>7} {s['pass']:>5} {s['recall_at_k']:>9.3f} "
            f"{s['p50_ms']:>7.1f} {s['p99_ms']:>7.1f} {s.get('p50_cpu_ms', 0):>7.1f} {s.get('qps', 0):>6.1f}"
        )
    print(format_verdict(report["verdict"]))
    return 0


def format_verdict(v: dict) -> str:
    """Two lines: recall and p50 at the best fast setting, and the peak RSS, each met or MISSED."""
    t, best = v["targets"], v["best"]
    head = f"targets: recall@10 >= {t['recall']:.2f} with warm p50 <= {t['p50_ms']:.0f} ms at one setting"
    if best is None:
        line = f"{head}: MISSED, no setting is that fast"
    else:
        line = (
            f"{head}: {'met' if v['recall_and_p50_met'] else 'MISSED'}; the best within that p50 is "
            f"nprobe {best['nprobe']} rescore {best['rescore_k']}, recall@10 {best['recall_at_k']:.3f} "
            f"at p50 {best['p50_ms']:.1f} ms"
        )
    gb = 1024**3
    rss = (
        f"peak search RSS {v['peak_rss_bytes'] / gb:.2f} GB against {t['rss_bytes'] / gb:.2f} GB "
        f"(--ram-gb): {'met' if v['rss_met'] else 'MISSED'}"
    )
    return f"{line}\n{rss}"


def _run_real(args: argparse.Namespace, spec) -> int:
    from dataclasses import asdict

    from indexes.ondisk import LargeIndexConfig, choose_large
    from mmrag.bench.scale import CODE_RAM_SHARE
    from mmrag.bench.scale_real import format_real, measure_real

    chosen = choose_large(spec.n, spec.mixture.dim, int(spec.ram_budget * CODE_RAM_SHARE))
    chosen = LargeIndexConfig(**{**asdict(chosen), "store_dtype": spec.store})
    data, config, rows = measure_real(
        args.real,
        chosen,
        spec.mixture.dim,
        space=args.real_space,
        queries=args.real_queries,
        qrels=args.real_qrels,
    )
    if args.json:
        print(
            json.dumps(
                {"chosen": asdict(chosen), "matched": asdict(config), "rows": [asdict(r) for r in rows]}
            )
        )
        return 0
    print(
        f"chosen for N={spec.n:,} x {spec.mixture.dim}: {chosen.factory}, {chosen.store_dtype} store, "
        f"rescore {chosen.rescore_k}; the same code here: {config.factory}"
    )
    print(format_real(data, rows))
    return 0
