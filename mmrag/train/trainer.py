"""Contrastive fine-tuning of a text/code encoder on (query, document) pairs.

A plain torch loop, kept short on purpose: each batch of B pairs gives a B x B similarity
matrix whose diagonal holds the positives and whose other entries are in-batch negatives
(the MultipleNegativesRanking loss of sentence-transformers). The result is a
sentence-transformers directory, so `text:/dir` and `code:/dir` load it.
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..views import code_view
from .pairs import Pair, mine_pairs, read_pairs_jsonl
from .validate import pair_mrr

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

KINDS = ("text", "code", "clip")
SIDES = ("both", "query")
Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrainCfg:
    """What to fine-tune, on which pairs, and how."""

    base_model: str  # sentence-transformers dir, or a plain HF BERT/RoBERTa dir (mean pooling is added)
    output_dir: str
    pairs: str | None = None  # JSONL of {"query", "document"}; or mine them from `mine`
    mine: tuple[str, ...] = ()
    kind: str = "code"
    epochs: int = 1
    batch_size: int = 32  # in-batch negatives: larger is better, 32 fits a 2-core CPU step in ~1 s
    lr: float = 3e-5  # the usual range for fine-tuning small BERTs; higher forgets the pre-training
    max_seq_length: int = 128  # most documented functions fit; longer costs quadratic CPU time
    query_max_length: int = 48  # docstring summaries are one sentence
    warmup_ratio: float = 0.1
    val_size: int = 500  # held-out pairs for the per-epoch MRR; ranking 500 is quick and stable enough
    max_pairs: int | None = None
    max_steps: int | None = None  # stop (and checkpoint) early: time-boxed runs and tests
    seed: int = 0
    checkpoint_every: int = 200
    resume: bool = True
    scale: float = 20.0  # inverse temperature of the cosine logits, as in MultipleNegativesRankingLoss
    augment: float = (
        0.5  # share of queries rewritten in web-search style (lowercase, no punctuation, "python")
    )
    freeze_embeddings: bool = True  # the vocabulary table is half of MiniLM: freezing it halves optimizer work, keeps rare tokens sane
    doc_view: str = "raw"  # mmrag.views code view applied to documents (and to be used at index time)
    threads: int | None = None  # torch threads; None keeps torch's default
    side: str = "both"  # "query": tune only the query tower against frozen base document vectors


@dataclass(frozen=True)
class TrainResult:
    output_dir: str
    val_mrr: list[float]  # one per finished epoch
    val_mrr_before: float
    steps: int
    start_step: int
    finished: bool
    pairs_train: int = 0
    pairs_val: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def load_pairs(cfg: TrainCfg) -> list[Pair]:
    if cfg.pairs:
        pairs = read_pairs_jsonl(cfg.pairs)
        random.Random(cfg.seed).shuffle(pairs)
    elif cfg.mine:
        pairs = mine_pairs(cfg.mine, seed=cfg.seed)
    else:
        raise ConfigError("TrainCfg needs `pairs` (a JSONL file) or `mine` (folders of Python sources)")
    pairs = pairs[: cfg.max_pairs] if cfg.max_pairs is not None else pairs
    if len(pairs) < 4:
        raise ConfigError(f"Only {len(pairs)} training pairs found; need at least 4")
    return [Pair(p.query, code_view(p.document, cfg.doc_view), p.source) for p in pairs]


_PUNCT = re.compile(r"[^\w\s]")


def augment_query(query: str, rng: random.Random) -> str:
    """Rewrite a docstring summary the way people type web searches about Python code."""
    q = " ".join(_PUNCT.sub(" ", query.lower()).split())
    roll = rng.random()
    if roll < 0.3:
        return f"python {q}"
    if roll < 0.6:
        return f"{q} python"
    return q


def load_model(base_model: str, max_seq_length: int | None) -> SentenceTransformer:
    """A sentence-transformers pipeline from an ST dir, or Transformer + mean pooling + Normalize."""
    from sentence_transformers import SentenceTransformer, models

    path = Path(base_model)
    if (path / "modules.json").exists():
        model = SentenceTransformer(str(path), device="cpu")
    elif (path / "config.json").exists():
        word = models.Transformer(str(path), max_seq_length=max_seq_length or 256)
        pool = models.Pooling(word.get_word_embedding_dimension(), pooling_mode="mean")
        model = SentenceTransformer(modules=[word, pool, models.Normalize()], device="cpu")
    else:
        raise ConfigError(
            f"base_model {base_model!r} is neither a sentence-transformers dir (modules.json) "
            "nor a Hugging Face model dir (config.json)"
        )
    if max_seq_length:
        model.max_seq_length = max_seq_length
    return model


def _embed(model: SentenceTransformer, texts: Sequence[str], max_len: int):
    import torch.nn.functional as F

    model.max_seq_length = max_len
    prepare = getattr(model, "preprocess", None) or model.tokenize  # `tokenize` is deprecated in ST >= 6
    features = prepare(list(texts))
    return F.normalize(model(features)["sentence_embedding"], dim=-1)


def _lr_at(step: int, total: int, cfg: TrainCfg) -> float:
    """Linear warm-up then linear decay to zero, computed from the step so resuming needs no state."""
    warm = max(1, int(total * cfg.warmup_ratio))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return cfg.lr * max(0.0, (total - step) / max(1, total - warm))


def train(cfg: TrainCfg, progress: Progress | None = None) -> TrainResult:
    """Fine-tune `cfg.base_model` and save it to `cfg.output_dir`; resumes from its last checkpoint."""
    if cfg.kind not in KINDS:
        raise ConfigError(f"Unknown training kind {cfg.kind!r}; valid: {list(KINDS)}")
    if cfg.kind == "clip":
        from .clip import train_clip

        return train_clip(cfg, progress)
    if cfg.side not in SIDES:
        raise ConfigError(f"Unknown training side {cfg.side!r}; valid: {list(SIDES)}")
    if cfg.side == "query":
        from .query_side import train_query_side

        return train_query_side(cfg, progress)
    import torch

    emit = progress or (lambda event: None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    pairs = load_pairs(cfg)
    n_val = min(cfg.val_size, len(pairs) // 5)
    val, train_pairs = pairs[:n_val], pairs[n_val:]
    steps_per_epoch = max(1, len(train_pairs) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    out = Path(cfg.output_dir)
    ckpt = out / "checkpoints" / "last.pt"

    model = load_model(cfg.base_model, cfg.max_seq_length)
    if cfg.freeze_embeddings:
        for name, param in model.named_parameters():
            if "word_embeddings" in name:
                param.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=0.01)
    step = 0
    if cfg.resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=True, map_location="cpu")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        emit({"event": "resume", "step": step, "checkpoint": str(ckpt)})
    start_step = step
    emit({"event": "start", "pairs_train": len(train_pairs), "pairs_val": len(val), "steps": total})

    val_before = _validate(model, val, cfg) if step == 0 and val else float("nan")
    if val:
        emit({"event": "validate", "epoch": 0, "val_mrr": val_before})
    history: list[float] = []
    stop = cfg.max_steps if cfg.max_steps is not None else total
    while step < min(total, stop):
        epoch = step // steps_per_epoch
        order = list(range(len(train_pairs)))
        random.Random(cfg.seed * 1000 + epoch).shuffle(order)
        model.train()
        for b in range(step % steps_per_epoch, steps_per_epoch):
            if step >= stop:
                break
            batch = [train_pairs[i] for i in order[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
            loss = _step(model, optimizer, batch, cfg, step, total)
            step += 1
            if step % 10 == 0 or step == 1:
                emit({"event": "step", "step": step, "loss": loss, "lr": _lr_at(step - 1, total, cfg)})
            if step % cfg.checkpoint_every == 0 or step == stop:
                _save_checkpoint(ckpt, model, optimizer, step)
                emit({"event": "checkpoint", "step": step, "path": str(ckpt)})
        if step % steps_per_epoch == 0 and val:
            history.append(_validate(model, val, cfg))
            emit({"event": "validate", "epoch": step // steps_per_epoch, "val_mrr": history[-1]})

    finished = step >= total
    result = TrainResult(
        output_dir=str(out),
        val_mrr=history,
        val_mrr_before=val_before,
        steps=step,
        start_step=start_step,
        finished=finished,
        pairs_train=len(train_pairs),
        pairs_val=len(val),
        seconds=round(time.time() - t0, 1),
    )
    _save_model(model, out, cfg, result)
    if finished:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    emit({"event": "done", "output_dir": str(out), "val_mrr": history, "finished": finished})
    return result


def _step(model, optimizer, batch: list[Pair], cfg: TrainCfg, step: int, total: int) -> float:
    import torch
    import torch.nn.functional as F

    rng = random.Random(cfg.seed * 7919 + step)
    queries = [augment_query(p.query, rng) if rng.random() < cfg.augment else p.query for p in batch]
    q = _embed(model, queries, cfg.query_max_length)
    d = _embed(model, [p.document for p in batch], cfg.max_seq_length)
    logits = cfg.scale * q @ d.T
    loss = F.cross_entropy(logits, torch.arange(len(batch)))
    for group in optimizer.param_groups:
        group["lr"] = _lr_at(step, total, cfg)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    return float(loss.detach())


def _validate(model, val: list[Pair], cfg: TrainCfg) -> float:
    model.eval()
    model.max_seq_length = cfg.max_seq_length
    docs = model.encode([p.document for p in val], batch_size=64, normalize_embeddings=True)
    model.max_seq_length = cfg.query_max_length
    queries = model.encode([p.query for p in val], batch_size=64, normalize_embeddings=True)
    model.max_seq_length = cfg.max_seq_length
    return pair_mrr(queries, docs)


def _save_checkpoint(path: Path, model, optimizer, step: int) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}, tmp)
    tmp.replace(path)  # a crash mid-write never leaves a torn checkpoint behind


def _save_model(model, out: Path, cfg: TrainCfg, result: TrainResult) -> None:
    model.max_seq_length = cfg.max_seq_length
    model.save(str(out))
    record = {"config": asdict(cfg), "result": asdict(result)}
    record["result"]["val_mrr_before"] = None if math.isnan(result.val_mrr_before) else result.val_mrr_before
    (out / "mmrag_train.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
