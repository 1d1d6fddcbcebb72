"""`text:` encoders through sentence-transformers, which owns pooling, prompts and truncation.

With an ONNX backend (`openvino`, the "auto" default for real checkpoints on CPU, or ONNX Runtime's
`onnx`) a plain Transformer + Pooling (+ Normalize) pipeline runs through the `code:` machinery
instead (hf.py `load_code`): same tokens, same pooling, no torch model in memory; once its files
are exported, not even torch or transformers are imported (exported/document.py). Anything richer
(Dense layers, prompt templates) stays on torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base import Encoder, EncoderCfg, EncoderConfigError, l2_normalize
from ..checkpoint import CodeModelInfo, prompt_prefixes, read_config, read_st_layout
from ..runtime.choose import BACKENDS, check_backend, pick_backend
from ..weights import resolve_model_dir
from .hf import load_code

if TYPE_CHECKING:
    from ..exported.card import QueryCard


def load_text(ident: str, cfg: EncoderCfg) -> SentenceEncoder:
    """`text:` factory."""
    return SentenceEncoder(ident, cfg)


class SentenceEncoder(Encoder):
    """A SentenceTransformer; `query=True` uses the model's query prompt when it defines one."""

    def __init__(self, ident: str, cfg: EncoderCfg, *, spec: str | None = None):
        check_backend(cfg.backend, BACKENDS, "text")
        model_dir = resolve_model_dir(ident)
        self.spec = spec or f"text:{ident}"
        self.cfg = cfg
        self._ident = ident
        self._dir = model_dir
        self._model: Any = None
        self._fast = _onnx_twin(ident, model_dir, cfg, self.spec)
        self.backend = self._fast.backend if self._fast is not None else "torch"
        self.dim = self._fast.dim if self._fast is not None else int(_dimension(self.model))

    @property
    def model(self) -> Any:
        """The SentenceTransformer, loaded on first use (never, while an ONNX twin serves encoding)."""
        if self._model is None:
            import torch
            from sentence_transformers import SentenceTransformer

            if self.cfg.threads:
                torch.set_num_threads(self.cfg.threads)
            model = SentenceTransformer(str(self._dir), device=self.cfg.device, local_files_only=True)
            if self.cfg.max_length:
                model.max_seq_length = min(self.cfg.max_length, model.max_seq_length or self.cfg.max_length)
            self._model = model
        return self._model

    def encode_text(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._fast is not None:
            return self._fast.encode_text(texts, query=query)
        import torch

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

    def export_query(self, folder: Path) -> QueryCard | None:
        """Query files through the ONNX twin (exported/export.py); None for pipelines it cannot reproduce."""
        twin = self._fast
        if twin is None:
            try:
                twin = _onnx_twin(self._ident, self._dir, replace(self.cfg, backend="onnx"), self.spec)
            except EncoderConfigError:
                return None
        return None if twin is None else twin.export_query(folder)

    def info(self) -> dict[str, Any]:
        if self._fast is not None:
            return {**super().info(), "max_length": self._fast.max_length}
        return {**super().info(), "max_length": self.model.max_seq_length}


def _onnx_twin(ident: str, model_dir: Path, cfg: EncoderCfg, spec: str) -> Encoder | None:
    """An ONNX-backed encoder equal to the pipeline, or None where torch must (or should) serve it."""
    if cfg.backend == "torch":
        return None
    try:
        prefixes = prompt_prefixes(model_dir)
        transformer_dir, _ = read_st_layout(model_dir, CodeModelInfo())
        config = read_config(transformer_dir)  # json, not transformers: this path may never import it
        backend = pick_backend(cfg.backend, f"{ident} {model_dir}", config, cfg.device)
        if backend == "torch":
            return None
        info = CodeModelInfo(query_prefix=prefixes[0], doc_prefix=prefixes[1])
        return load_code(ident, replace(cfg, backend=backend), spec=spec, info=info)
    except EncoderConfigError:
        if cfg.backend == "auto":
            return None  # a pipeline ONNX cannot reproduce: sentence-transformers serves it
        raise


def _dimension(model: Any) -> int:
    """The embedding width, under the method name of whichever sentence-transformers is installed."""
    for name in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
        method = getattr(model, name, None)
        if method is not None and method() is not None:
            return int(method())
    return int(model.encode([""], convert_to_numpy=True).shape[1])
