"""The indexer's image pipeline with an encoder that runs several batches at once (exported towers).

Batches finish out of order on purpose; every photo must still get its own vector, failures must
still drop out, and at most the promised number of batches may be encoding at any time.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from encoders.exported.image import stream_split
from mmrag.indexing.embed import encode_images
from mmrag.items import Item


class SlowStreams:
    """Pixels -> a vector that names the photo (its mean colour), after a random delay."""

    dim = 3
    pixel_streams = 2

    class cfg:
        batch_size = 3

    def __init__(self):
        self.lock = threading.Lock()
        self.running = self.most = 0

    @staticmethod
    def image_transform(img: Image.Image) -> np.ndarray:
        return np.asarray(img, np.float32).mean(axis=(0, 1))

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(random.uniform(0, 0.03))
        with self.lock:
            self.running -= 1
        return pixels / np.linalg.norm(pixels, axis=1, keepdims=True)


def test_batches_encoded_side_by_side_keep_every_photos_vector(tmp_path: Path):
    random.seed(0)
    items, colours = [], {}
    for i in range(23):
        path = tmp_path / f"p{i}.png"
        colour = (10 + i, 200 - i, 7 * i % 250 + 1)
        Image.new("RGB", (16, 12), colour).save(path)
        items.append(Item(key=str(path), modality="image", source=str(path), image=str(path)))
        colours[str(path)] = np.asarray(colour, np.float32)
    (tmp_path / "p5.png").write_bytes(b"not an image")  # fails to decode: dropped, recorded
    failed: list = []
    encoder = SlowStreams()
    kept, vecs = encode_images(items, encoder, 4, 10**8, failed)
    assert [it.key for it in kept] == [it.key for it in items if not it.key.endswith("p5.png")]
    assert len(failed) == 1 and failed[0][0].endswith("p5.png")
    for it, vec in zip(kept, vecs):
        want = colours[it.key] / np.linalg.norm(colours[it.key])
        np.testing.assert_allclose(vec, want, rtol=1e-6)
    assert encoder.most <= encoder.pixel_streams


def test_stream_split_gives_each_core_one_thread_on_two_cores():
    assert stream_split(1) == (1, 1)
    assert stream_split(2) == (2, 1)
    assert stream_split(16) == (2, 8)
