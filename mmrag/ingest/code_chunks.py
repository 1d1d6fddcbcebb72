"""The code chunk shapes both splitters make (Python's `ast` in code.py, tree-sitter in treesitter.py):
a definition whole or in windows, a class as its summary, the module code left between definitions."""

from __future__ import annotations

from dataclasses import dataclass

from mmrag.ingest.chunking import Lines, line_windows, pack, single_lines
from mmrag.ingest.spec import IngestCfg

MODULE = "<module>"


@dataclass
class Chunk:
    """A piece of code before it becomes an Item; lines are 1-based and inclusive."""

    text: str
    start: int
    end: int
    symbol: str | None = None
    kind: str = "window"  # function | method | class | module | window
    truncated: bool = False


def window_chunks(
    doc: Lines, lo: int, hi: int, cfg: IngestCfg, symbol: str | None = None, kind: str = "window"
) -> list[Chunk]:
    """Windows of cfg.code_window_lines over lines [lo, hi] (0-based), each cut again by characters if needed."""
    out = []
    for a, b in line_windows(doc, lo, hi, cfg.code_window_lines, cfg.code_window_overlap):
        if doc.span_len(a, b) <= cfg.max_code_chars:
            out.append(Chunk(doc.text(a, b), a + 1, b + 1, symbol, kind))
        else:
            overlap = cfg.max_code_chars // 10
            out.extend(Chunk(p.text, p.start_line, p.end_line, symbol, kind)
                       for p in pack(doc, single_lines(doc, a, b), cfg.max_code_chars, overlap))  # fmt: skip
    return out


def _fits(doc: Lines, a: int, b: int, cfg: IngestCfg) -> bool:
    return (
        b - a + 1 <= cfg.code_window_lines + cfg.code_window_overlap
        and doc.span_len(a, b) <= cfg.max_code_chars
    )


def symbol_chunk(doc: Lines, a: int, b: int, symbol: str, kind: str, cfg: IngestCfg) -> list[Chunk]:
    """One chunk for a definition on lines [a, b] (0-based), or windows of it when it is very long."""
    if _fits(doc, a, b, cfg):
        return [Chunk(doc.text(a, b), a + 1, b + 1, symbol, kind)]
    return window_chunks(doc, a, b, cfg, symbol, kind)


def summary_chunk(doc: Lines, a: int, b: int, keep: list[int], symbol: str, cfg: IngestCfg) -> Chunk:
    """A class as its header, docstring, attributes and member signatures (exact lines, bodies left out)."""
    lines = [doc.lines[i] for i in keep]
    truncated = len(lines) > cfg.code_window_lines
    lines = lines[: cfg.code_window_lines]
    text = "\n".join(lines)
    if len(text) > cfg.max_code_chars:
        text, truncated = text[: cfg.max_code_chars], True
    return Chunk(text, a + 1, b + 1, symbol, "class", truncated)


def module_chunks(doc: Lines, covered: list[bool], cfg: IngestCfg, keep_short: bool) -> list[Chunk]:
    """Top-level code outside definitions (docstring, imports, constants, main block); fewer than
    3 lines count only when keep_short (a module docstring, or a file with nothing else)."""
    free = [i for i in range(len(doc)) if not covered[i] and not doc.blank(i)]
    if not free or (len(free) < 3 and not keep_short):
        return []
    runs, start = [], free[0] if free else 0
    for prev, cur in zip(free, free[1:] + [None]):
        if cur is None or any(covered[prev + 1 : cur]):
            runs.append((start, prev))
            start = cur
    units = []
    for a, b in runs:
        units.extend(
            [(a, b)]
            if _fits(doc, a, b, cfg)
            else [(c.start - 1, c.end - 1) for c in window_chunks(doc, a, b, cfg)]
        )
    out: list[Chunk] = []
    group: list[tuple[int, int]] = []

    def flush() -> None:
        if group:
            text = "\n".join(doc.text(x, y) for x, y in group)
            out.append(Chunk(text, group[0][0] + 1, group[-1][1] + 1, MODULE, "module"))
            group.clear()

    for a, b in units:
        n_lines = sum(y - x + 1 for x, y in group) + b - a + 1
        n_chars = sum(doc.span_len(x, y) + 1 for x, y in group) + doc.span_len(a, b)
        if n_lines > cfg.code_window_lines or n_chars > cfg.max_code_chars:
            flush()
        group.append((a, b))
    flush()
    return out
