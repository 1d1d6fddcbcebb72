"""CLIP's image tower without torch: an exported file, and the model's preprocessing in PIL + numpy.

Indexing photos through torch cost more than the network itself: importing torch and open_clip
(seconds and ~0.5 GB per process), torchvision's tensor conversion (~60 ms a photo, where PIL and
numpy take ~10 ms for the same numbers), and the text tower at its full 77 positions for every
caption. `ExportedClip` runs both towers from files: captions and text queries through the query
tower (exported/query.py, padding cut after the longest text), pixels through the image tower on
ONNX Runtime or OpenVINO (fp32). `preprocess` repeats the model's own torchvision steps on a PIL
image: Resize of the short side (Pillow's filter at the size torchvision computes), CenterCrop
(rounded offsets), /255, Normalize; the card records them (families/clip.py reads them off the
model's transform), and the export is checked against the model before its card is written.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base import Encoder, EncoderCfg, l2_normalize
from ..runtime.choose import make_forward
from ..runtime.forward import Forward
from .card import ImageCard
from .query import LightEncoder

if TYPE_CHECKING:
    from PIL import Image

FILTERS = ("nearest", "lanczos", "bilinear", "bicubic", "box", "hamming")  # Pillow's Resampling order
# ViT-B-32-256 on ONNX Runtime, 2 cores: 32 images in batches of 8 took as long as one batch of 32
# (9.3-15.5 s vs 9.7-16.4 s, load ~15), with a quarter of the activation memory (~40 vs ~160 MB)
IMAGE_BATCH = 8
STREAMS = 2  # batches encoded side by side (see `stream_split`)


def preprocess(img: Image.Image, card: ImageCard) -> np.ndarray:
    """An RGB PIL image -> float32 (3, size, size): the same numbers as the model's torchvision steps."""
    from PIL import Image

    s = card.size
    w, h = img.size
    if card.resize == "squash":
        nw, nh = s, s
    elif w <= h:  # torchvision: the short side to s, the long one truncated
        nw, nh = s, int(s * h / w)
    else:
        nw, nh = int(s * w / h), s
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling(FILTERS.index(card.interpolation)))
    if (nw, nh) != (s, s):
        left, top = int(round((nw - s) / 2.0)), int(round((nh - s) / 2.0))
        img = img.crop((left, top, left + s, top + s))
    a = np.asarray(img, dtype=np.float32) / np.float32(255)
    a = (a - np.asarray(card.mean, np.float32)) / np.asarray(card.std, np.float32)
    return np.ascontiguousarray(a.transpose(2, 0, 1))


def stream_split(threads: int | None) -> tuple[int, int]:
    """(streams, threads per stream) for `threads` cores (None: all of them).

    Two batches side by side, one per core, each on one thread, beat one batch on both cores: on 2
    quiet cores ViT-B-32-256 ran 64 ms an image as two one-thread streams of batches of 8, against
    79 ms for one two-thread session (its workers sleep between ops, and the small GEMMs of one
    batch split badly); docs/performance.md. Past 2 cores the threads are shared out between two
    streams (not measured on larger machines).
    """
    total = max(1, threads or (os.cpu_count() or 1))
    streams = min(STREAMS, total)
    return streams, max(1, total // streams)


class ImageTower:
    """PIL images or preprocessed pixels -> unit vectors through the exported file.

    Batches run as `streams` one-core streams: `streams` calls of `encode_pixels` may run at once on
    one ONNX Runtime session (thread-safe, its weights held once), and the indexer keeps that many
    batches in flight (mmrag/indexing/embed.py). A lone query image would get one core that way
    (126 vs 86 ms for ViT-B-32-256 on 2 cores), so a process whose first call is one image gets a
    session on all the threads instead, and keeps it for everything after.
    """

    def __init__(self, card: ImageCard, folder: Path, backend: str, threads: int | None = None):
        self.card = card
        self.dim = card.dim
        self.backend = backend
        self.path = folder / card.model
        self.threads = max(1, threads or (os.cpu_count() or 1))
        self.streams, self._per_stream = stream_split(threads)
        self._forward: Forward | None = None
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def _session(self, one_image: bool) -> Forward:
        with self._lock:
            if self._forward is None:
                if one_image:
                    self.streams, self._per_stream = 1, self.threads
                # no prepacked GEMM weights: on 2 quiet AVX2 cores they bought nothing (76-88 vs 82-86 ms an
                # image, two one-core streams of batches of 8) and cost 0.5 s to open the tower
                self._forward = make_forward(
                    self.path, self.backend, self._per_stream, np.float32, prepack=False, keep_optimised=True
                )
            return self._forward

    def preprocess(self, img: Image.Image) -> np.ndarray:
        return preprocess(img, self.card)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        if len(pixels) == 0:
            return np.zeros((0, self.dim), np.float32)
        forward = self._session(one_image=len(pixels) == 1)
        return l2_normalize(forward({"pixels": np.ascontiguousarray(pixels, dtype=np.float32)}))

    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        """Batches of `batch_size`, each split across the streams (a row's vector does not depend
        on its batch-mates, checked when the tower is exported)."""
        out = np.zeros((len(images), self.dim), np.float32)
        bs = max(1, batch_size)
        for start in range(0, len(images), bs):
            pixels = np.stack([self.preprocess(im.convert("RGB")) for im in images[start : start + bs]])
            self._session(one_image=len(pixels) == 1)
            parts = np.array_split(pixels, min(self.streams, len(pixels)))
            if len(parts) == 1:
                out[start : start + len(pixels)] = self.encode_pixels(pixels)
                continue
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.streams, thread_name_prefix="image-tower")
            out[start : start + len(pixels)] = np.concatenate(list(self._pool.map(self.encode_pixels, parts)))
        return out


class ExportedClip(Encoder):
    """A CLIP spec served from its exported towers: captions, text queries and images, no torch."""

    inputs = frozenset({"text", "image"})

    def __init__(self, text: LightEncoder, tower: ImageTower, cfg: EncoderCfg):
        self.spec = text.spec
        self.dim = text.dim
        # images in batches of at most IMAGE_BATCH (what the indexer stacks, mmrag/indexing/embed.py)
        self.cfg = replace(cfg, batch_size=min(cfg.batch_size, IMAGE_BATCH))
        self.backend = f"exported ({tower.backend})"
        self.text = text
        self.tower = tower

    def encode_text(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        return self.text.encode_text(texts, query=query)

    @property
    def image_transform(self):
        """PIL RGB image -> float32 (3, s, s), for the indexer's parallel loaders (mmrag/indexing/embed.py)."""
        return self.tower.preprocess

    @property
    def pixel_streams(self) -> int:
        """How many `encode_pixels` calls may run at once, each on its own core."""
        return self.tower.streams

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """(n, 3, s, s) arrays already through `image_transform` -> (n, dim) unit rows; thread-safe."""
        return self.tower.encode_pixels(pixels)

    def encode_image(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.tower.encode_images(images, self.cfg.batch_size)

    def export_query(self, folder: Path) -> Any:
        return self.text.card  # built from the exported files: they exist
