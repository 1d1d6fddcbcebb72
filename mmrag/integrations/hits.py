"""A hit as a framework document sees it: its content, and metadata that says where it came from.

Both retrievers put the same metadata on their documents: the item's id and key, modality, score,
path (None for a JSONL record), source, lines, symbol and language, the locator (page, cell, slide:
mmrag.items.Locator as a dict), a `location` to cite, and for image hits `image_path`.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from mmrag.api import Engine
from mmrag.items import Hit


def hit_content(hit: Hit) -> str:
    """The text a framework reads: a code or text item's content, an image's caption or title."""
    return hit.text or hit.title or ""


def location(hit: Hit) -> str:
    """`path:12-30`, with the locator's label (`p. 4`, `cell 7`) where the item has one."""
    return hit.where()


def picture_files(engine: Engine, hits: list[Hit]) -> dict[int, str]:
    """id -> the picture file of each image hit: the file itself, or for a figure of a PDF or
    notebook the picture taken out of it (kept in the collection), whose hit `path` is the document."""
    ids = [h.id for h in hits if h.modality == "image"]
    rows = engine.collection.store.fetch_items(ids) if ids else {}
    return {i: r["image"] or r["source"] for i, r in rows.items()}


def hit_metadata(hit: Hit, collection: str | None = None, picture: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "id": hit.id,
        "key": hit.key,
        "modality": hit.modality,
        "score": hit.score,
        "path": hit.path,
        "source": hit.source,
        "location": location(hit),
        "start_line": hit.start_line,
        "end_line": hit.end_line,
        "symbol": hit.symbol,
        "language": hit.language,
        "title": hit.title or None,
        "locator": hit.locator.to_dict() if hit.locator else None,
    }
    if hit.modality == "image":
        meta["image_path"] = picture or hit.path
        if hit.also:
            meta["also"] = list(hit.also)  # other places of the same picture (search folds them)
    if collection is not None:
        meta["collection"] = collection
    return meta


class SharedEngine:
    """One read-only engine per retriever, opened on first search and shared by its threads
    (LangChain's `ainvoke` and LlamaIndex's `aretrieve` search from a worker thread)."""

    def __init__(self, collection: str | os.PathLike | None, engine: Engine | None = None):
        self.collection = None if collection is None else os.fspath(collection)
        self._engine = engine
        self._lock = threading.Lock()

    def get(self) -> Engine:
        with self._lock:
            if self._engine is None:
                if self.collection is None:
                    raise ValueError("Give the retriever a collection path or an open Engine")
                self._engine = Engine.open(self.collection)
            return self._engine

    def close(self) -> None:
        with self._lock:
            if self._engine is not None and self.collection is not None:  # an engine given is the caller's
                self._engine.close()
            self._engine = None
