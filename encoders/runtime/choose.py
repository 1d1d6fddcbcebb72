"""Which runtime runs a model: the one place where torch, ONNX Runtime and OpenVINO are chosen.

`cfg.backend` is a string handed down at load time, as in sentence-transformers: "torch", "onnx"
(ONNX Runtime fp32), "onnx-int8" (dynamic int8 weights), "openvino" (fp32), or "auto".
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from ..base import EncoderConfigError
from .forward import Forward, OrtForward, OVForward

ONNX_BACKENDS = ("onnx", "onnx-int8", "openvino")  # backends that run an exported ONNX file
BACKENDS = ("auto", "torch", *ONNX_BACKENDS)
# checkpoints whose int8 export keeps retrieval quality through the product, so "auto" may pick it.
# None yet: all-MiniLM-L6-v2 int8 scored CoSQA dev MRR 0.5400 encoding the corpus in one sorted pass
# but 0.5337 through `mmrag index` (batches of 128; dynamic quantisation scales follow the batch),
# vs 0.5412 in fp32: past the 0.005 tolerance (docs/performance.md). int8 stays opt-in.
# "auto" runs real checkpoints on CPU through OpenVINO in fp32 (the same vectors as torch to ~1e-7,
# whatever the batch-mates; the fastest runtime measured here, docs/performance.md) where the
# `openvino` package is installed, else on torch: fp32 ONNX Runtime encoded CoSQA functions at
# 0.85-0.90x of torch, so it is opt-in (`--backend onnx`). Query encoding uses its own ONNX files.
INT8_VERIFIED: tuple[str, ...] = ()
MIN_ONNX_HIDDEN = 256  # below this (test-sized models) export time outweighs any speed-up: stay on torch


def pick_backend(requested: str, names: str, config: Any, device: str = "cpu") -> str:
    """The concrete backend for a request; 'auto' is the fastest one whose quality is known to hold.

    `names` (identifier and path) is matched against INT8_VERIFIED; `config` has the model's
    `hidden_size` (a transformers config, or checkpoint.read_config's plain reading).
    """
    if requested not in BACKENDS:
        raise EncoderConfigError(f"Unknown backend {requested!r}; valid: {BACKENDS}")
    if requested in ONNX_BACKENDS and not onnx_available():
        raise EncoderConfigError(
            f"Backend {requested!r} needs the onnxruntime and onnx packages: pip install onnxruntime onnx"
        )
    if requested == "openvino" and not openvino_available():
        raise EncoderConfigError("Backend 'openvino' needs the openvino package: pip install openvino")
    if requested != "auto":
        return requested
    if device != "cpu" or not onnx_available() or int(getattr(config, "hidden_size", 0)) < MIN_ONNX_HIDDEN:
        return "torch"
    lowered = names.lower()
    if any(tag in lowered for tag in INT8_VERIFIED):
        return "onnx-int8"
    return "openvino" if openvino_available() else "torch"


def check_backend(requested: str, allowed: tuple[str, ...], family: str) -> None:
    """A family's own list of backends, named in the error (CLIP runs on torch only)."""
    if requested not in allowed:
        raise EncoderConfigError(f"Unknown backend {requested!r} for {family} encoders; valid: {allowed}")


def onnx_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def light_available() -> bool:
    """Whether exported towers can run here: ONNX Runtime for the model, `tokenizers` for the text."""
    return onnx_available() and importlib.util.find_spec("tokenizers") is not None


def make_forward(
    path: Path,
    backend: str,
    threads: int | None = None,
    dtype: type = np.int64,
    prepack: bool = True,
    keep_optimised: bool = False,
) -> Forward:
    """The runtime that serves `backend`'s exported file (inputs cast to `dtype`; `prepack`: ONNX
    Runtime's packed copy of the GEMM weights; `keep_optimised`: its optimised graph saved for the
    next load, runtime/forward.py)."""
    if backend == "openvino":
        return OVForward(path, threads, dtype)
    return OrtForward(path, threads, dtype, prepack, keep_optimised)


def image_backend() -> str:
    """The runtime of exported image towers (exported/image.py): ONNX Runtime fp32, as rclip uses.

    OpenVINO fp32 ran ViT-B-32-256 at the same speed on these 2 shared cores (126 vs 134 ms an
    image in batches of 32, 192 vs 105 ms for one image, load ~10), but held 1.0 GB after one
    batch where ONNX Runtime held 0.73 GB: memory decides.
    """
    return "onnx"
