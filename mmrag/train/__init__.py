"""Fine-tuning encoders on mined or supplied pairs: `mine_pairs` -> `train(TrainCfg)` -> a model dir."""

from __future__ import annotations

from .pairs import (
    ImagePair,
    Pair,
    mine_pairs,
    read_image_pairs_jsonl,
    read_pairs_jsonl,
    write_pairs_jsonl,
)
from .spec import TrainCfg, TrainResult
from .trainer import train
from .validate import pair_mrr

__all__ = [
    "ImagePair",
    "Pair",
    "TrainCfg",
    "TrainResult",
    "mine_pairs",
    "pair_mrr",
    "read_image_pairs_jsonl",
    "read_pairs_jsonl",
    "train",
    "write_pairs_jsonl",
]
