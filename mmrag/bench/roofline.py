"""The physical limit of document encoding: FLOPs from the model's shapes over measured GEMM peaks.

A BERT-family encoder spends per layer and per token 2 x (4 d^2 + 2 d f) FLOPs in its dense
layers (Q, K, V, output; two feed-forward matrices of width f) and 4 L d in attention over a text
of L tokens (scores and weighted sum). Counting with each text's real token count (framed and cut
as the encoder does, no padding) gives the work that had to be done; the peaks are the best rates
of one large matrix product on this machine, fp32 (torch) and int8 (ONNX Runtime's u8 x s8
MatMulInteger, the kernel an int8 encoder would run).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def encoder_flops(lengths: Sequence[int], config: Any) -> float:
    """FLOPs of encoding texts of these token counts through a transformer of `config`'s shapes."""
    d = int(config.hidden_size)
    ff = int(getattr(config, "intermediate_size", 4 * d))
    layers = int(config.num_hidden_layers)
    dense = 2 * (4 * d * d + 2 * d * ff)
    return float(sum(layers * (dense * n + 4 * n * n * d) for n in lengths))


def fp32_gemm_peak(n: int = 2048, reps: int = 3) -> float:
    """Best fp32 FLOP/s of an n x n matmul (torch, all threads)."""
    from .images import gemm_peak_flops

    return gemm_peak_flops(n, reps)


def int8_gemm_peak(folder: Path, n: int = 2048, reps: int = 3) -> float:
    """Best int8 op/s of an n x n u8 x s8 -> int32 MatMulInteger through ONNX Runtime."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    path = folder / f"matmul-int8-{n}.onnx"
    if not path.is_file():
        rng = np.random.default_rng(0)
        weight = numpy_helper.from_array(rng.integers(-127, 127, (n, n), dtype=np.int8), "B")
        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["A", "B"], ["Y"])],
            "int8-gemm",
            [helper.make_tensor_value_info("A", TensorProto.UINT8, [n, n])],
            [helper.make_tensor_value_info("Y", TensorProto.INT32, [n, n])],
            [weight],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        folder.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    a = np.random.default_rng(1).integers(0, 255, (n, n), dtype=np.uint8)
    session.run(None, {"A": a})
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        session.run(None, {"A": a})
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best
