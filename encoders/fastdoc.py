"""Documents of a code/text model without torch or transformers, once its files are exported.

The first `mmrag index` with a model exports its transformer (encoders/onnx.py) and its query card
and tokenizer.json (encoders/light.py). Later runs read those files only: `tokenizers` frames and
cuts the texts as the card says, the document runtime (OpenVINO) computes token states, and queries
go through the light query encoder. Importing torch, transformers and sentence-transformers cost
~5 s of every indexing process before this.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import Encoder, EncoderCfg
from .batching import encode_rows
from .light import LightEncoder, QueryCard, _cut, find_card
from .onnx import make_forward, onnx_file


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
        card = self.card
        if card.lowercase:
            texts = [t.lower() for t in texts]
        encoded = self.light.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        budget = max(0, card.max_length - len(card.lead) - len(card.trail))
        return [[*card.lead, *_cut(e.ids, budget, card.truncation_side), *card.trail] for e in encoded]

    def export_query(self, folder: Path) -> QueryCard | None:
        return self.card  # built from the query files: they exist

    def info(self) -> dict[str, Any]:
        return {**super().info(), "max_length": self.max_length}


def load_doc_encoder(
    spec: str, transformer_dir: Path, backend: str, cfg: EncoderCfg, prefixes: tuple[str, str]
) -> DocEncoder | None:
    """The torch-free encoder when every file it needs exists and matches; None: build the full one."""
    if cfg.max_length is not None or cfg.device != "cpu":
        return None
    found = find_card(spec)
    doc_model = onnx_file(transformer_dir, backend)
    if found is None or not doc_model.is_file():
        return None
    card, folder = found
    if card.kind != "pooled" or (card.query_prefix, card.doc_prefix) != prefixes:
        return None
    return DocEncoder(card, folder, doc_model, backend, cfg)
