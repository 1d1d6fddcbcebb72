"""Folders as git sees them: the walk honours .gitignore, .git/info/exclude and .ignore, and finds
exactly the files `git ls-files --others --cached --exclude-standard` lists (the reference)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmrag.cli import main
from mmrag.ingest import IngestCfg, reader_for, scan_sources
from mmrag.ingest.ignore import IgnoreRules
from mmrag.ingest.spec import DEFAULT_EXCLUDE

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

GIT_ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}

FILES = [
    "README.md",
    "keep.txt",  # re-included by '!keep.txt'
    "notes.txt",  # '*.txt'
    "top_secret.py",  # '/top_secret.py' (anchored)
    "src/top_secret.py",  # not matched by the anchored pattern
    "src/app.py",
    "src/app.gen.py",  # src/.gitignore: '*.gen.py'
    "src/keep.gen.py",  # src/.gitignore: '!keep.gen.py'
    "src/notes.txt",  # root '*.txt' reaches down
    "src/tmp/x.py",  # src/.gitignore: 'tmp/'
    "src/sub/keep.txt",  # '!keep.txt' at any depth
    "build/out.py",  # 'build/'
    "build/keep.txt",  # inside an ignored folder: cannot be re-included
    "dist/pkg.md",  # 'dist/'
    "pkg/dist/x.py",  # 'dist/' matches at any depth
    "docs/guide.md",
    "docs/draft.md",  # 'docs/**/draft.md' (** matches no folder too)
    "docs/a/b/draft.md",
    "scratch/idea.md",  # .git/info/exclude
    "fixtures/big.json",  # .ignore
    "fixtures/small.py",
]
GITIGNORE = "build/\ndist/\n*.txt\n!keep.txt\n/top_secret.py\ndocs/**/draft.md\n"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True
    ).stdout


def make_repo(root: Path, files=FILES, gitignore: str = GITIGNORE) -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q")
    for f in files:
        p = root / f
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"# {f}\nprint('{f}')\n")
    (root / ".gitignore").write_text(gitignore)
    (root / "src").mkdir(exist_ok=True)
    (root / "src" / ".gitignore").write_text("*.gen.py\n!keep.gen.py\ntmp/\n")
    (root / ".git" / "info" / "exclude").write_text("scratch/\n")
    (root / ".ignore").write_text("fixtures/\n")
    return root


def git_reference(folder: Path) -> set[str]:
    """What git lists under `folder`, less what .ignore files leave out (git does not read them),
    kept to the files the walk would take at all (a reader, no hidden or excluded folder)."""
    std = git(folder, "ls-files", "--others", "--cached", "--exclude-standard").split("\n")
    dot_ignore = git(folder, "ls-files", "--others", "--cached", "--exclude-per-directory=.ignore").split(
        "\n"
    )
    keep = set()
    for rel in set(std) & set(dot_ignore):
        parts = rel.split("/")
        if rel and reader_for(rel) and not any(p.startswith(".") or p in DEFAULT_EXCLUDE for p in parts):
            keep.add(str(folder / rel))
    return keep


def walked(folder: Path, **cfg) -> set[str]:
    return {s.path for s in scan_sources([str(folder)], IngestCfg(**cfg))}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return make_repo(tmp_path_factory.mktemp("ignore") / "repo")


def test_walk_is_what_git_lists(repo: Path):
    ref = git_reference(repo)
    assert walked(repo) == ref
    rel = {os.path.relpath(p, repo) for p in ref}
    assert {"keep.txt", "src/top_secret.py", "src/keep.gen.py", "src/sub/keep.txt", "docs/guide.md"} <= rel
    assert not rel & {"notes.txt", "top_secret.py", "src/app.gen.py", "build/out.py", "build/keep.txt",
                      "pkg/dist/x.py", "docs/a/b/draft.md", "docs/draft.md", "scratch/idea.md",
                      "fixtures/small.py"}  # fmt: skip


def test_a_subfolder_gets_the_rules_above_it(repo: Path):
    assert walked(repo / "src") == git_reference(repo / "src")
    assert str(repo / "src" / "notes.txt") not in walked(repo / "src")  # the root's '*.txt'


def test_no_ignore_walks_everything(repo: Path):
    every = walked(repo, ignore_files=False)
    assert {str(repo / f) for f in FILES if reader_for(f)} == every


def test_a_named_ignored_folder_is_walked(repo: Path):
    assert walked(repo / "build") == {str(repo / "build" / "out.py"), str(repo / "build" / "keep.txt")}


def test_what_was_left_out_is_reported(repo: Path):
    left: list = []
    list(scan_sources([str(repo)], IngestCfg(), on_error=None, on_ignored=left.append))
    dirs = {os.path.relpath(x.path, repo) for x in left if x.is_dir}
    files = {os.path.relpath(x.path, repo) for x in left if not x.is_dir}
    assert dirs == {"build", "dist", "pkg/dist", "scratch", "fixtures", "src/tmp"}
    assert files == {"notes.txt", "top_secret.py", "src/app.gen.py", "src/notes.txt", "docs/draft.md",
                     "docs/a/b/draft.md"}  # fmt: skip


@pytest.mark.parametrize(
    "gitignore",
    [
        "*\n!*/\n!*.py\n",  # ignore all, re-include folders, then .py files: a dir-only '!' must not reach files
        "src\n!src/\n",  # a name, then the folder back
        "**/a/**\n!docs/a/b/\n",  # a folder under an ignored one stays out
        "*.md\n!/docs/*.md\ndocs/a/\n",
        "/*\n!/src/\n!/docs\n",
    ],
)
def test_edge_cases_match_git(tmp_path: Path, gitignore: str):
    root = make_repo(tmp_path / "r", gitignore=gitignore)
    assert walked(root) == git_reference(root)


def test_a_nested_repository_starts_afresh(tmp_path: Path):
    root = make_repo(tmp_path / "outer")
    inner = root / "vendor" / "lib"
    inner.mkdir(parents=True)
    git(inner, "init", "-q")
    (inner / "notes.txt").write_text("the outer '*.txt' does not reach into another repository\n")
    assert str(inner / "notes.txt") in walked(root)
    assert walked(inner) == git_reference(inner)


def test_outside_a_repository_only_dot_ignore_counts(tmp_path: Path):
    (tmp_path / "notes").mkdir()
    for name in ("a.py", "b.txt", "notes/c.md"):
        (tmp_path / name).write_text("x\n")
    (tmp_path / ".gitignore").write_text("*.py\n")  # not a work tree: git would not read it either
    (tmp_path / ".ignore").write_text("notes/\n")
    assert walked(tmp_path) == {str(tmp_path / "a.py"), str(tmp_path / "b.txt")}


def test_index_leaves_out_and_info_counts(repo: Path, tmp_path: Path, capsys):
    coll = str(tmp_path / "c")
    assert main(["index", str(repo), "-c", coll, "--models", "tiny", "-q"]) == 0
    assert "left out by ignore rules" in capsys.readouterr().err
    assert main(["info", "-c", coll, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["ignored"] == {"files": 6, "dirs": 6}
    assert info["sources"] == len(git_reference(repo))
    out = subprocess.run(
        [sys.executable, "-m", "mmrag.cli", "info", "-c", coll], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "ignore rules (.gitignore, .git/info/exclude, .ignore): 6 files and 6 folders" in out.stdout

    assert main(["index", str(repo), "-c", coll, "--models", "tiny", "-q", "--no-ignore"]) == 0
    capsys.readouterr()
    assert main(["info", "-c", coll, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["ignored"] == {"files": 0, "dirs": 0}
    assert info["sources"] == len(walked(repo, ignore_files=False))


PATTERNS = ["*.log", "!keep.log", "build/", "/m.py", "src/", "!src/", "doc", "a/**/n.txt", "**/deep", "*", "!*/",
            "!*.py", "b/*", "!b/m.py", "/a/", "deep/", "*.txt", "!a/n.txt", "n.txt", "src/*.py", "!/build"]  # fmt: skip
NAMES = ["a", "b", "src", "build", "x.log", "keep.log", "m.py", "n.txt", "doc", "deep"]


@pytest.mark.slow  # 200 random repositories, three git calls each: ~20 s
@pytest.mark.parametrize("seed", range(200))
def test_random_trees_match_git(tmp_path: Path, seed: int):
    """Random folders and files, random .gitignore files at random levels and info/exclude."""
    import random

    rnd = random.Random(seed)
    root = tmp_path / "r"
    root.mkdir()
    git(root, "init", "-q")
    dirs = [root]
    for _ in range(rnd.randint(5, 25)):
        p = rnd.choice(dirs) / rnd.choice(NAMES)
        if p.exists():
            continue
        if rnd.random() < 0.4:
            p.mkdir()
            dirs.append(p)
        else:
            p.write_text("x\n")
    for d in dirs:
        if rnd.random() < 0.4:
            (d / ".gitignore").write_text("\n".join(rnd.sample(PATTERNS, rnd.randint(1, 4))) + "\n")
    if rnd.random() < 0.3:
        (root / ".git" / "info" / "exclude").write_text("\n".join(rnd.sample(PATTERNS, 2)) + "\n")
    std = git(root, "ls-files", "--others", "--cached", "--exclude-standard").split("\n")
    want = {str(root / p) for p in std if p and not any(c.startswith(".") for c in p.split("/"))}
    rules = IgnoreRules.for_root(str(root))
    got, stack = set(), [str(root)]
    while stack:  # the rules alone, for every file name (the walk keeps only types it reads)
        d = stack.pop()
        names = os.listdir(d)
        here = rules.at(d, names)
        for n in names:
            p = os.path.join(d, n)
            if n.startswith("."):
                continue
            if os.path.isdir(p):
                if not here.ignores(p, True):
                    stack.append(p)
            elif not here.ignores(p, False):
                got.add(p)
    assert got == want
