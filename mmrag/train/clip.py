"""Contrastive fine-tuning of an open_clip model on (image, caption) pairs.

The symmetric image<->text cross-entropy of CLIP over in-batch pairs, in a short loop.
The result is an open_clip `local-dir:` folder (open_clip_config.json plus
open_clip_model.safetensors), loadable with `open_clip.create_model_and_transforms`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from ..errors import ConfigError
from .loop import Loop, setup_torch, split_val
from .pairs import ImagePair, read_image_pairs_jsonl
from .spec import Progress, TrainCfg, TrainResult
from .validate import pair_mrr


def _model_name(base_model: str) -> tuple[str, str | None]:
    """'ViT-B-32/laion2b_s34b_b79k' -> (arch, tag); a folder -> ('local-dir:<folder>', None)."""
    if base_model.startswith("local-dir:") or Path(base_model).is_dir():
        return ("local-dir:" + base_model.removeprefix("local-dir:")), None
    arch, _, tag = base_model.partition("/")
    return arch, tag or None


def _load(cfg: TrainCfg):
    import open_clip

    name, tag = _model_name(cfg.base_model)
    if not name.startswith("local-dir:") and name not in open_clip.list_models():
        raise ConfigError(
            f"Unknown open_clip model {name!r}; valid: a local folder or one of {open_clip.list_models()}"
        )
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=tag)
    return model, preprocess, open_clip.get_tokenizer(name), name


def _model_cfg(name: str) -> dict:
    import open_clip

    if name.startswith("local-dir:"):
        path = Path(name.removeprefix("local-dir:")) / "open_clip_config.json"
        return json.loads(path.read_text(encoding="utf-8"))["model_cfg"]
    return open_clip.get_model_config(name)


def _images(pairs: list[ImagePair], preprocess):
    import torch
    from PIL import Image

    with_images = []
    for p in pairs:
        with Image.open(p.image_path) as img:
            with_images.append(preprocess(img.convert("RGB")))
    return torch.stack(with_images)


def _validate(model, tokenizer, preprocess, val: list[ImagePair]) -> float:
    """Caption -> image MRR over the held-out pairs."""
    import torch

    model.eval()
    with torch.no_grad():
        img = model.encode_image(_images(val, preprocess), normalize=True).numpy()
        txt = model.encode_text(tokenizer([p.caption for p in val]), normalize=True).numpy()
    return pair_mrr(txt, img)


def train_clip(cfg: TrainCfg, progress: Progress | None = None) -> TrainResult:
    """Fine-tune an open_clip model; resumes from `output_dir/checkpoints/last.pt` like `train`."""
    import torch
    import torch.nn.functional as F
    from safetensors.torch import save_file

    if not cfg.pairs:
        raise ConfigError("CLIP training needs `pairs`: a JSONL file of {'image', 'caption'}")
    setup_torch(cfg)
    pairs = read_image_pairs_jsonl(cfg.pairs)
    random.Random(cfg.seed).shuffle(pairs)
    pairs = pairs[: cfg.max_pairs] if cfg.max_pairs is not None else pairs
    val, train_pairs = split_val(pairs, cfg)
    model, preprocess, tokenizer, name = _load(cfg)

    def loss(indices: list[int], step: int):
        batch = [train_pairs[i] for i in indices]
        img = model.encode_image(_images(batch, preprocess), normalize=True)
        txt = model.encode_text(tokenizer([p.caption for p in batch]), normalize=True)
        logits = model.logit_scale.exp() * img @ txt.T
        labels = torch.arange(len(batch))
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

    def clamp_temperature() -> None:
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.6052)  # CLIP caps the temperature at 100

    loop = Loop(
        cfg,
        model,
        torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.1),
        n_train=len(train_pairs),
        n_val=len(val),
        loss=loss,
        validate=lambda: _validate(model, tokenizer, preprocess, val),
        emit=progress or (lambda event: None),
        clip_grad=None,
        after_step=clamp_temperature,
    )
    result = loop.run()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "open_clip_model.safetensors")
    )
    config = {"model_cfg": _model_cfg(name), "preprocess_cfg": {}}
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return loop.finish(result)
