"""dupes: groups of near-duplicate items per space (images, code, text) of a collection."""

from __future__ import annotations

import argparse
import json
import sys

from mmrag.dupes import SPACE_OF, empty_space_note

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

    wanted = _modalities(args.modalities)
    with Collection.open(args.collection) as coll:
        groups = find_dupes(coll, wanted, args.threshold, args.limit)
        sizes = {space: coll.store.vector_ids(space).size for space in coll.spaces()}
        pictures = coll.stats()["by_modality"].get("image", 0)
    searched = [m for m in (wanted or SPACE_OF) if sizes.get(SPACE_OF[m], 0) > 1]
    for m in wanted or SPACE_OF:  # said on stderr, so --json stays one JSON document
        if m not in searched and (wanted or sizes.get(SPACE_OF[m], 0) or (m == "image" and pictures)):
            print(f"mmrag dupes: {empty_space_note(m, sizes, pictures)}", file=sys.stderr)
    if args.json:
        print(json.dumps([g.to_dict() for g in groups], indent=1))
        return EXIT_OK
    if not groups and searched:
        print(f"no near-duplicates found among the {' and '.join(searched)} items")
    for n, g in enumerate(groups, 1):
        print(f"group {n}: {len(g.members)} {g.space} items, similarity >= {g.similarity:.4f}")
        for m in g.members:
            print(f"  [{m.id}] {m.similarity:.4f}  {member_label(m.key, m.source)}")
    return EXIT_OK


def member_label(key: str, source: str) -> str:
    """One name per member: the key, which holds the path (`a.py#add`, `doc.md#L1-3`); a JSONL
    record's `_id` gets its file beside it."""
    return key if key.startswith(source) else f"{key}  ({source})"
