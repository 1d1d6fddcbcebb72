"""Models to vectors: `create_encoder("SCHEMA:MODEL")` -> an Encoder with unit float32 (n, dim) output.

Importing this package is cheap; torch, open_clip and transformers load when a model is built.
These names are the package's public surface: mmrag reaches encoders through them only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .base import (
    Encoder,
    EncoderCfg,
    EncoderConfigError,
    EncoderError,
    ModelSetError,
    UnknownEncoderError,
    UnsupportedInputError,
    WeightsNotFoundError,
    l2_normalize,
)
from .modelsets import ModelSet, list_model_sets, resolve_model_set
from .registry import create_encoder, list_encoders, parse_spec, register_encoder

if TYPE_CHECKING:
    from .families.clip import CACHE_PROBES, ClipEncoder
    from .families.tiny import tiny_text_dir
    from .locate import ModelLocation, locate
    from .roles import create_query_encoder, export_towers
    from .weights import mmrag_cache_dir, resolve_model_dir

# imported on first use: `mmrag search` starts by importing this package, and needs none of them
# before a query is embedded
_LAZY = {
    "CACHE_PROBES": "families.clip",
    "ClipEncoder": "families.clip",
    "tiny_text_dir": "families.tiny",
    "ModelLocation": "locate",
    "locate": "locate",
    "create_query_encoder": "roles",
    "export_towers": "roles",
    "mmrag_cache_dir": "weights",
    "resolve_model_dir": "weights",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "CACHE_PROBES",
    "ClipEncoder",
    "Encoder",
    "EncoderCfg",
    "EncoderConfigError",
    "EncoderError",
    "ModelLocation",
    "ModelSet",
    "ModelSetError",
    "UnknownEncoderError",
    "UnsupportedInputError",
    "WeightsNotFoundError",
    "create_encoder",
    "create_query_encoder",
    "export_towers",
    "l2_normalize",
    "list_encoders",
    "list_model_sets",
    "locate",
    "mmrag_cache_dir",
    "parse_spec",
    "register_encoder",
    "resolve_model_dir",
    "resolve_model_set",
    "tiny_text_dir",
]
