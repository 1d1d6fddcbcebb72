"""Stored reductions in a collection: `mmrag compact`, `mmrag index --reduce` and the model set's `reduce`.

Synthetic vectors written straight into the store give exact comparisons; the tiny models drive
`mmrag index --reduce` once. A compaction killed before its manifest is written must leave the
old index serving the same hits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mmrag.bench.scale import Mixture, MixtureSpec
from mmrag.cli import main
from mmrag.errors import ConfigError
from mmrag.items import Item
from mmrag.storage.collection import Collection

DIM, N = 64, 2000


def _vectors(seed: int, n: int) -> np.ndarray:
    return Mixture(MixtureSpec(dim=DIM, components=100, rank=16, families=4)).chunk(seed, 0, n)


def _add(coll: Collection, start: int, vecs: np.ndarray) -> np.ndarray:
    items = [
        Item(key=f"v{start + i}", modality="text", source="s", text=f"v{start + i}") for i in range(len(vecs))
    ]
    with coll.store.transaction() as con:
        ids = coll.store.insert_items(con, items)
        coll.store.insert_vectors(con, "text", ids, vecs)
    return np.asarray(ids)


def _new(path, models: dict | None = None) -> None:
    with Collection.open(path, write=True, create=True) as coll:
        coll.bind_models(models or {"name": "synthetic", "text": "text:some/model"}, {"text": DIM}, {})
        _add(coll, 0, _vectors(1, N))
        coll.save()


def _queries() -> np.ndarray:
    return _vectors(2, 20)


def _hits(path) -> np.ndarray:
    with Collection.open(path) as coll:
        return coll.vector_index("text").search(_queries(), 10)[1]


def _files(path) -> list[str]:
    return sorted(p.name for p in (path / "indexes").iterdir() if p.name.startswith("text."))


def test_compact_to_full_dimension_keeps_every_hit(tmp_path):
    _new(tmp_path)
    before = _hits(tmp_path)
    with Collection.open(tmp_path, write=True) as coll:
        entry = coll.compact("text", None)
    assert entry["factory"] == "Flat" and "reduce" not in entry
    np.testing.assert_array_equal(_hits(tmp_path), before)
    names = _files(tmp_path)
    assert (
        "text.faiss" not in names and entry["file"] in names
    )  # the old file went once the new one was named


def test_compact_pca_reduces_queries_alike_and_stays_recorded(tmp_path):
    _new(tmp_path)
    with Collection.open(tmp_path, write=True) as coll:
        entry = coll.compact("text", "pca:16")
        assert entry["reduce"] == "pca:16" and entry["code_dim"] == 16
        assert coll.manifest.reductions == {"text": "pca:16"}
    with Collection.open(tmp_path) as coll:  # a reader loads the stored reduction with the index
        idx = coll.vector_index("text")
        assert idx.reduction == "pca:16" and idx.code_dim == 16 and idx.dim == DIM
        ids, vecs = coll.store.vectors("text")
        q = _queries()
        exact = idx.reducer.transform(q) @ idx.reducer.transform(vecs).T
        np.testing.assert_array_equal(
            idx.search(q, 10)[1], ids[np.argsort(-exact, axis=1, kind="stable")[:, :10]]
        )
    with Collection.open(tmp_path, write=True) as coll:  # later saves keep the reduction and the file name
        new = _add(coll, N, _vectors(3, 50))
        coll.save()
        rec = coll.manifest.indexes["text"]
        assert rec["reduce"] == "pca:16" and rec["file"] == entry["file"] and rec["count"] == N + 50
        vec = coll.store.vectors("text", new[:1], DIM)[1]
        assert coll.vector_index("text").search(vec, 1)[1][0, 0] == new[0]
    with Collection.open(tmp_path, write=True) as coll:
        coll.compact("text", None, "SQfp16")
        assert coll.manifest.indexes["text"]["factory"] == "SQfp16"
        assert "reduce" not in coll.manifest.indexes["text"] and coll.manifest.reductions["text"] == "none"


def test_truncation_is_refused_unless_the_model_is_matryoshka(tmp_path):
    _new(tmp_path / "a")
    with Collection.open(tmp_path / "a", write=True) as coll, pytest.raises(ConfigError, match="Matryoshka"):
        coll.compact("text", "mrl:16")
    assert _hits(tmp_path / "a").shape == (20, 10)  # the refusal changed nothing
    _new(tmp_path / "b", {"name": "m", "text": "text:some/mrl", "matryoshka": ["text:some/mrl"]})
    with Collection.open(tmp_path / "b", write=True) as coll:
        coll.compact("text", "mrl:16")
        idx = coll.vector_index("text")
        x = _queries()
        np.testing.assert_allclose(
            idx.reducer.transform(x), x[:, :16] / np.linalg.norm(x[:, :16], axis=1, keepdims=True), atol=1e-6
        )


def test_model_set_reduce_applies_on_save(tmp_path):
    _new(tmp_path, {"name": "m", "text": "text:some/model", "reduce": {"text": "rp:32"}})
    with Collection.open(tmp_path) as coll:
        assert coll.manifest.indexes["text"]["reduce"] == "rp:32"
    with pytest.raises(ConfigError, match="fewer than"):
        _new(tmp_path / "bad", {"name": "m", "text": "text:some/model", "reduce": "pca:64"})


def test_cli_compact(tmp_path, capsys):
    _new(tmp_path)
    assert main(["compact", "-c", str(tmp_path), "--space", "text", "--to", "pca:16,sq8"]) == 0
    assert "Flat over full dimension" in capsys.readouterr().err
    with Collection.open(tmp_path) as coll:
        rec = coll.manifest.indexes["text"]
        assert (rec["factory"], rec["reduce"]) == ("SQ8", "pca:16")
    assert main(["compact", "-c", str(tmp_path), "--space", "text", "--to", "pca:16,binary"]) == 1
    assert "Unknown code 'binary'" in capsys.readouterr().err
    assert main(["compact", "-c", str(tmp_path), "--space", "image", "--to", "pca:16"]) == 1


_KILL_AT_SWITCH = """
import os, signal, sys
from mmrag.storage import collection as c
def die(self, path):
    os.kill(os.getpid(), signal.SIGKILL)  # the new index is written, the manifest not yet
c.Manifest.write = die
with c.Collection.open(sys.argv[1], write=True) as coll:
    coll.compact("text", "pca:16", "SQ8")
"""


def test_compact_killed_before_the_switch_leaves_the_old_index(tmp_path):
    _new(tmp_path)
    before = _hits(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_KILL_AT_SWITCH), str(tmp_path)], env=env)
    assert proc.returncode == -9
    names = _files(tmp_path)
    assert "text.faiss" in names and any(n.endswith(".faiss.reduce") for n in names)  # both on disk
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert "reduce" not in manifest["indexes"]["text"] and not manifest.get("reductions")
    np.testing.assert_array_equal(_hits(tmp_path), before)
    with Collection.open(tmp_path, write=True) as coll:  # the next save deletes the unnamed files
        coll.save()
    assert _files(tmp_path) == ["text.faiss", "text.faiss.json", "text.hubness.npz"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(300)]
    path.write_text(
        "".join(
            json.dumps({"_id": f"d{j}", "text": " ".join(rng.choice(words, 10))}) + "\n" for j in range(120)
        )
    )
    return str(path)


def test_index_reduce_option_is_checked_and_recorded(tmp_path):
    from mmrag.cli.compact import apply_reduce_args

    _new(tmp_path)
    with Collection.open(tmp_path, write=True) as coll:
        with pytest.raises(ConfigError, match="Unknown space"):
            apply_reduce_args(coll, ["pictures=pca:8"], {"text": DIM})
        with pytest.raises(ConfigError, match="Matryoshka"):
            apply_reduce_args(coll, ["mrl:8"], {"text": DIM})
        assert coll.manifest.reductions == {}
        apply_reduce_args(coll, ["pca:8"], {"text": DIM})
        coll.save()
        assert coll.manifest.indexes["text"]["reduce"] == "pca:8"


@pytest.mark.heavy  # a minute: indexes with the tiny models, whose query towers are exported on the way
def test_cli_index_reduce(tmp_path, corpus):
    coll = str(tmp_path / "c")
    assert main(["index", corpus, "-c", coll, "--models", "tiny", "-q", "--reduce", "text=pca:8"]) == 0
    with Collection.open(coll) as c:
        assert c.manifest.reductions == {"text": "pca:8"}
        assert c.manifest.indexes["text"]["reduce"] == "pca:8"
        assert "reduce" not in c.manifest.indexes["joint"]
    assert main(["search", "w1 w2", "-c", coll, "--json"]) == 0
    assert (
        main(["index", corpus, "-c", str(tmp_path / "d"), "--models", "tiny", "-q", "--reduce", "mrl:8"]) == 1
    )
