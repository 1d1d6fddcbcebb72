"""Light query encoders: a model's query tower on ONNX Runtime and its tokenizer on `tokenizers`.

Importing torch, transformers and open_clip costs seconds, more than the rest of a cold
`mmrag search`. So when a collection's encoders are loaded for indexing, each exports the part that
embeds text queries (CLIP's text tower; a code/text model's transformer) to ONNX and its tokenizer to
a tokenizer.json, next to the encoder's other ONNX files, with a `QueryCard` saying how to frame,
pool and normalise. At search time `LightEncoder` reads those files with onnxruntime, tokenizers and
numpy only. Images, which queries rarely hold, still go through the full encoder, loaded on demand.

Where the files live is derived from the spec alone, without loading the model:
CLIP in `<onnx cache>/clip-text-<hash of spec, library versions, weights file>/`; code and text models
in the folder of their document-side export (encoders/onnx.py), keyed by the checkpoint's files.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import Encoder, EncoderCfg, EncoderError, l2_normalize
from .hf import length_sorted_batches, pool_np
from .onnx import OrtForward, onnx_available, onnx_file, onnx_root
from .registry import parse_spec

if TYPE_CHECKING:
    from PIL import Image

CARD_VERSION = 1  # bump when the card or the files it names change meaning
SMALL_BATCH = 8  # up to this many texts run on one thread: fan-out costs more than it saves on a query
MIN_COSINE = 0.9999  # an export whose vectors differ more from the full encoder's is not used
# texts the export is checked on: empty, unicode, markup, code, and one past every context length
PROBES = (
    "a red car on a street",
    "",
    "def parse(path):\n    return json.load(open(path))",
    "Naïve café — “quoted” ﬁne &amp; 日本語 🚗",
    "HOW to Sort a LIST in python?",
    " ".join(["long"] * 600),
)


@dataclass(frozen=True)
class QueryCard:
    """How to turn texts into a query vector with the exported files; stored as JSON."""

    spec: str
    kind: str  # "pooled": token states pooled over the mask; "clip": the tower returns one vector
    dim: int
    max_length: int  # tokens per text, lead and trail included (CLIP: the context length)
    lead: tuple[int, ...] = ()  # token ids before the text (CLS, CLIP's start of text)
    trail: tuple[int, ...] = ()  # token ids after it (SEP, CLIP's end of text)
    pad_id: int = 0
    truncation_side: str = "right"
    pooling: str = "mean"  # "pooled" kind only: see encoders/hf.py POOLINGS
    query_prefix: str = ""
    doc_prefix: str = ""
    lowercase: bool = False
    # "clip" kind: texts are cleaned as open_clip cleans them, then split with its word pattern
    split_pattern: str = ""
    split_flags: int = 0
    trim: bool = False  # cut padding after the longest text (see encoders/clip_export.py `trimmable`)
    inputs: tuple[str, ...] = ("text",)  # what the full encoder reads; images are delegated to it
    model: str = "model.onnx"
    tokenizer: str = "tokenizer.json"
    version: int = CARD_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> QueryCard:
        data = json.loads(text)
        for key in ("lead", "trail", "inputs"):
            data[key] = tuple(data.get(key, ()))
        return cls(**data)


class LightEncoder(Encoder):
    """Text queries through the exported files; `encode_image` hands over to the full encoder."""

    def __init__(
        self, card: QueryCard, folder: Path, cfg: EncoderCfg, full: Callable[[], Encoder] | None = None
    ):
        from tokenizers import Tokenizer

        self.card = card
        self.spec = card.spec
        self.dim = card.dim
        self.inputs = frozenset(card.inputs)
        self.cfg = cfg
        self.backend = "light"
        self.tokenizer = Tokenizer.from_file(str(folder / card.tokenizer))
        self._model_path = folder / card.model
        self._full = full
        self._sessions: dict[int, OrtForward] = {}
        self._split = _compile(card) if card.kind == "clip" else None

    def encode_text(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        prefix = self.card.query_prefix if query else self.card.doc_prefix
        texts = [prefix + t for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        forward = self._forward(len(texts))
        for idx in length_sorted_batches(texts, self.cfg.batch_size):
            batch = self.tokenize([texts[i] for i in idx])
            y = forward(batch)
            if self.card.kind == "pooled":
                y = pool_np(y, batch["attention_mask"], self.card.pooling)
            out[idx] = l2_normalize(y)
        return out

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """int64 ids framed by lead/trail, cut to max_length, padded: the full encoder's exact input."""
        card = self.card
        if card.kind == "clip":
            words = [self._split.findall(_clip_clean(t)) for t in texts]
            bodies = [e.ids for e in self.tokenizer.encode_batch(words, is_pretokenized=True)]
        else:
            if card.lowercase:
                texts = [t.lower() for t in texts]
            bodies = [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]
        budget = max(0, card.max_length - len(card.lead) - len(card.trail))
        rows = [[*card.lead, *_cut(b, budget, card.truncation_side), *card.trail] for b in bodies]
        width = max(len(r) for r in rows) if card.kind != "clip" or card.trim else card.max_length
        ids = np.full((len(rows), width), card.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask, "text": ids}

    def encode_image(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Through the full encoder of the same spec (this loads torch): images need the image tower."""
        if self._full is None or "image" not in self.inputs:
            return super().encode_image(images)  # raises UnsupportedInputError
        return self._full().encode_image(images)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "max_length": self.card.max_length}

    def _forward(self, n: int) -> OrtForward:
        """A session per thread count: one thread for a query, the configured count for big batches."""
        threads = 1 if n <= SMALL_BATCH else (self.cfg.threads or os.cpu_count() or 1)
        if threads not in self._sessions:
            self._sessions[threads] = OrtForward(self._model_path, threads)
        return self._sessions[threads]


def _cut(ids: list[int], budget: int, side: str) -> list[int]:
    """The tokenizer's own truncation of one sequence: keep `budget` ids from the right or left end."""
    if len(ids) <= budget:
        return ids
    return ids[len(ids) - budget :] if side == "left" else ids[:budget]


# --- where the files live --------------------------------------------------------------------


def query_folder(spec: str) -> Path | None:
    """The folder that holds (or will hold) the query files of `spec`; None where none can exist."""
    schema, ident = parse_spec(spec)
    if schema in ("clip", "tiny-clip"):
        return onnx_root() / f"clip-text-{_clip_key(schema, ident)}"
    model_dir = _checkpoint_dir(schema, ident)
    if model_dir is None:
        return None
    from .hf import CodeModelInfo, read_st_layout

    try:
        transformer_dir, _ = read_st_layout(model_dir, CodeModelInfo())
    except (EncoderError, OSError, ValueError):
        return None
    return onnx_file(transformer_dir, "onnx").parent


def card_path(spec: str) -> Path | None:
    folder = query_folder(spec)
    return None if folder is None else folder / f"query-{_digest(spec)[:12]}.json"


def _checkpoint_dir(schema: str, ident: str) -> Path | None:
    """The checkpoint directory of a code/text spec, found without loading it; None if not on disk."""
    try:
        if schema in ("code", "text"):
            from .weights import resolve_model_dir

            return resolve_model_dir(ident)
        if schema in ("tiny-code", "tiny-text"):
            from .tiny import parse_seed, tiny_dir

            path = tiny_dir(schema, parse_seed(ident, schema))
            return path if path.is_dir() else None
    except EncoderError:
        return None
    return None


def _clip_key(schema: str, ident: str) -> str:
    """CLIP weights are named by spec: a pretrained tag is a fixed release, a path is checked by stat."""
    from importlib.metadata import version

    parts = [schema, ident, str(CARD_VERSION), version("open_clip_torch"), version("torch")]
    if schema == "tiny-clip":
        from .tiny import LAYOUT_VERSION, TINY_CLIP_CFG

        parts += [json.dumps(TINY_CLIP_CFG, sort_keys=True), str(LAYOUT_VERSION)]
    elif "@" in ident:
        weights = Path(os.path.expanduser(ident.partition("@")[2]))
        if weights.is_file():
            st = weights.stat()
            parts += [str(weights.resolve()), str(st.st_size), str(st.st_mtime_ns)]
    return _digest("|".join(parts))[:16]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- loading and exporting -------------------------------------------------------------------


def load_query_encoder(
    spec: str, cfg: EncoderCfg, full: Callable[[], Encoder] | None = None
) -> LightEncoder | None:
    """The light encoder of `spec` when its files exist and fit `cfg`; None means: use the full one."""
    if cfg.backend not in ("auto", "onnx") or cfg.device != "cpu" or cfg.max_length is not None:
        return None  # the caller asked for something the export does not reproduce
    found = find_card(spec)
    return None if found is None else LightEncoder(found[0], found[1], cfg, full)


def find_card(spec: str) -> tuple[QueryCard, Path] | None:
    """The card of `spec` and its folder, when the card and the files it names are all there."""
    if not light_available():
        return None
    path = card_path(spec)
    if path is None or not path.is_file():
        return None
    try:
        card = QueryCard.from_json(path.read_text("utf-8"))
    except (OSError, ValueError, TypeError):
        return None  # an unreadable card is ignored; the next export rewrites it
    if card.version != CARD_VERSION or card.spec != spec:
        return None
    if not all((path.parent / f).is_file() for f in (card.model, card.tokenizer)):
        return None
    return card, path.parent


def export_query_encoder(encoder: Encoder) -> Path | None:
    """Write the query files of a loaded full encoder (if its kind can have them); the card's path.

    Encoders opt in with `export_query(folder) -> QueryCard | None`, writing the model and tokenizer
    files into `folder`. The export is then checked against the encoder itself on PROBES, both query
    sides; the card, written last, only exists for an export that matched.
    """
    if not light_available():
        return None
    path = card_path(encoder.spec)
    write = getattr(encoder, "export_query", None)
    if path is None or write is None:
        return None
    if find_card(encoder.spec) is not None:
        return path
    try:
        card = write(path.parent)
    except EncoderError:
        raise
    except Exception as err:  # the exporters raise many unrelated types
        raise EncoderError(f"Could not export the query encoder of {encoder.spec!r}: {err}") from err
    if card is None:
        return None
    light = LightEncoder(card, path.parent, EncoderCfg(threads=1, batch_size=len(PROBES)))
    for query in (True, False):
        ref = encoder.encode_text(list(PROBES), query=query)
        cos = (light.encode_text(list(PROBES), query=query) * ref).sum(axis=1)
        if cos.min() < MIN_COSINE:
            raise EncoderError(
                f"The exported query encoder of {encoder.spec!r} differs from the model "
                f"(cosine {cos.min():.6f} < {MIN_COSINE}); queries keep using the full encoder"
            )
    write_text(path, card.to_json())
    return path


def light_available() -> bool:
    import importlib.util

    return onnx_available() and importlib.util.find_spec("tokenizers") is not None


def write_text(path: Path, text: str) -> None:
    """Write then rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# --- CLIP's text cleaning, as open_clip's `_clean_lower` ------------------------------------


def _compile(card: QueryCard) -> Any:
    import regex

    return regex.compile(card.split_pattern, card.split_flags)


def _clip_clean(text: str) -> str:
    """ftfy, HTML entities twice, whitespace runs to one space, lower case: open_clip's 'lower' clean.

    ftfy (0.1 s to import) leaves printable ASCII without '&' as it is, so such text skips it.
    """
    if not _PLAIN_ASCII.fullmatch(text):
        import ftfy

        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).strip().lower()


# printable ASCII but '&', plus tab, newline and form feed: every character ftfy keeps unchanged
_PLAIN_ASCII = re.compile(r"[\t\n\x0c\x20-\x25\x27-\x7e]*")
