"""Make square thumbnails for a photo gallery."""

from __future__ import annotations

from pathlib import Path

from PIL import Image


def make_thumbnail(src: Path, dst: Path, size: int = 128) -> Path:
    """Resize an image so its longer side is `size` pixels and save it as JPEG."""
    with Image.open(src) as img:
        img = img.convert("RGB")
        img.thumbnail((size, size))
        dst.parent.mkdir(parents=True, exist_ok=True)
        img.save(dst, "JPEG", quality=85)
    return dst


def thumbnails_for_folder(folder: Path, out: Path, size: int = 128) -> list[Path]:
    """Create a thumbnail for every PNG and JPEG file in a folder."""
    made = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in {".png", ".jpg", ".jpeg"}:
            made.append(make_thumbnail(path, out / (path.stem + ".jpg"), size))
    return made
