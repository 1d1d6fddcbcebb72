"""`mmrag bench docs`: PDF pages per second, text extraction and chunking, against pypdf.

Both sides run as a whole fresh process over the same generated PDFs, as a user meets them: mmrag
reads each file with its PDF reader (PDFium in its worker process, pictures taken out too), pypdf
extracts each page's text and cuts it with the same chunker, so the difference is the extraction.
The PDFs are written here byte by byte (text pages in Helvetica, a picture every fourth page): no
generator library is needed, and the same inputs come back on every run (cached in the bench folder).
Target: >= 100 pages/s, so that the encoders, not the parser, stay the bottleneck of indexing.
"""

from __future__ import annotations

import os
import sys
import zlib
from pathlib import Path

from mmrag.bench import work_dir
from mmrag.bench.doc_inputs import READ_SCRIPT as _MMRAG
from mmrag.bench.doc_inputs import WORDS
from mmrag.bench.report import Figure, run_process, speed_ratio

TARGET_PAGES_PER_S = 100.0


_INDEX = """
import sys
from mmrag.cli import main
sys.exit(main(["index", sys.argv[1], "-c", sys.argv[2], "--models", sys.argv[3], "-q"]))
"""

_PYPDF = """
import sys
from pypdf import PdfReader
from mmrag.ingest.chunking import Lines, pack, paragraphs
chunks = 0
for p in sys.argv[1:]:
    for page in PdfReader(p).pages:
        lines = Lines(page.extract_text() or "")
        chunks += len(pack(lines, paragraphs(lines, 0, len(lines) - 1), 1000, 150))
print(chunks)
"""


def run(quick: bool = False) -> list[Figure]:
    docs, pages = (4, 25) if quick else (10, 100)
    folder = work_dir() / f"docs-{docs}x{pages}"
    paths = make_corpus(folder, docs, pages)
    total = docs * pages
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    pictures = work_dir() / "docs-pictures"  # outside the corpus folder, which the index figure reads
    ours = run_process([sys.executable, "-c", _MMRAG, str(pictures), *map(str, paths)], env=env)
    what = f"{docs} PDFs x {pages} pages"
    figures = [
        Figure(
            "PDF pages/s, extraction + chunking",
            total / ours.seconds,
            "pages/s",
            target=TARGET_PAGES_PER_S,
            note=f"{what}, whole process: {ours.seconds:.2f} s wall, {ours.cpu_seconds:.2f} s CPU, "
            f"{ours.output.strip().splitlines()[-1]} items (pictures taken out too)",
        )
    ]
    # the index of one of the PDFs: embedding thousands of chunks takes minutes on two cores
    one = work_dir() / f"docs-index-1x{pages}"
    make_corpus(one, 1, pages)
    figures.append(index_figure(one, pages, ours.seconds * pages / total, quick, env))
    try:
        import pypdf  # noqa: F401
    except ImportError:
        figures[0].note += "; pypdf is not installed (pip install pypdf), so no reference row"
        return figures + _other_formats(quick)
    ref = run_process([sys.executable, "-c", _PYPDF, *map(str, paths)], env=env)
    figures.append(
        speed_ratio(
            "PDF pages per CPU-second vs pypdf",
            total / ours.cpu_seconds,
            total / ref.cpu_seconds,
            "pages/CPU-s",
            1.0,
            note="the same runs by CPU time (the parser worker's included): what a busy machine's wall time hides",
        )
    )
    figures.append(
        speed_ratio(
            "PDF pages/s vs pypdf",
            total / ours.seconds,
            total / ref.seconds,
            "pages/s",
            1.0,
            note=f"{what}, whole process, the same chunker: pypdf {ref.seconds:.2f} s wall, "
            f"{ref.output.strip().splitlines()[-1]} chunks",
        )
    )
    return figures + _other_formats(quick)


def _other_formats(quick: bool) -> list[Figure]:
    """Word, PowerPoint, HTML, EPUB and Markdown with code fences (mmrag/bench/docs_formats.py)."""
    from mmrag.bench import docs_formats

    return docs_formats.run(quick)


def index_figure(folder: Path, pages: int, parse_seconds: float, quick: bool, env: dict) -> Figure:
    """`mmrag index` of a folder of these PDFs into a new collection, whole process: how the parse
    compares with embedding and writing. The model set's exports are paid first, on a two-page PDF."""
    import re
    import tempfile

    models = "tiny" if quick else "offline"  # offline: the installed MiniLM, no download
    warm = work_dir() / "docs-warm"
    make_corpus(warm, 1, 2)
    with tempfile.TemporaryDirectory() as tmp:
        run_process([sys.executable, "-c", _INDEX, str(warm), f"{tmp}/warm", models], env=env)
        run = run_process([sys.executable, "-c", _INDEX, str(folder), f"{tmp}/c", models], env=env)
    found = re.search(r"(\d+) items embedded", run.output)
    items = found.group(1) if found else "?"
    return Figure(
        f"mmrag index of one such PDF (--models {models})",
        pages / run.seconds,
        "pages/s",
        note=f"{pages} pages, {run.seconds:.1f} s wall, {run.cpu_seconds:.1f} s CPU: parsing about "
        f"{parse_seconds:.1f} s of it (the extraction run's rate), the rest loading the models, embedding "
        f"{items} items and writing the collection",
    )


def make_corpus(folder: Path, docs: int, pages: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for d in range(docs):
        path = folder / f"doc{d:03d}.pdf"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(pdf_bytes(pages, seed=d))
            tmp.replace(path)
        out.append(path)
    return out


def pdf_bytes(pages: int, seed: int) -> bytes:
    """A PDF of `pages` pages of text (45 lines of Helvetica each), a 256 x 192 picture every fourth."""
    import random

    rng = random.Random(seed)
    objects: list[bytes] = [b"", b""]  # catalog and page tree, filled in last
    font = _add(objects, b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    kids = []
    for p in range(pages):
        lines = [f"Page {p + 1} of document {seed}."] + [
            " ".join(rng.choice(WORDS) for _ in range(12)) + "." for _ in range(44)
        ]
        ops = ["BT /F1 10 Tf 14 TL 56 790 Td"] + [f"({line}) Tj T*" for line in lines] + ["ET"]
        resources = f"/Font << /F1 {font} 0 R >>"
        if p % 4 == 3:
            pixels = _chart(rng.randrange(1 << 30))
            img = _add(objects, _stream(
                "/Type /XObject /Subtype /Image /Width 256 /Height 192 /ColorSpace /DeviceRGB "
                "/BitsPerComponent 8 /Filter /FlateDecode", zlib.compress(pixels)))  # fmt: skip
            resources += f" /XObject << /Im1 {img} 0 R >>"
            ops.append("q 256 0 0 192 170 60 cm /Im1 Do Q")
        content = _add(objects, _stream("", "\n".join(ops).encode("latin-1")))
        kids.append(_add(objects, f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents {content} 0 R "
                                  f"/Resources << {resources} >> >>".encode()))  # fmt: skip
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[1] = (
        f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>".encode()
    )
    body = bytearray(b"%PDF-1.7\n")
    offsets = []
    for n, obj in enumerate(objects, 1):
        offsets.append(len(body))
        body += f"{n} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(body)
    body += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    body += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    body += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(body)


def _chart(seed: int, w: int = 256, h: int = 192) -> bytes:
    """A picture like a document's figure: a soft gradient behind a few solid bars (noise would
    make every PNG encoder look slow, and no document is made of it)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([200 + 55 * x / w, 210 + 45 * y / h, np.full((h, w), 235.0)], axis=-1)
    for k in range(6):
        top = int(rng.integers(20, h - 10))
        img[top : h - 8, 20 + 38 * k : 48 + 38 * k] = rng.integers(0, 200, 3)
    return img.astype(np.uint8).tobytes()


def _add(objects: list[bytes], body: bytes) -> int:
    objects.append(body)
    return len(objects)


def _stream(head: str, data: bytes) -> bytes:
    return f"<< {head} /Length {len(data)} >>\nstream\n".encode() + data + b"\nendstream"
