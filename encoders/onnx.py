"""ONNX backends for transformer encoders: export once, optimise, optionally quantise to int8.

A checkpoint's transformer is exported with torch.onnx (inputs: input_ids, attention_mask; output:
token states). For ONNX Runtime (`onnx`, `onnx-int8`) the file is fused by its transformer
optimiser, and for `onnx-int8` its weights are dynamically quantised per channel; for `openvino`
the plain export is kept (OpenVINO reads standard ops and fuses on its own). Files are cached under `<mmrag cache>/onnx/<key>/`, the key being
a hash of the model path, its files' sizes and mtimes, and the library versions, so a changed
checkpoint is exported again and an unchanged one is loaded in milliseconds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .base import EncoderConfigError
from .weights import mmrag_cache_dir

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
EXPORT_VERSION = 1  # bump when the export recipe changes, so stale cached files are not reused
OPSET = 17  # LayerNormalization is a single op from 17 on, which the optimiser fuses further


def pick_backend(requested: str, names: str, config: Any, device: str = "cpu") -> str:
    """The concrete backend for a request; 'auto' is the fastest one whose quality is known to hold.

    `names` (identifier and path) is matched against INT8_VERIFIED; `config` is the transformers one.
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


def onnx_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def openvino_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def cache_key(model_dir: Path, backend: str) -> str:
    """Stable name for one checkpoint's export: path, file sizes and mtimes, library versions."""
    from importlib.metadata import version

    h = hashlib.sha256(f"{model_dir.resolve()}|{backend}|{EXPORT_VERSION}".encode())
    h.update(f"{version('torch')}|{version('onnxruntime')}".encode())
    for path in sorted(model_dir.iterdir()):
        if path.is_file():
            st = path.stat()
            h.update(f"{path.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return f"{model_dir.name}-{h.hexdigest()[:16]}"


def onnx_root() -> Path:
    """The folder of all ONNX exports: `$MMRAG_ONNX_CACHE`, else `<mmrag cache>/onnx`."""
    env = os.environ.get("MMRAG_ONNX_CACHE")  # Path("") would be the working directory
    return Path(env) if env else mmrag_cache_dir() / "onnx"


def onnx_file(model_dir: Path, backend: str) -> Path:
    """Where the exported model of `backend` for `model_dir` lives (it may not exist yet)."""
    return onnx_root() / cache_key(model_dir, backend) / "model.onnx"


def ensure_onnx(model_dir: Path, backend: str, load_model: Callable[[], Any]) -> Path:
    """The cached ONNX file, exported (and quantised) from `load_model()` on first use."""
    target = onnx_file(model_dir, backend)
    if target.is_file():
        return target
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent.parent))
    try:
        model = load_model()
        export(model, tmp / "raw.onnx")
        if backend == "openvino":  # OpenVINO reads standard ops only and fuses the graph itself
            (tmp / "raw.onnx").rename(tmp / "opt.onnx")
        else:
            optimise(tmp / "raw.onnx", tmp / "opt.onnx", model.config)
        if backend == "onnx-int8":
            quantise(tmp / "opt.onnx", tmp / "model.onnx")
        else:
            (tmp / "opt.onnx").rename(tmp / "model.onnx")
        final = tmp / "final"
        final.mkdir()
        (tmp / "model.onnx").rename(final / "model.onnx")
        try:
            final.rename(target.parent)
        except OSError:
            if not target.is_file():  # not a lost race with another exporter
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def export(model: Any, path: Path) -> None:
    """torch.onnx export of the token states, batch and sequence axes dynamic."""
    import torch

    class TokenStates(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    ids = torch.ones((2, 8), dtype=torch.long)
    mask = torch.ones((2, 8), dtype=torch.long)
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    # the exporter restores the wrapper's training flag afterwards, recursively: a wrapper left in
    # its default train mode would switch dropout on in a model that goes on encoding with torch
    wrapper = TokenStates(model).eval()
    # the exporter's tracer warnings concern its internals, not the user's data: keep them off the console
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (ids, mask),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["token_states"],
            dynamic_axes={**axes, "token_states": {0: "batch", 1: "seq"}},
            opset_version=OPSET,
            dynamo=False,
        )


def optimise(src: Path, dst: Path, config: Any) -> None:
    """ONNX Runtime's BERT fusions (attention, LayerNorm, GELU); a plain copy if they do not apply."""
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        opt = optimize_model(
            str(src),
            model_type="bert",
            num_heads=int(getattr(config, "num_attention_heads", 0) or 0),
            hidden_size=int(getattr(config, "hidden_size", 0) or 0),
            opt_level=1,
        )
        opt.save_model_to_file(str(dst))
    except Exception:  # noqa: BLE001  (an unfusable graph still runs unfused)
        shutil.copyfile(src, dst)


def quantise(src: Path, dst: Path) -> None:
    """Dynamic int8 weights, per output channel: per-tensor scales cost measurable MRR on MiniLM."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # fused nodes (com.microsoft domain) carry no inferred output type: they are float32 here
    extra = {"DefaultTensorType": TensorProto.FLOAT}
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, extra_options=extra)


class OrtForward:
    """int64 input arrays by name -> the model's first output through ONNX Runtime.

    Transformer exports read {input_ids, attention_mask} and give (b, t, d) token states; a CLIP
    text tower reads {text} and gives (b, d) features. Extra entries in the batch are ignored.
    """

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        # idle workers sleep instead of spinning: spinning only pays on cores nobody else wants
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.inputs = tuple(i.name for i in self.session.get_inputs())

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        feeds = {name: batch[name].astype(np.int64, copy=False) for name in self.inputs}
        return self.session.run(None, feeds)[0]


class OVForward:
    """The same contract as OrtForward, through OpenVINO's CPU plugin in fp32.

    fp32 is asked for explicitly: on CPUs with bf16 units the plugin would otherwise lower the
    precision. Its dynamic activation quantisation is switched off: its scales span several rows, so
    a text's vector would depend on its batch-mates (measured: up to 2e-3 per component).
    """

    def __init__(self, path: Path, threads: int | None = None):
        import openvino as ov

        core = ov.Core()
        config = {
            "INFERENCE_NUM_THREADS": int(threads or (os.cpu_count() or 1)),
            "INFERENCE_PRECISION_HINT": "f32",
            "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0,
            "NUM_STREAMS": 1,
            "CACHE_DIR": str(path.parent / "openvino-cache"),  # compiled blob: later loads skip compiling
        }
        self.path = path
        self.compiled = core.compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.inputs = tuple(i.get_any_name() for i in self.compiled.inputs)

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        feeds = {name: batch[name].astype(np.int64, copy=False) for name in self.inputs}
        return self.request.infer(feeds)[0].copy()  # the request reuses its output buffer


def make_forward(path: Path, backend: str, threads: int | None = None) -> Callable[[dict], np.ndarray]:
    """The runtime that serves `backend`'s exported file."""
    return OVForward(path, threads) if backend == "openvino" else OrtForward(path, threads)
