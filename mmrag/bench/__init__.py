"""`mmrag bench`: each figure of docs/performance.md measured against its reference, side by side.

One module per benchmark, each with `run(quick: bool) -> list[Figure]`; `BENCHMARKS` maps the
CLI names to them and is imported lazily, so listing costs nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

BENCHMARKS: dict[str, str] = {
    "encode": "mmrag.bench.encode",
    "images": "mmrag.bench.images",
    "search": "mmrag.bench.search",
    "latency": "mmrag.bench.latency",
    "coldstart": "mmrag.bench.coldstart",
    "serve": "mmrag.bench.serve",  # the server under 32 users while it indexes and runs /dupes (locust)
    "docs": "mmrag.bench.docs",  # PDF pages/s, extraction and chunking, against pypdf
}


def work_dir() -> Path:
    """Where generated inputs are cached between runs: $MMRAG_BENCH_DIR, else ./runs/bench."""
    path = Path(os.environ.get("MMRAG_BENCH_DIR") or Path.cwd() / "runs" / "bench")
    path.mkdir(parents=True, exist_ok=True)
    return path
