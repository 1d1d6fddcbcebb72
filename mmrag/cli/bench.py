"""`mmrag bench`: speed figures measured side by side with their reference libraries."""

from __future__ import annotations

import argparse
import json
import sys

from .exits import EXIT_OK

# "all": not scale, models
CHOICES = (
    "encode", "images", "search", "latency", "coldstart", "serve", "docs", "scale", "models", "reduce", "all",
)  # fmt: skip


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measure encoding, image indexing, search, latency and cold start against references",
        description="Each figure is measured side by side with its reference in one run and printed "
        "as a ratio with its target (docs/performance.md). Generated inputs are cached under "
        "./runs/bench (or $MMRAG_BENCH_DIR).",
    )
    p.add_argument(
        "which",
        nargs="?",
        default="all",
        choices=CHOICES,
        help="benchmark to run (default all); scale is `mmrag bench-scale` (minutes to hours), not in all",
    )
    p.add_argument(
        "scale_args",
        nargs=argparse.REMAINDER,
        metavar="...",
        help="scale, models, reduce and serve only: their own options, e.g. --n 1000000 (see mmrag bench scale --help), "
        "-c C [--queries Q --qrels R] [--keep 0.99] [--plot P.png] (mmrag bench reduce --help), "
        "or SET SET --corpus C --queries Q --qrels R [--plot P.png] (mmrag bench models --help), "
        "or --users 32 --seconds 30 --models tiny (mmrag bench serve --help)",
    )
    p.add_argument("--quick", action="store_true", help="tiny models and small inputs: seconds, not minutes")
    p.add_argument("--json", action="store_true", help="print figures as JSON")
    p.add_argument(
        "--filter",
        action="store_true",
        help="search: filtered search with filters keeping 50%%, 10%%, 1%% and 0.1%% of the vectors: "
        "recall@10 against brute force over the allowed set, and QPS",
    )
    p.add_argument(
        "--mrr", action="store_true", help="encode: also compute CoSQA dev MRR of torch vs default (slow)"
    )
    p.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    import importlib

    if args.which == "models":  # model sets on the user's own corpus: its own options (mmrag/bench/models.py)
        from mmrag.bench.models import parse_args as parse_models
        from mmrag.bench.models import run_bench_models

        return run_bench_models(parse_models([*(["--json"] if args.json else []), *args.scale_args]))
    if args.which == "reduce":  # reductions x codes on a collection's own vectors (mmrag/bench/reduce.py)
        from mmrag.bench.reduce import parse_args as parse_reduce
        from mmrag.bench.reduce import run_bench_reduce

        return run_bench_reduce(parse_reduce([*(["--json"] if args.json else []), *args.scale_args]))
    if args.which == "scale":  # the on-disk IVF-PQ benchmark, with the options of `mmrag bench-scale`
        from .scale import parse_args, run_bench_scale

        flags = [f for f, on in (("--quick", args.quick), ("--json", args.json)) if on]
        return run_bench_scale(parse_args([*flags, *args.scale_args]))
    if args.which == "serve":  # its own options and verdict (mmrag/bench/serve.py)
        from mmrag.bench.serve import parse_args as parse_serve
        from mmrag.bench.serve import run_bench_serve

        flags = [f for f, on in (("--quick", args.quick), ("--json", args.json)) if on]
        return run_bench_serve(parse_serve([*flags, *args.scale_args]))
    if args.which == "search" and "--filter" in args.scale_args:  # after the name, REMAINDER took it
        args.scale_args = [a for a in args.scale_args if a != "--filter"]
        args.filter = True
    if args.scale_args:
        from mmrag.errors import ConfigError

        raise ConfigError(f"Unexpected arguments {args.scale_args} for mmrag bench {args.which}")

    from mmrag.bench import BENCHMARKS
    from mmrag.bench.report import format_table

    names = list(BENCHMARKS) if args.which == "all" else [args.which]
    figures = []
    for name in names:
        filtered = name == "search" and args.filter  # mmrag/bench/filters.py
        module = importlib.import_module("mmrag.bench.filters" if filtered else BENCHMARKS[name])
        if not args.json:
            print(f"running {name} ...", file=sys.stderr, flush=True)
        figures += module.run(args.quick)
        if name == "encode" and args.mrr and not args.quick:
            from mmrag.bench.encode import mrr_figures

            figures = [f for f in figures if not f.name.startswith("CoSQA")] + mrr_figures(
                False, compute=True
            )
    if args.json:
        json.dump([f.to_dict() for f in figures], sys.stdout, indent=1)
        print()
    else:
        print(format_table(figures))
    return EXIT_OK
