"""CLIP's exported image tower: open_clip's preprocessing without torch, the same vectors, no torch.

The preprocessing is checked against open_clip's own eval transforms for every preprocessing
setting its pretrained tags use; the tower against the torch model (tiny CLIP here, the real-size
ViT-B-32 through the CLI in tests/test_real_models.py); and the doors users use, `mmrag index`,
`mmrag search --image`, "red + ./ref.png", the REST API and the encoder the demo calls, each in a
fresh process that must not import torch once the files exist.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

open_clip = pytest.importorskip("open_clip")
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "open_clip", "torchvision", "transformers", "sentence_transformers")


def awkward_images() -> list[Image.Image]:
    """Landscape, portrait, tiny (upscaled), the exact input size, odd crop offsets."""
    rng = np.random.default_rng(3)
    shapes = [(750, 1000), (500, 333), (37, 20), (224, 224), (301, 517)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in shapes]


def preprocess_settings() -> list[tuple[int, dict]]:
    """(image size, transform settings) of every distinct eval preprocessing among open_clip's tags."""
    seen = {}
    for arch, tag in open_clip.list_pretrained():
        pcfg = open_clip.get_pretrained_cfg(arch, tag)
        cfg = open_clip.get_model_config(arch) or {}
        size = cfg.get("vision_cfg", {}).get("image_size")
        if not isinstance(size, int):
            continue
        opts = {k: pcfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in pcfg}
        seen.setdefault(json.dumps([size, opts], sort_keys=True), (size, opts))
    return list(seen.values())


def test_numpy_preprocessing_equals_open_clips_transforms():
    from encoders.exported.card import ImageCard
    from encoders.exported.image import preprocess
    from encoders.families.clip import transform_fields

    settings = preprocess_settings()
    assert len(settings) >= 3  # several sizes, means, filters and resize modes among the tags
    images = awkward_images()
    exported = 0
    for size, opts in settings:
        transform = open_clip.image_transform(size, is_train=False, **opts)
        fields = transform_fields(transform)
        if fields is None:  # a step not reproduced ("longest" pads): such a tag keeps torch, never differs
            assert opts.get("resize_mode") == "longest", (size, opts)
            continue
        exported += 1
        card = ImageCard(spec="x", dim=1, **fields)
        for img in images:
            ref = transform(img).numpy()
            ours = preprocess(img, card)
            assert ours.shape == ref.shape and ours.dtype == np.float32
            assert np.abs(ours - ref).max() <= 1e-5, (size, opts, img.size)
    assert exported >= 2


@pytest.mark.parametrize("arch", ["ViT-B-32-256", "ViT-B-16-quickgelu"])
def test_class_token_tower_gives_encode_images_numbers(arch):
    """The exported form cuts the last block to the class token: exact, on open_clip's real ViTs."""
    import torch

    from encoders.families.clip_image import cls_tower

    torch.manual_seed(0)
    model = open_clip.create_model(arch, pretrained=None).eval()
    encode = cls_tower(model)
    assert encode is not None
    size = model.visual.image_size[0]
    pixels = torch.randn(3, 3, size, size)
    with torch.no_grad():
        ref, ours = model.encode_image(pixels), encode(pixels)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_towers_without_a_class_token_pool_are_exported_whole():
    import torch

    from encoders.families.clip_image import cls_tower

    torch.manual_seed(0)
    assert cls_tower(open_clip.create_model("RN50", pretrained=None)) is None  # attention-pooled ResNet
    avg = open_clip.create_model("ViT-B-32", pretrained=None)
    avg.visual.pool_type = "avg"  # every token reaches the pool: nothing to cut
    assert cls_tower(avg) is None


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tower-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMRAG_CACHE", str(path))
        yield path


def heavy_in_subprocess(script: str, env: dict[str, str]) -> dict:
    """Run `script` in a fresh interpreter; its last stdout line is JSON, `heavy` added to it."""
    code = script + (
        f"\nimport json, sys\nREPORT['heavy'] = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(json.dumps(REPORT))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def towers(cache):
    """The tiny CLIP on torch, its towers exported, and the same spec built again from them."""
    from encoders import EncoderCfg, create_encoder, export_towers
    from encoders.exported.image import ExportedClip
    from encoders.families.clip import ClipEncoder

    full = create_encoder("tiny-clip:0", EncoderCfg(threads=1, backend="torch"))  # torch asked for
    assert isinstance(full, ClipEncoder)
    assert export_towers(full.spec, lambda: full) is not None
    exported = create_encoder("tiny-clip:0", EncoderCfg(threads=1, batch_size=3))
    assert isinstance(exported, ExportedClip)
    return full, exported


@pytest.fixture(scope="module")
def indexed(towers, cache, tmp_path_factory):
    """Photos indexed with a CLIP-only set by `mmrag index` in a fresh process, once the towers exist."""
    root = tmp_path_factory.mktemp("tower-coll")
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(5)
    for name, size in (("red.jpg", (640, 480)), ("tall.png", (240, 320)), ("noise.jpg", (300, 300))):
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        if name == "red.jpg":
            arr[..., 0] = 230
        Image.fromarray(arr).save(photos / name)
    models = root / "clip.toml"
    models.write_text('name = "tiny-clip-only"\nclip = "tiny-clip:0"\n')
    env = {**os.environ, "MMRAG_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    report = heavy_in_subprocess(
        "from mmrag.cli import main\n"
        f"REPORT = {{'rc': main(['index', {str(photos)!r}, '-c', {str(root / 'coll')!r}, '--models', "
        f"{str(models)!r}, '-q'])}}\n",
        env,
    )
    return root / "coll", photos, env, report


def test_exported_tower_equals_the_torch_model(towers):
    full, exported = towers
    images = awkward_images()
    ours, ref = exported.encode_image(images), full.encode_image(images)
    assert ours.shape == ref.shape
    assert (ours * ref).sum(axis=1).min() >= 0.9999
    captions = ["a red car", "", "IMG 0042", "Naïve café — 日本語"]
    assert (exported.encode_text(captions) * full.encode_text(captions)).sum(axis=1).min() >= 0.9999


def test_a_vector_does_not_depend_on_its_batch_mates(towers):
    _, exported = towers
    images = awkward_images()
    together = exported.encode_image(images)  # batches of 3 (cfg), mixed shapes
    alone = np.concatenate([exported.encode_image([im]) for im in images])
    np.testing.assert_allclose(alone, together, atol=1e-5)


def test_indexing_with_exported_towers_imports_no_torch_and_stores_torchs_vectors(indexed, towers):
    import sqlite3

    from mmrag.api import Engine
    from mmrag.ingest import load_image

    coll, photos, _, report = indexed
    assert report["rc"] == 0 and report["heavy"] == []
    full, _ = towers
    db = sqlite3.connect(coll / "meta.sqlite")
    rows = db.execute(
        "SELECT i.source, i.text, v.space, v.vec FROM items i JOIN vectors v ON v.item_id = i.id"
    )
    stored = {(Path(src).name, space): (text, np.frombuffer(v, np.float32)) for src, text, space, v in rows}
    db.close()
    for name in ("red.jpg", "tall.png", "noise.jpg"):
        caption, vec = stored[(name, "caption")]
        assert float(full.encode_text([caption])[0] @ vec) >= 0.9999
        ref = full.encode_image([load_image(str(photos / name), max_pixels=10**8)])[0]
        assert float(ref @ stored[(name, "image")][1]) >= 0.9999, name
    with Engine.open(coll) as eng:
        assert eng.search("", images=[str(photos / "red.jpg")], k=1).hits[0].key.endswith("red.jpg")


@pytest.mark.parametrize("query", ["", "red + ./red.jpg"])
def test_query_by_image_imports_no_torch(indexed, query):
    coll, photos, env, _ = indexed
    images = "['--image', 'red.jpg']" if not query else "[]"
    report = heavy_in_subprocess(
        "import contextlib, io, json, os\n"
        f"os.chdir({str(photos)!r})\n"
        "from mmrag.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    rc = main(['search', {query!r}, *{images}, '-c', {str(coll)!r}, '-k', '3', '--json'])\n"
        "REPORT = {'rc': rc, 'keys': [h['key'] for h in json.loads(out.getvalue())]}\n",
        env,
    )
    assert report["rc"] == 0 and report["heavy"] == []
    assert report["keys"][0].endswith("red.jpg")


def test_server_and_demo_encoder_query_by_image_without_torch(indexed):
    pytest.importorskip("fastapi")
    coll, photos, env, _ = indexed
    report = heavy_in_subprocess(
        "from fastapi.testclient import TestClient\n"
        "from PIL import Image\n"
        "from mmrag.http.server import create_app\n"
        "from mmrag.http.service import Service\n"
        f"svc = Service({str(coll)!r})\n"
        "client = TestClient(create_app(svc.path, service=svc, ui=False), base_url='http://127.0.0.1')\n"
        f"with open({str(photos / 'red.jpg')!r}, 'rb') as f:\n"
        "    r = client.post('/search', data={'k': '2'}, files={'image': ('q.jpg', f.read(), 'image/jpeg')})\n"
        "enc = svc.models.get('joint')  # what the demo's map star embeds a query image with\n"
        f"with Image.open({str(photos / 'red.jpg')!r}) as img:\n"
        "    vec = enc.encode_image([img.convert('RGB')])[0]\n"
        "REPORT = {'status': r.status_code, 'body': r.text[:500], 'hits': [h['key'] for h in r.json().get('hits', [])],\n"
        "          'norm': float((vec ** 2).sum())}\n",
        env,
    )
    assert report["status"] == 200, report
    assert report["heavy"] == []
    assert report["hits"] and report["hits"][0].endswith("red.jpg")
    assert abs(report["norm"] - 1) < 1e-4


def test_a_lone_query_image_gets_every_thread_and_batches_get_one_core_streams(towers):
    from encoders.exported.image import ImageTower

    _, exported = towers
    card, folder = exported.tower.card, exported.tower.path.parent
    images = awkward_images()
    batches = ImageTower(card, folder, "onnx", threads=2)  # the indexer: batches first
    together = batches.encode_images(images, batch_size=4)
    assert (batches.streams, batches._per_stream) == (2, 1)
    query = ImageTower(card, folder, "onnx", threads=2)  # `mmrag search --image`: one image first
    alone = np.concatenate([query.encode_images([im]) for im in images])
    assert (query.streams, query._per_stream) == (1, 2)
    np.testing.assert_allclose(alone, together, atol=1e-5)


def test_the_optimised_graph_is_kept_for_the_next_load_and_a_damaged_copy_is_redone(towers):
    from encoders.exported.image import ImageTower
    from encoders.runtime.forward import SAVED_MODEL, SAVED_WEIGHTS, optimised_dir

    _, exported = towers
    card, folder = exported.tower.card, exported.tower.path.parent
    saved = optimised_dir(folder / card.model)
    shutil.rmtree(saved, ignore_errors=True)
    legacy = saved.with_name(saved.name + ".onnx")  # an earlier release's one-file copy
    legacy.write_bytes(b"old copy")
    images = awkward_images()
    first = ImageTower(card, folder, "onnx", threads=1).encode_images(images)
    # written once (graph + external weights), renamed into place; the old copy is gone
    assert (saved / SAVED_MODEL).is_file() and (saved / SAVED_WEIGHTS).stat().st_size > 1000
    assert not list(folder.glob(".*")) and not legacy.exists()
    again = ImageTower(card, folder, "onnx", threads=1).encode_images(images)  # reads the saved graph
    np.testing.assert_allclose(again, first, atol=1e-6)
    size = (saved / SAVED_WEIGHTS).stat().st_size
    for damage in (lambda: (saved / SAVED_MODEL).write_bytes(b"half a file"),
                   lambda: os.truncate(saved / SAVED_WEIGHTS, size // 2),
                   lambda: (saved / SAVED_WEIGHTS).unlink()):  # fmt: skip
        damage()
        redone = ImageTower(card, folder, "onnx", threads=1).encode_images(images)
        np.testing.assert_allclose(redone, first, atol=1e-6)
        assert (saved / SAVED_WEIGHTS).stat().st_size == size  # optimised again, saved over the damage


def test_a_cache_that_cannot_be_written_still_serves_the_tower(towers, monkeypatch):
    """A read-only cache (root ignores chmod, so the write itself is made to fail): the tower is
    optimised in memory at every load, nothing is left behind, and the vectors are the same."""
    import encoders.atomic as atomic
    import encoders.runtime.forward as forward
    from encoders.exported.image import ImageTower

    _, exported = towers
    card, folder = exported.tower.card, exported.tower.path.parent
    saved = forward.optimised_dir(folder / card.model)
    images = awkward_images()
    before = ImageTower(card, folder, "onnx", threads=1).encode_images(images)
    shutil.rmtree(saved)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(atomic.tempfile, "mkdtemp", refuse)
    after = ImageTower(card, folder, "onnx", threads=1).encode_images(images)
    np.testing.assert_allclose(after, before, atol=1e-6)
    assert not saved.exists() and not list(folder.glob(".*"))
