"""compact: store one space's vectors smaller (a reduction, a code) from the vectors already stored.

`--to pca:128,sq8` re-encodes the space without re-embedding anything; the old index serves until
the new one is written and named by the manifest (Collection.compact). `--reduce` of `mmrag index`
records the same choice for the next save (apply_reduce_args).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .exits import EXIT_OK

TO_HELP = (
    "REDUCTION[,CODE]: a reduction KIND:DIM (pca:128, mrl:256 for Matryoshka models, rp:64, umap:16) "
    "or none, and a code: fp32 (default), fp16, sq8, sq4, pq or pqM (M bytes a vector). E.g. pca:128,sq8"
)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compact",
        help="store one space's vectors smaller (PCA, truncation, a quantised code) without re-embedding",
        description="Rebuilds one space's index from its stored vectors with a reduction fitted on "
        "them and a smaller code; queries are reduced the same way. The old index keeps serving until "
        "the new one is written (a kill leaves it in use). The choice is recorded: later runs of "
        "mmrag index keep it. Measure the cost first with mmrag bench reduce.",
    )
    p.add_argument("-c", "--collection", required=True, metavar="DIR", help="collection folder")
    p.add_argument("--space", required=True, help="the space to compact (mmrag info lists them)")
    p.add_argument("--to", required=True, metavar="SPEC", help=TO_HELP)
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="wait for another writer")
    p.set_defaults(run=run_compact)


def parse_to(value: str) -> tuple[str | None, str]:
    """'pca:128,sq8' -> ('pca:128', 'sq8'); 'sq8' -> (None, 'sq8'); 'pca:64' -> ('pca:64', 'fp32')."""
    from mmrag.errors import ConfigError

    parts = [p.strip() for p in value.split(",") if p.strip()]
    reduce = [p for p in parts if ":" in p or p.lower() == "none"]
    codes = [p for p in parts if p not in reduce]
    if not parts or len(reduce) > 1 or len(codes) > 1:
        raise ConfigError(f"--to {value!r}: give at most one reduction and one code ({TO_HELP})")
    spec = reduce[0].lower() if reduce else None
    return (None if spec == "none" else spec), (codes[0] if codes else "fp32")


def run_compact(args: argparse.Namespace) -> int:
    from indexes.factory import code_factory
    from mmrag.errors import ConfigError
    from mmrag.storage.collection import Collection

    spec, code = parse_to(args.to)
    with Collection.open(args.collection, write=True, lock_timeout=args.wait) as coll:
        if args.space not in coll.manifest.dims:
            raise ConfigError(f"No space {args.space!r} in {args.collection}; it has {coll.spaces()}")
        reduced = coll.reduce_spec(args.space, spec or "none")
        dim = reduced.dim if reduced else coll.manifest.dims[args.space]
        n = len(coll.store.vector_ids(args.space))
        try:
            factory = code_factory(code, n, dim)
        except ValueError as e:
            raise ConfigError(f"--to {args.to!r}: {e}") from None
        before = dict(coll.manifest.indexes.get(args.space, {}))
        entry = coll.compact(args.space, spec, factory)
    print(f"{args.space}: {_describe(before)} -> {_describe(entry)}", file=sys.stderr)
    return EXIT_OK


def _describe(rec: dict[str, Any]) -> str:
    if not rec:
        return "no index"
    reduce = rec.get("reduce") or "full dimension"
    return f"{rec.get('factory', rec.get('kind'))} over {reduce}, {rec.get('count', 0)} vectors"


def apply_reduce_args(coll: Any, values: list[str] | None, dims: dict[str, int]) -> None:
    """`mmrag index --reduce [SPACE=]SPEC` (repeatable): checked against each space it names, then
    recorded in the collection like --factory, so this run's save and later ones use it."""
    from mmrag.errors import ConfigError
    from mmrag.storage.collection import SPACES

    for value in values or []:
        space, spec = value.split("=", 1) if "=" in value else ("*", value)
        space, spec = space.strip(), spec.strip().lower()
        if space != "*" and space not in SPACES:
            raise ConfigError(f"Unknown space {space!r} in --reduce {value!r}; valid: {list(SPACES)}")
        if coll.manifest.dims:  # a new collection learns its dims from the models: checked at bind time
            for s in [s for s in dims if space in ("*", s)]:
                coll.reduce_spec(s, spec)
        coll.manifest.reductions[space] = spec
