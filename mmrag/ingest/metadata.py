"""Metadata the readers keep for filters: an image's EXIF facts and a JSONL record's extra fields.

They go into Item.meta (`exif`, `fields`); mmrag/storage/facts.py turns them into typed rows.
Reading them never fails a file: a broken EXIF block or an odd field is left out.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from PIL import Image

# EXIF tags (the TIFF/EXIF standard's numbers, as Pillow's ExifTags names them)
_MAKE, _MODEL, _ORIENTATION, _DATETIME = 0x010F, 0x0110, 0x0112, 0x0132
_EXIF_IFD, _DATETIME_ORIGINAL, _DATETIME_DIGITIZED = 0x8769, 0x9003, 0x9004
# fields of a BEIR record that are the item itself, not metadata about it
JSONL_CORE = frozenset({"_id", "text", "title", "modality", "language", "image", "caption"})


def exif_facts(img: Image.Image) -> dict[str, Any]:
    """{"taken": ISO datetime, "camera": "Make Model", "orientation": 1-8}, whichever the EXIF holds."""
    try:
        exif = img.getexif()
    except Exception:  # a malformed EXIF block: the image is still an image
        return {}
    return _facts(exif)


def tiff_exif_facts(path: str, max_bytes: int = 4 << 20) -> dict[str, Any]:
    """exif_facts of a TIFF-based file (the RAW formats ARW, CR2, NEF, DNG ...) from its header,
    parsed as an EXIF block: Pillow cannot open most RAWs as images, but their tags are TIFF's."""
    try:
        with open(path, "rb") as f:
            head = f.read(max_bytes)
        if head[:4] not in (b"II*\0", b"MM\0*"):
            return {}
        exif = Image.Exif()
        exif.load(head)
        return _facts(exif)
    except Exception:  # unreadable, or tags past the first bytes: no facts, the photo is still read
        return {}


def _facts(exif: Image.Exif) -> dict[str, Any]:
    if not exif:
        return {}
    out: dict[str, Any] = {}
    try:
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:
        sub = {}
    for raw in (sub.get(_DATETIME_ORIGINAL), sub.get(_DATETIME_DIGITIZED), exif.get(_DATETIME)):
        taken = exif_datetime(raw)
        if taken:
            out["taken"] = taken
            break
    make, model = _clean(exif.get(_MAKE)), _clean(exif.get(_MODEL))
    if model and make and model.lower().startswith(make.lower()):
        make = ""  # "Canon" + "Canon EOS 5D" says Canon once
    camera = " ".join(x for x in (make, model) if x)
    if camera:
        out["camera"] = camera
    orientation = exif.get(_ORIENTATION)
    if isinstance(orientation, int) and 1 <= orientation <= 8:
        out["orientation"] = orientation
    return out


def exif_datetime(raw: Any) -> str | None:
    """EXIF 'YYYY:MM:DD HH:MM:SS' as ISO 'YYYY-MM-DDTHH:MM:SS' (no zone: EXIF keeps local time)."""
    if isinstance(raw, bytes):
        raw = raw.decode("ascii", "ignore")
    if not isinstance(raw, str):
        return None
    text = raw.strip().rstrip("\x00")
    try:
        return dt.datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S").isoformat()
    except ValueError:
        return None


def jsonl_fields(rec: dict[str, Any]) -> dict[str, Any]:
    """A record's extra fields: BEIR's `metadata` object and every top-level field that is not the item."""
    out: dict[str, Any] = {}
    meta = rec.get("metadata")
    if isinstance(meta, dict):
        out.update(meta)
    for k, v in rec.items():
        if k not in JSONL_CORE and k != "metadata":
            out[k] = v
    return {str(k): v for k, v in out.items() if v is not None}


def _clean(v: Any) -> str:
    if isinstance(v, bytes):
        v = v.decode("ascii", "ignore")
    return " ".join(v.replace("\x00", " ").split()) if isinstance(v, str) else ""
