"""The door a user comes in by: the sdist and wheel build, pass `twine check`, and the wheel,
installed into a fresh virtual environment with no file of the clone on its path, is the whole
product: the CLI, the demo over its packaged sample corpus, and the server's UI at `/`.

The fresh environment reuses the big dependencies of the test venv through a `.pth` line naming
its site-packages; a `.pth` line adds a folder without running the `.pth` files inside it, so
the test venv's editable mmrag (an import hook installed by such a file) stays out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what a built copy of the clone leaves out: environments, caches, build outputs
NOT_SOURCE = shutil.ignore_patterns(
    ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".mmrag", "collections", "runs", "models",
    "test-artifacts", ".pytest_cache",
)  # fmt: skip
START_S = 240  # a cold server start imports torch, FAISS and Gradio; a busy 2-core CI machine is slow
UI_TITLE = "mmrag: search images, code and text"  # the title of demo/app.py's Blocks, in the page
# run in the installed venv: where each package of the wheel is imported from, and what is on the path
WHERE = """
import importlib.util, json, sys
import encoders, indexes, mmrag, mmrag_demo
files = {m.__name__: m.__file__ for m in (encoders, indexes, mmrag, mmrag_demo)}
print(json.dumps({"files": files, "path": sys.path, "ray": importlib.util.find_spec("ray") is not None}))
"""


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("timeout", 600)
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert res.returncode == 0, f"{cmd} -> {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> tuple[Path, Path]:
    """(sdist, wheel), built offline from a copy of the clone: the wheel is built from the sdist."""
    tmp = tmp_path_factory.mktemp("dists")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCE)  # builds write build/ and *.egg-info: not in the clone
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", tmp / "dist", src])
    (sdist,) = (tmp / "dist").glob("mmrag-*.tar.gz")
    (wheel,) = (tmp / "dist").glob("mmrag-*.whl")
    return sdist, wheel


def requirement_closure(wheel: Path, extras: tuple[str, ...]) -> set[str]:
    """The distributions `pip install 'mmrag[extras]'` brings, read from the wheel's Requires-Dist
    and, below it, from the metadata of what this venv has installed."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    top = [
        line.split(": ", 1)[1]
        for line in meta.partition("\n\n")[0].splitlines()
        if line.startswith("Requires-Dist: ")
    ]
    need: set[str] = set()
    seen: set[tuple[str, tuple[str, ...]]] = set()
    todo = [(r, extras) for r in top]
    while todo:
        req, wanted = todo.pop()
        r = Requirement(req)
        if r.marker is not None and not any(r.marker.evaluate({"extra": e}) for e in (*wanted, "")):
            continue
        name, below_extras = canonicalize_name(r.name), tuple(sorted(r.extras))
        if (name, below_extras) in seen:
            continue
        seen.add((name, below_extras))
        need.add(name)
        try:
            below = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue  # not installed here: the run below fails on its import if it is needed
        todo += [(b, below_extras) for b in below]
    return need


def filtered_site(dest: Path, keep: set[str]) -> Path:
    """A folder of links to this venv's site-packages entries owned by the distributions in `keep`:
    what a venv holding only those would import (mmrag itself, installed editable here, left out)."""
    from importlib import metadata

    from packaging.utils import canonicalize_name

    owners: dict[str, set[str]] = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"] or "")
        for f in dist.files or []:
            if f.parts and not f.parts[0].startswith(".."):
                owners.setdefault(f.parts[0], set()).add(name)
    dest.mkdir(parents=True)
    for sp in map(Path, site.getsitepackages()):
        for entry in sp.iterdir():
            own = owners.get(entry.name, set())
            if (
                entry.suffix != ".pth"
                and own & keep
                and "mmrag" not in own
                and not (dest / entry.name).exists()
            ):
                (dest / entry.name).symlink_to(entry)
    return dest


def wheel_venv(wheel: Path, tmp: Path, extras: tuple[str, ...]) -> Path:
    """A fresh venv holding only the wheel; through a `.pth` line it sees, of the test venv's
    packages, only those `pip install 'mmrag[extras]'` would bring, and no file of the clone."""
    env = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", env])
    python = env / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index"]
    _run([*pip, wheel])
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip()
    deps = filtered_site(tmp / "deps", requirement_closure(wheel, extras))
    (Path(purelib) / "mmrag-deps.pth").write_text(f"{deps}\n")
    return env


@pytest.fixture(scope="module")
def venv(dists, tmp_path_factory) -> Path:
    """The wheel as `pip install 'mmrag[serve]'` leaves it."""
    return wheel_venv(dists[1], tmp_path_factory.mktemp("serve-venv"), ("serve",))


def _env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", HF_HUB_OFFLINE="1")
    return env  # MMRAG_CACHE (tests/conftest.py) is inherited: tiny models and demo collections stay private


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TOKEN = "wheel-test-token"  # MMRAG_API_KEY of the servers started here: every route but /health needs it


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers={"X-API-Key": TOKEN}), timeout=30
        ) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def _serving(cmd: list, cwd: Path, env: dict, log: Path) -> tuple[str, dict, dict]:
    """Start `mmrag serve|demo`, wait for `/`, and return (the page at `/`, /health, /stats)."""
    port = _free_port()
    env = {**env, "MMRAG_API_KEY": TOKEN}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*map(str, cmd), "--port", str(port)], cwd=cwd, env=env, stdout=out, stderr=out
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_S
        while True:
            assert proc.poll() is None, f"{cmd} exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            try:
                status, page = _get(base + "/")
                break
            except (ConnectionError, urllib.error.URLError, TimeoutError):
                assert time.monotonic() < deadline, f"{cmd}: no answer on {base}/\n{log.read_text()[-3000:]}"
                time.sleep(1)
        assert status == 200, f"GET / -> {status}: {page[:500]}\n{log.read_text()[-3000:]}"
        health = json.loads(_get(base + "/health")[1])
        stats = json.loads(_get(base + "/stats")[1])
        return page, health, stats
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tiny_corpus(folder: Path) -> Path:
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "io_utils.py").write_text(
        'import json\n\n\ndef read_json(path):\n    """Read a JSON file and return its content."""\n'
        "    with open(path) as f:\n        return json.load(f)\n"
    )
    (folder / "notes.md").write_text("# Notes\n\nThe lighthouse keeper reads the weather every morning.\n")
    return folder


def test_the_packages_listed_are_those_of_the_clone():
    """pyproject lists its packages (the demo is mapped to `mmrag_demo`): none may be left out."""
    from setuptools import find_namespace_packages

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = find_namespace_packages(str(ROOT), include=["mmrag*", "encoders*", "indexes*"])
    assert sorted(cfg["packages"]) == sorted([*found, "mmrag_demo"]), "update [tool.setuptools] packages"
    assert cfg["package-dir"] == {"mmrag_demo": "demo"}


def test_twine_accepts_both_files_and_the_metadata_is_complete(dists):
    sdist, wheel = dists
    _run([sys.executable, "-m", "twine", "check", "--strict", sdist, wheel])
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read("mmrag-0.1.0.dist-info/METADATA").decode()
    head, _, body = meta.partition("\n\n")
    assert "Description-Content-Type: text/markdown" in head
    assert body.strip() == (ROOT / "README.md").read_text().strip()  # the README is the long description
    assert "License-Expression: Apache-2.0" in head and "License-File: LICENSE" in head
    assert "mmrag-0.1.0.dist-info/licenses/LICENSE" in names
    urls = dict(
        line.split(": ", 1)[1].split(", ", 1) for line in head.splitlines() if line.startswith("Project-URL")
    )
    assert {"Homepage", "Source", "Issues"} <= set(urls) and all(
        u.startswith("https://") for u in urls.values()
    )
    for extra in ("offline", "serve", "ray"):
        assert f"Provides-Extra: {extra}" in head
    sample = sorted(
        p.relative_to(ROOT / "demo").as_posix() for p in (ROOT / "demo" / "sample").rglob("*") if p.is_file()
    )
    assert sample and {f"mmrag_demo/{p}" for p in sample} <= names, "the sample corpus is package data"
    with tarfile.open(sdist) as t:
        in_sdist = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert {"LICENSE", "README.md", "pyproject.toml", "demo/__init__.py", "demo/app.py"} <= in_sdist
    assert {f"demo/{p}" for p in sample} <= in_sdist


def test_the_readme_install_section_shows_the_pip_route_and_the_extras():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    assert "make demo" in section and re.search(r"pip install '[^']*\.whl\[serve\]'", section)
    assert "pip install 'mmrag[serve]'" in section
    for extra in ("offline", "serve", "ray"):
        assert f"`{extra}`" in section, f"the extra {extra!r} is named in the README's install section"


@pytest.mark.heavy  # ~35 s: a venv and an install of the built wheel
def test_the_installed_wheel_is_the_whole_product(venv, tmp_path):
    """From outside the clone: --version, index and search, the demo over its sample, serve's UI."""
    env, mmrag = _env(venv), venv / "bin" / "mmrag"
    where = _run([venv / "bin" / "python", "-c", WHERE], cwd=tmp_path, env=env)
    info = json.loads(where.stdout)
    for name, file in info["files"].items():
        assert Path(file).is_relative_to(venv), f"{name} imported from {file}, not from the installed wheel"
    assert not any(p and Path(p).resolve() == ROOT for p in info["path"]), info["path"]
    assert not info["ray"], "only what mmrag[serve] brings is visible: not the ray extra"

    assert _run([mmrag, "--version"], cwd=tmp_path, env=env).stdout.strip() == "mmrag 0.1.0"
    corpus = _tiny_corpus(tmp_path / "corpus")
    _run([mmrag, "index", corpus, "-c", tmp_path / "tiny.coll", "--models", "tiny"], cwd=tmp_path, env=env)
    hits = json.loads(
        _run(
            [mmrag, "search", "read a json file", "-c", tmp_path / "tiny.coll", "--json"],
            cwd=tmp_path,
            env=env,
        ).stdout
    )
    assert hits and {Path(h["path"]).name for h in hits} <= {"io_utils.py", "notes.md"}

    page, health, stats = _serving([mmrag, "demo", "--models", "tiny"], tmp_path, env, tmp_path / "demo.log")
    assert UI_TITLE in page, page[:500]
    sample = Path(info["files"]["mmrag_demo"]).parent / "sample"
    assert [Path(r).resolve() for r in stats["roots"]] == [sample.resolve()], stats["roots"]
    assert health["items"] > 30  # the packaged sample: 32 captioned images, code and docs

    page, health, _ = _serving(
        [mmrag, "serve", "-c", tmp_path / "tiny.coll"], tmp_path, env, tmp_path / "serve.log"
    )
    assert UI_TITLE in page, page[:500]
    assert health["status"] == "ok" and health["items"] >= 2  # the code chunk and the note, at least


def test_installed_without_the_serve_extra_the_commands_name_it(dists, tmp_path):
    """`pip install mmrag` alone: the engine works, and serve and demo say what to add for the UI."""
    bare = wheel_venv(dists[1], tmp_path, ())
    env, mmrag = _env(bare), bare / "bin" / "mmrag"
    for argv in (
        ["serve", "-c", tmp_path / "x.coll"],
        ["serve", "-c", tmp_path / "x.coll", "--no-ui"],
        ["demo"],
    ):
        res = subprocess.run(
            [str(mmrag), *map(str, argv)], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert res.returncode == 1 and "pip install 'mmrag[serve]'" in res.stderr, (argv, res.stderr[-2000:])
    hidden = subprocess.run(
        [str(bare / "bin" / "python"), "-c", "import fastapi"], env=env, capture_output=True
    )
    assert hidden.returncode != 0, "the bare venv must not see the test venv's FastAPI"


@pytest.mark.parametrize(
    ("argv", "blocked"),
    [
        (["serve", "-c", "x.coll"], "gradio"),
        (["serve", "-c", "x.coll", "--no-ui"], "fastapi"),
        (["demo"], "uvicorn"),
    ],
)
def test_without_the_serve_extra_the_commands_name_it(argv, blocked, monkeypatch, capsys, tmp_path):
    from mmrag.cli import EXIT_ERROR, main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, blocked, None)  # as if not installed: find_spec None, import fails
    assert main(argv) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"needs {blocked}" in err and "pip install 'mmrag[serve]'" in err, err


def test_without_gradio_the_ui_names_the_extra(monkeypatch):
    from mmrag.errors import MissingExtraError
    from mmrag.http.server import load_demo

    for name in [m for m in sys.modules if m == "mmrag_demo" or m.startswith("mmrag_demo.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "gradio", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'mmrag\[serve\]'") as e:
        load_demo()
    assert e.value.extra == "serve" and e.value.missing == ["gradio"]
