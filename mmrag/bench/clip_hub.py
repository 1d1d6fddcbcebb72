"""A Hugging Face cache holding one random real-size CLIP, laid out as huggingface_hub writes a download.

Speed does not depend on weight values, so the image benchmark needs no real weights: a seeded
random `ViT-B-32-256` state dict under the hub repo of `datacomp_s34b_b86k` lets mmrag load
`clip:ViT-B-32-256/datacomp_s34b_b86k` by tag (HF_HUB_OFFLINE=1), and the same weights feed the
ONNX files given to rclip and the plain open_clip loop, so every tool runs the same network.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

ARCH, TAG = "ViT-B-32-256", "datacomp_s34b_b86k"  # rclip 4's model, in open_clip's names
REPO = "laion/CLIP-ViT-B-32-256x256-DataComp-s34B-b86K"  # open_clip's hf_hub for that tag
WEIGHTS = "open_clip_model.safetensors"
REV = "0" * 39 + "1"  # the snapshot's commit name; refs/main points at it
SEED = 0


def hub_env(home: Path) -> dict[str, str]:
    """Environment for a process that must find exactly this cache and never the network."""
    return {"HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_HUB_OFFLINE": "1"}


def weights_path(home: Path) -> Path:
    return home / "hub" / ("models--" + REPO.replace("/", "--")) / "snapshots" / REV / WEIGHTS


def build_clip_hub(home: Path) -> Path:
    """Write the random weights once under `home/hub` (blob, snapshot link, refs/main); their path."""
    link = weights_path(home)
    if link.is_file():
        return link
    import open_clip
    import torch
    from safetensors.torch import save_file

    root = link.parents[2]
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    model = open_clip.create_model(ARCH, pretrained=None)
    tmp = root / "blobs" / ".incoming"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    h = hashlib.sha256()
    with open(tmp, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    blob = root / "blobs" / h.hexdigest()
    os.replace(tmp, blob)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(REV)
    return link
