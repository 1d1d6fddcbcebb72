"""`mmrag bench scale --real`: the code chosen for N synthetic vectors, measured on a collection's own
vectors, against FAISS's own IVF-PQ with exact rescoring done here by hand."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest
from test_reduce_bench import synthetic_collection

from indexes.ondisk import LargeIndexConfig
from mmrag.bench.scale_real import matched_config
from mmrag.cli import main
from mmrag.errors import ConfigError
from mmrag.storage.collection import Collection

DIM, N = 64, 3000


@pytest.fixture(scope="module")
def coll(tmp_path_factory) -> str:
    return synthetic_collection(tmp_path_factory.mktemp("real") / "c", DIM, N)


def test_real_rows_against_faiss_by_hand(coll, capsys):
    argv = ["bench", "scale", "--n", "50000000", "--ram-gb", "4", "--store", "int8", "--real", coll, "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["chosen"]["factory"] == "IVF8192,PQ32" and out["chosen"]["store_dtype"] == "int8"
    assert out["matched"]["factory"] == "IVF64,PQ4"  # 16 dims a byte, as PQ32 at 512-d
    rows = out["rows"]
    assert rows[0]["setting"] == "exact fp32" and rows[0]["retention"] == 1.0
    by = {r["setting"]: r for r in rows[1:]}
    assert len(by) == 4  # int8 and float16 stores, each at nprobe 8 and with all 64 lists
    full16 = by["IVF64,PQ4 + float16 rescore 200, nprobe 64/64"]
    assert full16["bytes_in_ram"] == 4 + 8 and full16["bytes_on_disk"] == 4 + 8 + 2 * DIM
    assert by["IVF64,PQ4 + int8 rescore 200, nprobe 64/64"]["bytes_on_disk"] == 4 + 8 + DIM + 4

    # by hand: FAISS's IVF-PQ over the same vectors, every list probed, top 200 rescored exactly
    with Collection.open(coll) as c:
        _, x = c.store.vectors("text")
    held = np.zeros(len(x), bool)
    held[np.random.default_rng(1).choice(len(x), 500, replace=False)] = True  # load_data's held-out queries
    db, q = x[~held], x[held]
    index = faiss.index_factory(DIM, "IVF64,PQ4")
    index.train(db)
    index.add(db)
    index.nprobe = 64
    _, cand = index.search(q, 200)
    exact = np.argsort(-(q @ db.T), axis=1, kind="stable")[:, :10]
    top = [c[np.argsort(-(db[c] @ qi), kind="stable")[:10]] for c, qi in zip(cand, q)]
    by_hand = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, exact)]))
    assert full16["overlap10"] == pytest.approx(by_hand, abs=0.02)
    assert full16["retention"] == full16["overlap10"]  # no qrels: retention is the overlap


def test_a_code_that_cannot_fit_the_real_dimension_is_refused():
    chosen = LargeIndexConfig(factory="IVF8192_HNSW32,PQ32", store_dtype="int8")
    with pytest.raises(ConfigError, match="40-d space"):
        matched_config(chosen, 512, 5000, 40)
    assert matched_config(chosen, 512, 5000, 384).factory == "IVF64,PQ24"


def test_a_space_too_small_to_train_the_code_is_refused(tmp_path, capsys, monkeypatch):
    small = synthetic_collection(tmp_path / "small", DIM, 200)
    assert main(["bench", "scale", "--n", "50000000", "--ram-gb", "4", "--real", small]) == 1
    err = capsys.readouterr().err  # without queries, 500 vectors are held out first
    assert err.startswith("mmrag: error: Space 'text' has 200 vectors") and "Traceback" not in err

    import mmrag.bench.scale_real as real
    from mmrag.bench.reduce import Data

    x = np.random.default_rng(0).standard_normal((200, DIM)).astype(np.float32)
    monkeypatch.setattr(
        real, "load_data", lambda *a, **k: Data("text", x, [str(i) for i in range(200)], x[:5], None, False)
    )
    assert main(["bench", "scale", "--n", "50000000", "--ram-gb", "4", "--real", small]) == 1
    err = capsys.readouterr().err  # with queries given, the space itself is too small for PQ's codebooks
    assert err.startswith("mmrag: error: space 'text' holds 200 vectors; IVF16,PQ4 trains on at least 256")
