"""`mmrag bench serve`: the server under load, searching while it indexes and finds duplicates.

A real `mmrag serve` subprocess (uvicorn) over a collection of code, notes and captioned images;
locust (headless, its own process, mmrag/bench/serve_locust.py) runs 32 searching users (text,
code, image and filtered queries). Phases alternate: *idle* (the searchers alone) and *load* (the
searchers while one user changes a folder and re-indexes it as jobs, and another runs /dupes).
Measured from every response: search p50/p95/p99 per phase, status counts (5xx must be 0), the
jobs that ran; afterwards the collection is checked: every file of the folder indexed, every
stored vector in its index, nothing orphaned.

    mmrag bench serve [--models tiny] [--users 32] [--seconds 30] [--rounds 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .report import Figure

P99_TARGET = 5.0  # search p99 under indexing and /dupes, over its idle p99 (issue #25)
TOKEN = "bench-serve-token"
SEARCH_PREFIX = "search "


@dataclass
class LoadCfg:
    models: str = "tiny"
    users: int = 32
    seconds: float = 30.0  # per phase
    rounds: int = 2  # idle, load, idle, load ...: drifts of a shared machine hit both phases alike
    files: int = 60  # starting corpus: code files, notes and captioned images, a third each
    work: Path | None = None  # where the corpus and collection go (default: a temporary folder)


@dataclass
class LoadResult:
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)  # idle / load -> merged locust output
    problems: list[str] = field(default_factory=list)  # consistency problems found afterwards
    items: int = 0
    server_errors: list[str] = field(default_factory=list)  # tracebacks in the server's log

    def search_ms(self, phase: str) -> np.ndarray:
        times = self.phases.get(phase, {}).get("times_ms", {})
        return np.array([t for name, ts in times.items() if name.startswith(SEARCH_PREFIX) for t in ts])

    def percentiles(self, phase: str) -> dict[str, float]:
        t = self.search_ms(phase)
        if not len(t):
            return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "n": 0}
        p50, p95, p99 = np.percentile(t, [50, 95, 99])
        return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "n": int(len(t))}

    def statuses(self, phase: str) -> dict[str, dict[str, int]]:
        return self.phases.get(phase, {}).get("statuses", {})

    def count_5xx(self) -> int:
        return sum(
            n
            for phase in self.phases
            for codes in self.statuses(phase).values()
            for code, n in codes.items()
            if code.startswith("5") or code.startswith("error")
        )

    def jobs(self) -> list[dict[str, Any]]:
        return self.phases.get("load", {}).get("jobs", [])

    def to_dict(self) -> dict[str, Any]:
        return {
            "idle": self.percentiles("idle"),
            "load": self.percentiles("load"),
            "statuses": {p: self.statuses(p) for p in self.phases},
            "responses_5xx": self.count_5xx(),
            "jobs": self.jobs(),
            "problems": self.problems,
            "items": self.items,
            "server_errors": self.server_errors,
        }


# --- the corpus ---------------------------------------------------------------------------------
def make_corpus(folder: Path, n: int) -> Path:
    """Code, notes and captioned images, a third each, each file distinct."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n // 3):
        (folder / f"mod_{i}.py").write_text(
            f"import json\n\n\ndef load_{i}(path):\n"
            f'    """Read settings file number {i} as JSON."""\n'
            "    with open(path) as f:\n        return json.load(f)\n"
        )
        (folder / f"doc_{i}.md").write_text(
            f"# Note {i}\n\nHow captions are read, part {i}: a text file beside an image is its caption.\n"
        )
        Image.new("RGB", (64, 64), ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)).save(
            folder / f"img_{i}.png"
        )
        (folder / f"img_{i}.txt").write_text(f"a square of colour number {i}")
    return folder


def query_image(path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (96, 96), "#d02020").save(path)
    return path


# --- the server -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`mmrag serve` in a subprocess, its log in a file; stopped with SIGTERM."""

    def __init__(self, coll: Path, allowed: Path, models: str, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {**os.environ, "MMRAG_API_KEY": TOKEN, "HF_HUB_OFFLINE": "1"}
        cmd = [sys.executable, "-m", "mmrag.cli", "serve", "-c", str(coll), "--no-ui"]
        cmd += ["--port", str(self.port), "--allow-index", str(allowed), "--models", models]
        self._out = log.open("w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._out, stderr=subprocess.STDOUT)

    def wait_up(self, timeout: float = 300) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mmrag serve exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"mmrag serve did not answer in {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        return self.proc.returncode

    def tracebacks(self) -> list[str]:
        text = self.log.read_text()
        return [chunk[:2000] for chunk in text.split("Traceback (most recent call last)")[1:]]


def client(url: str):
    import httpx

    return httpx.Client(base_url=url, headers={"X-API-Key": TOKEN}, timeout=600)


def index_now(url: str, folder: Path) -> dict[str, Any]:
    """POST /index and wait for it, after any job still running has ended."""
    with client(url) as c:
        for _ in range(600):
            r = c.post("/index", json={"paths": [str(folder)]})
            if r.status_code != 409:
                break
            time.sleep(0.5)
        r.raise_for_status()
        return r.json()


def warm_up(url: str, image: Path) -> None:
    """Each kind of request a few times first, so neither phase pays for first-use costs."""
    query_image(image)
    with client(url) as c:
        for _ in range(3):
            c.post("/search", json={"query": "how are captions read", "k": 10}).raise_for_status()
            c.post(
                "/search", json={"query": "def f(x):\n    return x", "modalities": ["code"]}
            ).raise_for_status()
            c.post(
                "/search", json={"query": "notes", "path": "*.md", "modalities": ["text"]}
            ).raise_for_status()
            with open(image, "rb") as f:
                files = {"image": ("q.png", f.read(), "image/png")}
            c.post("/search", data={"k": "10"}, files=files).raise_for_status()
        c.get("/dupes").raise_for_status()


# --- locust ---------------------------------------------------------------------------------------
def run_locust(
    url: str, classes: list[str], users: int, seconds: float, env: dict[str, str], out: Path
) -> dict:
    """One headless locust run; its raw per-request record (mmrag/bench/serve_locust.py)."""
    locustfile = Path(__file__).with_name("serve_locust.py")
    cmd = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--host", url]
    cmd += ["-u", str(users), "-r", str(users), "-t", f"{max(1, round(seconds))}s", "--stop-timeout", "30"]
    cmd += ["--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0", *classes]
    proc = subprocess.run(
        cmd,
        env={**os.environ, **env, "MMRAG_LOAD_OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=seconds + 300,
    )
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"locust failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def _merge(a: dict, b: dict) -> dict:
    out = {
        "times_ms": dict(a.get("times_ms", {})),
        "statuses": {},
        "jobs": a.get("jobs", []) + b.get("jobs", []),
    }
    for name, ts in b.get("times_ms", {}).items():
        out["times_ms"][name] = out["times_ms"].get(name, []) + ts
    for src in (a, b):
        for name, codes in src.get("statuses", {}).items():
            merged = out["statuses"].setdefault(name, {})
            for code, n in codes.items():
                merged[code] = merged.get(code, 0) + n
    return out


# --- afterwards: is the collection what the folder holds? ----------------------------------------
def consistency(coll_path: Path, folder: Path) -> tuple[list[str], int]:
    """Problems found (none: consistent) and the item count, with the server stopped."""
    from mmrag.ingest import IngestCfg, scan_sources
    from mmrag.storage.collection import Collection

    problems = []
    with Collection.open(coll_path) as c:
        db = c.store.db
        orphans = db.execute(
            "SELECT COUNT(*) FROM vectors v LEFT JOIN items i ON i.id = v.item_id WHERE i.id IS NULL"
        ).fetchone()[0]
        if orphans:
            problems.append(f"{orphans} vectors of no item")
        for space in c.spaces():
            stored = set(c.store.vector_ids(space).tolist())
            indexed = set(c.vector_index(space).ids().tolist())
            if stored != indexed:
                problems.append(f"space {space}: {len(stored ^ indexed)} ids differ between store and index")
        sources = {row[0] for row in db.execute("SELECT DISTINCT source FROM items")}
        on_disk = {s.path for s in scan_sources([str(folder)], IngestCfg(follow_symlinks=False))}
        in_folder = {s for s in sources if s.startswith(str(folder) + os.sep)}
        gone = sorted(in_folder - on_disk)
        if gone:
            problems.append(f"{len(gone)} items of deleted files, e.g. {gone[0]}")
        missed = sorted(p for p in on_disk if c.store.source_row(p) is None)
        if missed:
            problems.append(f"{len(missed)} files of the folder never indexed, e.g. {missed[0]}")
        items = c.stats()["items"]
    return problems, items


# --- the whole run ---------------------------------------------------------------------------------
def run_load(cfg: LoadCfg) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="mmrag-bench-serve-") as tmp:
        work = Path(cfg.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        base = make_corpus(work / "corpus", cfg.files)
        folder = work / "changing"
        folder.mkdir(exist_ok=True)
        coll = work / "coll"
        server = Server(coll, work, cfg.models, work / "server.log")
        result = LoadResult()
        try:
            server.wait_up()
            index_now(server.url, base)  # the first collection, through the server
            warm_up(server.url, work / "query.png")
            env = {
                "MMRAG_LOAD_TOKEN": TOKEN,
                "MMRAG_LOAD_FOLDER": str(folder),
                "MMRAG_LOAD_IMAGE": str(work / "query.png"),
            }
            for n in range(cfg.rounds):
                for phase, classes, users in (
                    ("idle", ["SearchUser"], cfg.users),
                    ("load", ["SearchUser", "IndexUser", "DupesUser"], cfg.users + 2),
                ):
                    out = run_locust(server.url, classes, users, cfg.seconds, env, work / f"{phase}{n}.json")
                    result.phases[phase] = _merge(result.phases.get(phase, {}), out)
            index_now(server.url, folder)  # the folder as it was left: the last job's state
            with client(server.url) as c:
                probe = c.post("/search", json={"query": "harbour log tide wind", "k": 5, "path": "*.md"})
                if probe.status_code != 200 or not probe.json()["hits"]:
                    result.problems.append(
                        f"the last notes are not found: {probe.status_code} {probe.text[:200]}"
                    )
        finally:
            server.stop()
            result.server_errors = server.tracebacks()
        problems, result.items = consistency(coll, folder)
        result.problems += problems
    return result


def figures(result: LoadResult, cfg: LoadCfg) -> list[Figure]:
    idle, load = result.percentiles("idle"), result.percentiles("load")
    jobs = result.jobs()
    done = sum(j["state"] == "done" for j in jobs)
    note = f"{cfg.users} users, {cfg.rounds}x{cfg.seconds:.0f} s per phase, models {cfg.models}"
    out = [
        Figure(
            f"search {q} latency, indexing + /dupes vs idle",
            load[q],
            "ms",
            idle[q],
            load[q] / idle[q] if idle[q] else None,
            P99_TARGET if q == "p99" else None,
            False,
            f"{load['n']} vs {idle['n']} searches; {note}",
        )
        for q in ("p50", "p95", "p99")
    ]
    out.append(Figure("responses 5xx or failed", result.count_5xx(), "", None, None, 0, False, "every phase"))
    out.append(
        Figure(
            "index jobs finished",
            done,
            "",
            None,
            None,
            1,
            True,
            f"{len(jobs)} jobs ran during the load phases; {', '.join(sorted({j['state'] for j in jobs}))}",
        )
    )
    out.append(
        Figure(
            "collection problems afterwards",
            len(result.problems),
            "",
            None,
            None,
            0,
            False,
            "; ".join(result.problems)[:300] or f"consistent: {result.items} items",
        )
    )
    return out


def run(quick: bool) -> list[Figure]:
    cfg = LoadCfg(seconds=10, rounds=1) if quick else LoadCfg()
    return figures(run_load(cfg), cfg)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mmrag bench serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="tiny", help="model set of the served collection (default tiny)")
    p.add_argument("--users", type=int, default=32, help="searching users (default 32)")
    p.add_argument("--seconds", type=float, default=30, help="seconds per phase (default 30)")
    p.add_argument("--rounds", type=int, default=2, help="idle + load rounds (default 2)")
    p.add_argument("--files", type=int, default=60, help="files of the starting corpus (default 60)")
    p.add_argument("--quick", action="store_true", help="one round of 10 s phases")
    p.add_argument("--json", action="store_true", help="the figures and the raw summary as JSON")
    p.add_argument("--work", type=Path, default=None, help="keep the corpus, collection and logs here")
    return p.parse_args(argv)


def run_bench_serve(args: argparse.Namespace) -> int:
    from mmrag.bench.report import format_table

    cfg = LoadCfg(args.models, args.users, args.seconds, args.rounds, args.files, args.work)
    if args.quick:
        cfg.seconds, cfg.rounds = 10, 1
    result = run_load(cfg)
    figs = figures(result, cfg)
    if args.json:
        json.dump({"figures": [f.to_dict() for f in figs], "summary": result.to_dict()}, sys.stdout, indent=1)
        print()
    else:
        print(format_table(figs))
        for phase in ("idle", "load"):
            print(f"{phase}: " + ", ".join(f"{k} {v}" for k, v in sorted(result.statuses(phase).items())))
    met = all(f.met is not False for f in figs)
    return 0 if met else 1
