"""HTML pages (lxml): the main text under its heading path, code listings as code, local pictures.

The page's own structure says what is navigation: `<main>`/`<article>` (or role=main) when the page
has one, else the body without `<nav>`, `<header>`, `<footer>`, `<aside>` and their ARIA roles, and
without blocks whose class or id names a menu, sidebar or breadcrumb. The walk is flat
(lxml's iterwalk, no recursion), so deeply nested markup cannot exhaust Python's stack. A
`<pre>` listing becomes a code item in the language its class names (`language-x`, `lang-x`);
an `<img>` whose file lies inside the indexed folder becomes an image item captioned by its alt
text. Nothing is fetched: a URL is never followed.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import re
import warnings
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

from mmrag.errors import IngestError
from mmrag.ingest.chunking import split_chars
from mmrag.ingest.decode import read_bytes
from mmrag.ingest.fences import normalise_language
from mmrag.ingest.spec import IngestCfg, Source, deliver_notes
from mmrag.items import Item, Locator

HTML_EXTS = (".html", ".htm", ".xhtml")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9_.:-]+)""", re.I)
SKIP_TAGS = {"script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form",
             "svg", "iframe", "button", "select", "textarea", "head", "title", "object", "canvas"}  # fmt: skip
SKIP_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar"}
_NAV_WORDS = re.compile(
    r"(?:^|[\s_-])(nav|navbar|menu|sidebar|breadcrumbs?|toc|cookie|skip-link)(?:$|[\s_-])", re.I
)
BLOCK_TAGS = {"p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd", "table", "tr",
              "blockquote", "figure", "figcaption", "br", "hr", "td", "th", "caption", "body", "details",
              "summary", "address"}  # fmt: skip
HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_SPACE = re.compile(r"\s+")


def decode_html(data: bytes) -> tuple[str, str, bool]:
    """(text, encoding, replaced): a BOM, else the page's declared charset, else UTF-8; when the
    declared one is unknown or wrong, UTF-8 with replacement characters (replaced=True)."""
    for bom, enc in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return data.decode(enc, errors="replace"), enc, False
    head = data[:4096]
    m = _META_CHARSET.search(head) or _XML_ENCODING.search(head)
    tried = []
    if m:
        tried.append(m.group(1).decode("ascii").lower())
    tried.append("utf-8")
    for enc in tried:
        try:
            return data.decode(enc), codecs.lookup(enc).name, False
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("utf-8", errors="replace"), "utf-8", True


def _classes(el) -> str:
    return f"{el.get('class') or ''} {el.get('id') or ''}"


def _is_nav(el, tag: str) -> bool:
    if tag in SKIP_TAGS or (el.get("role") or "").lower() in SKIP_ROLES:
        return True
    if el.get("hidden") is not None or (el.get("aria-hidden") or "").lower() == "true":
        return True
    return tag in ("div", "ul", "ol", "section", "table") and bool(_NAV_WORDS.search(_classes(el)))


def listing_language(pre) -> str | None:
    """A listing's language from `language-x` / `lang-x` on the <pre> or its <code>, else None."""
    for el in [pre, *pre.iter("code")]:
        for cls in (el.get("class") or "").split():
            low = cls.lower()
            for prefix in ("language-", "lang-", "highlight-source-", "sourcecode-"):
                if low.startswith(prefix) and len(low) > len(prefix):
                    return normalise_language(low[len(prefix) :])
        if el.get("data-lang"):
            return normalise_language(el.get("data-lang"))
    return None


def main_root(root):
    """The page's main content: the first <main> or role=main, else its <article>s' parent when there is one
    article, else the body (navigation is then cut by the walk)."""
    for el in root.iter("main"):
        return el
    for el in root.iter():
        if isinstance(el.tag, str) and (el.get("role") or "").lower() == "main":
            return el
    articles = list(root.iter("article"))
    if len(articles) == 1:
        return articles[0]
    body = root.find("body")
    return body if body is not None else root


class Block:
    """One unit the walk found: text under a heading, a listing, or a picture."""

    __slots__ = ("kind", "text", "heading", "language", "src", "alt")

    def __init__(
        self, kind: str, text: str, heading: str, language: str | None = None, src: str = "", alt: str = ""
    ):
        self.kind, self.text, self.heading = kind, text, heading
        self.language, self.src, self.alt = language, src, alt


def walk(root) -> list[Block]:
    """Paragraphs, listings and pictures of the main content in document order, flat (no recursion)."""
    from lxml import etree

    blocks: list[Block] = []
    stack: list[tuple[int, str]] = []
    buf: list[str] = []
    heading_level = 0  # inside <hN>: its level; its text collects in hbuf
    hbuf: list[str] = []

    def path() -> str:
        return " > ".join(t for _, t in stack if t)

    def flush() -> None:
        text = _SPACE.sub(" ", "".join(buf)).strip()
        buf.clear()
        if text:
            blocks.append(Block("text", text, path()))

    def add(s: str | None) -> None:
        if s:
            (hbuf if heading_level else buf).append(s)

    walker = etree.iterwalk(root, events=("start", "end"))
    for event, el in walker:
        tag = el.tag.lower() if isinstance(el.tag, str) else ""
        if event == "start":
            if not tag:  # a comment or processing instruction: only its tail is text
                walker.skip_subtree()
                continue
            if el is not root and _is_nav(el, tag):
                walker.skip_subtree()
                continue
            if tag in HEADINGS:
                flush()
                heading_level = HEADINGS[tag]
                hbuf.clear()
            elif tag == "pre":
                flush()
                code = el.text_content().strip("\n")
                if code.strip():
                    blocks.append(Block("code", code, path(), listing_language(el)))
                walker.skip_subtree()
                continue
            elif tag == "img":
                alt = _SPACE.sub(" ", el.get("alt") or "").strip()
                if el.get("src"):
                    blocks.append(Block("image", alt, path(), src=el.get("src"), alt=alt))
            elif tag in BLOCK_TAGS:
                flush()
            add(el.text)
        else:
            if tag in HEADINGS and heading_level:
                title = _SPACE.sub(" ", "".join(hbuf)).strip()
                while stack and stack[-1][0] >= heading_level:
                    stack.pop()
                stack.append((heading_level, title))
                heading_level = 0
            elif tag in BLOCK_TAGS:
                flush()
            if el is not root:
                add(el.tail)
    flush()
    return blocks


def parse(path: str, data: bytes):
    """(lxml root, encoding, replaced, why the tree stops short when libxml2's depth limit cut it)."""
    try:
        import lxml.html
        from lxml import etree
    except ImportError:
        raise IngestError(path, "HTML support is not installed: pip install 'mmrag[docs]' (lxml)") from None
    text, encoding, replaced = decode_html(data)
    text = _XML_DECL.sub("", text, count=1)  # lxml refuses a str that declares its own encoding
    if not text.strip():
        raise IngestError(path, "empty page")
    parser = lxml.html.HTMLParser(recover=True, huge_tree=True, remove_comments=True)
    try:
        root = lxml.html.document_fromstring(text, parser=parser)
    except (etree.ParserError, etree.XMLSyntaxError, ValueError) as e:
        raise IngestError(path, f"not an HTML page lxml can read ({e})") from None
    deep = next((e.message for e in parser.error_log if "depth" in e.message.lower()), None)
    return root, encoding, replaced, deep


_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")


def local_picture(src: str, page: str, root: str) -> str | None:
    """The file an <img src> names when it lies inside the indexed folder `root`; None for a URL,
    a data: URI or a path outside."""
    parts = urlsplit(src)
    if parts.scheme or parts.netloc or not parts.path:
        return None
    target = os.path.realpath(os.path.join(os.path.dirname(page), unquote(parts.path)))
    base = os.path.realpath(root if os.path.isdir(root) else os.path.dirname(root))
    if os.path.commonpath([target, base]) != base or not os.path.isfile(target):
        return None
    return target


def blocks_to_items(
    path: str, blocks: list[Block], cfg: IngestCfg, doc: str, title: str,
    picture: Callable[[Block, dict], Item | None], extra: dict | None = None, key_prefix: str = "",
) -> list[Item]:  # fmt: skip
    """Items of a walked page: text packed per heading up to max_chunk_chars, listings, pictures.
    Shared by the EPUB reader, whose chapters are XHTML pages (`extra` adds locator fields)."""
    extra = extra or {}
    items: list[Item] = []
    counts = {"text": 0, "code": 0, "image": 0}
    pending: list[str] = []
    pending_heading = ""

    def loc(part: str, heading: str) -> dict:
        return Locator(doc=doc, part=part, heading=heading or None, **extra).to_dict()

    def emit_text() -> None:
        nonlocal pending
        if not pending:
            return
        counts["text"] += 1
        items.append(Item(
            key=f"{path}#{key_prefix}t{counts['text']}", modality="text", source=path, text="\n".join(pending),
            title=pending_heading or title, meta={"format": doc, "locator": loc("text", pending_heading)},
        ))  # fmt: skip
        pending = []

    for b in blocks:
        if b.kind == "text":
            if b.heading != pending_heading:
                emit_text()
                pending_heading = b.heading
            pieces = [b.text] if len(b.text) <= cfg.max_chunk_chars else split_chars(
                b.text, cfg.max_chunk_chars, cfg.chunk_overlap_chars
            )  # fmt: skip
            for piece in pieces:
                if pending and sum(len(p) + 1 for p in pending) + len(piece) > cfg.max_chunk_chars:
                    emit_text()
                pending.append(piece)
            continue
        emit_text()
        pending_heading = b.heading
        if b.kind == "code":
            counts["code"] += 1
            items.append(Item(
                key=f"{path}#{key_prefix}code{counts['code']}", modality="code", source=path,
                text=b.text[: cfg.max_code_chars], title=b.heading or title, language=b.language,
                meta={"format": doc, "kind": "listing", "locator": loc("code", b.heading)},
            ))  # fmt: skip
        elif b.kind == "image":
            item = picture(b, loc("figure", b.heading))
            if item is not None:
                counts["image"] += 1
                item.key = f"{path}#{key_prefix}img{counts['image']}"
                items.append(item)
    emit_text()
    return items


def _picture(path, b: Block, cfg, title, root_dir, notes, loc) -> Item | None:
    from PIL import Image

    target = local_picture(b.src, path, root_dir)
    if target is None:
        return None  # a URL, a data: URI or a file outside the indexed folder: never fetched
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(target) as img:
                w, h = img.size
    except Exception:
        notes.append((path, f"picture {b.src!r} is not an image Pillow can read; skipped"))
        return None
    if w * h > cfg.max_image_pixels:
        notes.append(
            (
                path,
                f"picture {b.src!r} of {w}x{h} pixels is over the {cfg.max_image_pixels}-pixel cap; skipped",
            )
        )
        return None
    with open(target, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    caption = (b.alt or b.heading)[: cfg.max_caption_chars]
    return Item(
        key="", modality="image", source=path, text=caption, title=b.heading or title, image=target,
        meta={"width": w, "height": h, "format": "html", "image_sha256": sha,
              "caption_source": "document" if caption else "none", "locator": loc},
    )  # fmt: skip


def read_html(
    source: Source, cfg: IngestCfg, on_error: Callable[[IngestError], None] | None = None
) -> list[Item]:
    """Items of one page; a page over max_html_bytes is refused whole, a picture mmrag cannot read
    and a charset that did not decode go to on_error, and the rest is kept."""
    path = source.path
    data = read_bytes(path, cfg.max_html_bytes)
    root, encoding, replaced, deep = parse(path, data)
    notes: list[tuple[str, str]] = []
    if deep:
        notes.append(
            (path, f"markup nested past libxml2's depth limit ({deep}); the text below it is not read")
        )
    if replaced:
        notes.append(
            (path, "not valid in its declared charset nor UTF-8; read as UTF-8 with replacement characters")
        )
    title = _SPACE.sub(" ", root.findtext(".//title") or "").strip() or os.path.basename(path)

    def picture(b: Block, loc: dict) -> Item | None:
        return _picture(path, b, cfg, title, source.root, notes, loc)

    items = blocks_to_items(path, walk(main_root(root)), cfg, "html", title, picture)
    if encoding not in ("utf-8", "utf-8-sig"):
        for it in items:
            it.meta["encoding"] = encoding
    return deliver_notes(items, notes, on_error)
