"""Which space an exploration reads, and the vectors and item facts it needs from the collection."""

from __future__ import annotations

import os

import numpy as np

from mmrag.errors import QueryError
from mmrag.storage.collection import Collection

# -m modality -> its own space; no modality: the joint space, where every item has one vector
SPACE_OF = {"image": "image", "code": "code", "text": "text"}


class SpaceNotFoundError(QueryError, LookupError):
    """The collection has no such space (or none at all): a 404 over REST, not a malformed request."""


def space_for(coll: Collection, modality: str | None = None, space: str | None = None) -> str:
    """The space to explore: a named space, else the modality's, else joint; checked against the collection."""
    if modality is not None and modality not in SPACE_OF:
        raise QueryError(f"Unknown modality {modality!r}; valid: {list(SPACE_OF)}")
    name = space or (SPACE_OF[modality] if modality else "joint")
    have = coll.spaces()
    if not have:
        raise SpaceNotFoundError(f"The collection {coll.path} is empty: index a folder into it first")
    if name not in have:
        raise SpaceNotFoundError(f"The collection has no {name!r} space; its spaces: {have}")
    return name


def space_vectors(coll: Collection, space: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids int64 (n,), unit vectors float32 (n, d)) of a space, ordered by id."""
    ids, vecs = coll.store.vectors(space, None, coll.manifest.dims[space])
    return ids, np.ascontiguousarray(vecs, dtype=np.float32)


def source_of(row: dict) -> str:
    """Where an item is, as a person would look for it: the file, or the record key of a JSONL corpus."""
    return row["key"] if row["source"].endswith(".jsonl") else row["source"]


def label_of(row: dict) -> str:
    """A short name for an item: its symbol, title or file name."""
    return (
        row.get("symbol")
        or row.get("title")
        or os.path.basename(row.get("source") or "")
        or f"item {row['id']}"
    )
