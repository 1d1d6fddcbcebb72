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


def test_sigterm_saves_and_exits(tmp_path):
    """The CLI as a user runs it: index, change a file, SIGTERM: exit 0 and a collection that opens
    at the folder's state."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    note(corpus / "alpha.md", "alpha")
    coll = tmp_path / "coll"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "mmrag.cli", "watch", str(corpus), "-c", str(coll), "--models", "tiny"]
    proc = subprocess.Popen([*cmd, "--debounce", "100"], stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if "watching" in line:
                break
        note(corpus / "bravo.md", "bravo")
        for line in proc.stderr:
            lines.append(line)
            if "changes" in line:
                break
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, "".join(lines) + (rest or "")
    assert "stopped; the collection is saved" in rest
    with Engine.open(coll) as eng:
        assert sorted(eng.collection.store.sources_under(str(corpus))) == sorted(
            str(p) for p in corpus.iterdir()
        )
        assert {h.path for h in eng.search("note bravo", k=10).hits} == {str(p) for p in corpus.iterdir()}
