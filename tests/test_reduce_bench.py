"""`mmrag bench reduce` on a small collection: its figures against ones computed here by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmrag.bench.reduce import Data, measure, recommend
from mmrag.bench.scale import Mixture, MixtureSpec
from mmrag.cli import main
from mmrag.items import Item
from mmrag.storage.collection import Collection

DIM, N = 64, 1600


def synthetic_collection(path, dim: int, n: int) -> str:
    """A collection of n embedding-like vectors in its text space (no encoder ever runs on it)."""
    x = Mixture(MixtureSpec(dim=dim, components=100, rank=16, families=4)).chunk(1, 0, n)
    with Collection.open(path, write=True, create=True) as c:
        c.bind_models({"name": "synthetic", "text": "text:some/model"}, {"text": dim}, {})
        items = [Item(key=f"v{i}", modality="text", source="s", text=f"v{i}") for i in range(n)]
        with c.store.transaction() as con:
            ids = c.store.insert_items(con, items)
            c.store.insert_vectors(con, "text", ids, x)
        c.save()
    return str(path)


@pytest.fixture(scope="module")
def coll(tmp_path_factory) -> str:
    return synthetic_collection(tmp_path_factory.mktemp("bench") / "c", DIM, N)


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(r[:10]) & set(s[:10])) / 10 for r, s in zip(a, b)]))


def test_cli_table_plot_and_recommendation(coll, tmp_path, capsys):
    png = tmp_path / "r.png"
    argv = ["bench", "reduce", "-c", coll, "--dims", "32,16", "--reductions", "pca,mrl,rp"]
    argv += ["--codes", "fp32,sq8,binary", "--plot", str(png), "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {(r["reduction"], r["dim"], r["code"]): r for r in out["rows"]}
    ref = rows[("none", DIM, "fp32")]
    assert ref["retention"] == 1.0 and ref["overlap10"] == 1.0 and ref["trust"] == pytest.approx(1.0)
    assert ref["bytes_per_vector"] == 4 * DIM and rows[("pca", 16, "sq8")]["bytes_per_vector"] == 16
    assert rows[("pca", 16, "binary")]["bytes_per_vector"] == 2
    assert not any(r[0] == "mrl" for r in rows)  # the model is not Matryoshka: truncation is refused
    assert rows[("pca", 32, "fp32")]["overlap10"] > rows[("rp", 32, "fp32")]["overlap10"]
    ok = [r for r in out["rows"] if r["retention"] >= 0.99 and r["code"] != "binary"]
    best = min(ok, key=lambda r: (r["bytes_per_vector"], -r["retention"]))
    head = "none" if best["reduction"] == "none" else f"{best['reduction']}:{best['dim']}"
    assert out["recommended"] == f"{head},{best['code']}"
    assert png.stat().st_size > 1000


def test_pca_overlap_matches_sklearn(coll):
    from sklearn.decomposition import PCA

    with Collection.open(coll) as c:
        _, x = c.store.vectors("text")
    q, db = x[:200], x[200:]
    data = Data("text", db, [str(i) for i in range(len(db))], q, None, False)
    rows = measure(data, [16], ("pca",), ("fp32",))
    exact = np.argsort(-(q @ db.T), axis=1, kind="stable")[:, :10]
    pca = PCA(16, svd_solver="full").fit(db)
    y, yq = pca.transform(db), pca.transform(q)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    yq /= np.linalg.norm(yq, axis=1, keepdims=True)
    by_hand = _overlap(np.argsort(-(yq @ y.T), axis=1, kind="stable")[:, :10], exact)
    row = next(r for r in rows if r.reduction == "pca")
    assert row.overlap10 == pytest.approx(by_hand, abs=0.01)
    assert recommend(rows, 0.0).bytes_per_vector == 64  # the 16-d fp32 row is the smallest


def test_without_umap_learn_the_default_run_skips_umap_and_says_so(coll, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "umap", None)  # as on an install without the umap extra
    argv = ["bench", "reduce", "-c", coll, "--dims", "16", "--codes", "fp32"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["skipped"] == {"umap": "needs umap-learn: pip install 'mmrag[umap]'"}
    assert {r["reduction"] for r in out["rows"]} == {"none", "pca", "rp"}  # mrl refused: not Matryoshka
    assert main(argv) == 0
    assert "umap: skipped, needs umap-learn: pip install 'mmrag[umap]'" in capsys.readouterr().err
    # asked for by name, it is an error, in one line
    assert main([*argv, "--reductions", "pca,umap"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "mmrag: error: --reductions umap needs umap-learn: pip install 'mmrag[umap]'"


def test_an_index_library_error_is_one_line_not_a_traceback(coll, monkeypatch, capsys):
    import mmrag.bench.reduce as bench
    from indexes.errors import IndexFileError

    def damaged(*args, **kwargs):
        raise IndexFileError("index file text.faiss is damaged: run mmrag index again")

    monkeypatch.setattr(bench, "measure", damaged)  # an index error surfacing under any command
    assert main(["bench", "reduce", "-c", coll, "--dims", "16", "--reductions", "pca"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "mmrag: error: index file text.faiss is damaged: run mmrag index again"
    assert "Traceback" not in err
