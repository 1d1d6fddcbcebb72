"""The map's points as the page draws them: place, colour fields and what hovering shows.

Columns rather than records (one list per field, categories coded as small ints), so 100k points
travel as a few MB of JSON and the page builds each trace without reshaping.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np

from mmrag.storage.collection import Collection

from . import cache
from .clusters import AUTO_RULE, ClusterResult, find_clusters
from .map import MapCfg, MapLayout, Progress, load_map
from .spaces import label_of

COLOUR_FIELDS = ("modality", "cluster", "folder", "language")
SNIPPET_CHARS = 240  # hover text in a standalone file; a served map fetches the item instead
SNIPPET_LINES = 10
THUMB = 96  # thumbnail edge inlined in a standalone file
MAX_THUMBS = 5000  # beyond this a standalone file links image files instead of inlining them


def map_payload(
    coll: Collection,
    layout: MapLayout,
    clusters: ClusterResult | None = None,
    *,
    highlight: Sequence[int] = (),
    snippets: bool = False,
) -> dict:
    """The JSON the map page draws: points by column, the categories of each colour field, hits to ring.

    `snippets` adds each item's hover text and inlined image thumbnails, for a file with no server."""
    ids = layout.ids.tolist()
    rows = coll.store.fetch_items(ids)
    roots = list(coll.manifest.roots)
    cols: dict[str, list] = {f: [] for f in ("modality", "folder", "language", "name", "label", "path")}
    for i in ids:
        row = rows.get(i) or {"id": i, "modality": "", "source": "", "key": "", "language": None}
        where = row["key"] if row["source"].endswith(".jsonl") else short_path(row["source"], roots)
        cols["modality"].append(row["modality"])
        cols["folder"].append(
            short_path(row["source"], roots)
            if row["source"].endswith(".jsonl")
            else os.path.dirname(where) or "."
        )
        cols["language"].append(row.get("language") or "none")
        cols["name"].append(os.path.basename(where) or where)
        cols["label"].append(label_of(row) if row.get("source") else "")
        cols["path"].append(row.get("image") or row["source"])
    points: dict[str, list] = {
        "id": ids,
        "x": np.round(layout.xy[:, 0].astype(np.float64), 4).tolist(),
        "y": np.round(layout.xy[:, 1].astype(np.float64), 4).tolist(),
        "name": cols["name"],
        "label": cols["label"],
    }
    categories: dict[str, list[str]] = {}
    for field in ("modality", "folder", "language"):
        categories[field], points[field] = _codes(cols[field])
    if clusters is not None and len(clusters.ids):
        of = dict(zip(clusters.ids.tolist(), clusters.assign.tolist()))
        categories["cluster"] = [f"{c.id}: {c.label}" for c in clusters.clusters]
        points["cluster"] = [of.get(i, 0) - 1 for i in ids]  # -1: not clustered (added since)
    if snippets:
        points["snippet"] = [snippet(rows.get(i)) for i in ids]
        points["thumb"] = _thumbs(cols["modality"], cols["path"])
        points["path"] = cols["path"]
    return {
        "space": layout.space,
        "count": len(ids),
        "generation": coll.store.generation(),
        "points": points,
        "categories": categories,
        "seconds": round(layout.seconds, 3),
        "cached": layout.cached,
        "highlight": [int(i) for i in highlight],
    }


def map_json(coll: Collection, space: str, progress: Progress | None = None) -> tuple[bytes, float, bool]:
    """(the served map's JSON without its last three fields, seconds, cached) for one space.

    The JSON is cached beside the layout: building it reads every item's row (2.6 s at 100k), which
    would otherwise be paid on the first visit after each server start. The caller closes the
    object with `"seconds", "cached" and "highlight"` (`close_json`)."""
    t0 = time.perf_counter()
    params = {
        "what": "points",
        "space": space,
        "map": {k: v for k, v in asdict(MapCfg()).items() if k != "n_jobs"},
        "clusters": AUTO_RULE,
    }

    def compute() -> dict[str, np.ndarray]:
        layout = load_map(coll, space, progress=progress)
        clusters = (
            find_clusters(coll, space=space, examples=0, progress=progress) if len(layout.ids) else None
        )
        if progress:
            progress("map points", 0, 1)
        body = json.dumps(map_payload(coll, layout, clusters), separators=(",", ":")).encode()
        return {"json": np.frombuffer(body[: body.rindex(b',"seconds":')], np.uint8)}

    arrays, hit = cache.cached(coll, f"points-{space}", params, compute)
    return arrays["json"].tobytes(), time.perf_counter() - t0, hit


def close_json(body: bytes, seconds: float, cached: bool, highlight: Sequence[int]) -> bytes:
    """The map's JSON with this request's timing and hits."""
    tail = json.dumps(
        {"seconds": round(seconds, 3), "cached": cached, "highlight": [int(i) for i in highlight]}
    )
    return body + b"," + tail[1:].encode()


def short_path(path: str, roots: Sequence[str]) -> str:
    """A path relative to the indexed folder holding it (`sample/code/fusion.py`, not /home/...)."""
    for root in sorted(roots, key=len, reverse=True):
        base = os.path.dirname(root.rstrip("/")) if os.path.isfile(root) else root.rstrip("/")
        if path.startswith(base + "/"):
            return os.path.join(os.path.basename(base), path[len(base) + 1 :])
    return path


def snippet(row: dict | None) -> str:
    """The first lines of an item's text (a caption for an image), cut to SNIPPET_CHARS."""
    if not row:
        return ""
    text = row.get("text") or row.get("title") or ""
    lines = text.strip("\n").splitlines()[:SNIPPET_LINES]
    out = "\n".join(lines)
    return out if len(out) <= SNIPPET_CHARS else out[: SNIPPET_CHARS - 1] + "…"


def _codes(values: list[str]) -> tuple[list[str], list[int]]:
    """(categories, most frequent first; each value's code)."""
    uniq, inverse, counts = np.unique(
        np.array(values, dtype=object).astype(str), return_inverse=True, return_counts=True
    )
    order = np.argsort(-counts, kind="stable")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return [str(u) for u in uniq[order]], rank[inverse].tolist()


def _thumbs(modalities: list[str], paths: list[str]) -> list[str]:
    """data: URIs of small JPEG thumbnails for images (up to MAX_THUMBS, then file: links), '' for others."""
    from PIL import Image

    n_images = sum(m == "image" for m in modalities)
    out = []
    for m, path in zip(modalities, paths):
        if m != "image":
            out.append("")
        elif n_images > MAX_THUMBS:
            out.append("file://" + os.path.abspath(path))
        else:
            try:
                with Image.open(path) as img:
                    img.thumbnail((THUMB, THUMB))
                    buf = io.BytesIO()
                    img.convert("RGB").save(buf, "JPEG", quality=80)
                out.append("data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode())
            except OSError:
                out.append("")
    return out
