"""Sources to committed vectors: scan, read, embed in batches, commit per batch.

Re-running on the same sources re-embeds only what changed: a source whose size and mtime (or
content hash) are unchanged is skipped, and within a changed source an item whose key and
content hash are unchanged keeps its vectors. Each batch commits items, vectors and finished
sources in one transaction, so a killed run resumes where the last commit left off.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from mmrag.errors import IngestError
from mmrag.indexing.embed import embed_items
from mmrag.indexing.joint import load_projections
from mmrag.ingest import IngestCfg, Source, fingerprint, read_source, scan_sources
from mmrag.ingest.ignore import Ignored
from mmrag.ingest.pictures import PICTURES, prune_pictures
from mmrag.items import WAITING_FOR_CLIP, Item, is_not_read, not_read_reason, waits_for_clip
from mmrag.models import Models
from mmrag.storage.collection import MANIFEST, Collection
from mmrag.storage.facts import sources_missing as sources_missing_facts
from mmrag.storage.store import Store


@dataclass(frozen=True)
class IndexCfg:
    # items per embedding call and commit: a kill loses at most this much work (~10 s of text on 2 cores,
    # minutes of images on a CPU: lower it with `mmrag index --batch-items`),
    # and the encoder sorts a call's texts by token length, so a large call pads little (batch 32 on
    # CoSQA: 71% of computed positions are real tokens with 128 items per call, 96% with 1024)
    batch_items: int = 1024
    image_workers: int = max(2, min(8, (os.cpu_count() or 2)))  # decoding threads; PIL releases the GIL
    ingest: IngestCfg = field(default_factory=IngestCfg)


@dataclass
class IndexReport:
    sources: int = 0  # files found under the paths
    unchanged_sources: int = 0  # of which unchanged since the last run: not read again
    changed_sources: int = 0  # of which new or changed, and read
    items_added: int = 0  # items embedded
    items_kept: int = 0  # items of changed files whose content is unchanged: vectors kept
    items_removed: int = 0
    captions_only: int = 0  # pictures indexed by their caption alone (no image encoder): this run
    ignored_files: int = 0  # files ignore rules left out (.gitignore, .ignore: mmrag/ingest/ignore.py)
    ignored_dirs: int = 0  # folders they left out whole, not walked
    errors: list[tuple[str, str]] = field(default_factory=list)  # files that failed (all runs)
    waiting: list[tuple[str, str]] = field(default_factory=list)  # pictures waiting for CLIP (all runs)
    not_read: list[tuple[str, str]] = field(default_factory=list)  # files no reader takes (all runs)

    @property
    def clean(self) -> bool:
        return not self.errors


@dataclass
class _Pending:
    items: list[Item] = field(default_factory=list)
    # (source, sha256, ids of its items that vanished, items queued when the source was read)
    finish: list[tuple[Source, str, list[int], int]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    refresh: list[tuple[int, Item]] = field(default_factory=list)  # kept items (id, re-read Item): new facts
    reread: list[str] = field(default_factory=list)  # documents read again: their parts' old notes go


Progress = Callable[[str, int, int], None]  # (stage, done, total)


def joint_plan(models: Models) -> dict[str, str]:
    """How each modality reaches the joint space, as recorded in the manifest."""
    j = models.joint_role
    plan = {"space": j, "spec": models.spec(j) or ""}
    for modality, role in (("image", "clip"), ("code", "code"), ("text", "text")):
        if not models.has(role):
            if modality == "image":  # pictures with a caption are kept by it (mmrag/indexing/embed.py)
                plan[modality] = f"their captions, by the {j} encoder (no image encoder)"
            continue
        plan[modality] = (
            "same" if models.same_encoder(role, j) else f"identity over the {j} encoder's view of the item"
        )
    return plan


def model_dims(models: Models) -> dict[str, int]:
    dims: dict[str, int] = {}
    if models.has("clip"):
        d = models.get("clip").dim
        dims.update(image=d, caption=d)
    if models.has("code"):
        dims["code"] = models.get("code").dim
    if models.has("text"):
        dims["text"] = models.get("text").dim
    dims["joint"] = models.get("joint").dim
    for space in models.ensemble_spaces():  # one space per extra encoder of an ensemble
        dims[space] = models.get(space).dim
    return dims


class Indexer:
    def __init__(
        self, coll: Collection, models: Models, cfg: IndexCfg | None = None, progress: Progress | None = None
    ):
        self.coll = coll
        self.store = coll.store
        self.models = models
        self.cfg = cfg or IndexCfg()
        if self.cfg.ingest.picture_dir is None:  # pictures taken out of documents live with the collection
            pictures = str(coll.path / PICTURES)
            self.cfg = replace(self.cfg, ingest=replace(self.cfg.ingest, picture_dir=pictures))
        self.progress = progress or (lambda stage, done, total: None)
        self._queued = self._done = 0  # items queued for embedding / embedded, for progress
        self.projections = load_projections(coll.path, coll.manifest.joint)
        coll.bind_models(models.set.to_dict(), model_dims(models), joint_plan(models))
        if not (coll.path / MANIFEST).exists():  # a first run killed before saving still leaves a collection
            coll.manifest.write(coll.path / MANIFEST)

    # --- the run ----------------------------------------------------------------------------
    def run(self, paths: Sequence[str]) -> IndexReport:
        report = IndexReport()
        roots = [os.path.abspath(p) for p in paths]
        for r in roots:
            if r not in self.coll.manifest.roots:
                self.coll.manifest.roots.append(r)
        scan_errors: list[IngestError] = []
        ignored: list[Ignored] = []
        unread: list[str] = []
        sources = list(
            scan_sources(
                roots,
                self.cfg.ingest,
                on_error=scan_errors.append,
                on_unread=unread.append,
                on_ignored=ignored.append,
            )
        )
        report.sources = len(sources)
        report.ignored_dirs = sum(1 for x in ignored if x.is_dir)
        report.ignored_files = len(ignored) - report.ignored_dirs
        pending = _Pending(errors=[(e.path, e.reason) for e in scan_errors])
        self._stale_facts = sources_missing_facts(self.store.db)  # indexed before facts were kept: re-read
        for n, src in enumerate(sources, 1):
            self._visit(src, pending, report)
            while len(pending.items) >= self.cfg.batch_items:  # a big source commits in several batches
                self._flush(pending, report, self.cfg.batch_items)
            self.progress("sources", n, len(sources))
        self._flush(pending, report, len(pending.items))
        drop_vanished(self.store, roots, {s.path for s in sources}, report)
        record_ignored(self.store, roots, ignored)
        record_not_read(self.store, roots, unread)
        if self.cfg.ingest.picture_dir == str(self.coll.path / PICTURES):
            prune_pictures(self.store.db, self.cfg.ingest.picture_dir)
        self.progress("saving", 0, 1)
        self.coll.save()
        self.progress("saving", 1, 1)
        stored = self.store.errors()
        report.errors = [e for e in stored if not waits_for_clip(e[1]) and not is_not_read(e[1])]
        report.not_read = [e for e in stored if is_not_read(e[1])]
        report.waiting = [e for e in stored if waits_for_clip(e[1])]
        return report

    def _visit(self, src: Source, pending: _Pending, report: IndexReport) -> None:
        row = self.store.source_row(src.path)
        stale_facts = src.path in getattr(self, "_stale_facts", ())
        if row and row[0] == src.size and row[1] == src.mtime_ns and not stale_facts:
            report.unchanged_sources += 1
            return
        try:
            sha = fingerprint(src)
            if row and row[2] == sha and not stale_facts:
                report.unchanged_sources += 1
                pending.finish.append((src, sha, [], self._queued))
                return
            bad: list[IngestError] = []
            items = (
                read_source(src, self.cfg.ingest, on_error=bad.append)
                if src.kind in ("jsonl", "document")  # per-record or per-part problems; the rest is kept
                else read_source(src, self.cfg.ingest)
            )
            pending.errors += [(e.path, e.reason) for e in bad]
            if src.kind == "document":
                pending.reread.append(src.path)
        except IngestError as e:
            pending.errors.append((e.path, e.reason))
            return
        if src.kind == "image" and not self.models.has("clip") and not all(map(has_own_caption, items)):
            # not recorded as a source: the next run reads it again, and finds a caption added meanwhile
            pending.errors.append((src.path, self._waiting_reason()))
            return
        report.changed_sources += 1
        existing = self.store.items_of_source(src.path)
        keys = set()
        for it in items:
            keys.add(it.key)
            old = existing.get(it.key)
            if old and old.content_hash == it.content_hash:
                report.items_kept += 1
                pending.refresh.append((old.id, it))  # same vectors; metadata as read now
                continue
            if not self.models.has(_ROLE[it.modality]):
                if it.modality == "image" and has_own_caption(it):
                    report.captions_only += 1  # searchable by its caption; embed.py puts it in joint
                elif it.modality == "image":
                    pending.errors.append((it.key, self._waiting_reason()))
                    continue
                else:
                    pending.errors.append(
                        (it.key, f"no {it.modality} encoder in model set {self.models.set.name!r}")
                    )
                    continue
            pending.items.append(it)
            self._queued += 1
        stale = [s.id for k, s in existing.items() if k not in keys]
        pending.finish.append((src, sha, stale, self._queued))

    def _waiting_reason(self) -> str:
        return (
            f"{WAITING_FOR_CLIP}: model set {self.models.set.name!r} has no image encoder, and the picture "
            "has no caption to be searched by (a .txt of the same name beside it)"
        )

    def _flush(self, pending: _Pending, report: IndexReport, n: int) -> None:
        """Embed and commit the first n pending items, with every source all of whose items are
        now committed, in one transaction."""
        if not (pending.items or pending.finish or pending.errors or pending.refresh or pending.reread):
            return
        batch, pending.items = pending.items[:n], pending.items[n:]
        items, vectors, failed = embed_items(
            batch, self.models, self.cfg.image_workers, self.cfg.ingest.max_image_pixels, self.projections
        )
        done = self._done + len(batch)
        finished = [f for f in pending.finish if f[3] <= done]
        with self.store.transaction() as con:
            for path in pending.reread:  # notes on a document's parts ("x.pdf#p3"): this run's replace them
                con.execute("DELETE FROM errors WHERE substr(path, 1, ?) = ?", (len(path) + 1, path + "#"))
            ids = self.store.insert_items(con, items)
            for space, (rows, vecs) in vectors.items():
                self.store.insert_vectors(con, space, [ids[r] for r in rows], vecs)
            for src, sha, stale, _ in finished:
                report.items_removed += self.store.delete_items(con, stale)
                self.store.record_source(con, src.path, src.root, src.kind, src.size, src.mtime_ns, sha)
            for path, reason in pending.errors + failed:
                self.store.record_error(con, path, reason)
            if pending.refresh:
                self.store.refresh_items(
                    con, [i for i, _ in pending.refresh], [it for _, it in pending.refresh]
                )
        report.items_added += len(items)
        self._done = done
        pending.finish = [f for f in pending.finish if f[3] > done]
        pending.errors = []
        pending.refresh = []
        pending.reread = []
        self.progress("embedded", self._done, self._queued)


_ROLE = {"image": "clip", "code": "code", "text": "text"}


def has_own_caption(item: Item) -> bool:
    """A picture with a caption of its own (a sidecar .txt, a JSONL caption), not one made from its
    file name: without CLIP that caption is what makes it searchable, and "IMG 0042" would not."""
    return bool(item.text.strip()) and item.meta.get("caption_source") != "filename"


def remove_paths(coll: Collection, paths: Sequence[str]) -> tuple[int, int]:
    """Forget every source at or under each path; returns (sources, items) removed."""
    targets = [os.path.abspath(p) for p in paths]
    sources = sorted({s for t in targets for s in coll.store.sources_under(t)})
    n_items = 0
    with coll.store.transaction() as con:
        for s in sources:
            n_items += coll.store.forget_source(con, s)
        con.execute(
            "DELETE FROM errors WHERE " + " OR ".join(["path = ? OR path LIKE ?"] * len(targets)),
            [x for t in targets for x in (t, t.rstrip("/") + "/%")],
        )
    coll.manifest.roots = [r for r in coll.manifest.roots if r not in targets]
    prune_pictures(coll.store.db, coll.path / PICTURES)
    coll.save()
    return len(sources), n_items


IGNORED_KEY = "ignored:"  # + root: {"files": n, "dirs": n} left out by ignore rules on its last run


def record_ignored(store: Store, roots: Sequence[str], ignored: Sequence[Ignored]) -> None:
    """Keep per root what ignore rules left out on this run, for `mmrag info`; written only when
    it changed, so an unchanged re-run commits nothing."""
    counts = {r: {"files": 0, "dirs": 0} for r in roots}
    for x in ignored:
        counts[x.root]["dirs" if x.is_dir else "files"] += 1
    values = {IGNORED_KEY + r: json.dumps(c, sort_keys=True) for r, c in counts.items()}
    changed = [(k, v) for k, v in values.items() if store.get_state(k) != v]
    if changed:
        with store.transaction() as con:
            con.executemany(
                "INSERT INTO state(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                changed,
            )


def ignored_counts(store: Store, roots: Sequence[str]) -> dict[str, int]:
    """Files and folders that ignore rules left out of `roots`, each as of its last run."""
    total = {"files": 0, "dirs": 0}
    for r in roots:
        got = json.loads(store.get_state(IGNORED_KEY + r) or "{}")
        for k in total:
            total[k] += int(got.get(k, 0))
    return total


def drop_vanished(store: Store, roots: Sequence[str], seen: set[str], report: IndexReport) -> None:
    """Forget sources under `roots` that this run did not see: their files are gone."""
    gone = [p for r in roots if os.path.isdir(r) for p in store.sources_under(r) if p not in seen]
    if gone:
        with store.transaction() as con:
            for p in gone:
                report.items_removed += store.forget_source(con, p)


def record_not_read(store: Store, roots: Sequence[str], paths: Sequence[str]) -> None:
    """Keep the list of files under `roots` that no reader takes current (`mmrag info --errors`):
    written only when it changed, so an unchanged re-run commits nothing."""
    under = {p for r in roots for p in _not_read_under(store, r)}
    want = {p: not_read_reason(os.path.splitext(p)[1].lower()) for p in paths}
    if under == set(want):  # the reason follows from the path's extension
        return
    with store.transaction() as con:
        for p in under - set(want):
            con.execute("DELETE FROM errors WHERE path = ?", (p,))
        for p, reason in want.items():
            store.record_error(con, p, reason)


def _not_read_under(store: Store, root: str) -> list[str]:
    prefix = root.rstrip("/") + "/"
    return [p for p, reason in store.errors() if is_not_read(reason) and (p == root or p.startswith(prefix))]
