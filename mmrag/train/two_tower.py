"""Contrastive fine-tuning of a text/code encoder on (query, document) pairs, both towers at once.

Each batch of B pairs (the shared loop is mmrag/train/loop.py) gives a B x B similarity
matrix whose diagonal holds the positives and whose other entries are in-batch negatives
(the MultipleNegativesRanking loss of sentence-transformers). The result is a
sentence-transformers directory, so `text:/dir` and `code:/dir` load it.
"""

from __future__ import annotations

import random

from .loop import Loop, setup_torch, split_val
from .pairs import Pair
from .sentence import augment_query, embed, load_model, load_pairs
from .spec import Progress, TrainCfg, TrainResult
from .validate import pair_mrr


def train_two_tower(cfg: TrainCfg, progress: Progress | None = None) -> TrainResult:
    """Fine-tune query and document encoding together (one shared model) and save it to `cfg.output_dir`."""
    import torch

    setup_torch(cfg)
    val, train_pairs = split_val(load_pairs(cfg), cfg)
    model = load_model(cfg.base_model, cfg.max_seq_length)
    if cfg.freeze_embeddings:
        for name, param in model.named_parameters():
            if "word_embeddings" in name:
                param.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]

    def loss(indices: list[int], step: int):
        import torch.nn.functional as F

        batch = [train_pairs[i] for i in indices]
        rng = random.Random(cfg.seed * 7919 + step)
        queries = [augment_query(p.query, rng) if rng.random() < cfg.augment else p.query for p in batch]
        q = embed(model, queries, cfg.query_max_length)
        d = embed(model, [p.document for p in batch], cfg.max_seq_length)
        return F.cross_entropy(cfg.scale * q @ d.T, torch.arange(len(batch)))

    loop = Loop(
        cfg,
        model,
        torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=0.01),
        n_train=len(train_pairs),
        n_val=len(val),
        loss=loss,
        validate=lambda: _validate(model, val, cfg),
        emit=progress or (lambda event: None),
    )
    result = loop.run()
    model.max_seq_length = cfg.max_seq_length
    model.save(cfg.output_dir)
    return loop.finish(result)


def _validate(model, val: list[Pair], cfg: TrainCfg) -> float:
    model.eval()
    model.max_seq_length = cfg.max_seq_length
    docs = model.encode([p.document for p in val], batch_size=64, normalize_embeddings=True)
    model.max_seq_length = cfg.query_max_length
    queries = model.encode([p.query for p in val], batch_size=64, normalize_embeddings=True)
    model.max_seq_length = cfg.max_seq_length
    return pair_mrr(queries, docs)
