"""Writing a loaded model's query files, checked against the model itself before they are used.

Families opt in with `export_query(folder) -> QueryCard | None`, writing the model and tokenizer
files into `folder` (their document-side export for code/text models, the text tower for CLIP).
The export is then checked against the encoder on PROBES, both query sides; the card, written
last, only exists for an export that matched.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..atomic import write_text
from ..base import Encoder, EncoderCfg, EncoderError
from ..runtime.choose import light_available
from .image import ImageTower
from .paths import card_path, find_card, find_image_card, image_card_path
from .query import LightEncoder

MIN_COSINE = 0.9999  # an export whose vectors differ more from the full encoder's is not used
# texts the export is checked on: empty, unicode, markup, code, and one past every context length
PROBES = (
    "a red car on a street",
    "",
    "def parse(path):\n    return json.load(open(path))",
    "Naïve café — “quoted” ﬁne &amp; 日本語 🚗",
    "HOW to Sort a LIST in python?",
    " ".join(["long"] * 600),
)


def export_query_encoder(encoder: Encoder) -> Path | None:
    """Write the query files of a loaded full encoder (if its kind can have them); the card's path."""
    path, write = _pending(encoder, card_path(encoder.spec), "export_query", find_card)
    if write is None:
        return path
    card = _run(write, path.parent, f"the query encoder of {encoder.spec!r}")
    if card is None:
        return None
    light = LightEncoder(card, path.parent, EncoderCfg(threads=1, batch_size=len(PROBES)))
    for query in (True, False):
        ref = encoder.encode_text(list(PROBES), query=query)
        cos = (light.encode_text(list(PROBES), query=query) * ref).sum(axis=1)
        if cos.min() < MIN_COSINE:
            raise EncoderError(
                f"The exported query encoder of {encoder.spec!r} differs from the model "
                f"(cosine {cos.min():.6f} < {MIN_COSINE}); queries keep using the full encoder"
            )
    write_text(path, card.to_json())
    return path


def _pending(
    encoder: Encoder, path: Path | None, attr: str, find: Callable
) -> tuple[Path | None, Callable | None]:
    """(path, the family's exporter) while an export is due; (path of the export, None) once it
    exists; (None, None) where this encoder or this machine can have none."""
    write = getattr(encoder, attr, None)
    if path is None or write is None or not light_available():
        return None, None
    if find(encoder.spec) is not None:
        return path, None
    return path, write


def _run(write: Callable, folder: Path, what: str):
    """A family's exporter, its failures as EncoderError naming what was being exported."""
    try:
        return write(folder)
    except EncoderError:
        raise
    except Exception as err:  # the exporters raise many unrelated types
        raise EncoderError(f"Could not export {what}: {err}") from err


def probe_images() -> list:
    """Pictures of the shapes that matter: landscape, portrait, square noise, tiny, flat colour."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:600, 0:900]
    smooth = np.stack([xx * 255 // 900, yy * 255 // 600, (xx + yy) % 256], -1).astype(np.uint8)
    return [
        Image.fromarray(smooth),
        Image.fromarray(np.ascontiguousarray(smooth.transpose(1, 0, 2))),
        Image.fromarray(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, (20, 37, 3), dtype=np.uint8)),
        Image.new("RGB", (256, 256), (200, 30, 30)),
    ]


def export_image_encoder(encoder: Encoder) -> Path | None:
    """Write a loaded CLIP encoder's image tower (families opt in with `export_image(folder)`); the
    card's path. Checked on probe images against the encoder's own path: cosine >= MIN_COSINE, and
    each vector the same alone as among its batch-mates, else nothing is written."""
    from ..runtime.choose import image_backend

    path, write = _pending(encoder, image_card_path(encoder.spec), "export_image", find_image_card)
    if write is None:
        return path
    card = _run(write, path.parent, f"the image tower of {encoder.spec!r}")
    if card is None:
        return None
    tower = ImageTower(card, path.parent, image_backend(), 1)
    probes = probe_images()
    ours = tower.encode_images(probes)
    alone = [tower.encode_images([p])[0] for p in probes]
    worst = min(
        float((ours * encoder.encode_image(probes)).sum(axis=1).min()),
        min(float(a @ b) for a, b in zip(alone, ours)),
    )
    if worst < MIN_COSINE:
        raise EncoderError(
            f"The exported image tower of {encoder.spec!r} differs from the model (cosine {worst:.6f} "
            f"< {MIN_COSINE}); images keep using the full encoder"
        )
    write_text(path, card.to_json())
    return path
