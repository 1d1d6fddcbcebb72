"""`--engine ray` on a local Ray (2 CPUs, tiny models): same items, vectors and search results as the
single-process indexer; a re-run skips finished shards; failed tasks are retried."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.heavy  # ~45 s: a Ray cluster starts in the module's fixture
ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'ray[data]'")
pytest.importorskip("ray.data", reason="Ray Data is missing: pip install 'ray[data]'")

from mmrag.api import Engine  # noqa: E402
from mmrag.distributed import RayIndexCfg, run_ray_index  # noqa: E402
from mmrag.distributed import ray_index as ri  # noqa: E402
from mmrag.storage.collection import Collection  # noqa: E402


def make_corpus(root):
    (root / "img").mkdir(parents=True)
    (root / "src").mkdir()
    (root / "docs").mkdir()
    for name, rgb in {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (20, 40, 220)}.items():
        Image.new("RGB", (64, 48), rgb).save(root / "img" / f"{name}.png")
    (root / "img" / "blue.txt").write_text("a plain blue square")
    (root / "img" / "broken.png").write_bytes(b"not a png")
    for i in range(6):
        (root / "src" / f"mod{i}.py").write_text(
            f"def f{i}(x):\n    return x + {i}\n\n\nclass C{i}:\n    def get(self):\n        return {i}\n"
        )
    (root / "docs" / "guide.md").write_text(
        "# Guide\n\nInstall with pip.\n\n## Search\n\nOne query for all.\n"
    )
    (root / "docs" / "notes.txt").write_text("Notes about vectors, shards and retries.\n" * 5)
    return root


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def both(tmp_path_factory, corpus, local_ray):
    base = tmp_path_factory.mktemp("colls")
    with Engine.open(base / "single", write=True, models="tiny") as eng:
        single = eng.index([str(corpus)])
    cfg = RayIndexCfg(sources_per_shard=4, batch_size=8)
    distributed = run_ray_index([str(corpus)], base / "ray", "tiny", cfg=cfg)
    return base / "single", base / "ray", single, distributed


def _by_key(coll, space):
    with Collection.open(coll) as c:
        ids, vecs = c.store.vectors(space)
        keys = {i: c.store.fetch_items([int(i)])[int(i)]["key"] for i in ids}
    return {keys[i]: v for i, v in zip(ids, vecs)}


def test_same_items_and_errors(both):
    single, distributed, r1, r2 = both
    assert r2.items_added == r1.items_added > 10
    with Collection.open(single) as a, Collection.open(distributed) as b:
        assert a.stats()["by_modality"] == b.stats()["by_modality"]
        assert a.store.n_sources() == b.store.n_sources()
        assert sorted(a.store.errors()) == sorted(b.store.errors())
    assert any("broken.png" in p for p, _ in r2.errors)


def test_same_vectors(both):
    single, distributed, _, _ = both
    with Collection.open(single) as c:
        spaces = c.spaces()
    assert {"joint", "image", "code", "text"} <= set(spaces)
    for space in spaces:
        a, b = _by_key(single, space), _by_key(distributed, space)
        assert a.keys() == b.keys(), space
        for k in a:
            np.testing.assert_allclose(a[k], b[k], atol=1e-5, err_msg=f"{space} {k}")


def test_same_search_results(both):
    single, distributed, _, _ = both
    with Engine.open(single) as a, Engine.open(distributed) as b:
        for q in ("return x plus one", "install with pip", "a blue square", "class C3 get"):
            ha, hb = a.search(q, k=8).hits, b.search(q, k=8).hits
            assert [h.key for h in ha] == [h.key for h in hb], q
            np.testing.assert_allclose([h.score for h in ha], [h.score for h in hb], atol=1e-4)


def test_rerun_skips_unchanged_and_picks_up_changes(both, corpus):
    _, distributed, _, _ = both
    again = run_ray_index([str(corpus)], distributed, "tiny", cfg=RayIndexCfg(sources_per_shard=4))
    # the undecodable image is retried on every run, as the single-process indexer does
    assert again.items_added == 0 and again.unchanged_sources == again.sources - 1
    (corpus / "docs" / "extra.md").write_text("# Extra\n\nA new page.\n")
    try:
        more = run_ray_index([str(corpus)], distributed, "tiny", cfg=RayIndexCfg(sources_per_shard=4))
        assert more.items_added >= 1 and more.unchanged_sources == more.sources - 2
        with Engine.open(distributed) as eng:
            assert any(h.source.endswith("extra.md") for h in eng.search("a new page", k=20).hits)
    finally:
        (corpus / "docs" / "extra.md").unlink()


@pytest.mark.slow  # two more Ray jobs: about a minute each on 2 busy cores; run with -m slow
def test_finished_shards_are_not_recomputed(tmp_path, corpus, local_ray, monkeypatch):
    """Shards already on disk (from a run that died while filling the store) are used as they are."""
    coll = tmp_path / "c"
    cfg = RayIndexCfg(sources_per_shard=3)
    calls = []
    real = ri._run_pipeline

    def spy(ray_mod, shards, *args, **kwargs):
        calls.append(sorted(shards))
        return real(ray_mod, shards, *args, **kwargs)

    monkeypatch.setattr(ri, "_run_pipeline", spy)
    fill = ri._fill_from_shard
    monkeypatch.setattr(ri, "_fill_from_shard", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed")))
    with pytest.raises(RuntimeError, match="killed"):
        run_ray_index([str(corpus)], coll, "tiny", cfg=cfg)
    shards = sorted(p.stem for p in (coll / "shards").glob("*.parquet"))
    assert shards == calls[0] and len(shards) >= 3
    monkeypatch.setattr(ri, "_fill_from_shard", fill)
    report = run_ray_index([str(corpus)], coll, "tiny", cfg=cfg)
    assert len(calls) == 1  # nothing left to compute: every shard was reused
    assert report.items_added > 10 and not list((coll / "shards").glob("*.parquet"))


@pytest.mark.slow  # one more Ray job with retries; run with -m slow
def test_failed_task_is_retried(tmp_path, corpus, local_ray):
    """The read step fails once per source (as a lost worker would); retries finish the job."""
    from mmrag.ingest import scan_sources

    flags = tmp_path / "flags"
    flags.mkdir()

    class FlakyRead:
        def __init__(self, folder):
            self.folder = folder

        def __call__(self, row):
            import hashlib
            import pathlib

            flag = pathlib.Path(self.folder) / hashlib.sha1(row["path"].encode()).hexdigest()
            if not flag.exists():
                flag.write_text(row["path"])
                raise RuntimeError(f"injected failure reading {row['path']}")
            return ri._read_rows(row)

    sources = list(scan_sources([str(corpus / "src")]))
    cfg = RayIndexCfg(sources_per_shard=2, max_retries=2)
    shards = ri._plan_shards(sources, {"name": "tiny"}, cfg.sources_per_shard)
    out = tmp_path / "shards"
    out.mkdir()
    ri._run_pipeline(ray, shards, _tiny_set(), {}, out, cfg, read_fn=FlakyRead(str(flags)))
    assert len(list(flags.iterdir())) == len(sources) == 6  # every source failed once
    assert sorted(p.stem for p in out.glob("*.parquet")) == sorted(shards)


def _tiny_set() -> dict:
    from encoders.modelsets import resolve_model_set

    return resolve_model_set("tiny").to_dict()


def test_pack_roundtrip():
    vecs = {"joint": np.arange(4, dtype=np.float32), "code": np.ones(3, np.float32)}
    out = ri._unpack(ri._pack(vecs))
    assert out.keys() == vecs.keys() and all(np.array_equal(out[k], vecs[k]) for k in vecs)
    assert json.loads(json.dumps(RayIndexCfg().__dict__))["concurrency"] == 1


def test_documents_as_local_indexing_reads_them(tmp_path, local_ray):
    """A PDF through Ray: the same items and locators as local indexing, its figures in the
    collection's own pictures folder, and a per-part problem a note that keeps the rest."""
    pytest.importorskip("pypdfium2")
    pytest.importorskip("reportlab")
    from documents_maker import make_pdf

    docs = tmp_path / "docs"
    docs.mkdir()
    make_pdf(docs / "paper.pdf", pages=3, figures={2: "Figure 1: Loss curve."})
    with Engine.open(tmp_path / "single", write=True, models="tiny") as eng:
        single = eng.index([str(docs)])
    distributed = run_ray_index([str(docs)], tmp_path / "ray", "tiny", cfg=RayIndexCfg(sources_per_shard=1))
    assert distributed.items_added == single.items_added > 3
    with Collection.open(tmp_path / "single") as a, Collection.open(tmp_path / "ray") as b:
        assert a.stats()["by_modality"] == b.stats()["by_modality"]
        images = b.store.db.execute("SELECT image FROM items WHERE modality = 'image'").fetchall()
    assert images and all(row[0].startswith(str(tmp_path / "ray" / "pictures")) for row in images)
