"""GET /map, /clusters, /outliers through HTTP on a live server, and the map page it serves."""

from __future__ import annotations

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from test_server import LiveServer, build_collection

    from mmrag.http.server import create_app

    _, coll = build_collection(tmp_path_factory.mktemp("explore-http"))
    app = create_app(coll, ui=False)
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=120) as c:
        yield c
    app.state.service.close()


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
    ],
)
def test_bad_parameters_get_the_problem_shape(client, path, params, status):
    r = client.get(path, params=params)
    assert r.status_code == status, r.text
    assert r.json()["detail"]


def test_the_map_page_and_its_plotly(client):
    page = client.get("/map/view", params={"highlight": "1,2", "colour": "cluster"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '"/map?space=joint&highlight=1&highlight=2"' in page.text and 'src="/map/plotly.js"' in page.text
    js = client.get("/map/plotly.js")
    assert js.status_code == 200 and "plotly.js (gl2d" in js.text[:300] and len(js.content) > 1_000_000
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/map", "/clusters", "/outliers"} <= set(paths) and "/map/view" not in paths
