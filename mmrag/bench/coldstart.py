"""Cold start: from `mmrag search` invoked in a fresh process to the first result line printed.

Measured as a user meets it after `mmrag index`: the collection's light query files exist (they
are written at the end of indexing), so the search embeds its text with ONNX Runtime and never
imports torch. Side by side, the same search with the light files hidden (an empty ONNX cache), so
every encoder loads through torch, open_clip and transformers: what cold start costs without them.

`python -m mmrag.bench.coldstart -c COLLECTION` measures any collection (e.g. one indexed with real
models) the same way.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .report import Figure

TARGET_S = 3.0
QUERY = "a red car"


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


def prepare(path: Path) -> dict[str, str]:
    """Write the collection's light query files where missing (as `mmrag index` does); role -> state."""
    from mmrag.api import Engine

    with Engine.open(path) as eng:
        cards = eng.models.export_queries()
    return {role: "light" if card is not None else "full" for role, card in cards.items()}


def measure(path: Path, repeats: int, label: str) -> list[Figure]:
    """Median first-line seconds of `mmrag search` with light query files, and with them hidden."""
    states = prepare(path)
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cli = [sys.executable, "-m", "mmrag.cli", "search", QUERY, "-c", str(path), "-k", "5"]
    bare = [sys.executable, "-c", "print('ok')"]
    light, full, ref = [], [], []
    with tempfile.TemporaryDirectory(prefix="mmrag-no-onnx-") as empty:
        no_light = {**env, "MMRAG_ONNX_CACHE": empty}  # no light files: every encoder loads in full
        for _ in range(repeats):
            ref.append(first_line_seconds(bare, env))
            light.append(first_line_seconds(cli, env))
            full.append(first_line_seconds(cli, no_light))
    value, slow = float(np.median(light)), float(np.median(full))
    roles = ", ".join(f"{r} {s}" for r, s in states.items())
    return [
        Figure(
            "cold start: `mmrag search` to first result",
            value,
            "s",
            float(np.median(ref)),
            None,
            TARGET_S,
            higher_is_better=False,
            note=f"{label}; query encoders: {roles}; reference: a bare `python -c print()` start",
        ),
        Figure(
            "cold start with full encoders (torch), for comparison",
            slow,
            "s",
            note=f"same search, light query files hidden; {slow / value:.1f}x the light start",
        ),
    ]


def run(quick: bool = False, *, repeats: int | None = None) -> list[Figure]:
    from . import work_dir
    from .latency import build_collection

    n = 3_000 if quick else 100_000
    path = build_collection(work_dir() / f"latency-{n}", n)
    return measure(path, repeats or (2 if quick else 5), f"tiny models, {n:,}-item collection")


def main(argv: list[str] | None = None) -> int:
    from .report import format_table

    parser = argparse.ArgumentParser(description="Cold start of `mmrag search` on any collection.")
    parser.add_argument("-c", "--collection", required=True, help="collection folder")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    path = Path(args.collection)
    print(format_table(measure(path, args.repeats, f"collection {path.name}")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
