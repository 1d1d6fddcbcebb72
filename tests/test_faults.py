"""The server when clients and the disk misbehave: a real `mmrag serve` subprocess, raw sockets.

Clients that hang up mid-response, a 100 MB body (declared, and chunked without a length), 1,000
idle connections held open, and a disk that fills during an indexing job. After each the server
still answers, and its log holds no traceback; after the disk fills, what was committed is kept.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from test_crash import check_consistent, disk_full_at, make_corpus  # noqa: E402
from test_server import API_KEY, LiveServer, build_collection, free_port  # noqa: E402

H = {"X-API-Key": API_KEY}
MB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mmrag serve` over a tiny collection with one large image; its log kept for the end."""
    tmp = tmp_path_factory.mktemp("faults")
    corpus, coll = build_collection(tmp)
    import numpy as np
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    Image.fromarray(noise).save(corpus / "img" / "noise.png")  # its 1024-pixel thumbnail is ~3 MB of PNG
    from mmrag.api import Engine

    with Engine.open(coll, write=True) as eng:
        eng.index([str(corpus)])
    port = free_port()
    log = tmp / "server.log"
    env = {**os.environ, "MMRAG_API_KEY": API_KEY, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mmrag.cli", "serve", "-c", str(coll), "--no-ui", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(base + "/health", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "mmrag serve did not start:\n" + log.read_text()
        time.sleep(0.3)
    with httpx.Client(base_url=base, headers=H, timeout=60) as client:
        found = client.post("/search", json={"query": "noise", "k": 50, "path": "*noise.png"}).json()
        big_id = found["hits"][0]["id"]
        yield client, port, big_id, log
    proc.terminate()
    proc.wait(60)
    text = log.read_text()
    assert "Traceback" not in text and "Exception in ASGI" not in text, text[-4000:]


def _still_serves(client) -> None:
    assert client.get("/health").status_code == 200
    r = client.post("/search", json={"query": "a red square", "k": 3})
    assert r.status_code == 200 and r.json()["hits"]


def _raw(port: int, request: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(request)
    return s


def _head(method: str, path: str, extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {API_KEY}\r\n{extra}\r\n".encode()


def test_clients_that_hang_up_mid_response(server):
    client, port, big_id, _ = server
    for n in range(20):  # a 3 MB answer read only in part, then the socket closed
        s = _raw(port, _head("GET", f"/items/{big_id}/content?size=1024"))
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        if n % 2:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
        s.close()
    body = b'{"query": "a red square", "k": 50}'
    for _ in range(10):  # a search asked for and abandoned before its answer
        s = _raw(
            port,
            _head("POST", "/search", f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n")
            + body,
        )
        s.close()
    s = _raw(
        port, _head("POST", "/search", "Content-Type: application/json\r\nContent-Length: 1000\r\n") + b'{"q'
    )
    s.close()  # and a body cut off mid-way
    _still_serves(client)


def _status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0


def test_a_100_mb_body_is_refused_early(server):
    client, port, *_ = server
    hundred = 100 * MB
    for path, kind in (
        ("/search", "application/json"),
        ("/search", "multipart/form-data; boundary=x"),
        ("/index", "application/json"),
    ):
        s = _raw(port, _head("POST", path, f"Content-Type: {kind}\r\nContent-Length: {hundred}\r\n"))
        s.sendall(b"\0" * MB)  # 1% of what it declared: the answer must come without the rest
        assert _status(s) == 413, path
        s.close()
    # chunked, no length declared: refused once past the limit, long before 100 MB
    head = "Content-Type: multipart/form-data; boundary=x\r\nTransfer-Encoding: chunked\r\n"
    s = _raw(port, _head("POST", "/search", head))
    part = b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
    s.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")  # a well-formed upload that never ends
    sent, status = 0, 0
    chunk = f"{MB:x}\r\n".encode() + b"\0" * MB + b"\r\n"
    while sent < hundred:
        try:
            s.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += MB
        if select.select([s], [], [], 0)[0]:
            status = _status(s)
            break
    s.close()
    assert status == 413 and sent < 40 * MB, (status, sent // MB)
    _still_serves(client)


def test_1000_idle_connections_do_not_stop_it(server):
    client, port, *_ = server
    idle = []
    try:
        for n in range(1000):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            if n % 10 == 0:
                s.sendall(
                    b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                )  # and some never finish their request
            idle.append(s)
        t0 = time.monotonic()
        with httpx.Client(base_url=client.base_url, headers=H, timeout=30) as fresh:
            _still_serves(fresh)
        assert time.monotonic() - t0 < 20
    finally:
        for s in idle:
            s.close()
    _still_serves(client)


def test_disk_full_during_a_server_run_index_loses_nothing_committed(tmp_path, monkeypatch):
    """As tests/test_crash.py makes it: the store's ninth vector insert finds no space left."""
    _, coll = build_collection(tmp_path)
    corpus = make_corpus(tmp_path / "more", n_files=10, n_records=900)
    paths = [str(corpus), str(corpus / "docs.jsonl")]
    from mmrag.http.server import create_app
    from mmrag.storage import store as store_mod

    real, flaky = store_mod.Store.insert_vectors, disk_full_at(9)
    app = create_app(coll, api_key=API_KEY, ui=False, allow_index=[corpus])
    svc = app.state.service
    try:
        with LiveServer(app) as live, httpx.Client(base_url=live.url, headers=H, timeout=120) as client:
            before = check_consistent(coll)
            monkeypatch.setattr(store_mod.Store, "insert_vectors", flaky)
            r = client.post("/index", json={"paths": paths})
            assert r.status_code == 507 and "disk is full" in r.json()["detail"], r.text
            job = client.get("/index/1").json()
            assert job["state"] == "failed" and job["error"]["detail"].endswith("No space left on device")
            monkeypatch.setattr(store_mod.Store, "insert_vectors", real)
            committed = check_consistent(coll)  # the collection opens and is consistent
            assert len(before) < len(committed) < len(before) + 10 * 5 + 900  # some batches made it
            assert all(committed[k] == i for k, i in before.items())
            assert client.get("/stats").json()["items"] == len(committed)  # the server serves what is stored
            _still_serves(client)
            r = client.post("/index", json={"paths": paths})  # space again: the rest is indexed
            assert r.status_code == 200, r.text
            assert r.json()["report"]["items_added"] == len(before) + 10 * 5 + 900 - len(committed)
        final = check_consistent(coll)
        assert all(final[k] == i for k, i in committed.items())  # nothing committed was re-embedded
    finally:
        svc.close()
