"""What `mmrag bench docs` generates its documents from, and the script that reads them with mmrag's
own readers in a fresh process (shared by the PDF bench and the other formats')."""

from __future__ import annotations

WORDS = [
    "retrieval",
    "index",
    "vector",
    "query",
    "model",
    "image",
    "code",
    "text",
    "search",
    "page",
    "figure",
    "table",
    "result",
    "score",
    "rank",
    "encoder",
    "embedding",
    "token",
    "batch",
    "latency",
    "memory",
    "disk",
    "cache",
    "collection",
    "document",
    "notebook",
    "cell",
    "output",
]

READ_SCRIPT = """
import sys, time
from mmrag.ingest import IngestCfg, Source, read_source
cfg = IngestCfg(picture_dir=sys.argv[1])
items = 0
for p in sys.argv[2:]:
    items += len(read_source(Source(p, p, "document", 0, 0), cfg, lambda e: None))
print(items)
"""
