"""A batch of Items to vectors per index space: decode images in parallel, one encoder call per
modality and space, never one call per item."""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from encoders.base import Encoder, l2_normalize
from mmrag.errors import IngestError
from mmrag.ingest import load_image
from mmrag.items import Item
from mmrag.models import Models

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
    (mmrag/indexing/joint.py); without one, code and text reach the joint space by identity."""
    failed: list[tuple[str, str]] = []
    images = [it for it in items if it.modality == "image"]
    out: dict[str, tuple[list[int], list[np.ndarray]]] = {}
    kept: list[Item] = []
    img_vecs = np.zeros((0, 0), np.float32)
    if images and models.has("clip"):
        kept, img_vecs = encode_images(images, models.get("clip"), image_workers, max_image_pixels, failed)
        ok = {it.key for it in kept}
        items = [it for it in items if it.modality != "image" or it.key in ok]
    row_of = {id(it): n for n, it in enumerate(items)}

    def put(space: str, batch: list[Item], vecs: np.ndarray) -> None:
        rows, parts = out.setdefault(space, ([], []))
        rows.extend(row_of[id(it)] for it in batch)
        parts.append(vecs)

    if kept:
        clip = models.get("clip")
        put("image", kept, img_vecs)
        put("caption", kept, clip.encode_text([it.text or it.title for it in kept]))
        if models.joint_role == "clip":
            put("joint", kept, img_vecs)
    elif images and not models.has("clip"):
        # no image encoder: a picture kept by its caption (indexer.has_own_caption) lives in the
        # joint space by that text
        texts = [embed_text(it) for it in images]
        put("joint", images, models.get("joint").encode_text(texts))
        _put_ensemble(models, "image", images, texts, put)
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
        _put_ensemble(models, modality, batch, texts, put)
    return items, {s: (rows, np.concatenate(parts)) for s, (rows, parts) in out.items()}, failed


def _put_ensemble(models: Models, modality: str, batch: list[Item], texts: list[str], put) -> None:
    """The extra spaces of ensembles (`code@2`, `joint@2`, ...): one encoder call per spec, so
    `code@2` and `joint@2` of one model share their vectors."""
    done: dict[str, np.ndarray] = {}
    for space in models.ensemble_spaces():
        spec = models.spec(space)
        if space.partition("@")[0] not in (modality, "joint") or spec is None:
            continue
        if spec not in done:
            done[spec] = models.get(space).encode_text(texts)
        put(space, batch, done[spec])


def encode_images(
    items: list[Item], clip: Encoder, workers: int, max_pixels: int, failed: list
) -> tuple[list[Item], np.ndarray]:
    """Decode and preprocess on a thread pool while the model encodes earlier batches.

    Workers run ahead of the encoder (Pillow releases the GIL while decoding and resizing), so
    decoding hides behind the model; the main thread only stacks arrays and hands them to the
    encoder, which runs `pixel_streams` batches side by side (exported towers: one per core). A few
    batches at most are decoded ahead: an unbounded queue held every preprocessed image of a
    1,024-item call (0.8 MB each at 256 px) whenever decoding outran the model.
    `image_transform` may give numpy arrays (exported towers, no torch) or torch tensors.
    Encoders without `image_transform`/`encode_pixels` get decoded PIL images instead.
    """
    transform = getattr(clip, "image_transform", None)
    if transform is None or not hasattr(clip, "encode_pixels"):
        loaded = load_images(items, workers, max_pixels, failed)
        kept = [it for it, _ in loaded]
        return kept, clip.encode_image([im for _, im in loaded]) if loaded else np.zeros(
            (0, clip.dim), np.float32
        )
    bs = max(1, getattr(getattr(clip, "cfg", None), "batch_size", 32))
    streams = max(1, int(getattr(clip, "pixel_streams", 1)))  # batches the encoder runs side by side
    kept: list[Item] = []
    parts: list[np.ndarray] = []
    pending: list = []
    encoding: deque = deque()  # batches being encoded, in order

    def flush() -> None:
        batch = _stack(pending)
        pending.clear()
        if streams == 1:
            parts.append(clip.encode_pixels(batch))
            return
        encoding.append(encoder_pool.submit(clip.encode_pixels, batch))
        while len(encoding) > streams:  # one more queued keeps every stream busy while we collect
            parts.append(encoding.popleft().result())

    def load(it: Item):
        try:
            return it, transform(load_image(it.image or it.source, max_pixels=max_pixels))
        except IngestError as e:
            failed.append((e.path, e.reason))
            return None

    ahead = (streams + 2) * bs + max(1, workers)  # decoded or decoding, not yet encoding
    with ThreadPoolExecutor(max(1, workers)) as pool, ThreadPoolExecutor(streams) as encoder_pool:
        window: deque = deque(pool.submit(load, it) for it in items[:ahead])
        rest = iter(items[ahead:])
        while window:
            result = window.popleft().result()  # in order; later items decode during encoding
            nxt = next(rest, None)
            if nxt is not None:
                window.append(pool.submit(load, nxt))
            if result is None:
                continue
            kept.append(result[0])
            pending.append(result[1])
            if len(pending) == bs:
                flush()
        if pending:
            flush()
        parts.extend(f.result() for f in encoding)
    return kept, np.concatenate(parts) if parts else np.zeros((0, clip.dim), np.float32)


def _stack(arrays: list):
    """One batch of preprocessed images: numpy rows stay numpy, torch tensors stay torch."""
    if isinstance(arrays[0], np.ndarray):
        return np.stack(arrays)
    import torch

    return torch.stack(arrays)


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
