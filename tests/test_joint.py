from __future__ import annotations

import numpy as np
import pytest

from encoders.base import l2_normalize
from mmrag.api import Engine
from mmrag.errors import ConfigError
from mmrag.indexing.joint import (
    fit_collection_projection,
    fit_projection,
    fit_ridge,
    load_projections,
    pair_mrr,
    project,
)


def test_ridge_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 16)).astype(np.float32)
    w_true = rng.normal(size=(16, 8)).astype(np.float32)
    w = fit_ridge(x, x @ w_true, ridge=1e-6)
    assert np.allclose(w, w_true, atol=1e-3)


def test_fitted_beats_identity_when_spaces_differ_and_pair_mrr_by_hand():
    rng = np.random.default_rng(1)
    concepts = l2_normalize(rng.normal(size=(400, 32)))
    queries = l2_normalize(concepts + 0.3 * rng.normal(size=concepts.shape))
    rotation = np.linalg.qr(rng.normal(size=(32, 32)))[0].astype(np.float32)
    src = l2_normalize(concepts @ rotation)  # another encoder: same content, rotated space
    joint_docs = l2_normalize(concepts + 0.9 * rng.normal(size=concepts.shape))  # a weak joint view
    w, report = fit_projection(src, queries, joint_docs)
    assert report.val_mrr_fitted > report.val_mrr_identity
    assert report.pairs + report.val_pairs == 400
    eye = np.eye(3, dtype=np.float32)
    assert pair_mrr(eye, eye) == 1.0
    assert pair_mrr(eye, eye[[1, 0, 2]]) == pytest.approx((0.5 + 0.5 + 1) / 3)
    with pytest.raises(ConfigError):
        fit_projection(src[:10], queries[:10], joint_docs[:10])


def test_collection_projection_rederives_joint_vectors(tmp_path):
    from mmrag.train.pairs import Pair

    src = tmp_path / "src"
    src.mkdir()
    for i in range(30):
        (src / f"m{i}.py").write_text(f"def func_{i}(a):\n    return a ** {i}\n")
    with Engine.open(tmp_path / "c", write=True, models="tiny") as eng:
        eng.index([str(src)])
        pairs = [Pair(f"raise to the power {i}", f"def p{i}(a):\n    return a ** {i}\n") for i in range(80)]
        report, stored = fit_collection_projection(eng, pairs, "code", store=True)
        assert stored and report.pairs > 0
        w = load_projections(eng.collection.path, eng.collection.manifest.joint)["code"]
        ids, code = eng.collection.store.vectors("code")
        _, joint = eng.collection.store.vectors("joint", ids.tolist())
        assert np.allclose(joint, project(code, w), atol=1e-6)
        assert eng.collection.manifest.joint["code"]["kind"] == "fitted"
    # new items use the stored map too, and search still works over the rebuilt joint index
    (src / "new.py").write_text("def brand_new(z):\n    return z\n")
    with Engine.open(tmp_path / "c", write=True) as eng:
        eng.index([str(src)])
        new = eng.collection.store.item_by_key(f"{src}/new.py#brand_new")
        _, code = eng.collection.store.vectors("code", [new["id"]])
        _, joint = eng.collection.store.vectors("joint", [new["id"]])
        assert np.allclose(joint, project(code, w), atol=1e-6)
        assert eng.search("power", k=5).hits
