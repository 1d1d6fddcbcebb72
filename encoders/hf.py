"""`code:` encoders: a transformers encoder (CodeBERT family, any BERT/RoBERTa) plus pooling.

How a checkpoint wants its input framed and pooled is data (`KNOWN_CODE_MODELS`), read for
hub ids and for local copies alike; a sentence-transformers directory's own pooling config
(modules.json, 1_Pooling/config.json, sentence_bert_config.json) wins over the defaults.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import Encoder, EncoderCfg, EncoderConfigError
from .onnx import BACKENDS, ONNX_BACKENDS, ensure_onnx, make_forward, pick_backend
from .weights import resolve_model_dir

if TYPE_CHECKING:
    import torch

    from .light import QueryCard

POOLINGS = ("mean", "cls", "max", "mean_sqrt_len_tokens")


@dataclass(frozen=True)
class CodeModelInfo:
    """How one checkpoint frames its input and pools its tokens into one vector."""

    pooling: str = "mean"  # mean pooling is what CodeBERT-family retrieval papers report
    lead: tuple[str, ...] | None = None  # tokens before the text; None: the tokenizer's own specials
    trail: tuple[str, ...] | None = None  # tokens after the text; "{cls}"/"{sep}" name the tokenizer's
    max_length: int | None = None  # None: the tokenizer's and the position table's limit
    query_prefix: str = ""
    doc_prefix: str = ""
    lowercase: bool = False


KNOWN_CODE_MODELS: dict[str, CodeModelInfo] = {
    # UniXcoder's encoder-only mode, as in its reference wrapper (unixcoder.py), which cuts at 512
    "microsoft/unixcoder-base": CodeModelInfo(
        lead=("{cls}", "<encoder-only>", "{sep}"), trail=("{sep}",), max_length=512
    ),
    "microsoft/codebert-base": CodeModelInfo(pooling="mean"),
    "microsoft/graphcodebert-base": CodeModelInfo(pooling="mean"),
}


def known_info(model_id: str) -> CodeModelInfo | None:
    """Match a hub id, a local copy named like it, or an HF cache path (models--org--name)."""
    if model_id in KNOWN_CODE_MODELS:
        return KNOWN_CODE_MODELS[model_id]
    parts = Path(model_id).parts
    for key, info in KNOWN_CODE_MODELS.items():
        if "models--" + key.replace("/", "--") in parts or (parts and parts[-1] == key.split("/")[-1]):
            return info
    return None


def read_st_layout(model_dir: Path, info: CodeModelInfo) -> tuple[Path, CodeModelInfo]:
    """For a sentence-transformers directory: where the transformer lives and its pooling/limits."""
    modules_file = model_dir / "modules.json"
    if not modules_file.is_file():
        return model_dir, info
    modules = json.loads(modules_file.read_text())
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    unsupported = [k for k in kinds if k not in ("Transformer", "Pooling", "Normalize")]
    if unsupported or not kinds or kinds[0] != "Transformer":
        raise EncoderConfigError(
            f"{model_dir} is a sentence-transformers pipeline {kinds}; `code:` reads Transformer + "
            f"Pooling (+ Normalize) only, load it with `text:{model_dir}` instead"
        )
    transformer_dir = model_dir / modules[0].get("path", "")
    for mod, kind in zip(modules, kinds):
        if kind == "Pooling":
            info = replace(
                info, pooling=_st_pooling(json.loads((model_dir / mod["path"] / "config.json").read_text()))
            )
    st_cfg = transformer_dir / "sentence_bert_config.json"
    if not st_cfg.is_file():
        st_cfg = model_dir / "sentence_bert_config.json"
    if st_cfg.is_file():
        cfg = json.loads(st_cfg.read_text())
        info = replace(
            info,
            max_length=cfg.get("max_seq_length") or info.max_length,
            lowercase=bool(cfg.get("do_lower_case", info.lowercase)),
        )
    return transformer_dir, info


def _st_pooling(cfg: dict[str, Any]) -> str:
    """The one pooling mode of a 1_Pooling/config.json, old (bool flags) or new (`pooling_mode`)."""
    if "pooling_mode" in cfg:
        modes = cfg["pooling_mode"]
        modes = [modes] if isinstance(modes, str) else list(modes)
    else:
        flags = {"cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max"}
        flags["mean_sqrt_len_tokens"] = "mean_sqrt_len_tokens"
        modes = [name for key, name in flags.items() if cfg.get(f"pooling_mode_{key}")]
        modes += [k for k in ("weightedmean_tokens", "lasttoken") if cfg.get(f"pooling_mode_{k}")]
    if len(modes) != 1 or modes[0] not in POOLINGS:
        raise EncoderConfigError(f"Unsupported sentence-transformers pooling {modes}; valid: {POOLINGS}")
    return modes[0]


def pool(tokens: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """(b, t, d) token states and (b, t) mask -> (b, d) sentence vectors."""
    import torch

    if mode == "cls":
        return tokens[:, 0]
    m = mask.unsqueeze(-1).to(tokens.dtype)
    if mode == "max":
        return tokens.masked_fill(m == 0, torch.finfo(tokens.dtype).min).max(dim=1).values
    summed = (tokens * m).sum(dim=1)
    counts = m.sum(dim=1).clamp(min=1e-9)
    if mode == "mean":
        return summed / counts
    if mode == "mean_sqrt_len_tokens":
        return summed / counts.sqrt()
    raise EncoderConfigError(f"Unknown pooling {mode!r}; valid: {POOLINGS}")


def length_sorted_batches(texts: Sequence[str], batch_size: int) -> list[np.ndarray]:
    """Index batches, longest texts first: padding is per batch, so like lengths batch together."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), max(1, batch_size))]


def build_forward(model: Any, backend: str) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """The torch token-states function: int64 id/mask arrays in, (b, t, d) float32 states out.

    ONNX backends do not come through here: they need the checkpoint directory (see HFEncoder).
    """
    if backend not in ("auto", "torch"):
        raise EncoderConfigError(f"Unknown backend {backend!r} for torch forward; valid: ('auto', 'torch')")
    import torch

    device = next(model.parameters()).device

    def forward(batch: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            feeds = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
            return model(**feeds).last_hidden_state.float().cpu().numpy()

    return forward


def pool_np(tokens: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """numpy twin of `pool`: (b, t, d) states and (b, t) mask -> (b, d)."""
    if mode == "cls":
        return tokens[:, 0]
    m = mask[..., None].astype(tokens.dtype)
    if mode == "max":
        return np.where(m > 0, tokens, np.finfo(tokens.dtype).min).max(axis=1)
    summed = (tokens * m).sum(axis=1)
    counts = np.maximum(m.sum(axis=1), 1e-9)
    if mode == "mean":
        return summed / counts
    if mode == "mean_sqrt_len_tokens":
        return summed / np.sqrt(counts)
    raise EncoderConfigError(f"Unknown pooling {mode!r}; valid: {POOLINGS}")


class HFEncoder(Encoder):
    """A transformers encoder with pooling; reads the same way for hub ids, cache and local dirs.

    `cfg.backend` picks torch or ONNX Runtime (fp32 or int8); with ONNX and a cached export the
    torch model is never loaded.
    """

    def __init__(
        self, ident: str, cfg: EncoderCfg, *, spec: str | None = None, info: CodeModelInfo | None = None
    ):
        from transformers import AutoConfig, AutoTokenizer

        if cfg.backend not in BACKENDS:
            raise EncoderConfigError(f"Unknown backend {cfg.backend!r} for code encoders; valid: {BACKENDS}")
        model_dir = resolve_model_dir(ident)
        info = info or known_info(ident) or known_info(str(model_dir)) or CodeModelInfo()
        transformer_dir, info = read_st_layout(model_dir, info)
        self.spec = spec or f"code:{ident}"
        self.cfg = cfg
        self.info_ = info
        self.tokenizer = AutoTokenizer.from_pretrained(str(transformer_dir))
        self.config = AutoConfig.from_pretrained(str(transformer_dir))
        self.dim = int(self.config.hidden_size)
        self.max_length = self._max_length(cfg.max_length)
        self.lead, self.trail = self._frame()
        self.backend = pick_backend(cfg.backend, f"{ident} {model_dir}", self.config, cfg.device)
        self._transformer_dir = transformer_dir
        self._model: Any = None
        if self.backend in ONNX_BACKENDS:
            load = (
                self._eager_model if self.backend == "openvino" else lambda: self._load_torch(threads=False)
            )
            path = ensure_onnx(transformer_dir, self.backend, load)
            self._forward: Callable[[dict[str, np.ndarray]], np.ndarray] = make_forward(
                path, self.backend, cfg.threads
            )
        else:
            self._forward = build_forward(self._load_torch(), "torch")

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
        from .batching import encode_rows

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
        return [self.lead + ids + self.trail for ids in bodies["input_ids"]]

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """int64 token ids framed by the model's lead/trail tokens, cut at its true limit, padded."""
        from .batching import pad_rows

        return pad_rows(self.rows(texts), int(self.tokenizer.pad_token_id or 0))

    def info(self) -> dict[str, Any]:
        return {**super().info(), "pooling": self.info_.pooling, "max_length": self.max_length}

    def export_query(self, folder: Path) -> QueryCard | None:
        """The fp32 ONNX export (shared with the `onnx` backend) plus tokenizer.json, for encoders/light.py.

        None where the files would not reproduce this encoder under default settings: a caller's
        max_length, or an export folder other than the one `folder` names.
        """
        from tokenizers import Tokenizer

        from .light import QueryCard, write_text

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
