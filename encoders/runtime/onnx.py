"""A transformer exported to ONNX once, optimised, optionally quantised to int8, and cached.

A checkpoint's transformer is exported with torch.onnx (inputs: input_ids, attention_mask; output:
token states). For ONNX Runtime (`onnx`, `onnx-int8`) the file is fused by its transformer
optimiser, and for `onnx-int8` its weights are dynamically quantised per channel; for `openvino`
the plain export is kept (OpenVINO reads standard ops and fuses on its own). Files are cached under
`<mmrag cache>/onnx/<key>/`, the key being a hash of the model path, its files' sizes and mtimes,
and the library versions, so a changed checkpoint is exported again and an unchanged one is loaded
in milliseconds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..atomic import build_dir
from ..weights import mmrag_cache_dir

EXPORT_VERSION = 1  # bump when the export recipe changes, so stale cached files are not reused
OPSET = 17  # LayerNormalization is a single op from 17 on, which the optimiser fuses further


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

    def fill(tmp: Path) -> None:
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
        for other in tmp.iterdir():  # the steps' files: the folder keeps the model alone
            if other.name != "model.onnx":
                shutil.rmtree(other) if other.is_dir() else other.unlink()

    build_dir(target.parent, fill)
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
