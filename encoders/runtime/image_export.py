"""An image tower to ONNX: float32 `pixels` (b, 3, s, s) -> float32 `features` (b, d), batch axis free.

The TorchScript exporter at opset 18, as rclip's own convert script does for the same model: the
vision transformer has fixed shapes apart from the batch, which that exporter keeps dynamic, and
it writes a graph both ONNX Runtime and OpenVINO run. Gradients stay enabled during the trace:
without them nn.MultiheadAttention takes its fused inference path, which that exporter cannot write.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from ..atomic import write_file
from ..base import EncoderConfigError

OPSET = 18


def export_image_onnx(encode: Callable[[Any], Any], modules: Any, path: Path, size: int) -> None:
    """Write `encode(pixels)` (a function of `modules`, a torch.nn.Module holding its weights) to `path`."""
    import torch

    class Tower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = modules

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return encode(pixels)

    was_training = modules.training
    tower = Tower().eval()

    def fill(tmp: Path) -> None:
        # the exporter reports its progress and warns about its internals: not the user's business
        with torch.inference_mode(False), torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
                torch.onnx.export(
                    tower,
                    (torch.zeros(1, 3, size, size),),
                    str(tmp),
                    input_names=["pixels"],
                    output_names=["features"],
                    dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
                    opset_version=OPSET,
                    dynamo=False,
                )

    try:
        write_file(path, fill)
    except Exception as err:  # the exporter raises many unrelated types
        raise EncoderConfigError(f"Could not export the image tower to ONNX: {err}") from err
    finally:
        modules.train(was_training)  # the exporter leaves its wrapper's modules in train mode
