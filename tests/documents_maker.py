"""Documents the tests make: PDFs (reportlab, or raw bytes for the broken ones) and notebooks
(nbformat), tiny and deterministic, so every case is built where it is checked."""

from __future__ import annotations

import base64
import io
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

LOREM = (
    "Gradient descent lowers the loss step by step. The learning rate sets the step size, and a schedule "
    "lowers it as training goes on. Convergence is checked on a held-out set."
)


def noise(w: int, h: int, seed: int) -> Image.Image:
    """A picture no other test picture equals (random pixels: PNG keeps them byte for byte)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((h, w, 3)) * 255).astype("uint8"))


def png_b64(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def make_pdf(
    path: Path,
    pages: int = 3,
    *,
    logo: bool = True,
    figures: dict[int, str] | None = None,  # page (1-based) -> caption under a figure on it
    outline: bool = True,
    labels: bool = False,
    scan_page: int | None = None,  # a page with a picture and no text layer
    rotate: int = 0,
    encrypt: tuple[str, str] | None = None,  # (user password, owner password)
    text: str = LOREM,
    font: tuple[str, object] | None = None,  # (name, a reportlab font to register)
) -> Path:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    enc = None
    if encrypt is not None:
        from reportlab.lib import pdfencrypt

        enc = pdfencrypt.StandardEncryption(encrypt[0], encrypt[1], canPrint=1)
    c = canvas.Canvas(str(path), pagesize=A4, encrypt=enc, invariant=1)
    if font is not None:
        from reportlab.pdfbase import pdfmetrics

        pdfmetrics.registerFont(font[1])
    if labels:  # i, ii for the front matter, then 1, 2, ...
        c.addPageLabel(0, style="ROMAN_LOWER")
        c.addPageLabel(min(2, pages - 1), style="ARABIC", start=1)
    figures = figures or {}
    for p in range(1, pages + 1):
        if rotate:
            c.setPageRotation(rotate)
        if outline:
            c.bookmarkPage(f"p{p}")
            c.addOutlineEntry(f"Chapter {p}" if p % 2 else f"Section {p}", f"p{p}", level=0 if p % 2 else 1)
        if p == scan_page:
            c.drawImage(ImageReader(noise(400, 560, 100 + p)), 50, 100, 495, 690)
            c.showPage()
            continue
        if logo:
            c.drawImage(ImageReader(noise(80, 80, 0)), 20, 780, 50, 50)
        c.setFont(font[0] if font else "Helvetica", 11)
        y = 740
        for line in _wrap(f"Page {p}. {text}", 80):
            c.drawString(72, y, line)
            y -= 14
        if p in figures:
            c.drawImage(ImageReader(noise(300, 200, p)), 100, 400, 300, 200)
            c.setFont("Helvetica", 10)
            c.drawString(100, 385, figures[p])
        c.showPage()
    c.save()
    return path


def _wrap(text: str, width: int) -> list[str]:
    lines, cur = [], ""
    for word in text.split():
        if len(cur) + len(word) + 1 > width:
            lines.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}".strip()
    return [*lines, cur] if cur else lines


def raw_pdf(objects: list[bytes], root: int = 1) -> bytes:
    """A PDF from numbered object bodies (1..n), with a correct xref table: for broken structures
    reportlab would never write (a circular reference, a huge picture)."""
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root {root} 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def _stream(head: str, data: bytes) -> bytes:
    return f"<< {head} /Length {len(data)} >>\nstream\n".encode() + data + b"\nendstream"


def huge_picture_pdf(path: Path, side: int = 20_000) -> Path:
    """One page with text and a side x side picture (its data never needs decoding to refuse it)."""
    content = (
        b"BT /F1 12 Tf 72 720 Td (A page with a very large picture.) Tj ET q 400 0 0 400 100 200 cm /Im1 Do Q"
    )
    path.write_bytes(
        raw_pdf([
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> /XObject << /Im1 6 0 R >> >> >>",
            _stream("", content),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            _stream(
                f"/Type /XObject /Subtype /Image /Width {side} /Height {side} /ColorSpace /DeviceGray "
                "/BitsPerComponent 8 /Filter /FlateDecode",
                zlib.compress(b"\0" * 4096),
            ),
        ])
    )  # fmt: skip
    return path


def circular_pdf(path: Path) -> Path:
    """A page tree whose Pages node lists itself among its kids, and a page that is its own parent."""
    content = b"BT /F1 12 Tf 72 720 Td (Circular page tree.) Tj ET"
    path.write_bytes(
        raw_pdf([
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>",
            b"<< /Type /Page /Parent 3 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            _stream("", content),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ])
    )  # fmt: skip
    return path


def zero_page_pdf(path: Path) -> Path:
    path.write_bytes(raw_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"]))
    return path


def make_notebook(path: Path, *, language: str = "python", kernel: str = "python3", plots: int = 1) -> Path:
    """Markdown with headings, code cells with stream, error and picture outputs, an attachment."""
    import nbformat
    from nbformat import v4

    nb = v4.new_notebook(
        metadata={"kernelspec": {"name": kernel, "language": language, "display_name": kernel}}
    )
    cells = [
        v4.new_markdown_cell("# Training report\n\nHow the model was trained and how it did."),
        v4.new_code_cell(
            "import numpy as np\nlosses = np.linspace(1, 0.1, 50)\nprint(losses.min())",
            execution_count=1,
            outputs=[v4.new_output("stream", name="stdout", text="0.1\n")],
        ),
        v4.new_markdown_cell("## Loss curve\n\nThe loss falls quickly, then levels off."),
    ]
    for k in range(plots):
        cells.append(
            v4.new_code_cell(
                f"# plot the loss curve {k}\nplt.plot(losses)",
                execution_count=2 + k,
                outputs=[
                    v4.new_output(
                        "display_data",
                        data={
                            "image/png": png_b64(noise(120, 90, 50 + k)),
                            "text/plain": "<Figure size 640x480>",
                        },
                    )
                ],
            )
        )
    cells.append(
        v4.new_code_cell(
            "1 / 0",
            execution_count=9,
            outputs=[
                v4.new_output(
                    "error",
                    ename="ZeroDivisionError",
                    evalue="division by zero",
                    traceback=[
                        "\x1b[0;31m------------------------------------\x1b[0m",
                        "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero",
                    ],
                )
            ],
        )
    )
    md = v4.new_markdown_cell("## Architecture\n\n![the network diagram](attachment:net.png)")
    md["attachments"] = {"net.png": {"image/png": png_b64(noise(100, 100, 77))}}
    cells.append(md)
    nb.cells = cells
    nbformat.write(nb, str(path))
    return path
