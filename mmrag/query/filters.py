"""The filter language: one AST from a CLI string (parsed with lark) or a REST JSON object.

    lang = python and path glob "src/**" and not path glob "**/tests/**"
    taken >= 2023-01-01 and width > 2000
    ext in (jpg, png) or meta.year >= 2020

Comparisons (= != < <= > >=), `in (...)`, `not in (...)`, `glob "PATTERN"`, and / or / not
with parentheses; values are quoted strings, bare words, numbers (with an optional KB/MB/GB or
KiB/MiB/GiB suffix) and dates (YYYY-MM-DD, or with a time: 2023-05-01T12:30). The JSON form says
the same as nested objects: {"and": [...]}, {"or": [...]}, {"not": {...}} and
{"field": "lang", "op": "=", "value": "python"}. Which fields exist, and their types, is
mmrag/query/filter_sql.py's business: this module only reads the shape.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from lark import Lark, Transformer

from mmrag.errors import FilterError

OPS = ("=", "!=", "<", "<=", ">", ">=", "in", "not in", "glob")
MAX_FILTER_CHARS = 4_000  # a filter is a line a person writes; longer input is a mistake or an attack
MAX_DEPTH = 32  # nesting deeper than this is not a filter anyone means
MAX_NUMBER = 1e15  # bytes up to a petabyte, seconds up to year 31,000,000: past this a number is a mistake
MAX_VALUES = 100  # values in one `in` list, or filters in one and/or: more is a join, not a filter
MAX_TEXT = 1_000  # characters of one JSON text value (a path, a glob, a name)

_GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr (_OR and_expr)*
?and_expr: not_expr (_AND not_expr)*
?not_expr: _NOT not_expr -> negate
         | atom
?atom: condition
     | "(" or_expr ")"
condition: field CMP value                      -> compare
         | field _IN "(" value ("," value)* ","? ")"   -> member
         | field _NOT _IN "(" value ("," value)* ","? ")" -> not_member
         | field _GLOB STRING                  -> glob
field: NAME
?value: STRING -> string
      | DATETIME -> datetime
      | DATE -> date
      | NUMBER -> number
      | NAME -> word
CMP: "==" | "!=" | "<=" | ">=" | "=" | "<" | ">"
_OR.2: /or\b/i
_AND.2: /and\b/i
_NOT.2: /not\b/i
_IN.2: /in\b/i
_GLOB.2: /glob\b/i
DATETIME.3: /\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?(Z|[+-]\d{2}:?\d{2})?/
DATE.3: /\d{4}-\d{2}-\d{2}/
NUMBER.1: /[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?([kKmMgGtT]i?[bB])?/
NAME: /[A-Za-z_.][A-Za-z0-9_.+#\-]*/
STRING: /"([^"\\]|\\.)*"/ | /'([^'\\]|\\.)*'/
%import common.WS
%ignore WS
"""

_UNITS = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_BINARY = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}

Value = str | float | int | dt.date | dt.datetime


@dataclass(frozen=True)
class Cond:
    """One condition on one field: `op` is one of OPS; `value` a tuple for in / not in."""

    field: str
    op: str
    value: Value | tuple[Value, ...]


@dataclass(frozen=True)
class And:
    items: tuple[Filter, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Filter, ...]


@dataclass(frozen=True)
class Not:
    item: Filter


Filter = Cond | And | Or | Not


def parse_filter(text: str) -> Filter:
    """The AST of a filter string; FilterError says where and what was expected when it is not one."""
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, VisitError

    if not isinstance(text, str) or not text.strip():
        raise FilterError("Empty filter: write e.g. `lang = python` or `taken >= 2023-01-01`")
    if len(text) > MAX_FILTER_CHARS:
        raise FilterError(f"Filter of {len(text)} characters is over the {MAX_FILTER_CHARS}-character limit")
    try:
        tree = _parser().parse(text)
        out = _ToAst().transform(tree)
    except VisitError as e:
        raise e.orig_exc if isinstance(e.orig_exc, FilterError) else FilterError(str(e.orig_exc)) from None
    except UnexpectedEOF:
        raise FilterError(f"Filter {text!r} ends too early: a condition is `FIELD OP VALUE`") from None
    except UnexpectedCharacters as e:
        raise FilterError(
            f"Bad filter at column {e.column}: unexpected {text[e.pos_in_stream : e.pos_in_stream + 12]!r} "
            f"in {text!r}; a condition is `FIELD OP VALUE` (OP: {', '.join(OPS)}), joined by and / or / not"
        ) from None
    except UnexpectedInput as e:
        token = getattr(e, "token", None)
        if token is not None and getattr(token, "type", "") == "$END":
            raise FilterError(f"Filter {text!r} ends too early: a condition is `FIELD OP VALUE`") from None
        expected = sorted(getattr(e, "expected", ()) or ())
        raise FilterError(
            f"Bad filter at column {getattr(e, 'column', '?')}: unexpected {str(token)!r} in {text!r}"
            + (f"; expected one of {', '.join(_pretty(x) for x in expected)}" if expected else "")
        ) from None
    _check_depth(out)
    return out


def from_json(obj: Any, _depth: int = 0) -> Filter:
    """The AST of a JSON filter ({"and": [...]}, {"or": [...]}, {"not": {...}}, {"field", "op", "value"})."""
    if _depth > MAX_DEPTH:
        raise FilterError(f"Filter nested deeper than {MAX_DEPTH} levels")
    if not isinstance(obj, dict):
        raise FilterError(f"A JSON filter is an object, got {type(obj).__name__}: {str(obj)[:60]!r}")
    keys = set(obj)
    if keys in ({"and"}, {"or"}):
        (name,) = keys
        items = obj[name]
        if not isinstance(items, list) or not items:
            raise FilterError(f'"{name}" takes a non-empty list of filters, got {str(items)[:60]!r}')
        if len(items) > MAX_VALUES:
            raise FilterError(f'"{name}" takes at most {MAX_VALUES} filters, got {len(items)}')
        parts = tuple(from_json(x, _depth + 1) for x in items)
        return And(parts) if name == "and" else Or(parts)
    if keys == {"not"}:
        return Not(from_json(obj["not"], _depth + 1))
    if keys == {"field", "op", "value"}:
        field, op, value = obj["field"], obj["op"], obj["value"]
        if not isinstance(field, str) or not field:
            raise FilterError(f'"field" must be a field name, got {field!r}')
        op = "=" if op == "==" else op
        if op not in OPS:
            raise FilterError(f"Unknown filter op {op!r} on field {field!r}; valid: {list(OPS)}")
        if op in ("in", "not in"):
            if not isinstance(value, list) or not value:
                raise FilterError(f'"{op}" on field {field!r} takes a non-empty list of values')
            if len(value) > MAX_VALUES:
                raise FilterError(
                    f'"{op}" on field {field!r} takes at most {MAX_VALUES} values, got {len(value)}'
                )
            return Cond(field, op, tuple(_json_value(field, v) for v in value))
        if op == "glob" and not isinstance(value, str):
            raise FilterError(f"glob on field {field!r} takes a string pattern, got {value!r}")
        return Cond(field, op, _json_value(field, value))
    raise FilterError(
        'A JSON filter is {"and": [...]}, {"or": [...]}, {"not": {...}} or '
        f'{{"field": ..., "op": ..., "value": ...}}; got keys {sorted(map(str, keys))}'
    )


def to_json(f: Filter) -> dict[str, Any]:
    """The JSON form of an AST (dates as ISO strings): from_json(to_json(f)) == f up to date types."""
    if isinstance(f, And):
        return {"and": [to_json(x) for x in f.items]}
    if isinstance(f, Or):
        return {"or": [to_json(x) for x in f.items]}
    if isinstance(f, Not):
        return {"not": to_json(f.item)}
    value = [_plain(v) for v in f.value] if isinstance(f.value, tuple) else _plain(f.value)
    return {"field": f.field, "op": f.op, "value": value}


def fields_of(f: Filter) -> list[str]:
    """Every field a filter names, in order of appearance."""
    if isinstance(f, Cond):
        return [f.field]
    if isinstance(f, Not):
        return fields_of(f.item)
    return [name for x in f.items for name in fields_of(x)]


def _plain(v: Value) -> Any:
    return v.isoformat() if isinstance(v, dt.date) else v


def _json_value(field: str, v: Any) -> Value:
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise FilterError(f"Filter value for {field!r} must be a string or a number, got {v!r}")
    if isinstance(v, float) and v != v:
        raise FilterError(f"Filter value for {field!r} is NaN")
    if isinstance(v, str) and len(v) > MAX_TEXT:
        raise FilterError(f"Filter value for {field!r} is over {MAX_TEXT} characters ({len(v)})")
    if isinstance(v, str):  # JSON may carry lone surrogates, which SQLite cannot store: U+FFFD instead
        return v.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if abs(v) > MAX_NUMBER:
        raise FilterError(f"Filter value for {field!r} is out of range (|value| <= {MAX_NUMBER:g}): {v!r}")
    return v


def _check_depth(f: Filter, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise FilterError(f"Filter nested deeper than {MAX_DEPTH} levels")
    if isinstance(f, Not):
        _check_depth(f.item, depth + 1)
    elif isinstance(f, (And, Or)):
        for x in f.items:
            _check_depth(x, depth + 1)


def _pretty(terminal: str) -> str:
    names = {"_AND": "and", "_OR": "or", "_NOT": "not", "_IN": "in", "_GLOB": "glob", "LPAR": "(",
             "RPAR": ")", "COMMA": ",", "CMP": "a comparison (= != < <= > >=)", "NAME": "a name",
             "STRING": "a quoted string", "NUMBER": "a number", "DATE": "a date"}  # fmt: skip
    return names.get(terminal, terminal)


def number(text: str) -> float | int:
    """'12' -> 12, '1.5' -> 1.5, '2MB' -> 2000000, '1KiB' -> 1024."""
    t = text.strip()
    unit = ""
    while t and t[-1].isalpha():
        unit = t[-1] + unit
        t = t[:-1]
    value = float(t)
    if unit:
        u = unit.lower()
        scale = _BINARY[u[0]] if u.endswith("ib") else _UNITS[u[0]]
        value *= scale
    if not abs(value) <= MAX_NUMBER:
        raise FilterError(f"Number {text!r} is out of range (|value| <= {MAX_NUMBER:g})")
    return int(value) if value.is_integer() else value


def parse_date(text: str) -> dt.date | dt.datetime:
    """'2023-01-01' -> date; '2023-01-01T10:00' (or with a space, seconds, Z or an offset) -> datetime."""
    t = text.strip().upper()
    try:
        if len(t) == 10:
            return dt.date.fromisoformat(t)
        return dt.datetime.fromisoformat(t.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        raise FilterError(f"Not a date: {text!r}; write YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]") from None


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(_GRAMMAR, parser="lalr", maybe_placeholders=False)


class _ToAst(Transformer):
    """lark tree -> Filter."""

    def or_expr(self, items):
        return Or(tuple(items))

    def and_expr(self, items):
        return And(tuple(items))

    def negate(self, items):
        return Not(items[0])

    def field(self, names):
        return ".".join(str(n) for n in names)

    def compare(self, items):
        field, op, value = items
        op = "=" if str(op) == "==" else str(op)
        return Cond(field, op, value)

    def member(self, items):
        return Cond(items[0], "in", tuple(items[1:]))

    def not_member(self, items):
        return Cond(items[0], "not in", tuple(items[1:]))

    def glob(self, items):
        return Cond(items[0], "glob", _unquote(str(items[1])))

    def string(self, items):
        return _unquote(str(items[0]))

    def word(self, items):
        return str(items[0])

    def number(self, items):
        return number(str(items[0]))

    def date(self, items):
        return parse_date(str(items[0]))

    def datetime(self, items):
        return parse_date(str(items[0]))


def _unquote(s: str) -> str:
    body = s[1:-1]
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            out.append(body[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)
