"""JSONL corpora in the BEIR layout: one record per line, `_id` and `text` (plus optional fields)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator

from mmrag.errors import IngestError
from mmrag.ingest.metadata import jsonl_fields
from mmrag.ingest.spec import IngestCfg, Source
from mmrag.items import MODALITIES, Item

OnError = Callable[[IngestError], None]
JSONL_EXTS = (".jsonl", ".ndjson")


def _raise(err: IngestError) -> None:
    raise err


def iter_jsonl(path: str, on_error: OnError | None = None) -> Iterator[Item]:
    """Items from a BEIR-style JSONL file; a bad line is reported (or raised without on_error) and skipped."""
    report = on_error or _raise
    base = os.path.dirname(path)
    seen: dict[str, int] = {}
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below; opening errors are one IngestError
    except OSError as e:
        raise IngestError(path, f"cannot read: {e.strerror or e}") from e
    with f:
        for n, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                item = _record(raw, n, path, base)
            except IngestError as e:
                report(e)
                continue
            if item.key in seen:
                report(
                    IngestError(
                        path,
                        f"line {n}: duplicate _id {item.key!r} (first on line {seen[item.key]}); kept the first",
                    )
                )
                continue
            seen[item.key] = n
            yield item


def _record(raw: bytes, n: int, path: str, base: str) -> Item:
    """One line to one Item, or an IngestError naming the line and what is wrong with it."""

    def bad(reason: str) -> IngestError:
        return IngestError(path, f"line {n}: {reason}")

    try:
        rec = json.loads(raw.decode("utf-8-sig" if n == 1 else "utf-8"))
    except UnicodeDecodeError as e:
        raise bad(f"not UTF-8 ({e.reason} at byte {e.start})") from e
    except json.JSONDecodeError as e:
        raise bad(f"bad JSON ({e.msg} at column {e.colno})") from e
    if not isinstance(rec, dict):
        raise bad(f"expected a JSON object, got {type(rec).__name__}")
    _id = rec.get("_id")
    if isinstance(_id, bool) or not isinstance(_id, (str, int)) or str(_id) == "":
        raise bad(f"missing or invalid _id ({_id!r}); it must be a non-empty string or integer")
    modality = rec.get("modality", "text")
    if modality not in MODALITIES:
        raise bad(f"unknown modality {modality!r}; valid modalities are {MODALITIES}")
    text, title, caption = rec.get("text"), rec.get("title", ""), rec.get("caption")
    for name, value in (("title", title), ("caption", caption), ("language", rec.get("language"))):
        if value is not None and not isinstance(value, str):
            raise bad(f"field {name!r} must be a string, got {type(value).__name__}")
    image = None
    if modality == "image":
        rel = rec.get("image")
        if not isinstance(rel, str) or not rel:
            raise bad("image record without an 'image' path")
        image = os.path.abspath(os.path.join(base, os.path.expanduser(rel)))
        if not os.path.isfile(image):
            raise bad(f"image not found: {image}")
        text = caption if caption else text if isinstance(text, str) else ""
    elif not isinstance(text, str):
        raise bad("missing 'text'" if text is None else f"'text' must be a string, got {type(text).__name__}")
    elif not text.strip() and not title.strip():
        raise bad("empty 'text' and 'title'")
    return Item(
        key=str(_id),
        modality=modality,
        source=path,
        text=text,
        title=title or "",
        language=rec.get("language") if modality == "code" else None,
        image=image,
        meta={"line": n, **({"fields": fields} if (fields := jsonl_fields(rec)) else {})},
    )


def read_jsonl(source: Source, cfg: IngestCfg, on_error: OnError | None = None) -> list[Item]:
    return list(iter_jsonl(source.path, on_error))
