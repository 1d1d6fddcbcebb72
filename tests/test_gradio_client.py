"""The demo's API as gradio_client sees it, against a live server with a token (as `mmrag serve` runs).

One named endpoint per action, /search callable with the query alone and its filters named, the
UI's own plumbing (page loads, a thumbnail click, a threshold that follows its space) left out of
the listing, and the token passed as the README says. A path under the API's folders that no route
has answers in the problem shape, though the UI is mounted at `/`.
"""

from __future__ import annotations

import pytest

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")
httpx = pytest.importorskip("httpx")

from test_server import LiveServer, build_collection  # noqa: E402

TOKEN = "gradio-client-token"
SEARCH_PARAMS = [
    "query",
    "image",
    "modalities",
    "k",
    "language",
    "date_field",
    "date_from",
    "date_to",
    "folder",
]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    import torch

    from mmrag.http.server import create_app

    torch.set_num_threads(1)
    _, coll = build_collection(tmp_path_factory.mktemp("gradio-client"))
    app = create_app(coll, api_key=TOKEN)
    with LiveServer(app) as server:
        yield server.url, app.state.service
    app.state.service.close()


@pytest.fixture(scope="module")
def client(live):
    from gradio_client import Client

    client = Client(live[0] + "/", headers={"X-API-Key": TOKEN}, verbose=False)  # as the README says
    yield client
    client.close()


def test_the_api_lists_one_named_endpoint_per_action(client):
    api = client.view_api(print_info=False, return_format="dict")
    named = api["named_endpoints"]
    assert {"/search", "/ask", "/more_like_this", "/index", "/dupes", "/clusters", "/outliers"} <= set(named)
    internal = [n for n in named if n.startswith("/lambda") or n.rsplit("_", 1)[-1].isdigit()]
    assert not internal and not api["unnamed_endpoints"], sorted(named)
    params = named["/search"]["parameters"]
    assert [p["parameter_name"] for p in params] == SEARCH_PARAMS
    assert [p["parameter_name"] for p in params if not p["parameter_has_default"]] == ["query"]


def test_search_with_the_query_alone(client, live):
    _, svc = live
    status, _gallery, code_html, text_html, *_ = client.predict("merge ranked lists", api_name="/search")
    assert "for “merge ranked lists”" in status and "ms" in status
    hits = svc.search("merge ranked lists", k=12).hits  # the UI's default number of results
    for h in hits:
        assert (
            f'data-id="{h.id}"' in (code_html if h.modality == "code" else text_html) or h.modality == "image"
        )
    status, *_ = client.predict("read a json file", api_name="/search")  # the example
    assert "read a json file" in status
    # a named filter: only Python code (the guide is Markdown, the pictures have no language)
    status, _gallery, code_html, text_html, *_ = client.predict(
        "merge ranked lists", language="python", api_name="/search"
    )
    assert "fusion.py" in code_html and not text_html, status


def test_without_the_token_the_client_is_refused(live):
    from gradio_client import Client

    with pytest.raises(Exception):  # noqa: B017 (the client's own error type varies by version)
        Client(live[0] + "/", verbose=False)


@pytest.mark.parametrize(
    "path", ["/items/..%2F..%2Fetc%2Fpasswd/content", "/items/1%2F..%2F2/content", "/index/a/b", "/map/x/y"]
)
def test_a_path_no_route_has_answers_in_the_problem_shape(live, path):
    r = httpx.get(live[0] + path, headers={"X-API-Key": TOKEN})
    assert r.status_code == 404, r.text
    assert set(r.json()) == {"detail", "error"} and r.json()["error"] == "NotFound"
