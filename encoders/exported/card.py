"""The query card: how to turn texts into vectors with a model's exported files; stored as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

CARD_VERSION = 1  # bump when the card or the files it names change meaning


@dataclass(frozen=True)
class QueryCard:
    """Framing, cut, pooling and prefixes of one spec's exported tower, and the files it names."""

    spec: str
    kind: str  # "pooled": token states pooled over the mask; "clip": the tower returns one vector
    dim: int
    max_length: int  # tokens per text, lead and trail included (CLIP: the context length)
    lead: tuple[int, ...] = ()  # token ids before the text (CLS, CLIP's start of text)
    trail: tuple[int, ...] = ()  # token ids after it (SEP, CLIP's end of text)
    pad_id: int = 0
    truncation_side: str = "right"
    pooling: str = "mean"  # "pooled" kind only: see encoders/batching.py POOLINGS
    query_prefix: str = ""
    doc_prefix: str = ""
    lowercase: bool = False
    # "clip" kind: texts are cleaned as open_clip cleans them, then split with its word pattern
    split_pattern: str = ""
    split_flags: int = 0
    trim: bool = False  # cut padding after the longest text (see families/clip_export.py `trimmable`)
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


IMAGE_CARD_VERSION = 1


@dataclass(frozen=True)
class ImageCard:
    """How pixels reach one spec's exported image tower (exported/image.py): the model's own
    torchvision preprocessing, step by step, and the file it feeds."""

    spec: str
    dim: int
    size: int  # the square input side
    resize: str  # "shortest": the short side to `size`, then a centre crop; "squash": both sides
    interpolation: str  # a Pillow filter name: "bicubic", "bilinear", ...
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    model: str = "image.onnx"
    version: int = IMAGE_CARD_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> ImageCard:
        data = json.loads(text)
        data["mean"], data["std"] = tuple(data["mean"]), tuple(data["std"])
        return cls(**data)
