"""Image indexing end to end against bare open_clip `encode_image` on pre-decoded tensors.

mmrag's side reads JPEG files, decodes (draft mode), preprocesses, encodes and adds to an index;
the reference gets the same images already decoded and preprocessed, so it is pure model time.
A ratio near 1 means decoding and I/O hide behind the model. No CLIP weights are needed: speed does
not depend on weight values, so a randomly initialised real-size ViT-B-32 stands in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .report import Figure, interleaved, paired_ratio

TARGET_RATIO = 0.9
SIZES_FULL = [(1600, 1200)] * 28 + [(4000, 3000)] * 4  # phone-camera photos, a few full-size ones
SIZES_QUICK = [(320, 240)] * 6 + [(1200, 900)] * 2


def make_jpegs(folder: Path, sizes: list[tuple[int, int]], seed: int = 0) -> list[Path]:
    """Photo-like JPEGs (smooth gradients plus noise, quality 90), written once and reused."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, (w, h) in enumerate(sizes):
        path = folder / f"img{i:03d}_{w}x{h}.jpg"
        if not path.is_file():
            small = rng.integers(0, 255, (h // 50 + 2, w // 50 + 2, 3), dtype=np.uint8)
            img = Image.fromarray(small).resize((w, h), Image.BILINEAR)
            noise = rng.normal(0, 8, (h, w, 3))
            arr = np.clip(np.asarray(img, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(path, quality=90)
        paths.append(path)
    return paths


def build_clip(quick: bool):
    """(ClipEncoder, bare open_clip model): tiny-clip for --quick, else a random real-size ViT-B-32."""
    import open_clip

    from encoders import EncoderCfg, create_encoder
    from encoders.clip import ClipEncoder

    if quick:
        enc = create_encoder("tiny-clip:0", EncoderCfg(batch_size=8))
        return enc, enc.model
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    enc = ClipEncoder(
        model,
        preprocess,
        open_clip.get_tokenizer("ViT-B-32"),
        EncoderCfg(batch_size=32),
        spec="clip:ViT-B-32 (random init)",
    )
    return enc, model


def gemm_peak_flops(n: int = 2048, reps: int = 3) -> float:
    """Best measured fp32 FLOP/s of an n x n torch matmul: the machine's practical ceiling."""
    import time

    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def image_flops(model, size: int) -> float:
    """FLOPs of one image through the image tower, counted by torch's FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.encode_image(torch.zeros(1, 3, size, size))
    return float(counter.get_total_flops())


def run(quick: bool = False, rounds: int | None = None) -> list[Figure]:
    import torch

    from indexes.vector import VectorIndex
    from mmrag.indexing.embed import encode_images
    from mmrag.ingest import load_image
    from mmrag.items import Item

    from . import work_dir

    enc, model = build_clip(quick)
    sizes = SIZES_QUICK if quick else SIZES_FULL
    paths = make_jpegs(work_dir() / ("jpegs-quick" if quick else "jpegs"), sizes)
    items = [Item(key=str(p), modality="image", source=str(p), image=str(p)) for p in paths]
    bs = enc.cfg.batch_size
    pixels = torch.stack([enc.image_transform(load_image(str(p), max_pixels=200_000_000)) for p in paths])

    def reference() -> None:
        with torch.inference_mode():
            for start in range(0, len(pixels), bs):
                model.encode_image(pixels[start : start + bs])

    def mmrag() -> None:
        failed: list = []
        kept, vecs = encode_images(items, enc, 4, 200_000_000, failed)
        index = VectorIndex(enc.dim, "Flat")
        index.add(np.arange(len(kept), dtype=np.int64), vecs)

    reference()  # warm both paths once
    times = interleaved({"reference": reference, "mmrag": mmrag}, rounds or (2 if quick else 3))
    n = len(paths)
    mm_rate = n / float(np.median(times["mmrag"]))
    ref_rate = n / float(np.median(times["reference"]))
    ratio = 1 / paired_ratio(times["mmrag"], times["reference"])
    size = pixels.shape[-1]
    peak = gemm_peak_flops(512 if quick else 2048)
    flops = image_flops(model, size)
    limit = peak / flops
    mix = ", ".join(f"{sizes.count(s)}x {s[0]}x{s[1]}" for s in dict.fromkeys(sizes))
    return [
        Figure(
            "image indexing end to end / bare encode_image",
            mm_rate,
            "img/s",
            ref_rate,
            ratio,
            TARGET_RATIO,
            note=f"{enc.spec}, {n} JPEGs ({mix}), batch {bs}, torch threads {torch.get_num_threads()}; "
            "paired median ratio",
        ),
        Figure(
            "image indexing / physical limit",
            mm_rate,
            "img/s",
            limit,
            mm_rate / limit,
            None,
            note=f"{flops / 1e9:.2f} GFLOP/image over a measured GEMM peak of {peak / 1e9:.1f} GFLOP/s",
        ),
    ]
