"""On-disk IVF-PQ: shard-built, merged, memory-mapped index agrees with in-RAM search and brute force."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from indexes.errors import IndexFileError, NotTrainedError
from indexes.ondisk import LargeIndexConfig, OnDiskIndex, RowFile, choose_large
from mmrag.bench.scale import Mixture, MixtureSpec

DIM = 64
N = 12_000
CFG = LargeIndexConfig(factory="IVF64,PQ16", nprobe=16, rescore_k=100, train_size=N)


@pytest.fixture(scope="module")
def data():
    faiss.omp_set_num_threads(1)
    mix = Mixture(MixtureSpec(dim=DIM, components=200, rank=16, families=4))
    return mix.chunk(1, 0, N), mix.chunk(2, 0, 50)


@pytest.fixture(scope="module")
def built(tmp_path_factory, data):
    x, _ = data
    folder = tmp_path_factory.mktemp("ondisk") / "idx"
    index = OnDiskIndex.create(folder, DIM, CFG)
    index.train(x[:8000])
    ids = np.arange(N, dtype=np.int64) * 7 + 3  # ids unrelated to row numbers
    for start in range(0, N, 4000):
        index.add_shard(x[start : start + 4000], ids[start : start + 4000])
    index.merge()
    return folder, ids


def _brute(x, q, k):
    return np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :k]


def test_mmap_search_equals_in_ram_search(built, data):
    folder, _ = built
    _, q = data
    mm = OnDiskIndex.load(folder, mmap=True)
    ram = OnDiskIndex.load(folder, mmap=False)
    assert isinstance(mm._stores[0], RowFile) and isinstance(ram._stores[0], np.ndarray)
    assert mm.candidates(q, 50).tolist() == ram.candidates(q, 50).tolist()
    s1, i1 = mm.search(q, 10)
    s2, i2 = ram.search(q, 10)
    assert i1.tolist() == i2.tolist()
    np.testing.assert_allclose(s1, s2)


def test_sharded_merge_equals_one_in_ram_index(built, data):
    """Shards merged on disk hold exactly what adding everything to one in-RAM index would."""
    folder, _ = built
    x, q = data
    one = faiss.read_index(str(folder / "trained.faiss"))
    one.add_with_ids(x, np.arange(N, dtype=np.int64))
    faiss.extract_index_ivf(one).nprobe = CFG.nprobe
    mm = OnDiskIndex.load(folder, mmap=True)
    assert mm.candidates(q, 50).tolist() == one.search(q, 50)[1].tolist()


def test_rescored_results_match_brute_force(built, data):
    folder, ids = built
    x, q = data
    index = OnDiskIndex.load(folder)
    scores, found = index.search(q, 10)
    truth = ids[_brute(x, q, 10)]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])
    assert recall >= 0.9
    # rescored scores are exact inner products (fp16 storage), sorted descending
    by_id = {int(i): r for r, i in enumerate(ids)}
    exact = np.array([[x[by_id[int(i)]] @ qq for i in row] for row, qq in zip(found, q)])
    np.testing.assert_allclose(scores, exact, atol=2e-3)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_rescoring_beats_pq_alone(built, data):
    folder, _ = built
    x, q = data
    index = OnDiskIndex.load(folder)
    truth = _brute(x, q, 10)
    pq_rows = index.candidates(q, 10)
    _, found = index.search(q, 10)
    rows = (found - 3) // 7
    rec_pq = np.mean([len(set(a) & set(b)) for a, b in zip(pq_rows, truth)])
    rec_rescored = np.mean([len(set(a) & set(b)) for a, b in zip(rows, truth)])
    assert rec_rescored > rec_pq


def test_int8_store_and_resume(tmp_path, data):
    x, q = data
    cfg = LargeIndexConfig(factory="IVF32,PQ8", nprobe=32, rescore_k=200, store_dtype="int8", train_size=4000)
    folder = tmp_path / "i8"
    index = OnDiskIndex.create(folder, DIM, cfg)
    with pytest.raises(NotTrainedError):
        index.add_shard(x[:10], np.arange(10))
    index.train(x[:4000])
    index.add_shard(x[:3000], np.arange(3000), name="a")
    reopened = OnDiskIndex.load(folder)  # an interrupted build reopens with its finished shards
    assert reopened.shard_names() == ["a"]
    assert reopened.add_shard(x[:3000], np.arange(3000), name="a") == "a"  # skipped, not duplicated
    reopened.add_shard(x[3000:6000], np.arange(3000, 6000), name="b")
    reopened.merge()
    assert reopened.ntotal == 6000
    scores, found = reopened.search(q, 5)
    truth = _brute(x[:6000], q, 5)
    assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(found, truth)]) >= 0.9
    np.testing.assert_allclose(scores[:, 0], (q * x[found[:, 0]]).sum(1), atol=0.02)


def test_errors(tmp_path, built):
    folder, _ = built
    with pytest.raises(IndexFileError):
        OnDiskIndex.create(folder, DIM, CFG)
    with pytest.raises(IndexFileError):
        OnDiskIndex.load(tmp_path / "nothing")
    with pytest.raises(ValueError, match="store_dtype"):
        LargeIndexConfig(factory="IVF8,PQ8", store_dtype="float64")
    with pytest.raises(ValueError, match="shape"):
        OnDiskIndex.load(folder).search(np.zeros((1, DIM + 1), np.float32), 3)


def test_choose_large_fits_budget_and_builds():
    cfg = choose_large(10_000_000, 512, 1024**3)
    assert choose_large(10_000_000, 512, 1024**3, opq=True).factory == "OPQ64," + cfg.factory
    assert cfg.factory.startswith("IVF4096,") and ",PQ64" in cfg.factory  # exact coarse assignment
    assert "_HNSW32" in choose_large(2**33, 512, 2**40).factory  # a graph only past 65,536 lists
    small = choose_large(10_000_000, 512, 200 * 1024**2)
    assert int(small.factory.rsplit("PQ", 1)[1]) < 64  # a tighter budget buys a shorter code
    for n, dim, budget in [(5_000, 64, 10**8), (10**9, 768, 16 * 1024**3), (10**6, 384, 10**8)]:
        c = choose_large(n, dim, budget)
        faiss.index_factory(dim, c.factory)  # every choice is a valid FAISS factory
        assert c.quantizer_ef >= c.nprobe and c.train_size <= n
    with pytest.raises(ValueError):
        choose_large(0, 512, 10**9)


def test_rowfile_reads_rows(tmp_path):
    a = np.arange(60, dtype=np.float16).reshape(20, 3)
    np.save(tmp_path / "a.npy", a)
    rf = RowFile(tmp_path / "a.npy")
    rows = np.array([0, 1, 2, 7, 19])
    assert np.array_equal(rf[rows], a[rows]) and len(rf) == 20
    ids = np.arange(5, dtype=np.int64) * 11
    np.save(tmp_path / "i.npy", ids)
    assert RowFile(tmp_path / "i.npy")[np.array([1, 4])].tolist() == [11, 44]


def test_excluded_rows_are_skipped_and_k_is_still_filled(built, data):
    folder, ids = built
    x, q = data
    index = OnDiskIndex.load(folder)
    assert index.row_ids().tolist() == ids.tolist()
    _, before = index.search(q, 10)
    dead = np.unique((before[:, :5] - 3) // 7)  # rows of the top hits
    index.exclude(dead)
    assert index.excluded.tolist() == dead.tolist()
    scores, after = index.search(q, 10, nprobe=CFG.nprobe)
    assert (after >= 0).all() and not np.isin(after, ids[dead]).any()
    live = np.setdiff1d(np.arange(N), dead)
    truth = ids[live][_brute(x[live], q, 10)]
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(after, truth)]) >= 0.9
    index.exclude(np.zeros(0, np.int64))
    assert index.search(q, 10)[1].tolist() == before.tolist()
    with pytest.raises(ValueError, match="Rows to exclude"):
        index.exclude(np.array([N]))


def test_opq_search_params_and_moved_folder(tmp_path, data, capfd):
    """Per-call nprobe and exclusion reach the IVF under an OPQ rotation; a moved folder still
    loads, and FAISS's own messages never reach stdout."""
    x, q = data
    cfg = LargeIndexConfig(factory="OPQ8,IVF16,PQ8", nprobe=16, rescore_k=100, train_size=4000)
    index = OnDiskIndex.create(tmp_path / "a", DIM, cfg)
    index.train(x[:4000])
    index.add_shard(x[:4000], np.arange(4000))
    index.merge()
    index.exclude(np.arange(0, 4000, 2))
    _, found = index.search(q, 10)
    assert (found % 2 == 1).all()
    capfd.readouterr()
    (tmp_path / "a").rename(tmp_path / "b")
    moved = OnDiskIndex.load(tmp_path / "b")
    assert (
        moved.search(q, 10)[1].tolist()
        == OnDiskIndex.load(tmp_path / "b", mmap=False).search(q, 10)[1].tolist()
    )
    out = capfd.readouterr()
    assert out.out == "" and "IO_FLAG_ONDISK_SAME_DIR" in out.err
