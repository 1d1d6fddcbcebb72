"""`mmrag models`, `search --models` and progress on a pipe: what a user sees on the first run.

`mmrag models` is checked against the fake hub (tests/fakehub.py) and against an empty cache; a real
`mmrag index` into a pipe is checked in tests/test_real_models.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from fakehub import hub_env


def mmrag(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmrag.cli", *args], env=env, capture_output=True, text=True, timeout=600
    )


def test_models_lists_what_is_cached_and_how_to_get_the_rest(fake_hub, tmp_path):
    toml = tmp_path / "alt.toml"
    toml.write_text('clip = "clip:ViT-B-32/openai"\ncode = "code:microsoft/codebert-base"\n')
    full = {**os.environ, **hub_env(fake_hub)}
    empty = {**os.environ, **hub_env(tmp_path / "empty-hf-home")}
    args = ("models", "default", "tiny", str(toml), "--json")
    have = {(e["set"], m["spec"]): m for e in json.loads(mmrag(*args, env=full).stdout) for m in e["models"]}
    lack = {(e["set"], m["spec"]): m for e in json.loads(mmrag(*args, env=empty).stdout) for m in e["models"]}
    unix, laion = ("default", "code:microsoft/unixcoder-base"), ("default", "clip:ViT-B-32/laion2b_s34b_b79k")
    openai = (str(toml), "clip:ViT-B-32/openai")
    for key in (unix, laion, openai, (str(toml), "code:microsoft/codebert-base")):
        assert have[key]["source"] == "cache" and str(fake_hub) in have[key]["where"], have[key]
        assert not have[key]["fetch"]
        assert lack[key]["source"] == "missing"
    assert lack[unix]["fetch"] == "hf download microsoft/unixcoder-base"
    assert (
        lack[laion]["fetch"]
        == "hf download laion/CLIP-ViT-B-32-laion2B-s34B-b79K open_clip_model.safetensors"
    )
    assert lack[openai]["fetch"].startswith("hf download timm/vit_base_patch32_clip_224.openai ")
    assert lack[("tiny", "tiny-clip:0")]["source"] == "built-in"
    text = mmrag("models", "default", env=empty)
    assert text.returncode == 1 and "MISSING" in text.stdout and "get it: hf download" in text.stdout


def test_search_with_models_says_the_collection_keeps_its_own():
    out = mmrag("search", "cat", "-c", "some.coll", "--models", "tiny", env=dict(os.environ))
    assert out.returncode == 2
    assert "unrecognized arguments" not in out.stderr and "usage:" not in out.stderr
    assert "keeps the models it was built with" in out.stderr and "mmrag info -c some.coll" in out.stderr


def test_progress_off_a_terminal_is_one_plain_line_per_stage(capsys):
    from mmrag.cli.output import Progress

    with Progress(tty=False) as prog:
        for done in range(4):
            prog.update("embed", done, 3)
        prog.update("index", 1, 0)
    err = capsys.readouterr().err
    assert err.splitlines() == ["mmrag: embed: 3/3", "mmrag: index: 1"]
