"""What a checkpoint folder says about itself, read as data, without torch or transformers.

Known models (how a checkpoint wants its input framed and pooled), the sentence-transformers folder
layout (modules.json, 1_Pooling/config.json, sentence_bert_config.json, prompts), the config fields
that choosing a runtime reads, and where the built-in tiny checkpoints live. A sentence-transformers
folder's own pooling config wins over the known defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .base import EncoderConfigError
from .batching import POOLINGS
from .weights import mmrag_cache_dir


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


# --- the sentence-transformers folder layout --------------------------------------------------


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
                info, pooling=st_pooling(json.loads((model_dir / mod["path"] / "config.json").read_text()))
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


def st_pooling(cfg: dict[str, Any]) -> str:
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


def prompt_prefixes(model_dir: Path) -> tuple[str, str]:
    """(query, document) prompt prefixes; raises where prompts go beyond plain query/document ones."""
    path = model_dir / "config_sentence_transformers.json"
    cfg = json.loads(path.read_text()) if path.is_file() else {}
    prompts = cfg.get("prompts") or {}
    extra = sorted(set(prompts) - {"query", "document"})
    if extra or cfg.get("default_prompt_name"):
        raise EncoderConfigError(
            f"{model_dir} defines prompts {sorted(prompts)}; only query/document are read"
        )
    return prompts.get("query", ""), prompts.get("document", "")


def read_config(transformer_dir: Path) -> SimpleNamespace:
    """The fields of config.json that choosing a runtime reads (hidden_size), read as plain JSON."""
    path = transformer_dir / "config.json"
    try:
        config = SimpleNamespace(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as err:
        raise EncoderConfigError(f"Cannot read the model config {path}: {err}") from err
    if not getattr(config, "hidden_size", None):  # DistilBERT says dim, T5-style configs d_model
        config.hidden_size = getattr(config, "dim", None) or getattr(config, "d_model", 0)
    return config


# --- the built-in tiny checkpoints (families/tiny.py builds them) -------------------------------

LAYOUT_VERSION = 2  # bump when a tiny config changes, so stale cache dirs are not reused
WIDTH = 64  # wide enough for distinct vectors, small enough to build and run in milliseconds
TINY_CLIP_CFG: dict[str, Any] = {
    "embed_dim": WIDTH,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": WIDTH, "head_width": 32, "patch_size": 16},
    # vocab and context match open_clip's bundled BPE tokenizer, so no tokenizer download
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": WIDTH, "heads": 2, "layers": 2},
}


def parse_seed(ident: str, schema: str) -> int:
    try:
        return int(ident or 0)
    except ValueError:
        raise EncoderConfigError(f"{schema}:{ident!r} needs an integer seed, e.g. {schema}:0") from None


def tiny_dir(schema: str, seed: int) -> Path:
    """Where the checkpoint of `schema` (tiny-code, tiny-text) and `seed` lives; it may not exist yet."""
    return mmrag_cache_dir() / "tiny" / f"{schema}-v{LAYOUT_VERSION}-seed{seed}"
