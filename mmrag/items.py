"""The two shapes data takes in mmrag: an Item going in, a Hit coming out."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

Modality = Literal["image", "code", "text"]
MODALITIES: tuple[str, ...] = ("image", "code", "text")


@dataclass
class Item:
    """One searchable unit: an image, a code chunk (function/class/window) or a text chunk.

    `key` is stable across runs (path plus symbol/chunk, or a JSONL `_id`) so that re-indexing
    the same source finds the same items; `content_hash` says whether the embedded content changed.
    """

    key: str
    modality: str
    source: str  # the file the item came from (absolute path), or the JSONL file for JSONL records
    text: str = ""  # code or text content; for images the caption
    title: str = ""
    language: str | None = None
    symbol: str | None = None
    start_line: int | None = None
    end_line: int | None = None
    image: str | None = None  # path of the image file for image items
    meta: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"Unknown modality {self.modality!r}; valid modalities are {MODALITIES}")
        if not self.content_hash:
            self.content_hash = content_hash(self)


# The reason recorded for a picture that a model set without CLIP cannot see and that has no caption
# of its own to be searched by: listed with the skipped files (`mmrag info --errors`), yet not a
# failure, since the file is fine. Such pictures are re-read on every run, so a caption added later
# (a `<stem>.txt` beside the picture) is picked up.
WAITING_FOR_CLIP = "waiting for CLIP weights"
# How a collection without an image encoder gets one: its model set is fixed, so a new collection
ENABLE_IMAGE_SEARCH = (
    "to search by image, fetch the CLIP weights (`mmrag models default` prints the command) and index "
    "into a new collection with --models default"
)


def waits_for_clip(reason: str) -> bool:
    """Whether a skipped file's reason says it only needs an image encoder (not a failure)."""
    return reason.startswith(WAITING_FOR_CLIP)


# The reason recorded for a file inside an indexed folder that no reader takes (a video, a
# spreadsheet): listed by `mmrag info --errors` and counted by type in the index summary, so nothing
# is skipped in silence, yet not a failure (the file is fine; mmrag has no reader for it).
NOT_READ = "mmrag does not read"


def not_read_reason(ext: str) -> str:
    return f"{NOT_READ} {ext or 'files without an extension'}{' files' if ext else ''}"


def is_not_read(reason: str) -> bool:
    """Whether a skipped file's reason says only that mmrag has no reader for its type."""
    return reason.startswith(NOT_READ)


def content_hash(item: Item) -> str:
    """Hash of what gets embedded, so unchanged content is never encoded twice."""
    h = hashlib.sha256()
    for part in (item.modality, item.title, item.text, item.language or ""):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    if item.image:
        h.update(str(item.meta.get("image_sha256", item.image)).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Locator:
    """Where in a document an item sits, so a hit can be cited and opened there.

    Set for items read from documents (PDF pages, notebook cells, slides ...); None for a plain file,
    whose `start_line`/`end_line` already say where. Pages and cells count from 1, as readers see them.
    """

    doc: str  # the document's format: "pdf", "ipynb", "docx", "pptx", "html", "epub", "md"
    page: int | None = None  # physical page, 1-based
    page_label: str | None = None  # the printed label where it differs ("iv", "A-3")
    cell: int | None = None  # notebook cell, 1-based
    execution_count: int | None = None
    slide: int | None = None  # 1-based
    part: str | None = None  # "text", "figure", "page-render", "code-cell", "markdown", "output", ...
    heading: str | None = None  # the heading path, "Intro > Setup"
    bbox: tuple[float, float, float, float] | None = None  # (x0, y0, x1, y1) in PDF points

    def label(self) -> str:
        """The short citation a person reads: "p. 12", "p. iv (4)", "cell 7", "slide 3"."""
        if self.page is not None:
            if self.page_label and self.page_label != str(self.page):
                return f"p. {self.page_label} ({self.page})"
            return f"p. {self.page}"
        if self.cell is not None:
            return f"cell {self.cell}"
        if self.slide is not None:
            return f"slide {self.slide}"
        return self.heading or ""

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if getattr(self, k) is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Locator | None:
        if not d:
            return None
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if known.get("bbox") is not None:
            known["bbox"] = tuple(known["bbox"])
        return cls(**known)


@dataclass
class Hit:
    """One search result, the same shape from the library, the CLI's --json, REST and the demo."""

    id: int  # the collection's int64 id
    key: str  # the item's stable key (a JSONL `_id` for BEIR corpora)
    modality: str
    score: float
    source: str  # a file path, or the JSONL `_id`
    routes: dict[str, float] = field(default_factory=dict)  # route name -> that route's score
    title: str = ""
    text: str = ""
    path: str | None = None
    language: str | None = None
    symbol: str | None = None
    start_line: int | None = None
    end_line: int | None = None
    locator: Locator | None = None  # where in a document (page, cell, slide); None for plain files
    # other places holding the very same picture (equal bytes): a logo on every slide, a page's <img>
    # that is also indexed as a file. One hit stands for them, so k hits show k different pictures.
    also: list[str] = field(default_factory=list)

    def where(self) -> str:
        """`path:12-30`, with the locator's label (`p. 4`, `cell 7`) where the item has one."""
        where = self.path or self.source
        if self.start_line:
            end = f"-{self.end_line}" if self.end_line and self.end_line != self.start_line else ""
            where += f":{self.start_line}{end}"
        if self.locator is not None and self.locator.label():
            where += f" ({self.locator.label()})"
        return where

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["locator"] = self.locator.to_dict() if self.locator else None
        return d
