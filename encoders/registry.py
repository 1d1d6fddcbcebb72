"""Spec strings to encoders: `schema:identifier`, one registered constructor per schema.

Like open_clip's model registry, a spec is a small string language that can be stored in a
manifest and compared: `clip:ViT-B-32/laion2b_s34b_b79k`, `code:microsoft/unixcoder-base`,
`text:sentence-transformers/all-MiniLM-L6-v2`, `text:/path/to/model`, `tiny-clip:0`.

The built-in table names each family's constructor as data ("module:function"), imported when a
spec of that schema is first built: torch and friends cost seconds to import, and the registry
imports no family (the families sit above it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from .base import Encoder, EncoderCfg, UnknownEncoderError

EncoderFactory = Callable[[str, EncoderCfg], Encoder]
BUILTINS: dict[str, str] = {
    "clip": "encoders.families.clip:load_clip",
    "code": "encoders.families.hf:load_code",
    "text": "encoders.families.sentence:load_text",
    "tiny-clip": "encoders.families.tiny:tiny_clip",
    "tiny-code": "encoders.families.tiny:tiny_code",
    "tiny-text": "encoders.families.tiny:tiny_text",
}
_ENCODERS: dict[str, EncoderFactory | str] = dict(BUILTINS)  # a user's factory replaces a built-in


def register_encoder(schema: str, factory: EncoderFactory) -> None:
    """Make `schema:identifier` specs build with `factory(identifier, cfg)`; may replace a built-in."""
    _ENCODERS[schema] = factory


def list_encoders() -> list[str]:
    return sorted(_ENCODERS)


def parse_spec(spec: str) -> tuple[str, str]:
    """'code:microsoft/unixcoder-base' -> ('code', 'microsoft/unixcoder-base')."""
    schema, sep, ident = spec.partition(":")
    if not sep or not schema:
        raise UnknownEncoderError(
            f"Encoder spec {spec!r} has no schema; write it as SCHEMA:MODEL, schemas: {list_encoders()}"
        )
    return schema, ident


def create_encoder(spec: str, cfg: EncoderCfg | None = None) -> Encoder:
    """The full encoder of `spec` (both roles; a family may serve documents from its exported files)."""
    schema, ident = parse_spec(spec)
    if schema not in _ENCODERS:
        raise UnknownEncoderError(
            f"Unknown encoder schema {schema!r} in {spec!r}; valid: {sorted(_ENCODERS)}"
        )
    return _factory(schema)(ident, cfg or EncoderCfg())


def _factory(schema: str) -> EncoderFactory:
    """The registered callable; a built-in's "module:function" is imported on first use."""
    entry = _ENCODERS[schema]
    if isinstance(entry, str):
        module, _, name = entry.partition(":")
        entry = _ENCODERS[schema] = getattr(importlib.import_module(module), name)
    return entry
