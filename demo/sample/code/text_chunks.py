"""Split long documents into overlapping passages for embedding."""

from __future__ import annotations


def split_words(text: str, size: int = 200, overlap: int = 40) -> list[str]:
    """Cut text into windows of `size` words that overlap by `overlap` words."""
    if overlap >= size:
        raise ValueError("overlap must be smaller than size")
    words = text.split()
    step = size - overlap
    return [" ".join(words[i : i + size]) for i in range(0, max(len(words) - overlap, 1), step)]


def split_markdown_sections(markdown: str) -> list[tuple[str, str]]:
    """Return (heading, body) pairs, one per Markdown heading."""
    sections, heading, body = [], "", []
    for line in markdown.splitlines():
        if line.startswith("#"):
            if body:
                sections.append((heading, "\n".join(body).strip()))
            heading, body = line.lstrip("#").strip(), []
        else:
            body.append(line)
    if body:
        sections.append((heading, "\n".join(body).strip()))
    return sections
