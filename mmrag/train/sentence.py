"""The sentence-transformers side of fine-tuning, shared by the two-tower and the query-side runs:
the pairs a run trains on, the web-search rewrite of queries, loading a model, embedding with gradients."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .pairs import Pair, mine_pairs, read_pairs_jsonl
from .spec import TrainCfg
from .views import code_view

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


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


def embed(model: SentenceTransformer, texts: Sequence[str], max_len: int):
    """Unit vectors of texts cut at max_len tokens, with gradients (encode() has none)."""
    import torch.nn.functional as F

    model.max_seq_length = max_len
    prepare = getattr(model, "preprocess", None) or model.tokenize  # `tokenize` is deprecated in ST >= 6
    features = prepare(list(texts))
    return F.normalize(model(features)["sentence_embedding"], dim=-1)
