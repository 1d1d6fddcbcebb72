"""A search result as Jupyter shows it: a table of thumbnails and snippets with the query's words marked.

`SearchResult._repr_html_` calls `result_html`; everything from the index is HTML-escaped, and the
page is self-contained (thumbnails as data: URLs), so a saved notebook shows it without the files.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Sequence

from mmrag.items import Hit

MAX_ROWS = 50  # a notebook cell, not an export: more rows are counted, not drawn
THUMB_PX = 128
SNIPPET_CHARS = 400
_WORD = re.compile(r"\w{2,}", re.UNICODE)


def result_html(hits: Sequence[Hit], query: str = "", warnings: Sequence[str] = ()) -> str:
    words = sorted({w.lower() for w in _WORD.findall(query)}, key=len, reverse=True)
    rows = "".join(_row(n, h, words) for n, h in enumerate(hits[:MAX_ROWS], 1))
    more = f"<p>… and {len(hits) - MAX_ROWS} more hits</p>" if len(hits) > MAX_ROWS else ""
    notes = "".join(f"<p style='color:#a60'>{html.escape(w)}</p>" for w in warnings)
    if not hits:
        return f"<div class='mmrag-result'><p>No hits.</p>{notes}</div>"
    return (
        "<div class='mmrag-result'><table style='border-collapse:collapse'>"
        "<thead><tr><th>#</th><th></th><th style='text-align:left'>where</th>"
        "<th style='text-align:left'>snippet</th><th>score</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>{more}{notes}</div>"
    )


def _row(n: int, hit: Hit, words: Sequence[str]) -> str:
    where = hit.where()
    label = f"<b>{html.escape(hit.symbol)}</b><br>" if hit.symbol else ""
    cell = "vertical-align:top;padding:4px 8px;border-top:1px solid #ddd"
    snippet = highlight(_cut(hit.text or hit.title or ""), words)
    pre = "white-space:pre-wrap;font-family:monospace;font-size:85%" if hit.modality == "code" else ""
    return (
        f"<tr><td style='{cell}'>{n}</td><td style='{cell}'>{_thumb(hit)}</td>"
        f"<td style='{cell}'>{label}<code>{html.escape(where)}</code><br><small>{hit.modality}</small></td>"
        f"<td style='{cell};{pre}'>{snippet}</td><td style='{cell}'>{hit.score:.4f}</td></tr>"
    )


def _cut(text: str) -> str:
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS] + "…"


def highlight(text: str, words: Sequence[str]) -> str:
    """`text` escaped, with each of `words` (case-insensitive) inside <mark>."""
    if not words:
        return html.escape(text)
    pattern = re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)
    out, last = [], 0
    for m in pattern.finditer(text):
        out += [html.escape(text[last : m.start()]), f"<mark>{html.escape(m.group(0))}</mark>"]
        last = m.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def _thumb(hit: Hit) -> str:
    """An image hit's picture as a small inline JPEG; nothing for other hits or unreadable files."""
    if hit.modality != "image" or not hit.path:
        return ""
    try:
        from PIL import Image

        with Image.open(hit.path) as im:
            im.draft("RGB", (THUMB_PX, THUMB_PX))
            im.thumbnail((THUMB_PX, THUMB_PX))
            buf = io.BytesIO()
            im.convert("RGB").save(buf, "JPEG", quality=75)
    except (OSError, ValueError):  # a file gone or unreadable since it was indexed: the row stays
        return ""
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f"<img src='data:image/jpeg;base64,{data}' alt='{html.escape(hit.path)}'>"
