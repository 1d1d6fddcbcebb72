"""Reductions (indexes/reduce.py) and a VectorIndex that stores reduced codes."""

from __future__ import annotations

import numpy as np
import pytest

from encoders.modelsets import OFFLINE_TEXT, ModelSet, is_matryoshka
from indexes.errors import IndexFileError, NotMatryoshkaError, ReductionError
from indexes.reduce import check_reduce, load_reducer, make_reducer, parse_reduce, save_reducer
from indexes.vector import VectorIndex


def _unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Vectors with a decaying spectrum, like embeddings: a few axes carry most of the variance."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32) * (np.arange(1, d + 1) ** -0.7).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_parse_and_check_errors_name_the_choices():
    assert str(parse_reduce("pca:128")) == "pca:128"
    with pytest.raises(ReductionError, match="kinds"):
        parse_reduce("tsne:2")
    with pytest.raises(ReductionError, match="fewer than the 64"):
        check_reduce("pca:64", 64)
    with pytest.raises(NotMatryoshkaError, match="Matryoshka"):
        check_reduce("mrl:32", 64)
    assert check_reduce("mrl:32", 64, matryoshka=True).dim == 32


def test_pca_matches_sklearn():
    from sklearn.decomposition import PCA

    x = _unit(500, 48)
    mine = make_reducer("pca:8", 48).fit(x).transform(x)
    ref = PCA(n_components=8, svd_solver="full").fit(x).transform(x)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    # axes agree up to sign, so the cosines between reduced vectors agree exactly
    np.testing.assert_allclose(mine @ mine.T, ref @ ref.T, atol=2e-4)
    np.testing.assert_allclose(np.linalg.norm(mine, axis=1), 1.0, atol=1e-5)


def test_truncate_and_random_projection():
    x = _unit(50, 32)
    t = make_reducer("mrl:8", 32, matryoshka=True).fit(x).transform(x)
    ref = x[:, :8] / np.linalg.norm(x[:, :8], axis=1, keepdims=True)
    np.testing.assert_allclose(t, ref, atol=1e-6)
    a = make_reducer("rp:8", 32).fit(x).transform(x)
    b = make_reducer("rp:8", 32).fit(x[:5]).transform(x)
    np.testing.assert_array_equal(a, b)  # seeded: the same projection whatever the sample
    with pytest.raises(ReductionError, match="at least 9"):
        make_reducer("pca:8", 32).fit(x[:5])


def test_saved_reducer_is_checked(tmp_path):
    x = _unit(100, 16)
    r = make_reducer("pca:4", 16).fit(x)
    sha = save_reducer(r, tmp_path / "r")
    back = load_reducer(tmp_path / "r", "pca:4", 16, sha)
    np.testing.assert_array_equal(back.transform(x), r.transform(x))
    with pytest.raises(IndexFileError, match="checksum"):
        load_reducer(tmp_path / "r", "pca:4", 16, "0" * 64)


@pytest.mark.parametrize("factory", ["Flat", "SQ8", "HNSW32"])
def test_index_reduces_queries_like_vectors(tmp_path, factory):
    x = _unit(400, 32)
    idx = VectorIndex(32, factory, reducer=make_reducer("pca:8", 32))
    idx.train(x)
    idx.add(np.arange(400) * 7, x)
    assert (idx.dim, idx.code_dim, idx.reduction) == (32, 8, "pca:8")
    q = _unit(5, 32, seed=1)
    scores, ids = idx.search(q, 10)
    r = idx.reducer.transform
    exact = r(q) @ r(x).T  # the reduced query against the reduced vectors, by hand
    if factory == "Flat":
        np.testing.assert_array_equal(ids, np.argsort(-exact, axis=1)[:, :10] * 7)
        np.testing.assert_allclose(scores, -np.sort(-exact, axis=1)[:, :10], atol=1e-5)
    idx.save(tmp_path / "i.faiss")
    back = VectorIndex.load(tmp_path / "i.faiss")
    assert back.reduction == "pca:8" and back.code_dim == 8
    np.testing.assert_array_equal(back.search(q, 10)[1], ids)
    allowed = np.arange(0, 400, 3) * 7
    got = back.search(q, 5, allowed=allowed)[1]
    assert np.isin(got, allowed).all()


def test_index_without_reduction_drops_an_old_reduction_file(tmp_path):
    x = _unit(100, 16)
    idx = VectorIndex(16, reducer=make_reducer("pca:4", 16))
    idx.add(np.arange(100), x)
    idx.save(tmp_path / "i.faiss")
    assert (tmp_path / "i.faiss.reduce").exists()
    plain = VectorIndex(16)
    plain.add(np.arange(100), x)
    plain.save(tmp_path / "i.faiss")
    assert not (tmp_path / "i.faiss.reduce").exists()
    assert VectorIndex.load(tmp_path / "i.faiss").reduction is None


def test_model_set_declares_matryoshka_and_reduce():
    ms = ModelSet.from_dict(
        {"text": "text:some/mrl-model", "matryoshka": ["text:some/mrl-model"], "reduce": {"text": "mrl:64"}}
    )
    assert ms.to_dict()["matryoshka"] == ["text:some/mrl-model"]
    assert ms.to_dict()["reduce"] == {"text": "mrl:64"}
    assert ModelSet.from_dict({"text": "text:x", "reduce": "pca:8"}).reduce == {"*": "pca:8"}
    assert is_matryoshka("text:some/mrl-model", ms.matryoshka)
    assert not is_matryoshka(f"text:{OFFLINE_TEXT}")  # all-MiniLM-L6-v2 was not trained for truncation
    assert is_matryoshka("text:nomic-ai/nomic-embed-text-v1.5")


@pytest.mark.heavy  # numba compiles UMAP on first use: about 20 s
def test_umap_places_new_queries(tmp_path):
    import warnings

    pytest.importorskip("umap")
    x = _unit(300, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no n_jobs warning on every fit
        r = make_reducer("umap:4", 16).fit(x[:250])
    y = r.transform(x[250:])
    assert y.shape == (50, 4)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ReductionError, match="never loads from a collection"):
        save_reducer(r, tmp_path / "u")  # measured by bench reduce, never stored: it would be a pickle


def test_umap_is_refused_as_a_stored_reduction():
    from indexes.reduce import check_storable

    check_storable("pca:8")
    with pytest.raises(ReductionError, match="bench reduce"):
        check_storable("umap:4")
