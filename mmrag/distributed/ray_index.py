"""`mmrag index --engine ray`: the indexer's scan -> read -> embed as a Ray Data pipeline.

Sources are listed on the driver and grouped into shards named by a hash of the model set
and each source's (path, size, mtime); a shard whose parquet file exists is skipped, so a
re-run after a crash only does the unfinished work. The pipeline is

    from_items(sources) -> flat_map(read + decode) -> map_batches(EncoderActor)
    -> groupby(shard).map_groups(write one parquet file per shard, atomically)

Encoder actors load the model set once each (CPU or GPU by `num_gpus`); tasks retry
`max_retries` times and actors restart. The driver then fills the collection from the
shards in batched SQLite transactions, as mmrag/indexing/indexer.py does, and `coll.save()` rebuilds
the FAISS indexes from SQLite.

Simplification against the single-process indexer: a changed source is re-embedded whole
(no per-item reuse inside it); unchanged sources are skipped as there.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indexes.atomic import atomic_path
from mmrag.errors import ConfigError, IngestError
from mmrag.indexing.indexer import IndexReport

SHARD_DIR = "shards"


@dataclass
class RayIndexReport(IndexReport):
    """The indexer's report plus where the work ran: Ray node id -> count, for this run's shards."""

    read_nodes: dict[str, int] = field(default_factory=dict)  # sources read and decoded per node
    embed_nodes: dict[str, int] = field(default_factory=dict)  # items embedded per node

    @property
    def nodes(self) -> set[str]:
        return set(self.read_nodes) | set(self.embed_nodes)


@dataclass(frozen=True)
class RayIndexCfg:
    """How the Ray job is cut up and placed."""

    sources_per_shard: int = 256  # a shard is the unit of resume: small enough that a crash loses little
    batch_size: int = 64  # items per encoder call
    concurrency: int = 1  # encoder actors; one model each
    num_cpus: float = 1.0  # per encoder actor
    num_gpus: float = 0.0  # per encoder actor; > 0 places actors on GPUs and encodes on cuda
    max_retries: int = 3  # a failed read task or actor call is retried this often
    commit_items: int = 512  # items per SQLite transaction when filling the collection
    ignore_files: bool = True  # .gitignore, .git/info/exclude and .ignore rules (mmrag/ingest/ignore.py)

    def __post_init__(self) -> None:
        for name in ("sources_per_shard", "batch_size", "concurrency", "max_retries", "commit_items"):
            if getattr(self, name) < (0 if name == "max_retries" else 1):
                raise ConfigError(f"RayIndexCfg.{name} must be positive, got {getattr(self, name)!r}")


def run_ray_index(
    paths: Sequence[str],
    collection_path: str | os.PathLike,
    models: str | None,
    address: str | None = None,
    cfg: RayIndexCfg | None = None,
) -> RayIndexReport:
    """Index `paths` into the collection with Ray; `address` None starts or reuses a local Ray.

    An explicit address is probed first (mmrag/distributed/connect.py): ClusterError when it cannot
    be reached, ClusterAuthError when the cluster wants a token, each at once."""
    try:
        import ray
    except ImportError as e:
        raise ConfigError("--engine ray needs Ray: pip install 'mmrag[ray]' (ray[data])") from e
    from mmrag.api import Engine
    from mmrag.distributed.connect import connect
    from mmrag.indexing.indexer import drop_vanished, joint_plan, model_dims, record_ignored
    from mmrag.indexing.joint import load_projections
    from mmrag.ingest import IngestCfg, scan_sources
    from mmrag.ingest.pictures import PICTURES

    cfg = cfg or RayIndexCfg()
    connect(ray, address)
    if models is None and not os.path.exists(os.path.join(collection_path, "manifest.json")):
        models = "default"
    with Engine.open(collection_path, write=True, models=models) as eng:
        coll = eng.collection
        coll.bind_models(eng.models.set.to_dict(), model_dims(eng.models), joint_plan(eng.models))
        roots = [os.path.abspath(p) for p in paths]
        for r in roots:
            if r not in coll.manifest.roots:
                coll.manifest.roots.append(r)
        report = RayIndexReport()
        errors: list[IngestError] = []
        ingest = IngestCfg(ignore_files=cfg.ignore_files)
        ignored: list = []
        sources = list(scan_sources(roots, ingest, on_error=errors.append, on_ignored=ignored.append))
        report.sources = len(sources)
        report.ignored_dirs = sum(1 for x in ignored if x.is_dir)
        report.ignored_files = len(ignored) - report.ignored_dirs
        record_ignored(coll.store, roots, ignored)
        todo = []
        for s in sources:
            row = coll.store.source_row(s.path)
            if row and row[0] == s.size and row[1] == s.mtime_ns:
                report.unchanged_sources += 1
            else:
                todo.append(s)
        report.changed_sources = len(todo)
        model_set = eng.models.set.to_dict()
        shards = _plan_shards(todo, model_set, cfg.sources_per_shard)
        shard_dir = coll.path / SHARD_DIR
        shard_dir.mkdir(exist_ok=True)
        missing = {
            name: group for name, group in shards.items() if not (shard_dir / f"{name}.parquet").exists()
        }
        if missing:
            projections = load_projections(coll.path, coll.manifest.joint)
            _run_pipeline(
                ray, missing, model_set, projections, shard_dir, cfg, pictures=str(coll.path / PICTURES)
            )
        with coll.store.transaction() as con:
            for e in errors:
                coll.store.record_error(con, e.path, e.reason)
        for name in shards:
            _fill_from_shard(coll, shard_dir / f"{name}.parquet", report, cfg.commit_items)
        drop_vanished(coll.store, roots, {s.path for s in sources}, report)
        coll.save()
        for name in shards:  # the collection now holds them; a later run re-plans from SQLite
            (shard_dir / f"{name}.parquet").unlink(missing_ok=True)
        report.errors = coll.store.errors()
        eng.models.export_queries()  # as the single-process path: searches then start without torch
    return report


def _plan_shards(sources: list, model_set: dict, per_shard: int) -> dict[str, list[dict]]:
    """Groups of sources keyed by a hash of what they will produce (models + file states)."""
    rows = [dataclasses.asdict(s) for s in sorted(sources, key=lambda s: s.path)]
    shards: dict[str, list[dict]] = {}
    models_key = json.dumps(model_set, sort_keys=True)
    for start in range(0, len(rows), per_shard):
        group = rows[start : start + per_shard]
        h = hashlib.sha256(models_key.encode())
        for r in group:
            h.update(f"\0{r['path']}\0{r['size']}\0{r['mtime_ns']}".encode("utf-8", "surrogatepass"))
        name = h.hexdigest()[:20]
        shards[name] = [{**r, "shard": name} for r in group]
    return shards


def _run_pipeline(
    ray,
    shards: dict,
    model_set: dict,
    projections: dict,
    shard_dir: Path,
    cfg: RayIndexCfg,
    read_fn=None,
    pictures: str | None = None,
) -> None:
    """Run the Ray Data job for the missing shards; `read_fn` replaces the reader (tests inject faults).
    `pictures` is the collection's folder for pictures taken out of documents, as local indexing has it."""
    import ray.data

    items = [row for group in shards.values() for row in group]
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), max(2, 4 * len(shards))))
    read = functools.partial(_read_on_node, read=read_fn or functools.partial(_read_rows, pictures=pictures))
    ds = ds.flat_map(read, max_retries=cfg.max_retries, retry_exceptions=True)
    ds = ds.map_batches(
        EncoderActor,
        fn_constructor_kwargs={
            "model_set": model_set,
            "projections": {k: v.tolist() for k, v in projections.items()},
            "device": "cuda" if cfg.num_gpus > 0 else "cpu",
        },
        batch_size=cfg.batch_size,
        batch_format="pandas",
        concurrency=cfg.concurrency,
        num_cpus=cfg.num_cpus,
        num_gpus=cfg.num_gpus,
        max_restarts=cfg.max_retries,
        max_task_retries=cfg.max_retries,
    )
    ds = ds.groupby("shard", num_partitions=len(shards)).map_groups(
        functools.partial(_write_shard, folder=str(shard_dir)),
        batch_format="pandas",
        max_retries=cfg.max_retries,
        retry_exceptions=True,
    )
    written = ds.take_all()
    if {r["shard"] for r in written} != set(shards):
        raise IngestError(str(shard_dir), "the Ray job finished without writing every shard")


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def _read_on_node(row: dict, read) -> list[dict]:
    """`read`'s rows, each marked with the Ray node that read them (the report counts them)."""
    node = _node_id()
    return [{**r, "read_node": node} for r in read(row)]


def _read_rows(row: dict, pictures: str | None = None) -> list[dict]:
    """One source -> a marker row (its state, or why it failed) plus one row per item; a document's
    per-part problems are rows of their own and the rest of it is kept, as local indexing does."""
    from mmrag.ingest import IngestCfg, Source, fingerprint, read_source

    src = Source(**{k: row[k] for k in ("path", "root", "kind", "size", "mtime_ns")})
    base = {
        "shard": row["shard"],
        "source": json.dumps({k: row[k] for k in ("path", "root", "kind", "size", "mtime_ns")}),
    }
    out = []
    bad: list[IngestError] = []
    try:
        sha = fingerprint(src)
        cfg = IngestCfg(picture_dir=pictures)
        items = (
            read_source(src, cfg, on_error=bad.append)
            if src.kind in ("jsonl", "document")
            else read_source(src, cfg)
        )
    except IngestError as e:
        return [{**base, "sha": "", "item": "", "error": json.dumps([e.path, e.reason]), "vecs": b""}]
    out.append({**base, "sha": sha, "item": "", "error": "", "vecs": b""})
    out += [
        {**base, "sha": "", "item": "", "error": json.dumps([e.path, e.reason]), "vecs": b""} for e in bad
    ]
    out += [{**base, "sha": "", "item": _item_json(it), "error": "", "vecs": b""} for it in items]
    return out


class EncoderActor:
    """One model set per actor process, loaded once; turns item rows into vector rows."""

    def __init__(self, model_set: dict, projections: dict, device: str = "cpu"):
        from encoders.base import EncoderCfg
        from encoders.modelsets import ModelSet
        from mmrag.models import Models

        self.models = Models(ModelSet.from_dict(model_set), EncoderCfg(device=device))
        self.projections = {k: np.asarray(v, dtype=np.float32) for k, v in projections.items()}

    def __call__(self, batch):
        from mmrag.indexing.embed import embed_items
        from mmrag.items import Item

        idx = [i for i, s in enumerate(batch["item"]) if s]
        items = [Item(**json.loads(batch["item"].iloc[i])) for i in idx]
        kept, vectors, failed = embed_items(items, self.models, 2, projections=self.projections or None)
        per_item: list[dict[str, np.ndarray]] = [{} for _ in kept]
        for space, (rows, vecs) in vectors.items():
            for r, v in zip(rows, vecs):
                per_item[r][space] = v
        kept_keys = {it.key: n for n, it in enumerate(kept)}
        vecs_col = list(batch["vecs"])
        error_col = list(batch["error"])
        item_col = list(batch["item"])
        failed_by_path = dict(failed)
        for i, it in zip(idx, items):
            n = kept_keys.get(it.key)
            if n is None:
                path = it.image or it.source
                error_col[i] = json.dumps([path, failed_by_path.get(path, "could not be embedded")])
                item_col[i] = ""
            else:
                vecs_col[i] = _pack(per_item[n])
        batch = batch.copy()
        batch["vecs"], batch["error"], batch["item"] = vecs_col, error_col, item_col
        batch["embed_node"] = _node_id()
        return batch


def _write_shard(group, folder: str):
    """All rows of one shard -> COLL/shards/<shard>.parquet, written to a temp name then renamed."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = str(group["shard"].iloc[0])
    table = pa.Table.from_pandas(group.reset_index(drop=True), preserve_index=False)
    with atomic_path(Path(folder) / f"{name}.parquet") as tmp:
        pq.write_table(table, tmp)
    return pd.DataFrame({"shard": [name], "rows": [len(group)]})


def _fill_from_shard(coll, path: Path, report: RayIndexReport, commit_items: int) -> None:
    """Insert one shard's items and vectors, then record its sources, in batched transactions."""
    import pyarrow.parquet as pq

    from mmrag.ingest import Source
    from mmrag.items import Item

    table = pq.read_table(path).to_pandas()
    store = coll.store
    rows = [r for r in table.itertuples(index=False) if r.item]
    for r in table.itertuples(index=False):  # shards of an older run may lack the node columns
        node = getattr(r, "read_node", "")
        if node and not r.item and not r.error:
            report.read_nodes[node] = report.read_nodes.get(node, 0) + 1
    for r in rows:
        node = getattr(r, "embed_node", "")
        if node:
            report.embed_nodes[node] = report.embed_nodes.get(node, 0) + 1
    rows.sort(key=lambda r: json.loads(r.item)["key"])  # a stable order, whatever the Ray partitioning
    by_source = {}
    for r in table.itertuples(index=False):
        if not r.item and not r.error:
            by_source[json.loads(r.source)["path"]] = r
    keys_of: dict[str, set[str]] = {}
    for start in range(0, len(rows), commit_items):
        batch = rows[start : start + commit_items]
        items = [Item(**json.loads(r.item)) for r in batch]
        with store.transaction() as con:
            ids = store.insert_items(con, items)
            spaces: dict[str, tuple[list[int], list[np.ndarray]]] = {}
            for i, r in zip(ids, batch):
                for space, v in _unpack(r.vecs).items():
                    spaces.setdefault(space, ([], []))[0].append(i)
                    spaces[space][1].append(v)
            for space, (sid, vecs) in spaces.items():
                store.insert_vectors(con, space, sid, np.stack(vecs))
        for it in items:
            keys_of.setdefault(it.source, set()).add(it.key)
        report.items_added += len(items)
    with store.transaction() as con:
        for r in table.itertuples(index=False):
            if r.error:
                p, reason = json.loads(r.error)
                store.record_error(con, p, reason)
        for spath, r in by_source.items():
            src = Source(**json.loads(r.source))
            keep = keys_of.get(spath, set())
            stale = [s.id for k, s in store.items_of_source(spath).items() if k not in keep]
            report.items_removed += store.delete_items(con, stale)
            store.record_source(con, src.path, src.root, src.kind, src.size, src.mtime_ns, r.sha)


def _item_json(item) -> str:
    return json.dumps(dataclasses.asdict(item), ensure_ascii=False)


def _pack(vectors: dict[str, np.ndarray]) -> bytes:
    """space vectors -> one binary cell: a JSON header of (space, dim) then float32 bytes."""
    head = json.dumps([[s, int(v.shape[0])] for s, v in sorted(vectors.items())]).encode()
    body = b"".join(np.asarray(v, dtype=np.float32).tobytes() for _, v in sorted(vectors.items()))
    return len(head).to_bytes(4, "little") + head + body


def _unpack(cell: bytes) -> dict[str, np.ndarray]:
    n = int.from_bytes(cell[:4], "little")
    head = json.loads(cell[4 : 4 + n])
    flat = np.frombuffer(cell[4 + n :], dtype=np.float32)
    out, at = {}, 0
    for space, dim in head:
        out[space] = flat[at : at + dim].copy()
        at += dim
    return out
