"""EPUB books (zipfile + lxml): chapters in spine order, each read as the HTML reader reads a page.

The book says its own order: META-INF/container.xml names the package (OPF), whose manifest lists
the parts and whose spine puts the chapters in reading order. Each chapter is XHTML, walked by
mmrag/ingest/html.py: text under its heading path, listings as code, pictures (from inside the
archive) as image items. Every item cites its chapter: Locator(doc="epub", heading=the chapter's
heading path), page None (a reflowable book has no pages).

Refused whole, with the reason: a book with DRM (an encryption.xml that encrypts more than fonts,
or a rights.xml), a zip whose parts inflate past max_epub_unpacked_bytes (checked from the zip's
directory before anything is inflated), no container or package. A spine item that is missing or
corrupt is skipped with its reason and the rest of the book is kept.
"""

from __future__ import annotations

import os
import posixpath
import zipfile
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

from mmrag.errors import IngestError
from mmrag.ingest.html import Block, blocks_to_items, decode_html, main_root, walk
from mmrag.ingest.notebook import _picture_size
from mmrag.ingest.pictures import picture_dir, store_bytes
from mmrag.ingest.spec import IngestCfg, Source
from mmrag.items import Item

EPUB_EXTS = (".epub",)
_CONTAINER = "META-INF/container.xml"
# font obfuscation (IDPF and Adobe): encryption.xml listing only these hides fonts, not the text
_FONT_OBFUSCATION = {"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"}
_RASTER = {".png": ".png", ".jpg": ".jpg", ".jpeg": ".jpg", ".gif": ".gif", ".webp": ".webp"}


def _xml(data: bytes):
    """An XML part parsed safely: no entities resolved, no network, no DTD loaded."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, recover=False)
    return etree.fromstring(data, parser=parser)


def _local(tag) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


class _Book:
    def __init__(self, path: str, zf: zipfile.ZipFile, cfg: IngestCfg):
        self.path, self.zf, self.cfg = path, zf, cfg
        self.names = set(zf.namelist())
        self.notes: list[tuple[str, str]] = []

    def read(self, name: str) -> bytes:
        info = self.zf.getinfo(name)
        with self.zf.open(info) as f:  # read no more than the directory said, whatever the stream holds
            data = f.read(info.file_size + 1)
        if len(data) > info.file_size:
            raise IngestError(self.path, f"part {name} inflates past the size its zip entry declares")
        return data

    def check_drm(self) -> None:
        if "META-INF/rights.xml" in self.names:
            raise IngestError(self.path, "DRM-protected EPUB (skipped): META-INF/rights.xml is present")
        if "META-INF/encryption.xml" in self.names:
            try:
                root = _xml(self.read("META-INF/encryption.xml"))
                algos = {el.get("Algorithm") for el in root.iter() if _local(el.tag) == "EncryptionMethod"}
            except Exception:
                algos = {"unknown"}
            if not algos or not algos <= _FONT_OBFUSCATION:
                raise IngestError(
                    self.path, "DRM-protected EPUB (skipped): META-INF/encryption.xml encrypts its content"
                )

    def package(self) -> tuple[str, list[tuple[str, str]]]:
        """(the OPF's path, [(idref, chapter path in the zip)] in spine order)."""
        if _CONTAINER not in self.names:
            raise IngestError(self.path, f"not an EPUB: {_CONTAINER} is missing")
        try:
            container = _xml(self.read(_CONTAINER))
        except Exception as e:
            raise IngestError(self.path, f"not an EPUB: {_CONTAINER} is not readable XML ({e})") from None
        opf = next((el.get("full-path") for el in container.iter() if _local(el.tag) == "rootfile"), None)
        if not opf or opf not in self.names:
            raise IngestError(
                self.path, f"not an EPUB: the package {opf!r} that {_CONTAINER} names is missing"
            )
        try:
            pkg = _xml(self.read(opf))
        except Exception as e:
            raise IngestError(self.path, f"the package {opf} is not readable XML ({e})") from None
        base = posixpath.dirname(opf)
        manifest = {
            el.get("id"): posixpath.normpath(
                posixpath.join(base, unquote(urlsplit(el.get("href") or "").path))
            )
            for el in pkg.iter()
            if _local(el.tag) == "item" and el.get("id")
        }
        spine = [el.get("idref") for el in pkg.iter() if _local(el.tag) == "itemref"]
        if not spine:
            raise IngestError(self.path, f"the package {opf} has no spine: no chapters to read")
        out = []
        for idref in spine:
            if idref not in manifest:
                self.notes.append((self.path, f"spine item {idref!r} is not in the manifest; skipped"))
            else:
                out.append((idref, manifest[idref]))
        return opf, out

    def picture(self, chapter: str, n: int, b: Block, loc: dict, title: str) -> Item | None:
        parts = urlsplit(b.src)
        if parts.scheme or parts.netloc:
            return None  # never fetched
        name = posixpath.normpath(posixpath.join(posixpath.dirname(chapter), unquote(parts.path)))
        ext = _RASTER.get(posixpath.splitext(name)[1].lower())
        if ext is None or name not in self.names:
            if name not in self.names:
                self.notes.append(
                    (self.path, f"chapter {n}: picture {name} is missing from the archive; skipped")
                )
            return None
        data = self.read(name)
        size = _picture_size(data)
        if isinstance(size, str) or size[0] * size[1] > self.cfg.max_image_pixels:
            why = size if isinstance(size, str) else f"is over the {self.cfg.max_image_pixels}-pixel cap"
            self.notes.append((self.path, f"chapter {n}: picture {name} {why}; skipped"))
            return None
        image, sha = store_bytes(data, ext, picture_dir(self.cfg))
        caption = (b.alt or b.heading)[: self.cfg.max_caption_chars]
        return Item(
            key="", modality="image", source=self.path, text=caption, title=b.heading or title, image=image,
            meta={"width": size[0], "height": size[1], "format": "epub", "image_sha256": sha,
                  "caption_source": "document" if caption else "none", "locator": loc},
        )  # fmt: skip


def read_epub(
    source: Source, cfg: IngestCfg, on_error: Callable[[IngestError], None] | None = None
) -> list[Item]:
    """Items of one book, chapter by chapter in spine order; a chapter or picture that cannot be
    read goes to on_error and the rest is kept."""
    path = source.path
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as e:
        raise IngestError(path, f"not an EPUB: not a zip archive ({e})") from None
    with zf:
        total = sum(i.file_size for i in zf.infolist())
        if total > cfg.max_epub_unpacked_bytes:
            raise IngestError(path, f"zip bomb or oversized EPUB: its parts inflate to {total} bytes "
                                    f"> limit {cfg.max_epub_unpacked_bytes} (nothing was inflated)")  # fmt: skip
        book = _Book(path, zf, cfg)
        book.check_drm()
        _, chapters = book.package()
        name = os.path.basename(path)
        items: list[Item] = []
        for n, (idref, part) in enumerate(chapters, 1):
            items += _chapter(book, n, idref, part, name)
    for where, reason in book.notes:
        err = IngestError(where, reason)
        if on_error is None:
            raise err
        on_error(err)
    return items


def _chapter(book: _Book, n: int, idref: str, part: str, name: str) -> list[Item]:
    import lxml.html
    from lxml import etree

    if part not in book.names:
        book.notes.append((book.path, f"chapter {n} ({part}) is missing from the archive; skipped"))
        return []
    try:
        text, _, replaced = decode_html(book.read(part))
        if text.lstrip().startswith("<?xml"):
            text = text.split("?>", 1)[1]
        root = lxml.html.document_fromstring(
            text, parser=lxml.html.HTMLParser(recover=True, remove_comments=True)
        )
    except (zipfile.BadZipFile, OSError, ValueError, etree.ParserError) as e:  # a CRC error, a broken stream
        book.notes.append((book.path, f"chapter {n} ({part}) is corrupt ({e}); skipped"))
        return []
    if replaced:
        book.notes.append((book.path, f"chapter {n} ({part}) is not UTF-8; read with replacement characters"))
    blocks = walk(main_root(root))
    title = (root.findtext(".//title") or "").strip() or idref
    for b in blocks:  # a chapter without a heading of its own is cited by its title
        b.heading = b.heading or title

    def picture(b: Block, loc: dict) -> Item | None:
        return book.picture(part, n, b, loc, title)

    return blocks_to_items(
        book.path, blocks, book.cfg, "epub", f"{name}: {title}", picture, key_prefix=f"ch{n}."
    )
