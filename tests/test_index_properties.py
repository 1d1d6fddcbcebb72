"""Any sequence of add/remove/search matches a brute-force numpy reference."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexes import VectorIndex

faiss.omp_set_num_threads(1)  # shared test cores

DIM = 8
ID_SPACE = 30  # small, so removals and re-adds hit existing ids often

id_lists = st.lists(st.integers(0, ID_SPACE - 1), max_size=8)
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"), st.lists(st.integers(0, ID_SPACE - 1), max_size=8, unique=True), st.integers(0, 3)
        ),
        st.tuples(st.just("remove"), id_lists, st.just(0)),
        st.tuples(st.just("search"), st.integers(1, 12), st.integers(0, 1000)),
    ),
    max_size=14,
)


def vector(id_: int, seed: int) -> np.ndarray:
    """Distinct per (id, seed), so different ids almost never tie."""
    x = np.random.default_rng([seed, id_]).standard_normal(DIM).astype(np.float32)
    return x / np.linalg.norm(x)


def check_search(index: VectorIndex, reference: dict[int, np.ndarray], k: int, seed: int) -> None:
    queries = np.stack([vector(10_000 + i, seed) for i in range(3)])  # ids outside ID_SPACE
    scores, found = index.search(queries, k)
    live = sorted(reference)
    expected_n = min(k, len(live))
    assert (found[:, expected_n:] == -1).all() and np.isneginf(scores[:, expected_n:]).all()
    if not live:
        return
    matrix = np.stack([reference[i] for i in live])
    ref_scores = queries @ matrix.T  # (3, n_live)
    expected = -np.sort(-ref_scores, axis=1)[:, :expected_n]
    np.testing.assert_allclose(scores[:, :expected_n], expected, atol=1e-5)
    position = {id_: j for j, id_ in enumerate(live)}
    for row in range(len(queries)):
        got = found[row, :expected_n].tolist()
        assert len(set(got)) == len(got), "an id appears twice in one result list"
        for id_, score in zip(got, scores[row, :expected_n]):
            assert id_ in position, f"id {id_} returned but not live"
            assert abs(ref_scores[row, position[id_]] - score) <= 1e-5  # same id up to ties


@pytest.mark.parametrize("factory", ["Flat", "HNSW32"])
@settings(max_examples=40, deadline=None)
@given(ops=operations)
def test_operations_match_brute_force(factory, ops):
    index = VectorIndex(DIM, factory)
    reference: dict[int, np.ndarray] = {}
    for op, arg, seed in ops:
        if op == "add":
            vectors = np.stack([vector(i, seed) for i in arg]) if arg else np.zeros((0, DIM), np.float32)
            index.add(np.asarray(arg, dtype=np.int64), vectors)
            reference.update({i: vector(i, seed) for i in arg})
        elif op == "remove":
            present = {i for i in arg if i in reference}
            assert index.remove(np.asarray(arg, dtype=np.int64)) == len(present)
            for i in present:
                del reference[i]
        else:
            check_search(index, reference, arg, seed)
        ids = index.ids()
        assert len(np.unique(ids)) == len(ids) == index.ntotal
        np.testing.assert_array_equal(ids, sorted(reference))
    check_search(index, reference, 5, 7)
