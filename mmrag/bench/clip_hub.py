"""A Hugging Face cache holding random real-size CLIPs, laid out as huggingface_hub writes a download.

Speed does not depend on weight values, so the image benchmark needs no real weights: a seeded
random state dict of each architecture under the hub repo of its tag lets mmrag load
`clip:ARCH/TAG` by tag (HF_HUB_OFFLINE=1), and the same weights feed the ONNX files given to rclip
and the plain open_clip loop, so every tool runs the same network. Two models are kept: rclip's
`ViT-B-32-256/datacomp_s34b_b86k` (both tools run it for the like-for-like table) and the CLIP of
mmrag's default model set, `ViT-B-32/laion2b_s34b_b79k` (each tool with its own default model).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

WEIGHTS = "open_clip_model.safetensors"
REV = "0" * 39 + "1"  # the snapshot's commit name; refs/main points at it
SEED = 0


@dataclass(frozen=True)
class HubModel:
    """One open_clip model by its architecture and pretrained tag, and the hub repo open_clip reads for it."""

    arch: str
    tag: str
    repo: str  # open_clip's hf_hub for the tag (open_clip/pretrained.py)

    @property
    def spec(self) -> str:
        """How mmrag names it in a model set."""
        return f"clip:{self.arch}/{self.tag}"


RCLIP = HubModel(
    "ViT-B-32-256", "datacomp_s34b_b86k", "laion/CLIP-ViT-B-32-256x256-DataComp-s34B-b86K"
)  # rclip 4's
ARCH, TAG, REPO = RCLIP.arch, RCLIP.tag, RCLIP.repo  # the model both tools run in the like-for-like table


def mmrag_default() -> HubModel:
    """The CLIP of mmrag's `default` model set (encoders/model_sets/default.toml), with its hub repo."""
    import open_clip

    from encoders.modelsets import resolve_model_set

    spec = resolve_model_set("default").clip or ""
    arch, _, tag = spec.removeprefix("clip:").partition("/")
    repo = (open_clip.get_pretrained_cfg(arch, tag) or {}).get("hf_hub", "").rstrip("/")
    if not repo:
        raise ValueError(f"the default model set's CLIP {spec!r} has no hub repo in open_clip's registry")
    return HubModel(arch, tag, repo)


def hub_env(home: Path) -> dict[str, str]:
    """Environment for a process that must find exactly this cache and never the network."""
    return {"HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_HUB_OFFLINE": "1"}


def weights_path(home: Path, model: HubModel = RCLIP) -> Path:
    return home / "hub" / ("models--" + model.repo.replace("/", "--")) / "snapshots" / REV / WEIGHTS


def build_clip_hub(home: Path, model: HubModel = RCLIP) -> Path:
    """Write the model's random weights once under `home/hub` (blob, snapshot link, refs/main); their path."""
    link = weights_path(home, model)
    if link.is_file():
        return link
    import open_clip
    import torch
    from safetensors.torch import save_file

    root = link.parents[2]
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    net = open_clip.create_model(model.arch, pretrained=None)
    tmp = root / "blobs" / ".incoming"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
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
