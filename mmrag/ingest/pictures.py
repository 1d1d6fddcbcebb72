"""Pictures taken out of documents (a PDF's figures, a notebook's plots), kept as files.

An image Item needs a picture the encoder, the thumbnail route and the UI can open by path, like
any photo. A document's picture has no file of its own, so the reader writes one, named by the
sha256 of its bytes: the same picture drawn on every page (a logo) or in two documents is one
file, re-reading an unchanged document writes nothing new, and a name never points at other
content. The indexer keeps them in the collection (`<collection>/pictures/`) and removes those no
item names any more (`prune_pictures`); a reader called on its own uses the user's cache folder.
"""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
from pathlib import Path

from PIL import Image

from mmrag.ingest.spec import IngestCfg

PICTURES = "pictures"  # the folder inside a collection


def picture_dir(cfg: IngestCfg) -> str:
    """Where this run keeps document pictures: cfg.picture_dir, else ~/.cache/mmrag/pictures."""
    if cfg.picture_dir:
        return cfg.picture_dir
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "mmrag", PICTURES)


def store_bytes(data: bytes, ext: str, folder: str) -> tuple[str, str]:
    """(path, sha256) of an encoded picture kept under `folder`; written once, atomically."""
    sha = hashlib.sha256(data).hexdigest()
    sub = os.path.join(folder, sha[:2])
    path = os.path.join(sub, f"{sha}{ext}")
    if not os.path.exists(path):
        os.makedirs(sub, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return path, sha


def store_image(img: Image.Image, folder: str) -> tuple[str, str]:
    """A decoded picture as PNG (lossless, what CLIP and a thumbnail read back the same)."""
    if img.mode not in ("RGB", "RGBA", "L", "LA", "P", "1"):
        img = img.convert("RGBA" if "A" in img.mode else "RGB")
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)  # speed over size: these are caches of the document
    return store_bytes(buf.getvalue(), ".png", folder)


def prune_pictures(db: sqlite3.Connection, folder: str | os.PathLike) -> int:
    """Delete the files under `folder` that no item names any more; returns how many."""
    root = Path(folder)
    if not root.is_dir():
        return 0
    prefix = str(root).rstrip("/") + "/"
    used = {
        r[0]
        for r in db.execute("SELECT image FROM items WHERE substr(image, 1, ?) = ?", (len(prefix), prefix))
    }
    removed = 0
    for sub in root.iterdir():
        if not sub.is_dir():
            continue
        for f in sub.iterdir():
            if str(f) not in used and not f.name.endswith(".tmp"):
                f.unlink(missing_ok=True)
                removed += 1
    return removed
