"""Warm query latency: one text query across every modality and route over a 100k-item collection.

The collection uses the tiny models (the query still runs every encoder and every index for real)
and synthetic unit vectors for its items, inserted through the store as the indexer would; it is
built once and cached under the bench dir. Queries are embedded by the light query encoders
(encoders/exported/) that indexing leaves behind, as `mmrag search` does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .report import Figure

if TYPE_CHECKING:
    from mmrag.api import Engine
    from mmrag.query.search import SearchResult

TARGET_P50_MS = 30.0
SPACES = ("image", "caption", "code", "text", "joint")
QUERIES = [
    "a red car on a street",
    "def parse json file",
    "how to sort a list",
    "cat sleeping",
    "open a socket",
]


def build_collection(path: Path, n: int) -> Path:
    """A tiny-model collection holding n items (image/code/text thirds) with synthetic vectors."""
    from mmrag.api import Engine
    from mmrag.items import Item

    from .search import mixture

    if (path / "manifest.json").is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    seed_file = path.parent / f"{path.name}-seed.jsonl"
    seed_file.write_text(json.dumps({"_id": "seed-0", "text": "seed document", "modality": "text"}) + "\n")
    with Engine.open(path, write=True, models="tiny") as eng:
        eng.index([str(seed_file)])
        coll = eng.collection
        dims = coll.manifest.dims
        spaces_of = {
            "image": ("image", "caption", "joint"),
            "code": ("code", "joint"),
            "text": ("text", "joint"),
        }
        modalities = ("image", "code", "text")
        for start in range(0, n, 20_000):
            m = min(20_000, n - start)
            items = [
                Item(
                    key=f"syn-{i}",
                    modality=modalities[i % 3],
                    source=str(seed_file),
                    text=f"synthetic item {i}",
                    title=f"item {i}",
                    image=f"/synthetic/{i}.jpg" if i % 3 == 0 else None,
                )
                for i in range(start, start + m)
            ]
            with coll.store.transaction() as con:
                ids = coll.store.insert_items(con, items)
                for modality in modalities:
                    rows = [r for r, it in enumerate(items) if it.modality == modality]
                    for space in spaces_of[modality]:
                        if space in dims:
                            vecs = mixture(len(rows), dims[space], 100, seed=start + SPACES.index(space))
                            coll.store.insert_vectors(con, space, [ids[r] for r in rows], vecs)
        coll.save()
    return path


def run(quick: bool = False, *, n: int | None = None, repeats: int | None = None) -> list[Figure]:
    """p50/p99 as `mmrag search` runs (light query encoders), and p50 with the full torch encoders."""
    from encoders.base import EncoderCfg
    from mmrag.api import Engine

    from . import work_dir

    n = n or (3_000 if quick else 100_000)
    repeats = repeats or (10 if quick else 60)
    path = build_collection(work_dir() / f"latency-{n}", n)
    with Engine.open(path) as eng:
        cards = eng.models.export_queries()  # as `mmrag index` leaves them; no-op when already written
        encoders = ", ".join(f"{r} {'light' if c else 'full'}" for r, c in cards.items())
        lat, res = latencies(eng, repeats)
        routes = ",".join(res.routes)
        factories = {s: i["factory"] for s, i in eng.collection.manifest.indexes.items()}
    with Engine.open(
        path, encoder_cfg=EncoderCfg(backend="torch")
    ) as eng:  # the same, without the light files
        full, _ = latencies(eng, repeats)
    p50, p99 = float(np.percentile(lat, 50)), float(np.percentile(lat, 99))
    note = f"{n:,} items, tiny models ({encoders} query encoders), routes {routes}; indexes {factories}"
    return [
        Figure(
            "query latency p50 (warm)", p50, "ms", target=TARGET_P50_MS, higher_is_better=False, note=note
        ),
        Figure("query latency p99 (warm)", p99, "ms"),
        Figure(
            "query latency p50 (warm), full torch encoders, for comparison",
            float(np.percentile(full, 50)),
            "ms",
            note="same collection and queries, every query encoder on torch",
        ),
    ]


def latencies(eng: Engine, repeats: int) -> tuple[list[float], SearchResult]:
    """Milliseconds of `repeats` warm searches, each a new text (no cache can answer), and the last result."""
    eng.search("warm up every encoder and index")
    lat = []
    for i in range(repeats):
        q = f"{QUERIES[i % len(QUERIES)]} {i}"
        t0 = time.perf_counter()
        res = eng.search(q, k=10)
        lat.append(1e3 * (time.perf_counter() - t0))
    return lat, res
