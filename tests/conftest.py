"""Suite-wide set-up: a private mmrag cache (tiny models, ONNX exports) and one torch thread,
so runs are hermetic and kind to shared CPUs. Subprocesses inherit the cache through the env.

Under pytest-xdist (`make test` runs one worker per core) the workers of one run share the
expensive things: the mmrag cache (its writers build into a temporary folder and rename, so
concurrent builders are safe) and the fake Hugging Face cache, written once under a lock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", ... under pytest-xdist


def shared_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder for this whole run: one per process, or one that all xdist workers share."""
    if XDIST_WORKER is None:
        return tmp_path_factory.mktemp(name)
    path = tmp_path_factory.getbasetemp().parent / name  # the run's folder, above each worker's own
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session", autouse=True)
def _mmrag_cache(tmp_path_factory: pytest.TempPathFactory):
    old = os.environ.get("MMRAG_CACHE")
    os.environ["MMRAG_CACHE"] = str(shared_dir(tmp_path_factory, "mmrag-cache"))
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

    Written once per run (about 15 s, 1.6 GB on disk; removed at the end of a one-process run, as
    pytest keeps old temp dirs; xdist workers share it and pytest's rotation of old runs removes it);
    point HF_HOME at it with `hub_env(...)`.
    """
    import shutil

    from fakehub import build_fake_hub
    from filelock import FileLock

    root = shared_dir(tmp_path_factory, "fake-hf-home")
    with FileLock(str(root) + ".lock"):
        if not (root / ".complete").exists():
            build_fake_hub(root)
            (root / ".complete").touch()
    yield root
    if XDIST_WORKER is None:
        shutil.rmtree(root, ignore_errors=True)
