"""VectorIndex over every factory family: self-retrieval, removal, replacement, persistence, errors."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from indexes import (
    IndexFileError,
    NotTrainedError,
    VectorIndex,
    choose_factory,
    default_params,
    min_training_vectors,
    validate_factory,
)
from indexes.factory import FLAT_MAX_N

faiss.omp_set_num_threads(1)  # the test machine's cores are shared; OpenMP spinning only slows it

DIM = 32
N = 1200

FACTORIES = {
    "Flat": {},
    "HNSW32": {"efSearch": 64},
    "IVF16,SQ8": {"nprobe": 4},
    "IVF16,PQ8": {"nprobe": 16},
}


def unit_vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    ids = np.arange(N, dtype=np.int64) * 7 + 1000  # sparse, non-positional ids
    return ids, unit_vectors(N)


@pytest.fixture(scope="module", params=list(FACTORIES))
def filled(request, data) -> VectorIndex:
    ids, x = data
    index = VectorIndex(DIM, request.param, FACTORIES[request.param])
    index.add(ids, x)
    return index


def fresh(factory: str, data) -> VectorIndex:
    ids, x = data
    index = VectorIndex(DIM, factory, FACTORIES[factory])
    index.add(ids, x)
    return index


def test_self_retrieval(filled, data):
    ids, x = data
    assert filled.ntotal == N and filled.is_trained
    scores, found = filled.search(x, 5)
    assert scores.dtype == np.float32 and found.dtype == np.int64 and found.shape == (N, 5)
    first = (found[:, 0] == ids).mean()
    # exact storage finds every vector first; quantized storage nearly always
    assert first == 1.0 if filled.factory in ("Flat", "HNSW32") else first >= 0.98
    assert (found == ids[:, None]).any(axis=1).mean() >= 0.99
    assert np.all(np.diff(scores, axis=1) <= 1e-6), "scores must come sorted best first"


def test_flat_scores_are_inner_products(data):
    ids, x = data
    index = fresh("Flat", data)
    q = unit_vectors(3, seed=5)
    scores, found = index.search(q, 10)
    ref = q @ x.T
    order = np.argsort(-ref, axis=1)[:, :10]
    np.testing.assert_array_equal(found, ids[order])
    np.testing.assert_allclose(scores, np.take_along_axis(ref, order, axis=1), atol=1e-5)


@pytest.mark.parametrize("factory", list(FACTORIES))
def test_remove_never_returns_removed(factory, data):
    ids, x = data
    index = fresh(factory, data)
    gone = ids[::3]
    assert index.remove(np.concatenate([gone, [-5, 123456789]])) == len(gone)  # unknown ids ignored
    assert index.ntotal == N - len(gone)
    assert index.remove(gone) == 0
    _, found = index.search(x, 20)
    assert not np.isin(found, gone).any()
    assert gone[0] not in index and ids[1] in index
    np.testing.assert_array_equal(index.ids(), np.setdiff1d(ids, gone))
    kept = np.setdiff1d(np.arange(N), np.arange(0, N, 3))
    assert (found[kept, 0] == ids[kept]).mean() >= 0.98


def test_hnsw_tombstones_then_compaction(data):
    ids, x = data
    index = fresh("HNSW32", data)
    index.remove(ids[:10])  # few: kept as tombstones
    assert index.ntotal == N - 10 and index._index.ntotal == N
    index.remove(ids[10 : N // 2])  # past the compaction fraction: rebuilt without the dead
    assert index._index.ntotal == index.ntotal == N - N // 2
    _, found = index.search(x[N // 2 :], 1)
    np.testing.assert_array_equal(found[:, 0], ids[N // 2 :])


def test_tombstone_file_follows_the_index(tmp_path, data):
    ids, x = data
    index = fresh("HNSW32", data)
    index.remove(ids[:3])
    index.save(tmp_path / "h.faiss")
    assert (tmp_path / "h.faiss.dead.npy").exists()
    index.compact()
    index.save(tmp_path / "h.faiss")
    assert not (tmp_path / "h.faiss.dead.npy").exists()
    loaded = VectorIndex.load(tmp_path / "h.faiss")
    assert loaded.ntotal == N - 3 and ids[0] not in loaded
    with pytest.raises(ValueError, match="dimension"):
        VectorIndex(0)
    assert VectorIndex(np.int64(DIM)).dim == DIM


@pytest.mark.parametrize("factory", list(FACTORIES))
def test_readd_replaces(factory, data):
    ids, x = data
    index = fresh(factory, data)
    moved = ids[:5]
    new_vectors = unit_vectors(5, seed=99)
    index.add(moved, new_vectors)
    assert index.ntotal == N
    assert len(np.unique(index.ids())) == N
    _, found = index.search(new_vectors, 3)
    np.testing.assert_array_equal(found[:, 0], moved)
    assert all(np.count_nonzero(row == m) == 1 for row, m in zip(found, moved))
    _, found_old = index.search(x[:5], 3)
    assert (found_old[:, 0] != moved).all(), "old vectors must be gone"


@pytest.mark.parametrize("mmap", [False, True])
@pytest.mark.parametrize("factory", list(FACTORIES))
def test_save_load_round_trip(factory, mmap, data, tmp_path):
    ids, x = data
    index = fresh(factory, data)
    index.remove(ids[:7])  # HNSW: tombstones must survive the round trip
    path = tmp_path / "sub" / "vec.faiss"
    index.save(path)
    meta = json.loads((tmp_path / "sub" / "vec.faiss.json").read_text())
    assert meta["factory"] == factory and meta["dim"] == DIM and meta["ntotal"] == N - 7
    assert meta["params"] == FACTORIES[factory] and meta["format_version"] == 1
    loaded = VectorIndex.load(path, mmap=mmap)
    assert (loaded.factory, loaded.dim, loaded.ntotal, loaded.params) == (factory, DIM, N - 7, index.params)
    q = unit_vectors(50, seed=3)
    s0, i0 = index.search(q, 10)
    s1, i1 = loaded.search(q, 10)
    np.testing.assert_array_equal(i0, i1)
    np.testing.assert_array_equal(s0, s1)
    np.testing.assert_array_equal(loaded.ids(), index.ids())
    loaded.save(tmp_path / "copy.faiss")  # saved straight from the (possibly mapped) file
    np.testing.assert_array_equal(VectorIndex.load(tmp_path / "copy.faiss").search(q, 10)[1], i0)
    # a mapped index becomes writable on first change, and saves again
    loaded.add(ids[:2], x[:2])
    assert loaded.ntotal == N - 5 and ids[0] in loaded
    loaded.save(tmp_path / "again.faiss")
    assert VectorIndex.load(tmp_path / "again.faiss").ntotal == N - 5


def test_padding_when_k_exceeds_ntotal():
    index = VectorIndex(DIM)
    scores, found = index.search(unit_vectors(2), 4)
    assert (found == -1).all() and np.isneginf(scores).all()
    index.add(np.array([10, 20, 30]), unit_vectors(3))
    scores, found = index.search(unit_vectors(1, seed=4)[0], 5)  # 1-D query is one query
    assert found.shape == (1, 5)
    assert sorted(found[0, :3].tolist()) == [10, 20, 30]
    assert (found[0, 3:] == -1).all() and np.isneginf(scores[0, 3:]).all()
    assert np.isfinite(scores[0, :3]).all()


def test_padding_hnsw_with_tombstones():
    index = VectorIndex(DIM, "HNSW32")
    index.add(np.arange(20), unit_vectors(20))
    index.remove([0, 1])
    scores, found = index.search(unit_vectors(3, seed=8), 25)
    assert (found[:, :18] >= 2).all() and (found[:, 18:] == -1).all()
    assert np.isneginf(scores[:, 18:]).all()


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_bad_k(k):
    index = VectorIndex(DIM)
    with pytest.raises(ValueError, match="k must be"):
        index.search(unit_vectors(1), k)


def test_bad_inputs():
    index = VectorIndex(DIM)
    with pytest.raises(ValueError, match="shape"):
        index.add(np.arange(2), unit_vectors(2, dim=DIM + 1))
    with pytest.raises(ValueError, match="ids for"):
        index.add(np.arange(3), unit_vectors(2))
    with pytest.raises(ValueError, match="Duplicate"):
        index.add(np.array([1, 1]), unit_vectors(2))
    with pytest.raises(ValueError, match="reserved"):
        index.add(np.array([-1]), unit_vectors(1))
    with pytest.raises(ValueError, match="nprobe"):
        VectorIndex(DIM, "Flat", {"nprobe": 4})


def test_untrained_ivf_says_how_many_vectors_it_needs():
    index = VectorIndex(DIM, "IVF64,Flat")
    assert not index.is_trained
    assert index.search(unit_vectors(1), 3)[1].tolist() == [[-1, -1, -1]]
    with pytest.raises(NotTrainedError, match="at least 64 training vectors"):
        index.add(np.arange(10), unit_vectors(10))
    index.train(unit_vectors(200))
    index.add(np.arange(10), unit_vectors(10))
    assert index.ntotal == 10
    assert min_training_vectors("IVF4096,PQ64") == 4096
    assert min_training_vectors("IVF16,PQ8") == 256
    assert min_training_vectors("HNSW32") == 1


def test_choose_factory_by_size():
    assert choose_factory(1000, 384) == "Flat"
    assert choose_factory(FLAT_MAX_N, 384) == "Flat"
    assert choose_factory(200_000, 384) == "HNSW32"
    assert choose_factory(1_000_000, 512) == "IVF4096,PQ128x4fs,Refine(SQ8)"  # the benchmarked choice
    assert default_params("IVF4096,PQ128x4fs,Refine(SQ8)", 1_000_000) == {"nprobe": 64, "k_factor_rf": 10}
    assert choose_factory(1_000_000, 512, ram_budget_bytes=300 * 2**20).endswith(",SQ4")
    tight = choose_factory(1_000_000, 512, ram_budget_bytes=200 * 2**20)
    assert tight.startswith("IVF") and ",PQ" in tight
    m = int(tight.rsplit("PQ", 1)[1])
    assert 512 % m == 0
    for n, dim in [(60_000, 64), (1_000_000, 512), (5_000_000, 768)]:
        factory = choose_factory(n, dim, ram_budget_bytes=100 * 2**20)
        validate_factory(factory, dim)
        nlist = int(factory[3:].split(",")[0]) if factory.startswith("IVF") else 0
        assert nlist == 0 or (nlist & (nlist - 1) == 0 and n >= 39 * nlist)
    assert default_params("Flat", 10) == {}
    assert "efSearch" in default_params("HNSW32", 10**6)
    assert 1 <= default_params("IVF4096,SQ8", 10**6)["nprobe"] <= 4096


@pytest.mark.parametrize("bad", ["", "NotAnIndex", "IVF,Flat", "PQ7"])
def test_validate_factory_errors(bad):
    with pytest.raises(ValueError, match="factory"):
        validate_factory(bad, DIM)  # PQ7: 7 does not divide 32
    with pytest.raises(ValueError):
        VectorIndex(DIM, bad)


def test_corrupt_and_missing_files(tmp_path, data):
    with pytest.raises(IndexFileError, match="No index file"):
        VectorIndex.load(tmp_path / "absent.faiss")
    index = fresh("Flat", data)
    path = tmp_path / "v.faiss"
    index.save(path)
    good = path.read_bytes()
    path.write_bytes(b"not a faiss index at all")
    with pytest.raises(IndexFileError, match="Corrupt"):
        VectorIndex.load(path)
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(IndexFileError):
        VectorIndex.load(path)
    path.write_bytes(good)
    sidecar = tmp_path / "v.faiss.json"
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "ntotal": 3}))
    with pytest.raises(IndexFileError, match="different saves"):
        VectorIndex.load(path)
    sidecar.write_text("{broken")
    with pytest.raises(IndexFileError, match="sidecar"):
        VectorIndex.load(path)
    sidecar.unlink()
    with pytest.raises(IndexFileError, match="sidecar"):
        VectorIndex.load(path)
    assert not list(tmp_path.glob(".*.tmp")), "atomic writes leave no temporary files"


def test_set_params_applies_and_persists(tmp_path, data):
    index = fresh("HNSW32", data)
    index.set_params({"efSearch": 128})
    assert index.params == {"efSearch": 128}
    assert faiss.downcast_index(index._index.index).hnsw.efSearch == 128
    with pytest.raises(ValueError, match="nprobe"):
        index.set_params({"nprobe": 3})
    assert index.params == {"efSearch": 128}
    index.save(tmp_path / "h.faiss")
    assert VectorIndex.load(tmp_path / "h.faiss").params == {"efSearch": 128}


def test_contains_only_live_integer_ids(data):
    ids, _ = data
    index = fresh("Flat", data)
    assert ids[3] in index and np.int32(ids[3]) in index
    assert float(ids[3]) not in index and "1000" not in index and True not in index
    assert 2**70 not in index and -1 not in index


def test_fast_scan_with_refine_keeps_ids_removes_and_round_trips(tmp_path):
    x = unit_vectors(3000)
    ids = np.arange(1000, 4000, dtype=np.int64)
    index = VectorIndex(x.shape[1], "IVF32,PQ16x4fs,Refine(SQ8)", {"nprobe": 8, "k_factor_rf": 10})
    index.add(ids, x)
    _, found = index.search(x[:50], 1)
    assert (found[:, 0] == ids[:50]).mean() >= 0.98  # SQ8 rescoring finds the vector itself
    assert index.remove(ids[:5]) == 5
    _, found = index.search(x[:5], 5)
    assert not set(found.ravel().tolist()) & set(ids[:5].tolist())
    index.save(tmp_path / "r.faiss")
    again = VectorIndex.load(tmp_path / "r.faiss")
    assert again.params == {"nprobe": 8, "k_factor_rf": 10}
    assert np.array_equal(again.search(x[5:20], 5)[1], index.search(x[5:20], 5)[1])
