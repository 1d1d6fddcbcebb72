"""The reader registry: file extension -> (kind, reader), and read_source that dispatches on it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import NamedTuple

from mmrag.errors import ConfigError, IngestError
from mmrag.ingest.code import CODE_EXTS, read_code
from mmrag.ingest.epub import EPUB_EXTS, read_epub
from mmrag.ingest.html import HTML_EXTS, read_html
from mmrag.ingest.images import image_exts, read_image
from mmrag.ingest.jsonl import JSONL_EXTS, OnError, read_jsonl
from mmrag.ingest.notebook import NOTEBOOK_EXTS, read_notebook
from mmrag.ingest.office import DOCX_EXTS, PPTX_EXTS, read_docx, read_pptx
from mmrag.ingest.pdf import PDF_EXTS, read_pdf
from mmrag.ingest.spec import DEFAULT_CFG, KINDS, IngestCfg, Source
from mmrag.ingest.text import TEXT_EXTS, read_text_doc
from mmrag.items import Item

# A reader turns one source into Items; it raises IngestError for the whole file, or reports
# per-record problems through on_error (None: raise on the first) and keeps the good records.
Reader = Callable[[Source, IngestCfg, "OnError | None"], list[Item]]


class ReaderSpec(NamedTuple):
    kind: str
    fn: Reader


_READERS: dict[str, ReaderSpec] = {}


def register_reader(exts: str | Iterable[str], kind: str, fn: Reader) -> None:
    """Map extensions (".jpg" or "jpg", any case) to a reader; a later registration replaces an earlier one."""
    if kind not in KINDS:
        raise ConfigError(f"Unknown source kind {kind!r}; valid kinds are {KINDS}")
    for ext in [exts] if isinstance(exts, str) else exts:
        ext = ext.lower() if ext.startswith(".") else "." + ext.lower()
        if ext == ".":
            raise ConfigError("An empty extension cannot be registered")
        _READERS[ext] = ReaderSpec(kind, fn)


def list_readers() -> dict[str, str]:
    """Extension -> kind, for every registered reader."""
    return {ext: spec.kind for ext, spec in sorted(_READERS.items())}


def reader_for(path: str) -> ReaderSpec | None:
    return _READERS.get(os.path.splitext(path)[1].lower())


def read_source(source: Source, cfg: IngestCfg = DEFAULT_CFG, on_error: OnError | None = None) -> list[Item]:
    """Items of one source; raises IngestError(path, reason) when the file as a whole cannot be read."""
    spec = reader_for(source.path)
    if spec is None:
        ext = os.path.splitext(source.path)[1] or "(none)"
        raise IngestError(source.path, f"no reader for extension {ext!r}; known: {', '.join(_READERS)}")
    try:
        return spec.fn(source, cfg, on_error)
    except IngestError:
        raise
    except OSError as e:
        raise IngestError(source.path, f"cannot read: {e.strerror or e}") from e
    except (UnicodeError, MemoryError, RecursionError) as e:
        raise IngestError(source.path, f"cannot read ({type(e).__name__}: {e})") from e


register_reader(image_exts(), "image", read_image)
register_reader(CODE_EXTS, "code", read_code)
register_reader(TEXT_EXTS, "text", read_text_doc)
register_reader(JSONL_EXTS, "jsonl", read_jsonl)
register_reader(PDF_EXTS, "document", read_pdf)
register_reader(NOTEBOOK_EXTS, "document", read_notebook)
register_reader(DOCX_EXTS, "document", read_docx)
register_reader(PPTX_EXTS, "document", read_pptx)
register_reader(HTML_EXTS, "document", read_html)
register_reader(EPUB_EXTS, "document", read_epub)
