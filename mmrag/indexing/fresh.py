"""A first `index` run that fails before it commits anything leaves no collection behind.

`Collection.open(create=True)` makes the folder, its lock and meta.sqlite at once, before the models
load; when loading them fails (missing weights, a bad model set) a half-made collection would stay:
a lock and a database, no manifest, and the next run would have to guess what it is. A folder that
existed before the run is never touched, and one that holds committed work (items, sources or
recorded skips) is kept, so an interrupted run still resumes.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_COMMITTED = ("items", "sources", "errors")  # tables of meta.sqlite that hold a run's work


@contextmanager
def removed_if_unfinished(path: str | os.PathLike) -> Iterator[None]:
    """Run the block; if it raises and this run created `path`, remove it unless work was committed."""
    folder = Path(path)
    existed = folder.exists()
    try:
        yield
    except BaseException:
        if not existed and folder.is_dir() and not committed_work(folder):
            shutil.rmtree(folder, ignore_errors=True)
        raise


def committed_work(folder: Path) -> bool:
    """Whether the collection's database holds any committed row a later run could build on."""
    db = folder / "meta.sqlite"
    if not db.exists():
        return False
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    except sqlite3.Error:
        return True  # unreadable: keep it rather than guess
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return any(
            con.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone() is not None
            for t in _COMMITTED
            if t in tables
        )
    except sqlite3.Error:
        return True
    finally:
        con.close()
