"""Cutting lines into spans: windows of lines for code, packed paragraphs for text, characters as a last resort."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import accumulate
from typing import NamedTuple


class Piece(NamedTuple):
    """A chunk of a document: its text and 1-based inclusive line span."""

    text: str
    start_line: int
    end_line: int


class Lines:
    """A document as lines (0-based here), with O(1) character length of any span."""

    def __init__(self, text: str):
        self.lines = text.split("\n")
        self._pre = [0, *accumulate(len(x) + 1 for x in self.lines)]

    def __len__(self) -> int:
        return len(self.lines)

    def span_len(self, a: int, b: int) -> int:
        """Characters in lines a..b (inclusive), newlines between them counted."""
        return self._pre[b + 1] - self._pre[a] - 1

    def text(self, a: int, b: int) -> str:
        return "\n".join(self.lines[a : b + 1])

    def blank(self, i: int) -> bool:
        return not self.lines[i].strip()

    def piece(self, a: int, b: int) -> Piece:
        return Piece(self.text(a, b), a + 1, b + 1)


def split_chars(text: str, max_chars: int, overlap: int) -> list[str]:
    """Cut one over-long line into pieces of at most max_chars, preferring to cut at whitespace."""
    overlap = min(overlap, max_chars // 2)
    out, i, n = [], 0, len(text)
    while i < n:
        end = min(i + max_chars, n)
        if end < n:
            cut = text.rfind(" ", i + max_chars // 2, end)
            end = cut + 1 if cut > 0 else end
        piece = text[i:end]
        if piece.strip():
            out.append(piece)
        if end >= n:
            break
        i = max(i + 1, end - overlap)
    return out


def paragraphs(doc: Lines, lo: int, hi: int) -> list[tuple[int, int]]:
    """Runs of non-blank lines in [lo, hi] as inclusive spans."""
    spans, start = [], None
    for i in range(lo, hi + 1):
        if doc.blank(i):
            if start is not None:
                spans.append((start, i - 1))
                start = None
        elif start is None:
            start = i
    if start is not None:
        spans.append((start, hi))
    return spans


def single_lines(doc: Lines, lo: int, hi: int) -> list[tuple[int, int]]:
    return [(i, i) for i in range(lo, hi + 1) if not doc.blank(i)]


def pack(doc: Lines, units: Iterable[tuple[int, int]], max_chars: int, overlap_chars: int) -> list[Piece]:
    """Greedily join consecutive units into spans of at most max_chars, each starting with the
    previous span's trailing lines (up to overlap_chars); a unit too big alone is cut by lines, then characters."""
    out: list[Piece] = []
    cur: tuple[int, int] | None = None  # the span being built

    def flush() -> None:
        nonlocal cur
        if cur is not None:
            out.append(doc.piece(*cur))
            cur = None

    for a, b in _fit(doc, units, max_chars):
        if a == b and doc.span_len(a, a) > max_chars:  # one huge line: character pieces, no line overlap
            flush()
            out.extend(Piece(t, a + 1, a + 1) for t in split_chars(doc.lines[a], max_chars, overlap_chars))
            continue
        if cur is not None and doc.span_len(cur[0], b) > max_chars:
            prev = cur
            flush()
            k = _overlap_start(doc, prev, overlap_chars)
            if k is not None and doc.span_len(k, b) <= max_chars:
                cur = (k, prev[1])
        cur = (a, b) if cur is None else (cur[0], b)
    flush()
    return out


def _fit(doc: Lines, units: Iterable[tuple[int, int]], max_chars: int) -> Iterable[tuple[int, int]]:
    """Units as given, except that one over max_chars is broken into its non-blank lines."""
    for a, b in units:
        if a == b or doc.span_len(a, b) <= max_chars:
            yield a, b
        else:
            yield from single_lines(doc, a, b)


def _overlap_start(doc: Lines, span: tuple[int, int], overlap_chars: int) -> int | None:
    """First line of the longest tail of span within overlap_chars, never the whole span."""
    a, b = span
    k = None
    i = b
    while i > a and doc.span_len(i, b) <= overlap_chars:
        k = i
        i -= 1
    while k is not None and k <= b and doc.blank(k):
        k += 1
    return k if k is not None and k <= b else None


def line_windows(doc: Lines, lo: int, hi: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """Windows of about `window` lines over [lo, hi], cut at a blank line in a window's second half
    when there is one; neighbours share `overlap` lines. Blank edges are trimmed."""
    spans: list[tuple[int, int]] = []
    s = lo
    while s <= hi:
        while s <= hi and doc.blank(s):
            s += 1
        if s > hi:
            break
        end = min(s + window - 1, hi)  # inclusive
        if end < hi:
            for k in range(end, s + window // 2 - 1, -1):
                if doc.blank(k):
                    end = k - 1
                    break
        e = end
        while e > s and doc.blank(e):
            e -= 1
        spans.append((s, e))
        if end >= hi:
            break
        s = max(s + 1, end + 1 - overlap)
    return spans
