"""What a fine-tuning run is given and what it gives back: one set of types for every kind of run
(two-tower text/code, query tower only, CLIP), so the runs and their shared loop import only this."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    doc_view: str = "raw"  # mmrag.train.views code view applied to documents (and to be used at index time)
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
