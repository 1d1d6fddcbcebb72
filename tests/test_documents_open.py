"""A document's hit opens its document where the hit is: GET /items/{id}/document serves the PDF
(the UI's card links to it with `#page=N`, which browsers' PDF viewers follow) or the notebook,
only for items of a document and only inside the indexed folders."""

from __future__ import annotations

import pytest

pytest.importorskip("pypdfium2")
pytest.importorskip("reportlab")
pytest.importorskip("fastapi")

from documents_maker import make_notebook, make_pdf  # noqa: E402

from mmrag.api import Engine  # noqa: E402


@pytest.fixture(scope="module")
def coll(tmp_path_factory):
    root = tmp_path_factory.mktemp("open-docs")
    make_pdf(root / "paper.pdf", pages=4, figures={2: "Figure 1: Loss curve of the training run."})
    make_notebook(root / "analysis.ipynb", plots=1)
    (root / "notes.md").write_text("# Notes\n\nPlain notes about the loss.\n")
    path = tmp_path_factory.mktemp("open-coll") / "c"
    with Engine.open(path, write=True, models="tiny") as eng:
        eng.index([str(root)])
    return path, root


@pytest.fixture(scope="module")
def client(coll):
    from fastapi.testclient import TestClient

    from mmrag.http.server import create_app

    app = create_app(coll[0], ui=False)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c
    app.state.service.close()


def _hits(coll, where: str) -> list[dict]:
    with Engine.open(coll[0]) as eng:
        return [h.to_dict() for h in eng.search("loss curve training run", k=50, where=where).hits]


def test_a_pdf_hit_opens_its_pdf(client, coll):
    _, root = coll
    hit = next(h for h in _hits(coll, 'doc = "pdf"') if h["locator"] and h["locator"].get("page"))
    r = client.get(f"/items/{hit['id']}/document")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"].startswith("inline")
    assert r.content == (root / "paper.pdf").read_bytes()


def test_a_pdf_hit_shows_its_page_as_pdfium_renders_it(client, coll):
    import io

    import numpy as np
    import pypdfium2 as pdfium
    from PIL import Image

    _, root = coll
    hit = next(h for h in _hits(coll, 'doc = "pdf" and part = "text"') if h["locator"].get("page"))
    r = client.get(f"/items/{hit['id']}/page", params={"size": 120})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    ours = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    pdf = pdfium.PdfDocument(str(root / "paper.pdf"))
    page = pdf[hit["locator"]["page"] - 1]
    ref = np.asarray(page.render(scale=120 / max(page.get_size())).to_pil().convert("RGB"))
    pdf.close()
    assert ours.shape == ref.shape and max(ours.shape[:2]) == 120
    assert np.array_equal(ours, ref)
    plain = next(h for h in _hits(coll, 'ext = "md"'))
    assert client.get(f"/items/{plain['id']}/page").status_code == 404


def test_a_notebook_hit_opens_its_notebook(client, coll):
    _, root = coll
    hit = next(h for h in _hits(coll, 'doc = "ipynb"'))
    r = client.get(f"/items/{hit['id']}/document")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ipynb+json")
    assert r.content == (root / "analysis.ipynb").read_bytes()


def test_a_plain_file_has_no_document_and_unknown_ids_are_404(client, coll):
    plain = next(h for h in _hits(coll, 'ext = "md"'))
    for url in (f"/items/{plain['id']}/document", "/items/999999999/document"):
        r = client.get(url)
        assert r.status_code == 404 and set(r.json()) >= {"detail", "error"}


def test_the_card_links_to_the_page(client):
    from mmrag.items import Hit, Locator
    from mmrag_demo import render

    page = Hit(7, "k", "text", 0.5, "/d/paper.pdf", text="loss", path="/d/paper.pdf",
               locator=Locator("pdf", page=3, page_label="iii", part="text"))  # fmt: skip
    plain = Hit(8, "k2", "text", 0.4, "/d/notes.md", text="loss", path="/d/notes.md", start_line=1)
    card = render.text_cards([page, plain], ["/d"], "loss")
    assert 'href="/items/7/document#page=3"' in card and "open p. iii (3)" in card
    assert 'src="/items/7/page?size=160"' in card  # the page beside its passage
    assert "/items/8/document" not in card


@pytest.mark.browser
def test_the_ui_opens_a_pdf_hit_at_its_page(coll):
    """In chromium: a PDF chunk's card links to its document at its page, and the link serves the PDF."""
    pytest.importorskip("gradio")
    from test_browser import ARTIFACTS, _open_page, launch_chromium, live_ui, search_text

    with live_ui(coll[0]) as url:
        for browser in launch_chromium():
            page, errors = _open_page(browser)
            search_text(page, url, "loss curve of the training run")
            link = page.locator(".mm-text a.mm-open[href*='#page=']").first
            link.wait_for()
            href = link.get_attribute("href")
            assert "/document#page=" in href and link.get_attribute("target") == "_blank"
            thumb = page.locator(".mm-text img.mm-page").first
            thumb.wait_for()
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle())
            got = page.request.get(url + href.split("#")[0])
            assert got.status == 200 and got.headers["content-type"] == "application/pdf"
            assert got.body() == (coll[1] / "paper.pdf").read_bytes()
            page.screenshot(path=str(ARTIFACTS / "documents-open-link.png"), full_page=True)
            assert not errors, errors
