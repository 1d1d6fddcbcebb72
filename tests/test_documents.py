"""PDFs and notebooks: the readers' items against PDFium's and nbformat's own counts, the locator
of every item, and the locator through every door (search hits, --json, filters, RAG citations,
the CLI's lines), on documents the tests make. Re-indexing re-reads only what changed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest

pytest.importorskip("pypdfium2")
pytest.importorskip("nbformat")
pytest.importorskip("reportlab")

import nbformat  # noqa: E402
import pypdfium2 as pdfium  # noqa: E402
import pypdfium2.raw as pdfium_raw  # noqa: E402
from documents_maker import make_notebook, make_pdf  # noqa: E402

from mmrag.api import Engine  # noqa: E402
from mmrag.cli import main  # noqa: E402
from mmrag.ingest import IngestCfg, Source, read_source  # noqa: E402
from mmrag.ingest.pdf import MIN_PICTURE_PT  # noqa: E402
from mmrag.items import Hit, Locator  # noqa: E402
from mmrag.rag.prompt import location  # noqa: E402
from mmrag.storage.collection import Collection  # noqa: E402

FIGURES = {2: "Figure 1: Loss curve of the training run.", 4: "Figure 2: Accuracy per epoch."}


def read(path, cfg):
    notes = []
    items = read_source(Source(str(path), str(path), "document", path.stat().st_size, 0), cfg, notes.append)
    return items, notes


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    root = tmp_path_factory.mktemp("docs")
    make_pdf(root / "paper.pdf", pages=5, figures=FIGURES, labels=True, scan_page=5)
    make_notebook(root / "analysis.ipynb", plots=2)
    (root / "clip.mp4").write_bytes(b"\0" * 64)
    (root / "talk.mp4").write_bytes(b"\0" * 64)
    (root / "table.xlsx").write_bytes(b"PK\x03\x04")
    (root / "notes.md").write_text("# Notes\n\nPlain notes beside the documents.\n")
    return root


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return IngestCfg(picture_dir=str(tmp_path_factory.mktemp("pictures")))


def pdfium_pictures(path, cfg):
    """PDFium's own count: pages, and distinct image streams above the size floor on pages with text."""
    pdf = pdfium.PdfDocument(str(path))
    streams, scanned = set(), 0
    for i in range(len(pdf)):
        page = pdf[i]
        if not page.get_textpage().get_text_range().strip():
            scanned += 1
            continue
        for obj in page.get_objects(filter=(pdfium_raw.FPDF_PAGEOBJ_IMAGE,)):
            w, h = obj.get_px_size()
            left, bottom, right, top = obj.get_bounds()
            if min(w, h) >= cfg.min_picture_px and min(right - left, top - bottom) >= MIN_PICTURE_PT:
                streams.add(hashlib.sha256(bytes(obj.get_data())).hexdigest())
    return len(pdf), len(streams), scanned


def test_pdf_items_match_pdfium(docs, cfg):
    items, notes = read(docs / "paper.pdf", cfg)
    assert notes == []
    n_pages, n_pictures, n_scanned = pdfium_pictures(docs / "paper.pdf", cfg)
    figures = [it for it in items if it.meta["locator"]["part"] == "figure"]
    renders = [it for it in items if it.meta["locator"]["part"] == "page-render"]
    texts = [it for it in items if it.modality == "text"]
    assert (n_pages, n_pictures, n_scanned) == (5, 3, 1)  # the logo once, two figures; page 5 a scan
    assert len(figures) == n_pictures and len(renders) == n_scanned
    assert {it.meta["locator"]["page"] for it in texts} == {1, 2, 3, 4}  # every page with text
    # the logo is drawn on pages 1-4 and kept once, citing the first
    logo = next(it for it in figures if it.meta["locator"]["page"] == 1)
    assert logo.meta["also_on_pages"] == [2, 3, 4]
    # the figures carry their captions, page and box
    by_page = {it.meta["locator"]["page"]: it for it in figures if it is not logo}
    assert by_page[2].text == FIGURES[2] and by_page[4].text == FIGURES[4]
    assert by_page[2].meta["locator"]["bbox"] == (100.0, 400.0, 400.0, 600.0)
    assert all(os.path.isfile(it.image) for it in figures + renders)
    # a scan: rendered, flagged
    assert renders[0].meta["no_text_layer"] is True and renders[0].meta["locator"]["page"] == 5


def test_pdf_locators_labels_and_outline(docs, cfg):
    items, _ = read(docs / "paper.pdf", cfg)
    pdf = pdfium.PdfDocument(str(docs / "paper.pdf"))
    for it in items:
        loc = Locator.from_dict(it.meta["locator"])
        assert loc.doc == "pdf"
        assert (loc.page_label or "") == pdf.get_page_label(loc.page - 1)
    first = next(it for it in items if it.key.endswith("#p1.t1"))
    third = next(it for it in items if it.key.endswith("#p3.t1"))
    assert Locator.from_dict(first.meta["locator"]).label() == "p. i (1)"
    assert Locator.from_dict(third.meta["locator"]).label() == "p. 1 (3)"
    # outline: Chapter 1 (p. 1) > Section 2 (p. 2); Chapter 3 (p. 3) > Section 4 (p. 4)
    assert first.meta["locator"]["heading"] == "Chapter 1"
    fourth = next(it for it in items if it.key.endswith("#p4.t1"))
    assert fourth.meta["locator"]["heading"] == "Chapter 3 > Section 4"


def test_notebook_items_match_nbformat(docs, cfg):
    items, notes = read(docs / "analysis.ipynb", cfg)
    assert notes == []
    nb = nbformat.read(str(docs / "analysis.ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    markdown = [c for c in nb.cells if c.cell_type == "markdown"]
    pictures = sum(1 for c in code for o in c.outputs if "image/png" in o.get("data", {}))
    attachments = sum(len(c.get("attachments", {})) for c in markdown)
    texty = sum(1 for c in code if any(o.output_type in ("stream", "error") for o in c.outputs))
    parts = [it.meta["locator"]["part"] for it in items]
    assert parts.count("code-cell") == len(code)
    assert parts.count("markdown") == len(markdown)
    assert (
        sum(1 for it in items if it.modality == "image" and it.meta["locator"]["part"] == "output")
        == pictures
    )
    assert parts.count("attachment") == attachments
    assert sum(1 for it in items if it.modality == "text" and it.meta["locator"]["part"] == "output") == texty
    # every item cites its cell (1-based, as Jupyter counts) and the execution count
    for it in items:
        loc = it.meta["locator"]
        cell = nb.cells[loc["cell"] - 1]
        assert loc.get("execution_count") == (
            cell.get("execution_count") if cell.cell_type == "code" else None
        )
    plot = next(it for it in items if it.modality == "image" and it.meta["locator"]["part"] == "output")
    assert plot.meta["locator"]["heading"] == "Training report > Loss curve"
    assert "plot the loss curve" in plot.text
    att = next(it for it in items if it.meta["locator"]["part"] == "attachment")
    assert att.text == "the network diagram"
    error = next(it for it in items if it.key.endswith("#cell6.out"))
    assert error.text.startswith("ZeroDivisionError: division by zero") and "\x1b" not in error.text
    assert {it.language for it in items if it.modality == "code"} == {"python"}


# --- through the engine and its doors ------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory, docs):
    coll = tmp_path_factory.mktemp("coll") / "c"
    with Engine.open(coll, write=True, models="tiny") as eng:
        report = eng.index([str(docs)])
    return coll, report


def test_index_reads_documents_and_names_the_rest(built, docs):
    coll, report = built
    assert report.clean, report.errors
    assert sorted(p for p, _ in report.not_read) == sorted(
        str(docs / n) for n in ("clip.mp4", "talk.mp4", "table.xlsx")
    )
    with Collection.open(coll) as c:
        rows = c.store.db.execute("SELECT image FROM items WHERE modality='image'").fetchall()
    pictures = str(coll / "pictures")
    assert rows and all(r[0].startswith(pictures) and os.path.isfile(r[0]) for r in rows)


def test_hits_carry_locators_and_filters_use_them(built):
    coll, _ = built
    with Engine.open(coll) as eng:
        hits = eng.search("loss curve training", k=100).hits
        assert any(h.locator and h.locator.doc == "pdf" for h in hits)
        assert any(h.locator and h.locator.doc == "ipynb" for h in hits)
        assert all(h.locator is None for h in hits if h.source.endswith(".md"))
        early = eng.search("loss", k=100, where="page <= 2").hits
        assert early and all(h.locator.doc == "pdf" and h.locator.page <= 2 for h in early)
        figs = eng.search("loss", k=100, where='doc = "pdf" and part = figure').hits
        assert {h.locator.page for h in figs} == {1, 2, 4}
        outputs = eng.search("loss", k=100, where="part = output").hits
        assert outputs and all(h.locator.doc == "ipynb" for h in outputs)
        plain = eng.search("notes", k=100, where="not doc = pdf and not doc = ipynb").hits
        assert plain and all(h.locator is None for h in plain)
    fig = next(h for h in figs if h.locator.page == 2)
    assert fig.to_dict()["locator"]["bbox"] == (100.0, 400.0, 400.0, 600.0)
    assert location(fig).endswith("paper.pdf, p. ii (2)")  # RAG citations: [n] paper.pdf, p. ii (2)


def test_cli_prints_locators(built, capsys, docs):
    coll, _ = built
    assert main(["search", "loss", "-c", str(coll), "-k", "100", "--where", "cell = 4"]) == 0
    out = capsys.readouterr().out
    assert "analysis.ipynb cell 4" in out
    assert main(["search", "loss", "-c", str(coll), "-k", "100", "--json", "--where", "page = 4"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits and all(h["locator"]["page"] == 4 and h["locator"]["doc"] == "pdf" for h in hits)
    assert Hit(**{**hits[0], "locator": Locator.from_dict(hits[0]["locator"])}).locator.page == 4
    assert main(["info", "-c", str(coll), "--errors"]) == 0
    out = capsys.readouterr()
    assert "clip.mp4" in out.out + out.err and "mmrag does not read .mp4 files" in out.out + out.err


def test_reindex_rereads_only_changed_documents(tmp_path, docs):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(docs / "paper.pdf", src)
    make_notebook(src / "nb.ipynb", plots=2)
    coll = tmp_path / "c"
    with Engine.open(coll, write=True, models="tiny") as eng:
        first = eng.index([str(src)])
        again = eng.index([str(src)])
        assert (again.changed_sources, again.items_added, again.items_removed) == (0, 0, 0)
        make_notebook(src / "nb.ipynb", plots=1)  # one plot fewer: its cell and picture go
        shorter = eng.index([str(src)])
        # cells after the dropped one move up by one: the last cell's keys (and the lost plot's) go
        assert shorter.changed_sources == 1 and shorter.items_removed == 4
        (src / "paper.pdf").unlink()
        gone = eng.index([str(src)])
    assert first.items_added > 0 and gone.items_removed > 0
    with Collection.open(coll) as c:
        left = c.store.db.execute("SELECT DISTINCT source FROM items").fetchall()
        pictures = [r[0] for r in c.store.db.execute("SELECT image FROM items WHERE image IS NOT NULL")]
    assert left == [(str(src / "nb.ipynb"),)]
    kept = {str(p) for p in (coll / "pictures").rglob("*") if p.is_file()}
    assert kept == set(pictures)  # the PDF's pictures went with it


def test_content_of_a_figure_and_of_a_page_chunk(built):
    """The thumbnail route and the UI's gallery open a figure from the collection's picture folder;
    a PDF page's chunk is its own text, not the PDF's bytes."""
    pytest.importorskip("fastapi")
    from mmrag.http.service import Service

    coll, _ = built
    svc = Service(coll, read_only=True)
    try:
        hits = svc.search("loss", k=100).hits
        fig = next(h for h in hits if h.locator and h.locator.part == "figure")
        row, path = svc.content_file(fig.id)
        assert path is not None and str(path).startswith(str((coll / "pictures").resolve()))
        chunk = next(h for h in hits if h.locator and h.locator.part == "text")
        row, path = svc.content_file(chunk.id)
        assert path is None and row["text"] == chunk.text
    finally:
        svc.close()


def test_ui_cards_cite_the_page_and_the_cell():
    from mmrag_demo import render

    roots = ["/data"]
    fig = Hit(1, "k", "image", 0.5, "/data/docs/paper.pdf", text="Figure 2: Loss curve", path="/data/docs/paper.pdf",
              locator=Locator("pdf", page=12, part="figure"))  # fmt: skip
    cell = Hit(2, "k2", "code", 0.4, "/data/nb/analysis.ipynb", text="plt.plot(x)", path="/data/nb/analysis.ipynb",
               start_line=1, language="python", locator=Locator("ipynb", cell=7, execution_count=3))  # fmt: skip
    plain = Hit(3, "k3", "code", 0.3, "/data/src/a.py", text="x = 1", path="/data/src/a.py", start_line=40)
    assert render.where_label(fig, roots) == "data/docs/paper.pdf p. 12"
    assert render.gallery_caption(fig, roots) == "0.500 · Figure 2: Loss curve · paper.pdf p. 12"
    assert "data/nb/analysis.ipynb cell 7" in render.code_cards([cell], roots)
    assert render.where_label(plain, roots) == "data/src/a.py:40"


def test_a_figure_is_a_query_by_image(built):
    """A PDF's figure and a notebook's plot: "more like this" in the image space, and the picture file
    itself as a query image, which finds its own item first."""
    coll, _ = built
    with Engine.open(coll) as eng:
        figs = eng.search("loss", k=100, where="modality = image").hits
        plot = next(h for h in figs if h.locator.doc == "ipynb" and h.locator.part == "output")
        near = eng.similar(plot.id, k=5).hits
        assert near and all(h.modality == "image" and h.id != plot.id for h in near)
        picture = eng.collection.store.fetch_items([plot.id])[plot.id]["image"]
        found = eng.search("", images=[picture], k=3, modalities=("image",)).hits
    assert found[0].id == plot.id and found[0].locator.cell == plot.locator.cell
