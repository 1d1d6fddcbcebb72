"""Contrastive fine-tuning of a text/code encoder on (query, document) pairs.

Each batch of B pairs (the shared loop is mmrag/train/loop.py) gives a B x B similarity
matrix whose diagonal holds the positives and whose other entries are in-batch negatives
(the MultipleNegativesRanking loss of sentence-transformers). The result is a
sentence-transformers directory, so `text:/dir` and `code:/dir` load it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrag.train.views import code_view

from ..errors import ConfigError
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

    from .loop import Loop, split_val

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
        q = _embed(model, queries, cfg.query_max_length)
        d = _embed(model, [p.document for p in batch], cfg.max_seq_length)
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


def setup_torch(cfg: TrainCfg) -> None:
    """Threads and seed, the same for every kind of run."""
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)


def _validate(model, val: list[Pair], cfg: TrainCfg) -> float:
    model.eval()
    model.max_seq_length = cfg.max_seq_length
    docs = model.encode([p.document for p in val], batch_size=64, normalize_embeddings=True)
    model.max_seq_length = cfg.query_max_length
    queries = model.encode([p.query for p in val], batch_size=64, normalize_embeddings=True)
    model.max_seq_length = cfg.max_seq_length
    return pair_mrr(queries, docs)
