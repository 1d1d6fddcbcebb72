"""Ensembles: a role listing several encoders gets one space and prior per encoder, fused per role."""

from __future__ import annotations

import json

import numpy as np
import pytest

from encoders import ModelSet, ModelSetError, resolve_model_set
from mmrag.api import Engine
from mmrag.query.fusion import RouteResult, fuse_ensemble
from mmrag.query.router import parse_query, plan_routes
from mmrag.storage.collection import Collection

ENSEMBLE = """name = "ens"
code = ["tiny-code:0", "tiny-code:1"]
text = ["tiny-text:0", "tiny-text:1"]
ensemble_weights = [0.3, 1.0]
"""


def test_model_set_lists_round_trip_and_errors(tmp_path):
    path = tmp_path / "ens.toml"
    path.write_text(ENSEMBLE)
    s = resolve_model_set(str(path))
    assert (s.code, s.members("code")) == ("tiny-code:0", ("tiny-code:0", "tiny-code:1"))
    assert s.ensemble_spaces() == {"code@2": "tiny-code:1", "text@2": "tiny-text:1"}
    assert s.member_weight(1) == 0.3 and s.member_weight(2) == 1.0 and s.member_weight(3) == 1.0
    assert ModelSet.from_dict(json.loads(json.dumps(s.to_dict()))) == s  # as the manifest stores it
    q = resolve_model_set("quality")
    assert len(q.members("code")) == 2 and q.clip is None
    for bad, match in [
        ('clip = ["tiny-clip:0", "tiny-clip:1"]\n', "takes one encoder"),
        ('code = ["tiny-code:0", 3]\n', "list encoder spec strings"),
        ('code = ["tiny-code:0", "bogus:x"]\n', "unknown schema"),
        ('code = ["tiny-code:0", "tiny-code:1"]\nensemble_fusion = "max"\n', "ensemble_fusion"),
        ('code = ["tiny-code:0"]\nensemble_weights = [-1]\n', "ensemble_weights"),
    ]:
        path.write_text(bad)
        with pytest.raises(ModelSetError, match=match):
            resolve_model_set(str(path))


def test_zsum_over_complete_lists_is_the_weighted_sum_of_z_scores():
    """Members that return every item: the fused ranking is numpy's weighted z-sum, exactly."""
    rng = np.random.default_rng(3)
    full = rng.standard_normal((2, 40))
    members = []
    for m, w in enumerate((0.3, 1.0)):
        order = np.argsort(-full[m])
        members.append(
            RouteResult(f"code@{m + 1}", order.astype(np.int64), full[m][order].astype(np.float32), w)
        )
    fused = fuse_ensemble(members, "code", 2.0)
    z = (full - full.mean(1, keepdims=True)) / full.std(1, keepdims=True)
    want = 0.3 * z[0] + 1.0 * z[1]
    assert fused.name == "code" and fused.weight == 2.0
    assert fused.ids.tolist() == np.argsort(-want, kind="stable").tolist()
    assert np.allclose(fused.scores, np.sort(want)[::-1], atol=1e-5)
    # an item missing from one member gets that member's lowest z, so absence never helps
    cut = [RouteResult("a", members[0].ids[:10], members[0].scores[:10]), members[1]]
    only_b = set(members[1].ids.tolist()) - set(cut[0].ids.tolist())
    top = fuse_ensemble(cut, "code", 1.0)
    assert set(top.ids.tolist()) == set(range(40)) and only_b
    rrf = fuse_ensemble(members, "code", 1.0, "rrf")
    assert len(rrf.ids) == 40


def test_routes_of_an_ensemble():
    q = parse_query("read a json file")
    plan = plan_routes(q, ["code", "code@2", "text", "text@2", "joint", "lexical"], weights={"code@2": 0.5})
    assert plan.routes["code@2"] == 0.5 and plan.routes["text@2"] == 1.0
    off = plan_routes(q, ["code", "code@2", "text"], weights={"code": 0})
    assert "code" not in off.routes and "code@2" not in off.routes  # the role off turns its members off


@pytest.fixture(scope="module")
def ensemble_coll(tmp_path_factory):
    root = tmp_path_factory.mktemp("ens")
    (root / "ens.toml").write_text(ENSEMBLE)
    corpus = root / "corpus.jsonl"
    docs = {f"d{i}": f"def f{i}(x):\n    return x * {i} + len('{'ab' * (i % 5)}')\n" for i in range(30)}
    corpus.write_text(
        "".join(json.dumps({"_id": k, "text": v, "modality": "code"}) + "\n" for k, v in docs.items())
    )
    coll = root / "c"
    with Engine.open(coll, write=True, models=str(root / "ens.toml")) as eng:
        eng.index([str(corpus)])
    return coll, docs


def test_each_encoder_has_its_space_and_prior(ensemble_coll):
    coll, docs = ensemble_coll
    with Collection.open(coll) as c:
        assert c.spaces() == ["code", "code@2", "text", "text@2", "joint", "joint@2"]
        for space in ("code", "code@2", "joint", "joint@2"):
            assert c.manifest.indexes[space]["count"] == len(docs)
            assert c.hubness_prior(space) is not None
        assert c.manifest.dims["code@2"] == c.manifest.dims["code"]
        _, a = c.store.vectors("code")
        _, b = c.store.vectors("code@2")
        _, j2 = c.store.vectors("joint@2")
        assert not np.allclose(a, b)  # a different model, not a copy
    with Engine.open(coll) as eng:  # joint@2: the joint role's (text) second encoder on the code
        want = eng.models.get("text@2").encode_text(list(docs.values()))
    assert np.allclose(j2, want, atol=1e-5)


def test_search_fuses_a_role_before_the_routes(ensemble_coll):
    coll, docs = ensemble_coll
    with Engine.open(coll) as eng:
        res = eng.search("def f3(x):\n    return x * 3 + len('ababab')\n", k=5, hubness=0)
        assert res.hits[0].key.endswith("d3")  # a snippet finds itself through the fused route
        assert {"code", "code@2", "joint", "joint@2"} <= set(res.routes)
        assert all("code@2" not in h.routes for h in res.hits)  # fused into "code" before RRF
        # only the code role on: the ranking is fuse_ensemble over the two spaces' own searches
        got = eng.search("return x times three", k=30, weights={"joint": 0, "text": 0}, hubness=0)
        members = []
        for space, w in (("code", 0.3), ("code@2", 1.0)):
            vec = eng.models.query(space).encode_text(["return x times three"], query=True)
            scores, ids = eng.collection.vector_index(space).search(vec, 100)
            members.append(RouteResult(space, ids[0], scores[0], w))
        want = fuse_ensemble(members, "code", 1.0)
        assert [h.id for h in got.hits] == want.ids[:30].tolist()
