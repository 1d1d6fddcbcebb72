"""A collection space served from disk: an OnDiskIndex built from the store, kept current by a delta.

Build: choose_large picks the IVF-PQ config for the space's size and RAM budget; the index is
trained on a random sample read from the store, then built shard by shard from store batches of
SHARD_ROWS vectors (never all of them in RAM), merged, and opened memory-mapped. Each build goes
to a fresh folder, indexes/<space>.ondisk-<generation>-<random>, so the folder the manifest names
is never touched by it; the collection writes the manifest last and only then deletes the folders
it no longer names (including those of a build that was killed).

Between builds: the store's changes are applied as a LayeredIndex (indexes/layered.py). Vectors
added since the build go to its in-RAM Flat delta, and removed items become excluded base rows;
both are saved in the base's folder. Once the delta or the removed rows pass a share of the base
(`rebuild_due`), the next save builds a new base, so the delta's RAM and the scan time wasted on
dead rows stay bounded.

The store is the source of truth: whatever the files say, ids and vectors are reconciled with it
whenever the manifest's generation is behind the store's or the files disagree with the manifest.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from indexes.errors import IndexFileError
from indexes.layered import LayeredIndex
from indexes.ondisk import LargeIndexConfig, OnDiskIndex, choose_large, min_train
from mmrag.storage.store import Store

SHARD_ROWS = 50_000  # vectors per shard: 100 MB of float32 at 512-d in RAM while building
READ_ROWS = 8_192  # vectors per store read: the store holds a read twice while it joins the rows
# half the budget for PQ codes + ids (read through the page cache); the rest for the process,
# the delta and rescoring reads (the split mmrag bench-scale measured at 10M)
CODE_RAM_SHARE = 0.5
DELTA_MIN_ROWS = 1_000  # an exact scan of 1k vectors costs well under a millisecond: no rebuild for that
DELTA_MAX_SHARE = 0.1  # past 10% of the base, the delta's exact scan rivals the base's probe in cost
DELTA_RAM_SHARE = 0.25  # and its float32 vectors may use at most a quarter of the RAM budget
REMOVED_MAX_SHARE = 0.2  # past 20% dead rows, scanning and storing them costs more than a rebuild
FOLDER_TAG = ".ondisk-"
_FETCH = 50_000  # vectors read from the store per batch when filling the delta


def large_config(n: int, dim: int, ram_budget: int) -> LargeIndexConfig | None:
    """The on-disk config for n vectors, or None while there are too few to train one."""
    if n < 1:
        return None
    config = choose_large(n, dim, max(1, int(ram_budget * CODE_RAM_SHARE)))
    return config if n >= min_train(config.factory) else None


def rebuild_due(base_rows: int, delta: int, removed: int, live: int, dim: int, ram_budget: int) -> bool:
    """Whether a new base pays for itself: the delta or the dead rows are past their share."""
    if base_rows == 0:
        return large_config(live, dim, ram_budget) is not None  # enough vectors to train a base now
    big_delta = delta > DELTA_MIN_ROWS and (
        delta > DELTA_MAX_SHARE * base_rows or 4 * dim * delta > DELTA_RAM_SHARE * ram_budget
    )
    return big_delta or removed > REMOVED_MAX_SHARE * base_rows


def build(
    store: Store, space: str, dim: int, want: np.ndarray, folder: Path, config: LargeIndexConfig
) -> LayeredIndex:
    """Train on a store sample, add store batches shard by shard, merge; an empty delta on top."""
    index = OnDiskIndex.create(folder, dim, config)
    n_train = min(len(want), config.train_size)
    sample = np.sort(np.random.default_rng(0).choice(want, n_train, replace=False))
    index.train(_read(store, space, sample, dim)[1])
    del sample
    for start in range(0, len(want), SHARD_ROWS):
        ids, vecs = _read(store, space, want[start : start + SHARD_ROWS], dim)
        if len(ids):
            index.add_shard(vecs, ids)
    index.merge()
    return LayeredIndex(folder, dim, index)


def _read(store: Store, space: str, ids: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) for sorted `ids`, read in READ_ROWS batches into one array (peak: the array)."""
    out_ids = np.empty(len(ids), np.int64)
    out = np.empty((len(ids), dim), np.float32)
    n = 0
    for start in range(0, len(ids), READ_ROWS):
        got, vecs = store.vectors(space, ids[start : start + READ_ROWS], dim)
        out_ids[n : n + len(got)], out[n : n + len(got)] = got, vecs
        n += len(got)
    return out_ids[:n], out[:n]


def load(indexes_dir: Path, dim: int, record: dict[str, Any]) -> LayeredIndex | None:
    """The index the manifest record names, memory-mapped; None if absent or damaged (never trusted)."""
    name = record.get("folder")
    if record.get("kind") != "ondisk" or not isinstance(name, str) or Path(name).name != name:
        return None
    try:
        return LayeredIndex.load(indexes_dir / name, dim, mmap=True)
    except (IndexFileError, OSError, RuntimeError, ValueError, KeyError):
        return None


def matches(index: LayeredIndex, record: dict[str, Any]) -> bool:
    """Whether the files hold what the manifest says (a save killed before its manifest leaves them newer)."""
    return (
        record.get("base") == index.base_rows
        and record.get("delta") == len(index.delta)
        and record.get("removed") == len(index.removed_rows)
    )


def record(index: LayeredIndex) -> dict[str, Any]:
    """The manifest entry of a saved on-disk space."""
    assert index.folder is not None
    return {
        "kind": "ondisk",
        "folder": index.folder.name,
        "factory": index.factory,
        "params": index.params,
        "count": int(index.ntotal),
        "base": index.base_rows,
        "delta": len(index.delta),
        "removed": len(index.removed_rows),
    }


def sync(
    store: Store,
    indexes_dir: Path,
    space: str,
    dim: int,
    rec: dict[str, Any],
    *,
    current: bool,
    ram_budget: int | None,
) -> LayeredIndex:
    """The space's index, caught up with the store.

    ram_budget=None is a reader: it serves what the files hold and applies newer store changes in
    RAM, never building. A writer (a budget given) also builds a new base when there is none or
    it is damaged, or when `rebuild_due`; the caller saves the result and writes the manifest.
    """
    index = load(indexes_dir, dim, rec)
    current = current and index is not None and matches(index, rec)
    if current and (
        ram_budget is None
        or not rebuild_due(
            index.base_rows, len(index.delta), len(index.removed_rows), index.ntotal, dim, ram_budget
        )
    ):
        return index
    want = store.vector_ids(space)
    base_ids = index.base_ids() if index is not None else np.zeros(0, np.int64)
    removed = np.flatnonzero(~np.isin(base_ids, want))
    target = np.setdiff1d(want, base_ids)  # what the delta must hold
    if ram_budget is not None and (
        index is None or rebuild_due(len(base_ids), len(target), len(removed), len(want), dim, ram_budget)
    ):
        folder = indexes_dir / f"{space}{FOLDER_TAG}{store.generation()}-{secrets.token_hex(4)}"
        config = large_config(len(want), dim, ram_budget)
        if config is not None:
            return build(store, space, dim, want, folder, config)
        index = LayeredIndex(folder, dim)  # too few vectors to train a base yet: all in the delta
        removed, target = np.zeros(0, np.int64), want
    if index is None:  # a reader without usable files: everything from the store, in RAM
        index = LayeredIndex(None, dim)
        removed, target = np.zeros(0, np.int64), want
    index.set_removed(removed)
    _fill_delta(index, store, space, target, dim)
    return index


def _fill_delta(index: LayeredIndex, store: Store, space: str, target: np.ndarray, dim: int) -> None:
    """Make the delta hold exactly `target`, reading only the vectors it lacks."""
    have = index.delta.ids()
    gone = np.setdiff1d(have, target, assume_unique=True)
    if len(gone):
        index.delta.remove(gone)
    new = np.setdiff1d(target, have, assume_unique=True)
    for start in range(0, len(new), _FETCH):
        ids, vecs = store.vectors(space, new[start : start + _FETCH], dim)
        if len(ids):
            index.delta.add(ids, vecs)


def drop_stale(indexes_dir: Path, space: str, keep: str | None) -> None:
    """Delete this space's on-disk folders other than `keep`: old bases and killed builds.

    Only after the manifest naming `keep` is written. A reader still serving an old base keeps
    working: its mapped and open files stay readable until it closes them.
    """
    for path in indexes_dir.glob(f"{space}{FOLDER_TAG}*"):
        if path.name != keep and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
