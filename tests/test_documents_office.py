"""Word and PowerPoint: the readers' items against python-docx's and python-pptx's own counts on
documents the tests make with those libraries, the locator of each item through search, the CLI
and filters (`doc = "pptx"`, `slide <= 3`), and a clear per-file reason for each bad input."""

from __future__ import annotations

import io
import json
import os
import random
import zipfile

import pytest

docx = pytest.importorskip("docx")
pptx = pytest.importorskip("pptx")

from docx.oxml import parse_xml  # noqa: E402
from docx.oxml.ns import nsdecls  # noqa: E402
from docx.shared import Inches as DocxInches  # noqa: E402
from PIL import Image  # noqa: E402
from pptx.enum.shapes import MSO_SHAPE_TYPE  # noqa: E402
from pptx.util import Inches  # noqa: E402

from mmrag.api import Engine  # noqa: E402
from mmrag.cli import main  # noqa: E402
from mmrag.errors import IngestError  # noqa: E402
from mmrag.ingest import IngestCfg, Source, office, read_source  # noqa: E402
from mmrag.rag.prompt import location  # noqa: E402

SLIDES = 5


def png(color: str, size=(160, 120)) -> io.BytesIO:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    buf.seek(0)
    return buf


def make_docx(path) -> None:
    d = docx.Document()
    d.add_heading("Annual report", 0)
    d.add_paragraph("This report covers the turbine maintenance programme.")
    d.add_heading("Methods", 1)
    d.add_paragraph("Vibration was measured on every blade.")
    d.add_picture(png("red"), width=DocxInches(2))
    d.inline_shapes[-1]._inline.docPr.set("descr", "vibration spectrum of blade 3")
    table = d.add_table(rows=3, cols=3)
    for i, row in enumerate(table.rows):
        for j, cell in enumerate(row.cells):
            cell.text = "blade" if (i, j) == (0, 0) else f"r{i}c{j}"
    d.add_heading("Calibration", 2)
    d.add_paragraph("Sensors were calibrated against a reference shaker.")
    d.add_heading("Results", 1)
    d.add_paragraph("Blade 3 showed a crack near the root.")
    d.add_picture(png("green"), width=DocxInches(2))
    # a content control holding a paragraph (as a cover page's fields), and a table of contents in one
    boxed = d.add_paragraph("Inspected by the field team.")._p
    sdt = parse_xml(f"<w:sdt {nsdecls('w')}><w:sdtPr/><w:sdtContent/></w:sdt>")
    boxed.addprevious(sdt)
    sdt[1].append(boxed)
    toc = parse_xml(f'<w:sdt {nsdecls("w")}><w:sdtPr><w:docPartObj><w:docPartGallery w:val="Table of Contents"/>'
                    f"</w:docPartObj></w:sdtPr><w:sdtContent><w:p><w:r><w:t>Contents entry</w:t></w:r></w:p>"
                    "</w:sdtContent></w:sdt>")  # fmt: skip
    d.element.body.insert(0, toc)
    d.sections[0].header.paragraphs[0].text = "CONFIDENTIAL running header"
    d.sections[0].footer.paragraphs[0].text = "page footer text"
    d.save(str(path))


def make_pptx(path) -> None:
    p = pptx.Presentation()
    for n in range(1, SLIDES + 1):
        s = p.slides.add_slide(p.slide_layouts[1])
        s.shapes.title.text = f"Quarter {n} roadmap"
        s.placeholders[1].text = f"Milestone {n}: ship the search engine part {n}"
        s.notes_slide.notes_text_frame.text = f"Say that slide {n} is about the roadmap"
        if n in (2, 3):
            pic = s.shapes.add_picture(png("blue" if n == 2 else "yellow"), Inches(5), Inches(4))
            if n == 3:
                pic._element.nvPicPr.cNvPr.set("descr", "a yellow architecture diagram")
        if n == SLIDES:  # a grouped text box and a table
            group = s.shapes.add_group_shape()
            group.shapes.add_textbox(
                Inches(1), Inches(5), Inches(3), Inches(1)
            ).text_frame.text = "Grouped aside"
            table = s.shapes.add_table(2, 2, Inches(5), Inches(5), Inches(3), Inches(1)).table
            for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)):
                table.cell(i, j).text = f"t{i}{j}"
    p.save(str(path))


def read(path, cfg):
    notes = []
    src = Source(str(path), str(path), "document", os.path.getsize(path), 0)
    return read_source(src, cfg, notes.append), notes


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    root = tmp_path_factory.mktemp("office")
    make_docx(root / "report.docx")
    make_pptx(root / "talk.pptx")
    return root


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return IngestCfg(picture_dir=str(tmp_path_factory.mktemp("pictures")))


def test_docx_items_match_python_docx(docs, cfg):
    items, notes = read(docs / "report.docx", cfg)
    assert notes == []
    d = docx.Document(str(docs / "report.docx"))
    headings = [p.text for p in d.paragraphs if p.style.name == "Title" or p.style.name.startswith("Heading")]
    texts = [it for it in items if it.modality == "text"]
    figures = [it for it in items if it.modality == "image"]
    # every heading here has body text under it: one section (one chunk: all are short) each
    assert [t.meta["locator"]["heading"].split(" > ")[-1] for t in texts] == headings
    assert len(figures) == len(d.inline_shapes) == 2
    by_heading = {t.meta["locator"]["heading"]: t for t in texts}
    assert set(by_heading) == {
        "Annual report",
        "Annual report > Methods",
        "Annual report > Methods > Calibration",
        "Annual report > Results",
    }
    methods = by_heading["Annual report > Methods"]
    rows = ["blade | r0c1 | r0c2", "r1c0 | r1c1 | r1c2", "r2c0 | r2c1 | r2c2"]
    assert methods.text == "Vibration was measured on every blade.\n\n" + "\n".join(rows)
    assert all(t.meta["locator"] == {"doc": "docx", "part": "text", "heading": t.meta["locator"]["heading"]}
               for t in texts)  # fmt: skip
    assert [f.meta["locator"]["heading"] for f in figures] == [
        "Annual report > Methods",
        "Annual report > Results",
    ]
    assert all(f.meta["locator"]["part"] == "figure" and os.path.isfile(f.image) for f in figures)
    assert figures[0].text == "Annual report > Methods — vibration spectrum of blade 3"
    assert (figures[0].meta["width"], figures[0].meta["height"]) == (160, 120)
    # headers and footers are left out (docs/documents.md)
    assert not any("CONFIDENTIAL" in it.text or "footer" in it.text for it in items)
    # a content control's paragraph is read (python-docx's own iteration skips it), a table of contents is not
    assert by_heading["Annual report > Results"].text.endswith("Inspected by the field team.")
    assert not any("Contents entry" in it.text for it in items)


def test_pptx_items_match_python_pptx(docs, cfg):
    items, notes = read(docs / "talk.pptx", cfg)
    assert notes == []
    deck = pptx.Presentation(str(docs / "talk.pptx"))
    pictures = [(n, sh) for n, s in enumerate(deck.slides, 1) for sh in s.shapes
                if sh.shape_type == MSO_SHAPE_TYPE.PICTURE]  # fmt: skip
    texts = [it for it in items if it.modality == "text"]
    figures = [it for it in items if it.modality == "image"]
    assert len(texts) == len(deck.slides) == SLIDES
    assert [f.meta["locator"]["slide"] for f in figures] == [n for n, _ in pictures] == [2, 3]
    for n, (t, slide) in enumerate(zip(texts, deck.slides), 1):
        title = slide.shapes.title.text
        assert t.meta["locator"] == {"doc": "pptx", "slide": n, "part": "text", "heading": title}
        extra = "\nGrouped aside\nt00 | t01\nt10 | t11" if n == SLIDES else ""
        assert t.text == (
            f"{title}\n\n{slide.placeholders[1].text}{extra}\n\nNotes: {slide.notes_slide.notes_text_frame.text}"
        )
    assert figures[1].text == "Quarter 3 roadmap — a yellow architecture diagram"
    assert figures[0].text == "Quarter 2 roadmap"  # python-pptx's default description is the file name


# --- bad input: one clear reason per file --------------------------------------------------------
def _rezip(src, dst, drop=(), replace=None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.filename in drop:
                continue
            zout.writestr(info, (replace or {}).get(info.filename, zin.read(info.filename)))


def _reason(path, cfg) -> str:
    with pytest.raises(IngestError) as e:
        read(path, cfg)
    return e.value.reason


def test_bad_inputs_each_get_a_reason(docs, cfg, tmp_path, monkeypatch):
    good_docx, good_pptx = docs / "report.docx", docs / "talk.pptx"
    doc = tmp_path / "legacy.docx"  # what Word 97-2003 writes: an OLE compound file
    doc.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 1024)
    assert "OLE compound file" in _reason(doc, cfg) and "Word 97-2003 .doc" in _reason(doc, cfg)
    text = tmp_path / "notes.pptx"
    text.write_text("just some text")
    assert _reason(text, cfg) == "not a .pptx: not a ZIP package (no PK header)"
    (tmp_path / "empty.docx").write_bytes(b"")
    assert _reason(tmp_path / "empty.docx", cfg) == "empty file (0 bytes), not a .docx"
    truncated = tmp_path / "truncated.docx"
    truncated.write_bytes(good_docx.read_bytes()[: good_docx.stat().st_size // 2])
    assert _reason(truncated, cfg).startswith("damaged .docx: the ZIP package cannot be read")
    missing = tmp_path / "nobody.docx"
    _rezip(good_docx, missing, drop={"word/document.xml"})
    assert _reason(missing, cfg) == "damaged .docx: the package has no word/document.xml part"
    nodeck = tmp_path / "nodeck.pptx"
    _rezip(good_pptx, nodeck, drop={"ppt/presentation.xml"})
    assert _reason(nodeck, cfg) == "damaged .pptx: the package has no ppt/presentation.xml part"
    with zipfile.ZipFile(good_docx) as z:
        media = next(n for n in z.namelist() if n.startswith("word/media/"))
    nopic = tmp_path / "nopicture.docx"  # a relationship pointing at a part that is not there
    _rezip(good_docx, nopic, drop={media})
    assert _reason(nopic, cfg) == (
        f"damaged .docx: a part it refers to is missing (There is no item named '{media}' in the archive)"
    )
    badxml = tmp_path / "badxml.docx"
    _rezip(good_docx, badxml, replace={"word/document.xml": b"<w:document><unclosed"})
    assert _reason(badxml, cfg).startswith("damaged .docx: XMLSyntaxError")
    corrupt = tmp_path / "corrupt.pptx"  # a part whose stored bytes no longer match their CRC
    raw = bytearray(good_pptx.read_bytes())
    with zipfile.ZipFile(good_pptx) as z:
        info = z.getinfo("ppt/presentation.xml")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw[start + 10 : start + 40] = bytes(30)
    corrupt.write_bytes(bytes(raw))
    assert _reason(corrupt, cfg).startswith("damaged .pptx: a part of the package is corrupt (Error -3 while")
    # a zip bomb: parts that inflate past the cap are refused before any part is read
    monkeypatch.setattr(office, "MAX_UNZIPPED_BYTES", 2_000_000)
    bomb = tmp_path / "bomb.docx"
    _rezip(good_docx, bomb, replace={media: bytes(3_000_000)})
    assert bomb.stat().st_size < 100_000
    assert _reason(bomb, cfg).startswith("zip bomb refused: its parts inflate to ")


def test_damaged_bytes_never_crash(docs, cfg, tmp_path):
    """Bytes overwritten anywhere in a package: the file is read or refused with a reason, never an
    exception of another kind."""
    rng = random.Random(34)
    outcomes = {"read": 0, "refused": 0}
    for name in ("report.docx", "talk.pptx"):
        good = (docs / name).read_bytes()
        for k in range(25):
            raw = bytearray(good)
            at = rng.randrange(len(raw) - 64)
            n = rng.randrange(1, 64)  # overwritten in place, or spliced (shifting every offset after it)
            raw[at : at + n] = rng.randbytes(n if k % 2 else rng.randrange(1, 64))
            bad = tmp_path / f"{k}{name}"
            bad.write_bytes(bytes(raw))
            try:
                read(bad, cfg)
                outcomes["read"] += 1
            except IngestError as e:
                assert e.reason.startswith(("damaged .", "not a .", "zip bomb")), e.reason
                outcomes["refused"] += 1
    assert outcomes["refused"] > 0


# --- through the engine and its doors ------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory, docs):
    coll = tmp_path_factory.mktemp("coll") / "c"
    bad = docs / "old.docx"
    bad.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 512)
    with Engine.open(coll, write=True, models="tiny") as eng:
        report = eng.index([str(docs)])
    return coll, report


def test_index_reads_office_files_and_names_the_bad_one(built, docs):
    _, report = built
    assert [p for p, _ in report.errors] == [str(docs / "old.docx")]
    assert "OLE compound file" in report.errors[0][1]


def test_filters_on_doc_and_slide(built, docs):
    coll, _ = built
    with Engine.open(coll) as eng:
        early = eng.search("roadmap", k=100, where='doc = "pptx" and slide <= 3').hits
        assert sorted((h.locator.slide, h.modality) for h in early) == [
            (1, "text"), (2, "image"), (2, "text"), (3, "image"), (3, "text")]  # fmt: skip
        words = eng.search("turbine", k=100, where="doc = docx and part = text").hits
        assert len(words) == 4 and all(h.locator.heading and h.locator.slide is None for h in words)
        assert eng.search("turbine", k=100, where="slide > 0 and doc = docx").hits == []
    # the same locator in RAG citations and on the UI's cards
    from mmrag_demo import render

    text3 = next(h for h in early if h.locator.slide == 3 and h.modality == "text")
    assert location(text3).endswith("talk.pptx, slide 3")
    assert render.where_label(text3, [str(docs)]) == f"{docs.name}/talk.pptx slide 3"
    results = next(h for h in words if h.locator.heading == "Annual report > Results")
    assert location(results).endswith("report.docx, Annual report > Results")


def test_cli_cites_the_slide(built, capsys):
    coll, _ = built
    assert main(["search", "roadmap", "-c", str(coll), "-k", "100", "--where", "slide = 3"]) == 0
    out = capsys.readouterr().out
    assert "talk.pptx slide 3" in out
    assert main(["search", "roadmap", "-c", str(coll), "-k", "100", "--json", "--where", "slide = 3"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert {h["locator"]["slide"] for h in hits} == {3} and len(hits) == 2
    assert (
        main(["search", "crack", "-c", str(coll), "-k", "100", "--where", "doc = docx and part = text"]) == 0
    )
    assert "report.docx Annual report > Results (text)\n" in capsys.readouterr().out


def test_reindex_keeps_the_unchanged_slides(tmp_path, docs):
    src = tmp_path / "src"
    src.mkdir()
    deck = pptx.Presentation(str(docs / "talk.pptx"))
    deck.save(str(src / "talk.pptx"))
    with Engine.open(tmp_path / "c", write=True, models="tiny") as eng:
        first = eng.index([str(src)])
        deck.slides[3].notes_slide.notes_text_frame.text = "A new note on the fourth slide"
        deck.save(str(src / "talk.pptx"))
        second = eng.index([str(src)])
    assert first.items_added == SLIDES + 2  # a text item per slide and two pictures
    # slide keys do not move: only slide 4's item is embedded again, the others keep their vectors
    assert (second.changed_sources, second.items_added, second.items_kept) == (1, 1, SLIDES + 1)


def test_an_older_collection_gains_the_slide_column(tmp_path):
    """item_locators written before slides were read: a writer adds the column, a read-only opener
    sees it through a stand-in view, and `slide` filters run on either (no old item has a slide)."""
    import sqlite3

    from mmrag.storage import facts

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE item_locators(item_id INTEGER PRIMARY KEY, doc TEXT, page INTEGER, cell INTEGER, part TEXT)"
        )
        db.execute("INSERT INTO item_locators VALUES(1, 'pdf', 2, NULL, 'text')")
    ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    facts.ensure(ro, readonly=True)
    assert ro.execute("SELECT doc, page, slide FROM item_locators").fetchall() == [("pdf", 2, None)]
    ro.close()
    with sqlite3.connect(path) as db:
        facts.ensure(db, readonly=False)
        cols = [r[1] for r in db.execute("PRAGMA table_info(item_locators)")]
        assert cols[-1] == "slide" and db.execute("SELECT slide FROM item_locators").fetchall() == [(None,)]
