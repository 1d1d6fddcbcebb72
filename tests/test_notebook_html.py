"""A search result in Jupyter: `_repr_html_` draws thumbnails and marks the query's words, escaping
whatever the index holds."""

from __future__ import annotations

import base64
import html
import io
import re

from PIL import Image

from mmrag.items import Hit, Locator
from mmrag.query.search import SearchResult


def test_thumbnails_snippets_and_escaping(tmp_path):
    png = tmp_path / "red.png"
    Image.new("RGB", (400, 200), "#d02020").save(png)
    hits = [
        Hit(id=1, key="k1", modality="image", score=0.9, source=str(png), path=str(png), text="a red square"),
        Hit(
            id=2,
            key="k2",
            modality="code",
            score=0.5,
            source="/src/a.py",
            path="/src/a.py",
            text="def red(x):\n    return '<script>alert(1)</script>'",
            symbol="red",
            start_line=3,
            end_line=4,
        ),
        Hit(
            id=3,
            key="k3",
            modality="text",
            score=0.1,
            source="/d/p.pdf",
            path="/d/p.pdf",
            text="Red",
            locator=Locator(doc="pdf", page=4),
        ),
    ]
    result = SearchResult(hits)
    result.query = "red square"
    page = result._repr_html_()
    (src,) = re.findall(r"src='data:image/jpeg;base64,([^']+)'", page)
    thumb = Image.open(io.BytesIO(base64.b64decode(src)))
    assert max(thumb.size) == 128 and thumb.convert("RGB").getpixel((10, 10))[0] > 180
    assert "a <mark>red</mark> <mark>square</mark>" in page
    assert "<script>" not in page and html.escape("<script>") in page
    assert "/src/a.py:3-4" in page and "/d/p.pdf (p. 4)" in page and "<mark>Red</mark>" in page
    assert SearchResult([])._repr_html_().count("No hits") == 1
