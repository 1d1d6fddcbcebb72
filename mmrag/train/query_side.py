"""Query-side fine-tuning: adapt only the query tower to a frozen document tower.

Document embeddings come from the base model once, so an already-built index stays
valid and a training step costs only a short query's forward and backward pass: on a
small CPU that is the difference between minutes and hours. Every training document
serves as a negative for every query (a full softmax over the precomputed matrix), which
in-batch negatives cannot give at CPU batch sizes. The output is a sentence-transformers
dir with a Router: `encode_query` runs the tuned tower, `encode_document` the base one.
"""

from __future__ import annotations

import copy
import random
from dataclasses import replace
from pathlib import Path

from .loop import Loop, setup_torch, split_val
from .sentence import augment_query, embed, load_model, load_pairs
from .spec import Progress, TrainCfg, TrainResult
from .validate import pair_mrr


def train_query_side(cfg: TrainCfg, progress: Progress | None = None) -> TrainResult:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Router

    emit = progress or (lambda event: None)
    setup_torch(cfg)
    pairs = load_pairs(cfg)
    val, train_pairs = split_val(pairs, cfg)
    n_val = len(val)
    cache = Path(cfg.output_dir) / "checkpoints" / "documents.npy"

    base = load_model(cfg.base_model, None)
    own_length = base.max_seq_length  # the document tower keeps the base model's own cut-off
    base.max_seq_length = cfg.max_seq_length
    base.eval()
    if cache.exists():
        docs = np.load(cache, allow_pickle=False)
    else:
        emit({"event": "encode_documents", "count": len(pairs)})
        order = np.argsort([len(p.document) for p in pairs])  # length-sorted batches pad less
        vecs = base.encode([pairs[i].document for i in order], batch_size=64, normalize_embeddings=True)
        docs = np.empty_like(vecs)
        docs[order] = vecs
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, docs, allow_pickle=False)
    val_docs, train_docs = docs[:n_val], torch.from_numpy(docs[n_val:])

    query_model = copy.deepcopy(base)
    for name, param in query_model.named_parameters():
        if cfg.freeze_embeddings and "word_embeddings" in name:
            param.requires_grad_(False)
    trainable = [p for p in query_model.parameters() if p.requires_grad]

    def loss(indices: list[int], step: int):
        rng = random.Random(cfg.seed * 7919 + step)
        texts = [
            augment_query(train_pairs[i].query, rng) if rng.random() < cfg.augment else train_pairs[i].query
            for i in indices
        ]
        q = embed(query_model, texts, cfg.query_max_length)
        return F.cross_entropy(cfg.scale * q @ train_docs.T, torch.tensor(indices))

    def validate() -> float:
        query_model.eval()
        query_model.max_seq_length = cfg.query_max_length
        q = query_model.encode([p.query for p in val], batch_size=64, normalize_embeddings=True)
        return pair_mrr(q, val_docs)

    loop = Loop(
        cfg,
        query_model,
        torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=0.01),
        n_train=len(train_pairs),
        n_val=n_val,
        loss=loss,
        validate=validate,
        emit=emit,
    )
    result = replace(loop.run(), extra={"side": "query"})
    query_model.max_seq_length = cfg.query_max_length
    base.max_seq_length = own_length
    router = Router.for_query_document(query_modules=list(query_model), document_modules=list(base))
    SentenceTransformer(modules=[router], device="cpu").save(cfg.output_dir)
    return loop.finish(result)
