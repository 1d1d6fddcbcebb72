"""The runtimes behind one contract: input arrays by name in, the model's float32 output out.

Transformer exports read int64 {input_ids, attention_mask} and give (b, t, d) token states; a CLIP
text tower reads int64 {text} and gives (b, d) features; a CLIP image tower reads float32 {pixels}
(`dtype=np.float32`). Extra entries in the batch are ignored.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import build_dir

Forward = Callable[[dict[str, np.ndarray]], np.ndarray]


class OrtForward:
    """Through ONNX Runtime's CPU provider.

    `keep_optimised`: the graph ONNX Runtime optimises at load is saved beside the file, named for
    this machine (the optimised graph may hold CPU-specific layouts), its weights as external data
    (`optimised_dir`), and later loads read it as is. ONNX Runtime memory-maps external weights
    and uses them in place, so opening the saved copy parses a small graph and copies nothing:
    CLIP ViT-B-32-256's image tower opened in 0.08 s against 1.47 s for the same graph with its
    weights inside (busy machine), and prepacked GEMM weights replace the mapped ones instead of
    sitting beside a second copy (0.46 GB with or without prepacking after a batch of 8, against
    0.65 GB prepacked from the one-file graph).
    """

    def __init__(
        self,
        path: Path,
        threads: int | None = None,
        dtype: type = np.int64,
        prepack: bool = True,
        keep_optimised: bool = False,
    ):
        import onnxruntime as ort

        def options(level: Any) -> Any:
            opts = ort.SessionOptions()
            opts.graph_optimization_level = level
            opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
            opts.inter_op_num_threads = 1
            # idle workers sleep instead of spinning: spinning only pays on cores nobody else wants
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if not prepack:  # no GEMM-packed weights: the session opens at once, each call packs
                opts.add_session_config_entry("session.disable_prepacking", "1")
            return opts

        def session(model: Path, opts: Any) -> Any:
            return ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])

        self.path = path
        saved = optimised_dir(path) if keep_optimised else None
        found = None
        if saved is not None:
            found = _open_saved(
                saved, lambda m: session(m, options(ort.GraphOptimizationLevel.ORT_DISABLE_ALL))
            )
        if found is None:
            opts = options(ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
            found = session(path, opts) if saved is None else _optimise_and_save(path, saved, opts, session)
        self.session = found
        self.inputs = tuple(i.name for i in self.session.get_inputs())
        self.dtype = dtype  # of every input: int64 token ids, or float32 pixels for an image tower

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        feeds = {name: batch[name].astype(self.dtype, copy=False) for name in self.inputs}
        return self.session.run(None, feeds)[0]


SAVED_MODEL, SAVED_WEIGHTS = "model.onnx", "weights.data"  # an optimised copy's two files


def optimised_dir(path: Path) -> Path:
    """Where ONNX Runtime's optimised copy of `path` is kept on this machine: a folder whose name
    holds the runtime's version and a hash of the CPU's model and feature flags."""
    import hashlib
    import platform

    import onnxruntime as ort

    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = "".join(line for line in f if line.startswith(("flags", "model name")))[:8192]
    except OSError:
        flags = platform.processor()
    key = hashlib.sha256(f"{ort.__version__}|{platform.machine()}|{flags}".encode()).hexdigest()[:12]
    return path.with_name(f"{path.stem}.ort-{key}")


def _open_saved(saved: Path, open_model: Callable[[Path], Any]) -> Any:
    """A session on the saved copy, or None when there is none or it is damaged (then removed, to
    be optimised and saved again; a missing or short weights file fails here, cleanly)."""
    model = saved / SAVED_MODEL
    if not model.is_file():
        return None
    try:
        return open_model(model)
    except Exception:  # noqa: BLE001  (a damaged copy: optimise the original again)
        shutil.rmtree(saved, ignore_errors=True)
        return None


def _optimise_and_save(path: Path, saved: Path, opts: Any, session: Callable[[Path, Any], Any]) -> Any:
    """A session on `path`, optimised at load, its optimised graph written through `build_dir` (a
    reader never sees half a copy; of two writers the first wins). A cache that cannot be written
    still gets its session, optimised in memory as every load then is."""
    opened: list[Any] = []

    def fill(tmp: Path) -> None:
        opts.optimized_model_filepath = str(tmp / SAVED_MODEL)
        opts.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", SAVED_WEIGHTS
        )
        opts.add_session_config_entry(
            "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
        )
        opts.log_severity_level = 3  # its "hardware specific" warning: why the name holds the machine
        opened.append(session(path, opts))

    with contextlib.suppress(OSError):
        saved.with_name(saved.name + ".onnx").unlink(missing_ok=True)  # earlier releases' one-file copy
    with contextlib.suppress(OSError):  # a read-only cache; or another process saved it first
        build_dir(saved, fill)
    return opened[0] if opened else session(path, opts)


class OVForward:
    """Through OpenVINO's CPU plugin in fp32.

    fp32 is asked for explicitly: on CPUs with bf16 units the plugin would otherwise lower the
    precision. Its dynamic activation quantisation is switched off: its scales span several rows, so
    a text's vector would depend on its batch-mates (measured: up to 2e-3 per component).
    """

    def __init__(self, path: Path, threads: int | None = None, dtype: type = np.int64):
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
        # one request serves one call at a time ("Infer Request is busy" otherwise): a server's
        # concurrent searches and its indexing job share it; with one stream they would queue anyway
        self._lock = threading.Lock()
        self.inputs = tuple(i.get_any_name() for i in self.compiled.inputs)
        self.dtype = dtype

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        feeds = {name: batch[name].astype(self.dtype, copy=False) for name in self.inputs}
        with self._lock:
            return self.request.infer(feeds)[0].copy()  # the request reuses its output buffer


def torch_forward(model: Any) -> Forward:
    """A transformers model's token states through torch: (b, t) int64 arrays -> (b, t, d) float32."""
    import torch

    device = next(model.parameters()).device

    def forward(batch: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            feeds = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
            return model(**feeds).last_hidden_state.float().cpu().numpy()

    return forward
