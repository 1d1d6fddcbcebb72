"""`mmrag demo` as a user starts it, with CLIP weights in the Hugging Face cache: image search is on.

The cache holds only the fake hub's laion ViT-B-32 (tests/fakehub.py), so the demo falls back from
`default` (no UniXcoder here) to `offline`, which picks up the cached CLIP. The demo runs as a
subprocess with HF_HUB_OFFLINE=1; chromium uploads a sample image and must get image hits.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fakehub import CLIP_REPOS, hub_env, repo_dir
from test_browser import ARTIFACTS, _open_page, _status, browser, search_by_image  # noqa: F401  (the fixture)
from test_server import free_port

pytestmark = [pytest.mark.browser, pytest.mark.heavy]  # ~65 s: the demo indexes with real-size CLIP
SAMPLE = Path(__file__).resolve().parents[1] / "demo" / "sample"
START_TIMEOUT_S = 600  # a cold start indexes the sample corpus with real-size CLIP on a busy CPU


@pytest.fixture(scope="module")
def clip_only_home(fake_hub, tmp_path_factory) -> Path:
    """An HF_HOME with just the default CLIP: a user who fetched image weights and nothing else."""
    home = tmp_path_factory.mktemp("clip-only-hf-home")
    (home / "hub").mkdir()
    src = repo_dir(fake_hub / "hub", CLIP_REPOS["ViT-B-32/laion2b_s34b_b79k"])
    (home / "hub" / src.name).symlink_to(src)
    return home


@pytest.fixture(scope="module")
def demo_url(clip_only_home):
    port = free_port()
    env = {**os.environ, **hub_env(clip_only_home), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmrag.cli", "demo", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    url = None
    while url is None and time.monotonic() < deadline and proc.poll() is None:
        found = [m for line in list(lines) if (m := re.search(r"serving .* at (http://\S+)", line))]
        url = found[0].group(1) if found else None
        time.sleep(0.5)
    try:
        if url is None:
            pytest.fail("mmrag demo did not start:\n" + "".join(lines[-40:]))
        yield url, lines
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:  # open browser connections can hold a graceful shutdown
            proc.kill()
            proc.wait(timeout=10)


def test_demo_with_cached_clip_searches_images_in_the_browser(browser, demo_url):  # noqa: F811
    url, log = demo_url
    assert not any("Image search is off" in line for line in log), "".join(log)
    page, errors = _open_page(browser)
    page.goto(url, wait_until="load")
    page.wait_for_selector("#mm-search")
    assert page.locator("#mm-image").is_visible()  # the image query box exists only with CLIP
    banner = page.locator("#mm-banner")
    assert not banner.is_visible() or "Image search is off" not in banner.inner_text()
    thumbs = search_by_image(page, SAMPLE / "images" / "red_car.png")
    assert thumbs.count() >= 3, _status(page)
    page.screenshot(path=str(ARTIFACTS / "demo-hub-clip-image-search.png"), full_page=True)
    assert not errors
