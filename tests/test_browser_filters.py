"""The search form's Filters in a real browser: language, folder and a date range over real files
(JPEGs with EXIF dates, code in src/ and tests/); each control narrows the results to what it says."""

from __future__ import annotations

import pytest
from test_browser import ARTIFACTS, _open_page, _status, browser  # noqa: F401 (browser: the shared fixture)
from test_filters_e2e import make_corpus

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def live_filters(tmp_path_factory):
    pytest.importorskip("gradio")
    from test_server import LiveServer

    from mmrag.api import Engine
    from mmrag.http.server import create_app

    root = tmp_path_factory.mktemp("browser-filters")
    corpus = make_corpus(root / "corpus")
    with Engine.open(root / "c", write=True, models="tiny") as eng:
        eng.index([str(corpus)])
    app = create_app(root / "c")
    with LiveServer(app) as live:
        yield live.url
    app.state.service.close()


def _search(page, query: str) -> None:
    page.locator("#mm-query textarea").first.fill(query)
    page.locator("#mm-search").click()
    page.wait_for_function(f"document.querySelector('#mm-status').innerText.includes('for “{query}”')")


def _fill(page, elem_id: str, value: str) -> None:
    page.locator(f"#{elem_id} textarea, #{elem_id} input").first.fill(value)


def test_filter_controls_narrow_the_results(browser, live_filters):  # noqa: F811
    page, errors = _open_page(browser)
    page.goto(live_filters + "/", wait_until="load")
    page.wait_for_selector("#mm-search")
    page.locator("#mm-filters").get_by_text("Filters").first.click()  # open the accordion
    page.wait_for_selector("#mm-lang")

    # language: only Python cards
    page.locator("#mm-lang input").click()
    page.get_by_role("option", name="python", exact=True).click()
    _search(page, "read json")
    langs = page.locator(".mm-card .mm-lang").all_inner_texts()
    assert langs and set(langs) == {"python"}, langs
    assert not page.locator("#mm-gallery").is_visible()
    page.screenshot(path=str(ARTIFACTS / "filters-1-language.png"), full_page=True)

    # and a folder: only the tests folder's file
    _fill(page, "mm-filter-folder", "tests")
    _search(page, "read json file")
    paths = page.locator(".mm-card .mm-path").all_inner_texts()
    assert paths and all("tests/test_io.py" in p for p in paths), paths

    # a date range on the photos' EXIF date: the two photos of 2023, no code
    _fill(page, "mm-filter-folder", "")
    page.locator("#mm-lang input").click()
    page.get_by_role("option", name="any", exact=True).click()
    _fill(page, "mm-date-from", "2023-01-01")
    _fill(page, "mm-date-to", "2023-12-31")
    _search(page, "a photo")
    gallery = page.locator("#mm-gallery")
    gallery.wait_for(state="visible")
    page.wait_for_function("document.querySelectorAll('#mm-gallery img').length >= 2")
    captions = gallery.inner_text()
    assert "beach" in captions and "city" in captions and "snow" not in captions, captions
    assert page.locator(".mm-card").count() == 0
    page.screenshot(path=str(ARTIFACTS / "filters-2-dates.png"), full_page=True)

    # a date that is no date: the filter's own message, not a crash
    _fill(page, "mm-date-to", "2023-13-45")
    page.locator("#mm-search").click()
    page.wait_for_function("document.querySelector('#mm-status').innerText.includes('Not a date')")
    assert "2023-13-45" in _status(page)
    assert not errors, errors
    page.close()
