"""The demo UI in a real browser: Playwright drives Debian's chromium against a live uvicorn.

Screenshots go to test-artifacts/ (git-ignored). Set up with `.ci/install-browser.sh`; the test is
skipped, saying why, only where chromium or the playwright client is not installed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 30_000  # a cold first search on a busy 2-core CI machine takes a few seconds


def chromium_path() -> str | None:
    for candidate in (os.environ.get("MMRAG_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def launch_chromium(extra_args: tuple[str, ...] = ()):
    """Headless chromium through playwright, or a skip that says what to install."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed: run .ci/install-browser.sh"
    )
    exe = chromium_path()
    if exe is None:
        pytest.skip(
            "no chromium at /usr/bin/chromium or on PATH: run .ci/install-browser.sh (apt-get install chromium)"
        )
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=[*CHROMIUM_ARGS, *extra_args])
        yield b
        b.close()


@pytest.fixture(scope="module")
def browser():
    yield from launch_chromium()


@pytest.fixture(scope="module")
def live_demo(tmp_path_factory):
    pytest.importorskip("gradio")
    import torch
    from test_server import LiveServer, build_collection  # tests/ is on sys.path (rootless test dir)

    from mmrag.http.server import create_app

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("browser")
    corpus, coll = build_collection(tmp)
    app = create_app(coll)
    with LiveServer(app) as live:
        yield live.url, corpus
    app.state.service.close()


def _open_page(browser):
    """A fresh page that records the page's JavaScript errors, for the test to assert none."""
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_default_timeout(TIMEOUT_MS)
    return page, errors


@contextlib.contextmanager
def live_ui(coll):
    """The server with its UI over `coll`, live on a local port: yields its base URL."""
    from test_server import LiveServer

    from mmrag.http.server import create_app

    app = create_app(coll)
    try:
        with LiveServer(app) as live:
            yield live.url
    finally:
        app.state.service.close()


def search_text(page, url: str, query: str) -> None:
    """Open the UI at `url`, type `query` and press Search, as a person does."""
    page.goto(url + "/", wait_until="load")
    page.locator("#mm-query textarea").first.fill(query)
    page.locator("#mm-search").click()


def _status(page) -> str:
    return page.locator("#mm-status").inner_text()


def search_by_image(page, image: Path):
    """Upload `image` as the query, search, and return the gallery's thumbnails once they load."""
    page.locator("#mm-image input[type=file]").set_input_files(str(image))
    page.wait_for_selector("#mm-image img")
    page.locator("#mm-search").click()
    page.wait_for_function("document.querySelector('#mm-status').innerText.includes('your image')")
    gallery = page.locator("#mm-gallery")
    gallery.wait_for(state="visible")
    thumbs = gallery.locator("img")
    thumbs.first.wait_for()
    return thumbs


def test_search_in_the_browser(browser, live_demo):
    url, corpus = live_demo
    page, errors = _open_page(browser)

    page.goto(url + "/", wait_until="load")
    page.wait_for_selector("#mm-search")
    assert "Type a query" in _status(page)
    assert page.locator("#mm-banner").inner_text().strip()  # the tiny models' warning is on screen
    page.screenshot(path=str(ARTIFACTS / "demo-0-start.png"), full_page=True)

    # empty query: a clear message, no crash
    page.locator("#mm-search").click()
    page.wait_for_function("document.querySelector('#mm-status').innerText.includes('Empty query')")

    # a text search over code and text: cards with path:line, symbol and the passage
    page.locator("#mm-modalities label", has_text="Images").click()  # untick images
    query = page.locator("#mm-query textarea").first
    query.fill("merge ranked lists")
    page.locator("#mm-search").click()
    page.wait_for_function(
        "document.querySelector('#mm-status').innerText.includes('for “merge ranked lists”')"
    )
    assert "ms" in _status(page)  # timings are shown
    cards = page.locator(".mm-card")
    assert cards.count() >= 2
    code = page.locator(".mm-code").first
    assert "fusion.py:" in code.locator(".mm-path").inner_text()
    assert page.locator(".mm-code .mm-symbol").count() >= 1
    assert page.locator(".mm-text").count() >= 1
    assert not page.locator("#mm-gallery").is_visible()  # images were filtered out
    body = page.locator("body").inner_text()
    assert '"score"' not in body and '"modality"' not in body  # no raw JSON
    page.screenshot(path=str(ARTIFACTS / "demo-1-text-search.png"), full_page=True)

    # more like this on a code result
    page.locator("#mm-more input").click()
    page.get_by_role("option").first.click()
    page.locator("#mm-more-go").click()
    page.wait_for_function("document.querySelector('#mm-status').innerText.includes(' like ')")

    # an image search: upload a picture, see an image gallery with scores and captions
    page.locator("#mm-modalities label", has_text="Images").click()  # tick images again
    query.fill("")
    thumbs = search_by_image(page, corpus / "img" / "red.png")
    assert thumbs.count() >= 3
    captions = page.locator("#mm-gallery").inner_text()
    assert "square" in captions and "0." in captions  # caption and score on each tile
    page.screenshot(path=str(ARTIFACTS / "demo-2-image-search.png"), full_page=True)

    # the map (a plotly page in a frame, tests/test_browser_map.py has the rest), results ringed
    page.get_by_role("tab", name="Map").click()
    page.wait_for_selector("#mm-map-frame[src*='highlight=']", state="attached")
    drawn = page.frame_locator("#mm-map-frame").locator("#map[data-ready='1']")
    drawn.wait_for(state="attached", timeout=120_000)
    assert drawn.evaluate("gd => gd.data.some(t => t.name === 'results')")
    page.screenshot(path=str(ARTIFACTS / "demo-3-map.png"), full_page=True)

    # the index panel: stats, and a bad folder gets a clear message
    page.get_by_role("tab", name="Index").click()
    assert "items" in page.locator("#mm-stats").inner_text()
    page.locator("#mm-folder textarea, #mm-folder input").first.fill(str(corpus / "no-such-folder"))
    page.locator("#mm-index-go").click()
    page.wait_for_function(
        "document.querySelector('#mm-index-status').innerText.includes('Nothing to index')"
    )
    page.screenshot(path=str(ARTIFACTS / "demo-4-index.png"), full_page=True)

    assert not errors, errors
    page.close()


def test_ask_in_the_browser(browser, live_demo, monkeypatch):
    """A scripted model streams an answer citing [1]: it appears as it arrives, then its sources."""
    import threading

    from test_rag import ChatServer, Reply

    url, corpus = live_demo
    for var in ("MMRAG_LLM_CONFIG", "MMRAG_LLM_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    page, errors = _open_page(browser)
    page.goto(url + "/", wait_until="load")
    page.get_by_role("tab", name="Ask").click()
    for kind in ("Images", "Text"):  # ask over code only, so that [1] is a chunk of fusion.py
        page.locator("#mm-modalities label", has_text=kind).click()
    question = page.locator("#mm-question textarea").first

    # no endpoint: a dry run shows how to configure one and the retrieved context, no raw JSON
    monkeypatch.delenv("MMRAG_LLM_BASE_URL", raising=False)
    question.fill("how are ranked lists merged?")
    page.locator("#mm-ask-go").click()
    page.wait_for_selector("#mm-answer .mm-note")
    assert "MMRAG_LLM_BASE_URL" in page.locator("#mm-answer").inner_text()
    page.wait_for_selector("#mm-sources .mm-cites a")
    assert "<<<SOURCE [1]" in page.locator("#mm-sources pre").inner_text()
    assert '"messages"' not in page.locator("body").inner_text()
    page.screenshot(path=str(ARTIFACTS / "demo-5-ask-dry-run.png"), full_page=True)

    # a model that streams: the first piece shows before the rest is sent
    chat = ChatServer()
    gate = threading.Event()
    pieces = ("Ranked lists are merged by reciprocal rank fusion [1]", ", which sums 1/(k + rank).")
    chat.script.append(Reply(pieces, gate=gate))
    monkeypatch.setenv("MMRAG_LLM_BASE_URL", chat.base_url)
    monkeypatch.setenv("MMRAG_LLM_MODEL", "scripted-model")
    try:
        page.locator("#mm-ask-go").click()
        page.wait_for_function(
            "document.querySelector('#mm-answer').innerText.includes('reciprocal rank fusion')"
        )
        assert "1/(k + rank)" not in page.locator("#mm-answer").inner_text()  # still streaming
        gate.set()
        page.wait_for_function(
            "document.querySelector('#mm-answer').innerText.includes('sums 1/(k + rank).')"
        )
        link = page.locator("#mm-sources .mm-cites a").first
        link.wait_for()
        href = link.get_attribute("href")
        assert href.startswith("/items/") and href.endswith("/content")
        assert link.get_attribute("target") == "_blank"
        assert "fusion.py:" in link.inner_text()  # path:line, as cited
        assert page.locator("#mm-sources .mm-cites li").count() == 1  # only [1] is cited
        assert "▌" not in page.locator("#mm-answer").inner_text()
        page.screenshot(path=str(ARTIFACTS / "demo-5-ask.png"), full_page=True)
        sent = chat.requests[0]["body"]
        assert sent["model"] == "scripted-model" and sent["stream"] is True
        content = page.request.get(url + href)
        assert content.ok and "reciprocal_rank_fusion" in content.text()  # the link opens the source
    finally:
        gate.set()
        chat.close()
    assert not errors, errors
    page.close()


WIDE_TAIL = "zeta_last_column_of_the_report"
WIDE_CODE = (
    "def report_columns():\n"
    '    """The columns of the wide report, in order."""\n'
    "    return ["
    + ", ".join(f'"column_{i:02d}_of_the_quarterly_report"' for i in range(12))
    + f', "{WIDE_TAIL}"]\n'
)


@pytest.fixture(scope="module")
def code_and_text_demo(tmp_path_factory):
    """A collection of code and text only (no picture), with a line of code far wider than a card."""
    pytest.importorskip("gradio")
    import torch
    from test_server import LiveServer

    from mmrag.api import Engine
    from mmrag.http.server import create_app

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("browser-code-text")
    corpus = tmp / "corpus"
    (corpus / "src").mkdir(parents=True)
    (corpus / "docs").mkdir()
    (corpus / "src" / "report.py").write_text(WIDE_CODE)
    (corpus / "docs" / "report.md").write_text(
        "# Report\n\nThe quarterly report lists its columns in order.\n"
    )
    coll = tmp / "coll"
    with Engine.open(coll, write=True, models="tiny") as eng:
        eng.index([str(corpus)])
    app = create_app(coll)
    with LiveServer(app) as live:
        yield live.url, corpus, app.state.service
    app.state.service.close()


# where a code card's widest line ends up: its end inside the card, with nothing to scroll to
WIDE_LINE_JS = """([pre, tail]) => {
  const card = pre.closest('.mm-card').getBoundingClientRect();
  const walker = document.createTreeWalker(pre, NodeFilter.SHOW_TEXT);
  let node = null;
  while (walker.nextNode()) { if (walker.currentNode.textContent.includes(tail)) node = walker.currentNode; }
  const range = document.createRange(), at = node.textContent.indexOf(tail);
  range.setStart(node, at); range.setEnd(node, at + tail.length);
  const end = range.getBoundingClientRect();
  return {end_inside: end.right <= card.right + 1 && end.left >= card.left - 1 && end.width > 0,
          hidden: pre.scrollWidth > pre.clientWidth + 1, white_space: getComputedStyle(pre).whiteSpace};
}"""


def test_the_ui_as_a_new_user_meets_it(browser, code_and_text_demo):
    """No empty More like this on the landing page; a wide line of code shows whole (wrapped); the Dupes
    tab offers only the spaces the collection has; indexing a folder again says what was unchanged."""
    url, corpus, svc = code_and_text_demo
    page, errors = _open_page(browser)
    page.goto(url + "/", wait_until="load")
    page.wait_for_selector("#mm-search")
    assert not page.locator("#mm-more").is_visible() and not page.locator("#mm-more-go").is_visible()

    page.locator("#mm-query textarea").first.fill("columns of the quarterly report")
    page.locator("#mm-search").click()
    page.wait_for_function("document.querySelector('#mm-status').innerText.includes('quarterly report')")
    pre = page.locator(".mm-code pre").first
    pre.wait_for()
    assert WIDE_TAIL in pre.inner_text()
    wide = page.evaluate(WIDE_LINE_JS, [pre.element_handle(), WIDE_TAIL])
    assert wide["end_inside"] and not wide["hidden"], wide  # the line wraps: its end shows in the card
    page.screenshot(path=str(ARTIFACTS / "demo-6-wide-code.png"), full_page=True)
    assert page.locator("#mm-more").is_visible() and page.locator("#mm-more-go").is_visible()

    page.get_by_role("tab", name="Dupes").click()
    spaces = [t.strip() for t in page.locator("#mm-dupes-modality label").all_inner_texts()]
    assert spaces and "image" not in spaces and set(spaces) <= {"code", "text"}, spaces

    items = svc.stats()["items"]
    page.get_by_role("tab", name="Index").click()
    page.locator("#mm-folder textarea, #mm-folder input").first.fill(str(corpus))
    page.locator("#mm-index-go").click()
    page.wait_for_function("document.querySelector('#mm-index-status').innerText.includes('unchanged')")
    said = page.locator("#mm-index-status").inner_text()
    assert f"0 items embedded, {items} unchanged, 0 removed" in said, said
    page.screenshot(path=str(ARTIFACTS / "demo-7-reindex.png"), full_page=True)
    assert not errors, errors
    page.close()
