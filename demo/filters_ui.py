"""The search form's filter controls: language, a date range, a folder; read as one `--where` filter.

The controls write the filter language of `mmrag search --where` (mmrag/query/filters.py), so the UI
filters exactly as the CLI and REST do; the filter in effect is shown under the controls.
"""

from __future__ import annotations

import re

import gradio as gr

from mmrag.http.service import Service
from mmrag.query.filter_sql import field_values

ANY = "any"
DATE_FIELDS = {"taken (photos)": "taken", "modified (files)": "mtime"}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def controls(svc: Service) -> tuple[gr.components.Component, ...]:
    """The filter controls inside an accordion: (language, date field, from, to, folder)."""
    try:
        langs = field_values(svc.engine.collection.store.db, "lang")
    except Exception:  # an empty or old collection: the choice of "any" still works
        langs = []
    with gr.Accordion("Filters", open=False, elem_id="mm-filters"):
        with gr.Row():
            lang = gr.Dropdown([ANY, *langs], value=ANY, label="Language", elem_id="mm-lang", scale=1)
            folder = gr.Textbox(
                label="Folder",
                placeholder="src  ·  src/**/*.py  ·  /abs/path",
                elem_id="mm-filter-folder",
                scale=2,
            )
        with gr.Row():
            date_field = gr.Radio(
                list(DATE_FIELDS), value="taken (photos)", label="Date", elem_id="mm-date-field", scale=1
            )
            date_from = gr.Textbox(label="From", placeholder="2023-01-01", elem_id="mm-date-from", scale=1)
            date_to = gr.Textbox(
                label="To (inclusive)", placeholder="2023-12-31", elem_id="mm-date-to", scale=1
            )
    return lang, date_field, date_from, date_to, folder


def where_from(
    lang: str | None, date_field: str | None, date_from: str, date_to: str, folder: str
) -> str | None:
    """The filter the controls say, or None when they say nothing. Bad dates are the filter's to report."""
    parts = []
    if lang and lang != ANY:
        parts.append(f"lang = {_quote(lang)}")
    field = DATE_FIELDS.get(date_field or "", "taken")
    if (date_from or "").strip():
        parts.append(f"{field} >= {_date(date_from)}")
    if (date_to or "").strip():
        parts.append(f"{field} <= {_date(date_to)}")  # a date is its whole day: the end day is in
    folder = (folder or "").strip()
    if folder:
        pattern = folder if any(ch in folder for ch in "*?[") else folder.rstrip("/") + "/**"
        parts.append(f"path glob {_quote(pattern)}")
    return " and ".join(parts) or None


def _date(text: str) -> str:
    text = text.strip()
    return text if _DATE.match(text) else _quote(text)  # quoted: the filter says why it is no date


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
