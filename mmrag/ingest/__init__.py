"""Sources to Items: find files (scan_sources), read them (read_source), decode images (load_image).

A reader registry maps file extensions to readers; `register_reader` adds one. Every problem with one
file is an IngestError(path, reason), so that indexing can record it and go on with the rest.
"""

from __future__ import annotations

from mmrag.ingest.images import load_image, to_rgb
from mmrag.ingest.readers import ReaderSpec, list_readers, read_source, reader_for, register_reader
from mmrag.ingest.spec import KINDS, IngestCfg, Source
from mmrag.ingest.walk import fingerprint, iter_items, scan_sources

__all__ = [
    "KINDS",
    "IngestCfg",
    "ReaderSpec",
    "Source",
    "fingerprint",
    "iter_items",
    "list_readers",
    "load_image",
    "read_source",
    "reader_for",
    "register_reader",
    "scan_sources",
    "to_rgb",
]
