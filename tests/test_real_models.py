"""The doors real users come through: models named by hub id and pretrained tag, found in the HF cache.

The cache is tests/fakehub.py's: random weights of the real architectures in huggingface_hub's own
layout. Every vector the product computes is checked against the reference library loading the
model by the same name from the same cache (open_clip by tag, transformers' AutoModel with
UniXcoder's published framing, SentenceTransformer by hub id), with HF_HUB_OFFLINE=1 throughout.

Cost in the default suite, measured on a shared 2-core machine: the cache (~15 s, once per
session), one `mmrag index` with `--models default` (~110-150 s, most of it the first export of
the CLIP text tower and UniXcoder as ONNX query encoders), the searches and reference models
(~40 s). The alternatives' CLI run and CodeBERT's parity are `slow` (~3 min together).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fakehub import CLIP_REPOS, MINILM, hub_env

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
from PIL import Image  # noqa: E402

MIN_COS = 0.9999
CLIP_TAGS = tuple(CLIP_REPOS)  # ViT-B-32/laion2b_s34b_b79k (default), ViT-B-32/openai (QuickGELU)
# how open_clip itself names each: openai weights go with its QuickGELU config of the architecture
REFERENCE_NAMES = {
    "ViT-B-32/laion2b_s34b_b79k": ("ViT-B-32", "laion2b_s34b_b79k"),
    "ViT-B-32/openai": ("ViT-B-32-quickgelu", "openai"),
}
TEXTS = [
    "read a json file and return the dict",
    "Ünïcödé: naïve café — 東京の猫 🐈 ≠ ∑",
    "<div class='x'><b>bold</b> &amp; <a href=\"/y\">link</a></div> **markdown** `code`",
    "def over_long(x):\n    return x\n" * 400,  # past every model's context: truncation must agree
]


@pytest.fixture(scope="session")
def hub(fake_hub: Path):
    """The fake cache as this process's (and its children's) Hugging Face cache, offline."""
    import huggingface_hub.constants as hf_constants

    with pytest.MonkeyPatch.context() as mp:
        for key, value in hub_env(fake_hub).items():
            mp.setenv(key, value)
        # huggingface_hub reads these at import; earlier tests may have imported it already
        mp.setattr(hf_constants, "HF_HUB_CACHE", str(fake_hub / "hub"))
        mp.setattr(hf_constants, "HF_HUB_OFFLINE", True)
        yield fake_hub


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """The awkward images: a large JPEG (draft decoding), PNG with alpha, palette GIF, EXIF-rotated."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:2667, 0:4000]
    big = np.stack([(xx * 255 // 4000), (yy * 255 // 2667), ((xx + yy) % 256)], -1).astype(np.uint8)
    big[1000:1600, 1500:2500] = (200, 30, 30)
    Image.fromarray(big).save(root / "large.jpg", quality=92)
    rgba = rng.integers(0, 256, (300, 400, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(np.arange(400) < 200, 255, 60).astype(np.uint8)[None, :]
    Image.fromarray(rgba, "RGBA").save(root / "alpha.png")
    pal = Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)).quantize(colors=64)
    pal.save(root / "palette.gif")
    tall = Image.fromarray(np.repeat(np.linspace(0, 255, 480, dtype=np.uint8)[:, None], 320, 1)).convert(
        "RGB"
    )
    exif = tall.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    tall.save(root / "rotated.jpg", exif=exif, quality=95)
    return root


def reference_pixels(path: Path) -> Image.Image:
    """What the image shows, decoded in full: upright, alpha over white (the documented reading)."""
    from PIL import ImageOps

    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode in ("RGBA", "LA", "P") and (img.mode != "P" or "transparency" in img.info):
            img = img.convert("RGBA")
            return Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img).convert(
                "RGB"
            )
        return img.convert("RGB")


@pytest.fixture(scope="session")
def clip_reference(hub):
    """open_clip itself, loading each tag by name from the cache: {tag: (model, preprocess, tokenizer)}."""
    torch.set_num_threads(1)
    out = {}
    for ident in CLIP_TAGS:
        arch, tag = REFERENCE_NAMES[ident]
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=tag)
        out[ident] = (model.eval(), preprocess, open_clip.get_tokenizer(arch))
    return out


def ref_clip_images(ref, paths) -> np.ndarray:
    model, preprocess, _ = ref
    with torch.inference_mode():
        pixels = torch.stack([preprocess(reference_pixels(p)) for p in paths])
        return torch.nn.functional.normalize(model.encode_image(pixels), dim=-1).numpy()


def ref_clip_texts(ref, texts) -> np.ndarray:
    model, _, tokenizer = ref
    with torch.inference_mode():
        return torch.nn.functional.normalize(model.encode_text(tokenizer(list(texts))), dim=-1).numpy()


def ref_unixcoder(texts, model_id: str = "microsoft/unixcoder-base") -> np.ndarray:
    """UniXcoder's reference wrapper (unixcoder.py): <s> <encoder-only> </s> tokens </s>, cut at 512,
    mean over the mask, then unit length."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_id)
    model = AutoModel.from_pretrained(model_id).eval()
    rows = []
    for text in texts:
        tokens = tok.tokenize(text)[: 512 - 4]
        tokens = [tok.cls_token, "<encoder-only>", tok.sep_token, *tokens, tok.sep_token]
        ids = torch.tensor([tok.convert_tokens_to_ids(tokens)])
        with torch.inference_mode():
            states = model(ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        rows.append(torch.nn.functional.normalize(states.mean(dim=1), dim=-1)[0].numpy())
    return np.stack(rows)


def ref_codebert(texts) -> np.ndarray:
    """CodeBERT as an embedder: its tokenizer's own <s> ... </s> framing, cut at 512, mean pooling."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained("microsoft/codebert-base")
    model = AutoModel.from_pretrained("microsoft/codebert-base").eval()
    batch = tok(list(texts), truncation=True, max_length=512, padding=True, return_tensors="pt")
    with torch.inference_mode():
        states = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1).numpy()


def ref_minilm(texts) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(MINILM, device="cpu")  # by hub id, from the (fake) cache
    return model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# --- loading by tag: the bug users met first --------------------------------------------------


def test_every_open_clip_tag_maps_to_open_clips_own_options():
    """For every (arch, tag) open_clip lists, the kwargs reproduce its tag config and are accepted."""
    import inspect

    from encoders.families.clip import tag_options

    accepted = set(inspect.signature(open_clip.create_model_and_transforms).parameters)
    for arch, tag in open_clip.list_pretrained():
        pcfg = open_clip.get_pretrained_cfg(arch, tag)
        opts = tag_options(pcfg)
        assert set(opts) <= accepted, (arch, tag, sorted(set(opts) - accepted))
        assert opts["force_quick_gelu"] == bool(pcfg.get("quick_gelu", False))
        for key in ("mean", "std", "interpolation", "resize_mode"):
            assert opts[f"image_{key}"] == pcfg[key], (arch, tag, key)


@pytest.mark.parametrize("ident", CLIP_TAGS)
def test_clip_tag_from_the_hub_cache_matches_open_clip(hub, photos, clip_reference, ident):
    """`clip:ARCH/TAG` loads from the cache (it raised TypeError on force_preprocess_cfg before) and
    gives open_clip's vectors, QuickGELU included: both tags hold the same weights here."""
    from encoders.base import EncoderCfg
    from encoders.registry import create_encoder
    from mmrag.ingest import load_image

    enc = create_encoder(f"clip:{ident}", EncoderCfg(threads=1))
    paths = sorted(photos.iterdir())
    ours = enc.encode_image([load_image(str(p), max_pixels=10**9) for p in paths])
    ref = clip_reference[ident]
    assert cosines(ours, ref_clip_images(ref, paths)).min() >= MIN_COS
    texts = enc.encode_text(TEXTS)
    own = cosines(texts, ref_clip_texts(ref, TEXTS))
    assert own.min() >= MIN_COS
    # the other tag differs only in its activation; on small random weights GELU and QuickGELU are
    # close, yet measurably further apart than the product is from its reference
    other = clip_reference[next(t for t in CLIP_TAGS if t != ident)]
    assert cosines(texts, ref_clip_texts(other, TEXTS)).max() < own.min() - 1e-5


@pytest.mark.heavy  # ~20 s; the default set's code model is checked in the default suite
def test_codebert_from_the_hub_cache_matches_transformers(hub):
    from encoders.base import EncoderCfg
    from encoders.registry import create_encoder

    enc = create_encoder("code:microsoft/codebert-base", EncoderCfg(threads=1))
    assert cosines(enc.encode_text(TEXTS), ref_codebert(TEXTS)).min() >= MIN_COS


# --- the CLI, the way users run it ------------------------------------------------------------


def make_corpus(root: Path, photos: Path) -> Path:
    root.mkdir()
    for p in photos.iterdir():
        (root / p.name).write_bytes(p.read_bytes())
    (root / "jsonio.py").write_text(
        'import json\n\n\ndef read_json(path):\n    """Read a JSON file."""\n'
        "    with open(path) as f:\n        return json.load(f)\n"
    )
    (root / "notes.md").write_text("# Café notes\n\nThe naïve cat sleeps on a 東京 rooftop at night.\n")
    # whole records, one item each: unicode, markup and over-long texts as text and as code
    records = [
        {"_id": f"{m}{n}", "text": t, "modality": m} for m in ("text", "code") for n, t in enumerate(TEXTS)
    ]
    (root.parent / "docs.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    )
    return root


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "mmrag.cli", *args], env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, f"mmrag {' '.join(args)} -> {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc


def stored_vectors(coll: Path) -> dict[tuple[str, str], tuple[str, np.ndarray]]:
    """(file name, space) -> (the text the encoder read, vector), straight from the collection's SQLite."""
    db = sqlite3.connect(coll / "meta.sqlite")
    out = {}
    rows = db.execute(
        "SELECT i.key, i.source, i.modality, i.title, i.text, v.space, v.vec FROM items i "
        "JOIN vectors v ON v.item_id = i.id"
    )
    for key, source, modality, title, text, space, vec in rows:
        read = f"{title}\n{text}" if title and modality == "text" else text  # mmrag.indexing.embed.embed_text
        name = key if source.endswith(".jsonl") else Path(source).name
        out[(name, space)] = (read or title, np.frombuffer(vec, dtype=np.float32))
    db.close()
    return out


@pytest.fixture(scope="session")
def default_collection(hub, photos, tmp_path_factory):
    """`mmrag index` with `--models default`, as a subprocess that only sees the fake cache."""
    tmp = tmp_path_factory.mktemp("default-set")
    corpus = make_corpus(tmp / "corpus", photos)
    env = {**os.environ, **hub_env(hub), "OMP_NUM_THREADS": "1"}
    jsonl = str(corpus.parent / "docs.jsonl")
    out = run_cli("index", str(corpus), jsonl, "-c", str(tmp / "c"), "--models", "default", env=env)
    return tmp / "c", env, out.stderr


@pytest.mark.heavy  # the default set indexed through the CLI: ~75 s, shared by four tests
def test_cli_default_set_indexes_and_searches_offline(default_collection):
    coll, env, stderr = default_collection
    # progress into a pipe: plain lines, no cursor-control codes
    assert "\x1b[" not in stderr and "\r" not in stderr
    assert any(line.startswith("mmrag: ") and "/" in line for line in stderr.splitlines()), stderr
    manifest = json.loads((coll / "manifest.json").read_text())
    assert "ViT-B-32/laion2b_s34b_b79k" in json.dumps(manifest)
    for query, modality in (("a red square", "image"), ("read a json file", "code"), ("cat", "text")):
        out = run_cli("search", query, "-c", str(coll), "-m", modality, "-k", "3", "--json", env=env)
        hits = json.loads(out.stdout)
        assert hits and all(h["modality"] == modality for h in hits), out.stdout


@pytest.mark.heavy  # the default set indexed through the CLI: ~75 s, shared by four tests
def test_cli_default_set_vectors_equal_the_reference_libraries(default_collection, photos, clip_reference):
    coll, _, _ = default_collection
    stored = stored_vectors(coll)
    images = sorted(photos.iterdir())
    ours = np.stack([stored[(p.name, "image")][1] for p in images])
    ref = clip_reference["ViT-B-32/laion2b_s34b_b79k"]
    assert cosines(ours, ref_clip_images(ref, images)).min() >= MIN_COS
    captions = [stored[(p.name, "caption")][0] for p in images]
    caps = np.stack([stored[(p.name, "caption")][1] for p in images])
    assert cosines(caps, ref_clip_texts(ref, captions)).min() >= MIN_COS
    code_text, code_vec = stored[("jsonio.py", "code")]
    assert cosines(code_vec[None], ref_unixcoder([code_text])).min() >= MIN_COS
    text_text, text_vec = stored[("notes.md", "text")]
    assert cosines(text_vec[None], ref_minilm([text_text])).min() >= MIN_COS
    for space, ref in (("code", ref_unixcoder), ("text", ref_minilm)):
        keys = [f"{space}{n}" for n in range(len(TEXTS))]
        assert [stored[(k, space)][0] for k in keys] == TEXTS  # whole records, as written
        ours = np.stack([stored[(k, space)][1] for k in keys])
        assert cosines(ours, ref(TEXTS)).min() >= MIN_COS, space


@pytest.mark.heavy  # the default set indexed through the CLI: ~75 s, shared by four tests
def test_light_query_encoders_of_the_default_set_equal_the_references(default_collection, clip_reference):
    """The ONNX query files `mmrag index` wrote, against open_clip, UniXcoder's wrapper and ST."""
    from encoders.base import EncoderCfg
    from encoders.exported.query import LightEncoder
    from encoders.exported.towers import query_tower as load_query_encoder
    from encoders.modelsets import resolve_model_set

    ms = resolve_model_set("default")
    light = {
        role: load_query_encoder(getattr(ms, role), EncoderCfg(threads=1))
        for role in ("clip", "code", "text")
    }
    assert all(isinstance(enc, LightEncoder) for enc in light.values()), light
    ref = clip_reference["ViT-B-32/laion2b_s34b_b79k"]
    assert cosines(light["clip"].encode_text(TEXTS, query=True), ref_clip_texts(ref, TEXTS)).min() >= MIN_COS
    assert cosines(light["code"].encode_text(TEXTS, query=True), ref_unixcoder(TEXTS)).min() >= MIN_COS
    assert cosines(light["text"].encode_text(TEXTS, query=True), ref_minilm(TEXTS)).min() >= MIN_COS


@pytest.mark.heavy  # the default set indexed through the CLI: ~75 s, shared by four tests
def test_cli_query_by_image_runs_the_exported_tower_without_torch(default_collection, photos):
    """`mmrag index` exported CLIP's image tower before embedding (so the vectors checked above came
    from it); `mmrag search --image` in a fresh process then imports no torch and finds the photo."""
    coll, env, _ = default_collection
    script = (
        "import contextlib, io, json, sys\n"
        "from mmrag.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    rc = main(['search', '', '--image', {str(photos / 'large.jpg')!r}, '-c', {str(coll)!r}, "
        "'-m', 'image', '-k', '2', '--json'])\n"
        "heavy = [m for m in ('torch', 'open_clip', 'torchvision') if m in sys.modules]\n"
        "print(json.dumps({'rc': rc, 'hits': json.loads(out.getvalue()), 'heavy': heavy}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["rc"] == 0 and report["heavy"] == []
    assert report["hits"][0]["key"].endswith("large.jpg")


@pytest.mark.heavy
@pytest.mark.parametrize(
    "clip, code", [("clip:ViT-B-32/openai", "code:microsoft/codebert-base")], ids=["openai+codebert"]
)
def test_cli_alternative_models_by_toml(hub, photos, clip_reference, tmp_path, clip, code):
    corpus = make_corpus(tmp_path / "corpus", photos)
    toml = tmp_path / "alt.toml"
    toml.write_text(f'clip = "{clip}"\ncode = "{code}"\ntext = "text:{MINILM}"\n')
    env = {**os.environ, **hub_env(hub), "OMP_NUM_THREADS": "1"}
    run_cli("index", str(corpus), "-c", str(tmp_path / "c"), "--models", str(toml), "-q", env=env)
    run_cli("search", "a red square", "-c", str(tmp_path / "c"), "-k", "3", env=env)
    stored = stored_vectors(tmp_path / "c")
    images = sorted(photos.iterdir())
    ours = np.stack([stored[(p.name, "image")][1] for p in images])
    assert cosines(ours, ref_clip_images(clip_reference[clip.removeprefix("clip:")], images)).min() >= MIN_COS
    code_text, code_vec = stored[("jsonio.py", "code")]
    assert cosines(code_vec[None], ref_codebert([code_text])).min() >= MIN_COS
