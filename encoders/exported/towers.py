"""Exported tower or full model: decided here, for both roles, from the same two facts.

A tower is used when its files exist and were checked (the card, see export.py) and when the
settings asked for are ones the files reproduce: CPU, and the model's own token limit. Otherwise
the caller builds (or keeps) the full encoder. Queries: `query_tower`, for every family with a card
(CLIP's text tower, code and text models). Documents: `document_tower`, for every family whose
documents are pooled token states (code and text models, their tiny twins). CLIP: `clip_tower`,
both towers from files (exported/image.py) when the text card and the image card are there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..base import Encoder, EncoderCfg
from ..runtime.choose import image_backend
from ..runtime.onnx import onnx_file
from .document import DocEncoder
from .image import ExportedClip, ImageTower
from .paths import find_card, find_image_card
from .query import LightEncoder

QUERY_BACKENDS = ("auto", "onnx")  # a request for torch or OpenVINO itself is served by the full encoder
# the runtime "auto" picks for real checkpoints on CPU, so every default `mmrag index` after the first
# skips torch and transformers; the opt-in ONNX Runtime backends keep the full encoder's own path
DOCUMENT_BACKENDS = ("openvino",)


def reproducible(cfg: EncoderCfg) -> bool:
    """Whether exported files give what the full encoder would under `cfg`."""
    return cfg.device == "cpu" and cfg.max_length is None


def query_tower(spec: str, cfg: EncoderCfg, full: Callable[[], Encoder] | None = None) -> LightEncoder | None:
    """The light query encoder of `spec` when its files exist and fit `cfg`; None: use the full one."""
    if cfg.backend not in QUERY_BACKENDS or not reproducible(cfg):
        return None
    found = find_card(spec)
    return None if found is None else LightEncoder(found[0], found[1], cfg, full)


def document_tower(
    spec: str, transformer_dir: Path, backend: str, cfg: EncoderCfg, prefixes: tuple[str, str]
) -> DocEncoder | None:
    """The torch-free document encoder when every file it needs exists and matches; None: the full one.

    `backend` is the one already picked for this model (runtime/choose.py); `prefixes` the
    (query, document) prefixes the full encoder would add, which the card must carry.
    """
    if backend not in DOCUMENT_BACKENDS or not reproducible(cfg):
        return None
    found = find_card(spec)
    doc_model = onnx_file(transformer_dir, backend)
    if found is None or not doc_model.is_file():
        return None
    card, folder = found
    if card.kind != "pooled" or (card.query_prefix, card.doc_prefix) != prefixes:
        return None
    return DocEncoder(card, folder, doc_model, backend, cfg)


def clip_tower(spec: str, cfg: EncoderCfg) -> ExportedClip | None:
    """A CLIP spec's captions, text and images from its exported towers; None: the full model."""
    if cfg.backend != "auto" or not reproducible(cfg):
        return None
    text, image = find_card(spec), find_image_card(spec)
    if text is None or image is None or text[0].kind != "clip":
        return None
    tower = ImageTower(image[0], image[1], image_backend(), cfg.threads)
    return ExportedClip(LightEncoder(text[0], text[1], cfg), tower, cfg)
