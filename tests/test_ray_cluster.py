"""`--engine ray --address`: a real two-node cluster gives the local indexer's collection with work
on both nodes (heavy), and an address that is dead or wants Ray's auth token fails at once with a
one-line error (fast; the token case also against the real cluster, heavy).

The cluster is two raylets on this machine (`ray start --head`, then `ray start --address`), each
with its own temp dir, free ports and one CPU, started with token authentication on. The fixture
kills every process it started (found by its temp dir, and their children) even when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'ray[data]'")

from mmrag.cli import main  # noqa: E402
from mmrag.distributed import connect as rc  # noqa: E402
from mmrag.errors import ClusterAuthError, ClusterError  # noqa: E402

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- fast: no cluster needed


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.0.0.5:6380", ("10.0.0.5", 6380, False)),
        ("head", ("head", rc.DEFAULT_GCS_PORT, False)),
        ("ray://head:10002", ("head", 10002, True)),
        ("[::1]:7000", ("::1", 7000, False)),
    ],
)
def test_split_address(address, expected):
    assert rc.split_address(address) == expected


def test_bad_port_is_a_config_message():
    with pytest.raises(ClusterError, match="not host:port"):
        rc.split_address("head:sixty")


def test_unreachable_address_fails_fast_with_one_line(tmp_path, capsys):
    """Nothing listens on the port: exit 1 and one line saying what to do, in well under Ray's 20 s."""
    port = _free_port()  # bound then closed: connections are refused
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\nsome text\n")
    t0 = time.monotonic()
    code = main(
        ["index", "--engine", "ray", "--address", f"127.0.0.1:{port}", "--models", "tiny", "-q"]
        + ["-c", str(tmp_path / "coll"), str(tmp_path / "docs")]
    )
    took = time.monotonic() - t0
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith("mmrag: error: cannot reach the Ray cluster at 127.0.0.1:")
    assert "ray start --head" in err[0] and "leave --address out" in err[0]
    assert took < 5, took
    assert not ray.is_initialized() and not (tmp_path / "coll").exists()  # nothing was created


def test_auth_error_from_gcs_names_the_variables(monkeypatch):
    """What Ray's GCS client raises for a cluster in token mode (seen live in the heavy test below)."""
    from ray.exceptions import AuthenticationError

    def refuse(gcs, timeout):
        raise AuthenticationError("RPC error: InvalidAuthToken: Authentication token is missing or incorrect")

    with socket.socket() as srv:  # something must accept the TCP probe
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        monkeypatch.setattr(rc, "_ask_cluster_id", refuse)
        with pytest.raises(ClusterAuthError, match="RAY_AUTH_MODE=token and RAY_AUTH_TOKEN"):
            rc.probe(f"127.0.0.1:{srv.getsockname()[1]}")


# ---------------------------------------------------------------- heavy: a real two-node cluster


def _procs_of(marker: str) -> set[int]:
    """Processes whose command line names `marker`, with all their descendants (Ray renames some)."""
    found, parent = set(), {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parent[int(d.name)] = ppid
        if marker.encode() in cmd:
            found.add(int(d.name))
    me = os.getpid()  # never this process or its ancestors, whatever their command lines say
    while me > 1:
        found.discard(me)
        me = parent.get(me, 0)
    grew = True
    while grew:
        kids = {p for p, pp in parent.items() if pp in found and p not in found}
        found |= kids
        grew = bool(kids)
    return found


def _kill_cluster(temp_dirs: list[str]) -> None:
    """SIGTERM the processes of our temp dirs, then SIGKILL what is left after 5 s."""
    pids = set().union(*(_procs_of(t) for t in temp_dirs))
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, sig)
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            pids = {p for p in pids if Path(f"/proc/{p}").exists() and "Z" not in _state(p)}
            time.sleep(0.2)
        if not pids:
            return


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def _ray_start(args: list[str], temp_dir: str, env: dict) -> None:
    ports = ["--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--metrics-export-port"]
    ports += ["--runtime-env-agent-port"]
    cmd = [RAY, "start", *args, "--num-cpus", "1", "--temp-dir", temp_dir, "--disable-usage-stats"]
    cmd += ["--object-store-memory", str(200 * 2**20), "--node-ip-address", "127.0.0.1"]
    for p in ports:
        cmd += [p, str(_free_port())]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.fixture(scope="module")
def cluster():
    """Two raylets (head + worker) in token mode; yields (GCS address, env with the token)."""
    token = secrets.token_hex(16)
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "RAY_USAGE_STATS_ENABLED": "0",
        "OMP_NUM_THREADS": "1",
    }
    # short paths: Ray's unix sockets live under the temp dir and sun_path holds 107 bytes
    temps = [
        tempfile.mkdtemp(prefix="mmr-ray-h-", dir="/tmp"),
        tempfile.mkdtemp(prefix="mmr-ray-w-", dir="/tmp"),
    ]
    address = f"127.0.0.1:{_free_port()}"
    try:
        head = ["--head", "--port", address.split(":")[1], "--include-dashboard=false"]
        head += ["--dashboard-port", str(_free_port())]
        _ray_start(head, temps[0], env)
        _ray_start(["--address", address], temps[1], env)
        yield address, env
    finally:
        _kill_cluster(temps)
        left = set().union(*(_procs_of(t) for t in temps))
        for t in temps:
            shutil.rmtree(t, ignore_errors=True)
        assert not left, f"Ray processes left behind: {sorted(left)}"


def _corpus(root: Path) -> Path:
    from PIL import Image

    (root / "img").mkdir(parents=True)
    (root / "src").mkdir()
    (root / "docs").mkdir()
    for name, rgb in {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (20, 40, 220)}.items():
        Image.new("RGB", (64, 48), rgb).save(root / "img" / f"{name}.png")
    for i in range(8):
        (root / "src" / f"mod{i}.py").write_text(f"def f{i}(x):\n    return x + {i}\n")
        (root / "docs" / f"page{i}.md").write_text(f"# Page {i}\n\nAbout shards number {i}.\n")
    return root


def _mmrag(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmrag.cli", *args], env=env, capture_output=True, text=True, timeout=900
    )


def _by_key(coll: Path, space: str) -> dict[str, np.ndarray]:
    from mmrag.storage.collection import Collection

    with Collection.open(coll) as c:
        ids, vecs = c.store.vectors(space)
        items = c.store.fetch_items([int(i) for i in ids])
    return {items[int(i)]["key"]: v for i, v in zip(ids, vecs)}


@pytest.mark.heavy  # two raylets, a Ray Data job and a CLI driver: a few minutes on 2 busy cores
def test_two_nodes_give_the_local_collection(cluster, tmp_path):
    from mmrag.api import Engine
    from mmrag.storage.collection import Collection

    address, env = cluster
    corpus = _corpus(tmp_path / "corpus")
    with Engine.open(tmp_path / "local", write=True, models="tiny") as eng:
        local = eng.index([str(corpus)])
    r = _mmrag(
        "index", "--engine", "ray", "--address", address, "--models", "tiny",
        "-c", str(tmp_path / "ray"), str(corpus), env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-4000:]
    nodes = {}
    for what in ("read", "embedded"):
        m = re.search(rf"^ray: {what} on (\d+) node\(s\): (.*)$", r.stderr, re.M)
        assert m, r.stderr[-4000:]
        nodes[what] = dict(x.rsplit(" ", 1) for x in m.group(2).split(", "))
    seen = set(nodes["read"]) | set(nodes["embedded"])
    assert len(seen) == 2, nodes  # both raylets did part of the job
    assert sum(int(n) for n in nodes["embedded"].values()) == local.items_added
    with Collection.open(tmp_path / "local") as a, Collection.open(tmp_path / "ray") as b:
        assert a.stats()["by_modality"] == b.stats()["by_modality"]
        assert a.store.n_sources() == b.store.n_sources() == local.sources
        spaces = a.spaces()
        assert set(spaces) == set(b.spaces())
    for space in spaces:
        x, y = _by_key(tmp_path / "local", space), _by_key(tmp_path / "ray", space)
        assert x.keys() == y.keys(), space
        for k in x:
            np.testing.assert_allclose(x[k], y[k], atol=1e-5, err_msg=f"{space} {k}")
    with Engine.open(tmp_path / "local") as a, Engine.open(tmp_path / "ray") as b:
        for q in ("return x plus one", "shards number 3", "a red square"):
            assert [h.key for h in a.search(q, k=8).hits] == [h.key for h in b.search(q, k=8).hits], q


@pytest.mark.heavy
def test_cluster_without_the_token_is_one_line(cluster, tmp_path):
    """The real token-mode cluster, a driver without the token: exit 1 at once, naming the variables."""
    address, env = cluster
    bare = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.md").write_text("# A\n\ntext\n")
    t0 = time.monotonic()
    r = _mmrag(
        "index", "--engine", "ray", "--address", address, "--models", "tiny", "-q",
        "-c", str(tmp_path / "c"), str(tmp_path / "d"), env=bare,
    )  # fmt: skip
    took = time.monotonic() - t0
    assert r.returncode == 1, r.stderr[-3000:]
    ours = [line for line in r.stderr.splitlines() if line.startswith("mmrag: error:")]
    assert len(ours) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert f"the Ray cluster at {address} refused this driver" in ours[0]
    assert "RAY_AUTH_MODE=token" in ours[0] and "RAY_AUTH_TOKEN" in ours[0]
    assert took < 15, took  # the import of the CLI and Ray, not Ray's 20 s of retries
