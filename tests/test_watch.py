"""`mmrag watch`: files edited, added, removed and renamed while a server answers searches; what the
server finds matches the folder soon after each change, and SIGTERM leaves a consistent collection."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("watchfiles")

from mmrag.api import Engine  # noqa: E402
from mmrag.http.service import Service  # noqa: E402
from mmrag.watch import WatchCfg, Watcher  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEBOUNCE_MS = 150
SETTLE_S = 30  # debounce + a tiny-model run + the server's reader swap, on 2 busy cores


def note(path: Path, word: str) -> None:
    path.write_text(f"# Note {word}\n\nThis note is about {word}.\n")


def served_view(svc: Service) -> dict[str, str]:
    """What a search through the server sees: path -> text, over every item (the corpus is tiny)."""
    return {h.path: h.text for h in svc.search("note", k=200).hits}


def wait_for(svc: Service, want: dict[str, str]) -> float:
    t0 = time.monotonic()
    while True:
        view = served_view(svc)
        if set(view) == set(want) and all(want[p] in view[p] for p in want):
            return time.monotonic() - t0
        if time.monotonic() - t0 > SETTLE_S:
            raise AssertionError(f"the server still sees {view}, the folder holds {want}")
        time.sleep(0.1)


def test_changes_reach_a_running_server(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    note(corpus / "alpha.md", "alpha")
    note(corpus / "bravo.md", "bravo")
    coll = tmp_path / "coll"
    with Engine.open(coll, write=True, models="tiny") as eng:
        eng.index([str(corpus)])
    svc = Service(coll)
    errors: list[BaseException] = []
    searching = threading.Event()
    searching.set()

    def searcher():  # a steady load of searches while the collection changes under them
        while searching.is_set():
            try:
                svc.search("note about", k=5)
            except BaseException as e:  # pragma: no cover - what the assertion reports
                errors.append(e)
            time.sleep(0.02)

    runs = []
    with Engine.open(coll, write=True) as writer:
        watcher = Watcher(writer, [corpus], WatchCfg(debounce_ms=DEBOUNCE_MS), on_run=runs.append)
        threads = [threading.Thread(target=watcher.run), threading.Thread(target=searcher)]
        for t in threads:
            t.start()
        try:
            assert watcher.ready.wait(60)
            a, b = str(corpus / "alpha.md"), str(corpus / "bravo.md")
            note(corpus / "alpha.md", "zebra")  # edit
            wait_for(svc, {a: "zebra", b: "bravo"})
            note(corpus / "charlie.md", "charlie")  # add
            c = str(corpus / "charlie.md")
            wait_for(svc, {a: "zebra", b: "bravo", c: "charlie"})
            os.remove(b)  # remove
            wait_for(svc, {a: "zebra", c: "charlie"})
            os.rename(a, corpus / "delta.md")  # rename
            wait_for(svc, {str(corpus / "delta.md"): "zebra", c: "charlie"})
        finally:
            watcher.stop.set()
            searching.clear()
            for t in threads:
                t.join(60)
            svc.close()
    assert not errors
    assert runs[0].changes == 0 and all(r.changes > 0 and not r.stopped for r in runs[1:])
    with Engine.open(coll) as eng:  # the saved collection, reopened, is the folder
        assert sorted(eng.collection.store.sources_under(str(corpus))) == sorted(
            str(p) for p in corpus.iterdir()
        )


def _count_items(coll: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{coll / 'meta.sqlite'}?mode=ro", uri=True) as con:
            return con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    except sqlite3.Error:  # not created yet, or the first transaction still open
        return 0


def _read_until(proc: subprocess.Popen, word: str, lines: list[str]) -> str:
    for line in proc.stderr:
        lines.append(line)
        if word in line:
            return line
    raise AssertionError(f"`mmrag watch` ended before saying {word!r}: {''.join(lines)}")


@pytest.mark.heavy  # two whole CLI processes (torch, models, 120 files): ~70 s on 2 busy cores
def test_sigkill_loses_nothing_committed_and_sigterm_saves(tmp_path):
    """The CLI as a user runs it. SIGKILL after the first committed batch: the collection opens and
    the next run embeds exactly what was not committed. Then a change, SIGTERM: exit 0 and a saved
    collection at the folder's state."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    n_files = 120
    for i in range(n_files):
        note(corpus / f"n{i:03}.md", f"topic{i}")
    coll = tmp_path / "coll"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "mmrag.cli", "watch", str(corpus), "-c", str(coll), "--models", "tiny"]
    killed = subprocess.Popen([*cmd, "--batch-items", "8"], stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 120
        while _count_items(coll) == 0:
            assert killed.poll() is None and time.monotonic() < deadline, "no batch was committed"
            time.sleep(0.01)
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
    finally:
        if killed.poll() is None:
            killed.kill()
    committed = _count_items(coll)
    assert 0 < committed < n_files  # killed mid-run
    with Engine.open(coll) as eng:  # opens after the kill, and searches what was committed
        assert eng.collection.stats()["items"] == committed
        assert len(eng.search("note", k=200).hits) == committed

    proc = subprocess.Popen([*cmd, "--debounce", "100"], stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    try:
        catch_up = _read_until(proc, "catch-up", lines)
        assert f"{n_files - committed} items embedded" in catch_up  # nothing committed is embedded twice
        _read_until(proc, "watching", lines)
        note(corpus / "late.md", "late")
        _read_until(proc, "changes", lines)
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, "".join(lines) + (rest or "")
    assert "stopped; the collection is saved" in rest
    with Engine.open(coll) as eng:
        files = sorted(str(p) for p in corpus.iterdir())
        assert sorted(eng.collection.store.sources_under(str(corpus))) == files
        assert sorted({h.path for h in eng.search("note", k=500).hits}) == files
