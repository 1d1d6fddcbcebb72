"""The REST server through a real uvicorn on 127.0.0.1, over a tiny-models collection."""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from mmrag.api import Engine  # noqa: E402
from mmrag.http.routes import MAX_UPLOAD_BYTES  # noqa: E402
from mmrag.http.security import inside_roots  # noqa: E402
from mmrag.http.server import MAX_REQUEST_HEAD_BYTES, create_app  # noqa: E402
from mmrag.http.service import Service  # noqa: E402
from mmrag.items import Item  # noqa: E402

API_KEY = "s3cret-key"


# --- helpers shared with tests/test_browser.py ------------------------------------------------
def make_corpus(root: Path) -> Path:
    """A few real files of each modality: coloured images with captions, Python, Markdown."""
    (root / "img").mkdir(parents=True)
    for name, colour, caption in (
        ("red", "#d02020", "a red square"),
        ("blue", "#2040d0", "a blue square"),
        ("green", "#20a040", "a green square"),
    ):
        Image.new("RGB", (64, 64), colour).save(root / "img" / f"{name}.png")
        (root / "img" / f"{name}.txt").write_text(caption)
    (root / "src").mkdir()
    (root / "src" / "fusion.py").write_text(
        "def reciprocal_rank_fusion(rankings, k=60):\n"
        '    """Merge ranked lists by reciprocal rank."""\n'
        "    scores = {}\n"
        "    for ranking in rankings:\n"
        "        for rank, doc in enumerate(ranking, 1):\n"
        "            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)\n"
        "    return sorted(scores, key=scores.get, reverse=True)\n\n\n"
        "class Greeter:\n"
        "    def greet(self, name):\n"
        '        return f"hello {name}"\n'
    )
    (root / "docs").mkdir()
    (root / "docs" / "guide.md").write_text(
        "# Guide\n\nThe demo searches pictures, source code and documents with one query.\n\n"
        "## Captions\n\nA text file next to an image is read as its caption.\n"
    )
    return root


def build_collection(tmp: Path) -> tuple[Path, Path]:
    corpus = make_corpus(tmp / "corpus")
    coll = tmp / "coll"
    with Engine.open(coll, write=True, models="tiny") as eng:
        eng.index([str(corpus)])
    return corpus, coll


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving an app on a free loopback port, in a thread of this process."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # a client that keeps a connection open (a browser, gradio_client's event stream) is not waited for
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=1,
            h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,  # as `mmrag serve` runs it
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("server")
    corpus, coll = build_collection(tmp)
    outside = tmp / "outside.txt"
    outside.write_text("secret outside the roots\n")
    app = create_app(coll, api_key=API_KEY, ui=False)
    headers = {"X-API-Key": API_KEY}  # every route but /health needs the token
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=60, headers=headers) as client:
        yield client, corpus, coll, outside, app.state.service
    app.state.service.close()


def png_bytes(colour: str = "#d02020", size: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, "PNG")
    return buf.getvalue()


# --- reads ------------------------------------------------------------------------------------
def test_health_and_stats(served):
    client, corpus, *_ = served
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["models"] == "tiny" and h["image_search"] is True
    stats = client.get("/stats").json()
    assert stats["by_modality"]["image"] == 3
    assert stats["by_modality"]["code"] >= 2  # the function and the class are separate chunks
    assert stats["by_modality"]["text"] >= 1
    assert stats["items"] == h["items"] == sum(stats["by_modality"].values())
    assert str(corpus) in stats["roots"]


def test_openapi_docs(served):
    client = served[0]
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    for path in ("/health", "/stats", "/search", "/items/{item_id}", "/items/{item_id}/content", "/index"):
        assert path in spec["paths"], path
    body = spec["paths"]["/search"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)


def test_json_search_matches_library_hit_shape(served):
    client, _, coll, _, svc = served
    r = client.post("/search", json={"query": "merge ranked lists", "k": 5})
    assert r.status_code == 200, r.text
    data = r.json()
    assert 1 <= len(data["hits"]) <= 5
    assert data["timings"]["total_ms"] > 0 and data["routes"]
    lib = svc.search("merge ranked lists", k=5)
    assert data["hits"] == [
        h.to_dict() for h in lib.hits
    ]  # the same shape and order as `mmrag search --json`
    scores = [h["score"] for h in data["hits"]]
    assert scores == sorted(scores, reverse=True)


def test_search_filters(served):
    client = served[0]
    code = client.post("/search", json={"query": "greet a person", "k": 10, "modalities": ["code"]}).json()
    assert code["hits"] and {h["modality"] for h in code["hits"]} == {"code"}
    assert any(h["symbol"] and h["start_line"] for h in code["hits"])
    md = client.post("/search", json={"query": "captions", "k": 10, "path": "*.md"}).json()
    assert md["hits"] and all(h["source"].endswith(".md") for h in md["hits"])
    one = client.post("/search", json={"query": "square", "k": 1}).json()
    assert len(one["hits"]) == 1


def test_multipart_image_search(served):
    client = served[0]
    r = client.post(
        "/search",
        data={"k": "3", "modalities": "image"},
        files={"image": ("query.png", png_bytes(), "image/png")},
    )
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert len(hits) == 3 and {h["modality"] for h in hits} == {"image"}
    assert "image" in r.json()["routes"]


def test_items_and_content(served):
    client, corpus, *_ = served
    hits = client.post("/search", json={"query": "square", "k": 20}).json()["hits"]
    by = {}
    for h in hits:
        by.setdefault(h["modality"], h)
    img, code = by["image"], by["code"]
    item = client.get(f"/items/{img['id']}").json()
    assert item["id"] == img["id"] and item["modality"] == "image"
    assert item["content_url"] == f"/items/{img['id']}/content"
    thumb = client.get(f"/items/{img['id']}/content", params={"size": 32})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
    decoded = Image.open(io.BytesIO(thumb.content))
    assert max(decoded.size) == 32
    src = client.get(f"/items/{code['id']}/content")
    assert src.status_code == 200 and src.headers["content-type"].startswith("text/plain")
    assert src.text == (corpus / "src" / "fusion.py").read_text()
    similar = client.get(f"/items/{img['id']}/similar", params={"k": 2}).json()["hits"]
    assert len(similar) == 2 and img["id"] not in [h["id"] for h in similar]
    assert {h["modality"] for h in similar} == {"image"}  # more like this stays in the item's modality


# --- bad requests: 4xx with a JSON detail, never 500 --------------------------------------------
@pytest.mark.parametrize(
    "kwargs, status, words",
    [
        ({"json": {"query": ""}}, 400, "Empty query"),
        ({"json": {"query": "   "}}, 400, "Empty query"),
        ({"json": {"query": "x", "k": 0}}, 422, "k"),
        ({"json": {"query": "x", "k": "many"}}, 422, "k"),
        ({"json": {"query": "x", "modalities": ["video"]}}, 422, "video"),
        ({"json": {"query": "x", "weights": {"nope": 1}}}, 422, "nope"),
        ({"json": {"query": "x", "colour": "red"}}, 422, "colour"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "body"),
        ({"data": {"query": ""}, "files": {"image": ("a.png", b"", "image/png")}}, 400, "empty"),
        (
            {"data": {"query": "x", "k": "ten"}, "files": {"image": ("a.png", png_bytes(), "image/png")}},
            422,
            "k",
        ),
        (  # a filter part that is not JSON
            {
                "data": {"query": "x", "filter": "lang = python"},
                "files": {"image": ("a.png", png_bytes(), "image/png")},
            },
            422,
            "filter",
        ),
    ],
)
def test_bad_search_requests(served, kwargs, status, words):
    r = served[0].post("/search", **kwargs)
    assert r.status_code == status, r.text
    assert words.lower() in r.json()["detail"].lower()


@pytest.mark.parametrize(
    "upload",
    [("a.png", b"%PDF-1.4 not an image", "image/png"), ("a.txt", b"hello world\n" * 10, "text/plain")],
)
def test_an_upload_that_is_no_image_is_left_out_and_said(served, upload):
    """The schema promises any bytes may be sent as `image` (no schema can say "a picture"): bytes
    Pillow cannot read are left out of the query, the text is searched, and `warnings` say why."""
    client, *_, svc = served
    r = client.post("/search", data={"query": "merge ranked lists", "k": "3"}, files={"image": upload})
    assert r.status_code == 200, r.text
    assert r.json()["hits"] == [h.to_dict() for h in svc.search("merge ranked lists", k=3).hits]
    assert "not an image" in r.json()["warnings"][0] and "left out" in r.json()["warnings"][0]
    alone = client.post("/search", data={"k": "3"}, files={"image": upload})  # nothing else to search
    assert alone.status_code == 200 and alone.json()["hits"] == [], alone.text
    assert "left out" in alone.json()["warnings"][0]


def test_multipart_image_search_takes_a_filter(served):
    """`filter` on a multipart search: a JSON part, the same filter as JSON searches take."""
    client, corpus, *_, svc = served
    flt = {"field": "name", "op": "in", "value": ["blue.png", "green.png"]}
    r = client.post(
        "/search",
        data={"k": "5", "filter": json.dumps(flt)},
        files={"image": ("query.png", png_bytes("#d02020"), "image/png")},
    )
    assert r.status_code == 200, r.text
    names = [os.path.basename(h["source"]) for h in r.json()["hits"]]
    assert names and set(names) <= {"blue.png", "green.png"}  # the red picture itself is filtered out
    lib = svc.search("", images=[str(corpus / "img" / "red.png")], k=5, where=flt)
    assert [h["id"] for h in r.json()["hits"]] == [h.id for h in lib.hits]
    unfiltered = client.post(
        "/search", data={"k": "5"}, files={"image": ("q.png", png_bytes("#d02020"), "image/png")}
    )
    assert "red.png" in [os.path.basename(h["source"]) for h in unfiltered.json()["hits"]]
    bad = client.post(
        "/search",
        data={"filter": json.dumps({"field": "lnag", "op": "=", "value": "x"})},
        files={"image": ("q.png", png_bytes(), "image/png")},
    )
    assert bad.status_code == 422 and "lnag" in bad.json()["detail"]
    form = client.get("/openapi.json").json()["paths"]["/search"]["post"]["requestBody"]["content"]
    multipart = form["multipart/form-data"]
    assert multipart["schema"]["properties"]["filter"] == {"$ref": "#/components/schemas/Filter"}
    assert multipart["encoding"]["filter"]["contentType"] == "application/json"


def test_huge_upload_is_413(served):
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (MAX_UPLOAD_BYTES + 10)
    r = served[0].post("/search", data={"query": "x"}, files={"image": ("big.png", big, "image/png")})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    r = served[0].post(
        "/search",
        content=b'{"query": "' + b"a" * (2 << 20) + b'"}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413


@pytest.mark.parametrize(
    "url, status",
    [
        ("/items/999999", 404),
        ("/items/999999/content", 404),
        ("/items/999999/similar", 404),
        ("/items/abc", 422),
        ("/items/-1/content", 404),
        ("/items/..%2F..%2Fetc%2Fpasswd/content", 404),
        ("/items/%2e%2e/content", 404),
        ("/items/1%2F..%2F2/content", 404),
        ("/items/%2Fetc%2Fpasswd/content", 404),
        ("/items/1/content?size=100000", 422),
    ],
)
def test_bad_item_requests(served, url, status):
    r = served[0].get(url)
    assert r.status_code in {status, 404, 422} and r.status_code < 500, r.text
    if status != 404:
        assert r.status_code == status
    assert r.headers["content-type"].startswith("application/json")
    assert set(r.json()) == {"detail", "error"} and r.json()["error"], (
        r.text
    )  # the problem shape of every error


@pytest.mark.parametrize("url", ["/items/1.0", "/items/1/content?size=64.0", "/items/1/similar?k=2.0"])
def test_integer_parameters_take_whole_numbers_only(served, url):
    """The schema says integer: "1.0" is no integer in a path or query, as JSON Schema reads it."""
    r = served[0].get(url)
    assert r.status_code == 422 and "whole number" in r.json()["detail"], r.text


def test_content_only_inside_roots(served, tmp_path):
    client, corpus, coll, outside, svc = served
    # items whose recorded paths lead out of the roots: `..`, an absolute path, a link pointing out
    link = corpus / "docs" / "escape.md"
    link.symlink_to(outside)
    crafted = [
        Item(
            key="dotdot", modality="text", source=str(corpus / "docs" / ".." / ".." / "outside.txt"), text="x"
        ),
        Item(key="absolute", modality="text", source=str(outside), text="x"),
        Item(key="symlink", modality="text", source=str(link), text="x"),
        Item(key="inside", modality="text", source=str(corpus / "docs" / "guide.md"), text="x"),
    ]
    with Engine.open(coll, write=True) as eng, eng.collection.store.transaction() as con:
        ids = dict(zip((c.key for c in crafted), eng.collection.store.insert_items(con, crafted)))
    try:
        for key in ("dotdot", "absolute", "symlink"):
            r = client.get(f"/items/{ids[key]}/content")
            assert r.status_code == 403, (key, r.text)
            assert "outside" in r.json()["detail"] and "secret" not in r.text
        ok = client.get(f"/items/{ids['inside']}/content")
        assert ok.status_code == 200 and "Captions" in ok.text
    finally:
        with Engine.open(coll, write=True) as eng, eng.collection.store.transaction() as con:
            eng.collection.store.delete_items(con, ids.values())
        link.unlink()


def test_inside_roots_rules(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "f.txt").write_text("x")
    (tmp_path / "rootless.txt").write_text("x")
    roots = [str(root)]
    assert inside_roots(str(root / "a" / "f.txt"), roots) == (root / "a" / "f.txt").resolve()
    assert inside_roots(str(root / "a" / ".." / ".." / "rootless.txt"), roots) is None
    assert inside_roots(str(tmp_path / "rootless.txt"), roots) is None
    assert inside_roots(str(tmp_path / "root-sibling" / "f"), roots) is None  # a prefix is not a parent
    assert inside_roots("/etc/passwd", roots) is None
    file_root = [str(root / "a" / "f.txt")]  # a single indexed file is its own root
    assert inside_roots(str(root / "a" / "f.txt"), file_root) is not None
    assert inside_roots(str(root / "a"), file_root) is None


# --- writes -------------------------------------------------------------------------------------
def test_index_needs_key_and_updates_search(served, tmp_path, monkeypatch):
    client, *_, svc = served
    new = tmp_path / "more"
    new.mkdir()
    (new / "notes.md").write_text("# Zebra notes\n\nStriped zebras graze on the savanna.\n")
    before = client.get("/stats").json()["items"]
    with httpx.Client(base_url=client.base_url, timeout=60) as bare:  # no token
        assert bare.post("/index", json={"paths": [str(new)]}).status_code == 401
        assert (
            bare.post("/index", json={"paths": [str(new)]}, headers={"X-API-Key": "wrong"}).status_code == 401
        )
    r = client.post("/index", json={"paths": [str(new)]}, headers={"X-API-Key": API_KEY})
    assert r.status_code == 403 and "--allow-index" in r.json()["detail"]  # not a root, not allowed
    monkeypatch.setattr(svc, "allow_index", [os.path.realpath(tmp_path)])
    r = client.post("/index", json={"paths": [str(tmp_path / "missing")]}, headers={"X-API-Key": API_KEY})
    assert r.status_code == 400 and "missing" in r.json()["detail"]
    assert client.post("/index", json={"paths": []}, headers={"X-API-Key": API_KEY}).status_code == 422
    r = client.post("/index", json={"paths": [str(new)]}, headers={"X-API-Key": API_KEY})
    assert r.status_code == 200, r.text
    assert r.json()["report"]["items_added"] == 1
    assert client.get("/stats").json()["items"] == before + 1
    hits = client.post("/search", json={"query": "zebra", "k": 50, "path": "*notes.md"}).json()["hits"]
    assert [h["source"] for h in hits] == [str(new / "notes.md")]  # the reader sees the new items at once
    content = client.get(f"/items/{hits[0]['id']}/content")
    assert content.status_code == 200 and "Striped zebras" in content.text  # the new folder is a root


def test_read_only_service_refuses_index(tmp_path):
    _, coll = build_collection(tmp_path)
    svc = Service(coll, read_only=True)
    try:
        with pytest.raises(PermissionError):
            svc.index([str(tmp_path)])
    finally:
        svc.close()


def test_missing_collection_is_a_clear_error(tmp_path):
    from mmrag.errors import CollectionError

    with pytest.raises(CollectionError, match="No collection"):
        create_app(tmp_path / "nothing", ui=False)


def test_new_collection_with_models_starts_empty(tmp_path):
    svc = Service(tmp_path / "fresh", models="tiny")
    try:
        assert svc.stats()["items"] == 0 and os.path.exists(tmp_path / "fresh" / "manifest.json")
        assert svc.image_search and svc.banner  # the tiny set's warning is shown
    finally:
        svc.close()


# --- /ask: grounded answers through a real chat-completions server on 127.0.0.1 -----------------
LLM_ENV = (
    "MMRAG_LLM_BASE_URL",
    "MMRAG_LLM_MODEL",
    "MMRAG_LLM_API_KEY",
    "MMRAG_LLM_CONFIG",
    "MMRAG_LLM_TIMEOUT",
    "MMRAG_LLM_MAX_RETRIES",
    "MMRAG_LLM_VISION",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
)


@pytest.fixture()
def no_llm_env(monkeypatch):
    for var in LLM_ENV:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.fixture()
def chat(no_llm_env):
    """A scripted model server, named to the app through the environment it reads per request."""
    from test_rag import ChatServer

    server = ChatServer()
    no_llm_env.setenv("MMRAG_LLM_BASE_URL", server.base_url)
    no_llm_env.setenv("MMRAG_LLM_MODEL", "test-model")
    no_llm_env.setenv("MMRAG_LLM_MAX_RETRIES", "0")
    yield server
    server.close()


def sse_events(client, body: dict) -> list[dict]:
    events = []
    with client.stream("POST", "/ask", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: ") :]))
            else:
                assert line == "", line  # events are `data:` lines separated by blank lines
    return events


def test_ask_without_endpoint_is_a_dry_run(served, no_llm_env):
    client, _, _, _, svc = served
    r = client.post("/ask", json={"question": "how are ranked lists merged?", "k": 3})
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["dry_run"] is True and a["answer"] == "" and a["citations"] == []
    assert "MMRAG_LLM_BASE_URL" in a["note"]
    expected = [h.id for h in svc.search("how are ranked lists merged?", k=3).hits]
    assert [c["id"] for c in a["context"]] == expected and [c["n"] for c in a["context"]] == [1, 2, 3]
    assert "<<<SOURCE [1]" in a["context_text"]
    assert a["request"]["messages"][-1]["content"].count("how are ranked lists merged?") >= 1
    # streamed, a dry run is one answer event
    events = sse_events(client, {"question": "captions", "k": 2, "stream": True})
    assert len(events) == 1 and events[0]["answer"]["dry_run"] is True
    assert len(events[0]["answer"]["context"]) == 2


def test_ask_streams_a_scripted_answer_with_citations(served, chat):
    from test_rag import Reply

    client, corpus, *_ = served
    pieces = ("Ranked lists are merged by ", "reciprocal rank fusion [1]", ", see also [2].")
    chat.script.append(Reply(pieces))
    body = {
        "question": "how are ranked lists merged?",
        "k": 4,
        "modalities": ["code", "text"],
        "stream": True,
    }
    events = sse_events(client, body)
    assert [e["delta"] for e in events[:-1]] == list(pieces)
    a = events[-1]["answer"]
    assert a["dry_run"] is False and a["answer"] == "".join(pieces) and a["model"] == "test-model"
    assert [c["n"] for c in a["citations"]] == [1, 2]
    assert [c["id"] for c in a["citations"]] == [c["id"] for c in a["context"][:2]]
    assert {c["modality"] for c in a["context"]} <= {"code", "text"}
    first = a["citations"][0]
    assert first["location"].startswith(first["path"] or first["source"])
    assert client.get(f"/items/{first['id']}/content").status_code == 200  # the link the demo shows
    sent = chat.requests[0]["body"]
    assert sent["model"] == "test-model" and sent["stream"] is True
    assert "how are ranked lists merged?" in json.dumps(sent["messages"])
    # the same question without stream: one JSON answer
    chat.script.append(Reply(("Merged by RRF [1].",)))
    r = client.post("/ask", json={"question": "how are ranked lists merged?", "k": 4})
    assert r.status_code == 200 and r.json()["answer"] == "Merged by RRF [1]."
    assert [c["n"] for c in r.json()["citations"]] == [1]


@pytest.mark.parametrize(
    "reply, status, words",
    [
        ({"status": 401, "error": "bad key"}, 401, "key"),
        ({"status": 404, "error": "no such model"}, 502, "model"),
        ({"status": 429, "headers": {"Retry-After": "120"}}, 429, "429"),
        ({"status": 500, "error": "boom"}, 502, "500"),
    ],
)
def test_ask_maps_model_errors(served, chat, reply, status, words):
    from test_rag import Reply

    for stream in (False, True):  # before the first piece, a stream fails with a status too
        chat.script.append(Reply(**reply))
        r = served[0].post("/ask", json={"question": "captions", "k": 2, "stream": stream})
        assert r.status_code == status, r.text
        assert words.lower() in r.json()["detail"].lower() and r.json()["error"].startswith("LLM")
        if status == 429:
            assert int(r.headers["Retry-After"]) == 120


def test_ask_error_mid_stream_is_an_event(served, chat):
    from test_rag import Reply

    chat.script.append(Reply(("partial", "never"), error_chunk=True))
    events = sse_events(served[0], {"question": "captions", "k": 2, "stream": True})
    assert events[0] == {"delta": "partial"}
    assert events[-1]["error"]["status"] == 502 and "model crashed" in events[-1]["error"]["detail"]
    assert not any("answer" in e for e in events)


def test_a_query_of_symbols_is_answered_as_the_schema_says(served, no_llm_env):
    """What the schema accepts the server answers: a query or question of symbols only (it holds
    more than white space, so the schema's pattern admits it) finds nothing and says so, with 200;
    one of white space alone the schema refuses, and so does the server (400)."""
    import jsonschema_rs

    client = served[0]
    spec = client.get("/openapi.json").json()
    for path, field in (("/ask", "question"), ("/search", "query")):
        schema = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        valid = jsonschema_rs.validator_for(schema["properties"][field]).is_valid  # ECMA-262 regexes
        for text in ("?!", "+++", "___", " - ", "\u200b"):
            assert valid(text)
            r = client.post(path, json={field: text})
            assert r.status_code == 200, (text, r.text)
            if path == "/search":
                assert r.json()["hits"] == [] and "no letter or digit" in r.json()["warnings"][0]
            else:
                assert r.json()["context"] == [] and r.json()["dry_run"]  # nothing was sent to a model
        for text in ("", "   ", "\u00a0\n", "\ufeff"):
            assert not valid(text)
            assert client.post(path, json={field: text}).status_code == 400
        for text in ("captions", "Flüsse", "東京"):
            assert valid(text) and client.post(path, json={field: text, "k": 2}).status_code == 200


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"question": ""}, 400, "Empty question"),
        ({"question": "  \n"}, 400, "Empty question"),
        ({}, 400, "Empty question"),
        ({"question": "x", "k": 0}, 422, "k"),
        ({"question": "x", "modalities": ["video"]}, 422, "video"),
        ({"question": "x", "temperature": 2}, 422, "temperature"),
    ],
)
def test_bad_ask_requests(served, no_llm_env, body, status, words):
    r = served[0].post("/ask", json=body)
    assert r.status_code == status, r.text
    assert words.lower() in r.json()["detail"].lower()


def test_ask_uses_the_cfg_given_to_the_app(tmp_path, no_llm_env):
    from test_rag import ChatServer, Reply

    from mmrag.rag import LLMCfg

    _, coll = build_collection(tmp_path)
    chat = ChatServer()
    chat.script.append(Reply(("Fixed endpoint [1].",)))
    app = create_app(coll, ui=False, llm=LLMCfg(base_url=chat.base_url, model="pinned"))
    try:
        with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=60) as client:
            a = client.post("/ask", json={"question": "a red square", "k": 2}).json()
        assert a["answer"] == "Fixed endpoint [1]." and chat.requests[0]["body"]["model"] == "pinned"
    finally:
        chat.close()
        app.state.service.close()


def test_weights_per_query_kind_over_rest(served):
    """REST's weights take the CLI's names: a KIND: prefix, ROUTE@N, joint.MODALITY."""
    client, _, _, _, svc = served
    weights = {"prose:code": 3.0, "code:text": 0.0, "prose:joint.code": 0.0}
    r = client.post("/search", json={"query": "greet a person", "k": 5, "weights": weights})
    assert r.status_code == 200, r.text
    lib = svc.search("greet a person", k=5, weights=weights)
    assert r.json()["hits"] == [h.to_dict() for h in lib.hits]
    for bad in ({"docs:code": 1}, {"lexical@1": 1}, {"caption@1": 1}):  # what the server would refuse
        assert client.post("/search", json={"query": "x", "weights": bad}).status_code == 422, bad
