"""Word (.docx, python-docx) and PowerPoint (.pptx, python-pptx) documents.

A .docx becomes text chunks per section (the body between headings), each citing its heading path,
with tables as text (a row per line, cells joined by " | "), and its pictures as image items citing
their section. A .pptx becomes one text item per slide (title, body, tables, speaker notes) citing
the slide number, and its pictures as image items citing their slide. Headers, footers and
comments of a .docx are left out: docs/documents.md says why.

Both formats are ZIP packages of XML. Before a parser sees one, the ZIP directory is checked: an
OLE file (a legacy .doc/.ppt renamed, or a password-protected document) is named as such, and a
package whose parts would inflate past MAX_UNZIPPED_BYTES (a zip bomb) is refused. zipfile stops
inflating a part at the size its directory declares, so a part that lies about its size cannot
inflate past the sum checked here. Both libraries are pure Python over lxml, so they run in-process.
"""

from __future__ import annotations

import importlib
import io
import os
import re
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable

from mmrag.errors import IngestError
from mmrag.ingest.chunking import Lines, pack, paragraphs
from mmrag.ingest.pictures import picture_dir, store_bytes
from mmrag.ingest.spec import IngestCfg, Source, deliver_notes
from mmrag.items import Item, Locator

DOCX_EXTS = (".docx",)
PPTX_EXTS = (".pptx",)
MAX_UNZIPPED_BYTES = 200_000_000  # an office file's text and pictures; past this a package is a bomb
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Compound File Binary: .doc, .ppt, and encrypted OOXML
_RASTER = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/bmp": ".bmp",
           "image/tiff": ".tiff", "image/webp": ".webp"}  # fmt: skip
_FILE_NAME = re.compile(r"^[^\s/\\]*\.(?:png|jpe?g|gif|bmp|tiff?|webp|emf|wmf|svg)$", re.IGNORECASE)
_W = {"w": "http://schemas.openxmlformats.org/wordprocessingml/2006/main"}
_MAIN_PART = {"docx": "word/document.xml", "pptx": "ppt/presentation.xml"}
_LEGACY = {"docx": "Word 97-2003 .doc", "pptx": "PowerPoint 97-2003 .ppt"}

Notes = list[tuple[str, str]]


def read_docx(
    source: Source, cfg: IngestCfg, on_error: Callable[[IngestError], None] | None = None
) -> list[Item]:
    """Items of one Word document; a picture mmrag cannot read goes to on_error, the rest is kept."""
    return _read_package(source, cfg, on_error, "docx", "Word", "python-docx")


def read_pptx(
    source: Source, cfg: IngestCfg, on_error: Callable[[IngestError], None] | None = None
) -> list[Item]:
    """Items of one PowerPoint deck: a text item per slide and its pictures."""
    return _read_package(source, cfg, on_error, "pptx", "PowerPoint", "python-pptx")


def _read_package(source: Source, cfg: IngestCfg, on_error, kind: str, app: str, library: str) -> list[Item]:
    """The package checked (a .doc under a .docx name, a bomb, a missing part), parsed by its library,
    read into items; a library's failure inside the document is one reason for the file."""
    path = source.path
    try:
        module = importlib.import_module(kind)
    except ImportError:
        raise IngestError(
            path, f"{app} support is not installed: pip install 'mmrag[docs]' ({library})"
        ) from None
    raw = _check_package(path, cfg, kind)
    if kind == "docx":
        document = _parse(path, kind, lambda: module.Document(io.BytesIO(raw)))
        reader: _Docx | _Pptx = _Docx(path, cfg)
    else:
        document = _parse(path, kind, lambda: module.Presentation(io.BytesIO(raw)))
        reader = _Pptx(path, cfg)
    try:
        if kind == "docx":
            reader.read(document)
        else:
            for n, slide in enumerate(document.slides, 1):
                reader.slide(n, slide)
    except (MemoryError, RecursionError):
        raise
    except Exception as e:  # a dangling relationship, a part the library does not expect
        raise IngestError(path, f"damaged .{kind}: {type(e).__name__}: {e}") from None
    return deliver_notes(reader.items, reader.notes, on_error)


def _check_package(path: str, cfg: IngestCfg, fmt: str) -> bytes:
    """The file's bytes once it is known to be a ZIP package of sane inflated size with its main part."""
    size = os.path.getsize(path)
    if size > cfg.max_document_bytes:
        raise IngestError(path, f"document too large ({size} bytes > limit {cfg.max_document_bytes})")
    with open(path, "rb") as f:
        raw = f.read()
    if not raw:
        raise IngestError(path, f"empty file (0 bytes), not a .{fmt}")
    if raw.startswith(_OLE):
        raise IngestError(path, f"not a .{fmt}: an OLE compound file, i.e. a {_LEGACY[fmt]} file under a "
                                f".{fmt} name or a password-protected document; save it as .{fmt} without a password")  # fmt: skip
    if not raw.startswith(b"PK"):
        raise IngestError(path, f"not a .{fmt}: not a ZIP package (no PK header)")
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as e:
        raise IngestError(path, f"damaged .{fmt}: the ZIP package cannot be read ({e})") from None
    total = sum(i.file_size for i in infos)
    if total > MAX_UNZIPPED_BYTES:
        biggest = max(infos, key=lambda i: i.file_size)
        raise IngestError(path, f"zip bomb refused: its parts inflate to {total} bytes (> cap {MAX_UNZIPPED_BYTES}; "
                                f"{biggest.filename} alone {biggest.file_size})")  # fmt: skip
    names = {i.filename for i in infos}
    for part in ("[Content_Types].xml", _MAIN_PART[fmt]):
        if part not in names:
            raise IngestError(path, f"damaged .{fmt}: the package has no {part} part")
    return raw


def _parse(path: str, fmt: str, load: Callable):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load()
    except (MemoryError, RecursionError):
        raise
    except (zipfile.BadZipFile, zlib.error) as e:  # a part whose data does not inflate, or whose CRC is wrong
        raise IngestError(path, f"damaged .{fmt}: a part of the package is corrupt ({e})") from None
    except KeyError as e:  # a relationship names a part the package lacks
        raise IngestError(
            path, f"damaged .{fmt}: a part it refers to is missing ({e.args[0] if e.args else e})"
        ) from None
    except Exception as e:  # lxml's syntax errors, the libraries' own errors
        raise IngestError(path, f"damaged .{fmt}: {type(e).__name__}: {e}") from None


def _picture_size(data: bytes) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                return img.size
    except Exception:
        return None


class _Reader:
    """What the two formats share: chunked text items and stored pictures, each with its Locator."""

    fmt = ""

    def __init__(self, path: str, cfg: IngestCfg):
        self.path, self.cfg = path, cfg
        self.name = os.path.basename(path)
        self.folder = picture_dir(cfg)
        self.items: list[Item] = []
        self.notes: Notes = []
        self.pictures = 0

    def text(self, key: str, text: str, title: str, loc: Locator) -> None:
        doc = Lines(text)
        if not text.strip():
            return
        pieces = pack(
            doc, paragraphs(doc, 0, len(doc) - 1), self.cfg.max_chunk_chars, self.cfg.chunk_overlap_chars
        )
        for k, p in enumerate(pieces, 1):
            self.items.append(Item(
                key=key + (f".{k}" if k > 1 else ""), modality="text", source=self.path, text=p.text,
                title=title, meta={"format": self.fmt, "locator": loc.to_dict()},
            ))  # fmt: skip

    def picture(
        self, data: bytes, content_type: str, caption: str, loc: Locator, where: str, key: str
    ) -> None:
        ext = _RASTER.get(content_type)
        if ext is None:
            self.notes.append((where, f"{where.split('#')[-1]}: a {content_type} picture is not a raster "
                                      "format mmrag reads (EMF/WMF/SVG are not rasterised); skipped"))  # fmt: skip
            return
        size = _picture_size(data)
        if size is None:
            self.notes.append(
                (where, f"{where.split('#')[-1]}: a {content_type} picture Pillow cannot read; skipped")
            )
            return
        w, h = size
        if w * h > self.cfg.max_image_pixels:
            self.notes.append(
                (
                    where,
                    f"a picture of {w}x{h} pixels is over the {self.cfg.max_image_pixels}-pixel cap; skipped",
                )
            )
            return
        if min(w, h) < self.cfg.min_picture_px:  # a bullet, an icon or a rule
            return
        image_path, sha = store_bytes(data, ext, self.folder)
        caption = caption[: self.cfg.max_caption_chars]
        self.items.append(Item(
            key=key, modality="image", source=self.path, text=caption,
            title=f"{self.name} {loc.label()}".strip(), image=image_path,
            meta={"width": w, "height": h, "format": self.fmt, "image_sha256": sha,
                  "caption_source": "document" if caption else "none", "locator": loc.to_dict()},
        ))  # fmt: skip


def _join(parts: Iterable[str]) -> str:
    return " — ".join(p for p in parts if p)


# --- Word --------------------------------------------------------------------------------------
class _Docx(_Reader):
    fmt = "docx"

    def __init__(self, path: str, cfg: IngestCfg):
        super().__init__(path, cfg)
        self.stack: list[tuple[int, str]] = []  # the heading path in force
        self.lines: list[str] = []  # the current section's text, paragraphs apart by blank lines
        self.sections = 0
        self.levels: dict[str | None, int | None] = {}  # style id -> heading level

    @property
    def heading(self) -> str | None:
        return " > ".join(t for _, t in self.stack if t) or None

    def read(self, document) -> None:
        self._blocks(document.element.body, document._body)
        self._flush()

    def _blocks(self, element, parent) -> None:
        """Paragraphs and tables in document order, those inside content controls (w:sdt: a cover
        page's fields, a template's boxes) included, except a table of contents (the headings again)."""
        from docx.table import Table
        from docx.text.paragraph import Paragraph

        for child in element.iterchildren():
            tag = child.tag.rsplit("}", 1)[-1]
            if tag == "p":
                self._paragraph(Paragraph(child, parent))
            elif tag == "tbl":
                self._table(Table(child, parent))
            elif tag == "sdt":
                gallery = child.xpath("./w:sdtPr/w:docPartObj/w:docPartGallery/@w:val", namespaces=_W)
                if gallery and "table of contents" in str(gallery[0]).lower():
                    continue
                for content in child.xpath("./w:sdtContent", namespaces=_W):
                    self._blocks(content, parent)

    def _paragraph(self, p) -> None:
        text = " ".join(p.text.split())
        sid = p._p.style  # the style's id; resolving it by name costs a scan of every style each time
        if sid not in self.levels:
            self.levels[sid] = _heading_level(p)
        level = self.levels[sid]
        if level is not None and text:
            self._flush()
            while self.stack and self.stack[-1][0] >= level:
                self.stack.pop()
            self.stack.append((level, text))
        elif text:
            self.lines += [text, ""]
        self._pictures(p._p, p.part, text)

    def _table(self, table) -> None:
        rows = []
        for row in table.rows:
            cells, seen = [], set()
            for cell in row.cells:  # a merged cell is returned once per grid column it spans
                if id(cell._tc) in seen:
                    continue
                seen.add(id(cell._tc))
                cells.append(" ".join(cell.text.split()))
                for p in cell.paragraphs:
                    self._pictures(p._p, p.part, " ".join(p.text.split()))
            if any(cells):
                rows.append(" | ".join(cells))
        if rows:
            self.lines += [*rows, ""]

    def _pictures(self, element, part, text: str) -> None:
        for blip in element.xpath(".//a:blip"):
            rid = blip.get("{http://schemas.openxmlformats.org/officeDocument/2006/relationships}embed")
            if not rid:
                continue  # a linked (external) picture: nothing in the package to read
            image = part.related_parts[rid]
            alt = _alt_text(blip)
            loc = Locator(doc="docx", heading=self.heading, part="figure")
            self.pictures += 1
            key = f"{self.path}#fig{self.pictures}"
            self.picture(
                image.blob, image.content_type, _join((self.heading or "", alt or text)), loc, key, key
            )

    def _flush(self) -> None:
        text = "\n".join(self.lines).strip()
        self.lines = []
        if not text:
            return
        self.sections += 1
        loc = Locator(doc="docx", heading=self.heading, part="text")
        title = f"{self.name} {self.heading}" if self.heading else self.name  # as the CLI cites it
        self.text(f"{self.path}#sec{self.sections}", text, title, loc)


def _heading_level(p) -> int | None:
    """1-9 for "Heading N", 0 for "Title", from the paragraph's style (or its base style)."""
    style = p.style
    for _ in range(4):  # a custom style based on a heading is a heading of that level
        if style is None:
            return None
        name = (style.name or "").strip().lower()
        if name == "title":
            return 0
        if name.startswith("heading ") and name[8:].isdigit():
            return int(name[8:])
        style = style.base_style
    return None


def _alt_text(element) -> str:
    """The picture's description (alt text), from the docPr/cNvPr element of its drawing."""
    node = element
    for _ in range(12):
        node = node.getparent()
        if node is None:
            return ""
        for tag in ("docPr", "cNvPr"):
            found = [c for c in node if c.tag.endswith("}" + tag)]
            if found:
                return _description(found[0].get("descr") or "")
    return ""


def _description(descr: str) -> str:
    """A picture's alt text, but not the file name that python-docx and python-pptx write there."""
    alt = " ".join(descr.split())
    return "" if _FILE_NAME.match(alt) else alt


# --- PowerPoint --------------------------------------------------------------------------------
class _Pptx(_Reader):
    fmt = "pptx"

    def slide(self, n: int, slide) -> None:
        title_shape = slide.shapes.title
        title = " ".join(title_shape.text_frame.text.split()) if title_shape is not None else ""
        body: list[str] = []
        k = 0  # pictures on this slide
        for shape in _shapes(slide.shapes):
            if title_shape is not None and shape.shape_id == title_shape.shape_id:
                continue
            if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
                text = "\n".join(" ".join(p.text.split()) for p in shape.text_frame.paragraphs)
                if text.strip():
                    body.append(text.strip())
            if getattr(shape, "has_table", False) and shape.has_table:
                rows = [" | ".join(" ".join(c.text.split()) for c in row.cells) for row in shape.table.rows]
                body.append("\n".join(r for r in rows if r.strip(" |")))
            if _has_image(shape):
                image = shape.image
                alt = _description((shape._element.xpath("./*/p:cNvPr/@descr") or [""])[0])
                loc = Locator(doc="pptx", slide=n, heading=title or None, part="figure")
                k += 1
                key = f"{self.path}#s{n}.fig{k}"
                self.picture(
                    image.blob, image.content_type, _join((title, alt)), loc, f"{self.path}#s{n}", key
                )
        notes = ""
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            notes = slide.notes_slide.notes_text_frame.text.strip()
        parts = [title, "\n".join(body), f"Notes: {notes}" if notes else ""]
        text = "\n\n".join(p for p in parts if p)
        loc = Locator(doc="pptx", slide=n, heading=title or None, part="text")
        self.text(f"{self.path}#s{n}", text, f"{self.name} slide {n}" + (f": {title}" if title else ""), loc)


def _shapes(shapes):
    """Every shape on a slide, the members of group shapes included, in z-order."""
    from pptx.shapes.group import GroupShape

    for shape in shapes:
        if isinstance(shape, GroupShape):
            yield from _shapes(shape.shapes)
        else:
            yield shape


def _has_image(shape) -> bool:
    """A picture shape (or a picture placeholder) whose picture is inside the package."""
    if not hasattr(shape, "image"):
        return False
    try:
        shape.image  # noqa: B018 - a linked or empty picture raises here
    except (ValueError, KeyError, AttributeError):
        return False
    return True
