"""Suite-wide set-up: a private mmrag cache (tiny models, ONNX exports) and one torch thread,
so runs are hermetic and kind to shared CPUs. Subprocesses inherit the cache through the env."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _mmrag_cache(tmp_path_factory: pytest.TempPathFactory):
    old = os.environ.get("MMRAG_CACHE")
    os.environ["MMRAG_CACHE"] = str(tmp_path_factory.mktemp("mmrag-cache"))
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    yield
    if old is None:
        os.environ.pop("MMRAG_CACHE", None)
    else:
        os.environ["MMRAG_CACHE"] = old


@pytest.fixture(scope="session")
def fake_hub(tmp_path_factory: pytest.TempPathFactory):
    """HF_HOME holding random weights of the real default and alternative models (tests/fakehub.py).

    Written once per session (about 15 s, 1.6 GB on disk, removed at the end: pytest keeps old
    temp dirs); point HF_HOME at it with `hub_env(...)`.
    """
    import shutil

    from fakehub import build_fake_hub

    home = build_fake_hub(tmp_path_factory.mktemp("fake-hf-home"))
    yield home
    shutil.rmtree(home, ignore_errors=True)
