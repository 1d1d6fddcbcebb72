"""Jupyter notebooks (nbformat): code cells as code in the kernel's language, markdown cells as text
under their heading path, pictures a cell drew (and a markdown cell's attachments) as image items,
and a cell's text and error output, kept short, as a text item beside it. Every item cites its cell
(1-based, as Jupyter's own "cell N" counts) and execution count in a Locator.

nbformat is pure Python, so notebooks are read in-process; the file size limit bounds its work.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import re
import warnings
from collections.abc import Callable

from mmrag.errors import IngestError
from mmrag.ingest.chunking import Lines, line_windows, pack, paragraphs
from mmrag.ingest.decode import read_bytes
from mmrag.ingest.pictures import picture_dir, store_bytes
from mmrag.ingest.spec import IngestCfg, Source
from mmrag.ingest.text import markdown_headings
from mmrag.items import Item, Locator

NOTEBOOK_EXTS = (".ipynb",)
RASTER = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp"}
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")
_ATTACHMENT = re.compile(r"!\[([^\]]*)\]\(attachment:([^)\s]+)")
# kernel names that do not say their language in kernelspec.language
_KERNELS = {"ir": "r", "julia": "julia", "javascript": "javascript", "bash": "bash", "scala": "scala",
            "xcpp": "cpp", "c++": "cpp", "gophernotes": "go", "evcxr": "rust", "rust": "rust"}  # fmt: skip
_LANG_NAMES = {"c++": "cpp", "c#": "csharp", "f#": "fsharp", "js": "javascript", "ts": "typescript"}


def read_notebook(
    source: Source, cfg: IngestCfg, on_error: Callable[[IngestError], None] | None = None
) -> list[Item]:
    """Items of one notebook; an output mmrag cannot read (SVG only, a picture over the pixel cap)
    goes to on_error and the rest is kept."""
    path = source.path
    nb = _load(path, cfg)
    reader = _Notebook(path, cfg, kernel_language(nb))
    for n, cell in enumerate(nb.get("cells") or [], 1):
        reader.cell(n, cell)
    for where, reason in reader.notes:
        err = IngestError(where, reason)
        if on_error is None:
            raise err
        on_error(err)
    return reader.items


def _load(path: str, cfg: IngestCfg):
    try:
        import nbformat
    except ImportError:
        raise IngestError(
            path, "notebook support is not installed: pip install 'mmrag[docs]' (nbformat)"
        ) from None
    raw = read_bytes(path, cfg.max_document_bytes)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise IngestError(path, f"not a notebook: not UTF-8 JSON ({e.reason} at byte {e.start})") from None
    if not text.strip():
        raise IngestError(path, "empty file, not a notebook")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nbformat warns about schema details it repairs
            return nbformat.reads(text, as_version=4)
    except (json.JSONDecodeError, nbformat.reader.NotJSONError) as e:
        where = (
            f" ({e.msg} at line {e.lineno} column {e.colno})" if isinstance(e, json.JSONDecodeError) else ""
        )
        raise IngestError(path, f"invalid JSON, not a notebook{where}") from None
    except (RecursionError, MemoryError):
        raise
    except Exception as e:  # nbformat's own errors: no version, an unknown one, a broken structure
        raise IngestError(path, f"not a notebook nbformat can read ({type(e).__name__}: {e})") from None


def kernel_language(nb) -> str:
    """The notebook's language: kernelspec.language, else language_info.name, else a known kernel's
    name, else "unknown" (a notebook does not say Python by saying nothing)."""
    meta = nb.get("metadata") or {}
    spec = meta.get("kernelspec") or {}
    info = meta.get("language_info") or {}
    for value in (spec.get("language"), info.get("name"), meta.get("language")):  # the last: nbformat 3
        if isinstance(value, str) and value.strip():
            low = value.strip().lower()
            return _LANG_NAMES.get(low, low)
    name = str(spec.get("name") or "").lower()
    for prefix, lang in _KERNELS.items():
        if name.startswith(prefix):
            return lang
    return "python" if name.startswith("python") else "unknown"


def _text(value) -> str:
    """A cell source or an output's text: nbformat's string, or a list of lines in a raw v3 file."""
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return value if isinstance(value, str) else ""


def _short(text: str, limit: int) -> str:
    text = _ANSI.sub("", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


class _Notebook:
    def __init__(self, path: str, cfg: IngestCfg, language: str):
        self.path, self.cfg, self.language = path, cfg, language
        self.name = os.path.basename(path)
        self.folder = picture_dir(cfg)
        self.items: list[Item] = []
        self.notes: list[tuple[str, str]] = []
        self.stack: list[tuple[int, str]] = []  # the heading path so far, across cells

    @property
    def heading(self) -> str | None:
        return " > ".join(t for _, t in self.stack if t) or None

    def cell(self, n: int, cell) -> None:
        kind = cell.get("cell_type")
        src = _text(cell.get("source"))
        count = cell.get("execution_count") if kind == "code" else None
        loc = dict(doc="ipynb", cell=n, execution_count=count if isinstance(count, int) else None)
        if kind == "markdown":
            self._markdown(n, src, loc)
            self._attachments(n, cell, src, loc)
        elif kind == "code":
            self._code(n, src, loc)
            self._outputs(n, cell.get("outputs") or [], src, loc)

    def _markdown(self, n: int, src: str, loc: dict) -> None:
        doc = Lines(src)
        heads = markdown_headings(doc)
        starts: list[tuple[int, tuple | None]] = [(h[0], h) for h in heads]
        if not starts or starts[0][0] > 0:  # text before the cell's first heading
            starts.insert(0, (0, None))
        k = 0
        for idx, (a, head) in enumerate(starts):
            if head is not None:
                level, title = head[2], head[3]
                while self.stack and self.stack[-1][0] >= level:
                    self.stack.pop()
                self.stack.append((level, title))
            b = starts[idx + 1][0] - 1 if idx + 1 < len(starts) else len(doc) - 1
            for p in pack(doc, paragraphs(doc, a, b), self.cfg.max_chunk_chars, self.cfg.chunk_overlap_chars):
                k += 1
                key = f"{self.path}#cell{n}" + (f".{k}" if k > 1 else "")
                self.items.append(Item(
                    key=key, modality="text", source=self.path, text=p.text, title=self.heading or self.name,
                    start_line=p.start_line, end_line=p.end_line,
                    meta={"format": "ipynb", "locator": Locator(**loc, part="markdown", heading=self.heading).to_dict()},
                ))  # fmt: skip

    def _code(self, n: int, src: str, loc: dict) -> None:
        if not src.strip():
            return
        meta = {"format": "ipynb", "kind": "cell",
                "locator": Locator(**loc, part="code-cell", heading=self.heading).to_dict()}  # fmt: skip
        doc = Lines(src)
        spans = [(0, len(doc) - 1)]
        if len(src) > self.cfg.max_code_chars:  # a long cell in windows of lines, as any long file
            spans = line_windows(
                doc, 0, len(doc) - 1, self.cfg.code_window_lines, self.cfg.code_window_overlap
            )
        for a, b in spans:
            key = f"{self.path}#cell{n}" + (f".L{a + 1}-{b + 1}" if len(spans) > 1 else "")
            self.items.append(Item(
                key=key, modality="code", source=self.path, text=doc.text(a, b)[: self.cfg.max_code_chars],
                title=self.heading or self.name, language=self.language, start_line=a + 1, end_line=b + 1,
                meta=dict(meta),
            ))  # fmt: skip

    def _outputs(self, n: int, outputs: list, src: str, loc: dict) -> None:
        texts: list[str] = []
        pictures = 0
        for out in outputs:
            kind = out.get("output_type")
            if kind == "stream":
                texts.append(_text(out.get("text")))
            elif kind == "error":
                tb = _ANSI.sub("", "\n".join(_text(t) for t in out.get("traceback") or []))
                last = [line for line in tb.strip().splitlines() if any(c.isalnum() for c in line)][-3:]
                head = f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"
                texts.append("\n".join([head, *[x for x in last if x.strip() != head.strip()]]))
            elif kind in ("execute_result", "display_data"):
                data = out.get("data") or {}
                mime = next((m for m in RASTER if m in data), None)
                if mime is not None:
                    pictures += 1
                    self._picture(n, data[mime], mime, loc, pictures, "output", self._caption(src))
                elif "image/svg+xml" in data:
                    self.notes.append((f"{self.path}#cell{n}",
                                       f"cell {n} drew an SVG picture only; mmrag does not rasterise SVG, so it "
                                       "is not in the image index"))  # fmt: skip
                plain = _text(data.get("text/plain"))
                if plain and mime is None and "image/svg+xml" not in data:
                    texts.append(plain)
        text = _short("\n".join(t for t in texts if t.strip()), self.cfg.max_output_chars)
        if text:
            self.items.append(Item(
                key=f"{self.path}#cell{n}.out", modality="text", source=self.path, text=text,
                title=f"{self.name} cell {n} output",
                meta={"format": "ipynb", "locator": Locator(**loc, part="output", heading=self.heading).to_dict()},
            ))  # fmt: skip

    def _attachments(self, n: int, cell, src: str, loc: dict) -> None:
        alts = {name: alt for alt, name in _ATTACHMENT.findall(src)}
        for k, (name, bundle) in enumerate(sorted((cell.get("attachments") or {}).items()), 1):
            mime = next((m for m in RASTER if m in (bundle or {})), None)
            if mime is None:
                continue
            caption = alts.get(name) or self.heading or ""
            self._picture(n, bundle[mime], mime, loc, k, "attachment", caption)

    def _caption(self, src: str) -> str:
        """What a plot is about, as far as the notebook says: the heading path and the cell's first comment."""
        comment = next(
            (
                ln.strip().lstrip("#/ ").strip()
                for ln in src.splitlines()
                if ln.strip().startswith(("#", "//"))
            ),
            "",
        )
        return " — ".join(x for x in (self.heading or "", comment) if x)[: self.cfg.max_caption_chars]  # fmt: skip

    def _picture(self, n: int, payload, mime: str, loc: dict, k: int, part: str, caption: str) -> None:
        where = f"{self.path}#cell{n}"
        try:
            data = base64.b64decode(_text(payload), validate=False)
        except (binascii.Error, ValueError):
            self.notes.append((where, f"cell {n}: a {mime} {part} is not valid base64; skipped"))
            return
        size = _picture_size(data)
        if isinstance(size, str):
            self.notes.append((where, f"cell {n}: a {mime} {part} {size}; skipped"))
            return
        w, h = size
        if w * h > self.cfg.max_image_pixels:
            self.notes.append((where, f"cell {n}: a picture of {w}x{h} pixels is over the "
                                      f"{self.cfg.max_image_pixels}-pixel cap; skipped"))  # fmt: skip
            return
        image_path, sha = store_bytes(data, RASTER[mime], self.folder)
        suffix = "out" if part == "output" else "att"
        self.items.append(Item(
            key=f"{self.path}#cell{n}.{suffix}{k}", modality="image", source=self.path, text=caption,
            title=f"{self.name} cell {n}", image=image_path,
            meta={"width": w, "height": h, "format": "ipynb", "image_sha256": sha,
                  "caption_source": "document" if caption else "none",
                  "locator": Locator(**loc, part=part, heading=self.heading).to_dict()},
        ))  # fmt: skip


def _picture_size(data: bytes) -> tuple[int, int] | str:
    """(width, height) from the picture's header, without decoding its pixels, or why not."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                return img.size
    except Image.DecompressionBombError as e:
        return f"is over Pillow's decompression-bomb limit ({e})"
    except Exception:
        return "is not a picture Pillow can read"
