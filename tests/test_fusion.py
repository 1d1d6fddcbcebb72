from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmrag.errors import ConfigError
from mmrag.query.fusion import RRF_K, RouteResult, fuse, weights_from


def rr(name, ids, scores=None, w=1.0):
    ids = np.array(ids, np.int64)
    scores = np.array(scores if scores is not None else np.linspace(1, 0, len(ids)), np.float32)
    return RouteResult(name, ids, scores, w)


def test_rrf_arithmetic_by_hand():
    fused = fuse([rr("a", [1, 2, 3]), rr("b", [3, 1], w=2.0)], "rrf")
    got = {i: s for i, s, _ in fused}
    assert got[1] == pytest.approx(1 / (RRF_K + 1) + 2 / (RRF_K + 2))
    assert got[3] == pytest.approx(1 / (RRF_K + 3) + 2 / (RRF_K + 1))
    assert got[2] == pytest.approx(1 / (RRF_K + 2))
    assert [i for i, _, _ in fused] == [3, 1, 2]
    routes = {i: r for i, _, r in fused}
    assert set(routes[1]) == {"a", "b"} and set(routes[2]) == {"a"}


def test_zsum_by_hand():
    fused = fuse([rr("a", [1, 2], [3.0, 1.0]), rr("b", [2, 1], [0.9, 0.1], w=0.5)], "zsum")
    got = {i: s for i, s, _ in fused}
    assert got[1] == pytest.approx(1.0 + 0.5 * -1.0)
    assert got[2] == pytest.approx(-1.0 + 0.5 * 1.0)


def test_padding_ids_and_zero_weights_are_ignored():
    fused = fuse([rr("a", [5, -1, -1], [0.5, -np.inf, -np.inf]), rr("b", [9], w=0.0)], "rrf")
    assert [i for i, _, _ in fused] == [5]


def test_unknown_method_and_bad_weights():
    with pytest.raises(ConfigError, match="valid"):
        fuse([], "nope")
    assert weights_from("code=2, lexical=0.5") == {"code": 2.0, "lexical": 0.5}
    with pytest.raises(ConfigError):
        weights_from("code")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 30), unique=True, max_size=12), min_size=1, max_size=4),
    st.sampled_from(["rrf", "zsum", "max"]),
)
def test_fusion_invariants(lists, method):
    results = [rr(f"r{n}", ids) for n, ids in enumerate(lists)]
    fused = fuse(results, method)
    ids = [i for i, _, _ in fused]
    assert len(ids) == len(set(ids)) == len(set().union(*map(set, lists)))  # each id once, none lost
    scores = [s for _, s, _ in fused]
    assert scores == sorted(scores, reverse=True)  # ordered
    for i, s in zip(ids[:-1], ids[1:]):  # ties broken by id: a stable, reproducible order
        a, b = dict((x, y) for x, y, _ in fused)[i], dict((x, y) for x, y, _ in fused)[s]
        assert a > b or (a == b and i < s)
    if method == "rrf" and len(lists) == 1:  # one route: fusion keeps its order
        assert ids == lists[0]


def test_rrf_weight_scaling_preserves_order():
    a = fuse([rr("a", [1, 2, 3]), rr("b", [3, 2, 1])], "rrf")
    b = fuse([rr("a", [1, 2, 3], w=3.0), rr("b", [3, 2, 1], w=3.0)], "rrf")
    assert [i for i, _, _ in a] == [i for i, _, _ in b]
