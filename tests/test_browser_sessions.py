"""Two servers on two ports of one host, opened in one browser: each keeps its own session.

Browsers send a host's cookies to every port of it, so one cookie name for all servers meant the
second server's token overwrote the first's, and the first page then refused its writes. The
cookie is now named per host and port (`mmrag-token-127.0.0.1-PORT`), as Jupyter names its own.
"""

from __future__ import annotations

import pytest
from test_browser import TIMEOUT_MS, browser  # noqa: F401 (browser: the shared fixture)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory):
    pytest.importorskip("gradio")
    from test_server import LiveServer, build_collection

    from mmrag.http.server import create_app

    apps, servers = [], []
    for name in ("first", "second"):
        corpus, coll = build_collection(tmp_path_factory.mktemp(f"session-{name}"))
        extra = corpus / "docs" / "more"
        extra.mkdir()
        (extra / f"{name}.md").write_text(f"# The {name} server\n\nNotes only the {name} server holds.\n")
        apps.append((create_app(coll, api_key=f"token-of-the-{name}-server"), extra))
    try:
        for app, _ in apps:
            servers.append(LiveServer(app).__enter__())
        yield [
            (live, app.state.service, f"token-of-the-{n}-server", extra)
            for live, (app, extra), n in zip(servers, apps, ("first", "second"))
        ]
    finally:
        for live in servers:
            live.__exit__(None, None, None)
        for app, _ in apps:
            app.state.service.close()


def _index_in_ui(page, folder) -> str:
    page.get_by_role("tab", name="Index").click()
    page.locator("#mm-folder textarea, #mm-folder input").first.fill(str(folder))
    page.locator("#mm-index-go").click()
    status = page.locator("#mm-index-status")
    page.wait_for_function(
        "['Indexed', 'token'].some(w => document.querySelector('#mm-index-status').innerText.includes(w))"
    )
    return status.inner_text()


def test_two_servers_keep_their_sessions(browser, two_servers):  # noqa: F811
    (a, svc_a, token_a, extra_a), (b, svc_b, token_b, extra_b) = two_servers
    context = browser.new_context()  # one cookie jar, as one user's browser
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{a.url}/?token={token_a}", wait_until="load")
    page.wait_for_selector("#mm-search")
    page.goto(f"{b.url}/?token={token_b}", wait_until="load")  # the second server's visit
    page.wait_for_selector("#mm-search")

    names = {c["name"] for c in context.cookies()}
    assert {f"mmrag-token-127.0.0.1-{a.port}", f"mmrag-token-127.0.0.1-{b.port}"} <= names

    before_a, before_b = svc_a.stats()["items"], svc_b.stats()["items"]
    page.goto(a.url + "/", wait_until="load")  # back to the first: still signed in, writes allowed
    page.wait_for_selector("#mm-search")
    assert "Indexed" in _index_in_ui(page, extra_a)
    page.goto(b.url + "/", wait_until="load")
    page.wait_for_selector("#mm-search")
    assert "Indexed" in _index_in_ui(page, extra_b)
    assert svc_a.stats()["items"] == before_a + 1 and svc_b.stats()["items"] == before_b + 1

    # each page searches its own server, with its own cookie
    for live in (a, b):
        r = page.request.post(live.url + "/search", data={"query": "notes only this server holds", "k": 3})
        assert r.ok, r.text()
    page.goto(a.url + "/", wait_until="load")
    page.locator("#mm-query textarea").first.fill("notes only the first server holds")
    page.locator("#mm-search").click()
    page.wait_for_function("document.querySelector('#mm-status').innerText.includes('for “notes')")
    context.close()
