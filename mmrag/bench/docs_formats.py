"""`mmrag bench docs`, the other formats: Word, PowerPoint, HTML, EPUB and Markdown with code fences.

Each format's files are generated here (python-docx and python-pptx write the Office files, the rest
are written as text and zip entries), then read by mmrag's own reader in a fresh whole process, as
`mmrag index` reads them, and timed: parts per second (sections, slides, pages, chapters, files) and
the items they gave. The generated files are cached in the bench folder, so every run reads the same.
"""

from __future__ import annotations

import os
import random
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

from mmrag.bench import work_dir
from mmrag.bench.doc_inputs import READ_SCRIPT as _MMRAG
from mmrag.bench.doc_inputs import WORDS
from mmrag.bench.report import Figure, run_process


def _prose(rng: random.Random, words: int = 60) -> str:
    return " ".join(rng.choices(WORDS, k=words)).capitalize() + "."


def write_docx(path: Path, parts: int, rng: random.Random) -> None:
    import docx

    doc = docx.Document()
    for n in range(parts):
        doc.add_heading(f"Section {n + 1}", level=1 + n % 2)
        doc.add_paragraph(_prose(rng))
        if n % 5 == 0:
            table = doc.add_table(rows=3, cols=3)
            for row in table.rows:
                for cell in row.cells:
                    cell.text = rng.choice(WORDS)
    doc.save(str(path))


def write_pptx(path: Path, parts: int, rng: random.Random) -> None:
    from pptx import Presentation

    deck = Presentation()
    for n in range(parts):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = f"Slide {n + 1}: {rng.choice(WORDS)}"
        slide.placeholders[1].text = _prose(rng, 30)
        slide.notes_slide.notes_text_frame.text = _prose(rng, 20)
    deck.save(str(path))


def _page(rng: random.Random, title: str) -> str:
    nav = "".join(f'<li><a href="#{w}">{w}</a></li>' for w in rng.sample(WORDS, 8))
    body = "".join(
        f"<h2>{rng.choice(WORDS).title()}</h2><p>{_prose(rng)}</p>"
        + (
            f'<pre><code class="language-python">def {w}(x):\n    return x\n</code></pre>'
            if i % 3 == 0
            else ""
        )
        for i, w in enumerate(rng.sample(WORDS, 6))
    )
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head><body>'
        f"<nav><ul>{nav}</ul></nav><main><h1>{title}</h1>{body}</main><footer>{_prose(rng, 8)}</footer>"
        "</body></html>"
    )


def write_html(path: Path, parts: int, rng: random.Random) -> None:
    path.write_text(_page(rng, path.stem), encoding="utf-8")


def write_epub(path: Path, parts: int, rng: random.Random) -> None:
    items = "".join(
        f'<item id="c{n}" href="c{n}.xhtml" media-type="application/xhtml+xml"/>' for n in range(parts)
    )
    spine = "".join(f'<itemref idref="c{n}"/>' for n in range(parts))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        z.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
            '<rootfiles><rootfile full-path="OEBPS/book.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>",
        )
        z.writestr(
            "OEBPS/book.opf",
            '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
            f"<metadata/><manifest>{items}</manifest><spine>{spine}</spine></package>",
        )
        for n in range(parts):
            z.writestr(f"OEBPS/c{n}.xhtml", _page(rng, f"Chapter {n + 1}"))


def write_markdown(path: Path, parts: int, rng: random.Random) -> None:
    blocks = []
    for n in range(parts):
        blocks.append(f"## {rng.choice(WORDS).title()} {n}\n\n{_prose(rng)}\n")
        if n % 2 == 0:
            blocks.append(f"```python\ndef {rng.choice(WORDS)}_{n}(x):\n    return x * {n}\n```\n")
    path.write_text("# Tutorial\n\n" + "\n".join(blocks), encoding="utf-8")


# format -> (extension, writer, what one part is, parts per file)
FORMATS: dict[str, tuple[str, Callable[[Path, int, random.Random], None], str, int]] = {
    "Word": (".docx", write_docx, "sections", 40),
    "PowerPoint": (".pptx", write_pptx, "slides", 30),
    "HTML": (".html", write_html, "pages", 1),
    "EPUB": (".epub", write_epub, "chapters", 20),
    "Markdown with code fences": (".md", write_markdown, "sections", 30),
}


def run(quick: bool = False) -> list[Figure]:
    """One figure per format: mmrag's reader over generated files, whole process."""
    figures = []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name, (ext, write, unit, per_file) in FORMATS.items():
        files = (4 if quick else 20) * (10 if per_file == 1 else 1)
        folder = work_dir() / f"docs-{ext[1:]}-{files}x{per_file}"
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / f"f{n:03d}{ext}" for n in range(files)]
        try:
            for n, p in enumerate(paths):
                if not p.exists():
                    write(p, per_file, random.Random(n))
        except ImportError as e:
            figures.append(Figure(f"{name} {unit}/s, extraction + chunking", 0.0, f"{unit}/s",
                                  note=f"not measured: {e.name} is not installed (pip install 'mmrag[docs]')"))  # fmt: skip
            continue
        pictures = work_dir() / "docs-pictures"
        ours = run_process([sys.executable, "-c", _MMRAG, str(pictures), *map(str, paths)], env=env)
        total = files * per_file
        items = ours.output.strip().splitlines()[-1] if ours.output.strip() else "?"
        figures.append(
            Figure(
                f"{name} {unit}/s, extraction + chunking",
                total / ours.seconds,
                f"{unit}/s",
                note=f"{files} files x {per_file} {unit}, whole process: {ours.seconds:.2f} s wall, "
                f"{ours.cpu_seconds:.2f} s CPU, {items} items",
            )
        )
    return figures
