"""Find the dominant colours of an image."""

from __future__ import annotations

from collections import Counter

from PIL import Image


def dominant_colours(path: str, count: int = 5) -> list[tuple[int, int, int]]:
    """Return the most common colours after reducing the image to a small palette."""
    with Image.open(path) as img:
        small = img.convert("RGB").resize((64, 64))
        quantised = small.quantize(colors=16).convert("RGB")
        counts = Counter(quantised.getdata())
    return [colour for colour, _ in counts.most_common(count)]


def hex_colour(rgb: tuple[int, int, int]) -> str:
    """Format an RGB triple as a CSS hex colour such as #ff0000."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)
