"""Images: a cheap header read for indexing, and a guarded full decode to RGB for encoding."""

from __future__ import annotations

import contextlib
import os
import re
import threading
import warnings
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mmrag.errors import IngestError
from mmrag.ingest.camera import HEIF_EXTS, RAW_EXTS, is_raw, load_raw, missing_extra, raw_header
from mmrag.ingest.decode import decode_text, read_bytes, sha256_file
from mmrag.ingest.metadata import exif_facts
from mmrag.ingest.spec import IngestCfg, Source
from mmrag.items import Item

# Formats Pillow opens by itself (no external program, no stub plug-in), by extension.
IMAGE_EXTS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".gif", ".webp", ".bmp", ".dib", ".tif", ".tiff",
    ".ico", ".icns", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".pcx", ".sgi", ".qoi", ".dds", ".psd",
    ".jp2", ".j2k", ".jpx", ".avif",
)  # fmt: skip
_SIDECAR_BYTES = 64_000  # a caption file larger than this is a document, not a caption
_guard_lock = threading.Lock()


def image_exts() -> tuple[str, ...]:
    """IMAGE_EXTS less those this Pillow build cannot open (e.g. AVIF or JPEG 2000 without codecs),
    plus HEIF and RAW: without their extra each such file is skipped with the extra to install."""
    Image.init()
    known = Image.registered_extensions()
    return tuple(e for e in IMAGE_EXTS if known.get(e) in Image.OPEN) + HEIF_EXTS + RAW_EXTS


@contextlib.contextmanager
def _pixel_guard(path: str, max_pixels: int) -> Iterator[None]:
    """Pillow's bomb check at our limit, with its warning raised; global state, so one caller at a time."""
    with _guard_lock, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            yield
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise IngestError(
                path, f"image too large (decompression bomb guard, limit {max_pixels} pixels): {e}"
            ) from e
        finally:
            Image.MAX_IMAGE_PIXELS = old


def _open(path: str, max_pixels: int) -> Image.Image:
    """Open the header only, mapping every Pillow failure to an IngestError."""
    why = missing_extra(path)  # HEIF without an opener: say which extra reads it
    if why:
        raise IngestError(path, why)
    try:
        with _pixel_guard(path, max_pixels):
            img = Image.open(path)
    except IngestError:
        raise
    except UnidentifiedImageError as e:
        raise IngestError(path, "not an image (Pillow cannot identify the file's format)") from e
    except OSError as e:
        raise IngestError(path, f"cannot read: {e.strerror or e}") from e
    except Exception as e:  # malformed headers surface as ValueError, SyntaxError, struct.error ...
        raise IngestError(path, f"corrupt image header ({type(e).__name__}: {e})") from e
    w, h = img.size
    if w <= 0 or h <= 0:
        img.close()
        raise IngestError(path, f"image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        img.close()
        raise IngestError(path, f"image too large ({w}x{h} = {w * h} pixels > limit {max_pixels})")
    return img


def load_image(path: str, *, max_pixels: int, target_size: int | None = 224) -> Image.Image:
    """Decode fully to an upright RGB image; short side kept >= 2*target_size when it was larger."""
    if is_raw(path):
        return _reduced(load_raw(path, max_pixels, target_size), target_size)
    img = _open(path, max_pixels)
    try:
        with img:
            if target_size and img.format == "JPEG":  # decode at 1/2, 1/4 or 1/8 scale: much faster
                img.draft("RGB", (2 * target_size, 2 * target_size))
            try:
                img.load()
            except Exception as e:
                reason = "truncated image" if "truncat" in str(e).lower() else "corrupt image"
                raise IngestError(path, f"{reason} ({type(e).__name__}: {e})") from e
            out = _upright(img)
            out = to_rgb(out, path)
            if out is img:
                out = img.copy()  # detach from the file, which `with` closes
    except IngestError:
        raise
    except Exception as e:
        raise IngestError(path, f"cannot decode image ({type(e).__name__}: {e})") from e
    return _reduced(out, target_size)


def _reduced(out: Image.Image, target_size: int | None) -> Image.Image:
    if target_size:
        factor = min(out.size) // (2 * target_size)
        if factor >= 2:  # box-reduce huge non-JPEGs; the encoder's resize still sees 2x its input
            out = out.reduce(factor)
    return out


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block leaves the image as stored."""
    try:
        return ImageOps.exif_transpose(img) or img
    except Exception:
        return img


def to_rgb(img: Image.Image, path: str = "<image>") -> Image.Image:
    """Any Pillow mode to 8-bit RGB: alpha composited on white, 16/32-bit and float scaled, not clipped."""
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        return Image.fromarray(_scale_to_uint8(np.asarray(img), mode), "L").convert("RGB")
    try:
        if mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return img.convert("RGB")
    except ValueError as e:
        raise IngestError(path, f"unsupported image mode {mode!r}: {e}") from e


def _scale_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """16-bit to 8-bit by range (65535 -> 255); wider or float data by its own min..max."""
    arr = arr.astype(np.float64, copy=False)
    if mode.startswith("I;16") or (mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 65535):
        lo, hi = 0.0, 65535.0
    elif mode == "F" and arr.size and arr.min() >= 0 and arr.max() <= 1:
        lo, hi = 0.0, 1.0
    else:
        finite = arr[np.isfinite(arr)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    scaled = (np.nan_to_num(arr, nan=lo) - lo) * (255.0 / max(hi - lo, 1e-12))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def caption_from_name(path: str) -> str:
    """'golden_retriever-puppy.jpg' -> 'golden retriever puppy'; camelCase is split too."""
    stem = os.path.splitext(os.path.basename(path))[0]
    stem = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", stem)
    return " ".join(re.split(r"[\s_\-.+~,]+", stem)).strip()


def sidecar_path(path: str) -> str:
    """Where a caption for this image lives: `<stem>.txt` next to it."""
    return os.path.splitext(path)[0] + ".txt"


def read_caption(path: str, max_chars: int) -> tuple[str, str]:
    """(caption, where it came from: 'sidecar' or 'filename'); an unreadable sidecar falls back."""
    side = sidecar_path(path)
    if os.path.isfile(side):
        try:
            text, _ = decode_text(read_bytes(side, _SIDECAR_BYTES), side)
            text = " ".join(text.split())[:max_chars]
            if text:
                return text, "sidecar"
        except IngestError:
            pass
    return caption_from_name(path), "filename"


def read_image(source: Source, cfg: IngestCfg, on_error: object = None) -> list[Item]:
    """One image Item from the header (size, format, bomb guard) plus its caption; no full decode."""
    path = source.path
    if is_raw(path):
        width, height, exif = raw_header(path, cfg.max_image_pixels)
        fmt = os.path.splitext(path)[1].upper().lstrip(".")  # "NEF", "DNG": the camera's own format
    else:
        with _open(path, cfg.max_image_pixels) as img:
            width, height = img.size
            fmt = img.format or "unknown"
            exif = exif_facts(img)  # date taken, camera, orientation: for filters
    caption, caption_from = read_caption(path, cfg.max_caption_chars)
    meta = {"width": width, "height": height, "format": fmt, "image_sha256": sha256_file(path),
            "caption_source": caption_from}  # fmt: skip
    if exif:
        meta["exif"] = exif
    return [
        Item(
            key=path,
            modality="image",
            source=path,
            text=caption,
            title=os.path.basename(path),
            image=path,
            meta=meta,
        )
    ]
