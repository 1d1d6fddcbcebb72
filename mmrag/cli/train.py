"""train (mine pairs, fine-tune an encoder) and fit-joint (fit a joint-space projection)."""

from __future__ import annotations

import argparse
import sys

from .exits import EXIT_OK


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        add_help=False,
        help="mine (docstring, code) pairs and fine-tune an encoder on them",
        description="`mmrag train mine --out pairs.jsonl` then `mmrag train fit --base-model M --output-dir D "
        "--pairs pairs.jsonl`; `mmrag train fit --help` lists the options. The output directory is an "
        "encoder spec: text:D or code:D.",
    )
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p.set_defaults(run=run_train)

    p = sub.add_parser(
        "fit-joint",
        help="fit the code (or text) projection into the joint space on paired data",
        description="Encodes (query, document) pairs, fits a ridge least-squares map from the code encoder's "
        "space to the joint space, reports held-out pair MRR against the identity choice, stores the map in "
        "the collection and re-derives the joint vectors of existing items without re-encoding them.",
    )
    p.add_argument("-c", "--collection", required=True, metavar="DIR")
    p.add_argument("--pairs", required=True, help="JSONL of {query, document} (e.g. from `mmrag train mine`)")
    p.add_argument("--modality", default="code", choices=("code", "text"))
    p.add_argument("--max-pairs", type=int, default=4000, help="pairs to encode (default 4000)")
    p.add_argument(
        "--store",
        choices=("auto", "always", "never"),
        default="auto",
        help="auto (default): store the fitted map only if it beats identity on held-out pairs",
    )
    p.set_defaults(run=run_fit_joint)


def run_train(args: argparse.Namespace) -> int:
    from mmrag.train.__main__ import main as train_main

    return train_main(args.argv or ["--help"])


def run_fit_joint(args: argparse.Namespace) -> int:
    from mmrag.api import Engine
    from mmrag.indexing.joint import fit_collection_projection
    from mmrag.train.pairs import read_pairs_jsonl

    pairs = read_pairs_jsonl(args.pairs)[: args.max_pairs]
    store = {"auto": None, "always": True, "never": False}[args.store]
    with Engine.open(args.collection, write=True) as eng:
        report, stored = fit_collection_projection(eng, pairs, args.modality, store=store)
    print(
        f"{args.modality} -> joint: {report.pairs} pairs, ridge {report.ridge}; held-out pair MRR "
        f"identity {report.val_mrr_identity:.4f} vs fitted {report.val_mrr_fitted:.4f} ({report.val_pairs} pairs)",
        file=sys.stderr,
    )
    print("stored: joint vectors re-derived" if stored else "not stored: identity kept", file=sys.stderr)
    return EXIT_OK
