"""A batch of Items to vectors per index space: decode images in parallel, one encoder call per
modality and space, never one call per item."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from encoders.base import l2_normalize

from .errors import IngestError
from .ingest import load_image
from .items import Item
from .models import Models

Vectors = dict[str, tuple[list[int], np.ndarray]]  # space -> (row numbers into the kept items, vectors)


def embed_items(
    items: list[Item],
    models: Models,
    image_workers: int = 4,
    max_image_pixels: int = 128_000_000,
    projections: dict[str, np.ndarray] | None = None,
) -> tuple[list[Item], Vectors, list[tuple[str, str]]]:
    """Returns the items kept (images that fail to decode are dropped), their vectors per space,
    and (path, reason) for each failure. `projections` maps a modality to its fitted joint map
    (mmrag/joint.py); without one, code and text reach the joint space by identity."""
    failed: list[tuple[str, str]] = []
    images = [it for it in items if it.modality == "image"]
    loaded = load_images(images, image_workers, max_image_pixels, failed) if images else []
    if images:
        ok = {it.key for it, _ in loaded}
        items = [it for it in items if it.modality != "image" or it.key in ok]
    out: dict[str, tuple[list[int], list[np.ndarray]]] = {}
    row_of = {id(it): n for n, it in enumerate(items)}

    def put(space: str, batch: list[Item], vecs: np.ndarray) -> None:
        rows, parts = out.setdefault(space, ([], []))
        rows.extend(row_of[id(it)] for it in batch)
        parts.append(vecs)

    if loaded:
        clip = models.get("clip")
        batch = [it for it, _ in loaded]
        img_vecs = clip.encode_image([im for _, im in loaded])
        put("image", batch, img_vecs)
        put("caption", batch, clip.encode_text([it.text or it.title for it in batch]))
        if models.joint_role == "clip":
            put("joint", batch, img_vecs)
    for modality in ("code", "text"):
        batch = [it for it in items if it.modality == modality]
        if not batch:
            continue
        texts = [embed_text(it) for it in batch]
        vecs = models.get(modality).encode_text(texts)
        put(modality, batch, vecs)
        if projections and modality in projections:
            put("joint", batch, l2_normalize(vecs @ projections[modality]))
        elif models.same_encoder(modality, "joint"):
            put("joint", batch, vecs)
        else:  # identity projection over the joint encoder's own view of the item
            put("joint", batch, models.get("joint").encode_text(texts))
    return items, {s: (rows, np.concatenate(parts)) for s, (rows, parts) in out.items()}, failed


def load_images(items: list[Item], workers: int, max_pixels: int, failed: list) -> list[tuple[Item, object]]:
    """Decode in a thread pool (Pillow releases the GIL while decoding); failures are recorded."""

    def load(it: Item):
        try:
            return it, load_image(it.image or it.source, max_pixels=max_pixels)
        except IngestError as e:
            failed.append((e.path, e.reason))
            return None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return [r for r in pool.map(load, items) if r is not None]


def embed_text(item: Item) -> str:
    """What the code/text encoder reads for an item: the title (a heading path, a BEIR title) first."""
    return f"{item.title}\n{item.text}" if item.title and item.modality == "text" else item.text
