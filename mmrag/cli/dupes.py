"""dupes: groups of near-duplicate items per space (images, code, text) of a collection."""

from __future__ import annotations

import argparse
import json

from .core import _modalities, _positive_int
from .exits import EXIT_OK


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dupes",
        help="list groups of near-duplicate items (re-encoded or resized images, copied code, repeated text)",
        description="Every pair of items of one space whose cosine reaches the threshold is linked; each "
        "connected group of two or more is printed with its members, their sources and similarity. "
        "Default thresholds per space are in docs/quality.md (Near-duplicates).",
    )
    p.add_argument("-c", "--collection", required=True, metavar="DIR", help="collection folder")
    p.add_argument(
        "-m", "--modalities", default=None, help="comma list of image,code,text (default: all three)"
    )
    p.add_argument(
        "--threshold", type=float, default=None, metavar="T", help="cosine in (0, 1] (default: per space)"
    )
    p.add_argument("--limit", type=_positive_int, default=None, metavar="N", help="print at most N groups")
    p.add_argument("--json", action="store_true", help="one JSON list of groups")
    p.set_defaults(run=run_dupes)


def run_dupes(args: argparse.Namespace) -> int:
    from mmrag.dupes import find_dupes
    from mmrag.storage.collection import Collection

    with Collection.open(args.collection) as coll:
        groups = find_dupes(coll, _modalities(args.modalities), args.threshold, args.limit)
    if args.json:
        print(json.dumps([g.to_dict() for g in groups], indent=1))
        return EXIT_OK
    if not groups:
        print("no near-duplicates found")
    for n, g in enumerate(groups, 1):
        print(f"group {n}: {len(g.members)} {g.space} items, similarity >= {g.similarity:.4f}")
        for m in g.members:
            print(
                f"  [{m.id}] {m.similarity:.4f}  {m.source}" + (f"  ({m.key})" if m.key != m.source else "")
            )
    return EXIT_OK
