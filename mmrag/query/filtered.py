"""A search's filter, run once: the allowed ids from SQLite, then each route searches only those.

Dense routes pass the ids to their index (FAISS selectors, widened nprobe/efSearch, exact scans:
indexes/allowed.py); a filter that leaves at most STORE_EXACT_MAX items is answered exactly from
the vectors in SQLite, whatever the index's compression. The lexical route scores only the
allowed documents. Fusion then sees filtered lists only, so a filter never empties a ranking that
post-filtering would have cut short.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from mmrag.query.filter_sql import Allowed, evaluate
from mmrag.query.filters import And, Cond, Filter, Not, Or, from_json, parse_filter, to_json
from mmrag.storage.collection import Collection

STORE_EXACT_MAX = 2_048  # vectors read from SQLite per route in a few ms; exact whatever the index stores
CACHE_SIZE = 16  # filters whose allowed ids are kept per process, newest first
_CACHE: OrderedDict[tuple, Allowed] = OrderedDict()
_LOCK = threading.Lock()


def as_filter(where: Any) -> Filter | None:
    """A filter string (the CLI's language), its JSON form (REST), or an AST, as an AST."""
    if where is None:
        return None
    if isinstance(where, (Cond, And, Or, Not)):
        return where
    if isinstance(where, str):
        return parse_filter(where)
    return from_json(where)


def allowed_for(coll: Collection, where: Any, modalities: Sequence[str] | None = None) -> Allowed | None:
    """The ids a filter allows in this collection (and of the wanted modalities); None for no filter.

    Kept for the store's generation: the UI and paging repeat one filter over many queries, and at
    1M items evaluating it in SQLite costs 0.5-2 s (mmrag bench search --filter)."""
    f = as_filter(where)
    if f is None:
        return None
    if modalities:
        f = And((f, Cond("modality", "in", tuple(modalities))))
    key = (str(coll.path), coll.store.generation(), json.dumps(to_json(f), sort_keys=True))
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return Allowed(hit.ids, hit.total, list(hit.warnings))
    allowed = evaluate(coll.store.db, f)
    allowed.ids.flags.writeable = False  # shared by later searches with the same filter
    with _LOCK:
        _CACHE[key] = allowed
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return Allowed(allowed.ids, allowed.total, list(allowed.warnings))


def dense_search(
    coll: Collection, space: str, vecs: np.ndarray, depth: int, allowed: Allowed | None
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of a space's top `depth` per query, only among allowed ids when filtered."""
    index = coll.vector_index(space)
    if allowed is None:
        return index.search(vecs, depth)
    if len(allowed.ids) <= STORE_EXACT_MAX:
        return exact_from_store(coll, space, vecs, depth, allowed.ids)
    return index.search(vecs, depth, allowed=allowed.ids)


def exact_from_store(
    coll: Collection, space: str, vecs: np.ndarray, depth: int, ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Brute force over the allowed items' stored vectors in `space` (items without one are skipped)."""
    scores = np.full((len(vecs), depth), -np.inf, np.float32)
    out = np.full((len(vecs), depth), -1, np.int64)
    have, mat = coll.store.vectors(space, ids, coll.manifest.dims.get(space))
    if not len(have):
        return scores, out
    sims = vecs @ mat.T
    top = np.argsort(-sims, axis=1, kind="stable")[:, :depth]
    n = top.shape[1]
    scores[:, :n] = np.take_along_axis(sims, top, axis=1)
    out[:, :n] = have[top]
    return scores, out
