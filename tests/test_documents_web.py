"""Code inside Markdown, HTML pages and EPUB books: the readers' items against the reference
parsers' own reading of the same files (markdown-it-py's fences, lxml's tree, the EPUB's own
manifest and spine), the locators, each bad input's reason, and the doors (search, filters, CLI)."""

from __future__ import annotations

import os

import pytest
from markdown_it import MarkdownIt

from mmrag.ingest import IngestCfg, Source, read_source

TUTORIAL = """# Tutorial

Install the package and open a session.

## Reading files

```python
def read_lines(path):
    with open(path) as f:
        return f.read().splitlines()
```

The function above returns the lines of a file.

~~~ js {.numberLines}
const total = items.reduce((a, b) => a + b, 0);
~~~

```
plain listing, no language
```

````md
```not a fence inside a longer one```
````

Closing words after the listings.
"""


def read(path, cfg=None):
    notes = []
    cfg = cfg or IngestCfg()
    kind = "text" if path.suffix == ".md" else "document"
    items = read_source(Source(str(path), str(path), kind, path.stat().st_size, 0), cfg, notes.append)
    return items, notes


def test_markdown_fences_are_code_items_citing_their_lines(tmp_path):
    md = tmp_path / "tutorial.md"
    md.write_text(TUTORIAL)
    items, notes = read(md)
    assert not notes
    ref = [t for t in MarkdownIt("commonmark").parse(TUTORIAL) if t.type == "fence"]
    code = [it for it in items if it.modality == "code"]
    assert len(code) == len(ref) == 4
    lines = TUTORIAL.split("\n")
    for it, tok in zip(code, ref):
        a, b = tok.map  # markdown-it: opening fence line, the line after the closing fence (0-based)
        assert (it.start_line, it.end_line) == (a + 2, b - 1)
        assert it.text == "\n".join(lines[a + 1 : b - 1]) == tok.content.rstrip("\n")
    assert [it.language for it in code] == ["python", "javascript", None, "markdown"]
    assert code[0].title == "Tutorial > Reading files" and "locator" not in code[0].meta
    text = [it for it in items if it.modality == "text"]
    assert text and all("read_lines" not in it.text and "reduce" not in it.text for it in text)
    assert any("returns the lines" in it.text for it in text)
    assert any("Closing words" in it.text for it in text)
    for it in text:  # prose cites its own lines, which hold its text
        assert it.text.split("\n")[0] == lines[it.start_line - 1]


def test_an_unclosed_fence_runs_to_the_end_and_a_long_one_is_windowed(tmp_path):
    md = tmp_path / "open.md"
    body = "\n".join(f"x_{i} = {i}" for i in range(200))
    md.write_text(f"Intro.\n\n```py\n{body}\n")
    items, _ = read(md, IngestCfg(max_code_chars=500, code_window_lines=40, code_window_overlap=5))
    code = [it for it in items if it.modality == "code"]
    assert len(code) > 1 and all(it.language == "python" and len(it.text) <= 500 for it in code)
    assert code[0].start_line == 4 and code[-1].end_line == 203
    assert [it.text for it in items if it.modality == "text"] == ["Intro."]


def page(sections: int = 3, nav_links: int = 20) -> str:
    """A documentation page as sites write them: header, nav, aside and footer around a <main>."""
    links = "".join(f'<li><a href="/p{i}">Navigation link {i}</a></li>' for i in range(nav_links))
    body = []
    for s in range(sections):
        body.append(f"<h2>Section {s}</h2><p>Paragraph {s} about vector search and indexing.</p>")
        body.append(f'<pre><code class="language-python">def f{s}():\n    return {s}\n</code></pre>')
        body.append(f"<ul><li>Point {s}a</li><li>Point {s}b</li></ul>")
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Search guide</title>'
        "<style>p {color: red}</style><script>var nav = 1;</script></head><body>"
        f'<header><a href="/">Home</a><div class="menu">Site menu</div></header><nav><ul>{links}</ul></nav>'
        f"<main><h1>Search guide</h1><p>Welcome to the guide.</p>{''.join(body)}"
        '<figure><img src="img/chart.png" alt="A bar chart of recall"><figcaption>Recall</figcaption></figure>'
        '<img src="https://example.com/remote.png" alt="remote"><img src="../outside.png" alt="outside">'
        "</main><aside><h3>Related</h3><p>Sidebar text</p></aside><footer>Copyright footer</footer></body></html>"
    )


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("web")
    site = root / "site"
    (site / "img").mkdir(parents=True)
    Image.new("RGB", (96, 64), "navy").save(site / "img" / "chart.png")
    Image.new("RGB", (96, 64), "red").save(root / "outside.png")
    (site / "guide.html").write_text(page(), encoding="utf-8")
    (site / "tutorial.md").write_text(TUTORIAL)
    return site


def test_html_main_text_listings_and_pictures_match_lxml(web):
    from lxml import html as lhtml

    path = web / "guide.html"
    items, notes = read(path, IngestCfg())
    assert not notes
    tree = lhtml.parse(str(path)).getroot()
    main = tree.find(".//main")
    by = {m: [it for it in items if it.modality == m] for m in ("text", "code", "image")}
    pres = main.findall(".//pre")
    assert [it.text for it in by["code"]] == [p.text_content().strip("\n") for p in pres]
    assert all(it.language == "python" for it in by["code"])
    local = [i for i in main.iter("img") if not i.get("src").startswith(("http", ".."))]
    assert [it.text for it in by["image"]] == [i.get("alt") for i in local]
    assert by["image"][0].image == str((web / "img" / "chart.png").resolve())
    text = "\n".join(it.text for it in by["text"])
    for p in main.iter("p", "li", "figcaption"):  # every block of the main content is kept ...
        assert p.text_content().strip() in text
    for el in tree.iter("nav", "header", "footer", "aside"):  # ... and none of the navigation
        assert el.text_content().strip().split("\n")[0][:12] not in text
    assert by["code"][1].meta["locator"] == {
        "doc": "html",
        "part": "code",
        "heading": "Search guide > Section 1",
    }
    headings = {it.meta["locator"].get("heading") for it in by["text"]}
    assert headings == {"Search guide"} | {f"Search guide > Section {s}" for s in range(3)}


def test_html_without_main_drops_navigation_by_structure(tmp_path):
    body = page().replace("<main>", '<div class="content">').replace("</main>", "</div>")
    (tmp_path / "p.html").write_text(body)
    items, _ = read(tmp_path / "p.html")
    text = " ".join(it.text for it in items if it.modality == "text")
    assert "Welcome to the guide." in text and "Navigation link" not in text and "Sidebar" not in text
    assert "Site menu" not in text and "Copyright" not in text and "var nav" not in text


def test_html_bad_inputs_each_have_a_reason(tmp_path):
    from mmrag.errors import IngestError

    latin = tmp_path / "latin.html"  # declared and right: decoded with the declared charset
    latin.write_bytes('<meta charset="iso-8859-1"><p>Caf\xe9 cr\xe8me</p>'.encode("latin-1"))
    items, notes = read(latin)
    assert items[0].text == "Café crème" and items[0].meta["encoding"] == "iso8859-1" and not notes
    wrong = tmp_path / "wrong.html"  # declared UTF-8, written in Latin-1: replacement, and said so
    wrong.write_bytes('<meta charset="utf-8"><p>Caf\xe9</p>'.encode("latin-1"))
    items, notes = read(wrong)
    assert items[0].text == "Caf\ufffd" and "replacement characters" in notes[0].reason
    bare = tmp_path / "bare.html"  # no charset at all: UTF-8
    bare.write_bytes("<p>naïve</p>".encode())
    assert read(bare)[0][0].text == "naïve"
    big = tmp_path / "big.html"  # a huge page is refused whole, before parsing, with the cap named
    big.write_text("<p>" + "x" * 5000 + "</p>")
    with pytest.raises(IngestError, match="too large .* limit 1000"):
        read(big, IngestCfg(max_html_bytes=1000))
    deep = tmp_path / "deep.html"  # 100,000 nested elements: a flat walk, no RecursionError
    deep.write_text("<html><body>" + "<div><span>" * 50_000 + "deep text" + "</span></div>" * 50_000)
    items, notes = read(deep)
    assert "depth limit" in notes[0].reason and "not read" in notes[0].reason


CHAPTERS = {  # id -> (file, title, body); the spine reads them in SPINE order, not manifest order
    "c1": ("text/one.xhtml", "Getting started", "<p>Install the engine first.</p>"),
    "c2": (
        "text/two.xhtml",
        "Searching",
        '<h2>By image</h2><p>Query with a photo.</p><img src="../img/fig.png" alt="Query flow"/>',
    ),
    "c3": ("text/three.xhtml", "Listings", '<pre><code class="language-rust">fn main() {}</code></pre>'),
}
SPINE = ["c2", "c1", "c3"]


def make_epub(path, *, drm=None, missing=(), spine=SPINE, chapters=CHAPTERS):
    import io
    import zipfile

    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (80, 60), "green").save(png, "PNG")
    items = "".join(
        f'<item id="{k}" href="{f}" media-type="application/xhtml+xml"/>' for k, (f, _, _) in chapters.items()
    )
    opf = (
        '<?xml version="1.0" encoding="utf-8"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
        f'<metadata/><manifest>{items}<item id="fig" href="img/fig.png" media-type="image/png"/></manifest>'
        f"<spine>{''.join(f'<itemref idref={chr(34)}{k}{chr(34)}/>' for k in spine)}</spine></package>"
    )
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mimetype", "application/epub+zip")
        zf.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container xmlns="urn:oasis:names:tc:opendocument:xmlns:container" version="1.0">'
            '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>",
        )
        zf.writestr("OEBPS/content.opf", opf)
        zf.writestr("OEBPS/img/fig.png", png.getvalue())
        for _, (f, title, body) in chapters.items():
            if f in missing:
                continue
            zf.writestr(
                f"OEBPS/{f}",
                '<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml">'
                f"<head><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>",
            )
        if drm:
            zf.writestr(f"META-INF/{drm}", "<encryption/>")


def test_epub_chapters_in_spine_order_match_the_manifest(tmp_path):
    import zipfile

    from lxml import etree

    book = tmp_path / "book.epub"
    make_epub(book)
    items, notes = read(book, IngestCfg(picture_dir=str(tmp_path / "pics")))
    assert not notes
    with zipfile.ZipFile(book) as zf:
        opf = etree.fromstring(zf.read("OEBPS/content.opf"))
    ns = {"o": "http://www.idpf.org/2007/opf"}
    spine = [e.get("idref") for e in opf.findall(".//o:spine/o:itemref", ns)]
    hrefs = {e.get("id"): e.get("href") for e in opf.findall(".//o:manifest/o:item", ns)}
    titles = [CHAPTERS[k][1] for k in spine]
    # items come chapter by chapter in spine order, each citing its chapter's heading path
    firsts = []
    for it in items:
        head = it.meta["locator"]["heading"].split(" > ")[0]
        if not firsts or firsts[-1] != head:
            firsts.append(head)
    assert firsts == titles and len(spine) == len(hrefs) - 1  # the manifest's one picture is no chapter
    assert all(it.meta["locator"]["doc"] == "epub" and "page" not in it.meta["locator"] for it in items)
    image = next(it for it in items if it.modality == "image")
    assert image.text == "Query flow" and image.meta["locator"]["heading"] == "Searching > By image"
    assert os.path.isfile(image.image)
    code = next(it for it in items if it.modality == "code")
    assert (code.language, code.text) == ("rust", "fn main() {}")


def test_epub_bad_inputs_each_have_a_reason(tmp_path):
    import zipfile

    from mmrag.errors import IngestError

    for drm in ("encryption.xml", "rights.xml"):
        make_epub(tmp_path / f"drm-{drm}.epub", drm=drm)
        with pytest.raises(IngestError, match=r"DRM-protected EPUB \(skipped\)"):
            read(tmp_path / f"drm-{drm}.epub")
    fonts = tmp_path / "fonts.epub"  # font obfuscation alone is no DRM: the book is read
    make_epub(fonts)
    with zipfile.ZipFile(fonts, "a") as zf:
        zf.writestr(
            "META-INF/encryption.xml",
            '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
            'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData>'
            '<enc:EncryptionMethod Algorithm="http://www.idpf.org/2008/embedding"/></enc:EncryptedData></encryption>',
        )
    assert read(fonts, IngestCfg(picture_dir=str(tmp_path / "pics")))[0]
    make_epub(tmp_path / "bomb.epub")  # the zip's directory says more than the cap: refused unread
    with pytest.raises(IngestError, match="zip bomb .* limit 1000 \\(nothing was inflated\\)"):
        read(tmp_path / "bomb.epub", IngestCfg(max_epub_unpacked_bytes=1000))
    make_epub(tmp_path / "gap.epub", missing=("text/one.xhtml",))  # a missing chapter: the rest is kept
    items, notes = read(tmp_path / "gap.epub", IngestCfg(picture_dir=str(tmp_path / "pics")))
    assert [n.reason for n in notes] == [
        "chapter 2 (OEBPS/text/one.xhtml) is missing from the archive; skipped"
    ]
    assert {it.meta["locator"]["heading"].split(" > ")[0] for it in items} == {"Searching", "Listings"}
    (tmp_path / "junk.epub").write_bytes(b"not a zip at all")
    with pytest.raises(IngestError, match="not a zip archive"):
        read(tmp_path / "junk.epub")
    corrupt = tmp_path / "corrupt.epub"  # a chapter's bytes damaged inside the archive: CRC error
    make_epub(corrupt)
    data = bytearray(corrupt.read_bytes())
    at = data.index(b"Install the engine")
    data[at : at + 7] = b"XXXXXXX"
    corrupt.write_bytes(bytes(data))
    items, notes = read(corrupt, IngestCfg(picture_dir=str(tmp_path / "pics")))
    assert "chapter 2 (OEBPS/text/one.xhtml) is corrupt" in notes[0].reason and items


@pytest.fixture(scope="module")
def built(tmp_path_factory, web):
    from mmrag.api import Engine

    make_epub(web / "book.epub")
    coll = tmp_path_factory.mktemp("coll") / "c"
    with Engine.open(coll, write=True, models="tiny") as eng:
        report = eng.index([str(web)])
    return coll, report


def test_index_search_and_filters_through_every_door(built, web, capsys):
    from mmrag.api import Engine
    from mmrag.cli import main

    coll, report = built
    assert report.clean, report.errors
    with Engine.open(coll) as eng:
        hits = eng.search("read the lines of a file", k=200).hits
        fence = next(
            h
            for h in hits
            if h.modality == "code" and h.source.endswith("tutorial.md") and h.language == "python"
        )
        assert (fence.start_line, fence.end_line) == (8, 10) and fence.locator is None
        html = eng.search("vector search", k=200, where='doc = "html"').hits
        assert html and all(h.locator.doc == "html" and h.source.endswith("guide.html") for h in html)
        assert {h.modality for h in html} == {"text", "code", "image"}
        book = eng.search("install", k=200, where='doc = "epub" and part = figure').hits
        assert [h.locator.heading for h in book] == ["Searching > By image"]
    assert (
        main(
            [
                "search",
                "recall chart",
                "-c",
                str(coll),
                "-k",
                "50",
                "--where",
                'doc = "html" and part = figure',
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "guide.html" in out and "Search guide" in out


def test_the_same_picture_is_one_hit_naming_its_other_places(built, web, capsys):
    """img/chart.png is indexed as a file and as the figure guide.html shows: one hit stands for both."""
    import hashlib

    from mmrag.api import Engine
    from mmrag.cli import main
    from mmrag.storage.collection import Collection

    coll, _ = built
    sha = hashlib.sha256((web / "img" / "chart.png").read_bytes()).hexdigest()
    with Collection.open(coll) as c:
        rows = c.store.fetch_items(c.store.vector_ids("image").tolist())
    holding = [r for r in rows.values() if (r.get("meta") or {}).get("image_sha256") == sha]
    assert len(holding) >= 2  # the file and the page's figure are two items
    with Engine.open(coll) as eng:
        hits = eng.search("a navy chart", k=200, modalities=("image",)).hits
    shown = [h for h in hits if h.id in {r["id"] for r in holding}]
    assert len(shown) == 1 and len(shown[0].also) == len(holding) - 1
    first = shown[0]
    places = [first.where(), *first.also]
    assert len(set(places)) == len(holding)
    assert any("guide.html" in p for p in places) and any(p.endswith("chart.png") for p in places), places
    assert first.to_dict()["also"] == first.also
    assert main(["search", "a navy chart", "-c", str(coll), "-k", "200", "-m", "image"]) == 0
    assert "the same picture is also at: " in capsys.readouterr().out
