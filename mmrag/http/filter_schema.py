"""POST /search's `filter` in the OpenAPI spec: the JSON form of the filter language, by field type.

The schema says what the server accepts: a text field takes strings, a number field numbers, a
date field ISO dates (or seconds since 1970), `in` / `not in` a list, `glob` only text; and/or take
lists of filters, not one. mmrag/query/filters.py reads the same shape into the AST the CLI's
`--where` string gives, so both filter alike.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from mmrag.query.filter_sql import ALIASES, FIELDS
from mmrag.query.filters import MAX_NUMBER, MAX_TEXT, MAX_VALUES

REF = "#/components/schemas/Filter"
MARK = "x-mmrag-filter"  # where SearchRequest's schema says "a Filter", until document_filter links it
CMP = ["=", "!=", "<", "<=", ">", ">="]
LISTS = ["in", "not in"]


def _fields(kind: str) -> list[str]:
    names = [n for n, s in FIELDS.items() if s.type == kind or (kind == "text" and s.type == "path")]
    return sorted(names + [a for a, n in ALIASES.items() if n in names])


def _cond(field: dict, ops: list[str], value: dict) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"field": field, "op": {"enum": ops}, "value": value},
        "required": ["field", "op", "value"],
        "additionalProperties": False,
    }


def _typed(kind: str, value: dict, ops: list[str]) -> list[dict[str, Any]]:
    field = {"enum": _fields(kind)}
    listed = {"type": "array", "minItems": 1, "maxItems": MAX_VALUES, "items": value}
    return [_cond(field, ops, value), _cond(field, LISTS, listed)]


def schemas() -> dict[str, dict[str, Any]]:
    """Components: Filter (any of its forms) and one schema per form."""
    text = {"type": "string", "maxLength": MAX_TEXT}
    number = {"type": "number", "minimum": -MAX_NUMBER, "maximum": MAX_NUMBER}
    date = {
        "anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}, number]
    }
    meta_field = {"type": "string", "pattern": r"^meta\.[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$"}
    conditions = {
        "FilterText": _typed("text", text, [*CMP, "glob"]),
        "FilterNumber": _typed("number", number, CMP),
        "FilterDate": _typed("date", date, CMP),
        "FilterMeta": [
            _cond(meta_field, [*CMP, "glob"], text),
            _cond(meta_field, CMP, number),
            _cond(meta_field, LISTS, {"type": "array", "minItems": 1, "maxItems": MAX_VALUES, "items": text}),
            _cond(
                meta_field, LISTS, {"type": "array", "minItems": 1, "maxItems": MAX_VALUES, "items": number}
            ),
        ],
    }
    out: dict[str, dict[str, Any]] = {
        name: {"anyOf": forms, "description": _DOCS[name]} for name, forms in conditions.items()
    }
    for op in ("and", "or"):
        out[f"Filter{op.title()}"] = {
            "type": "object",
            "description": f"every filter in the list holds ({op})"
            if op == "and"
            else "any filter holds (or)",
            "properties": {
                op: {"type": "array", "minItems": 1, "maxItems": MAX_VALUES, "items": {"$ref": REF}}
            },
            "required": [op],
            "additionalProperties": False,
        }
    out["FilterNot"] = {
        "type": "object",
        "description": "the filter does not hold; items without the field pass",
        "properties": {"not": {"$ref": REF}},
        "required": ["not"],
        "additionalProperties": False,
    }
    out["Filter"] = {
        "description": "the filter language of `mmrag search --where` as JSON, e.g. "
        '{"and": [{"field": "lang", "op": "=", "value": "python"}, '
        '{"not": {"field": "path", "op": "glob", "value": "**/tests/**"}}]}',
        "anyOf": [
            {"$ref": f"#/components/schemas/{n}"} for n in (*conditions, "FilterAnd", "FilterOr", "FilterNot")
        ],
    }
    return out


_DOCS = {
    "FilterText": "a text field (path globs match relative to the indexed folder; = ignores case, but not on path)",
    "FilterNumber": "a number field: size in bytes, width and height in pixels, EXIF orientation",
    "FilterDate": "a date field: a date is its whole day (UTC), a date-time one instant, a number seconds since 1970",
    "FilterMeta": "meta.NAME: a JSONL record's field NAME (BEIR metadata or top level); lists match by any element",
}


def filter_field_schema(schema: dict[str, Any]) -> None:
    """SearchRequest.filter's schema: a Filter or null (pydantic would say any object)."""
    schema.clear()
    schema.update(
        anyOf=[
            {MARK: True},
            {"type": "null"},
        ],  # the $ref is put in by document_filter: pydantic resolves refs itself
        default=None,
        description="only items matching this filter (the JSON form of `mmrag search --where`); "
        "searched exactly among the matching items, so none is lost to post-filtering",
    )


def document_filter(app: FastAPI) -> None:
    """Add the filter's schemas to the app's OpenAPI components (POST /search refers to them)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        schema.setdefault("components", {}).setdefault("schemas", {}).update(schemas())
        _link(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _link(node: Any) -> None:
    """Replace each {MARK: True} with a $ref to the Filter component, in place."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, dict) and value.get(MARK) is True:
                node[key] = {"$ref": REF}
            else:
                _link(value)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            if isinstance(value, dict) and value.get(MARK) is True:
                node[i] = {"$ref": REF}
            else:
                _link(value)
