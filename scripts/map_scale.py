"""How fast the map opens at 100k items once it is cached: a synthetic collection, timed in chromium.

    python scripts/map_scale.py [--n 100000] [--dir /tmp/map-scale]

Writes N synthetic unit vectors (mmrag/bench/scale.py's mixture, 384-d, half text, half code, in 50
folders) straight into a collection, computes its map (openTSNE) and clusters once, then opens
/map/view of a local server and the `mmrag map --out` file in headless chromium and prints, per
visit, the milliseconds from navigation to the drawn map, and what drew it (scattergl or SVG).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace


def build(path: Path, n: int) -> None:
    from mmrag.bench.scale import Mixture, MixtureSpec
    from mmrag.items import Item
    from mmrag.storage.collection import Collection

    if (path / "manifest.json").exists():
        return
    dim = 384
    mix = Mixture(MixtureSpec(dim=dim, components=300, rank=32, families=8))
    coll = Collection.open(path, write=True, create=True)
    coll.bind_models({"name": "synthetic"}, {"text": dim, "code": dim, "joint": dim}, {})
    coll.manifest.factory_overrides["*"] = "IVF1024,Flat"  # quick to build; the map reads the store
    t0 = time.perf_counter()
    for start, vecs in mix.chunks(1, n, 10_000):
        items = []
        for i in range(start, start + len(vecs)):
            modality = "code" if i % 2 else "text"
            items.append(
                Item(
                    key=f"item{i}",
                    modality=modality,
                    source=f"/data/folder{i % 50}/file{i}.txt",
                    text=f"synthetic {modality} item {i} of folder {i % 50}",
                    title=f"item {i}",
                )
            )
        with coll.store.transaction() as con:
            ids = coll.store.insert_items(con, items)
            for modality, rows in (("text", slice(0, None, 2)), ("code", slice(1, None, 2))):
                coll.store.insert_vectors(con, modality, ids[rows], vecs[rows])
            coll.store.insert_vectors(con, "joint", ids, vecs)
    coll.save()
    coll.close()
    print(f"built {n} items in {time.perf_counter() - t0:.0f} s", flush=True)


def serve(path: Path):
    import uvicorn
    from fastapi import FastAPI

    from mmrag.http.explore_jobs import ExploreRunner
    from mmrag.http.routes_explore import router

    app = FastAPI()
    # the explore routes read only the collection path, and run their jobs on the service's runner
    app.state.service = SimpleNamespace(path=path, explore=ExploreRunner())
    app.include_router(router)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=7961, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.1)
    return "http://127.0.0.1:7961", server


def visit(browser, url: str) -> dict:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url, wait_until="commit")
    page.wait_for_selector("#map[data-ready='1']", state="attached", timeout=600_000)
    out = page.evaluate(
        "({ms: window.mapDrawnMs, script: window.mapScriptMs, data: window.mapDataMs, type: gd.dataset.type,"
        " points: gd.dataset.points})"
    )
    page.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dir", default="/tmp/map-scale")
    args = ap.parse_args()
    path = Path(args.dir) / f"c{args.n}"
    build(path, args.n)

    from mmrag.cli import main as mmrag

    t0 = time.perf_counter()
    assert mmrag(["map", "-c", str(path), "--out", str(path.parent / f"map{args.n}.html")]) == 0
    print(
        f"map + clusters + file: {time.perf_counter() - t0:.0f} s (0 when cached from an earlier run)",
        flush=True,
    )
    url, server = serve(path)
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_browser import CHROMIUM_ARGS, chromium_path

    gl = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]  # software WebGL in headless chromium
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=[*CHROMIUM_ARGS, *gl])
        for name, target in (
            ("served, first visit (server reads the cached map)", url + "/map/view"),
            ("served, again", url + "/map/view"),
            ("served, colour by cluster", url + "/map/view?colour=cluster"),
            ("the --out file", (path.parent / f"map{args.n}.html").as_uri()),
        ):
            r = visit(b, target)
            print(
                f"{name}: drawn {r['ms'] / 1000:.2f} s after navigation (plotly.js ready "
                f"{r['script'] / 1000:.2f} s, points {r['data'] / 1000:.2f} s), {r['points']} points, {r['type']}",
                flush=True,
            )
        b.close()
    server.should_exit = True
    return 0


if __name__ == "__main__":
    sys.exit(main())
