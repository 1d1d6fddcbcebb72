"""A hostile page in a real browser against a local mmrag server: every attempt fails.

The page is served from another local port (another origin). It sends the forged writes a page
can send without a preflight (a text/plain fetch, a text/plain form post), tries to read answers
cross-origin, and a rebinding domain (mapped to 127.0.0.1 by chromium's resolver rules) asks
for an item's file. The server runs with writes open (no token) and the target folder allowed,
so the Origin and Host checks alone stand between the page and the collection.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from test_browser import TIMEOUT_MS, launch_chromium

pytestmark = pytest.mark.browser

REBIND = "rebind.test"

ATTACK = """<!doctype html><html><body>
<iframe name="sink" id="sink"></iframe>
<form id="csrf" method="POST" enctype="text/plain" target="sink"></form>
<script>
async function attack(target, folder) {
  const out = {};
  try {
    await fetch(target + "/index", {method: "POST", mode: "no-cors",
      headers: {"Content-Type": "text/plain"}, body: JSON.stringify({paths: [folder]})});
    out.forged = "sent";
  } catch (e) { out.forged = "failed: " + e; }
  for (const [name, path] of [["stats", "/stats"], ["gradio", "/gradio_api/info"], ["item", "/items/1"]]) {
    try { const r = await fetch(target + path); out[name] = "read " + r.status + ": " + await r.text(); }
    catch (e) { out[name] = "blocked"; }
  }
  const form = document.getElementById("csrf");
  form.action = target + "/index";
  const field = document.createElement("input");
  field.name = '{"paths": ["' + folder + '"], "x": "';
  field.value = '"}';
  form.appendChild(field);
  form.submit();
  return out;
}
</script></body></html>"""


class _Attacker(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        body = ATTACK.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def rebinding_browser():
    yield from launch_chromium((f"--host-resolver-rules=MAP {REBIND} 127.0.0.1",))


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    pytest.importorskip("gradio")
    import torch
    from test_server import LiveServer, build_collection

    from mmrag.http.server import create_app

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("csrf")
    corpus, coll = build_collection(tmp)
    folder = tmp / "private"
    folder.mkdir()
    (folder / "diary.md").write_text("# Diary\n\nSomething no web page should get indexed.\n")
    app = create_app(coll, api_key=None, allow_index=[folder])
    attacker = ThreadingHTTPServer(("127.0.0.1", 0), _Attacker)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    with LiveServer(app) as live:
        yield live, app.state.service, folder, f"http://127.0.0.1:{attacker.server_address[1]}/"
    attacker.shutdown()
    app.state.service.close()


def test_a_page_elsewhere_cannot_write_read_or_rebind(rebinding_browser, target):
    live, svc, folder, attacker_url = target
    before = svc.stats()["items"]
    item = next(iter(svc.items(list(range(1, 100)))))
    page = rebinding_browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)

    page.goto(attacker_url, wait_until="load")
    out = page.evaluate("([t, f]) => attack(t, f)", [live.url, str(folder)])
    assert out["forged"] == "sent"  # the browser sent it (no-cors): the server must refuse it
    for name in ("stats", "gradio", "item"):
        assert out[name] == "blocked", (name, out[name])  # nothing readable cross-origin
    page.wait_for_timeout(1500)  # the form post lands in the iframe
    sink = page.frame(name="sink")
    assert sink is not None and "Cross-origin request" in sink.content()

    # DNS rebinding: a name that resolves to 127.0.0.1, asking for an item's file
    for path in (f"/items/{item}/content", "/", "/stats"):
        r = page.goto(f"http://{REBIND}:{live.port}{path}")
        assert r.status == 400, (path, r.status)
        assert "is not a name this server answers to" in page.content()
    page.close()

    assert svc.stats()["items"] == before  # the collection is unchanged
    import httpx

    control = httpx.post(live.url + "/index", json={"paths": [str(folder)]}, timeout=120)
    assert control.status_code == 200  # the same write from a local client does index: the page was stopped
    assert svc.stats()["items"] == before + 1


def test_the_tokened_url_lets_the_page_index_and_nothing_else_does(rebinding_browser, tmp_path):
    """Opened from the printed URL, the page carries the token (a SameSite cookie) and may index;
    opened without it, there is no page at all, only what to open."""
    pytest.importorskip("gradio")
    from test_server import LiveServer, build_collection

    from mmrag.http.server import create_app

    corpus, coll = build_collection(tmp_path)
    extra = corpus / "docs" / "more"
    extra.mkdir()
    (extra / "zebra.md").write_text("# Zebras\n\nStriped animals of the savanna.\n")
    app = create_app(coll, api_key="page-token")
    svc = app.state.service
    try:
        with LiveServer(app) as live:
            before = svc.stats()["items"]
            context = rebinding_browser.new_context()
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            r = page.goto(live.url + "/", wait_until="load")
            assert r.status == 401 and "?token=" in page.content()  # no UI without the token
            assert page.locator("#mm-index-go").count() == 0
            page.goto(live.url + "/?token=page-token", wait_until="load")
            assert "token=" not in page.url  # the token does not stay in the address bar
            page.get_by_role("tab", name="Index").click()
            page.locator("#mm-folder textarea, #mm-folder input").first.fill(str(extra))
            page.locator("#mm-index-go").click()
            page.wait_for_function("document.querySelector('#mm-index-status').innerText.includes('Indexed')")
            context.close()
            assert svc.stats()["items"] == before + 1
    finally:
        svc.close()
