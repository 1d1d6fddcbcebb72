"""Cold start: from `mmrag search` invoked in a fresh process to the first result line printed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .report import Figure

TARGET_S = 3.0


def first_line_seconds(cmd: list[str], env: dict[str, str]) -> float:
    """Wall seconds until the command prints its first line to stdout (it is then left to finish)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - t0
    proc.communicate()
    if proc.returncode != 0 or not line:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    return elapsed


def run(quick: bool = False, *, repeats: int | None = None) -> list[Figure]:
    from . import work_dir
    from .latency import build_collection

    n = 3_000 if quick else 100_000
    path = build_collection(work_dir() / f"latency-{n}", n)
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cli = [sys.executable, "-m", "mmrag.cli", "search", "a red car", "-c", str(path), "-k", "5"]
    bare = [sys.executable, "-c", "print('ok')"]
    mm, ref = [], []
    for _ in range(repeats or (2 if quick else 5)):
        ref.append(first_line_seconds(bare, env))
        mm.append(first_line_seconds(cli, env))
    value = float(np.median(mm))
    return [
        Figure(
            "cold start: `mmrag search` to first result",
            value,
            "s",
            float(np.median(ref)),
            None,
            TARGET_S,
            higher_is_better=False,
            note=f"tiny models, {n:,}-item collection; reference: a bare `python -c print()` start",
        )
    ]
