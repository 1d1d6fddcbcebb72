"""Crash consistency: `mmrag index` killed with SIGKILL at random points, a full disk, and
`remove` interrupted. After each, the collection opens and is consistent, and a re-run finishes
without re-embedding what was committed."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mmrag.api import Engine
from mmrag.indexing.indexer import IndexCfg
from mmrag.storage.collection import Collection

TRIALS = int(os.environ.get("MMRAG_CRASH_TRIALS", "20"))


def make_corpus(root, n_files=60, n_records=1500):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        body = "".join(
            f'def f{i}_{j}(x):\n    """Return x plus {j}."""\n    return x + {j}\n\n\n' for j in range(5)
        )
        (root / f"mod{i}.py").write_text(body)
    with open(root / "docs.jsonl", "w") as f:
        for i in range(n_records):
            f.write(
                json.dumps({"_id": f"d{i}", "text": f"record {i} about topic {i % 17} and {i % 5}"}) + "\n"
            )
    return root


def check_consistent(coll_path) -> dict[str, int]:
    """Every vector's item exists, every item has a vector in each of its spaces, the FAISS caches
    hold exactly the stored vectors; returns {key: id}."""
    with Collection.open(coll_path) as c:
        db = c.store.db
        orphans = db.execute(
            "SELECT COUNT(*) FROM vectors v LEFT JOIN items i ON i.id = v.item_id WHERE i.id IS NULL"
        )
        assert orphans.fetchone()[0] == 0
        spaces_of = {
            "code": {"code", "joint"},
            "text": {"text", "joint"},
            "image": {"image", "caption", "joint"},
        }
        have = {}
        for item_id, space in db.execute("SELECT item_id, space FROM vectors"):
            have.setdefault(item_id, set()).add(space)
        for item_id, modality in db.execute("SELECT id, modality FROM items"):
            assert have.get(item_id) == spaces_of[modality] & set(c.spaces()), (item_id, modality)
        for space in c.spaces():
            assert set(c.vector_index(space).ids().tolist()) == set(c.store.vector_ids(space).tolist())
        return dict(db.execute("SELECT key, id FROM items"))


def disk_full_at(n: int):
    """Store.insert_vectors as if the disk filled on its n-th call (the earlier batches commit)."""
    from mmrag.storage.store import Store

    real = Store.insert_vectors
    calls = {"n": 0}

    def flaky(self, con, space, ids, vecs):
        calls["n"] += 1
        if calls["n"] == n:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, con, space, ids, vecs)

    return flaky


def _index_cmd(corpus, coll):
    # .jsonl files inside folders are not walked, so the BEIR file is named explicitly;
    # 128-item commits put many commit points inside each run for the kills to land between
    paths = [str(corpus), str(corpus / "docs.jsonl")]
    cli = [sys.executable, "-m", "mmrag.cli", "index", *paths, "-c", str(coll), "--models", "tiny"]
    return [*cli, "-q", "--batch-items", "128"]


@pytest.mark.parametrize(
    "trials", [4, pytest.param(TRIALS, marks=pytest.mark.heavy, id="all")], ids=lambda t: f"{t}-trials"
)
def test_sigkill_at_random_points_then_resume(tmp_path, trials):
    corpus = make_corpus(tmp_path / "corpus")
    coll = tmp_path / "c"
    rng = random.Random(1234)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    # how long a full run takes bounds where the kills land
    t0 = time.monotonic()
    subprocess.run(_index_cmd(corpus, tmp_path / "probe"), check=True, env=env, capture_output=True)
    full = time.monotonic() - t0
    committed_before: dict[str, int] = {}
    kills = 0
    for trial in range(trials):
        if trial % 5 == 0 and trial:  # start over now and then, so early-run kills are tried again
            subprocess.run(["rm", "-rf", str(coll)], check=True)
            committed_before = {}
        proc = subprocess.Popen(
            _index_cmd(corpus, coll), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.2, full * 0.9))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        if not (coll / "manifest.json").exists():
            continue  # killed before anything was created: nothing to check
        now = check_consistent(coll)
        # what was committed stays committed with the same id: it was not re-embedded
        assert all(now.get(k) == i for k, i in committed_before.items())
        committed_before = now
    assert kills >= trials // 2, "the kills should land mid-run most of the time"
    proc = subprocess.run(_index_cmd(corpus, coll), env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    final = check_consistent(coll)
    assert all(final.get(k) == i for k, i in committed_before.items())
    assert len(final) == 60 * 5 + 1500


def test_disk_full_mid_run_loses_nothing_committed(tmp_path, monkeypatch):
    corpus = make_corpus(tmp_path / "corpus", n_files=10, n_records=600)
    coll = tmp_path / "c"
    from mmrag.storage import store as store_mod

    real, flaky = store_mod.Store.insert_vectors, disk_full_at(9)
    monkeypatch.setattr(store_mod.Store, "insert_vectors", flaky)
    small = IndexCfg(batch_items=128)  # several commits before the disk fills
    with pytest.raises(OSError, match="No space"), Engine.open(coll, write=True, models="tiny") as eng:
        eng.index([str(corpus), str(corpus / "docs.jsonl")], small)
    before = check_consistent(coll)
    assert 0 < len(before) < 10 * 5 + 600
    monkeypatch.setattr(store_mod.Store, "insert_vectors", real)

    # the index files cannot be written either: the old ones stay, the store stays the truth
    from indexes import atomic

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "_fsync_path", full)
    with pytest.raises(OSError), Engine.open(coll, write=True) as eng:
        eng.index([str(corpus), str(corpus / "docs.jsonl")])
    monkeypatch.undo()
    after_full = check_consistent(coll)
    assert all(after_full[k] == i for k, i in before.items())
    with Engine.open(coll, write=True) as eng:
        report = eng.index([str(corpus), str(corpus / "docs.jsonl")])
    assert report.items_added == 0  # everything was committed by the earlier runs
    final = check_consistent(coll)
    assert len(final) == 10 * 5 + 600 and all(final[k] == i for k, i in before.items())
    with Engine.open(coll) as eng:
        assert eng.search("record 5 about topic 5", k=3).hits


def test_remove_killed_midway_is_all_or_nothing(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", n_files=30, n_records=10)
    coll = tmp_path / "c"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_index_cmd(corpus, coll), check=True, env=env, capture_output=True)
    n = len(check_consistent(coll))
    cmd = [sys.executable, "-m", "mmrag.cli", "remove", str(corpus / "docs.jsonl"), "-c", str(coll)]
    for delay in (0.3, 0.8, 1.5):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        left = check_consistent(coll)
        assert len(left) in (n, n - 10)  # one transaction: all of the source or none of it
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    assert len(check_consistent(coll)) == n - 10


def test_vector_store_roundtrip_is_exact(tmp_path):
    """Vectors come back bit-identical from the store, so rebuilt indexes equal saved ones."""
    corpus = make_corpus(tmp_path / "corpus", n_files=3, n_records=20)
    coll = tmp_path / "c"
    with Engine.open(coll, write=True, models="tiny") as eng:
        eng.index([str(corpus), str(corpus / "docs.jsonl")])
        ids, vecs = eng.collection.store.vectors("text")
    os.remove(coll / "indexes" / "text.faiss")  # a lost cache is rebuilt from the store
    with Collection.open(coll) as c:
        s1, i1 = c.vector_index("text").search(vecs, 5)
    with Collection.open(coll) as c:
        ids2, vecs2 = c.store.vectors("text")
    assert np.array_equal(ids, ids2) and np.array_equal(vecs, vecs2)
    assert np.array_equal(i1[:, 0], ids) or np.allclose(s1[:, 0], 1.0, atol=1e-5)
