"""The demo's Dupes tab in a real browser: planted image copies shown as one group of thumbnails."""

from __future__ import annotations

import pytest
from test_browser import ARTIFACTS, _open_page, browser  # noqa: F401 (browser: the shared fixture)
from test_dupes import _shapes

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def live_dupes(tmp_path_factory):
    pytest.importorskip("gradio")
    from test_server import LiveServer

    from mmrag.api import Engine
    from mmrag.http.server import create_app

    root = tmp_path_factory.mktemp("browser-dupes")
    (root / "img").mkdir()
    for n in range(3):
        _shapes(n).save(root / "img" / f"pic{n}.png")
    _shapes(0).save(root / "img" / "pic0-copy.jpg", quality=40)
    with Engine.open(root / "c", write=True, models="tiny") as eng:
        eng.index([str(root / "img")])
    app = create_app(root / "c")
    with LiveServer(app) as live:
        yield live.url
    app.state.service.close()


def test_dupes_tab_shows_the_copies_side_by_side(browser, live_dupes):  # noqa: F811
    page, errors = _open_page(browser)
    page.goto(live_dupes + "/", wait_until="load")
    page.get_by_role("tab", name="Dupes").click()
    page.locator("#mm-dupes-go").click()
    page.wait_for_selector("#mm-dupes .mm-dupe-group")
    group = page.locator("#mm-dupes .mm-dupe-group").filter(has_text="pic0-copy.jpg").first
    assert "pic0.png" in group.inner_text()
    page.wait_for_function(
        "[...document.querySelectorAll('#mm-dupes img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    assert group.locator("img").count() >= 2  # thumbnails side by side, served by /items/{id}/content
    page.screenshot(path=str(ARTIFACTS / "demo-dupes.png"), full_page=True)
    assert not errors, errors
    page.close()
