"""Write-then-rename: a reader (another process, a crash) never sees half a file or half a folder.

Every writer inside encoders goes through these two functions: exported models, query cards,
tokenizer files and the tiny checkpoints. Files and folders are made readable by all, as any model
cache is (mkstemp and mkdtemp make them private).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_file(path: Path, fill: Callable[[Path], None]) -> None:
    """`fill(tmp)` writes a temporary file beside `path`, which then replaces `path` in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        fill(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    """UTF-8 text, written then renamed."""
    write_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def build_dir(final: Path, fill: Callable[[Path], None]) -> Path:
    """`fill(tmp)` fills a temporary folder that is renamed to `final`; an existing `final` is kept.

    Concurrent builders race on the rename: the loser's folder is discarded and the winner's used.
    """
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        fill(tmp)
        tmp.chmod(0o755)
        tmp.rename(final)
    except OSError:
        if not final.is_dir():  # not a lost race with another builder: a real failure
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
