"""GET /map, /clusters, /outliers through HTTP, and the demo's Map tab in a real browser: hover
shows a thumbnail or a snippet with its path, a click opens the item, the map colours by cluster
and rings the last results; the same map as one file. One live server serves both.

Screenshots go to test-artifacts/map-*.png.
"""

from __future__ import annotations

import re
import time

import pytest
from test_browser import ARTIFACTS, _open_page, browser  # noqa: F401 (browser: the shared fixture)

httpx = pytest.importorskip("httpx")
READY = "#map[data-ready='1']"
FIRST_MAP_MS = 120_000  # the first visit computes the t-SNE: seconds, more on a busy 2-core machine

# the page coordinates of point row r of the map in frame `f`, and its id and modality
POINT_JS = """([m, avoid]) => {
  const P = D.points, cats = D.categories.modality, xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  const rect = gd.getBoundingClientRect();
  const at = r => [rect.left + xa._offset + xa.l2p(P.x[r]), rect.top + ya._offset + ya.l2p(P.y[r])];
  let best = null;
  for (let r = 0; r < P.id.length; r++) {
    if (cats[P.modality[r]] !== m || avoid.includes(P.id[r])) continue;
    const [x, y] = at(r);
    let gap = Infinity;  /* the point farthest from any other, so the hover lands on it */
    for (let q = 0; q < P.id.length; q++) { if (q === r) continue; const [u, v] = at(q); gap = Math.min(gap, Math.hypot(u - x, v - y)); }
    if (!best || gap > best.gap) best = {id: P.id[r], x, y, gap};
  }
  return best;
}"""


@pytest.fixture(scope="module")
def live_map(tmp_path_factory):
    pytest.importorskip("gradio")
    from test_server import LiveServer, build_collection

    from mmrag.cli import main
    from mmrag.http.server import create_app

    tmp = tmp_path_factory.mktemp("browser-map")
    corpus, coll = build_collection(tmp)
    assert main(["map", "-c", str(coll), "--out", str(tmp / "map.html")]) == 0
    app = create_app(coll)
    with LiveServer(app) as live:
        yield live.url, corpus, tmp / "map.html"
    app.state.service.close()


@pytest.fixture(scope="module")
def client(live_map):
    with httpx.Client(base_url=live_map[0], timeout=120) as c:
        yield c


def test_map_points_clusters_and_hits(client):
    r = client.get("/map")
    assert r.status_code == 200, r.text
    data = r.json()
    points, cats = data["points"], data["categories"]
    n = data["count"]
    assert n == len(points["id"]) == len(points["x"]) == len(points["cluster"]) and n >= 6
    assert set(cats["modality"]) == {"image", "code", "text"}
    assert all(-1.0001 <= v <= 1.0001 for v in points["x"] + points["y"])
    assert {cats["modality"][c] for c in points["modality"]} == {"image", "code", "text"}
    assert all(0 <= c < len(cats["cluster"]) for c in points["cluster"])
    assert data["highlight"] == []
    again = client.get("/map", params={"highlight": points["id"][:2]}).json()
    assert again["highlight"] == points["id"][:2] and again["points"] == points  # one layout, cached
    assert client.get("/stats").json()["generation"] == data["generation"]


def test_clusters_and_outliers(client):
    res = client.get("/clusters", params={"k": 2, "examples": 2}).json()
    assert res["k"] == 2 and len(res["clusters"]) == 2 and not res["auto"]
    assert sum(c["size"] for c in res["clusters"]) == client.get("/map").json()["count"]
    member = res["clusters"][0]["examples"][0]
    assert member["content_url"] == f"/items/{member['id']}/content"
    assert client.get(member["content_url"]).status_code == 200
    auto = client.get("/clusters", params={"modality": "code"}).json()
    assert auto["space"] == "code" and auto["auto"]
    n = client.get("/map").json()["count"]
    assert client.get("/clusters", params={"k": 999, "examples": 0}).json()["k"] == n  # one per item
    out = client.get("/outliers", params={"limit": 3, "method": "density"}).json()["outliers"]
    assert [o["rank"] for o in out] == [1, 2, 3]
    assert out[0]["score"] >= out[1]["score"] >= out[2]["score"]


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/clusters", {"k": "many"}, 422),
        ("/clusters", {"k": 1001}, 422),
        ("/clusters", {"modality": "audio"}, 422),
        ("/outliers", {"limit": 0}, 422),
        ("/outliers", {"method": "magic"}, 422),
        ("/map", {"space": "nowhere"}, 422),
        ("/map", {"space": "code@7"}, 404),  # a well-formed space this collection lacks
        ("/map", {"highlight": "0.0"}, 422),  # the schema says integers: 0.0 is none as a query parameter
        ("/map", {"highlight": ["1", "2.5"]}, 422),
        ("/outliers", {"limit": "3.0"}, 422),
        ("/clusters", {"examples": "1.0"}, 422),
    ],
)
def test_bad_parameters_get_the_problem_shape(client, path, params, status):
    r = client.get(path, params=params)
    assert r.status_code == status, r.text
    assert r.json()["detail"] and r.json()["error"]


def _hold(monkeypatch, module, name: str, stage: tuple[str, int, int]):
    """Hold `module.name` (an exploration's compute) at a progress point until the returned event is set."""
    import threading

    real, gate = getattr(module, name), threading.Event()

    def held(*args, progress=None, **kwargs):
        progress(*stage)
        assert gate.wait(120), "the test never released the job"
        return real(*args, progress=progress, **kwargs)

    monkeypatch.setattr(module, name, held)
    return gate


def _until_done(client, path: str, params: dict, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while (r := client.get(path, params=params)).status_code == 202:
        assert time.monotonic() < deadline, r.text
        time.sleep(0.1)
    return r


def test_a_long_map_or_clustering_is_a_job_with_progress_and_searches_go_on(client, monkeypatch):
    """A map that takes longer than the request waits: 202 with the job's progress; the same question
    joins the job; searches answer meanwhile; once done, GET /map gives the map (and caches it)."""
    import mmrag.explore
    import mmrag.explore.points
    from mmrag.http import explore_jobs

    monkeypatch.setattr(explore_jobs, "WAIT_S", 0.3)
    gate = _hold(monkeypatch, mmrag.explore.points, "map_json", ("map layout", 30, 750))
    try:
        r = client.get("/map", params={"space": "code"})
        assert r.status_code == 202, r.text
        job = r.json()["job"]
        assert job["what"] == "map" and job["state"] == "running", job
        assert job["progress"] == {"stage": "map layout", "done": 30, "total": 750}
        assert int(r.headers["retry-after"]) >= 1
        again = client.get("/map", params={"space": "code", "highlight": [1]})
        assert again.status_code == 202 and again.json()["job"]["id"] == job["id"]  # one job per question
        hits = client.post("/search", json={"query": "merge ranked lists", "k": 3})
        assert hits.status_code == 200 and hits.json()["hits"]  # searches go on meanwhile
        assert client.get("/items/1").status_code == 200
    finally:
        gate.set()
    done = _until_done(client, "/map", {"space": "code", "highlight": [1]})
    assert done.status_code == 200, done.text
    data = done.json()
    assert data["space"] == "code" and data["count"] == len(data["points"]["id"]) and data["highlight"] == [1]
    cached = client.get("/map", params={"space": "code"}).json()
    assert cached["cached"] and cached["points"] == data["points"]

    gate = _hold(monkeypatch, mmrag.explore, "find_clusters", ("choosing k", 2, 5))
    try:
        r = client.get("/clusters", params={"modality": "text", "k": "auto"})
        assert r.status_code == 202 and r.json()["job"]["progress"]["stage"] == "choosing k", r.text
    finally:
        gate.set()
    res = _until_done(client, "/clusters", {"modality": "text", "k": "auto"}).json()
    assert res["space"] == "text" and res["auto"] and sum(c["size"] for c in res["clusters"]) >= 1


def test_the_map_page_and_its_plotly(client):
    page = client.get("/map/view", params={"highlight": "1,2", "colour": "cluster"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '"/map?space=joint&highlight=1&highlight=2"' in page.text and 'src="/map/plotly.js"' in page.text
    js = client.get("/map/plotly.js")
    assert js.status_code == 200 and "plotly.js (gl2d" in js.text[:300] and len(js.content) > 1_000_000
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/map", "/clusters", "/outliers"} <= set(paths) and "/map/view" not in paths


def _map_frame(page, pattern: str = r"/map/view"):
    """The map page's frame once plotly has drawn it (the frame attaches after its iframe)."""
    page.wait_for_selector("#mm-map-frame", state="attached")
    page.wait_for_function(
        "(p) => [...document.querySelectorAll('#mm-map-frame')].some(f => new RegExp(p).test(f.src))",
        arg=pattern,
    )
    frame = None
    for _ in range(100):
        frame = page.frame(url=re.compile(pattern))
        if frame is not None:
            break
        page.wait_for_timeout(100)
    assert frame is not None, [f.url for f in page.frames]
    frame.wait_for_selector(READY, state="attached", timeout=FIRST_MAP_MS)
    return frame


def _hover(page, frame, modality: str, offset=(0, 0), avoid=()):
    dx = dy = 0.0
    if frame is not page.main_frame:  # the frame's own coordinates, moved to where its iframe sits
        iframe = page.locator("#mm-map-frame")
        iframe.scroll_into_view_if_needed()
        box = iframe.bounding_box()
        dx, dy = box["x"], box["y"]
    p = frame.evaluate(POINT_JS, [modality, list(avoid)])
    assert p, f"no {modality} point on the map"
    x, y = p["x"] + dx + offset[0], p["y"] + dy + offset[1]
    page.mouse.move(x - 30, y - 30)
    page.mouse.move(x, y, steps=4)
    frame.wait_for_function("document.getElementById('tip').style.display === 'block'")
    return p, x, y


@pytest.mark.browser
def test_map_tab_hover_click_and_colour(browser, live_map):  # noqa: F811
    url, corpus, _ = live_map
    page, errors = _open_page(browser)
    page.goto(url + "/", wait_until="load")
    page.get_by_role("tab", name="Map").click()
    frame = _map_frame(page)
    assert frame.locator("#status").inner_text().split()[0].isdigit()  # "N items · joint space · ..."

    # hover an image: its thumbnail, served by /items/{id}/content, and its path
    p, *_ = _hover(page, frame, "image")
    frame.wait_for_function(
        "(() => { const i = document.querySelector('#tip img'); return i && i.complete && i.naturalWidth > 0; })()"
    )
    tip = frame.locator("#tip").inner_text()
    assert re.search(r"(red|blue|green)\.png", tip), tip
    assert frame.locator("#tip").get_attribute("data-id") == str(p["id"])
    page.screenshot(path=str(ARTIFACTS / "map-1-hover-image.png"))

    # hover code: its snippet and path; a click opens the item's source
    p, x, y = _hover(page, frame, "code")
    frame.wait_for_selector("#tip pre")
    frame.wait_for_function("document.querySelector('#tip pre').innerText.trim().length > 0")
    assert "fusion.py" in frame.locator("#tip .path").inner_text()
    page.screenshot(path=str(ARTIFACTS / "map-2-hover-code.png"))
    shown = frame.locator("#tip").get_attribute("data-id")
    with page.expect_popup() as pop:
        page.mouse.click(x, y)
    item = pop.value
    item.wait_for_load_state()
    assert item.url.endswith(f"/items/{shown}/content")
    assert "def " in item.locator("body").inner_text() or "class " in item.locator("body").inner_text()
    item.close()

    # colour by cluster: one legend entry per cluster, each named by its label
    frame.select_option("#colour", "cluster")
    frame.wait_for_selector("#map[data-colour='cluster']", state="attached")
    legend = frame.locator(".legend .traces").all_text_contents()  # SVG text: no innerText
    assert len(legend) >= 2 and all(re.match(r"\d+: ", t.strip()) for t in legend), legend
    page.screenshot(path=str(ARTIFACTS / "map-3-colour-by-cluster.png"))

    # the clusters and outliers panels under the map
    page.locator("#mm-clusters-go").click()
    page.wait_for_selector("#mm-explore .mm-clusters li")
    page.locator("#mm-outliers-go").click()
    page.wait_for_selector("#mm-explore .mm-outliers li")
    assert not errors, errors
    page.close()


@pytest.mark.browser
def test_the_map_page_shows_the_jobs_progress_then_the_map(browser, live_map, monkeypatch):  # noqa: F811
    import mmrag.explore.points
    from mmrag.http import explore_jobs

    url, _, _ = live_map
    monkeypatch.setattr(explore_jobs, "WAIT_S", 0.3)
    gate = _hold(monkeypatch, mmrag.explore.points, "map_json", ("map layout", 120, 750))
    page, errors = _open_page(browser)
    try:
        page.goto(url + "/map/view?space=text", wait_until="load")
        page.wait_for_function(
            "document.getElementById('status').innerText.includes('map layout 120 of 750')"
        )
        page.screenshot(path=str(ARTIFACTS / "map-0-computing.png"))
    finally:
        gate.set()
    page.wait_for_selector(READY, state="attached", timeout=FIRST_MAP_MS)
    assert "text space" in page.locator("#status").inner_text()
    assert not errors, errors
    page.close()


@pytest.mark.browser
def test_search_results_are_ringed_on_the_map(browser, live_map):  # noqa: F811
    url, _, _ = live_map
    page, errors = _open_page(browser)
    page.goto(url + "/", wait_until="load")
    page.locator("#mm-query textarea").first.fill("merge ranked lists")
    page.locator("#mm-search").click()
    page.wait_for_function("document.querySelector('#mm-status').innerText.includes('merge ranked lists')")
    page.get_by_role("tab", name="Map").click()
    frame = _map_frame(page, r"/map/view\?highlight=\d")
    names = frame.evaluate("gd.data.map(t => t.name)")
    assert "results" in names and "best result" in names, names
    ringed = frame.evaluate("gd.data.find(t => t.name === 'results').customdata.length")
    assert ringed >= 1
    page.screenshot(path=str(ARTIFACTS / "map-4-results-ringed.png"))
    assert not errors, errors
    page.close()


@pytest.mark.browser
def test_the_map_file_works_without_a_server(browser, live_map):  # noqa: F811
    _, _, path = live_map
    page, errors = _open_page(browser)
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_selector(READY, state="attached")
    _hover(page, page.main_frame, "image")
    assert page.locator("#tip img").get_attribute("src").startswith("data:image/jpeg;base64,")
    page.screenshot(path=str(ARTIFACTS / "map-5-file-hover.png"))
    p, x, y = _hover(page, page.main_frame, "code")
    page.mouse.click(x, y)
    page.wait_for_selector("#item pre")
    assert "fusion.py" in page.locator("#item .path").inner_text()
    page.mouse.move(5, 5)  # the hover tip gone, the item panel stays
    page.screenshot(path=str(ARTIFACTS / "map-6-file-click.png"))
    assert not errors, errors
    page.close()
