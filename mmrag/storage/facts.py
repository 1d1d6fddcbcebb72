"""What a user knows about a file, kept per item for filters: two SQLite tables beside `items`.

`item_facts` holds one row per item: its file name and extension, the code symbol kind, and an
image's width, height, EXIF date taken, camera and orientation. `item_fields` holds a JSONL
record's extra fields, one typed row per value (a list gives one row per element), so
`meta.year >= 2020` compares numbers and `meta.tags = cat` matches any element. File size and
mtime are not copied: they live in `sources` (kept current on every run) and filters join it.
`item_locators` holds, for an item read from a document (a PDF, a notebook), where in it the item
sits: the document's format, page, cell, slide and part (figure, page text, cell output ...), from its
Locator (meta["locator"]); other items have no row there.

Collections written before these tables existed get them when a writer opens them; their items
have no row here until the next `mmrag index`, which re-reads such sources without re-embedding
(`sources_missing`), and `missing` counts them so searches can say so meanwhile. A read-only
opener of such a collection gets empty TEMP stand-ins, so filters still run.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from mmrag.items import Item

FACTS_VERSION = 1  # bump when readers keep more: items with an older row are re-read on the next index
MAX_FIELDS = 64  # extra fields kept per JSONL record; the rest of a huge record is not a filter's business
MAX_TEXT = 1_000  # characters of one text value kept for filtering

FACT_COLUMNS = ("name", "ext", "kind", "width", "height", "taken", "camera", "orientation")

_DDL = """
CREATE TABLE IF NOT EXISTS {schema}item_facts(
    item_id INTEGER PRIMARY KEY {fk},
    version INTEGER NOT NULL,
    name TEXT, ext TEXT, kind TEXT,
    width INTEGER, height INTEGER, taken REAL, camera TEXT, orientation INTEGER
);
CREATE TABLE IF NOT EXISTS {schema}item_fields(
    item_id INTEGER NOT NULL {fk},
    name TEXT NOT NULL,
    num REAL,
    txt TEXT
);
CREATE INDEX IF NOT EXISTS {schema}item_fields_item ON item_fields(item_id);
CREATE INDEX IF NOT EXISTS {schema}item_fields_num ON item_fields(name, num);
CREATE INDEX IF NOT EXISTS {schema}item_fields_txt ON item_fields(name, txt);
CREATE TABLE IF NOT EXISTS {schema}item_locators(
    item_id INTEGER PRIMARY KEY {fk},
    doc TEXT, page INTEGER, cell INTEGER, part TEXT, slide INTEGER
);
"""
LOCATOR_COLUMNS = ("doc", "page", "cell", "part", "slide")
_TABLES = {"item_facts", "item_fields", "item_locators"}


def ensure(db: sqlite3.Connection, *, readonly: bool) -> None:
    """Create the tables (a writer), or empty TEMP stand-ins where a read-only file lacks them."""
    if not readonly:
        db.executescript(_DDL.format(schema="", fk="REFERENCES items(id) ON DELETE CASCADE"))
        if "slide" not in _columns(db, "item_locators"):  # written before slides were read (.pptx)
            db.execute("ALTER TABLE item_locators ADD COLUMN slide INTEGER")
        return
    have = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "item_locators" in have and "slide" not in _columns(db, "item_locators"):
        # an older file read-only: its items have no slide, so a view with an empty one stands in
        cols = ", ".join(c for c in _columns(db, "item_locators"))
        db.execute(f"CREATE TEMP VIEW item_locators AS SELECT {cols}, NULL AS slide FROM main.item_locators")
    if not have >= _TABLES:  # only the missing ones: TEMP tables of the same name would hide the file's
        for stmt in _DDL.format(schema="temp.", fk="").split(";"):
            table = next((t for t in _TABLES if f"temp.{t}(" in stmt or f"ON {t}(" in stmt), None)
            if table is not None and table not in have and stmt.strip():
                db.execute(stmt)


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in db.execute(f"PRAGMA main.table_info({table})")]


def has_tables(db: sqlite3.Connection) -> bool:
    """Whether the collection file itself holds the tables (not only TEMP stand-ins)."""
    rows = db.execute(
        "SELECT COUNT(*) FROM main.sqlite_master WHERE type='table' AND name IN ('item_facts', 'item_fields')"
    ).fetchone()
    return rows[0] == 2


def facts_row(it: Item) -> tuple[Any, ...]:
    """The item_facts values of an item (after item_id and version), from its paths and meta."""
    meta = it.meta or {}
    # a picture taken out of a document is named by its hash: the document is the file a user knows
    path = it.source if meta.get("locator") else (it.image or it.source)
    name = os.path.basename(path)
    ext = os.path.splitext(name)[1].lower().lstrip(".") or None
    exif = meta.get("exif") or {}
    kind = meta.get("kind") if it.modality == "code" else None
    return (
        name,
        ext,
        kind,
        _int(meta.get("width")),
        _int(meta.get("height")),
        epoch(exif.get("taken")),
        _text(exif.get("camera")),
        _int(exif.get("orientation")),
    )


def locator_row(it: Item) -> tuple[Any, ...] | None:
    """The item_locators values of an item read from a document, None for a plain file's."""
    loc = (it.meta or {}).get("locator")
    if not isinstance(loc, dict) or not loc.get("doc"):
        return None
    return (
        _text(loc.get("doc")),
        _int(loc.get("page")),
        _int(loc.get("cell")),
        _text(loc.get("part")),
        _int(loc.get("slide")),
    )


def field_rows(it: Item) -> Iterator[tuple[str, float | None, str | None]]:
    """(name, num, txt) per value of the item's extra fields (meta["fields"], flattened by dots)."""
    fields = (it.meta or {}).get("fields") or {}
    for n, (name, value) in enumerate(_flatten(fields)):
        if n >= MAX_FIELDS:
            return
        for v in value if isinstance(value, list) else [value]:
            typed = typed_value(v)
            if typed is not None:
                yield (name, *typed)


def typed_value(v: Any) -> tuple[float | None, str | None] | None:
    """(num, txt) of one JSON scalar: numbers and booleans (0/1) as num, strings as txt, and a
    string holding an ISO date also as num (seconds since the epoch), so dates compare as dates."""
    if isinstance(v, bool):
        return float(v), "true" if v else "false"
    if isinstance(v, (int, float)):
        return (float(v), None) if v == v and abs(v) != float("inf") else None
    if isinstance(v, str):
        return epoch(v), v[:MAX_TEXT]
    return None


def write(con: sqlite3.Connection, ids: Sequence[int], items: Sequence[Item]) -> None:
    """Replace the facts and fields of items already inserted under `ids`."""
    placeholders = ",".join("?" * (2 + len(FACT_COLUMNS)))
    con.executemany(
        f"INSERT OR REPLACE INTO item_facts(item_id, version, {','.join(FACT_COLUMNS)}) VALUES({placeholders})",
        ((int(i), FACTS_VERSION, *facts_row(it)) for i, it in zip(ids, items)),
    )
    con.executemany("DELETE FROM item_fields WHERE item_id=?", ((int(i),) for i in ids))
    con.executemany("DELETE FROM item_locators WHERE item_id=?", ((int(i),) for i in ids))
    con.executemany(
        f"INSERT INTO item_locators(item_id, {','.join(LOCATOR_COLUMNS)}) VALUES(?,?,?,?,?,?)",
        ((int(i), *row) for i, it in zip(ids, items) if (row := locator_row(it)) is not None),
    )
    con.executemany(
        "INSERT INTO item_fields(item_id, name, num, txt) VALUES(?,?,?,?)",
        ((int(i), *row) for i, it in zip(ids, items) for row in field_rows(it)),
    )


def missing(db: sqlite3.Connection) -> int:
    """Items with no facts row of the current version: indexed before these fields were kept."""
    return db.execute(
        "SELECT COUNT(*) FROM items i LEFT JOIN item_facts f ON f.item_id = i.id "
        "WHERE f.item_id IS NULL OR f.version < ?",
        (FACTS_VERSION,),
    ).fetchone()[0]


def sources_missing(db: sqlite3.Connection) -> set[str]:
    """Sources with an item that lacks current facts: the next index re-reads them (no re-embedding)."""
    rows = db.execute(
        "SELECT DISTINCT i.source FROM items i LEFT JOIN item_facts f ON f.item_id = i.id "
        "WHERE f.item_id IS NULL OR f.version < ?",
        (FACTS_VERSION,),
    )
    return {r[0] for r in rows}


def field_names(db: sqlite3.Connection, limit: int = 50) -> list[str]:
    """Names of the extra fields this collection holds, for error messages and the UI."""
    rows = db.execute("SELECT DISTINCT name FROM item_fields ORDER BY name LIMIT ?", (limit,))
    return [r[0] for r in rows]


def epoch(value: Any) -> float | None:
    """Seconds since 1970 (UTC) of an ISO date or datetime string; a time without zone is read as UTC."""
    if not isinstance(value, str) or len(value) < 10 or not value[:4].isdigit() or value[4] != "-":
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        if len(text) == 10:
            d = dt.datetime.combine(dt.date.fromisoformat(text), dt.time())
        else:
            d = dt.datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    return d.timestamp()


def _flatten(d: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _flatten(v, name + ".")
        else:
            yield name, v


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _text(v: Any) -> str | None:
    return v[:MAX_TEXT] if isinstance(v, str) and v else None
