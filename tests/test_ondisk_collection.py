"""Collections whose spaces are served from the memory-mapped on-disk IVF-PQ index.

Forced (`--factory ondisk`) or chosen by the RAM budget, such a space must search like the
in-RAM one (same top results when every list is probed and every candidate rescored), survive
a reopen from mmap, stay consistent with the store through adds, removals and rebuilds, and
leave a collection that opens after a build killed midway. Synthetic vectors written straight
into the store give exact comparisons; the tiny models drive the CLI end to end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap

import faiss
import numpy as np
import pytest

from indexes.layered import LayeredIndex
from indexes.ondisk import RowFile
from mmrag.api import Engine
from mmrag.bench.scale import Mixture, MixtureSpec
from mmrag.cli import main
from mmrag.errors import ConfigError
from mmrag.items import Item
from mmrag.storage import ondisk_space
from mmrag.storage.collection import Collection
from mmrag.storage.placement import ENV_VAR, parse_bytes

DIM = 64
N = 3000
PARTS, PER_PART = 6, 60  # JSONL corpus for the CLI tests: one source per part; 360 trains a base


# ---- synthetic collections: vectors written straight into the store ---------------------------


def _mixture(seed: int, n: int) -> np.ndarray:
    return Mixture(MixtureSpec(dim=DIM, components=150, rank=16, families=4)).chunk(seed, 0, n)


def _add(coll: Collection, start: int, vecs: np.ndarray, source: str = "synthetic") -> list[int]:
    items = [
        Item(key=f"v{start + i}", modality="text", source=source, text=f"v{start + i}")
        for i in range(len(vecs))
    ]
    with coll.store.transaction() as con:
        ids = coll.store.insert_items(con, items)
        coll.store.insert_vectors(con, "text", ids, vecs)
    return ids


def _new_synthetic(path, *, factory: str | None = "ondisk") -> Collection:
    coll = Collection.open(path, write=True, create=True)
    coll.bind_models({"name": "synthetic"}, {"text": DIM}, {})
    if factory:
        coll.manifest.factory_overrides["*"] = factory
    _add(coll, 0, _mixture(1, N))
    coll.save()
    return coll


def _exact(index: LayeredIndex) -> LayeredIndex:
    """Probe every list and rescore every candidate: the on-disk search is then exact up to fp16."""
    nlist = int(re.search(r"IVF(\d+)", index.factory).group(1)) if index.base is not None else 1
    index.set_params({"nprobe": nlist, "rescore_k": max(index.base_rows, 1)})
    return index


def _brute(coll: Collection, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    ids, vecs = coll.store.vectors("text")
    s = q @ vecs.T
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, top, axis=1), ids[top]


def _assert_same_top(coll: Collection, index, q: np.ndarray, k: int = 10) -> None:
    s_ref, i_ref = _brute(coll, q, k)
    s, i = index.search(q, k)
    np.testing.assert_allclose(s, s_ref, atol=2e-3)  # the rescoring store is fp16
    assert (i == i_ref).mean() >= 0.99, (i == i_ref).mean()


@pytest.fixture(scope="module", autouse=True)
def _one_faiss_thread():
    """OpenMP threads spinning on shared, busy cores made k-means and IVF scans 10x slower here."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return _mixture(2, 40)


@pytest.fixture(scope="module")
def _synthetic_built(tmp_path_factory):
    path = tmp_path_factory.mktemp("synthetic") / "c"
    _new_synthetic(path).close()
    return path


@pytest.fixture()
def synthetic(_synthetic_built, tmp_path):
    """A fresh copy of the forced on-disk synthetic collection (copying is faster than building)."""
    path = tmp_path / "syn"
    shutil.copytree(_synthetic_built, path)
    coll = Collection.open(path, write=True)
    yield coll
    coll.close()


def test_synthetic_ondisk_equals_brute_force_and_reopens_from_mmap(synthetic, queries):
    rec = synthetic.manifest.indexes["text"]
    assert (
        rec["kind"] == "ondisk" and rec["base"] == rec["count"] == N and rec["delta"] == rec["removed"] == 0
    )
    assert re.fullmatch(r"IVF\d+,PQ\d+", rec["factory"]) and set(rec["params"]) == {"nprobe", "rescore_k"}
    _assert_same_top(synthetic, _exact(synthetic.vector_index("text")), queries)
    with Collection.open(synthetic.path) as reader:
        index = reader.vector_index("text")
        assert isinstance(index, LayeredIndex) and isinstance(index.base._stores[0], RowFile)
        invlists = faiss.extract_index_ivf(index.base._index).invlists
        assert isinstance(faiss.downcast_InvertedLists(invlists), faiss.OnDiskInvertedLists)
        _assert_same_top(reader, _exact(index), queries)
    with Collection.open(synthetic.path) as reader:  # the recorded nprobe / rescore_k: approximate
        assert reader.vector_index("text").params == rec["params"]
        _, found = reader.vector_index("text").search(queries, 10)
    _, truth = _brute(synthetic, queries, 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]) >= 0.8


def test_adds_and_removals_go_through_delta_and_tombstones(synthetic, queries):
    folder = synthetic.manifest.indexes["text"]["folder"]
    new_ids = _add(synthetic, N, _mixture(3, 200))
    near = _mixture(1, N)[:5] + 0.05 * np.random.default_rng(0).standard_normal((5, DIM)).astype(np.float32)
    near /= np.linalg.norm(near, axis=1, keepdims=True)  # close to base vectors (cos ~0.999), not equal
    near_ids = _add(synthetic, N + 200, near)
    gone = synthetic.store.vector_ids("text")[100:400]  # 10% of the base: kept as tombstones
    with synthetic.store.transaction() as con:
        synthetic.store.delete_items(con, gone)
    synthetic.save()
    rec = synthetic.manifest.indexes["text"]
    assert rec["folder"] == folder  # no rebuild: a delta and excluded rows on the same base
    assert (rec["base"], rec["delta"], rec["removed"], rec["count"]) == (N, 205, 300, N + 205 - 300)
    index = _exact(synthetic.vector_index("text"))
    assert index.ids().tolist() == synthetic.store.vector_ids("text").tolist()
    _assert_same_top(synthetic, index, queries)
    s, found = index.search(near, 3)
    assert found[:, 0].tolist() == near_ids and (s[:, 0] > s[:, 1]).all()  # delta and base merged by score
    assert found[:, 1].tolist() == synthetic.store.vector_ids("text")[:5].tolist()  # the base twins
    assert not np.isin(found, gone).any()
    assert set(new_ids) <= set(index.ids().tolist())
    with Collection.open(synthetic.path) as reader:  # the delta and tombstones were saved
        assert reader.store.generation() == reader.manifest.generation
        _assert_same_top(reader, _exact(reader.vector_index("text")), queries)


def test_reader_catches_up_with_store_changes_not_yet_saved(synthetic, queries):
    added = _add(synthetic, N, _mixture(4, 50))
    with synthetic.store.transaction() as con:
        synthetic.store.delete_items(con, synthetic.store.vector_ids("text")[:20])
    with Collection.open(synthetic.path) as reader:  # the manifest is one generation behind
        assert reader.store.generation() != reader.manifest.generation
        index = _exact(reader.vector_index("text"))
        assert index.ids().tolist() == reader.store.vector_ids("text").tolist()
        assert len(index.delta) == 50 and len(index.removed_rows) == 20
        _assert_same_top(reader, index, np.concatenate([queries, _mixture(4, 50)[:10]]))
        assert set(added) <= set(index.ids().tolist())


def test_rebuild_past_the_delta_share_writes_a_new_base(synthetic, queries, monkeypatch):
    old = synthetic.manifest.indexes["text"]["folder"]
    monkeypatch.setattr(ondisk_space, "DELTA_MIN_ROWS", 0)
    monkeypatch.setattr(ondisk_space, "SHARD_ROWS", 700)  # several shards from store batches
    _add(synthetic, N, _mixture(5, 400))  # 13% of the base: past DELTA_MAX_SHARE
    reader = Collection.open(synthetic.path)  # has read the manifest that names the old folder
    synthetic.save()
    rec = synthetic.manifest.indexes["text"]
    assert rec["folder"] != old and rec["base"] == N + 400 and rec["delta"] == 0
    assert not (synthetic.path / "indexes" / old).exists()  # deleted once the new manifest was written
    with reader:  # follows the newer manifest rather than loading every vector into RAM
        index = reader.vector_index("text")
        assert index.folder.name == rec["folder"] and index.base_rows == N + 400 and len(index.delta) == 0
    assert len(list((synthetic.path / "indexes" / rec["folder"] / "shards").glob("*.ids.npy"))) == 5
    _assert_same_top(synthetic, _exact(synthetic.vector_index("text")), queries)


def test_too_few_vectors_stay_in_the_delta_until_a_base_can_be_trained(tmp_path, queries):
    coll = Collection.open(tmp_path / "small", write=True, create=True)
    coll.bind_models({"name": "synthetic"}, {"text": DIM}, {})
    coll.manifest.factory_overrides["text"] = "ondisk"
    _add(coll, 0, _mixture(1, 100))
    coll.save()
    rec = coll.manifest.indexes["text"]
    assert (rec["kind"], rec["base"], rec["delta"], rec["factory"]) == ("ondisk", 0, 100, "Flat")
    _assert_same_top(coll, coll.vector_index("text"), queries)
    _add(coll, 100, _mixture(3, 900))
    coll.save()
    rec = coll.manifest.indexes["text"]
    assert (rec["base"], rec["delta"]) == (1000, 0) and rec["factory"].startswith("IVF")
    _assert_same_top(coll, _exact(coll.vector_index("text")), queries)
    coll.close()


def test_auto_choice_follows_the_ram_budget(tmp_path, queries, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "64K")  # 3000 x 64-d Flat is ~800 KB: over budget
    coll = _new_synthetic(tmp_path / "auto", factory=None)
    assert coll.ram_budget() == 64 * 1024
    rec = coll.manifest.indexes["text"]
    assert rec["kind"] == "ondisk" and coll.manifest.factory_overrides == {}
    coll.close()
    monkeypatch.delenv(ENV_VAR)
    with Collection.open(tmp_path / "auto") as reader:  # a reopen follows the manifest, from mmap
        index = reader.vector_index("text")
        assert isinstance(index, LayeredIndex) and index.base is not None
        _assert_same_top(reader, _exact(index), queries)
    with Collection.open(tmp_path / "auto", write=True) as coll:  # default budget: back in RAM
        coll.save()
        rec = coll.manifest.indexes["text"]
        assert (rec["kind"], rec["factory"]) == ("ram", "Flat")
        assert (coll.path / "indexes" / "text.faiss").exists()
        assert not list((coll.path / "indexes").glob("text.ondisk-*"))
        _assert_same_top(coll, coll.vector_index("text"), queries)


def test_budget_parsing():
    assert parse_bytes("600M") == 600 * 2**20 and parse_bytes("1.5GiB") == int(1.5 * 2**30)
    assert parse_bytes("2g") == 2 * 2**30 and parse_bytes("4096") == 4096 and parse_bytes("8 kb") == 8192
    for bad in ("", "0", "-1G", "lots", "2X"):
        with pytest.raises(ConfigError, match="600M"):
            parse_bytes(bad)


def test_killed_build_leaves_a_collection_that_opens(tmp_path, queries):
    """SIGKILL in the middle of building the on-disk base: the old index still serves, and the
    next save builds the new one and deletes the half-built folder."""
    coll = _new_synthetic(tmp_path / "kill", factory="Flat")  # in RAM first
    coll.manifest.factory_overrides["*"] = "ondisk"
    coll.manifest.write(coll.path / "manifest.json")
    coll.close()
    script = textwrap.dedent(f"""
        import os, signal
        from indexes.ondisk import OnDiskIndex
        from mmrag.storage import ondisk_space
        from mmrag.storage.collection import Collection
        ondisk_space.SHARD_ROWS = 500
        added = OnDiskIndex.add_shard
        def add_then_die(self, *a, **kw):
            name = added(self, *a, **kw)
            if len(self.shard_names()) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return name
        OnDiskIndex.add_shard = add_then_die
        Collection.open({str(tmp_path / "kill")!r}, write=True).save()
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, env=os.environ.copy())
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    half = list((tmp_path / "kill" / "indexes").glob("text.ondisk-*"))
    assert len(half) == 1 and not (half[0] / "merged.faiss").exists()
    with Collection.open(tmp_path / "kill") as reader:  # the manifest still names the in-RAM index
        assert reader.manifest.indexes["text"]["kind"] == "ram"
        _assert_same_top(reader, reader.vector_index("text"), queries)
    with Collection.open(tmp_path / "kill", write=True) as coll:
        coll.save()
        rec = coll.manifest.indexes["text"]
        assert rec["kind"] == "ondisk" and rec["base"] == N
        assert [p.name for p in (coll.path / "indexes").glob("text.ondisk-*")] == [rec["folder"]]
        assert not (coll.path / "indexes" / "text.faiss").exists()
        _assert_same_top(coll, _exact(coll.vector_index("text")), queries)


# ---- the CLI with the tiny models ------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(400)]
    paths = []
    for p in range(PARTS):
        path = root / f"part{p}.jsonl"
        lines = [
            json.dumps({"_id": f"p{p}d{j}", "text": " ".join(rng.choice(words, 12))}) for j in range(PER_PART)
        ]
        path.write_text("\n".join(lines) + "\n")
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def cli_colls(tmp_path_factory, corpus):
    root = tmp_path_factory.mktemp("colls")
    ram, disk = str(root / "ram"), str(root / "disk")
    assert main(["index", *corpus, "-c", ram, "--models", "tiny", "-q"]) == 0
    assert main(["index", *corpus, "-c", disk, "--models", "tiny", "-q", "--factory", "ondisk"]) == 0
    return ram, disk


def test_cli_forced_ondisk_searches_like_in_ram_flat(cli_colls, capfd):
    ram, disk = cli_colls
    with Collection.open(ram) as a, Collection.open(disk) as b:
        assert b.manifest.factory_overrides == {"*": "ondisk"}
        for space in ("text", "joint"):
            assert a.manifest.indexes[space]["kind"] == "ram" and a.vector_index(space).factory == "Flat"
            rec = b.manifest.indexes[space]
            assert rec["kind"] == "ondisk" and rec["base"] == PARTS * PER_PART
            ids, vecs = a.store.vectors(space)
            ids_b, vecs_b = b.store.vectors(space)
            assert np.array_equal(ids, ids_b) and np.allclose(vecs, vecs_b, atol=1e-5)  # a fair comparison
            q = vecs[::15] + 0.05 * np.random.default_rng(1).standard_normal(vecs[::15].shape).astype(
                np.float32
            )
            q /= np.linalg.norm(q, axis=1, keepdims=True)
            s_ram, i_ram = a.vector_index(space).search(q, 10)
            s_disk, i_disk = _exact(b.vector_index(space)).search(q, 10)
            np.testing.assert_allclose(s_disk, s_ram, atol=2e-3)
            by_id = dict(zip(ids.tolist(), vecs))
            exact = np.array([[by_id[i] @ qq for i in row] for row, qq in zip(i_disk, q)])
            np.testing.assert_allclose(
                exact, s_ram, atol=2e-3
            )  # each returned id truly has that rank's score
            if space == "joint":  # tiny text vectors sit at cos ~0.99 (ties within fp16); joint ones spread
                assert (i_disk == i_ram).mean() >= 0.95
    routes = {r: 0 for r in ("text", "lexical", "caption", "code", "image")}
    with Engine.open(ram) as a, Engine.open(disk) as b:
        _exact(b.collection.vector_index("joint"))
        agree = []
        for j in range(0, PER_PART, 10):
            text = b.collection.store.item_by_key(f"p1d{j}")["text"]
            # raw scores on both: on-disk spaces carry no hubness prior (mmrag/storage/collection.py)
            ha = a.search(text, k=5, weights={**routes, "joint": 1.0}, hubness=0).hits
            hb = b.search(text, k=5, weights={**routes, "joint": 1.0}, hubness=0).hits
            assert hb[0].routes["joint"] == pytest.approx(ha[0].routes["joint"], abs=2e-3)  # the cosine
            agree.append([h.key for h in ha] == [h.key for h in hb])
        assert np.mean(agree) >= 0.8
        assert b.similar(hb[0].id, k=3).hits
    capfd.readouterr()
    assert main(["search", "w1 w2 w3", "-c", disk, "--json", "-k", "4"]) == 0
    out = capfd.readouterr().out
    assert len(json.loads(out)) == 4  # FAISS's own messages never reach stdout


def test_cli_add_and_remove_keep_the_ondisk_collection_consistent(cli_colls, corpus, tmp_path):
    _, disk = cli_colls
    coll = str(tmp_path / "c")
    shutil.copytree(disk, coll)
    extra = tmp_path / "extra.jsonl"
    extra.write_text(
        "".join(json.dumps({"_id": f"x{j}", "text": f"extra w{j} w{j + 1}"}) + "\n" for j in range(30))
    )
    assert main(["index", *corpus, str(extra), "-c", coll, "-q"]) == 0
    assert main(["remove", corpus[0], "-c", coll]) == 0
    with Collection.open(coll) as c:
        for space in ("text", "joint"):
            rec = c.manifest.indexes[space]
            total = PARTS * PER_PART  # one part removed: 1/6 of the base, below REMOVED_MAX_SHARE
            assert (rec["kind"], rec["base"], rec["delta"], rec["removed"]) == ("ondisk", total, 30, PER_PART)
            index = _exact(c.vector_index(space))
            live = c.store.vector_ids(space)
            assert index.ids().tolist() == live.tolist() and len(live) == total + 30 - PER_PART
            ids, vecs = c.store.vectors(space)
            _, found = index.search(vecs, 1)
            scores_self = (vecs * vecs).sum(1)
            s, _ = index.search(vecs, 1)
            np.testing.assert_allclose(s[:, 0], scores_self, atol=2e-3)  # every live vector finds its score
            assert np.isin(found, live).all()
            if space == "joint":
                assert (found[:, 0] == ids).mean() >= 0.95
        assert c.store.item_by_key("p0d0") is None and c.store.item_by_key("x3") is not None


def test_cli_ram_budget_flag_is_recorded_and_moves_spaces(cli_colls, corpus, tmp_path, monkeypatch):
    ram, _ = cli_colls
    coll = str(tmp_path / "c")
    shutil.copytree(ram, coll)
    monkeypatch.setenv(ENV_VAR, "1G")  # the flag wins over the environment
    assert main(["index", *corpus, "-c", coll, "-q", "--ram-budget", "50K"]) == 0  # nothing re-embedded
    with Collection.open(coll) as c:
        assert c.manifest.ram_budget == 50 * 1024  # a Flat of 360 x 64-d is ~93 KB: over it
        assert {s: c.manifest.indexes[s]["kind"] for s in ("text", "joint", "image")} == {
            "text": "ondisk",
            "joint": "ondisk",
            "image": "ram",  # no vectors: nothing to put on disk
        }
        assert isinstance(c.vector_index("text"), LayeredIndex)
    assert main(["index", *corpus, "-c", coll, "-q", "--factory", "text=Flat"]) == 0
    with Collection.open(coll) as c:  # no flag: $MMRAG_RAM_BUDGET (1G) outranks the recorded 50K
        assert c.manifest.factory_overrides == {"text": "Flat"}
        assert c.manifest.indexes["text"]["kind"] == "ram"
    assert (
        main(["index", *corpus, "-c", coll, "-q", "--factory", "text=auto", "--factory", "joint=ondisk"]) == 0
    )
    with Collection.open(coll) as c:
        assert c.manifest.factory_overrides == {"joint": "ondisk"}
        assert c.manifest.indexes["joint"]["kind"] == "ondisk" and c.manifest.indexes["text"]["kind"] == "ram"
    assert main(["index", *corpus, "-c", coll, "-q", "--factory", "nospace=Flat"]) == 1
    assert main(["index", *corpus, "-c", coll, "-q", "--ram-budget", "lots"]) == 1


def test_bench_scale_alias(tmp_path, capsys):
    args = [
        "--n",
        "2000",
        "--dim",
        "64",
        "--queries",
        "10",
        "--chunk",
        "1000",
        "--out",
        str(tmp_path),
        "--json",
    ]
    assert main(["bench", "scale", *args]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 2000 and report["dim"] == 64
    assert report["search"][0]["settings"][0]["recall_at_k"] > 0.5
    with pytest.raises(SystemExit):
        main(["bench", "scale", "--bogus"])
