"""`mmrag train mine|fit` (also `python -m mmrag.train`): mine docstring/code pairs, then fine-tune an encoder on them."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

from ..errors import MMRagError
from .pairs import mine_pairs, write_pairs_jsonl
from .spec import KINDS, SIDES, TrainCfg
from .trainer import train


def default_sources() -> list[str]:
    """The standard library and the active environment's site-packages: documented code at hand."""
    import site
    import sysconfig

    paths = {sysconfig.get_paths()["stdlib"], *site.getsitepackages()}
    return sorted(paths)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mmrag train", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    mine = sub.add_parser(
        "mine",
        help="write (docstring summary, code) pairs as JSONL",
        description="Mine (docstring summary, function without its docstring) pairs from Python sources; "
        "tests, generated code, dunders and trivial bodies are skipped, duplicates removed.",
    )
    mine.add_argument("paths", nargs="*", help="folders to mine (default: stdlib + site-packages)")
    mine.add_argument("--out", required=True, help="JSONL file to write ({query, document, source} rows)")
    mine.add_argument("--max-pairs", type=int, help="stop after this many pairs (default: all)")
    mine.add_argument("--min-doc-words", type=int, default=3, help="shortest summary kept (default 3)")
    mine.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    fit = sub.add_parser(
        "fit",
        help="fine-tune an encoder with in-batch negatives",
        description="Contrastive fine-tuning (in-batch negatives) of a sentence-transformers or "
        "CodeBERT-family encoder, or CLIP on (image, caption) pairs. Prints one JSON event per "
        "line (steps, checkpoints, held-out MRR per epoch); rerunning resumes from the last "
        "checkpoint. The output dir is an encoder spec: code:OUT or text:OUT.",
    )
    d = {f.name: f.default for f in fields(TrainCfg)}
    fit.add_argument("--base-model", required=True, help="model dir or hub id to start from")
    fit.add_argument("--output-dir", required=True, help="where the tuned model and checkpoints go")
    fit.add_argument("--pairs", help="JSONL of {query, document} (or {image, caption} for --kind clip)")
    fit.add_argument("--mine", nargs="*", default=[], help="mine pairs from these folders instead")
    fit.add_argument("--kind", choices=KINDS, default=d["kind"], help=f"model family (default {d['kind']})")
    helps = {
        "epochs": "passes over the training pairs",
        "batch_size": "pairs per step; the other pairs in a batch are the negatives",
        "max_seq_length": "token cut-off for documents",
        "query_max_length": "token cut-off for queries",
        "val_size": "held-out pairs for the per-epoch MRR",
        "seed": "shuffle and split seed",
        "checkpoint_every": "steps between checkpoints",
        "max_pairs": "use at most this many pairs",
        "max_steps": "stop (and checkpoint) after this many steps",
        "threads": "torch CPU threads (default: torch's)",
        "lr": "peak learning rate (linear warm-up, then linear decay)",
        "warmup_ratio": "share of steps spent warming up",
        "scale": "inverse temperature of the cosine logits",
        "augment": "share of queries rewritten in web-search style",
    }
    for name, text in helps.items():
        kind = float if name in ("lr", "warmup_ratio", "scale", "augment") else int
        default = d[name]
        tail = "" if default is None else f" (default {default})"
        fit.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default, help=text + tail)
    fit.add_argument("--doc-view", default=d["doc_view"], help="code view applied to documents (default raw)")
    fit.add_argument(
        "--side", choices=SIDES, default=d["side"], help="both towers, or only the query tower (default both)"
    )
    fit.add_argument("--no-resume", action="store_true", help="start over instead of resuming a checkpoint")
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
