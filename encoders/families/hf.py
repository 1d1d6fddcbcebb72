"""`code:` encoders: a transformers encoder (CodeBERT family, any BERT/RoBERTa) plus pooling.

How a checkpoint wants its input framed and pooled is data (checkpoint.py `KNOWN_CODE_MODELS`),
read for hub ids and for local copies alike; a sentence-transformers directory's own pooling config
wins over the defaults. `cfg.backend` picks torch or an ONNX runtime (runtime/choose.py); with an
ONNX backend and a cached export the torch model is never loaded, and once the query card exists
too, the document tower serves without transformers (exported/towers.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_text
from ..base import Encoder, EncoderCfg
from ..batching import encode_rows, frame_rows, pad_rows
from ..checkpoint import CodeModelInfo, known_info, read_config, read_st_layout
from ..exported.card import QueryCard
from ..exported.towers import document_tower
from ..runtime.choose import BACKENDS, ONNX_BACKENDS, check_backend, make_forward, pick_backend
from ..runtime.forward import Forward, torch_forward
from ..runtime.onnx import ensure_onnx
from ..weights import resolve_model_dir


def load_code(
    ident: str, cfg: EncoderCfg, *, spec: str | None = None, info: CodeModelInfo | None = None
) -> Encoder:
    """A pooled transformer encoder: its exported document tower where one fits, else `HFEncoder`.

    Also the engine of `text:` pipelines that ONNX reproduces (sentence.py) and of `tiny-code:`.
    """
    check_backend(cfg.backend, BACKENDS, "code")
    model_dir = resolve_model_dir(ident)
    info = info or known_info(ident) or known_info(str(model_dir)) or CodeModelInfo()
    transformer_dir, info = read_st_layout(model_dir, info)
    spec = spec or f"code:{ident}"
    # json, not transformers: the document tower's path never imports it
    backend = pick_backend(cfg.backend, f"{ident} {model_dir}", read_config(transformer_dir), cfg.device)
    tower = document_tower(spec, transformer_dir, backend, cfg, (info.query_prefix, info.doc_prefix))
    return tower if tower is not None else HFEncoder(spec, cfg, transformer_dir, info, backend)


class HFEncoder(Encoder):
    """A transformers encoder with pooling; reads the same way for hub ids, cache and local dirs."""

    def __init__(self, spec: str, cfg: EncoderCfg, transformer_dir: Path, info: CodeModelInfo, backend: str):
        from transformers import AutoConfig, AutoTokenizer

        self.spec = spec
        self.cfg = cfg
        self.info_ = info
        self.tokenizer = AutoTokenizer.from_pretrained(str(transformer_dir))
        self.config = AutoConfig.from_pretrained(str(transformer_dir))
        self.dim = int(self.config.hidden_size)
        self.max_length = self._max_length(cfg.max_length)
        self.lead, self.trail = self._frame()
        self.backend = backend
        self._transformer_dir = transformer_dir
        self._model: Any = None
        if self.backend in ONNX_BACKENDS:
            load = (
                self._eager_model if self.backend == "openvino" else lambda: self._load_torch(threads=False)
            )
            path = ensure_onnx(transformer_dir, self.backend, load)
            self._forward: Forward = make_forward(path, self.backend, cfg.threads)
        else:
            self._forward = torch_forward(self._load_torch())

    @property
    def model(self) -> Any:
        """The torch model (loaded on first use when an ONNX backend serves encoding)."""
        return self._model if self._model is not None else self._load_torch()

    def _load_torch(self, threads: bool = True) -> Any:
        import torch
        from transformers import AutoModel

        if threads and self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        if self._model is None:
            model = AutoModel.from_pretrained(str(self._transformer_dir))
            self._model = model.to(self.cfg.device).eval()
        return self._model

    def _eager_model(self) -> Any:
        """The checkpoint with plain (eager) attention, for OpenVINO's export: a MatMul-Softmax-MatMul
        graph, which OpenVINO fuses, where the SDPA export adds NaN guards around the softmax."""
        from transformers import AutoModel

        return AutoModel.from_pretrained(str(self._transformer_dir), attn_implementation="eager").eval()

    def encode_text(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        """All texts tokenized in one call, then batched by token length (encoders/batching.py)."""
        prefix = self.info_.query_prefix if query else self.info_.doc_prefix
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = self.rows([prefix + t for t in texts])
        pad = int(self.tokenizer.pad_token_id or 0)
        return encode_rows(
            rows,
            self._forward,
            pooling=self.info_.pooling,
            dim=self.dim,
            pad_id=pad,
            batch_size=self.cfg.batch_size,
        )

    def rows(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids framed by the model's lead/trail tokens and cut at its true limit, unpadded."""
        if self.info_.lowercase:
            texts = [t.lower() for t in texts]
        budget = self.max_length - len(self.lead) - len(self.trail)
        bodies = self.tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=budget)
        return frame_rows(bodies["input_ids"], self.lead, self.trail, self.max_length)

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """int64 token ids framed by the model's lead/trail tokens, cut at its true limit, padded."""
        return pad_rows(self.rows(texts), int(self.tokenizer.pad_token_id or 0))

    def info(self) -> dict[str, Any]:
        return {**super().info(), "pooling": self.info_.pooling, "max_length": self.max_length}

    def export_query(self, folder: Path) -> QueryCard | None:
        """The fp32 ONNX export (shared with the `onnx` backend) plus tokenizer.json (exported/query.py).

        None where the files would not reproduce this encoder under default settings: a caller's
        max_length, or an export folder other than the one `folder` names.
        """
        from tokenizers import Tokenizer

        if self.cfg.max_length is not None:
            return None
        path = ensure_onnx(self._transformer_dir, "onnx", self._cpu_model)
        if path.parent != folder:
            return None
        tok = Tokenizer.from_str(self.tokenizer.backend_tokenizer.to_str())
        tok.no_padding()
        tok.no_truncation()  # the card's max_length and truncation side cut, after lead and trail
        write_text(folder / "tokenizer.json", tok.to_str())
        return QueryCard(
            spec=self.spec,
            kind="pooled",
            dim=self.dim,
            max_length=self.max_length,
            lead=tuple(int(i) for i in self.lead),
            trail=tuple(int(i) for i in self.trail),
            pad_id=int(self.tokenizer.pad_token_id or 0),
            truncation_side=str(getattr(self.tokenizer, "truncation_side", "right")),
            pooling=self.info_.pooling,
            query_prefix=self.info_.query_prefix,
            doc_prefix=self.info_.doc_prefix,
            lowercase=self.info_.lowercase,
        )

    def _cpu_model(self) -> Any:
        """The torch model on CPU, where the exporter traces it."""
        if self.cfg.device == "cpu":
            return self._load_torch(threads=False)
        from transformers import AutoModel

        return AutoModel.from_pretrained(str(self._transformer_dir)).eval()

    def _max_length(self, requested: int | None) -> int:
        """The smallest of: the caller's cut, the model card's, the tokenizer's, the position table."""
        config = self.config
        positions = getattr(config, "max_position_embeddings", 512)
        if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
            positions -= (config.pad_token_id or 0) + 1  # RoBERTa positions start after padding_idx
        limits = [positions, self.tokenizer.model_max_length, self.info_.max_length, requested]
        return int(min(x for x in limits if x and x < 1_000_000))

    def _frame(self) -> tuple[list[int], list[int]]:
        """Lead and trail token ids: from the model info, else the tokenizer's own special tokens."""
        tok = self.tokenizer
        if self.info_.lead is not None or self.info_.trail is not None:
            names = {"{cls}": tok.cls_token, "{sep}": tok.sep_token}

            def ids(tokens: tuple[str, ...] | None) -> list[int]:
                return [tok.convert_tokens_to_ids(names.get(t, t)) for t in tokens or ()]

            return ids(self.info_.lead), ids(self.info_.trail)
        body = tok("a", add_special_tokens=False)["input_ids"]
        full = tok("a", add_special_tokens=True)["input_ids"]
        for start in range(len(full) - len(body) + 1):
            if full[start : start + len(body)] == body:
                return full[:start], full[start + len(body) :]
        return [], []
