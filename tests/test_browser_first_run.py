"""The demo UI over a collection without CLIP, as a new user meets it (issue 26), in chromium.

An image named in the query box is left out with a warning (alone: an error), the Dupes tab opens
on a space that has items and says why the image space is empty, the Index tab's token box says the
tokened URL already gave the token, its hint points at that box, and the footer has no stray "·".
"""

from __future__ import annotations

import pytest
from test_browser import TIMEOUT_MS, browser  # noqa: F401 (browser: the shared fixture)

pytestmark = pytest.mark.browser

TOKEN, READ_TOKEN = "first-run-write-token", "first-run-read-token"


@pytest.fixture(scope="module")
def no_clip_demo(tmp_path_factory):
    pytest.importorskip("gradio")
    from test_first_run import NO_CLIP, make_corpus
    from test_server import LiveServer

    from mmrag.api import Engine
    from mmrag.http.server import create_app

    tmp = tmp_path_factory.mktemp("first-run-ui")
    corpus = make_corpus(tmp / "corpus")
    (tmp / "noclip.toml").write_text(NO_CLIP)
    coll = tmp / "coll"
    with Engine.open(coll, write=True, models=str(tmp / "noclip.toml")) as eng:
        eng.index([str(corpus)])
    app = create_app(coll, api_key=TOKEN, read_token=READ_TOKEN)
    with LiveServer(app) as live:
        yield live.url, corpus
    app.state.service.close()


def _open(browser, url: str, token: str):  # noqa: F811
    page = browser.new_context().new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{url}/?token={token}", wait_until="load")
    page.wait_for_selector("#mm-search")
    return page, errors


def _search(page, text: str, expect: str) -> str:
    page.locator("#mm-query textarea").first.fill(text)
    page.locator("#mm-search").click()
    page.wait_for_function(f"document.querySelector('#mm-status').innerText.includes({expect!r})")
    return page.locator("#mm-status").inner_text()


def test_a_new_user_without_clip_in_the_browser(browser, no_clip_demo):  # noqa: F811
    url, corpus = no_clip_demo
    picture = str(corpus / "pics" / "red_circle.png")
    page, errors = _open(browser, url, TOKEN)

    mixed = _search(page, f"cat + {picture} - dog", "left out of the query")
    assert "results" in mixed and picture in mixed and "--models default" in mixed
    alone = _search(page, picture, "Cannot search by image")
    assert "no image encoder" in alone and "results" not in alone  # was 12 results from a zero vector

    page.get_by_role("tab", name="Dupes").click()
    assert page.locator("#mm-dupes-modality input:checked").get_attribute("value") == "text"  # was image
    spaces = [t.strip() for t in page.locator("#mm-dupes-modality label").all_inner_texts()]
    assert "image" not in spaces  # no image space: not offered (issue 32), and the tab says why
    note = page.locator("#mm-dupes-modality").inner_text()
    assert "image space is empty" in note and "caption only" in note

    page.get_by_role("tab", name="Index").click()
    box = page.locator("#mm-token input")
    page.wait_for_function(
        "document.querySelector('#mm-token input').placeholder.includes('set by the URL you opened')"
    )
    assert box.input_value() == "" and not box.is_editable()  # the token itself stays out of the page
    stats = page.locator("#mm-stats").inner_text()
    assert "1 picture without a caption waiting for CLIP weights" in stats and "0 skipped" in stats
    assert "1 picture is searchable by caption only" in stats
    footer = page.locator("footer")  # checked last: Gradio fills the footer in after the first render
    assert footer.inner_text().strip() == "Use via API"  # was 'Use via API\n·'
    assert not errors, errors

    reader, reader_errors = _open(browser, url, READ_TOKEN)  # may search, may not index
    reader.get_by_role("tab", name="Index").click()
    reader.wait_for_function(
        "document.querySelector('#mm-token input').placeholder.includes(\"paste the server's token\")"
    )
    reader.locator("#mm-folder textarea, #mm-folder input").first.fill(str(corpus))
    reader.locator("#mm-index-go").click()
    reader.wait_for_function("document.querySelector('#mm-index-status').innerText.includes('token')")
    hint = reader.locator("#mm-index-status").inner_text()
    assert "Token box next to the folder" in hint and "below" not in hint
    assert not reader_errors, reader_errors
