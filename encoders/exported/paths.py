"""Where a spec's exported files live, derived from the spec alone, without loading the model.

CLIP in `<onnx cache>/clip-text-<hash of spec, library versions, weights file>/`; code and text
models in the folder of their document-side export (runtime/onnx.py), keyed by the checkpoint's
files, so a changed checkpoint never uses an old export. The card is `query-<hash of spec>.json` in
that folder, written last: its presence means every file it names was written and checked.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..base import EncoderError
from ..checkpoint import LAYOUT_VERSION, TINY_CLIP_CFG, CodeModelInfo, parse_seed, read_st_layout, tiny_dir
from ..registry import parse_spec
from ..runtime.choose import light_available
from ..runtime.onnx import onnx_file, onnx_root
from ..weights import resolve_model_dir
from .card import CARD_VERSION, IMAGE_CARD_VERSION, ImageCard, QueryCard


def query_folder(spec: str) -> Path | None:
    """The folder that holds (or will hold) the query files of `spec`; None where none can exist."""
    schema, ident = parse_spec(spec)
    if schema in ("clip", "tiny-clip"):
        return onnx_root() / f"clip-text-{_clip_key(schema, ident)}"
    transformer_dir = transformer_folder(spec)
    return None if transformer_dir is None else onnx_file(transformer_dir, "onnx").parent


def transformer_folder(spec: str) -> Path | None:
    """The transformer folder of a code/text spec's checkpoint; None when not on disk or not one."""
    schema, ident = parse_spec(spec)
    model_dir = _checkpoint_dir(schema, ident)
    if model_dir is None:
        return None
    try:
        transformer_dir, _ = read_st_layout(model_dir, CodeModelInfo())
    except (EncoderError, OSError, ValueError):
        return None
    return transformer_dir


def _read(path: Path | None, parse: Callable[[str], Any]) -> Any:
    """A card file parsed, or None: absent, unreadable (the next export rewrites it), or no runtime."""
    if path is None or not light_available() or not path.is_file():
        return None
    try:
        return parse(path.read_text("utf-8"))
    except (OSError, ValueError, TypeError):
        return None


def card_path(spec: str) -> Path | None:
    folder = query_folder(spec)
    return None if folder is None else folder / f"query-{_digest(spec)[:12]}.json"


def find_card(spec: str) -> tuple[QueryCard, Path] | None:
    """The card of `spec` and its folder, when the card and the files it names are all there."""
    path = card_path(spec)
    card = _read(path, QueryCard.from_json)
    if card is None or card.version != CARD_VERSION or card.spec != spec:
        return None
    if not all((path.parent / f).is_file() for f in (card.model, card.tokenizer)):
        return None
    return card, path.parent


def image_card_path(spec: str) -> Path | None:
    """A CLIP spec's image tower card, `image-<hash of spec>.json` beside its text tower's files."""
    folder = query_folder(spec)
    return None if folder is None else folder / f"image-{_digest(spec)[:12]}.json"


def find_image_card(spec: str) -> tuple[ImageCard, Path] | None:
    """The image card of `spec` and its folder, when the card and its model file are there."""
    path = image_card_path(spec)
    card = _read(path, ImageCard.from_json)
    if (
        card is None
        or card.version != IMAGE_CARD_VERSION
        or card.spec != spec
        or not (path.parent / card.model).is_file()
    ):
        return None
    return card, path.parent


def _checkpoint_dir(schema: str, ident: str) -> Path | None:
    """The checkpoint directory of a code/text spec, found without loading it; None if not on disk."""
    try:
        if schema in ("code", "text"):
            return resolve_model_dir(ident)
        if schema in ("tiny-code", "tiny-text"):
            path = tiny_dir(schema, parse_seed(ident, schema))
            return path if path.is_dir() else None
    except EncoderError:
        return None
    return None


def _clip_key(schema: str, ident: str) -> str:
    """CLIP weights are named by spec: a pretrained tag is a fixed release, a path is checked by stat."""
    from importlib.metadata import version

    parts = [schema, ident, str(CARD_VERSION), version("open_clip_torch"), version("torch")]
    if schema == "tiny-clip":
        parts += [json.dumps(TINY_CLIP_CFG, sort_keys=True), str(LAYOUT_VERSION)]
    elif "@" in ident:
        weights = Path(os.path.expanduser(ident.partition("@")[2]))
        if weights.is_file():
            st = weights.stat()
            parts += [str(weights.resolve()), str(st.st_size), str(st.st_mtime_ns)]
    return _digest("|".join(parts))[:16]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
