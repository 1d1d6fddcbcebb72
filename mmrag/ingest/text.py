"""Text documents (Markdown, reStructuredText, plain text): sections by heading, then packed paragraphs."""

from __future__ import annotations

import os
import re

from mmrag.ingest.chunking import Lines, pack, paragraphs
from mmrag.ingest.decode import read_text
from mmrag.ingest.fences import blank_fences, fence_items, find_fences, heading_paths
from mmrag.ingest.spec import IngestCfg, Source
from mmrag.items import Item

MARKDOWN_EXTS = (".md", ".markdown", ".mdown", ".mkd")
RST_EXTS = (".rst", ".rest")
PLAIN_EXTS = (".txt", ".text")
TEXT_EXTS = MARKDOWN_EXTS + RST_EXTS + PLAIN_EXTS

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_RST_ADORN = re.compile(r"^([=\-`:'\"~^_*+#<>.])\1{2,}[ \t]*$")

# A heading: (first line index, line index after it, level, title)
Heading = tuple[int, int, int, str]


def markdown_headings(doc: Lines) -> list[Heading]:
    """ATX (`# Title`) and setext (`Title` over `===`/`---`) headings outside code fences and front matter."""
    lines, heads = doc.lines, []
    i, fence = 0, None
    if lines and lines[0].strip() == "---":  # YAML front matter is not a heading
        end = next((k for k in range(1, len(lines)) if lines[k].strip() in ("---", "...")), None)
        i = end + 1 if end is not None else 0
    for k in range(i, len(lines)):
        line = lines[k]
        if fence:
            if line.lstrip().startswith(fence):
                fence = None
            continue
        if m := _FENCE.match(line):
            fence = m.group(1)
            continue
        if m := _ATX.match(line):
            heads.append((k, k + 1, len(m.group(1)), (m.group(2) or "").strip()))
        elif k > i and _SETEXT.match(line) and _is_setext_title(lines[k - 1]):
            if heads and heads[-1][0] == k - 1:
                continue
            heads.append((k - 1, k + 1, 1 if line.strip()[0] == "=" else 2, lines[k - 1].strip()))
    return heads


def _is_setext_title(line: str) -> bool:
    s = line.strip()
    return (
        bool(s)
        and not line.startswith(("    ", "\t"))
        and not _ATX.match(line)
        and not _FENCE.match(line)
        and s[0] not in "-*+>|"
    )


def rst_headings(doc: Lines) -> list[Heading]:
    """Titles underlined (and optionally overlined) by a repeated punctuation character; levels in order of first use."""
    lines, heads, styles = doc.lines, [], []
    k = 1
    while k < len(lines):
        m = _RST_ADORN.match(lines[k])
        title = lines[k - 1]
        is_title = m and title.strip() and not title[0].isspace() and not _RST_ADORN.match(title)
        if is_title and len(lines[k].rstrip()) >= len(title.rstrip()):
            over = k >= 2 and lines[k - 2].rstrip() == lines[k].rstrip()
            style = (m.group(1), over)
            if style not in styles:
                styles.append(style)
            heads.append((k - 2 if over else k - 1, k + 1, styles.index(style) + 1, title.strip()))
            k += 2
            continue
        k += 1
    return heads


def sections(doc: Lines, heads: list[Heading]) -> list[tuple[str, int, int]]:
    """(heading path, first line, last line); a heading with no body joins the section after it."""
    bounds = [(0, 0, 0, "")] if not heads or heads[0][0] > 0 else []
    bounds += heads
    out, stack, carry = [], [], None
    for n, (start, body, level, title) in enumerate(bounds):
        end = bounds[n + 1][0] - 1 if n + 1 < len(bounds) else len(doc) - 1
        if level:
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
        if carry is not None:
            start, carry = carry, None
        if end < start:
            continue
        has_body = any(not doc.blank(i) for i in range(body, end + 1))
        if level and not has_body and n + 1 < len(bounds):
            carry = start
            continue
        out.append((" > ".join(t for _, t in stack if t), start, end))
    return [(t, a, b) for t, a, b in out if any(not doc.blank(i) for i in range(a, b + 1))]


def chunk_text(text: str, style: str, max_chars: int, overlap_chars: int) -> list[tuple[str, int, int, str]]:
    """(chunk text, start_line, end_line, heading path) for style 'markdown', 'rst' or 'plain'."""
    doc = Lines(text)
    heads = {"markdown": markdown_headings, "rst": rst_headings}.get(style, lambda d: [])(doc)
    out = []
    for title, a, b in sections(doc, heads):
        for p in pack(doc, paragraphs(doc, a, b), max_chars, overlap_chars):
            out.append((p.text, p.start_line, p.end_line, title))
    return out


def _style(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    return "markdown" if ext in MARKDOWN_EXTS else "rst" if ext in RST_EXTS else "plain"


def read_text_doc(source: Source, cfg: IngestCfg, on_error: object = None) -> list[Item]:
    """Text Items keyed f"{path}#L{start}-{end}", titled by their heading path; a Markdown file's
    fenced blocks are code items in the fence's language (fences.py) and leave the prose."""
    path = source.path
    text, encoding = read_text(path, cfg.max_file_bytes)
    style = _style(path)
    items: list[Item] = []
    if style == "markdown":
        doc = Lines(text)
        fences = find_fences(doc)
        if fences:
            paths = heading_paths(markdown_headings(doc))
            items = fence_items(path, doc, fences, paths, cfg, os.path.basename(path))
            text = blank_fences(doc, fences)
    seen = {it.key for it in items}
    for chunk, start, end, title in chunk_text(text, style, cfg.max_chunk_chars, cfg.chunk_overlap_chars):
        key = f"{path}#L{start}-{end}"
        n = 1
        while key in seen:  # character pieces of one long line share a line span
            n += 1
            key = f"{path}#L{start}-{end}.{n}"
        seen.add(key)
        meta = {"format": style}
        if encoding != "utf-8":
            meta["encoding"] = encoding
        items.append(Item(key=key, modality="text", source=path, text=chunk, title=title or os.path.basename(path),
                          start_line=start, end_line=end, meta=meta))  # fmt: skip
    return sorted(items, key=lambda it: (it.start_line or 0, it.modality))
