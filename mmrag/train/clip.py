"""Contrastive fine-tuning of an open_clip model on (image, caption) pairs.

The symmetric image<->text cross-entropy of CLIP over in-batch pairs, in a short loop.
The result is an open_clip `local-dir:` folder (open_clip_config.json plus
open_clip_model.safetensors), loadable with `open_clip.create_model_and_transforms`.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .pairs import ImagePair, read_image_pairs_jsonl
from .validate import pair_mrr

if TYPE_CHECKING:
    from .trainer import Progress, TrainCfg, TrainResult


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

    from .trainer import TrainResult, _lr_at, _save_checkpoint

    emit = progress or (lambda event: None)
    if not cfg.pairs:
        raise ConfigError("CLIP training needs `pairs`: a JSONL file of {'image', 'caption'}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    pairs = read_image_pairs_jsonl(cfg.pairs)
    random.Random(cfg.seed).shuffle(pairs)
    pairs = pairs[: cfg.max_pairs] if cfg.max_pairs is not None else pairs
    n_val = min(cfg.val_size, len(pairs) // 5)
    val, train_pairs = pairs[:n_val], pairs[n_val:]
    steps_per_epoch = max(1, len(train_pairs) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    out = Path(cfg.output_dir)
    ckpt = out / "checkpoints" / "last.pt"

    model, preprocess, tokenizer, name = _load(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.1)
    step = 0
    if cfg.resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=True, map_location="cpu")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        emit({"event": "resume", "step": step, "checkpoint": str(ckpt)})
    start_step = step
    emit({"event": "start", "pairs_train": len(train_pairs), "pairs_val": len(val), "steps": total})
    before = _validate(model, tokenizer, preprocess, val) if val and step == 0 else float("nan")
    history: list[float] = []
    stop = min(total, cfg.max_steps if cfg.max_steps is not None else total)
    while step < stop:
        epoch = step // steps_per_epoch
        order = list(range(len(train_pairs)))
        random.Random(cfg.seed * 1000 + epoch).shuffle(order)
        model.train()
        for b in range(step % steps_per_epoch, steps_per_epoch):
            if step >= stop:
                break
            batch = [train_pairs[i] for i in order[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
            img = model.encode_image(_images(batch, preprocess), normalize=True)
            txt = model.encode_text(tokenizer([p.caption for p in batch]), normalize=True)
            logits = model.logit_scale.exp() * img @ txt.T
            labels = torch.arange(len(batch))
            loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, total, cfg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, 4.6052)  # CLIP caps the temperature at 100
            step += 1
            if step % 10 == 0 or step == 1:
                emit({"event": "step", "step": step, "loss": float(loss.detach())})
            if step % cfg.checkpoint_every == 0 or step == stop:
                _save_checkpoint(ckpt, model, optimizer, step)
        if step % steps_per_epoch == 0 and val:
            history.append(_validate(model, tokenizer, preprocess, val))
            emit({"event": "validate", "epoch": step // steps_per_epoch, "val_mrr": history[-1]})

    finished = step >= total
    result = TrainResult(
        output_dir=str(out),
        val_mrr=history,
        val_mrr_before=before,
        steps=step,
        start_step=start_step,
        finished=finished,
        pairs_train=len(train_pairs),
        pairs_val=len(val),
        seconds=round(time.time() - t0, 1),
    )
    out.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "open_clip_model.safetensors")
    )
    config = {"model_cfg": _model_cfg(name), "preprocess_cfg": {}}
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    record = {"config": asdict(cfg), "result": asdict(result)}
    record["result"]["val_mrr_before"] = None if before != before else before  # NaN is not JSON
    (out / "mmrag_train.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if finished:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    emit({"event": "done", "output_dir": str(out), "val_mrr": history, "finished": finished})
    return result
