"""Models to vectors: `create_encoder("SCHEMA:MODEL")` -> an Encoder with unit float32 (n, dim) output.

Importing this package is cheap; torch, open_clip and transformers load when a model is built.
"""

from __future__ import annotations

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

__all__ = [
    "Encoder",
    "EncoderCfg",
    "EncoderConfigError",
    "EncoderError",
    "ModelSet",
    "ModelSetError",
    "UnknownEncoderError",
    "UnsupportedInputError",
    "WeightsNotFoundError",
    "create_encoder",
    "l2_normalize",
    "list_encoders",
    "list_model_sets",
    "parse_spec",
    "register_encoder",
    "resolve_model_set",
]
