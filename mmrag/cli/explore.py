"""map, clusters, outliers: see what a collection holds (mmrag/explore/)."""

from __future__ import annotations

import argparse
import json
import sys

from .core import _collection_arg, _positive_int
from .exits import EXIT_OK

MODALITIES = ("image", "code", "text")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "map",
        help="a 2-D map of the collection (t-SNE), as one self-contained HTML file",
        description="Lays out every item of one space in 2-D with openTSNE, so items with similar "
        "embeddings sit together. Computed once and cached in the collection folder until the "
        "collection changes. The HTML file draws it with plotly (inlined): hover shows each item's "
        "thumbnail or snippet and path, click shows the item, colour by modality, cluster, folder or language.",
    )
    _collection_arg(p)
    _space_args(p)
    p.add_argument("--out", metavar="FILE", default=None, help="write the map as one HTML file")
    p.add_argument(
        "--colour",
        choices=("modality", "cluster", "folder", "language"),
        default="modality",
        help="what the file colours points by at first (default: modality)",
    )
    p.add_argument(
        "--trustworthiness",
        action="store_true",
        help="also print sklearn's trustworthiness at k=10 (on a 10k sample above that): how true the map's "
        "neighbourhoods are to the space",
    )
    p.add_argument("--json", action="store_true", help="print the points as JSON")
    p.set_defaults(run=run_map)

    p = sub.add_parser(
        "clusters",
        help="groups of similar items (faiss k-means), labelled by their most distinctive terms",
        description="Spherical k-means over one space; each cluster is printed with its size, its "
        "label (the terms most distinctive of its members, BM25 weights against the rest) and its most "
        "typical members. --k auto picks k up to √n by the best cosine silhouette, or about √(n/2) "
        "where no k shows structure (silhouette at most 0.25).",
    )
    _collection_arg(p)
    _space_args(p)
    p.add_argument("--k", default="auto", metavar="K", help="number of clusters, or auto (default)")
    p.add_argument(
        "--examples", type=_positive_int, default=5, metavar="N", help="members shown per cluster (default 5)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(run=run_clusters)

    p = sub.add_parser(
        "outliers",
        help="the items least like their nearest neighbours (candidates for cleaning)",
        description="Scores each item of one space by 1 - its mean cosine to its 10 nearest items "
        "(--method knn), or by that distance over its neighbours' own (--method density, LOF-like), "
        "and prints the most isolated first.",
    )
    _collection_arg(p)
    _space_args(p)
    p.add_argument("--limit", type=_positive_int, default=20, metavar="N", help="items printed (default 20)")
    p.add_argument("--method", choices=("knn", "density"), default="knn", help="score (default knn)")
    p.add_argument("--json", action="store_true", help="one JSON list")
    p.set_defaults(run=run_outliers)


def _space_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-m",
        "--modality",
        choices=MODALITIES,
        default=None,
        help="explore this modality's own space (default: the joint space, every item)",
    )


def run_map(args: argparse.Namespace) -> int:
    from mmrag.explore import find_clusters, load_map, space_for, trustworthiness
    from mmrag.explore.page import map_html
    from mmrag.explore.points import map_payload
    from mmrag.explore.spaces import space_vectors
    from mmrag.storage.collection import Collection

    from .output import Progress

    with Collection.open(args.collection) as coll:
        space = space_for(coll, args.modality)
        with Progress() as bar:
            layout = load_map(coll, space, progress=bar.update)
        clusters = find_clusters(coll, space=space, examples=0) if len(layout.ids) else None
        how = "loaded from the cache" if layout.cached else "computed"
        print(
            f"map of {len(layout.ids)} items in the {space!r} space: {how} in {layout.seconds:.1f} s",
            file=sys.stderr,
        )
        if args.trustworthiness:
            _, vecs = space_vectors(coll, space)
            tw = trustworthiness(vecs, layout.xy, k=10)
            print(f"trustworthiness at k=10: {tw:.4f} over {min(len(vecs), 10_000)} items")
        if args.out or args.json:
            payload = map_payload(coll, layout, clusters, snippets=bool(args.out))
    if args.json:
        print(json.dumps(payload))
    if args.out:
        page = map_html(payload, colour=args.colour, title=f"mmrag map: {coll.path.name}")
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(page)
        print(f"wrote {args.out} ({len(page.encode()) / 1e6:.1f} MB)", file=sys.stderr)
    return EXIT_OK


def run_clusters(args: argparse.Namespace) -> int:
    from mmrag.explore import find_clusters
    from mmrag.storage.collection import Collection

    with Collection.open(args.collection) as coll:
        res = find_clusters(coll, args.modality, args.k, args.examples)
    if args.json:
        print(json.dumps(res.to_dict(), indent=1))
        return EXIT_OK
    sil = f", silhouette {res.silhouette:.3f}" if res.silhouette is not None else ""
    how = " (chosen: auto)" if res.auto else ""
    asked = "" if res.auto or int(args.k) == res.k else f" (k={args.k} asked: one cluster per item)"
    print(f"{res.k} clusters{how}{asked} of {len(res.ids)} items in the {res.space!r} space{sil}")
    for c in res.clusters:
        print(f"cluster {c.id}: {c.size} items · {c.label}")
        for m in c.examples:
            extra = f"  ({m.label})" if m.label and m.label not in m.source else ""
            print(f"  [{m.id}] {m.similarity:.3f}  {m.source}{extra}")
    return EXIT_OK


def run_outliers(args: argparse.Namespace) -> int:
    from mmrag.explore import find_outliers
    from mmrag.storage.collection import Collection

    with Collection.open(args.collection) as coll:
        found = find_outliers(coll, args.modality, args.limit, method=args.method)
    if args.json:
        print(json.dumps([o.to_dict() for o in found], indent=1))
        return EXIT_OK
    if not found:
        print("no items")
    for o in found:
        extra = f"  ({o.label})" if o.label and o.label not in o.source else ""
        print(
            f"{o.rank:>3}. [{o.id}] score {o.score:.4f}  neighbours {o.neighbour_similarity:.3f}  "
            f"{o.modality}  {o.source}{extra}"
        )
    return EXIT_OK
