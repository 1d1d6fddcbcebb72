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

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base import Encoder, EncoderCfg, l2_normalize
from ..runtime.choose import make_forward
from .card import ImageCard
from .query import LightEncoder

if TYPE_CHECKING:
    from PIL import Image

FILTERS = ("nearest", "lanczos", "bilinear", "bicubic", "box", "hamming")  # Pillow's Resampling order
# ViT-B-32-256 on ONNX Runtime, 2 cores: 32 images in batches of 8 took as long as one batch of 32
# (9.3-15.5 s vs 9.7-16.4 s, load ~15), with a quarter of the activation memory (~40 vs ~160 MB)
IMAGE_BATCH = 8


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


class ImageTower:
    """PIL images or preprocessed pixels -> unit vectors through the exported file."""

    def __init__(self, card: ImageCard, folder: Path, backend: str, threads: int | None = None):
        self.card = card
        self.dim = card.dim
        self.backend = backend
        # unpacked weights: 0.48 GB instead of 0.69 GB after a batch of 8 on ViT-B-32-256, at 1.08x the
        # time (paired median of 6, load ~15): the memory of the whole indexing process is the target
        self._forward = make_forward(folder / card.model, backend, threads, np.float32, prepack=False)

    def preprocess(self, img: Image.Image) -> np.ndarray:
        return preprocess(img, self.card)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        if len(pixels) == 0:
            return np.zeros((0, self.dim), np.float32)
        return l2_normalize(self._forward({"pixels": np.ascontiguousarray(pixels, dtype=np.float32)}))

    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        out = np.zeros((len(images), self.dim), np.float32)
        bs = max(1, batch_size)
        for start in range(0, len(images), bs):
            chunk = [self.preprocess(im.convert("RGB")) for im in images[start : start + bs]]
            out[start : start + len(chunk)] = self.encode_pixels(np.stack(chunk))
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

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """(n, 3, s, s) arrays already through `image_transform` -> (n, dim) unit rows."""
        return self.tower.encode_pixels(pixels)

    def encode_image(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.tower.encode_images(images, self.cfg.batch_size)

    def export_query(self, folder: Path) -> Any:
        return self.text.card  # built from the exported files: they exist
