"""Filters to SQL: the field registry, a filter's WHERE clause, and the ids it allows.

A filter is evaluated in SQLite, the collection's source of truth, into the sorted ids it
allows; the vector and lexical indexes then search only those (indexes/*.search(allowed=...)),
so a filtered search returns only matching items and loses none of them to post-filtering.

Each condition is two-valued: an item without the field (a code file has no `taken`) fails the
condition, and `not` takes the complement, so `not taken >= 2023-01-01` keeps the code files
while `taken < 2023-01-01` does not. Text equality ignores case except on `path`; `glob` on
`path` matches the path relative to the folder it was indexed under, from any folder down
(`src/**` is every src folder's content, `**/tests/**` the same for tests), the file name alone
when the pattern has no `/` (`*.py`), or the absolute path when it starts with `/`; `**`
crosses folders, `*` and `?` do not. Dates without a zone are UTC; a date
without a time is its whole day (`taken = 2023-05-01` is that day).
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from dataclasses import dataclass, field

import numpy as np

from mmrag.errors import FilterError
from mmrag.query.filters import And, Cond, Filter, Not, Or, Value, fields_of
from mmrag.query.globs import check_glob, glob_match
from mmrag.storage import facts

META_PREFIX = "meta."  # meta.NAME: a JSONL record's extra field NAME (BEIR `metadata` or top-level)
DAY = 86_400.0
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class FieldSpec:
    """A filterable field: its type (text, path, number or date), its SQL and what it holds."""

    name: str
    type: str
    sql: str
    doc: str
    table: str = "i"  # i: items, f: item_facts, s: sources, l: item_locators


FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        FieldSpec("modality", "text", "i.modality", "image, code or text"),
        FieldSpec("path", "path", "i.source", "the item's file (a JSONL record's: the .jsonl)"),
        FieldSpec("name", "text", "f.name", "file name with its extension", "f"),
        FieldSpec("ext", "text", "f.ext", "extension, lower case, no dot: py, jpg", "f"),
        FieldSpec("size", "number", "s.size", "file size in bytes (2MB, 1MiB accepted)", "s"),
        FieldSpec("mtime", "date", "(s.mtime_ns / 1e9)", "file modification time", "s"),
        FieldSpec("lang", "text", "i.language", "code language: python, javascript, ..."),
        FieldSpec("kind", "text", "f.kind", "code symbol kind: function, class, method, module", "f"),
        FieldSpec("symbol", "text", "i.symbol", "code symbol name (Class.method)"),
        FieldSpec("key", "text", "i.key", "the item's stable key (a JSONL record's _id)"),
        FieldSpec("width", "number", "f.width", "image width in pixels", "f"),
        FieldSpec("height", "number", "f.height", "image height in pixels", "f"),
        FieldSpec("taken", "date", "f.taken", "EXIF date the photo was taken", "f"),
        FieldSpec("camera", "text", "f.camera", "EXIF camera make and model", "f"),
        FieldSpec("orientation", "number", "f.orientation", "EXIF orientation, 1-8", "f"),
        FieldSpec("doc", "text", "l.doc", "the document's format: pdf, ipynb, docx, pptx, ...", "l"),
        FieldSpec("page", "number", "l.page", "a document's page, 1-based (the physical number)", "l"),
        FieldSpec("cell", "number", "l.cell", "a notebook's cell, 1-based", "l"),
        FieldSpec("slide", "number", "l.slide", "a presentation's slide, 1-based", "l"),
        FieldSpec(
            "part",
            "text",
            "l.part",
            "part of a document: text, figure, page-render (a page without text), markdown, code-cell, "
            "output (a cell's output), attachment",
            "l",
        ),  # fmt: skip
    )
}
ALIASES = {"language": "lang", "extension": "ext", "date": "taken", "file": "path"}
FACT_FIELDS = tuple(n for n, s in FIELDS.items() if s.table == "f")  # missing from items indexed before facts


@dataclass
class Allowed:
    """What a filter lets through: sorted int64 ids, out of how many items, and notes for the user."""

    ids: np.ndarray
    total: int
    warnings: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        return len(self.ids) / self.total if self.total else 0.0


def valid_fields(db: sqlite3.Connection | None = None) -> str:
    extra = facts.field_names(db) if db is not None else []
    listed = ", ".join(f"{META_PREFIX}{n}" for n in extra[:20]) or "none yet"
    return f"{', '.join(FIELDS)}, or {META_PREFIX}NAME for a JSONL field (this collection: {listed})"


def evaluate(db: sqlite3.Connection, f: Filter) -> Allowed:
    """Run a filter in SQLite: the ids it allows, sorted, with warnings about items it cannot judge."""
    sql, params, tables = compile_filter(f, db)
    joins = ""
    if "f" in tables:
        joins += " LEFT JOIN item_facts f ON f.item_id = i.id"
    if "s" in tables:
        joins += " LEFT JOIN sources s ON s.path = i.source"
    if "l" in tables:
        joins += " LEFT JOIN item_locators l ON l.item_id = i.id"
    db.create_function("mm_glob", 4, _glob_sql, deterministic=True)
    try:
        rows = db.execute(f"SELECT i.id FROM items i{joins} WHERE {sql} ORDER BY i.id", params)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64)
    except (sqlite3.Error, UnicodeError, OverflowError) as e:  # e.g. a lone surrogate in a value
        raise FilterError(f"Filter could not run: {e}") from None
    total = db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    warnings = []
    used = {ALIASES.get(n, n) for n in fields_of(f)}
    if used & set(FACT_FIELDS) or any(n.startswith(META_PREFIX) for n in used):
        n_missing = facts.missing(db)
        if n_missing:
            warnings.append(
                f"{n_missing} of {total} items were indexed before mmrag kept file metadata: filters on "
                f"{', '.join(sorted(used & set(FACT_FIELDS) | {n for n in used if n.startswith(META_PREFIX)}))}"
                " pass none of them until the next `mmrag index` of their folders"
            )
    for name in sorted(n for n in used if n.startswith(META_PREFIX)):  # data, not schema: a note, no error
        if not db.execute(
            "SELECT 1 FROM item_fields WHERE name=? LIMIT 1", (name[len(META_PREFIX) :],)
        ).fetchone():
            warnings.append(f"No item has a JSONL field {name[len(META_PREFIX) :]!r}, so {name} matches nothing; "
                            f"valid: {valid_fields(db)}")  # fmt: skip
    return Allowed(ids, int(total), warnings)


def compile_filter(f: Filter, db: sqlite3.Connection | None = None) -> tuple[str, list, set[str]]:
    """(WHERE clause, parameters, tables it needs) for a filter; FilterError for unknown fields or
    values of the wrong type. `db` checks that meta.NAME fields exist (and lists the ones that do)."""
    params: list = []
    tables: set[str] = set()
    sql = _compile(f, db, params, tables)
    return sql, params, tables


def _compile(f: Filter, db, params: list, tables: set[str]) -> str:
    if isinstance(f, And):
        return "(" + " AND ".join(_compile(x, db, params, tables) for x in f.items) + ")"
    if isinstance(f, Or):
        return "(" + " OR ".join(_compile(x, db, params, tables) for x in f.items) + ")"
    if isinstance(f, Not):
        return f"(NOT {_compile(f.item, db, params, tables)})"
    name = ALIASES.get(f.field, f.field)
    if name.startswith(META_PREFIX) and len(name) > len(META_PREFIX):
        return _meta_cond(name[len(META_PREFIX) :], f, db, params)
    spec = FIELDS.get(name)
    if spec is None:
        raise FilterError(f"Unknown filter field {f.field!r}; valid: {valid_fields(db)}")
    tables.add(spec.table)
    return f"COALESCE({_field_cond(spec, f, params)}, 0)"


def _field_cond(spec: FieldSpec, f: Cond, params: list) -> str:
    col, op = spec.sql, f.op
    values = f.value if isinstance(f.value, tuple) else (f.value,)
    if spec.type == "date":
        if op == "glob":
            raise FilterError(
                f"glob does not apply to {spec.name!r}, a date; compare it: {spec.name} >= 2023-01-01"
            )
        spans = [_date_span(spec.name, v) for v in values]
        if op in ("in", "not in"):
            parts = []
            for lo, hi in spans:
                params.extend((lo, hi))
                parts.append(f"({col} >= ? AND {col} < ?)")
            inside = "(" + " OR ".join(parts) + ")"
            return inside if op == "in" else f"({col} IS NOT NULL AND NOT {inside})"
        lo, hi = spans[0]
        return _range(col, op, lo, hi, params)
    if spec.type == "number":
        if op == "glob":
            raise FilterError(
                f"glob does not apply to {spec.name!r}, a number; compare it: {spec.name} > 100"
            )
        nums = [_number(spec.name, v) for v in values]
        return _plain(col, op, nums, params)
    texts = [_text(spec, v) for v in values]
    if op == "glob":
        check_glob(texts[0])
        params.append(texts[0])
        if spec.type == "path":
            return f"mm_glob(?, {col}, (SELECT root FROM sources WHERE path = i.source), 0)"
        return f"mm_glob(?, {col}, NULL, 1)"
    collate = "" if spec.type == "path" else " COLLATE NOCASE"
    return _plain(col + collate, op, texts, params)


def _meta_cond(name: str, f: Cond, db, params: list) -> str:
    """EXISTS over the item's values of one extra field; numbers, dates and strings compare as such.

    A name no item has is not an error (records may gain it): evaluate() warns instead."""
    values = f.value if isinstance(f.value, tuple) else (f.value,)
    params.append(name)
    if f.op == "glob":
        check_glob(str(values[0]))
        params.append(str(values[0]))
        cond = "mm_glob(?, m.txt, NULL, 1)"
    elif all(isinstance(v, dt.date) for v in values):
        spans = [_date_span(f.field, v) for v in values]
        if f.op in ("in", "not in"):
            parts = []
            for lo, hi in spans:
                params.extend((lo, hi))
                parts.append("(m.num >= ? AND m.num < ?)")
            inside = "(" + " OR ".join(parts) + ")"
            cond = inside if f.op == "in" else f"(m.num IS NOT NULL AND NOT {inside})"
        else:
            cond = _range("m.num", f.op, *spans[0], params)
    elif all(isinstance(v, (int, float)) for v in values):
        cond = _plain("m.num", f.op, [float(v) for v in values], params)
    elif all(isinstance(v, str) for v in values):
        cond = _plain("m.txt COLLATE NOCASE", f.op, list(values), params)
    else:
        raise FilterError(f"Values for {f.field!r} mix numbers, dates and strings: {list(values)}")
    return (
        f"EXISTS(SELECT 1 FROM item_fields m WHERE m.item_id = i.id AND m.name = ? AND COALESCE({cond}, 0))"
    )


def _plain(col: str, op: str, values: list, params: list) -> str:
    if op in ("in", "not in"):
        params.extend(values)
        marks = ",".join("?" * len(values))
        return f"({col} IN ({marks}))" if op == "in" else f"({col} NOT IN ({marks}))"
    params.append(values[0])
    return f"({col} {'=' if op == '=' else op} ?)"


def _range(col: str, op: str, lo: float, hi: float, params: list) -> str:
    """A comparison with a span [lo, hi): a whole day, or one instant (hi = lo)."""
    if hi == lo:
        params.append(lo)
        return f"({col} {op} ?)"
    if op == "=":
        params.extend((lo, hi))
        return f"({col} >= ? AND {col} < ?)"
    if op == "!=":
        params.extend((lo, hi))
        return f"({col} < ? OR {col} >= ?)"
    bound = {"<": ("<", lo), "<=": ("<", hi), ">": (">=", hi), ">=": (">=", lo)}[op]
    params.append(bound[1])
    return f"({col} {bound[0]} ?)"


def _date_span(name: str, v: Value) -> tuple[float, float]:
    """[lo, hi) seconds of a date value: a day for a date, one instant for a datetime or a number."""
    if isinstance(v, str):
        from mmrag.query.filters import parse_date

        v = parse_date(v)
    if isinstance(v, dt.datetime):  # timedelta arithmetic: no overflow at year 1 or 9999 with an offset
        d = v if v.tzinfo is not None else v.replace(tzinfo=dt.timezone.utc)
        t = (d - _EPOCH).total_seconds()
        return t, t
    if isinstance(v, dt.date):
        lo = (dt.datetime.combine(v, dt.time(), tzinfo=dt.timezone.utc) - _EPOCH).total_seconds()
        return lo, lo + DAY
    if isinstance(v, (int, float)):
        return float(v), float(v)
    raise FilterError(f"{name!r} is a date; got {v!r}: write YYYY-MM-DD")


def _number(name: str, v: Value) -> float | int:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v
    raise FilterError(f"{name!r} is a number; got {v!r}")


def _text(spec: FieldSpec, v: Value) -> str:
    if isinstance(v, dt.date):
        raise FilterError(f"{spec.name!r} is text; got the date {v.isoformat()}: quote it to compare as text")
    if not isinstance(v, str):
        raise FilterError(f"{spec.name!r} is text; got the number {v!r}: quote it to compare as text")
    s = v
    if spec.name == "ext":
        s = s.lower().lstrip(".")
    if spec.type == "path" and s.startswith("~"):
        s = os.path.expanduser(s)
    return s


# --- glob (mmrag/query/globs.py matches) ------------------------------------------------------
def _glob_sql(pattern: str, value: str | None, root: str | None, nocase: int) -> int:
    if value is None or pattern is None:
        return 0
    if nocase:
        return int(glob_match(pattern, value, folders=False))
    return int(glob_path(pattern, value, root))


def glob_path(pattern: str, path: str, root: str | None) -> bool:
    """Whether `path` matches a path glob: relative to `root`, by file name, or absolute (see module doc)."""
    pattern = os.path.expanduser(pattern) if pattern.startswith("~") else pattern
    if pattern.startswith("/"):
        target = path
    elif "/" not in pattern.rstrip("/"):
        target = os.path.basename(path)
    else:
        target = _relative(path, root)
        pattern = pattern if pattern.startswith("**/") else "**/" + pattern  # src/** at any depth
    return glob_match(pattern, target, folders=True)


def _relative(path: str, root: str | None) -> str:
    if root and root != path:
        prefix = root.rstrip("/") + "/"
        if path.startswith(prefix):
            return path[len(prefix) :]
    return os.path.basename(path) if root == path else path.lstrip("/")


def field_values(db: sqlite3.Connection, name: str, limit: int = 100) -> list[str]:
    """Distinct values of a text field in this collection, sorted: what a picker offers (the UI's languages)."""
    spec = FIELDS.get(ALIASES.get(name, name))
    if spec is None or spec.type not in ("text", "path"):
        raise FilterError(
            f"No value list for {name!r}; text fields: {[n for n, s in FIELDS.items() if s.type == 'text']}"
        )
    joins = {
        "f": " LEFT JOIN item_facts f ON f.item_id = i.id",
        "s": " LEFT JOIN sources s ON s.path = i.source",
        "l": " LEFT JOIN item_locators l ON l.item_id = i.id",
    }
    rows = db.execute(
        f"SELECT DISTINCT {spec.sql} FROM items i{joins.get(spec.table, '')} WHERE {spec.sql} IS NOT NULL "
        f"ORDER BY 1 LIMIT ?",
        (limit,),
    )
    return [r[0] for r in rows]
