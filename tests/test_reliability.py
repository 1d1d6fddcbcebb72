"""Bad queries, concurrent readers and writers, schema versions, and no unsafe deserialisation."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmrag.api import Engine
from mmrag.cli import main
from mmrag.errors import CollectionError
from mmrag.storage.collection import MANIFEST, Collection

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def coll(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    for i in range(20):
        (src / f"m{i}.py").write_text(f"def f{i}(x):\n    return x * {i}\n")
    (src / "notes.md").write_text("# Notes\n\nSome prose about searching.\n")
    from PIL import Image

    Image.new("RGB", (40, 40), (200, 10, 10)).save(src / "red.png")
    path = tmp_path_factory.mktemp("coll") / "c"
    assert main(["index", str(src), "-c", str(path), "--models", "tiny", "-q"]) == 0
    return path


@pytest.mark.parametrize(
    "argv, message",
    [
        (["search", ""], "Empty query"),
        (["search", "?!.,;"], "Empty query"),
        (["search", "x", "-k", "0"], "k must be between"),
        (["search", "x", "-k", "100000000"], "k must be between"),
        (["search", "x", "--image", "/no/such/file.png"], "does not exist"),
        (["search", "x", "-m", "audio"], "Unknown modality"),
        (["search", "x", "--weights", "bogus=1"], "Unknown route"),
        (["search", "x", "--fusion", "magic"], "Unknown fusion"),
    ],
)
def test_bad_queries_are_clear_errors(coll, capsys, argv, message):
    assert main([*argv, "-c", str(coll)]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unreadable_query_image_is_a_clear_error(coll, tmp_path, capsys):
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    assert main(["search", "", "--image", str(fake), "-c", str(coll)]) == 1
    assert "Cannot read query image" in capsys.readouterr().err


def test_huge_and_odd_queries_give_results(coll):
    with Engine.open(coll) as eng:
        assert eng.search("word " * 20_000, k=5).hits  # 100 KB: cut to the encoders' reach, not an error
        assert eng.search("ünïcödé 検索 🔍", k=5).hits
        assert len(eng.search("f", k=10_000).hits) <= 10_000


def test_second_writer_fails_clearly_while_first_writes(coll, tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom mmrag.storage.collection import Collection\n"
            f"c = Collection.open({str(coll)!r}, write=True)\nprint('locked', flush=True)\ntime.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "mmrag.cli", "remove", str(tmp_path), "-c", str(coll), "--wait", "0.5"],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 1 and "being written by another process" in proc.stderr
        assert time.monotonic() - t0 >= 0.5
        with Engine.open(coll) as eng:  # readers are never blocked by the writer
            assert eng.search("f", k=3).hits
    finally:
        holder.kill()
        holder.wait()


def test_searches_during_indexing_see_consistent_snapshots(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(400):
        (src / f"m{i}.py").write_text(f"def g{i}(y):\n    return y - {i}\n")
    path = tmp_path / "c"
    with Engine.open(path, write=True, models="tiny") as eng:
        eng.index([str(src / "m0.py")])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    writer = subprocess.Popen(
        [sys.executable, "-m", "mmrag.cli", "index", str(src), "-c", str(path), "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen = 0
    try:
        while writer.poll() is None and seen < 200:
            with Engine.open(path) as eng:
                hits = eng.search("return y", k=50).hits
                assert hits and all(h.key and h.source for h in hits)  # every hit has its metadata
                n = eng.collection.store.db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
                assert n >= 1
            seen += 1
    finally:
        writer.wait(timeout=600)
    assert writer.returncode == 0 and seen >= 1


def test_other_schema_versions_are_refused(coll, tmp_path):
    import shutil

    for version in (0, 99):
        copy = tmp_path / f"v{version}"
        shutil.copytree(coll, copy)
        m = json.loads((copy / MANIFEST).read_text())
        m["schema_version"] = version
        (copy / MANIFEST).write_text(json.dumps(m))
        with pytest.raises(CollectionError, match=f"schema {version}"):
            Collection.open(copy)


def test_corrupt_index_file_is_rebuilt_from_the_store(coll, tmp_path):
    import shutil

    copy = tmp_path / "c"
    shutil.copytree(coll, copy)
    with Engine.open(copy) as eng:
        before = [h.id for h in eng.search("return x", k=10).hits]
    (copy / "indexes" / "code.faiss").write_bytes(b"garbage")
    with Engine.open(copy) as eng:
        assert [h.id for h in eng.search("return x", k=10).hits] == before


def test_no_pickle_and_safe_torch_load():
    """Nothing read from a collection or a user path is unpickled; the document parsers' worker pipe
    (mmrag/ingest/isolate.py) unpickles only through an Unpickler whose find_class is an allowlist."""
    offenders = []
    for path in [*ROOT.glob("mmrag/**/*.py"), *ROOT.glob("encoders/**/*.py"), *ROOT.glob("indexes/**/*.py")]:
        text = path.read_text()
        if re.search(r"^\s*from pickle|allow_pickle\s*=\s*True|pickle\.loads?\(", text, re.M):
            offenders.append(f"{path}: pickle")
        if re.search(r"^\s*import pickle", text, re.M) and "def find_class" not in text:
            offenders.append(f"{path}: pickle without an allowlist")
        for m in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in m.group(1):
                offenders.append(f"{path}: torch.load without weights_only=True")
    assert not offenders, offenders
