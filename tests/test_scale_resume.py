"""`mmrag bench scale` killed mid-build resumes from its last shard and measures what a whole run would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np

from mmrag.bench.scale import DATA, QUERIES, Mixture, MixtureSpec
from mmrag.cli import main

N, CHUNK, DIM, QUERY_N = 6000, 1000, 32, 20
ARGS = ["--n", str(N), "--chunk", str(CHUNK), "--dim", str(DIM), "--queries", str(QUERY_N)]
ARGS += ["--ram-gb", "0.01", "--threads", "1", "--keep"]


def test_killed_build_resumes(tmp_path, capfd):
    out = str(tmp_path / "runs")
    cmd = [sys.executable, "-m", "mmrag.cli", "bench-scale", *ARGS, "--out", out]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stderr:  # kill it once two of its six shards are in
        if "shard 2/6" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -9
    folder = tmp_path / "runs" / f"n{N}"
    done = json.loads((folder / "progress.json").read_text())["gt_shards"]
    assert 2 <= done < 6

    assert main(["bench-scale", *ARGS, "--out", out, "--json"]) == 0
    err = capfd.readouterr().err
    assert f"resuming: {done} shard(s) of 6 already built" in err
    assert "shard 1/6" not in err and "shard 6/6" in err  # only the missing shards were built
    report = json.loads((folder / "report.json").read_text())
    assert report["runs"] == 2
    shards = json.loads((folder / "index" / "config.json").read_text())["shards"]
    assert [s["name"] for s in shards] == [f"{i:05d}" for i in range(6)]
    assert sum(s["rows"] for s in shards) == N

    # the ground truth accumulated over both runs is the exact top 10 over all N vectors
    mix = Mixture(MixtureSpec(dim=DIM))
    x = np.concatenate([mix.chunk(DATA, i, CHUNK) for i in range(N // CHUNK)])
    q = mix.chunk(QUERIES, 0, QUERY_N)
    exact = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :10]
    with np.load(folder / "gt.npz") as z:
        assert (np.sort(z["ids"], axis=1) == np.sort(exact, axis=1)).mean() > 0.99  # ties aside
    best = max(s["recall_at_k"] for s in report["search"][0]["settings"])
    assert best >= 0.9 and all(s["qps"] > 0 for s in report["search"][0]["settings"])


def test_a_run_the_disk_cannot_hold_is_refused_before_building(tmp_path, monkeypatch, capsys):
    import shutil
    from collections import namedtuple

    from indexes.ondisk import choose_large
    from mmrag.bench.scale import disk_needed

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 10**12 - 1000, 1000))
    out = tmp_path / "runs"
    assert main(["bench-scale", *ARGS, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    need, final = disk_needed(N, DIM, choose_large(N, DIM, int(0.01 * 1024**3 * 0.5)), CHUNK)
    assert (
        f"needs about {need / 1e6:.1f} MB on disk while its shards merge ({final / 1e6:.1f} MB after)" in err
    )
    assert "--store int8" in err
    assert not (out / f"n{N}" / "index").exists()  # nothing was built
    assert main(["bench-scale", *ARGS, "--out", str(out), "--store", "int8"]) == 1
    assert "--store int8" not in capsys.readouterr().err  # already the smaller store: no such hint


def test_a_new_sweep_searches_a_kept_build_again_without_rebuilding(tmp_path, capfd):
    out = str(tmp_path / "runs")
    assert main(["bench-scale", *ARGS, "--out", out, "--json"]) == 0
    assert "shard 6/6" in capfd.readouterr().err
    folder = tmp_path / "runs" / f"n{N}"
    built = (folder / "index" / "config.json").stat().st_mtime_ns

    assert main(["bench-scale", *ARGS, "--out", out, "--sweep", "2:20,8:100"]) == 0
    printed = capfd.readouterr()
    err = printed.err
    assert "resuming: 6 shard(s) of 6 already built" in err and "shard " not in err.replace("shard(s)", "")
    assert (folder / "index" / "config.json").stat().st_mtime_ns == built  # searched, not rebuilt
    report = json.loads((folder / "report.json").read_text())
    assert report["runs"] == 1 and "resumed" not in printed.out  # built in one run, searched twice
    settings = report["search"][0]["settings"]
    assert [(s["nprobe"], s["rescore_k"]) for s in settings] == [(2, 20), (2, 20), (8, 100), (8, 100)]
    assert settings[-1]["recall_at_k"] >= settings[0]["recall_at_k"]  # more lists, more candidates
    # the targets, judged in the run's own printout from what it measured
    v = report["verdict"]
    assert v["peak_rss_bytes"] == max(r["VmHWM"] for r in report["search"][0]["rss"].values())
    assert "targets: recall@10 >= 0.90 with warm p50 <= 50 ms at one setting: " in printed.out
    assert (
        f"peak search RSS {v['peak_rss_bytes'] / 1024**3:.2f} GB against 0.01 GB (--ram-gb): " in printed.out
    )


def test_the_verdict_holds_recall_and_latency_to_one_setting():
    from mmrag.bench.scale import Targets, verdict
    from mmrag.cli.scale import format_verdict

    def setting(nprobe, recall, p50, pass_="warm"):
        return {"nprobe": nprobe, "rescore_k": 200, "pass": pass_, "recall_at_k": recall, "p50_ms": p50}

    rss = {"opened": {"VmHWM": 2 * 1024**3}, "after": {"VmHWM": 3 * 1024**3}}
    report = {
        "search": [
            {
                "rss": rss,
                "settings": [
                    setting(32, 0.95, 30.0, "cold"),  # a cold pass does not count
                    setting(32, 0.88, 40.0),
                    setting(64, 0.93, 70.0),  # recall met, but too slow
                ],
            }
        ]
    }
    v = verdict(report, Targets())
    assert (v["best"]["nprobe"], v["recall_and_p50_met"], v["rss_met"]) == (32, False, True)
    text = format_verdict(v)
    assert "MISSED; the best within that p50 is nprobe 32 rescore 200, recall@10 0.880 at p50 40.0 ms" in text
    assert "peak search RSS 3.00 GB against 4.00 GB (--ram-gb): met" in text
    report["search"][0]["settings"].append(setting(48, 0.91, 49.0))
    assert verdict(report, Targets())["recall_and_p50_met"]
    assert not verdict(report, Targets(rss_bytes=2 * 1024**3))["rss_met"]
    report["search"][0]["settings"] = [setting(256, 0.99, 90.0)]
    assert "MISSED, no setting is that fast" in format_verdict(verdict(report, Targets()))


def test_a_finished_build_without_keep_starts_over(tmp_path, capfd):
    out = str(tmp_path / "runs")
    args = [a for a in ARGS if a != "--keep"]
    assert main(["bench-scale", *args, "--out", out, "--json"]) == 0
    capfd.readouterr()
    assert not (tmp_path / "runs" / f"n{N}" / "index").exists()
    assert main(["bench-scale", *args, "--out", out, "--json"]) == 0
    err = capfd.readouterr().err
    assert "resuming" not in err and "shard 1/6" in err  # no index left to search: built again
    report = json.loads((tmp_path / "runs" / f"n{N}" / "report.json").read_text())
    assert max(s["recall_at_k"] for s in report["search"][0]["settings"]) >= 0.9


def test_a_malformed_sweep_is_a_usage_error(capsys):
    import pytest

    for bad in ("32", "32:x", "0:200", "32:200,", ""):
        with pytest.raises(SystemExit) as exit_:
            main(["bench-scale", *ARGS, "--sweep", bad])
        assert exit_.value.code == 2
        assert "expected NPROBE:RESCORE pairs" in capsys.readouterr().err
