"""Time honouring .gitignore on a large generated repository (docs/ingest.md, "Ignore rules").

Builds a git work tree of N files (source folders, a build/ and dist/ output, vendored copies,
logs, nested .gitignore files), then times, best of --repeat:
  - the walk (mmrag.ingest.scan_sources) without ignore rules, and with them (pathspec);
  - `git check-ignore --stdin` over every file the plain walk found (the other way to ask git);
  - `git ls-files --others --cached --exclude-standard`: git's own walk, for scale;
and checks that the walk with rules finds exactly the indexable files git lists.

    .venv/bin/python scripts/bench_ignore.py --files 50000 --dir /tmp/ignore-bench
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmrag.ingest import IngestCfg, scan_sources  # noqa: E402
from mmrag.ingest.readers import reader_for  # noqa: E402

GIT_ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
ROOT_IGNORE = """# outputs
build/
dist/
*.log
/coverage/
!keep.log
vendor/**/tests/
**/generated/*.py
!**/generated/keep_*.py
"""


def make_tree(top: Path, n_files: int) -> None:
    """A repository of about n_files files: 60% source, 40% under ignored folders or patterns."""
    if top.exists():
        shutil.rmtree(top)
    top.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(top)], check=True, env=GIT_ENV)
    (top / ".gitignore").write_text(ROOT_IGNORE)
    (top / ".git" / "info" / "exclude").write_text("scratch/\n")
    kinds = ["src/pkg{}/mod{}.py", "build/lib/pkg{}/mod{}.py", "dist/pkg{}/file{}.txt", "docs/sec{}/page{}.md",
             "vendor/lib{}/tests/t{}.py", "vendor/lib{}/src/s{}.py", "src/pkg{}/generated/g{}.py",
             "logs/run{}/out{}.log", "scratch/s{}/n{}.md", "src/pkg{}/generated/keep_{}.py"]  # fmt: skip
    weights = [30, 15, 10, 10, 8, 8, 5, 5, 5, 4]
    total = sum(weights)
    for kind, w in zip(kinds, weights):
        for i in range(n_files * w // total):
            p = top / kind.format(i // 50, i)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("x = 1\n")
    for i in range(0, n_files * 30 // total // 50, 7):  # a nested .gitignore in every 7th package
        (top / f"src/pkg{i}/.gitignore").write_text("mod*3.py\n!mod13.py\n")


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=50_000)
    ap.add_argument("--dir", default="/tmp/mmrag-ignore-bench")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    top = Path(args.dir)
    make_tree(top, args.files)
    n_all = sum(len(f) for d, _, f in os.walk(top) if "/.git" not in d + "/")

    def walk(ignore: bool) -> list[str]:
        return [s.path for s in scan_sources([str(top)], IngestCfg(ignore_files=ignore))]

    t_plain, plain = best(lambda: walk(False), args.repeat)
    t_rules, kept = best(lambda: walk(True), args.repeat)

    def check_ignore() -> set[str]:
        rel = "\0".join(os.path.relpath(p, top) for p in plain) + "\0"
        out = subprocess.run(["git", "check-ignore", "--stdin", "-z"], cwd=top, input=rel.encode(),
                             capture_output=True, env=GIT_ENV).stdout  # fmt: skip
        return {x for x in out.decode().split("\0") if x}

    t_check, ignored = best(check_ignore, args.repeat)

    def ls_files() -> list[str]:
        out = subprocess.run(["git", "ls-files", "-z", "--others", "--cached", "--exclude-standard"], cwd=top,
                             capture_output=True, env=GIT_ENV).stdout  # fmt: skip
        return [x for x in out.decode().split("\0") if x]

    t_ls, listed = best(ls_files, args.repeat)
    reference = {
        str(top / p) for p in listed if reader_for(p) and not any(c.startswith(".") for c in p.split("/"))
    }
    via_check = {p for p in plain if os.path.relpath(p, top) not in ignored}
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"tree: {n_all} files; indexable without rules {len(plain)}, with rules {len(kept)}")
    print(f"walk, no ignore rules          {t_plain:7.3f} s")
    print(f"walk, ignore rules (pathspec)  {t_rules:7.3f} s  ({t_rules - t_plain:+.3f} s)")
    print(f"git check-ignore --stdin       {t_check:7.3f} s  (after the plain walk, one process)")
    print(f"git ls-files --exclude-standard{t_ls:7.3f} s  (git's own walk)")
    # the matching alone: 30 patterns that match nothing, so no folder is pruned and every file is tested
    (top / ".gitignore").write_text(
        "".join(f"*.nomatch{i}\n/nomatch{i}/\nsrc/**/tmp{i}/*.py\n" for i in range(10))
    )
    (top / ".git" / "info" / "exclude").write_text("")
    t_all, everything = best(lambda: walk(True), args.repeat)
    t_none, _ = best(lambda: walk(False), args.repeat)
    print(f"walk, 30 patterns matching nothing {t_all:7.3f} s vs {t_none:.3f} s without rules "
          f"({(t_all - t_none) / max(len(everything), 1) * 1e6:.1f} us per file, {len(everything)} files)")  # fmt: skip
    print(f"walk with rules == git ls-files: {set(kept) == reference}; "
          f"plain walk less check-ignore == git ls-files: {via_check == reference}")  # fmt: skip


if __name__ == "__main__":
    main()
