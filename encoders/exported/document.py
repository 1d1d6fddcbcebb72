"""The document tower: a code/text model's documents without torch or transformers.

The first `mmrag index` with a model exports its transformer for the document runtime
(runtime/onnx.py) and its query card and tokenizer.json (export.py). Later runs read those files
only: `tokenizers` frames and cuts the texts as the card says, the document runtime computes token
states, and queries go through the query tower. Importing torch, transformers and
sentence-transformers cost ~5 s of every indexing process before this.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..base import Encoder, EncoderCfg
from ..batching import encode_rows
from ..runtime.choose import make_forward
from .card import QueryCard
from .query import LightEncoder


class DocEncoder(Encoder):
    """Texts to vectors through a backend's exported file, framed by a query card."""

    def __init__(self, card: QueryCard, folder: Path, doc_model: Path, backend: str, cfg: EncoderCfg):
        self.spec = card.spec
        self.dim = card.dim
        self.cfg = cfg
        self.backend = backend
        self.card = card
        self.max_length = card.max_length
        self.light = LightEncoder(card, folder, cfg)  # its tokenizer, and the query side
        self._forward = make_forward(doc_model, backend, cfg.threads)

    def encode_text(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        if query:
            return self.light.encode_text(texts, query=True)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = self.rows([self.card.doc_prefix + t for t in texts])
        card = self.card
        return encode_rows(
            rows,
            self._forward,
            pooling=card.pooling,
            dim=self.dim,
            pad_id=card.pad_id,
            batch_size=self.cfg.batch_size,
        )

    def rows(self, texts: Sequence[str]) -> list[list[int]]:
        """Framed, cut, unpadded token ids: what the full encoder's tokenizer gives (card checked)."""
        return self.light.rows(texts)

    def export_query(self, folder: Path) -> QueryCard | None:
        return self.card  # built from the query files: they exist

    def info(self) -> dict[str, Any]:
        """What the full encoder of the spec records (code: its pooling too)."""
        return {**super().info(), "pooling": self.card.pooling, "max_length": self.max_length}
