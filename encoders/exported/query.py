"""The query tower: text queries through a model's exported files, on ONNX Runtime and `tokenizers`.

Importing torch, transformers and open_clip costs seconds, more than the rest of a cold
`mmrag search`. So when a collection's encoders are loaded for indexing, each exports the part that
embeds text queries (CLIP's text tower; a code/text model's transformer) to ONNX and its tokenizer to
a tokenizer.json, with a `QueryCard` saying how to frame, pool and normalise (export.py). At search
time `LightEncoder` reads those files with onnxruntime, tokenizers and numpy only. Images, which
queries rarely hold, still go through the full encoder, loaded on demand.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base import Encoder, EncoderCfg, l2_normalize
from ..batching import frame_rows, length_sorted_batches, pad_rows, pool_np
from ..runtime.forward import OrtForward
from .card import QueryCard

if TYPE_CHECKING:
    from PIL import Image

SMALL_BATCH = 8  # up to this many texts run on one thread: fan-out costs more than it saves on a query


class LightEncoder(Encoder):
    """Text queries through the exported files; `encode_image` hands over to the full encoder."""

    def __init__(
        self, card: QueryCard, folder: Path, cfg: EncoderCfg, full: Callable[[], Encoder] | None = None
    ):
        self.card = card
        self.spec = card.spec
        self.dim = card.dim
        self.inputs = frozenset(card.inputs)
        self.cfg = cfg
        self.backend = "light"
        self._tokenizer_path = folder / card.tokenizer
        self._tokenizer: Any = None
        self._model_path = folder / card.model
        self._full = full
        self._sessions: dict[int, OrtForward] = {}
        self._split = _compile(card) if card.kind == "clip" else None

    @property
    def tokenizer(self) -> Any:
        """Read on first use: a query by image alone never needs it (CLIP's takes ~0.1 s to read)."""
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(str(self._tokenizer_path))
        return self._tokenizer

    def encode_text(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        prefix = self.card.query_prefix if query else self.card.doc_prefix
        texts = [prefix + t for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        forward = self._forward(len(texts))
        for idx in length_sorted_batches(texts, self.cfg.batch_size):
            batch = self.tokenize([texts[i] for i in idx])
            y = forward(batch)
            if self.card.kind == "pooled":
                y = pool_np(y, batch["attention_mask"], self.card.pooling)
            out[idx] = l2_normalize(y)
        return out

    def rows(self, texts: Sequence[str]) -> list[list[int]]:
        """Framed, cut, unpadded token ids: what the full encoder's tokenizer gives (card checked)."""
        card = self.card
        if card.kind == "clip":
            words = [self._split.findall(clip_clean(t)) for t in texts]
            bodies = [e.ids for e in self.tokenizer.encode_batch(words, is_pretokenized=True)]
        else:
            if card.lowercase:
                texts = [t.lower() for t in texts]
            bodies = [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]
        return frame_rows(bodies, card.lead, card.trail, card.max_length, card.truncation_side)

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """int64 ids framed by lead/trail, cut to max_length, padded: the full encoder's exact input."""
        card = self.card
        width = None if card.kind != "clip" or card.trim else card.max_length
        batch = pad_rows(self.rows(texts), card.pad_id, width)
        return {**batch, "text": batch["input_ids"]}

    def encode_image(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Through the full encoder of the same spec (this loads torch): images need the image tower."""
        if self._full is None or "image" not in self.inputs:
            return super().encode_image(images)  # raises UnsupportedInputError
        return self._full().encode_image(images)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "max_length": self.card.max_length}

    def _forward(self, n: int) -> OrtForward:
        """A session per thread count: one thread for a query, the configured count for big batches.

        Opened from the optimised copy kept beside the file (runtime/forward.py): CLIP ViT-B-32-256's
        text tower opened in 0.30 s instead of 1.04 s, which every cold text query pays (busy machine).
        """
        threads = 1 if n <= SMALL_BATCH else (self.cfg.threads or os.cpu_count() or 1)
        if threads not in self._sessions:
            self._sessions[threads] = OrtForward(self._model_path, threads, keep_optimised=True)
        return self._sessions[threads]


# --- CLIP's text cleaning, as open_clip's `_clean_lower` ------------------------------------


def _compile(card: QueryCard) -> Any:
    import regex

    return regex.compile(card.split_pattern, card.split_flags)


def clip_clean(text: str) -> str:
    """ftfy, HTML entities twice, whitespace runs to one space, lower case: open_clip's 'lower' clean.

    ftfy (0.1 s to import) leaves printable ASCII without '&' as it is, so such text skips it.
    """
    if not _PLAIN_ASCII.fullmatch(text):
        import ftfy

        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).strip().lower()


# printable ASCII but '&', plus tab, newline and form feed: every character ftfy keeps unchanged
_PLAIN_ASCII = re.compile(r"[\t\n\x0c\x20-\x25\x27-\x7e]*")
