"""The hubness prior: neighbourhood densities against brute force, the corrected ranking against
brute-force CSLS, incremental refresh, files, and the prior inside a collection's search."""

from __future__ import annotations

import json

import numpy as np
import pytest

from indexes.errors import IndexFileError
from indexes.hubness import HubnessPrior, neighbour_density, refresh
from indexes.vector import VectorIndex
from mmrag.api import Engine
from mmrag.errors import QueryError


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def synthetic(n: int = 300, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(10_000, n, replace=False)).astype(np.int64)
    return ids, unit(rng.normal(size=(n, d)))


def flat(ids: np.ndarray, vecs: np.ndarray) -> VectorIndex:
    idx = VectorIndex(vecs.shape[1], "Flat")
    idx.add(ids, vecs)
    return idx


def brute_density(vecs: np.ndarray, k: int) -> np.ndarray:
    sims = vecs @ vecs.T
    np.fill_diagonal(sims, -np.inf)
    return np.sort(sims, axis=1)[:, -k:].mean(axis=1)


def test_density_matches_brute_force_and_excludes_self():
    ids, vecs = synthetic()
    got = neighbour_density(flat(ids, vecs).search, ids, vecs, k=5)
    np.testing.assert_allclose(got, brute_density(vecs, 5), atol=1e-5)


def test_density_with_exact_duplicates_counts_the_twin():
    ids, vecs = synthetic(50)
    vecs[1] = vecs[0]  # a twin: its nearest other item has cosine 1
    got = neighbour_density(flat(ids, vecs).search, ids, vecs, k=1)
    assert got[0] == pytest.approx(1.0, abs=1e-5) and got[1] == pytest.approx(1.0, abs=1e-5)


def test_apply_equals_brute_force_csls_ranking():
    ids, vecs = synthetic()
    idx = flat(ids, vecs)
    prior = HubnessPrior(ids, neighbour_density(idx.search, ids, vecs))
    queries = unit(np.random.default_rng(1).normal(size=(20, vecs.shape[1])))
    scores, found = idx.search(queries, len(ids))
    adj, order = prior.apply(scores, found, 0.3)
    density = brute_density(vecs, 5)
    brute = queries @ vecs.T - 0.3 * (density - density.mean())[None, :]
    np.testing.assert_array_equal(order[:, :10], ids[np.argsort(-brute, axis=1)[:, :10]])
    np.testing.assert_allclose(adj[:, :10], -np.sort(-brute, axis=1)[:, :10], atol=1e-5)
    assert np.all(np.diff(adj, axis=1) <= 1e-6)  # best first


def test_a_hub_is_demoted_below_the_item_that_answers():
    rng = np.random.default_rng(2)
    d = 16
    hub = unit(rng.normal(size=(1, d)))
    crowd = unit(hub + 0.35 * rng.normal(size=(40, d)))  # many items close to the hub
    answer = unit(rng.normal(size=(1, d)))
    vecs = np.vstack([hub, crowd, answer])
    ids = np.arange(len(vecs), dtype=np.int64)
    idx = flat(ids, vecs)
    query = unit(0.45 * answer + 0.55 * hub)  # a little nearer the hub than the answer
    raw_scores, raw_ids = idx.search(query, len(ids))
    prior = HubnessPrior(ids, neighbour_density(idx.search, ids, vecs))
    _, fixed = prior.apply(raw_scores, raw_ids, 0.5)
    raw_rank = {int(i): r for r, i in enumerate(raw_ids[0])}
    rank = {int(i): r for r, i in enumerate(fixed[0])}
    assert raw_rank[0] < raw_rank[len(ids) - 1]  # uncorrected, the hub wins
    assert rank[len(ids) - 1] == 0  # corrected, the answer is first


def test_penalty_is_zero_for_unknown_ids_and_empty_slots():
    prior = HubnessPrior(np.array([3, 7], np.int64), np.array([0.9, 0.5], np.float32))
    np.testing.assert_allclose(prior.penalty(np.array([7, 3, 5, -1])), [-0.2, 0.2, 0.0, 0.0], atol=1e-6)
    scores, ids = prior.apply(np.array([0.8, 0.7, 0.1], np.float32), np.array([3, 7, -1]), 1.0)
    assert ids.tolist() == [7, 3, -1] and scores[-1] == pytest.approx(0.1)


def test_save_load_round_trip_and_damaged_file(tmp_path):
    ids, vecs = synthetic(40)
    prior = HubnessPrior(ids, neighbour_density(flat(ids, vecs).search, ids, vecs), k=5, stale=3)
    prior.save(tmp_path / "p.npz")
    back = HubnessPrior.load(tmp_path / "p.npz")
    np.testing.assert_array_equal(back.ids, prior.ids)
    np.testing.assert_array_equal(back.density, prior.density)
    assert (back.k, back.stale) == (5, 3)
    (tmp_path / "p.npz").write_bytes(b"not a numpy file")
    with pytest.raises(IndexFileError, match="hubness prior"):
        HubnessPrior.load(tmp_path / "p.npz")


def test_refresh_computes_only_new_items_until_the_share_is_passed():
    ids, vecs = synthetic(400)
    fetch = {int(i): v for i, v in zip(ids, vecs)}

    def read(want):
        want = np.asarray(want, np.int64)
        return want, np.stack([fetch[int(i)] for i in want]) if len(want) else np.zeros((0, vecs.shape[1]))

    base = refresh(None, ids[:380], read, flat(ids[:380], vecs[:380]).search)
    assert base.stale == 0
    np.testing.assert_allclose(base.density, brute_density(vecs[:380], 5), atol=1e-5)
    assert refresh(base, ids[:380], read, flat(ids[:380], vecs[:380]).search) is base  # nothing changed
    # a few items added and removed: the new ones are computed, the kept ones keep their value
    want = np.concatenate([ids[5:380], ids[380:390]])
    idx = flat(want, np.stack([fetch[int(i)] for i in want]))
    small = refresh(base, want, read, idx.search)
    np.testing.assert_array_equal(small.ids, want)
    assert small.stale == 15
    kept = np.isin(base.ids, want)
    np.testing.assert_array_equal(small.density[np.isin(small.ids, base.ids)], base.density[kept])
    full = brute_density(np.stack([fetch[int(i)] for i in want]), 5)
    new = ~np.isin(small.ids, base.ids)
    np.testing.assert_allclose(small.density[new], full[new], atol=1e-5)
    # past the share: everything recomputed, staleness reset
    want = ids[200:]
    big = refresh(small, want, read, flat(want, vecs[200:]).search)
    assert big.stale == 0
    np.testing.assert_allclose(big.density, brute_density(vecs[200:], 5), atol=1e-5)


def write_corpus(path, n: int = 60) -> None:
    words = ["read", "write", "parse", "json", "file", "list", "sort", "http", "cache", "path", "image"]
    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        for i in range(n):
            w = rng.choice(words, 4)
            text = f"def {w[0]}_{w[1]}(x):\n    '''{w[0]} the {w[1]} of {w[2]} {w[3]}'''\n    return x\n"
            f.write(
                json.dumps({"_id": f"d{i}", "text": text, "modality": "code", "language": "python"}) + "\n"
            )


def test_collection_search_applies_the_prior_exactly(tmp_path):
    write_corpus(tmp_path / "c.jsonl")
    coll = tmp_path / "c.coll"
    with Engine.open(coll, write=True, models="tiny") as eng:
        eng.index([str(tmp_path / "c.jsonl")])
    with Engine.open(coll) as eng:
        c = eng.collection
        assert c.manifest.indexes["code"]["hubness"]["count"] == 60
        ids, vecs = c.store.vectors("code")
        prior = c.hubness_prior("code")
        np.testing.assert_array_equal(prior.ids, ids)
        np.testing.assert_allclose(prior.density, brute_density(vecs, prior.k), atol=1e-5)
        q = "parse the json of a file"
        qv = eng.models.query("code").encode_text([q], query=True)
        qv = qv / np.linalg.norm(qv, axis=1, keepdims=True)
        density = brute_density(vecs, prior.k)
        for w in (0.0, 0.4):
            hits = eng.search(q, k=10, weights={"joint": 0}, hubness=w).hits
            brute = (qv @ vecs.T)[0] - w * (density - density.mean())
            assert [h.id for h in hits] == ids[np.argsort(-brute, kind="stable")[:10]].tolist()
            assert [h.routes["code"] for h in hits] == pytest.approx(np.sort(brute)[::-1][:10], abs=1e-5)
        with pytest.raises(QueryError, match="hubness"):
            eng.search(q, hubness=1.5)
    # a damaged prior is a cache: the search runs uncorrected instead of failing
    (coll / "indexes" / "code.hubness.npz").write_bytes(b"junk")
    with Engine.open(coll) as eng:
        plain = [h.id for h in eng.search(q, k=10, weights={"joint": 0}, hubness=0).hits]
        assert [h.id for h in eng.search(q, k=10, weights={"joint": 0}).hits] == plain
    # the next indexing run repairs it
    with Engine.open(coll, write=True) as eng:
        eng.index([str(tmp_path / "c.jsonl")])
        assert eng.collection.hubness_prior("code") is not None


def test_vectors_replaced_under_the_same_ids_recompute_the_prior(tmp_path):
    from mmrag.indexing.joint import fit_collection_projection
    from mmrag.train.pairs import Pair

    write_corpus(tmp_path / "c.jsonl")
    with Engine.open(tmp_path / "c.coll", write=True, models="tiny") as eng:
        eng.index([str(tmp_path / "c.jsonl")])
        before = eng.collection.hubness_prior("joint").density.copy()
        pairs = [Pair(f"raise to the power {i}", f"def p{i}(a):\n    return a ** {i}\n") for i in range(80)]
        _, stored = fit_collection_projection(eng, pairs, "code", store=True)
        assert stored
        ids, vecs = eng.collection.store.vectors("joint")
        prior = eng.collection.hubness_prior("joint")
        np.testing.assert_array_equal(prior.ids, ids)
        np.testing.assert_allclose(prior.density, brute_density(vecs, prior.k), atol=1e-5)
        assert not np.allclose(prior.density, before)
