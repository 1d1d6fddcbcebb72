"""HTML for the demo's results, stats and map: pure functions of hits and numbers, no Gradio."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Sequence

from mmrag import dupes

COLOURS = {"image": "#2f6fdf", "code": "#e07a10", "text": "#1f9d55"}  # one hue per modality, in every view
ICONS = {"image": "🖼", "code": "⌨", "text": "📄"}
CODE_LINES = 24  # lines of a code hit shown before "…"; the whole chunk is one click away in the API
PASSAGE_CHARS = 420  # characters of a text hit around the first matching word


def short_path(path: str | None, roots: Sequence[str]) -> str:
    """A path relative to the indexed folder holding it, so results read `docs/faq.md`, not /home/…."""
    if not path:
        return ""
    for root in sorted(roots, key=len, reverse=True):
        base = os.path.dirname(root.rstrip("/")) if os.path.isfile(root) else root.rstrip("/")
        if path.startswith(base + "/"):
            return os.path.join(os.path.basename(base), path[len(base) + 1 :])
    return path


def where_label(h, roots: Sequence[str]) -> str:
    """`docs/paper.pdf p. 12`, `nb/analysis.ipynb cell 7` for a document's part, else `src/a.py:40`."""
    where = short_path(h.path or h.source, roots)
    loc = getattr(h, "locator", None)
    if loc is not None and loc.label():
        return f"{where} {loc.label()}"
    return where + (f":{h.start_line}" if h.start_line else "")


def gallery_caption(h, roots: Sequence[str]) -> str:
    """A picture's line under its thumbnail: score, caption, and for a document's figure where it is."""
    caption = f"{h.score:.3f} · {h.text or h.title}"
    loc = getattr(h, "locator", None)
    if loc is not None and loc.label():
        caption += f" · {os.path.basename(h.path or h.source)} {loc.label()}"
    return caption


def open_link(h) -> str:
    """A link that opens a document's part in its document: a PDF at the hit's page (`#page=N`, which
    browsers' PDF viewers follow), a notebook whole; "" for a plain file."""
    loc = getattr(h, "locator", None)
    if loc is None or loc.doc not in ("pdf", "ipynb"):
        return ""
    at = f"#page={loc.page}" if loc.doc == "pdf" and loc.page else ""
    label = f"open {loc.label()}" if loc.label() else "open"
    return (
        f'<a class="mm-open" href="/items/{int(h.id)}/document{at}" target="_blank" rel="noopener">'
        f"{html.escape(label)}</a>"
    )


def page_thumb(h) -> str:
    """A PDF text hit's page as a small picture beside its passage; "" for anything else."""
    loc = getattr(h, "locator", None)
    if loc is None or loc.doc != "pdf" or not loc.page or loc.part not in (None, "text"):
        return ""
    return (
        f'<a href="/items/{int(h.id)}/document#page={loc.page}" target="_blank" rel="noopener">'
        f'<img class="mm-page" src="/items/{int(h.id)}/page?size=160" alt="{html.escape(loc.label())}" '
        'loading="lazy" style="float:right;max-width:80px;margin:0 0 4px 8px;border:1px solid #ddd"></a>'
    )


def _score(score: float) -> str:
    return f'<span class="mm-score" title="fused score">{score:.3f}</span>'


def code_cards(hits: Sequence, roots: Sequence[str]) -> str:
    cards = []
    for rank, h in enumerate(hits, 1):
        where = where_label(h, roots)
        symbol = f'<span class="mm-symbol">{html.escape(h.symbol)}</span>' if h.symbol else ""
        lang = f'<span class="mm-lang">{html.escape(h.language)}</span>' if h.language else ""
        cards.append(
            f'<div class="mm-card mm-code" data-id="{h.id}"><div class="mm-head"><span class="mm-rank">{rank}</span>'
            f'<span class="mm-path">{html.escape(where)}</span>{symbol}{lang}{open_link(h)}{_score(h.score)}</div>'
            f"{highlight(h.text, h.language)}</div>"
        )
    return "".join(cards)


def highlight(code: str, language: str | None) -> str:
    """Syntax-highlighted HTML with inline styles (Pygments), or escaped plain text without it."""
    lines = (code or "").splitlines()
    if len(lines) > CODE_LINES:
        lines = [*lines[:CODE_LINES], "…"]
    code = "\n".join(lines)
    try:
        from pygments import highlight as pyg
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import TextLexer, get_lexer_by_name
        from pygments.util import ClassNotFound
    except ImportError:
        return f'<pre class="mm-pre">{html.escape(code)}</pre>'
    try:
        lexer = get_lexer_by_name(language or "text")
    except ClassNotFound:
        lexer = TextLexer()
    return pyg(code, lexer, HtmlFormatter(noclasses=True, nowrap=False, cssclass="mm-pre", style="friendly"))


def text_cards(hits: Sequence, roots: Sequence[str], query: str) -> str:
    words = [w for w in re.findall(r"\w{3,}", query.lower()) if w not in _STOP]
    cards = []
    for rank, h in enumerate(hits, 1):
        where = where_label(h, roots)
        title = f'<span class="mm-title">{html.escape(h.title)}</span>' if h.title else ""
        cards.append(
            f'<div class="mm-card mm-text" data-id="{h.id}"><div class="mm-head"><span class="mm-rank">{rank}</span>'
            f'{title}<span class="mm-path">{html.escape(where)}</span>{open_link(h)}{_score(h.score)}</div>'
            f'<p class="mm-passage">{page_thumb(h)}{passage(h.text, words)}</p></div>'
        )
    return "".join(cards)


_STOP = {"the", "and", "for", "with", "that", "this", "from", "are", "was", "how", "what", "does"}


def passage(text: str, words: Sequence[str]) -> str:
    """The part of `text` around the first query word, with every query word marked."""
    flat = " ".join(re.sub(r"(?m)^\s*#{1,6}\s+", "", text or "").split())  # headings read as prose
    low = flat.lower()
    first = min((i for w in words if (i := low.find(w)) >= 0), default=0)
    start = max(0, first - PASSAGE_CHARS // 3)
    cut = flat[start : start + PASSAGE_CHARS]
    out = html.escape(cut)
    if words:
        pattern = re.compile(
            "|".join(re.escape(html.escape(w)) for w in sorted(words, key=len, reverse=True)), re.I
        )
        out = pattern.sub(lambda m: f"<mark>{m.group(0)}</mark>", out)
    return ("…" if start else "") + out + ("…" if start + PASSAGE_CHARS < len(flat) else "")


def section(title: str, count: int, body: str) -> str:
    if not count:
        return ""
    return f'<div class="mm-section"><h3>{html.escape(title)} <span class="mm-count">{count}</span></h3>{body}</div>'


def timing_line(n: int, timings: dict[str, float], routes: dict[str, float], what: str) -> str:
    total = timings.get("total_ms", 0.0)
    parts = [f"**{n} result{'s' if n != 1 else ''}** {what} in **{total:.1f} ms**"]
    if "embed_search_ms" in timings:
        parts.append(f"embed + search {timings['embed_search_ms']:.1f} ms")
        parts.append(f"fuse {timings.get('fuse_ms', 0.0):.1f} ms")
    if routes:
        parts.append("indexes: " + ", ".join(sorted(routes)))
    return " · ".join(parts)


def with_warnings(status: str, warnings: Sequence[str]) -> str:
    """The status line with what the search left out (an image term no encoder here can see), so no
    answer looks complete when it is not."""
    notes = "".join(f'<br><span class="mm-error">⚠️ {html.escape(w)}</span>' for w in warnings)
    return status + notes


def _space_count(stats: dict, space: str) -> int:
    return int((stats.get("indexes", {}).get(space) or {}).get("count", 0))


def first_full_space(stats: dict) -> str:
    """The Dupes tab's first choice: the first of image, code, text with two items to compare."""
    return next((m for m in ("image", "code", "text") if _space_count(stats, m) > 1), "image")


def empty_space_note(modality: str, stats: dict) -> str | None:
    """The Dupes tab's note on a space with nothing to compare (mmrag.dupes words it), as a sentence."""
    spaces = ("image", "code", "text")
    note = dupes.empty_space_note(
        modality, {m: _space_count(stats, m) for m in spaces}, stats.get("by_modality", {}).get("image", 0)
    )
    return None if note is None else note[0].upper() + note[1:].replace("; spaces", ". Spaces") + "."


def stats_markdown(stats: dict) -> str:
    by = stats.get("by_modality", {})
    models = stats.get("models", {})
    rows = [
        f"| collection | `{html.escape(str(stats.get('path', '')))}` |",
        "|---|---|",
        f"| items | **{stats.get('items', 0)}** ({', '.join(f'{by.get(m, 0)} {m}' for m in ('image', 'code', 'text'))}) |",
        f"| files | {_files_cell(stats)} |",
        f"| models | {models.get('name', '?')}: "
        + ", ".join(f"{r} `{models[r]}`" for r in ("clip", "code", "text") if models.get(r))
        + " |",
        f"| image search | {_image_search_cell(stats)} |",
        "| folders | "
        + ("<br>".join(f"`{html.escape(r)}`" for r in stats.get("roots", [])) or "none yet")
        + " |",
    ]
    return "\n".join(rows)


def _files_cell(stats: dict) -> str:
    """Indexed, failed, and (without CLIP) waiting: a picture that only needs weights is no failure."""
    cell = f"{stats.get('sources', 0)} indexed, {stats.get('errors', 0)} skipped"
    waiting = stats.get("waiting", 0)
    if waiting:
        cell += f", {waiting} picture{'s' if waiting != 1 else ''} without a caption waiting for CLIP weights"
    return cell


def _image_search_cell(stats: dict) -> str:
    if stats.get("image_search"):
        return "on"
    pictures = stats.get("by_modality", {}).get("image", 0)
    if pictures:
        return f"off: {pictures} picture{'s are' if pictures != 1 else ' is'} searchable by caption only"
    return "off"


# --- the Ask tab ----------------------------------------------------------------------------
def _ref_list(refs: Sequence[dict], roots: Sequence[str], css: str) -> str:
    """Numbered links to each item's content (a new tab), labelled path:line as in the answer."""
    rows = []
    for r in refs:
        where = short_path(r.get("location") or r.get("path") or r.get("source"), roots)
        extra = r.get("symbol") or r.get("title") or ""
        extra_html = f' <span class="mm-symbol">{html.escape(extra)}</span>' if extra else ""
        rows.append(
            f'<li value="{int(r["n"])}" data-id="{int(r["id"])}"><span class="mm-n">[{int(r["n"])}]</span> '
            f'{ICONS.get(r.get("modality", ""), "")} <a class="mm-path" href="/items/{int(r["id"])}/content" '
            f'target="_blank" rel="noopener">{html.escape(where)}</a>{extra_html}</li>'
        )
    return f'<ol class="{css}">{"".join(rows)}</ol>'


def citations_html(answer: dict, roots: Sequence[str]) -> str:
    """The sources an answer cites; when it cites none, what it was given to read."""
    cited = answer.get("citations") or []
    if cited:
        return section("Sources", len(cited), _ref_list(cited, roots, "mm-cites"))
    context = answer.get("context") or []
    if not context:
        return '<div class="mm-empty">Nothing in the collection matched the question.</div>'
    return section("Retrieved (not cited)", len(context), _ref_list(context, roots, "mm-cites"))


def dry_run_note(answer: dict) -> str:
    """The note on configuring an endpoint, with env var names and URLs as code."""
    note = re.sub(r"^Dry run[,:]\s*", "", answer.get("note", ""))  # the heading already says so
    note = html.escape(note[:1].upper() + note[1:])
    note = re.sub(r"\b((?:MMRAG|OPENAI)_[A-Z_]+|https?://[^\s,)]+)", r"<code>\1</code>", note)
    return (
        '<div class="mm-note"><b>No answer written: this is a dry run.</b> '
        f"{note}<br>Below is the context a model would be given for this question.</div>"
    )


def dry_run_html(answer: dict, roots: Sequence[str]) -> str:
    """The retrieved items as links, then the context exactly as the prompt would carry it."""
    context = answer.get("context") or []
    if not context:
        return '<div class="mm-empty">Nothing in the collection matched the question.</div>'
    left = answer.get("left_out") or []
    over = f'<p class="mm-lang">{len(left)} more item(s) did not fit the token budget.</p>' if left else ""
    return (
        section("Retrieved context", len(context), _ref_list(context, roots, "mm-cites"))
        + over
        + '<details class="mm-context" open><summary>Context as the model would see it</summary>'
        f'<pre class="mm-pre">{html.escape(answer.get("context_text", ""))}</pre></details>'
    )
