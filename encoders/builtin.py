"""Registers the built-in schemas; each factory imports its heavy library only when called."""

from __future__ import annotations

from .base import Encoder, EncoderCfg
from .registry import register_encoder


def _clip(ident: str, cfg: EncoderCfg) -> Encoder:
    from .clip import load_clip

    return load_clip(ident, cfg)


def _code(ident: str, cfg: EncoderCfg) -> Encoder:
    from .hf import HFEncoder

    return HFEncoder(ident, cfg)


def _text(ident: str, cfg: EncoderCfg) -> Encoder:
    from .sentence import SentenceEncoder

    return SentenceEncoder(ident, cfg)


def _tiny_clip(ident: str, cfg: EncoderCfg) -> Encoder:
    from .tiny import tiny_clip

    return tiny_clip(ident, cfg)


def _tiny_code(ident: str, cfg: EncoderCfg) -> Encoder:
    from .tiny import tiny_code

    return tiny_code(ident, cfg)


def _tiny_text(ident: str, cfg: EncoderCfg) -> Encoder:
    from .tiny import tiny_text

    return tiny_text(ident, cfg)


for _schema, _factory in {
    "clip": _clip,
    "code": _code,
    "text": _text,
    "tiny-clip": _tiny_clip,
    "tiny-code": _tiny_code,
    "tiny-text": _tiny_text,
}.items():
    register_encoder(_schema, _factory)
