"""`mmrag train mine|fit` (also `python -m mmrag.train`): mine docstring/code pairs, then fine-tune an encoder on them."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

from ..errors import MMRagError
from .pairs import mine_pairs, write_pairs_jsonl
from .trainer import KINDS, SIDES, TrainCfg, train


def default_sources() -> list[str]:
    """The standard library and the active environment's site-packages: documented code at hand."""
    import site
    import sysconfig

    paths = {sysconfig.get_paths()["stdlib"], *site.getsitepackages()}
    return sorted(paths)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mmrag train", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    mine = sub.add_parser("mine", help="write (docstring summary, code) pairs as JSONL")
    mine.add_argument("paths", nargs="*", help="folders to mine (default: stdlib + site-packages)")
    mine.add_argument("--out", required=True)
    mine.add_argument("--max-pairs", type=int)
    mine.add_argument("--min-doc-words", type=int, default=3)
    mine.add_argument("--seed", type=int, default=0)
    fit = sub.add_parser("fit", help="fine-tune an encoder with in-batch negatives")
    defaults = {f.name: f.default for f in fields(TrainCfg)}
    fit.add_argument("--base-model", required=True)
    fit.add_argument("--output-dir", required=True)
    fit.add_argument("--pairs")
    fit.add_argument("--mine", nargs="*", default=[])
    fit.add_argument("--kind", choices=KINDS, default=defaults["kind"])
    for name in ("epochs", "batch_size", "max_seq_length", "query_max_length", "val_size", "seed"):
        fit.add_argument(f"--{name.replace('_', '-')}", type=int, default=defaults[name])
    for name in ("checkpoint_every", "max_pairs", "max_steps", "threads"):
        fit.add_argument(f"--{name.replace('_', '-')}", type=int, default=defaults[name])
    for name in ("lr", "warmup_ratio", "scale", "augment"):
        fit.add_argument(f"--{name.replace('_', '-')}", type=float, default=defaults[name])
    fit.add_argument("--doc-view", default=defaults["doc_view"])
    fit.add_argument("--side", choices=SIDES, default=defaults["side"])
    fit.add_argument("--no-resume", action="store_true")
    fit.add_argument("--train-embeddings", action="store_true", help="also update the word-embedding table")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "mine":
            pairs = mine_pairs(
                args.paths or default_sources(),
                min_doc_words=args.min_doc_words,
                max_pairs=args.max_pairs,
                seed=args.seed,
            )
            write_pairs_jsonl(pairs, args.out)
            print(f"wrote {len(pairs)} pairs to {args.out}", file=sys.stderr)
            return 0
        opts = vars(args).copy()
        opts["freeze_embeddings"] = not opts.pop("train_embeddings")
        for key in ("command", "no_resume"):
            opts.pop(key)
        cfg = TrainCfg(**{**opts, "mine": tuple(args.mine), "resume": not args.no_resume})
        result = train(cfg, progress=lambda event: print(json.dumps(event), file=sys.stderr, flush=True))
        print(json.dumps({"output_dir": result.output_dir, "val_mrr": result.val_mrr, "steps": result.steps}))
        return 0
    except MMRagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
