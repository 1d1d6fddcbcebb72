"""Code inside documents: a Markdown file's fenced blocks (``` and ~~~) as code items.

A tutorial's listing is code, and a code encoder should embed it as code, in the language its fence
names; the prose around it stays text. The fence lines are blanked out of the text that the
Markdown chunker sees, so line numbers hold for both kinds and a listing is never embedded twice.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from mmrag.ingest.chunking import Lines, line_windows
from mmrag.ingest.code import LANGUAGES
from mmrag.ingest.spec import IngestCfg
from mmrag.items import Item

_OPEN = re.compile(r"^( {0,3})(`{3,}|~{3,})[ \t]*([^\n]*?)[ \t]*$")
# info-string names that are not a file extension of the language the code reader names
_ALIASES = {
    "python3": "python", "py3": "python", "pycon": "python", "ipython": "python",
    "shell": "bash", "sh": "bash", "console": "bash", "shell-session": "bash", "zsh": "bash",
    "js": "javascript", "node": "javascript", "ts": "typescript", "c++": "cpp", "c#": "csharp",
    "cs": "csharp", "f#": "fsharp", "golang": "go", "rs": "rust", "kt": "kotlin", "objective-c": "objc",
    "rb": "ruby", "yml": "yaml", "md": "markdown", "postgresql": "sql", "mysql": "sql", "sqlite": "sql",
}  # fmt: skip
_NAMES = set(LANGUAGES.values())


class Fence(NamedTuple):
    """A fenced block: 0-based lines of its opening and closing fence (the last line when unclosed)."""

    start: int
    end: int
    language: str | None
    closed: bool


def normalise_language(info: str) -> str | None:
    """The code reader's name for a fence's info string ("py" -> "python", "{.rust}" -> "rust")."""
    word = info.strip().split()[0] if info.strip() else ""
    word = word.strip("{}").lstrip(".").lower()
    if word.startswith("language-"):
        word = word[len("language-") :]
    if not word:
        return None
    if word in _ALIASES:
        return _ALIASES[word]
    if word in _NAMES:
        return word
    return LANGUAGES.get("." + word, word)


def find_fences(doc: Lines) -> list[Fence]:
    """CommonMark fences: up to 3 spaces of indent, a run of 3+ backticks or tildes, closed by a
    run of the same character at least as long; a backtick fence's info has no backtick; an
    unclosed fence runs to the end of the document."""
    out: list[Fence] = []
    lines, k = doc.lines, 0
    while k < len(lines):
        m = _OPEN.match(lines[k])
        if not m or (m.group(2)[0] == "`" and "`" in m.group(3)):
            k += 1
            continue
        run = m.group(2)
        close = re.compile(rf"^ {{0,3}}{re.escape(run[0])}{{{len(run)},}}[ \t]*$")
        end = next((j for j in range(k + 1, len(lines)) if close.match(lines[j])), None)
        closed = end is not None
        end = end if closed else len(lines) - 1
        out.append(Fence(k, end, normalise_language(m.group(3)), closed))
        k = end + 1
    return out


def blank_fences(doc: Lines, fences: list[Fence]) -> str:
    """The document with every fenced block's lines (fences included) left empty: the prose only."""
    lines = list(doc.lines)
    for f in fences:
        for i in range(f.start, f.end + 1):
            lines[i] = ""
    return "\n".join(lines)


def heading_paths(heads: list[tuple[int, int, int, str]]) -> list[tuple[int, str]]:
    """(first line of a heading, the heading path from there on), from markdown_headings' list."""
    stack: list[tuple[int, str]] = []
    out = []
    for start, _body, level, title in heads:
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        out.append((start, " > ".join(t for _, t in stack if t)))
    return out


def fence_items(
    path: str, doc: Lines, fences: list[Fence], headings: list[tuple[int, str]], cfg: IngestCfg, title: str
) -> list[Item]:
    """Code items of the fenced blocks, citing the lines of their content and titled by their
    heading path (`headings`: (first line of a heading, its path) in order). Like the prose of a
    Markdown file they carry no Locator: their lines already say where they are."""
    items: list[Item] = []
    for f in fences:
        lo, hi = f.start + 1, f.end - 1 if f.closed else f.end
        if hi < lo or not any(not doc.blank(i) for i in range(lo, hi + 1)):
            continue
        heading = next((h for a, h in reversed(headings) if a <= f.start), "") or None
        spans = [(lo, hi)]
        if doc.span_len(lo, hi) > cfg.max_code_chars:  # a long listing in windows, as any long file
            spans = line_windows(doc, lo, hi, cfg.code_window_lines, cfg.code_window_overlap)
        for a, b in spans:
            items.append(Item(
                key=f"{path}#L{a + 1}-{b + 1}", modality="code", source=path,
                text=doc.text(a, b)[: cfg.max_code_chars], title=heading or title, language=f.language,
                start_line=a + 1, end_line=b + 1,
                meta={"format": "markdown", "kind": "fence"},
            ))  # fmt: skip
    return items
