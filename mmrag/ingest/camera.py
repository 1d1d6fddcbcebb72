"""Photos as phones and cameras write them: HEIC/HEIF (every iPhone's default) and camera RAW.

Both need an optional extra, so a collection of them without it says, per file, which to install:
- `heic`: `pi-heif`, the decode-only build of pillow-heif (its wheels bundle libheif and libde265,
  LGPL-3.0; pillow-heif's own wheels also bundle the x265 encoder, GPL-2.0). Either one, once
  imported, teaches Pillow to open HEIF, so the rest of the image path is Pillow's as for a JPEG.
- `raw`: `rawpy`, which bundles LibRaw (LGPL-2.1 or CDDL-1.0). A RAW file is developed with the
  camera's white balance, at half size when that is still twice what the encoder reads (CLIP sees
  224 px; half size skips demosaicing).

A RAW whose developed sibling (same name, a JPEG or another viewable format, same folder) is
indexed is left out (`shadowed_raws`): it is the same picture, and the sibling is what the
photographer chose to show.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import os
from collections.abc import Iterable
from typing import Any

from PIL import Image

from mmrag.errors import IngestError
from mmrag.ingest.metadata import tiff_exif_facts

HEIF_EXTS: tuple[str, ...] = (".heic", ".heif", ".hif")
# LibRaw reads many more; these are the common cameras' own (ARW Sony, CR2/CR3 Canon, NEF/NRW
# Nikon, DNG Adobe's open one, RAF Fujifilm, ORF Olympus, RW2 Panasonic, PEF Pentax, SRW Samsung)
RAW_EXTS: tuple[str, ...] = (
    ".arw",
    ".cr2",
    ".cr3",
    ".nef",
    ".nrw",
    ".dng",
    ".raf",
    ".orf",
    ".rw2",
    ".pef",
    ".srw",
)
HEIF_MODULES = ("pi_heif", "pillow_heif")  # the LGPL decode-only build first


def is_heif(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in HEIF_EXTS


def is_raw(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in RAW_EXTS


def missing_extra(path: str) -> str | None:
    """Why this photo cannot be read here, naming the extra to install; None when it can be."""
    if is_heif(path) and heif_module() is None:
        return "HEIC/HEIF photo: reading it needs the 'heic' extra: pip install 'mmrag[heic]'"
    if is_raw(path) and rawpy_module() is None:
        ext = os.path.splitext(path)[1].upper().lstrip(".")
        return f"RAW photo ({ext}): reading it needs the 'raw' extra: pip install 'mmrag[raw]'"
    return None


@functools.cache
def heif_module() -> str | None:
    """Register a HEIF opener with Pillow (once); the module's name, or None when none is installed."""
    for name in HEIF_MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        mod.register_heif_opener()
        return name
    return None


@functools.cache
def rawpy_module() -> Any:
    try:
        return importlib.import_module("rawpy")
    except ImportError:
        return None


def shadowed_raws(pictures: Iterable[str]) -> set[str]:
    """The RAW files among `pictures` (one folder's picture names) that have a sibling of the same
    stem in a viewable format (JPEG, HEIC, PNG, TIFF ...): they are left out."""
    pictures = list(pictures)
    stems = {os.path.splitext(n)[0] for n in pictures if not is_raw(n)}
    return {n for n in pictures if is_raw(n) and os.path.splitext(n)[0] in stems}


def _require(path: str):
    why = missing_extra(path)
    if why:
        raise IngestError(path, why)
    return rawpy_module()


def raw_header(path: str, max_pixels: int) -> tuple[int, int, dict[str, Any]]:
    """(width, height, EXIF facts) of a RAW photo without developing it; width and height as
    `load_raw` returns the picture at full size (turned upright)."""
    rawpy = _require(path)
    try:
        with rawpy.imread(path) as raw:
            sizes, taken = raw.sizes, getattr(getattr(raw, "other", None), "timestamp", None)  # rawpy >= 0.22
    except (rawpy.LibRawError, OSError, ValueError) as e:
        raise IngestError(path, f"not a RAW photo LibRaw can read ({type(e).__name__}: {e})") from e
    w, h = (sizes.height, sizes.width) if sizes.flip in (5, 6) else (sizes.width, sizes.height)
    if w <= 0 or h <= 0:
        raise IngestError(path, f"RAW photo has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise IngestError(path, f"image too large ({w}x{h} = {w * h} pixels > limit {max_pixels})")
    facts = tiff_exif_facts(path)
    if "taken" not in facts and isinstance(taken, dt.datetime) and taken.year > 1970:
        facts["taken"] = taken.replace(
            tzinfo=None, microsecond=0
        ).isoformat()  # LibRaw's reading of the EXIF date
    return w, h, facts


def load_raw(path: str, max_pixels: int, target_size: int | None) -> Image.Image:
    """Develop a RAW photo to upright 8-bit RGB with the camera's white balance; at half size when
    that still leaves the short side at least 2 * target_size (as a JPEG's draft decode does)."""
    rawpy = _require(path)
    w, h, _ = raw_header(path, max_pixels)  # the pixel limit, before any memory is spent
    half = bool(target_size) and min(w, h) // 2 >= 2 * (target_size or 0)
    try:
        with rawpy.imread(path) as raw:
            rgb = raw.postprocess(use_camera_wb=True, half_size=half, output_bps=8)
    except (rawpy.LibRawError, OSError, ValueError, MemoryError) as e:
        raise IngestError(path, f"cannot develop RAW photo ({type(e).__name__}: {e})") from e
    return Image.fromarray(rgb, "RGB")
