"""Long work off the request path: indexing jobs, /dupes beside searches, SIGTERM mid-job.

The blocking cases are made deterministic rather than timed: the slow work is held on an event,
and a search must answer while it is held.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from test_crash import check_consistent, make_corpus  # noqa: E402
from test_server import API_KEY, LiveServer, build_collection, free_port  # noqa: E402

from mmrag.http.server import create_app  # noqa: E402

H = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jobs")
    corpus, coll = build_collection(tmp)
    big = make_corpus(tmp / "big", n_files=20, n_records=900)
    app = create_app(coll, api_key=API_KEY, ui=False, allow_index=[big])
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=60, headers=H) as client:
        yield client, app.state.service, big, coll
    app.state.service.close()


def _wait_job(client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/index/{job_id}").json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end: {job}")


def test_index_job_reports_progress_and_its_report(live):
    client, svc, big, coll = live
    before = client.get("/stats").json()["items"]
    r = client.post("/index", params={"wait": "false"}, json={"paths": [str(big), str(big / "docs.jsonl")]})
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    assert r.headers["location"] == job["url"] == f"/index/{job['id']}"
    again = client.post("/index", params={"wait": "false"}, json={"paths": [str(big)]})
    assert again.status_code == 409 and "in progress" in again.json()["detail"]  # one job at a time
    seen = []
    while (j := client.get(job["url"]).json())["state"] in ("queued", "running"):
        seen.append(j["progress"])
        assert client.post("/search", json={"query": "record about topic", "k": 3}).status_code == 200
        time.sleep(0.05)
    assert j["state"] == "done" and j["error"] is None, j
    assert j["report"]["items_added"] == 20 * 5 + 900
    assert any(p["stage"] for p in seen)  # progress was reported while it ran
    assert client.get("/stats").json()["items"] == before + 20 * 5 + 900
    assert client.get("/index/999").status_code == 404
    # the synchronous answer of old: the report, the stats, and now the job
    same = client.post("/index", json={"paths": [str(big), str(big / "docs.jsonl")]})
    assert same.status_code == 200 and same.json()["job"]["state"] == "done"
    assert same.json()["report"]["items_added"] == 0 and same.json()["stats"]["items"] == before + 1000
    check_consistent(coll)


def test_searches_answer_while_dupes_and_indexing_are_held(live, monkeypatch):
    """/dupes and an indexing job each held mid-work: searches, items and stats still answer."""
    client, svc, big, _ = live
    import mmrag.http.service as service_mod

    real_dupes = service_mod.find_dupes
    in_dupes, release = threading.Event(), threading.Event()

    def held_dupes(*args, **kwargs):
        in_dupes.set()
        release.wait(60)
        return real_dupes(*args, **kwargs)

    monkeypatch.setattr(service_mod, "find_dupes", held_dupes)
    more = big / "more.jsonl"  # new records: the job has batches to embed
    more.write_text(
        "".join(f'{{"_id": "m{i}", "text": "more record {i} on topic {i % 7}"}}\n' for i in range(600))
    )
    dupes = threading.Thread(target=lambda: client.get("/dupes"), daemon=True)
    dupes.start()
    assert in_dupes.wait(30)
    from mmrag.http.jobs import IndexJob

    real_progress = IndexJob.progress
    in_job = threading.Event()

    def held_progress(job, stage, done, total):
        if stage == "embedded" and not in_job.is_set():
            in_job.set()
            release.wait(60)  # the first batch is committed; the job holds here
        return real_progress(job, stage, done, total)

    monkeypatch.setattr(IndexJob, "progress", held_progress)
    r = client.post("/index", params={"wait": "false"}, json={"paths": [str(more)]})
    assert r.status_code == 202 and in_job.wait(60)
    job_id = r.json()["job"]["id"]
    try:
        for query in ("record about topic 3", "def f1_2(x)", "a red square"):
            r = client.post("/search", json={"query": query, "k": 5}, timeout=20)
            assert r.status_code == 200 and r.json()["hits"], r.text
        assert client.get("/stats", timeout=20).status_code == 200
        assert svc.jobs.get(job_id).running and dupes.is_alive()  # both still held
    finally:
        release.set()
    dupes.join(60)
    assert _wait_job(client, job_id)["state"] == "done"


@pytest.mark.heavy  # a server subprocess and 800 records: ~30 s on the busy 2 cores, over the default budget
def test_sigterm_during_a_job_keeps_what_was_committed_then_exits(tmp_path):
    """A real `mmrag serve`: SIGTERM mid-job stops it after its batch, saves, and the process ends."""
    _, coll = build_collection(tmp_path)
    big = make_corpus(tmp_path / "big", n_files=2, n_records=800)
    port = free_port()
    env = {**os.environ, "MMRAG_API_KEY": API_KEY, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "mmrag.cli", "serve", "-c", str(coll), "--no-ui", "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--allow-index", str(big)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                if httpx.get(base + "/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "mmrag serve did not start"
            time.sleep(0.3)
        with httpx.Client(base_url=base, headers=H, timeout=60) as client:
            before = client.get("/stats").json()["items"]
            job = client.post("/index", params={"wait": "false"}, json={"paths": [str(big / "docs.jsonl")]})
            assert job.status_code == 202, job.text
            url = job.json()["job"]["url"]
            while (j := client.get(url).json())["progress"]["stage"] != "embedded":
                assert j["state"] == "running", j  # still under way when the first batch commits
                time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.wait(90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    items = check_consistent(coll)  # the collection opens, every stored vector is in its index
    committed = len(items) - before
    assert 0 < committed < 800, committed  # stopped mid-job, its committed batches kept
    from mmrag.storage.collection import Collection

    with Collection.open(coll) as c:  # saved: the manifest records what the store holds
        assert c.manifest.generation == c.store.generation()
        assert c.stats()["items"] == len(items)
    from mmrag.api import Engine

    with Engine.open(coll, write=True) as eng:  # the rest, and only the rest, is embedded next time
        report = eng.index([str(big / "docs.jsonl")])
    assert report.items_added == 800 - committed
    again = check_consistent(coll)
    assert len(again) == before + 800 and all(again[k] == i for k, i in items.items())
