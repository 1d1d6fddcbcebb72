"""A picture an agent sends to search by: base64 in the tool call, never a path.

A path would let whoever talks to the server make it read any file the server can; bytes the agent
already holds cannot. They are decoded under a size cap, checked to be a picture Pillow reads (a
decompression bomb is refused by Pillow's pixel cap), and kept in a temporary file for the search.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import os
import re
import tempfile
from collections.abc import Iterator

MAX_QUERY_IMAGE_BYTES = 20 * 1024 * 1024  # as the REST upload: larger is not a photo but a mistake
_DATA_URI = re.compile(r"^data:image/[\w.+-]+;base64,", re.I)


class QueryImageError(ValueError):
    """The picture sent to search by cannot be used; the message says why."""


def decode_query_image(data: str) -> tuple[bytes, str]:
    """(bytes, Pillow format) of a base64 picture, optionally a data: URI."""
    from PIL import Image

    text = _DATA_URI.sub("", data.strip(), count=1)
    if len(text) > (MAX_QUERY_IMAGE_BYTES * 4) // 3 + 4:
        raise QueryImageError(f"the image is over the {MAX_QUERY_IMAGE_BYTES >> 20} MB limit")
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise QueryImageError(
            "the image is not valid base64 (send the file's bytes base64-encoded)"
        ) from None
    if not raw:
        raise QueryImageError("the image is empty")
    try:
        with Image.open(io.BytesIO(raw)) as img:
            img.verify()
            fmt = img.format or "PNG"
    except Image.DecompressionBombError as e:
        raise QueryImageError(f"the image has too many pixels: {e}") from None
    except Exception:
        raise QueryImageError(
            "the image is not a picture Pillow can read (PNG, JPEG, WebP, GIF, BMP, TIFF)"
        ) from None
    return raw, fmt


@contextlib.contextmanager
def query_image_file(raw: bytes, fmt: str) -> Iterator[str]:
    """A temporary file holding a decoded picture (decode_query_image), removed after the search."""
    fd, path = tempfile.mkstemp(prefix="mmrag-mcp-query-", suffix="." + fmt.lower())
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
