"""The local server turned against its user, as an attacker would try it: each test is one attack.

A real uvicorn on 127.0.0.1 serves a tiny-models collection with the UI mounted, the way
`mmrag serve` runs it; the requests are what a hostile page, or a rebinding domain, can send.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("gradio")
httpx = pytest.importorskip("httpx")

from test_server import LiveServer, build_collection, free_port  # noqa: E402

from mmrag.http.server import create_app  # noqa: E402

TOKEN = "t0ken-for-tests"
READ_TOKEN = "read-t0ken-for-tests"
HUGE_ID = 1147938009910439882629925353713303552  # past SQLite's int64


def _app(coll: Path, **options):
    """create_app with the options this server version knows (the attacks replay on any version)."""
    known = inspect.signature(create_app).parameters
    return create_app(coll, **{k: v for k, v in options.items() if k in known})


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A served collection; `allowed` may be indexed, `elsewhere` may not (and holds a secret)."""
    tmp = tmp_path_factory.mktemp("security")
    corpus, coll = build_collection(tmp)
    allowed, elsewhere = tmp / "allowed", tmp / "elsewhere"
    allowed.mkdir()
    (allowed / "notes.md").write_text("# Allowed\n\nNotes that may be indexed.\n")
    elsewhere.mkdir()
    (elsewhere / "secret.md").write_text("# Secret\n\nA private note outside every root.\n")
    (corpus / "docs" / "escape").symlink_to(elsewhere, target_is_directory=True)
    app = _app(coll, api_key=TOKEN, read_token=READ_TOKEN, allow_index=[allowed])
    headers = {"X-API-Key": TOKEN}
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=60, headers=headers) as client:
        yield client, live, corpus, allowed, elsewhere
    app.state.service.close()


def _bare(live, **kwargs) -> httpx.Client:
    """A client that carries no token (or what `kwargs` give it)."""
    return httpx.Client(base_url=live.url, timeout=60, **kwargs)


def _items(client) -> int:
    return client.get("/stats").json()["items"]


# --- cross-site request forgery ----------------------------------------------------------------
def test_forged_text_plain_post_is_not_run(site):
    client, live, _, allowed, _ = site
    before = _items(client)
    body = json.dumps({"paths": [str(allowed)]})
    forged = client.post(
        "/index",
        content=body,
        headers={"Origin": "http://evil.example", "Content-Type": "text/plain", "X-API-Key": TOKEN},
    )
    assert forged.status_code == 403 and "Cross-origin" in forged.json()["detail"]
    other_port = client.post(  # another local port is another origin too
        "/index", json={"paths": [str(allowed)]}, headers={"Origin": "http://127.0.0.1:1", "X-API-Key": TOKEN}
    )
    assert other_port.status_code == 403
    plain = client.post("/index", content=body, headers={"Content-Type": "text/plain", "X-API-Key": TOKEN})
    assert plain.status_code == 415  # not JSON, even with the token and no Origin
    form = client.post("/ask", data={"question": "hello"})
    assert form.status_code == 415  # with the token: the body is still not JSON
    with _bare(live) as bare:
        assert bare.post("/ask", data={"question": "hello"}).status_code == 401
    assert _items(client) == before


def test_writes_need_the_token(site):
    client, live, _, allowed, _ = site
    before = _items(client)
    with _bare(live) as bare:
        assert bare.post("/index", json={"paths": [str(allowed)]}).status_code == 401
        wrong = bare.post("/index", json={"paths": [str(allowed)]}, headers={"X-API-Key": "guess"})
        assert wrong.status_code == 401
        same_origin = bare.post(  # the page's own origin, but no token: still refused
            "/index", json={"paths": [str(allowed)]}, headers={"Origin": live.url}
        )
        assert same_origin.status_code == 401
    assert _items(client) == before


@pytest.mark.parametrize(
    "method, url, body",
    [
        ("GET", "/stats", None),
        ("POST", "/search", {"query": "square"}),
        ("POST", "/ask", {"question": "what is here?"}),
        ("GET", "/items/1", None),
        ("GET", "/items/1/content", None),
        ("GET", "/items/1/similar", None),
        ("GET", "/dupes", None),
        ("GET", "/index/1", None),
        ("POST", "/index", {"paths": ["/tmp"]}),
        ("GET", "/", None),
        ("GET", "/docs", None),
        ("GET", "/openapi.json", None),
        ("GET", "/gradio_api/info", None),
        ("GET", "/config", None),
    ],
)
def test_every_route_but_health_needs_a_token(site, method, url, body):
    """Reads too: any process of any user can reach loopback, so reading is no less private."""
    _, live, *_ = site
    with _bare(live) as bare:
        assert bare.get("/health").status_code == 200  # the health check alone is open
        for headers in ({}, {"X-API-Key": "guess"}, {"Cookie": f"mmrag-token-127.0.0.1-{live.port}=guess"}):
            r = bare.request(method, url, json=body, headers=headers)
            assert r.status_code == 401, (url, headers, r.status_code, r.text[:200])
            assert "token" in r.json()["detail"]
        page = bare.get(url, headers={"Accept": "text/html"}) if method == "GET" else None
        if page is not None:  # a browser is told what to open
            assert page.status_code == 401 and "?token=" in page.text
        for headers in ({"X-API-Key": TOKEN}, {"Authorization": f"token {TOKEN}"}, {"X-API-Key": READ_TOKEN}):
            r = bare.request(method, url, json=body, headers=headers)
            assert r.status_code != 401, (url, headers, r.text[:200])


def test_the_read_token_reads_but_cannot_index(site):
    client, live, _, allowed, _ = site
    before = _items(client)
    with _bare(live, headers={"X-API-Key": READ_TOKEN}) as reader:
        assert reader.get("/stats").status_code == 200
        hits = reader.post("/search", json={"query": "a red square", "k": 3})
        assert hits.status_code == 200 and hits.json()["hits"]
        item = hits.json()["hits"][0]["id"]
        assert reader.get(f"/items/{item}/content").status_code == 200
        assert reader.get("/dupes").status_code == 200
        for wait in ("true", "false"):
            r = reader.post("/index", params={"wait": wait}, json={"paths": [str(allowed)]})
            assert r.status_code == 403 and "not index" in r.json()["detail"]
        # a client's own role header counts for nothing: the guard sets it
        forged = reader.post("/index", json={"paths": [str(allowed)]}, headers={"X-Mmrag-Role": "write"})
        assert forged.status_code == 403
        visit = reader.get(f"/?token={READ_TOKEN}", follow_redirects=False)
        assert visit.status_code == 303  # a page opened from the read URL gets the read cookie
    name, value = visit.headers["set-cookie"].split(";", 1)[0].split("=", 1)
    with _bare(live, cookies={name: value}) as page:
        assert page.post("/search", json={"query": "square"}).status_code == 200
        assert page.post("/index", json={"paths": [str(allowed)]}).status_code == 403
    assert _items(client) == before


def test_token_url_sets_a_strict_cookie_that_authorises_writes(site, tmp_path):
    client, live, _, _, _ = site
    bad = client.get("/?token=wrong", follow_redirects=False)
    assert bad.status_code == 401
    visit = client.get(f"/?token={TOKEN}", follow_redirects=False)
    assert visit.status_code == 303 and visit.headers["location"] == "/"  # the token leaves the address
    cookie = visit.headers["set-cookie"]
    assert "SameSite=Strict" in cookie and "HttpOnly" in cookie
    name, value = cookie.split(";", 1)[0].split("=", 1)
    assert name == f"mmrag-token-127.0.0.1-{live.port}"  # named per host and port, as Jupyter's
    with httpx.Client(base_url=live.url, cookies={name: value}, timeout=60) as page:
        r = page.post("/index", json={"paths": [str(tmp_path / "nowhere")]}, headers={"Origin": live.url})
        assert r.status_code == 403  # authorised: what stops it now is the folder rule
        assert page.get("/stats").status_code == 200
    other_port = f"mmrag-token-127.0.0.1-{live.port + 1}"  # the cookie of a server on another port
    with httpx.Client(base_url=live.url, cookies={other_port: value}, timeout=60) as page:
        assert page.get("/stats").status_code == 401


# --- DNS rebinding -----------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/health", "/stats", "/items/1", "/items/1/content", "/", "/openapi.json"])
def test_rebinding_host_is_refused_before_any_route(site, path):
    client, live, *_ = site
    r = client.get(path, headers={"Host": f"evil.example:{live.port}"})
    assert r.status_code == 400 and "--allow-host" in r.json()["detail"]
    for host in (f"127.0.0.1:{live.port}", f"localhost:{live.port}", f"[::1]:{live.port}"):
        assert client.get("/health", headers={"Host": host}).status_code == 200


def test_allow_host_and_bound_address():
    from mmrag.http.security import Guard

    g = Guard.for_bind("127.0.0.1", None, ["mmrag.lan"])
    assert g.host_allowed("mmrag.lan:7860") and g.host_allowed("LOCALHOST") and g.host_allowed("[::1]:80")
    assert not g.host_allowed("evil.example:7860") and not g.host_allowed("") and not g.host_allowed(None)
    assert not g.host_allowed("127.0.0.1.evil.example")
    lan = Guard.for_bind("192.168.1.5", None)
    assert lan.host_allowed("192.168.1.5:7860") and not lan.host_allowed("10.0.0.1")
    anywhere = Guard.for_bind("0.0.0.0", None)
    assert anywhere.host_allowed("10.0.0.7:7860") and not anywhere.host_allowed("rebind.example")


# --- indexing anything -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["etc", "dotdot", "symlink", "elsewhere"])
def test_index_outside_the_allowed_folders_is_403(site, kind, monkeypatch):
    client, _, corpus, _, elsewhere = site
    monkeypatch.chdir(corpus / "docs")
    path = {
        "etc": "/etc",
        "dotdot": "../../..",
        "symlink": str(corpus / "docs" / "escape"),
        "elsewhere": str(elsewhere),
    }[kind]
    before = _items(client)
    r = client.post("/index", json={"paths": [path]}, headers={"X-API-Key": TOKEN})
    assert r.status_code == 403, r.text
    assert "outside the folders this server may index" in r.json()["detail"]
    assert _items(client) == before


def test_symlink_inside_an_allowed_folder_is_not_followed_out(site):
    client, _, corpus, _, _ = site
    before = _items(client)
    r = client.post("/index", json={"paths": [str(corpus / "docs")]}, headers={"X-API-Key": TOKEN})
    assert r.status_code == 200, r.text
    assert _items(client) == before  # docs/escape -> elsewhere/secret.md was not read
    hits = client.post("/search", json={"query": "A private note outside every root", "k": 50}).json()
    assert not any("secret.md" in json.dumps(h) for h in hits["hits"])


def test_token_visit_redirects_to_this_server_only(site):
    import http.client
    from urllib.parse import urlsplit

    _, live, *_ = site
    url = urlsplit(live.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.request("GET", f"//evil.example/?token={TOKEN}")  # a path that reads as another host
    r = conn.getresponse()
    location = r.getheader("location")
    conn.close()
    assert r.status == 303 and location.startswith("/") and not location.startswith("//"), location


def test_index_inside_allowed_folder_works(site):
    client, _, _, allowed, _ = site
    before = _items(client)
    r = client.post("/index", json={"paths": [str(allowed)]}, headers={"X-API-Key": TOKEN})
    assert r.status_code == 200, r.text
    assert _items(client) == before + 1


def test_gradio_index_endpoint_needs_the_token_and_the_folder_rule(site):
    gradio_client = pytest.importorskip("gradio_client")
    client, live, _, _, elsewhere = site
    before = _items(client)
    with pytest.raises(Exception):  # noqa: B017 (gradio_client's own error type varies by version)
        gradio_client.Client(live.url + "/", verbose=False, download_files=False)  # no token: no UI
    # a client holding the read token may use the UI but not its Index tab
    reader = {"X-API-Key": READ_TOKEN}
    ui = gradio_client.Client(live.url + "/", verbose=False, download_files=False, headers=reader)
    status, _ = ui.predict(str(elsewhere), "", api_name="/index")
    assert "needs the server's token" in status
    status, _ = ui.predict("/etc", TOKEN, api_name="/index")  # the token typed in: the folder rule holds
    assert "outside the folders" in status
    assert _items(client) == before


# --- errors that were 500 or wrong -------------------------------------------------------------
@pytest.mark.parametrize(
    "url", [f"/items/{HUGE_ID}", f"/items/{HUGE_ID}/content", f"/items/{HUGE_ID}/similar", "/items/0/similar"]
)
def test_unknown_items_are_404(site, url):
    r = site[0].get(url)
    assert r.status_code == 404, r.text
    assert r.json()["detail"]


@pytest.mark.parametrize(
    "method, url", [("DELETE", "/search"), ("PUT", "/items/1"), ("POST", "/health"), ("PATCH", "/index")]
)
def test_undeclared_methods_are_405(site, method, url):
    r = site[0].request(method, url)
    assert r.status_code == 405, r.text
    assert r.headers["allow"]


def test_openapi_documents_what_the_server_answers(site):
    spec = site[0].get("/openapi.json").json()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            errors = {s: r for s, r in op["responses"].items() if s.startswith(("4", "5"))}
            assert {"400", "403"} <= set(errors), (method, path)
            for status, r in errors.items():
                ref = r["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/Problem"), (method, path, status)
    for path in ("/search", "/ask", "/index"):
        body = spec["paths"][path]["post"]["requestBody"]
        assert body["required"] is True
        schema = body["content"]["application/json"]["schema"]
        assert schema["required"], path
    assert spec["paths"]["/index"]["post"]["requestBody"]["content"]["application/json"]["schema"][
        "required"
    ] == ["paths"]
    assert {"401", "413", "415"} <= set(spec["paths"]["/index"]["post"]["responses"])
    search = spec["paths"]["/search"]["post"]["requestBody"]["content"]
    assert search["application/json"]["schema"]["properties"]["k"]["maximum"] >= 1
    assert search["application/json"]["schema"]["properties"]["query"]["maxLength"] > 0
    image = search["multipart/form-data"]["schema"]["properties"]["image"]
    assert image["minLength"] == 1 and "MB" in image["description"] and "413" in image["description"]


# --- the commands: a tokened URL, writes refused without it ----------------------------------
def _start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, str, list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmrag.cli", *args], stderr=subprocess.PIPE, text=True, env=env
    )
    lines: list[str] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"(http://\S+)", line)
        if m and "serving" in line:
            return proc, m.group(1), lines
    proc.kill()
    raise AssertionError("no URL printed:\n" + "".join(lines))


def _wait_up(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer")


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_commands_print_the_tokened_url_and_refuse_writes_without_it(tmp_path, command):
    corpus, coll = build_collection(tmp_path)
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("MMRAG_API_KEY", None)
    args = [command, "-c", str(coll), "--port", str(port)]
    args += ["--no-ui", "--read-token"] if command == "serve" else []
    proc, url, lines = _start(args, env)
    try:
        m = re.fullmatch(rf"http://127\.0\.0\.1:{port}/\?token=([\w-]{{20,}})", url)
        assert m, url
        token = m.group(1)
        base = f"http://127.0.0.1:{port}/"
        _wait_up(base)
        target = {"paths": [str(corpus)]}
        assert httpx.post(base + "index", json=target, timeout=60).status_code == 401
        assert httpx.get(base + "stats", timeout=60).status_code == 401  # reads need it too
        assert httpx.get(base + "stats", headers={"X-API-Key": token}, timeout=60).status_code == 200
        if command == "serve":  # --read-token: a second URL whose token reads but does not index
            while not any("read-only URL" in ln for ln in lines) and len(lines) < 50:
                lines.append(proc.stderr.readline())  # printed after the URL
            shared = next(ln for ln in lines if "read-only URL" in ln)
            read = re.search(r"\?token=([\w-]{20,})", shared).group(1)
            assert read != token
            search = {"query": "a red square", "k": 2}
            ok = httpx.post(base + "search", json=search, headers={"X-API-Key": read}, timeout=60)
            assert ok.status_code == 200 and ok.json()["hits"]
            no = httpx.post(base + "index", json=target, headers={"X-API-Key": read}, timeout=60)
            assert no.status_code == 403
        r = httpx.post(base + "index", json=target, headers={"X-API-Key": token}, timeout=120)
        assert r.status_code == 200, r.text  # the collection's own root, with the printed token
    finally:
        proc.terminate()
        proc.wait(30)


def test_no_auth_warns_and_env_key_replaces_the_token(monkeypatch, capsys):
    from mmrag.cli.serve import _api_key

    monkeypatch.setenv("MMRAG_API_KEY", "from-env")
    assert _api_key("127.0.0.1") == ("from-env", False)
    monkeypatch.delenv("MMRAG_API_KEY")
    first, second = _api_key("127.0.0.1")[0], _api_key("127.0.0.1")[0]
    assert first and second and first != second  # random per start
    assert _api_key("127.0.0.1", no_auth=True) == (None, False)
    assert (
        "--no-auth: no token; any program on this machine can search, read and index"
        in capsys.readouterr().err
    )
    assert _api_key("0.0.0.0", no_auth=True) == (None, True)  # exposed without a token: no writes
