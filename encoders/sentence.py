"""`text:` encoders through sentence-transformers, which owns pooling, prompts and truncation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import Encoder, EncoderCfg, EncoderConfigError, l2_normalize
from .weights import resolve_model_dir

BACKENDS = ("auto", "torch")


class SentenceEncoder(Encoder):
    """A SentenceTransformer; `query=True` uses the model's query prompt when it defines one."""

    def __init__(self, ident: str, cfg: EncoderCfg, *, spec: str | None = None):
        import torch
        from sentence_transformers import SentenceTransformer

        if cfg.backend not in BACKENDS:
            raise EncoderConfigError(f"Unknown backend {cfg.backend!r} for text encoders; valid: {BACKENDS}")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        model_dir = resolve_model_dir(ident)
        self.spec = spec or f"text:{ident}"
        self.cfg = cfg
        self.model = SentenceTransformer(str(model_dir), device=cfg.device, local_files_only=True)
        if cfg.max_length:
            self.model.max_seq_length = min(cfg.max_length, self.model.max_seq_length or cfg.max_length)
        self.dim = int(_dimension(self.model))

    def encode_text(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encode = self.model.encode_query if query else self.model.encode_document
        with torch.inference_mode():
            vectors = encode(  # sorts by length internally and restores the order
                list(texts),
                batch_size=self.cfg.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return l2_normalize(vectors)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "max_length": self.model.max_seq_length}


def _dimension(model: Any) -> int:
    """The embedding width, under the method name of whichever sentence-transformers is installed."""
    for name in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
        method = getattr(model, name, None)
        if method is not None and method() is not None:
            return int(method())
    return int(model.encode([""], convert_to_numpy=True).shape[1])
