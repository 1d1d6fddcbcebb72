"""The locust users of `mmrag bench serve` (run by locust in its own process, never imported by mmrag).

SearchUser: text, code, image and filtered queries, as people send them. IndexUser (one): changes
its folder (new, edited and deleted files, a captioned image), starts an indexing job and polls it
to its end, again and again. DupesUser (one): GET /dupes in a loop. Every response's status and
time is written at the end to $MMRAG_LOAD_OUT (JSON), so the bench computes its percentiles from
the raw times, per kind, and counts 5xx exactly.

Environment: MMRAG_LOAD_TOKEN (X-API-Key), MMRAG_LOAD_FOLDER (the folder IndexUser changes),
MMRAG_LOAD_IMAGE (a query image), MMRAG_LOAD_OUT.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import defaultdict
from pathlib import Path

from locust import HttpUser, between, events, task

TOKEN = os.environ.get("MMRAG_LOAD_TOKEN", "")
FOLDER = Path(os.environ.get("MMRAG_LOAD_FOLDER", "."))
IMAGE = os.environ.get("MMRAG_LOAD_IMAGE", "")
OUT = os.environ.get("MMRAG_LOAD_OUT", "load.json")

TEXT_QUERIES = [
    "how are captions read",
    "a red square on a white background",
    "notes about the weather in the harbour",
    "merge ranked lists by reciprocal rank",
    "where is the configuration file loaded",
]
CODE_QUERIES = [
    "def read_json(path):\n    with open(path) as f:\n        return json.load(f)",
    "for rank, doc in enumerate(ranking, 1):",
    "class Greeter:\n    def greet(self, name):",
]

_times: dict[str, list[float]] = defaultdict(list)
_statuses: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
_jobs: list[dict] = []


@events.request.add_listener
def _record(request_type, name, response_time, response_length, response=None, exception=None, **kw):
    status = getattr(response, "status_code", 0) or 0
    _statuses[name][str(status) if status else f"error: {type(exception).__name__}"] += 1
    if status and status < 500:
        _times[name].append(float(response_time))


@events.quitting.add_listener
def _write(environment, **kw):
    data = {
        "times_ms": dict(_times),
        "statuses": {k: dict(v) for k, v in _statuses.items()},
        "jobs": _jobs,
    }
    Path(OUT).write_text(json.dumps(data))


class _Client(HttpUser):
    abstract = True

    def on_start(self) -> None:
        self.client.headers["X-API-Key"] = TOKEN


class SearchUser(_Client):
    """One person searching: mostly text, some code, some by image, some narrowed by a filter."""

    wait_time = between(0.5, 1.5)

    @task(4)
    def text(self) -> None:
        self.client.post("/search", json={"query": random.choice(TEXT_QUERIES), "k": 10}, name="search text")

    @task(2)
    def code(self) -> None:
        body = {"query": random.choice(CODE_QUERIES), "k": 10, "modalities": ["code"]}
        self.client.post("/search", json=body, name="search code")

    @task(1)
    def filtered(self) -> None:
        """Narrowed by a path glob, or by the filter language as JSON (`mmrag search --where`)."""
        if random.random() < 0.5:
            body = {"query": random.choice(TEXT_QUERIES), "k": 5, "path": "*.md", "modalities": ["text"]}
        else:
            where = {
                "and": [
                    {"field": "lang", "op": "=", "value": "python"},
                    {"not": {"field": "path", "op": "glob", "value": "**/gen_*"}},
                ]
            }
            body = {"query": random.choice(CODE_QUERIES), "k": 5, "filter": where}
        self.client.post("/search", json=body, name="search filtered")

    @task(1)
    def image(self) -> None:
        if not IMAGE:
            return
        with open(IMAGE, "rb") as f:
            files = {"image": ("query.png", f.read(), "image/png")}
        self.client.post("/search", data={"k": "10"}, files=files, name="search image")


class IndexUser(_Client):
    """The folder changes, a job indexes it; the next change waits for the job to end."""

    fixed_count = 1
    wait_time = between(0.2, 0.5)

    def on_start(self) -> None:
        super().on_start()
        self.round = 0
        self.made: list[Path] = []

    def _change_folder(self) -> None:
        from PIL import Image

        self.round += 1
        r = self.round
        for i in range(6):
            p = FOLDER / f"gen_{r}_{i}.py"
            p.write_text(
                f"def step_{r}_{i}(values):\n"
                f'    """Round {r}: add {i} to every value of the list."""\n'
                f"    return [v + {i} for v in values]\n"
            )
            self.made.append(p)
        for i in range(4):
            p = FOLDER / f"note_{r}_{i}.md"
            p.write_text(f"# Round {r} note {i}\n\nThe harbour log of round {r}: tide {i}, wind {r % 7}.\n")
            self.made.append(p)
        img = FOLDER / f"pic_{r}.png"
        Image.new("RGB", (48, 48), (40 * (r % 6), 30 * (r % 8), 200)).save(img)
        (FOLDER / f"pic_{r}.txt").write_text(f"a coloured square, round {r}")
        self.made.append(img)
        older = [p for p in self.made[:-11] if p.suffix != ".png"]
        for p in random.sample(older, min(2, len(older))):  # edit two older files
            p.write_text(p.read_text() + f"\n# edited in round {r}\n")
        for p in self.made[:-30][:3]:  # and delete the oldest ones (an image with its caption)
            p.unlink(missing_ok=True)
            if p.suffix == ".png":
                p.with_suffix(".txt").unlink(missing_ok=True)
            self.made.remove(p)

    @task
    def index_round(self) -> None:
        self._change_folder()
        t0 = time.monotonic()
        with self.client.post(
            "/index",
            params={"wait": "false"},
            json={"paths": [str(FOLDER)]},
            name="POST /index",
            catch_response=True,
        ) as r:
            if r.status_code == 409:  # the previous job is still saving: not a failure
                r.success()
                return
        if r.status_code != 202:
            return
        url = r.json()["job"]["url"]
        while True:
            job = self.client.get(url, name="GET /index/{job}")
            if job.status_code != 200:
                return
            state = job.json()["state"]
            if state not in ("queued", "running"):
                report = job.json()["report"] or {}
                _jobs.append(
                    {
                        "id": job.json()["id"],
                        "state": state,
                        "seconds": round(time.monotonic() - t0, 3),
                        "items_added": report.get("items_added"),
                        "items_removed": report.get("items_removed"),
                    }
                )
                return
            time.sleep(0.2)


class DupesUser(_Client):
    """Someone cleaning up: the all-pairs scan, again and again."""

    fixed_count = 1
    wait_time = between(0.2, 0.5)

    @task
    def dupes(self) -> None:
        for modality in ("image", "code", "text"):
            self.client.get("/dupes", params={"modality": modality, "limit": 50}, name="/dupes")
