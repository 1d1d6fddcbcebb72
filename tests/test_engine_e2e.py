"""The engine end to end on a small mixed corpus with the tiny models: index, search, re-index,
remove, reload. Rankings of tiny random models are meaningless; what is checked is exact
behaviour: self-retrieval, what gets re-embedded, and equality after reload."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from mmrag.api import Engine
from mmrag.cli import main
from mmrag.errors import CollectionLockedError, ConfigError, QueryError
from mmrag.storage.collection import Collection


def make_corpus(root):
    (root / "img").mkdir(parents=True)
    (root / "src").mkdir()
    (root / "docs").mkdir()
    colors = {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (20, 40, 220), "yellow": (240, 230, 30)}
    for name, rgb in colors.items():
        im = Image.new("RGB", (96, 64), rgb)
        im.save(root / "img" / f"{name}_square.png")
    (root / "img" / "blue_square.txt").write_text("a plain blue square")
    (root / "src" / "util.py").write_text(
        'import json\n\n\ndef read_json(path):\n    """Read a JSON file."""\n    with open(path) as f:\n'
        '        return json.load(f)\n\n\nclass Cache:\n    """A tiny cache."""\n\n    def get(self, key):\n'
        "        return self.data.get(key)\n\n    def put(self, key, value):\n        self.data[key] = value\n"
    )
    (root / "src" / "math_ops.py").write_text(
        "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"
    )
    (root / "docs" / "guide.md").write_text(
        "# Guide\n\nInstall the package with pip.\n\n## Search\n\nSearch images and code with one query.\n"
    )
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def built(tmp_path_factory, corpus):
    coll = tmp_path_factory.mktemp("coll") / "c"
    with Engine.open(coll, write=True, models="tiny") as eng:
        report = eng.index([str(corpus)])
    return coll, report


def test_index_reports_and_counts(built):
    coll, report = built
    assert report.clean, report.errors
    with Collection.open(coll) as c:
        counts = c.stats()["by_modality"]
    assert counts["image"] == 4 and counts["code"] >= 5 and counts["text"] >= 1


def test_search_returns_all_three_modalities(built):
    coll, _ = built
    with Engine.open(coll) as eng:
        hits = eng.search("read a json file", k=50).hits
    assert {h.modality for h in hits} == {"image", "code", "text"}
    assert all(h.routes for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_self_retrieval_per_space(built):
    """Every stored vector finds its own item first in its own index."""
    coll, _ = built
    with Collection.open(coll) as c:
        for space in c.spaces():
            ids, vecs = c.store.vectors(space)
            _, found = c.vector_index(space).search(vecs, 1)
            # identical vectors (e.g. two same-colour images) may tie; the hit's vector must equal ours
            _, again = c.store.vectors(space, found[:, 0].tolist())
            lookup = dict(zip(c.store.vectors(space)[0].tolist(), c.store.vectors(space)[1]))
            for i, f in zip(ids, found[:, 0]):
                assert f == i or np.allclose(lookup[f], lookup[i], atol=1e-6), (space, i, f)


def test_image_query_and_filters(built, corpus):
    coll, _ = built
    with Engine.open(coll) as eng:
        res = eng.search("", images=[str(corpus / "img" / "red_square.png")], k=3)
        assert res.hits[0].source.endswith("red_square.png")
        assert {h.modality for h in eng.search("cache", modalities=("code",), k=20).hits} == {"code"}
        only = eng.search("add numbers", path_glob="*math_ops.py", k=20).hits
        assert only and all(h.source.endswith("math_ops.py") for h in only)
        with pytest.raises(QueryError):
            eng.search("x", k=0)
        with pytest.raises(QueryError):
            eng.search("   ")


def test_more_like_this(built):
    coll, _ = built
    with Engine.open(coll) as eng:
        img = next(h for h in eng.search("square", modalities=("image",), k=4).hits)
        sim = eng.similar(img.id, k=3).hits
    assert sim and all(h.modality == "image" and h.id != img.id for h in sim)


def test_reindex_unchanged_embeds_nothing_and_reload_is_equal(tmp_path, corpus):
    src = tmp_path / "corpus"
    shutil.copytree(corpus, src)
    coll = tmp_path / "c"
    with Engine.open(coll, write=True, models="tiny") as eng:
        first = eng.index([str(src)])
        before = eng.search("json cache", k=20)
    with Engine.open(coll, write=True) as eng:
        second = eng.index([str(src)])
    assert first.items_added > 0 and second.items_added == 0 and second.unchanged_sources == second.sources
    with Engine.open(coll) as eng:
        after = eng.search("json cache", k=20)
    assert [(h.id, round(h.score, 6)) for h in before.hits] == [(h.id, round(h.score, 6)) for h in after.hits]

    # change one function, delete a file: only the changed item is embedded, the vanished one dropped
    util = src / "src" / "util.py"
    util.write_text(util.read_text().replace("self.data.get(key)", "self.data[key]"))
    os.remove(src / "src" / "math_ops.py")
    with Engine.open(coll, write=True) as eng:
        third = eng.index([str(src)])
        keys = {h.source for h in eng.search("add", k=100).hits}
    assert third.items_added == 1  # Cache.get changed; read_json, Cache, Cache.put kept
    assert third.items_removed >= 2
    assert not any(k.endswith("math_ops.py") for k in keys)


def test_remove_and_consistency(tmp_path, corpus):
    coll = tmp_path / "c"
    with Engine.open(coll, write=True, models="tiny") as eng:
        eng.index([str(corpus)])
    assert main(["remove", str(corpus / "img"), "-c", str(coll)]) == 0
    with Collection.open(coll) as c:
        assert "image" not in c.stats()["by_modality"]
        item_ids = set(c.store.fetch_items(list(range(1, 1000))))
        for space in c.spaces():
            assert set(c.vector_index(space).ids().tolist()) <= item_ids


def test_model_set_mismatch_and_lock(tmp_path, corpus):
    coll = tmp_path / "c"
    with Engine.open(coll, write=True, models="tiny") as eng:
        eng.index([str(corpus / "docs")])
        with pytest.raises(CollectionLockedError, match="another process"):
            Engine.open(coll, write=True)
    toml = tmp_path / "m.toml"
    toml.write_text('name = "other"\ntext = "tiny-text:1"\ncode = "tiny-code:1"\n')
    with pytest.raises(ConfigError, match="cannot be mixed"):
        Engine.open(coll, write=True, models=str(toml))


def test_cli_end_to_end(tmp_path, corpus, capsys):
    coll = str(tmp_path / "c")
    assert main(["index", str(corpus), "-c", coll, "--models", "tiny", "-q"]) == 0
    err = capsys.readouterr().err
    assert "meaningless" in err
    assert main(["search", "json file", "-c", coll, "-k", "30", "--json"]) == 0
    out = capsys.readouterr()
    hits = json.loads(out.out)
    assert {h["modality"] for h in hits} == {"image", "code", "text"}
    for h in hits:
        assert {"id", "modality", "score", "source", "routes"} <= set(h)
    assert "meaningless" in out.err
    assert main(["info", "-c", coll]) == 0
    assert "index" in capsys.readouterr().out
    assert main(["search", "", "-c", coll]) == 1
    assert "Empty query" in capsys.readouterr().err
    assert main(["search", "x", "-c", str(tmp_path / "nope")]) == 1


def test_cli_eval_on_beir_jsonl(tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    docs = {f"d{i}": f"document number {i} about topic {i % 3}" for i in range(12)}
    corpus.write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in docs.items()))
    queries = tmp_path / "q.jsonl"
    queries.write_text("".join(json.dumps({"_id": f"q{i}", "text": docs[f"d{i}"]}) + "\n" for i in range(5)))
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(5)))
    coll = str(tmp_path / "c")
    assert main(["index", str(corpus), "-c", coll, "--models", "tiny", "-q"]) == 0
    capsys.readouterr()
    assert main(["eval", "-c", coll, "--queries", str(queries), "--qrels", str(qrels), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert set(m) >= {"mrr", "ndcg@10", "recall@1", "recall@10", "recall@100", "queries"}
    assert m["queries"] == 5
    assert m["mrr"] == pytest.approx(1.0)  # the query is the document's own text: it must come first


def test_factory_override_and_ivf_training(tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"_id": f"d{i}", "text": f"entry {i} on subject {i % 7}"}) + "\n" for i in range(300)
        )
    )
    coll = str(tmp_path / "c")
    assert main(["index", str(corpus), "-c", coll, "--models", "tiny", "-q", "--factory", "PQ7"]) == 1
    assert "FAISS rejects factory" in capsys.readouterr().err
    assert main(["index", str(corpus), "-c", coll, "--models", "tiny", "-q", "--factory", "IVF8,SQ8"]) == 0
    with Collection.open(coll) as c:
        factories = {name: ix["factory"] for name, ix in c.manifest.indexes.items()}
        assert factories["text"] == factories["joint"] == "IVF8,SQ8"
        assert factories["image"] == "Flat"  # no image vectors to train on: exact search
        ids, vecs = c.store.vectors("text")
        _, found = c.vector_index("text").search(vecs[:20], 1)
        assert (found[:, 0] == ids[:20]).mean() >= 0.9
