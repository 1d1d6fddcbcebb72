"""Look-alike photos on real-size random CLIP weights from a hub-layout cache: each finds itself.

Random ViT-B-32 weights map every photo of a burst to nearly one vector (0.95-0.99 apart), and the
caption route (CLIP's text of "IMG 0138") orders them by noise; the image route alone sees the
exact copy at cosine 1.0, and that match must come first, by itself, in a mixed query, and as
`similar` of a copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.heavy  # ~60 s: the fake hub and real-size CLIP over the photos
N_PHOTOS = 40


@pytest.fixture(scope="module")
def burst(tmp_path_factory) -> Path:
    """A burst of look-alike photos named as a camera names them, and no captions."""
    root = tmp_path_factory.mktemp("burst")
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:240, 0:320]
    base = np.stack([xx * 255 // 320, yy * 255 // 240, np.full_like(xx, 120)], -1).astype(np.float64)
    for n in range(N_PHOTOS):
        img = base + rng.normal(0, 12, base.shape) + rng.uniform(-20, 20, 3)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
            root / f"IMG_{138 + n:04d}.jpg", quality=90
        )
    return root


@pytest.fixture(scope="module")
def hub_engine(fake_hub, burst, tmp_path_factory):
    import huggingface_hub.constants as hf_constants
    from fakehub import hub_env

    from encoders.modelsets import resolve_model_set
    from mmrag.api import Engine

    with pytest.MonkeyPatch.context() as mp:
        for key, value in hub_env(fake_hub).items():
            mp.setenv(key, value)
        mp.setattr(hf_constants, "HF_HUB_CACHE", str(fake_hub / "hub"))
        mp.setattr(hf_constants, "HF_HUB_OFFLINE", True)
        ms = resolve_model_set("offline")  # MiniLM and the cached default CLIP, as a user has them
        assert ms.clip and ms.clip.startswith("clip:ViT-B-32"), ms.clip
        engine = Engine.open(tmp_path_factory.mktemp("burst-coll") / "c", write=True, models=ms)
        engine.index([str(burst)])
        yield engine
        engine.close()


def _names(result) -> list[str]:
    return [Path(h.source).name for h in result.hits]


@pytest.mark.parametrize("n", [0, 17, 33])
def test_a_photo_finds_itself_first(hub_engine, burst, n):
    photo = burst / f"IMG_{138 + n:04d}.jpg"
    result = hub_engine.search("", images=[str(photo)], k=5)
    assert _names(result)[0] == photo.name, (_names(result), [h.routes for h in result.hits])
    mixed = hub_engine.search(f"photo + {photo}", k=5)
    assert _names(mixed)[0] == photo.name


def test_similar_puts_an_exact_copy_first(hub_engine, burst, tmp_path):
    item_id = hub_engine.search("", images=[str(burst / "IMG_0140.jpg")], k=1).hits[0].id
    copy = burst / "IMG_0140_copy.jpg"
    shutil.copy(burst / "IMG_0140.jpg", copy)
    try:
        hub_engine.index([str(burst)])
        got = hub_engine.similar(item_id, k=3)
        assert _names(got)[0] == copy.name
    finally:
        copy.unlink()
        hub_engine.index([str(burst)])
