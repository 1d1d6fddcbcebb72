"""PDFs (PDFium, through pypdfium2): text chunked within pages, embedded pictures as image items,
pages without a text layer rendered whole. Every item carries a Locator: page, printed page label,
heading path from the outline, and a figure's bounding box.

PDFium runs in a worker process (mmrag/ingest/isolate.py): `extract_pdf` is what runs there, and
`read_pdf` is the reader the registry calls. Pictures are written by the worker into the picture
folder (mmrag/ingest/pictures.py), so only Items cross the pipe.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from collections.abc import Callable

from mmrag.errors import IngestError
from mmrag.ingest.chunking import Lines, pack, paragraphs
from mmrag.ingest.isolate import RetireWorker, run_isolated
from mmrag.ingest.pictures import picture_dir, store_bytes, store_image
from mmrag.ingest.spec import IngestCfg, Source, deliver_notes
from mmrag.items import Item, Locator

PDF_EXTS = (".pdf",)
RENDER_PX = 1024  # a page without text is rendered to this long edge: CLIP sees 224 px, a thumbnail 256
CAPTION_BAND = 72.0  # points (1 inch) below, then above, a picture searched for its "Figure N" caption
MIN_PICTURE_PT = 36.0  # a picture drawn smaller than half an inch either way is a bullet or an icon
MAX_REPEATS_LISTED = 50  # pages a repeated picture (a logo) lists besides the one it is cited at
_FIGURE = re.compile(r"\b(?:fig(?:ure)?\.?|abbildung|figura)\s*\d+[a-z]?\b", re.IGNORECASE)
_SNIFF = 1024  # PDF readers accept a header within the first KiB

Notes = list[tuple[str, str]]


def read_pdf(
    source: Source, cfg: IngestCfg, on_error: Callable[[IngestError], None] | None = None
) -> list[Item]:
    """Items of one PDF, parsed in a time-boxed worker; per-part problems (a picture over the pixel
    cap) go to on_error and the rest of the document is kept."""
    path = source.path
    if importlib.util.find_spec("pypdfium2") is None:
        raise IngestError(path, "PDF support is not installed: pip install 'mmrag[docs]' (pypdfium2)")
    _check_file(path, cfg)
    items, notes = run_isolated(
        "mmrag.ingest.pdf:extract_pdf", path, cfg, picture_dir(cfg),
        timeout=cfg.doc_timeout_s, memory_bytes=cfg.doc_memory_bytes,
    )  # fmt: skip
    return deliver_notes(items, notes, on_error)


def page_png(path: str, page: int, size: int, cfg: IngestCfg | None = None) -> bytes:
    """One page as a PNG, its long edge `size` pixels: a PDF hit's thumbnail. Rendered in the time-boxed
    worker, as parsing is (PDFium is not thread-safe, and a server renders for many requests)."""
    cfg = cfg or IngestCfg()
    return run_isolated(
        "mmrag.ingest.pdf:render_page_png", path, page, size,
        timeout=min(cfg.doc_timeout_s, 60.0), memory_bytes=cfg.doc_memory_bytes,
    )  # fmt: skip


def _check_file(path: str, cfg: IngestCfg) -> None:
    """Reasons a file is no PDF worth starting a parser for: too big, or another format named .pdf."""
    size = os.path.getsize(path)
    if size > cfg.max_document_bytes:
        raise IngestError(path, f"document too large ({size} bytes > limit {cfg.max_document_bytes})")
    with open(path, "rb") as f:
        head = f.read(_SNIFF)
    if not head:
        raise IngestError(path, "empty file (0 bytes), not a PDF")
    if b"%PDF-" not in head:
        low = head.lstrip().lower()
        what = (
            "HTML" if low.startswith((b"<!doctype html", b"<html")) or b"<html" in low[:200]
            else "a ZIP archive" if head.startswith(b"PK\x03\x04")
            else "text" if all(32 <= c < 127 or c in b"\t\r\n" for c in head[:200])
            else "binary data"
        )  # fmt: skip
        raise IngestError(path, f"not a PDF: the file holds {what}, with no %PDF- header")


# --- in the worker -----------------------------------------------------------------------------
def extract_pdf(path: str, cfg: IngestCfg, folder: str) -> tuple[list[Item], Notes]:
    """(items, notes) of one PDF; raises IngestError when the document cannot be opened at all."""
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as e:  # its error code is per process: the next file gets a fresh one
        raise RetireWorker(path, _open_reason(e)) from None
    try:
        n = len(pdf)
        if n == 0:
            raise IngestError(path, "PDF has no pages")
        headings = _outline(pdf, n)
        doc = _Doc(path, cfg, folder)
        bad: list[int] = []
        for i in range(n):
            try:  # a broken page tree (a loop, a missing object) loses that page alone
                page = pdf[i]
            except pdfium.PdfiumError:
                bad.append(i + 1)
                continue
            try:
                doc.page(page, i, _label(pdf, i), headings[i])
            finally:
                page.close()
        if len(bad) == n:
            raise IngestError(path, f"damaged PDF: none of its {n} page(s) can be loaded (broken page tree)")
        if bad:
            shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
            doc.notes.append((f"{path}#p{bad[0]}", f"{len(bad)} of {n} pages cannot be loaded (p. {shown}); "
                                                  "the others are indexed"))  # fmt: skip
        return doc.items, doc.notes
    finally:
        pdf.close()


def render_page_png(path: str, page: int, size: int) -> bytes:
    """(In the worker.) PNG bytes of 1-based `page`, scaled so its long edge is `size` pixels."""
    import io

    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as e:
        raise RetireWorker(path, _open_reason(e)) from None
    try:
        if not 1 <= page <= len(pdf):
            raise IngestError(path, f"the PDF has no page {page} (it has {len(pdf)})")
        p = pdf[page - 1]
        width, height = p.get_size()
        img = p.render(scale=size / max(width, height, 1.0)).to_pil()
        buf = io.BytesIO()
        img.save(buf, "PNG")
        return buf.getvalue()
    finally:
        pdf.close()


def _open_reason(e: Exception) -> str:
    import pypdfium2.raw as raw

    code = getattr(e, "err_code", None)
    if code == raw.FPDF_ERR_PASSWORD:
        return "password required: the PDF is encrypted with a user password (skipped)"
    if code == raw.FPDF_ERR_SECURITY:
        return "unsupported security handler (encryption PDFium cannot open)"
    if code == raw.FPDF_ERR_FORMAT:
        return "damaged PDF: PDFium cannot read its structure (truncated or corrupt)"
    if code == raw.FPDF_ERR_FILE:
        return "cannot open the file"
    if code == raw.FPDF_ERR_SUCCESS:  # PDFium declines a document without a page to show, with no error code
        return "PDF has no pages (an empty or missing page tree)"
    return f"cannot open the PDF ({e})"


def _label(pdf, i: int) -> str | None:
    try:
        label = pdf.get_page_label(i)
    except Exception:  # a damaged /PageLabels tree: physical numbers only
        return None
    return label or None


def _outline(pdf, n: int) -> list[str | None]:
    """The heading path in force on each page, from the outline (bookmarks); None where none is."""
    marks: list[tuple[int, int, str]] = []  # (page, order, path)
    stack: list[tuple[int, str]] = []
    try:
        for order, bm in enumerate(pdf.get_toc(max_depth=8)):
            title = " ".join((bm.get_title() or "").split())
            while stack and stack[-1][0] >= bm.level:
                stack.pop()
            stack.append((bm.level, title))
            dest = bm.get_dest()
            page = dest.get_index() if dest is not None else None
            if page is not None and 0 <= page < n and title:
                marks.append((page, order, " > ".join(t for _, t in stack if t)))
    except Exception:  # a damaged outline costs the headings after the damage, never the document
        pass
    out: list[str | None] = [None] * n
    marks.sort()
    k, current = 0, None
    for p in range(n):
        while k < len(marks) and marks[k][0] <= p:
            current = marks[k][2]
            k += 1
        out[p] = current
    return out


class _Doc:
    """Items and notes of one document, with the pictures already seen (by their stream's hash)."""

    def __init__(self, path: str, cfg: IngestCfg, folder: str):
        self.path, self.cfg, self.folder = path, cfg, folder
        self.name = os.path.basename(path)
        self.items: list[Item] = []
        self.notes: Notes = []
        self.seen: dict[str, Item] = {}
        self.figures = 0  # pictures kept on the current page, for their keys

    def page(self, page, i: int, label: str | None, heading: str | None) -> None:

        n = i + 1
        self.figures = 0
        textpage = page.get_textpage()
        try:
            text = _clean(textpage.get_text_range())
            loc = dict(doc="pdf", page=n, page_label=label, heading=heading)
            rotation = page.get_rotation()
            if text.strip():
                self._text(text, loc, rotation)
                for obj in _images(page):
                    self._picture(obj, textpage, page, loc)
            else:
                self._render(page, loc, rotation)
        finally:
            textpage.close()

    def _text(self, text: str, loc: dict, rotation: int) -> None:
        lines = Lines(text)
        pieces = pack(lines, paragraphs(lines, 0, len(lines) - 1), self.cfg.max_chunk_chars,
                      self.cfg.chunk_overlap_chars)  # fmt: skip
        title = loc["heading"] or self.name
        meta: dict = {"format": "pdf", "locator": Locator(**loc, part="text").to_dict()}
        if rotation:
            meta["rotation"] = rotation
        for k, p in enumerate(pieces, 1):
            self.items.append(Item(key=f"{self.path}#p{loc['page']}.t{k}", modality="text", source=self.path,
                                   text=p.text, title=title, meta=dict(meta)))  # fmt: skip

    def _picture(self, obj, textpage, page, loc: dict) -> None:
        cfg = self.cfg
        try:
            pw, ph = obj.get_px_size()
            left, bottom, right, top = obj.get_bounds()
        except Exception:
            return
        if min(pw, ph) < cfg.min_picture_px or min(right - left, top - bottom) < MIN_PICTURE_PT:
            return
        where = f"{self.path}#p{loc['page']}"
        if pw * ph > cfg.max_image_pixels:
            self.notes.append((where, f"picture of {pw}x{ph} pixels on p. {loc['page']} is over the "
                                      f"{cfg.max_image_pixels}-pixel cap; skipped, the page's text is indexed"))  # fmt: skip
            return
        filters = obj.get_filters()
        raw_data = bytes(obj.get_data(decode_simple=False))
        digest = hashlib.sha256(raw_data + f"|{pw}x{ph}|{','.join(filters)}".encode()).hexdigest()
        first = self.seen.get(digest)
        if first is not None:  # a logo or a header drawn again: one item, its other pages listed
            pages = first.meta.setdefault("also_on_pages", [])
            if loc["page"] != first.meta["locator"]["page"] and loc["page"] not in pages:
                if len(pages) < MAX_REPEATS_LISTED:
                    pages.append(loc["page"])
                first.meta["repeats"] = first.meta.get("repeats", 1) + 1
            return
        try:
            if filters == ["DCTDecode"]:  # a JPEG as embedded: kept byte for byte
                image_path, sha = store_bytes(raw_data, ".jpg", self.folder)
            else:
                image_path, sha = store_image(obj.get_bitmap(render=False).to_pil(), self.folder)
        except MemoryError:
            raise
        except Exception as e:
            self.notes.append(
                (where, f"picture on p. {loc['page']} cannot be decoded ({type(e).__name__}: {e})")
            )
            return
        bbox = tuple(round(v, 1) for v in (left, bottom, right, top))
        caption = _caption(textpage, (left, bottom, right, top), page.get_width(), page.get_height(),
                           cfg.max_caption_chars)  # fmt: skip
        self.figures += 1
        nth = self.figures
        item = Item(
            key=f"{self.path}#p{loc['page']}.fig{nth}", modality="image", source=self.path, text=caption,
            title=f"{self.name} {Locator(**loc).label()}", image=image_path,
            meta={"width": pw, "height": ph, "format": "pdf", "image_sha256": sha,
                  "caption_source": "document" if caption else "none",
                  "locator": Locator(**loc, part="figure", bbox=bbox).to_dict()},
        )  # fmt: skip
        self.seen[digest] = item
        self.items.append(item)

    def _render(self, page, loc: dict, rotation: int) -> None:
        """A page with no text layer (a scan, a slide saved as a picture): the whole page as a picture."""

        sizes = [o.get_px_size() for o in _images(page)]
        if not sizes and pdfium_raw().FPDFPage_CountObjects(page) <= 0:
            return  # a blank page: nothing to find
        over = [(w, h) for w, h in sizes if w * h > self.cfg.max_image_pixels]
        if over:
            w, h = over[0]
            self.notes.append((f"{self.path}#p{loc['page']}",
                               f"p. {loc['page']} has no text and a picture of {w}x{h} pixels, over the "
                               f"{self.cfg.max_image_pixels}-pixel cap; the page is not rendered"))  # fmt: skip
            return
        width, height = page.get_size()
        scale = RENDER_PX / max(width, height, 1.0)
        img = page.render(scale=scale).to_pil()
        image_path, sha = store_image(img, self.folder)
        self.items.append(Item(
            key=f"{self.path}#p{loc['page']}.page", modality="image", source=self.path, text=loc["heading"] or "",
            title=f"{self.name} {Locator(**loc).label()}", image=image_path,
            meta={"width": img.width, "height": img.height, "format": "pdf", "image_sha256": sha,
                  "caption_source": "document" if loc["heading"] else "none", "no_text_layer": True,
                  **({"rotation": rotation} if rotation else {}),
                  "locator": Locator(**loc, part="page-render").to_dict()},
        ))  # fmt: skip


def _images(page, max_depth: int = 4):
    """The page's picture objects, forms descended into: pypdfium2's get_objects wraps every object of
    the page (the text runs too) before filtering, which cost more than the text extraction itself."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    def walk(parent, count, get, form, level):
        for i in range(count(parent)):
            obj = get(parent, i)
            if not obj:
                continue
            kind = raw.FPDFPageObj_GetType(obj)
            if kind == raw.FPDF_PAGEOBJ_IMAGE:
                yield pdfium.PdfObject(obj, page=page, pdf=page.pdf, container=form, level=level)
            elif kind == raw.FPDF_PAGEOBJ_FORM and level < max_depth - 1:
                sub = pdfium.PdfObject(obj, page=page, pdf=page.pdf, container=form, level=level)
                yield from walk(sub, raw.FPDFFormObj_CountObjects, raw.FPDFFormObj_GetObject, sub, level + 1)

    yield from walk(page, raw.FPDFPage_CountObjects, raw.FPDFPage_GetObject, None, 0)


def pdfium_raw():
    import pypdfium2.raw as raw

    return raw


def _clean(text: str) -> str:
    """PDFium's text: CRLF lines, form feeds and NULs out; hyphenation kept (it may be real)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").replace("\x0c", "\n")


def _caption(
    textpage, box: tuple[float, float, float, float], width: float, height: float, limit: int
) -> str:
    """The "Figure N ..." text just below the picture, else just above it; "" when there is none."""
    left, bottom, right, top = box
    bands = ((max(0.0, bottom - CAPTION_BAND), bottom), (top, min(height, top + CAPTION_BAND)))
    for lo, hi in bands:
        if hi <= lo:
            continue
        band = _clean(textpage.get_text_bounded(left=0, bottom=lo, right=width, top=hi))
        m = _FIGURE.search(band)
        if m:
            return " ".join(band[m.start() :].split())[:limit]
    return ""
