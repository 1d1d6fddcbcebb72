"""A role's encoder: what mmrag asks for, without knowing whether files or a full model answer.

Documents are embedded by `create_encoder(spec)`, the full encoder, which serves them from its
exported document tower where one fits (exported/towers.py). Queries are embedded by
`create_query_encoder(spec)`: the exported query tower where its files exist, else the full
encoder. `export_towers` writes those files once a full encoder is loaded (the end of indexing),
for CLIP its image tower too, after which `create_encoder` serves CLIP without torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .base import Encoder, EncoderCfg
from .exported.export import export_image_encoder, export_query_encoder
from .exported.paths import card_path, find_card, find_image_card
from .exported.towers import query_tower
from .registry import create_encoder


def create_query_encoder(
    spec: str, cfg: EncoderCfg | None = None, *, full: Callable[[], Encoder] | None = None
) -> Encoder:
    """The encoder that embeds queries of `spec`: light (no torch) where its files exist and fit `cfg`.

    Both give the same vectors (cosine >= 0.9999, checked when the files are written). `full`, when
    given, supplies the full encoder (a caller's loaded one): for the fallback, and for images.
    """
    cfg = cfg or EncoderCfg()
    tower = query_tower(spec, cfg, full)
    if tower is not None:
        return tower
    return full() if full is not None else create_encoder(spec, cfg)


def export_towers(spec: str, load: Callable[[], Encoder]) -> Path | None:
    """Write the exported towers of `spec` where its family has them; the query card's path, or None.

    `load()` gives the full encoder, called only when the files are not there yet. Raises
    EncoderError when an export fails or does not reproduce the model; nothing is then used.
    """
    loaded: list[Encoder] = []

    def full() -> Encoder:
        if not loaded:
            loaded.append(load())
        return loaded[0]

    card = card_path(spec) if find_card(spec) is not None else export_query_encoder(full())
    if card is not None and wants_image_tower(spec) and find_image_card(spec) is None:
        export_image_encoder(full())  # CLIP: the image tower too, so indexing needs no torch
    return card


def wants_image_tower(spec: str) -> bool:
    """Families whose images can run from an exported tower (families/clip.py `export_image`)."""
    from .registry import parse_spec

    return parse_spec(spec)[0] in ("clip", "tiny-clip")
