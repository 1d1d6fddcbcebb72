"""Results of an exploration kept in the collection folder, valid for one store generation.

A map of 100k items takes minutes to compute and a second to load, so each result is saved as
`explore/<name>.npz` with the generation and parameters it was computed from; a later call with
the same key loads it, any committed change to the collection makes it stale. A folder this
process cannot write (a read-only collection) only loses the cache, never the result.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from indexes.atomic import atomic_save_npz
from mmrag.storage.collection import Collection

CACHE_DIR = "explore"
FORMAT = 2  # bump when what a cached file holds changes: older files are then recomputed


def cache_path(coll: Collection, name: str) -> Path:
    return coll.path / CACHE_DIR / f"{name}.npz"


def cache_key(coll: Collection, params: dict[str, Any]) -> str:
    """What a cached result depends on: the store generation, the format and the parameters."""
    return json.dumps({"format": FORMAT, "generation": coll.store.generation(), **params}, sort_keys=True)


def load(coll: Collection, name: str, key: str) -> dict[str, np.ndarray] | None:
    """The arrays saved under `name` for exactly this key, else None (missing, stale or damaged)."""
    path = cache_path(coll, name)
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["key"]) != key:
                return None
            return {k: f[k] for k in f.files if k != "key"}
    except (OSError, ValueError, KeyError):
        return None


def save(coll: Collection, name: str, key: str, arrays: dict[str, np.ndarray]) -> bool:
    """Save atomically; False when the folder cannot be written (the caller keeps its result)."""
    path = cache_path(coll, name)
    try:
        path.parent.mkdir(exist_ok=True)
        atomic_save_npz(path, key=np.array(key), **arrays)
    except OSError:
        return False
    return True


def cached(
    coll: Collection,
    name: str,
    params: dict[str, Any],
    compute: Callable[[], dict[str, np.ndarray]],
) -> tuple[dict[str, np.ndarray], bool]:
    """(arrays, loaded_from_cache): the saved result for this generation and params, or a fresh one."""
    key = cache_key(coll, params)
    hit = load(coll, name, key)
    if hit is not None:
        return hit, True
    arrays = compute()
    if cache_key(coll, params) == key:  # the collection did not change while computing
        save(coll, name, key, arrays)
    return arrays, False
