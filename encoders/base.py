"""The one contract every encoder keeps: inputs in, unit float32 (n, dim) vectors out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from PIL import Image


class EncoderError(Exception):
    """Base of the errors encoders raise."""


class UnknownEncoderError(EncoderError, ValueError):
    """A spec whose schema is not registered; the message lists the registered ones."""


class WeightsNotFoundError(EncoderError, FileNotFoundError):
    """Weights cannot be found locally or fetched; the message names the model and how to provide it."""


class UnsupportedInputError(EncoderError, TypeError):
    """An encoder asked for an input kind it does not read (e.g. images from a text encoder)."""


class EncoderConfigError(EncoderError, ValueError):
    """A bad encoder identifier or setting (backend, pooling, checkpoint layout); names the valid choices."""


class ModelSetError(EncoderError, ValueError):
    """An unknown or unusable model set; the message lists the valid names."""


@dataclass(frozen=True)
class EncoderCfg:
    """Run-time settings shared by all encoders (the spec string says *which* model)."""

    device: str = "cpu"
    batch_size: int = 32  # large enough to amortise per-call overhead, small enough for 2-core machines
    threads: int | None = None  # torch intra-op threads; None keeps torch's default (all cores)
    max_length: int | None = None  # token cut-off; None uses the model's own limit
    backend: str = "auto"  # "torch", "onnx", or "auto": the fastest one that keeps quality


class Encoder(ABC):
    """Maps strings (and for CLIP, images) to L2-normalised float32 vectors.

    Subclasses set `spec`, `dim` and `inputs`. `query=True` selects the query side, which
    may differ from the document side (a prefix, an instruction, another tower).
    """

    spec: str
    dim: int
    inputs: frozenset[str] = frozenset({"text"})  # "text" and/or "image"

    @abstractmethod
    def encode_text(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        """(n, dim) float32, unit rows."""

    def encode_image(self, images: Sequence[Image.Image]) -> np.ndarray:
        raise UnsupportedInputError(f"Encoder {self.spec!r} reads {sorted(self.inputs)}, not images")

    def info(self) -> dict[str, Any]:
        """What the collection's manifest records about this encoder."""
        return {"spec": self.spec, "dim": self.dim, "inputs": sorted(self.inputs)}


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Unit rows in float32; zero rows stay zero instead of becoming NaN."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)
