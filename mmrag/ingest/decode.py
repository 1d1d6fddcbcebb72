"""Bytes to text for code and text sources: size and binary guards, UTF-8 first, never lose a file."""

from __future__ import annotations

import codecs
import hashlib
import os
import threading

from mmrag.errors import IngestError

BINARY_SNIFF_BYTES = 8192  # NUL bytes this early mean a binary file, whatever its extension
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))  # fmt: skip
_HASH_BLOCK = 1 << 20


def read_bytes(path: str, max_bytes: int) -> bytes:
    """The whole file, refusing empty and oversized ones before reading them."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise IngestError(path, f"too large ({size} bytes > limit {max_bytes})")
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise IngestError(path, f"cannot read: {e.strerror or e}") from e
    if not data:
        raise IngestError(path, "empty file")
    if len(data) > max_bytes:  # it grew after the stat
        raise IngestError(path, f"too large (more than {max_bytes} bytes)")
    return data


def decode_text(data: bytes, path: str = "<bytes>") -> tuple[str, str]:
    """(text with '\\n' newlines, encoding name). UTF-8 with or without BOM first, then a best guess."""
    for bom, enc in _BOMS:  # UTF-16/32 text is full of NULs, so look for its BOM before the binary test
        if data.startswith(bom):
            try:
                return normalize_newlines(data.decode(enc)), enc
            except UnicodeDecodeError:
                break
    if b"\0" in data[:BINARY_SNIFF_BYTES]:
        raise IngestError(path, "binary file (NUL bytes in the first 8 KB)")
    try:
        return normalize_newlines(data.decode("utf-8-sig")), "utf-8"
    except UnicodeDecodeError:
        pass
    try:  # cp1252 is the usual non-UTF-8 encoding of Western text; it leaves 5 byte values undefined
        return normalize_newlines(data.decode("cp1252")), "cp1252"
    except UnicodeDecodeError:
        return normalize_newlines(data.decode("latin-1")), "latin-1"


def read_text(path: str, max_bytes: int) -> tuple[str, str]:
    """Read and decode a text or code file: (text, encoding)."""
    text, encoding = decode_text(read_bytes(path, max_bytes), path)
    if not text.strip():
        raise IngestError(path, "empty file (only whitespace)")
    return text, encoding


def normalize_newlines(text: str) -> str:
    """CRLF and lone CR become LF, so line numbers match what editors and `ast` count."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def sha256_file(path: str) -> str:
    """Hex sha256 of the file's bytes, read in blocks so large files cost no memory.

    Indexing asks twice per file (the change check, then the item's content hash): the last few
    digests are kept, keyed by the file's identity, size and mtime, so a photo is read once.
    """
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            with _recent_lock:
                digest = _recent.get(key)
            if digest is not None:
                return digest
            h = hashlib.sha256()
            while block := f.read(_HASH_BLOCK):
                h.update(block)
    except OSError as e:
        raise IngestError(path, f"cannot read: {e.strerror or e}") from e
    digest = h.hexdigest()
    with _recent_lock:
        _recent[key] = digest
        while len(_recent) > _RECENT_MAX:
            _recent.pop(next(iter(_recent)))
    return digest


_RECENT_MAX = 256
_recent: dict[tuple, str] = {}
_recent_lock = threading.Lock()
