"""Framed token rows to unit vectors: each distinct row once, in batches of like token lengths.

Padding is per batch, so sorting by chars (what sentence-transformers does) still pads a batch to
its longest member; sorting the true token counts of the whole call wastes almost nothing (CoSQA,
3,000 functions, batch 32: 99% of computed positions are real tokens, against 75% sorted by chars
and 63% sorted by chars within the indexer's former 128-item commits). Identical rows (the same
text, or texts equal up to the token cut) are computed once. A row's vector does not depend on its
batch-mates beyond the runtime's float rounding (masked positions weigh nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .hf import pool_np

Forward = Callable[[dict[str, np.ndarray]], np.ndarray]  # {input_ids, attention_mask} -> (b, t, d)


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int) -> dict[str, np.ndarray]:
    """int64 ids padded to the longest row, and the mask of real positions."""
    width = max((len(r) for r in rows), default=0)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def encode_rows(
    rows: Sequence[Sequence[int]], forward: Forward, *, pooling: str, dim: int, pad_id: int, batch_size: int
) -> np.ndarray:
    """(n, dim) float32 unit vectors, one per row, in the order given."""
    distinct: dict[tuple[int, ...], int] = {}
    inverse = np.array([distinct.setdefault(tuple(r), len(distinct)) for r in rows], dtype=np.int64)
    unique = list(distinct)
    order = np.argsort([-len(r) for r in unique], kind="stable")
    out = np.zeros((len(unique), dim), dtype=np.float32)
    for start in range(0, len(order), max(1, batch_size)):
        idx = order[start : start + max(1, batch_size)]
        batch = pad_rows([unique[i] for i in idx], pad_id)
        pooled = pool_np(forward(batch), batch["attention_mask"], pooling)
        out[idx] = pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
    return out[inverse] if len(rows) else out
