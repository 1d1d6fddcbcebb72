"""SQLite metadata and vectors: the collection's source of truth.

Items, their vectors (one row per item and index) and the sources they came from commit in one
transaction per batch, so a killed run leaves either all of a batch or none of it. The FAISS
and BM25 files are caches derived from these tables; `generation` counts committed changes so a
reader can tell when those caches are behind.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from mmrag.errors import CollectionError
from mmrag.items import Item
from mmrag.storage import facts

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    modality TEXT NOT NULL,
    source TEXT NOT NULL,
    title TEXT, text TEXT, language TEXT, symbol TEXT,
    start_line INTEGER, end_line INTEGER, image TEXT,
    content_hash TEXT NOT NULL,
    meta TEXT
);
CREATE INDEX IF NOT EXISTS items_source ON items(source);
CREATE INDEX IF NOT EXISTS items_hash ON items(content_hash);
CREATE TABLE IF NOT EXISTS vectors(
    item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    space TEXT NOT NULL,
    vec BLOB NOT NULL,
    PRIMARY KEY(item_id, space)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS vectors_space ON vectors(space);
CREATE TABLE IF NOT EXISTS sources(
    path TEXT PRIMARY KEY, root TEXT, kind TEXT, size INTEGER, mtime_ns INTEGER,
    sha256 TEXT, indexed_at REAL
);
CREATE TABLE IF NOT EXISTS errors(path TEXT PRIMARY KEY, reason TEXT NOT NULL, at REAL);
CREATE TABLE IF NOT EXISTS state(key TEXT PRIMARY KEY, value TEXT);
"""

_ITEM_COLS = (
    "key",
    "modality",
    "source",
    "title",
    "text",
    "language",
    "symbol",
    "start_line",
    "end_line",
    "image",
    "content_hash",
    "meta",
)


@dataclass(frozen=True)
class StoredItem:
    id: int
    key: str
    content_hash: str


class Store:
    """One SQLite file in WAL mode: readers see the last committed batch while a writer works."""

    def __init__(self, path: str, *, readonly: bool = False):
        self.path = path
        self.readonly = readonly
        # a reader serves many threads at once (the server's searches): each thread gets its own
        # connection, since threads sharing one sqlite3 connection can deadlock on its mutex and the GIL
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        try:
            if readonly:
                self._main = self._connect_ro()
            else:
                self._main = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
                self._main.execute("PRAGMA journal_mode=WAL")
                self._main.execute("PRAGMA synchronous=FULL")  # a committed batch survives power loss
                self._main.executescript(_SCHEMA)
            facts.ensure(self._main, readonly=readonly)  # filterable facts; old collections gain the tables
            self._main.execute("PRAGMA foreign_keys=ON")
            self._main.execute("PRAGMA busy_timeout=10000")
        except sqlite3.DatabaseError as e:
            raise CollectionError(f"Cannot open collection database {path}: {e}") from e
        self._local.db = self._main

    def _connect_ro(self) -> sqlite3.Connection:
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        with self._conns_lock:
            self._conns.append(con)
        return con

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection: a writer has one (its transactions span threads), a reader one per thread."""
        if not self.readonly:
            return self._main
        con = getattr(self._local, "db", None)
        if con is None:
            con = self._connect_ro()
            con.execute("PRAGMA foreign_keys=ON")
            con.execute("PRAGMA busy_timeout=10000")
            self._local.db = con
        return con

    def close(self) -> None:
        if not self.readonly:
            self._main.close()
            return
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for con in conns:
            con.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, bumping the generation; rolled back on any error."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            self.db.execute(
                "INSERT INTO state(key, value) VALUES('generation', '1') ON CONFLICT(key) "
                "DO UPDATE SET value = CAST(value AS INTEGER) + 1"
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    # --- state ------------------------------------------------------------------------------
    def generation(self) -> int:
        row = self.db.execute("SELECT value FROM state WHERE key='generation'").fetchone()
        return int(row[0]) if row else 0

    def get_state(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    # --- items ------------------------------------------------------------------------------
    def items_of_source(self, source: str) -> dict[str, StoredItem]:
        rows = self.db.execute("SELECT id, key, content_hash FROM items WHERE source=?", (source,))
        return {k: StoredItem(i, k, h) for i, k, h in rows}

    def insert_items(self, con: sqlite3.Connection, items: Sequence[Item]) -> list[int]:
        """Insert or replace items by key; returns their new ids (a replaced item gets a new id)."""
        ids = []
        for it in items:
            con.execute("DELETE FROM items WHERE key=?", (it.key,))
            cur = con.execute(
                f"INSERT INTO items({','.join(_ITEM_COLS)}) VALUES({','.join('?' * len(_ITEM_COLS))})",
                (
                    it.key,
                    it.modality,
                    it.source,
                    it.title,
                    it.text,
                    it.language,
                    it.symbol,
                    it.start_line,
                    it.end_line,
                    it.image,
                    it.content_hash,
                    json.dumps(it.meta, ensure_ascii=False) if it.meta else None,
                ),
            )
            ids.append(int(cur.lastrowid))
        facts.write(con, ids, items)
        return ids

    def refresh_items(self, con: sqlite3.Connection, ids: Sequence[int], items: Sequence[Item]) -> None:
        """New meta and facts for items kept under their ids (content unchanged, metadata re-read)."""
        con.executemany(
            "UPDATE items SET meta=? WHERE id=?",
            (
                (json.dumps(it.meta, ensure_ascii=False) if it.meta else None, int(i))
                for i, it in zip(ids, items)
            ),
        )
        facts.write(con, ids, items)

    def insert_vectors(
        self, con: sqlite3.Connection, space: str, ids: Sequence[int], vecs: np.ndarray
    ) -> None:
        vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        con.executemany(
            "INSERT OR REPLACE INTO vectors(item_id, space, vec) VALUES(?,?,?)",
            ((int(i), space, v.tobytes()) for i, v in zip(ids, vecs)),
        )

    def delete_items(self, con: sqlite3.Connection, ids: Iterable[int]) -> int:
        n = 0
        for i in ids:
            n += con.execute("DELETE FROM items WHERE id=?", (int(i),)).rowcount
        return n

    def fetch_items(self, ids: Sequence[int]) -> dict[int, dict]:
        out: dict[int, dict] = {}
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
            chunk = ids[start : start + 900]
            rows = self.db.execute(
                f"SELECT id, {','.join(_ITEM_COLS)} FROM items WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for row in rows:
                d = dict(zip(("id", *_ITEM_COLS), row))
                d["meta"] = json.loads(d["meta"]) if d["meta"] else {}
                out[d["id"]] = d
        return out

    def modalities(self, ids: Sequence[int]) -> dict[int, str]:
        """id -> modality, without the items' text: what a search needs to weigh results per modality."""
        out: dict[int, str] = {}
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
            chunk = ids[start : start + 900]
            q = f"SELECT id, modality FROM items WHERE id IN ({','.join('?' * len(chunk))})"
            out.update(self.db.execute(q, chunk).fetchall())
        return out

    def item_by_key(self, key: str) -> dict | None:
        row = self.db.execute("SELECT id FROM items WHERE key=?", (key,)).fetchone()
        return self.fetch_items([row[0]])[row[0]] if row else None

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT modality, COUNT(*) FROM items GROUP BY modality").fetchall())

    def iter_texts(self) -> Iterator[tuple[int, str]]:
        """(id, title + text) of every item, for the lexical index."""
        for i, title, text in self.db.execute("SELECT id, title, text FROM items ORDER BY id"):
            yield int(i), f"{title or ''}\n{text or ''}"

    # --- vectors ----------------------------------------------------------------------------
    def vector_ids(self, space: str) -> np.ndarray:
        rows = self.db.execute("SELECT item_id FROM vectors WHERE space=? ORDER BY item_id", (space,))
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def vectors(
        self, space: str, ids: Sequence[int] | None = None, dim: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids, float32 (n, dim)) for a space, all of it or the given ids, ordered by id."""
        if ids is None:
            rows = self.db.execute(
                "SELECT item_id, vec FROM vectors WHERE space=? ORDER BY item_id", (space,)
            ).fetchall()
        else:
            rows = []
            ids = [int(i) for i in ids]
            for start in range(0, len(ids), 900):
                chunk = ids[start : start + 900]
                rows += self.db.execute(
                    f"SELECT item_id, vec FROM vectors WHERE space=? AND item_id IN ({','.join('?' * len(chunk))})",
                    (space, *chunk),
                ).fetchall()
            rows.sort()
        out_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        if not rows:
            return out_ids, np.zeros((0, dim or 0), np.float32)
        mat = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        return out_ids, mat

    def reusable_vectors(self, content_hash: str, modality: str) -> dict[str, bytes]:
        """Vectors of any stored item with the same content, so identical content is not re-encoded."""
        row = self.db.execute(
            "SELECT id FROM items WHERE content_hash=? AND modality=? LIMIT 1", (content_hash, modality)
        ).fetchone()
        if not row:
            return {}
        return dict(self.db.execute("SELECT space, vec FROM vectors WHERE item_id=?", (row[0],)).fetchall())

    # --- sources and errors -----------------------------------------------------------------
    def source_row(self, path: str) -> tuple | None:
        return self.db.execute("SELECT size, mtime_ns, sha256 FROM sources WHERE path=?", (path,)).fetchone()

    def record_source(
        self, con: sqlite3.Connection, path: str, root: str, kind: str, size: int, mtime_ns: int, sha256: str
    ) -> None:
        con.execute(
            "INSERT OR REPLACE INTO sources VALUES(?,?,?,?,?,?,?)",
            (path, root, kind, size, mtime_ns, sha256, time.time()),
        )
        con.execute("DELETE FROM errors WHERE path=?", (path,))

    def sources_under(self, root: str) -> list[str]:
        prefix = root.rstrip("/") + "/"
        rows = self.db.execute(
            "SELECT path FROM sources WHERE path=? OR substr(path, 1, ?)=?", (root, len(prefix), prefix)
        )
        return [r[0] for r in rows]

    def items_of_sources(self, paths: Sequence[str]) -> list[int]:
        out: list[int] = []
        for p in paths:
            out += [r[0] for r in self.db.execute("SELECT id FROM items WHERE source=?", (p,))]
        return out

    def forget_source(self, con: sqlite3.Connection, path: str) -> int:
        n = con.execute("DELETE FROM items WHERE source=?", (path,)).rowcount
        con.execute("DELETE FROM sources WHERE path=?", (path,))
        # the file's own note and its parts' ("paper.pdf#p3": a picture over the pixel cap)
        parts = (path, len(path) + 1, path + "#")
        con.execute("DELETE FROM errors WHERE path=? OR substr(path, 1, ?)=?", parts)
        return n

    def record_error(self, con: sqlite3.Connection, path: str, reason: str) -> None:
        con.execute("INSERT OR REPLACE INTO errors VALUES(?,?,?)", (path, reason, time.time()))

    def errors(self) -> list[tuple[str, str]]:
        return self.db.execute("SELECT path, reason FROM errors ORDER BY path").fetchall()

    def n_sources(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM sources").fetchone()[0]
