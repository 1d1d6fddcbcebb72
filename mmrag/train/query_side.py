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
import json
import random
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from .validate import pair_mrr

if TYPE_CHECKING:
    from .trainer import Progress, TrainCfg, TrainResult


def train_query_side(cfg: TrainCfg, progress: Progress | None = None) -> TrainResult:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Router

    from .trainer import TrainResult, _embed, _lr_at, _save_checkpoint, augment_query, load_model, load_pairs

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
    cache = out / "checkpoints" / "documents.npy"

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
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=0.01)
    step = 0
    if cfg.resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=True, map_location="cpu")
        query_model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        emit({"event": "resume", "step": step, "checkpoint": str(ckpt)})
    start_step = step
    emit({"event": "start", "pairs_train": len(train_pairs), "pairs_val": len(val), "steps": total})

    def validate() -> float:
        query_model.eval()
        query_model.max_seq_length = cfg.query_max_length
        q = query_model.encode([p.query for p in val], batch_size=64, normalize_embeddings=True)
        return pair_mrr(q, val_docs)

    before = validate() if val and step == 0 else float("nan")
    emit({"event": "validate", "epoch": 0, "val_mrr": before})
    history: list[float] = []
    stop = min(total, cfg.max_steps if cfg.max_steps is not None else total)
    while step < stop:
        epoch = step // steps_per_epoch
        order = list(range(len(train_pairs)))
        random.Random(cfg.seed * 1000 + epoch).shuffle(order)
        query_model.train()
        for b in range(step % steps_per_epoch, steps_per_epoch):
            if step >= stop:
                break
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            rng = random.Random(cfg.seed * 7919 + step)
            texts = [
                augment_query(train_pairs[i].query, rng)
                if rng.random() < cfg.augment
                else train_pairs[i].query
                for i in idx
            ]
            q = _embed(query_model, texts, cfg.query_max_length)
            loss = F.cross_entropy(cfg.scale * q @ train_docs.T, torch.tensor(idx))
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, total, cfg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            step += 1
            if step % 10 == 0 or step == 1:
                emit({"event": "step", "step": step, "loss": float(loss.detach())})
            if step % cfg.checkpoint_every == 0 or step == stop:
                _save_checkpoint(ckpt, query_model, optimizer, step)
        if step % steps_per_epoch == 0 and val:
            history.append(validate())
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
        extra={"side": "query"},
    )
    query_model.max_seq_length = cfg.query_max_length
    base.max_seq_length = own_length
    router = Router.for_query_document(query_modules=list(query_model), document_modules=list(base))
    SentenceTransformer(modules=[router], device="cpu").save(str(out))
    record = {"config": asdict(cfg), "result": asdict(result)}
    record["result"]["val_mrr_before"] = None if before != before else before  # NaN is not JSON
    (out / "mmrag_train.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if finished:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    emit({"event": "done", "output_dir": str(out), "val_mrr": history, "finished": finished})
    return result
