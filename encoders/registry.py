"""Spec strings to encoders: `schema:identifier`, one registered constructor per schema.

Like open_clip's model registry, a spec is a small string language that can be stored in a
manifest and compared: `clip:ViT-B-32/laion2b_s34b_b79k`, `code:microsoft/unixcoder-base`,
`text:sentence-transformers/all-MiniLM-L6-v2`, `text:/path/to/model`, `tiny-clip:0`.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import Encoder, EncoderCfg, UnknownEncoderError

EncoderFactory = Callable[[str, EncoderCfg], Encoder]
_ENCODERS: dict[str, EncoderFactory] = {}
_BUILTINS_LOADED = False


def register_encoder(schema: str, factory: EncoderFactory) -> None:
    """Make `schema:identifier` specs build with `factory(identifier, cfg)`; may replace a built-in."""
    _load_builtins()  # built-ins first, so a user's own factory for the same schema wins
    _ENCODERS[schema] = factory


def list_encoders() -> list[str]:
    _load_builtins()
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
    _load_builtins()
    schema, ident = parse_spec(spec)
    if schema not in _ENCODERS:
        raise UnknownEncoderError(
            f"Unknown encoder schema {schema!r} in {spec!r}; valid: {sorted(_ENCODERS)}"
        )
    return _ENCODERS[schema](ident, cfg or EncoderCfg())


def _load_builtins() -> None:
    """Import the built-in encoder modules lazily: torch and friends cost seconds to import."""
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True  # a schema registered by a user before this call must not hide the built-ins
    from . import builtin  # noqa: F401  (registers clip, code, text and tiny-* schemas)
