"""rclip, the reference of `mmrag bench images`: installed from PyPI into its own environment.

rclip 4 needs Python 3.12 or 3.13 and pins its own numpy and onnxruntime, so it gets a virtual
environment of its own under the mmrag cache (`bench-rclip-venv`), made once by the first
interpreter found that fits. Its model folder (`RCLIP_DATADIR`) is written here from the benchmark's
random weights, in the layout rclip's model_download.py reads: `ViT-B-32-256-datacomp_s34b_b86k/`
holding `visual.onnx` (`model.visual`, input `input`, output `output`, dynamic batch) and
`textual.onnx` (`encode_text` on int64 tokens), `tokenizer/bpe_simple_vocab_16e6.txt.gz` (open_clip's
own vocabulary file) and the four legal files it checks before it would download anything. The
exports follow rclip's scripts/convert_model.py: the TorchScript exporter at opset 18.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

RCLIP_REQUIREMENT = "rclip>=4,<5"
MODEL_SUBDIR = "ViT-B-32-256-datacomp_s34b_b86k"  # rclip's model_download.MODEL_SUBDIR
LEGAL_FILES = ("LICENSE", "OPENAI-CLIP-MIT.txt", "README.md", "THIRD_PARTY_NOTICES.md")
PYTHONS = ("python3.13", "python3.12")  # rclip 4 requires >= 3.12, < 3.14


class RclipUnavailable(RuntimeError):
    """No Python that rclip 4 supports, or its installation failed: the reason says which."""


def find_python() -> str:
    """A Python 3.12 or 3.13 interpreter: $MMRAG_BENCH_RCLIP_PYTHON, PATH, then pyenv's versions."""
    wanted = os.environ.get("MMRAG_BENCH_RCLIP_PYTHON")
    if wanted:
        return wanted
    if sys.version_info[:2] in ((3, 12), (3, 13)):
        return sys.executable
    for name in PYTHONS:
        found = shutil.which(name)
        if found and _runs(found):
            return found
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for name in PYTHONS:
        for candidate in sorted(glob.glob(str(pyenv / f"{name[6:]}*" / "bin" / name)), reverse=True):
            if _runs(candidate):
                return candidate
    raise RclipUnavailable(
        "rclip 4 needs Python 3.12 or 3.13 and none was found; set MMRAG_BENCH_RCLIP_PYTHON to one"
    )


def _runs(python: str) -> bool:
    """pyenv shims exist for versions that are not selected: only an interpreter that starts counts."""
    return subprocess.run([python, "-c", "pass"], capture_output=True).returncode == 0


def ensure_venv(root: Path) -> Path:
    """rclip's executable in `root` (a venv), creating the venv and installing rclip the first time."""
    exe = root / "bin" / "rclip"
    if exe.is_file():
        return exe
    python = find_python()
    print(f"bench: installing {RCLIP_REQUIREMENT} into {root} (once) ...", file=sys.stderr, flush=True)
    steps = ([python, "-m", "venv", str(root)], [str(root / "bin" / "python"), "-m", "pip", "install", "-q",
             RCLIP_REQUIREMENT])  # fmt: skip
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RclipUnavailable(f"{' '.join(cmd)} failed: {done.stderr.strip()[-800:]}")
    return exe


def rclip_version(exe: Path) -> str:
    done = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    return done.stdout.strip() or done.stderr.strip()


def write_datadir(datadir: Path, model) -> Path:
    """rclip's model folder from an open_clip model (once); returns the folder (RCLIP_DATADIR)."""
    target = datadir / MODEL_SUBDIR
    if (target / "visual.onnx").is_file() and (target / "textual.onnx").is_file():
        return datadir
    import open_clip
    import torch

    target.mkdir(parents=True, exist_ok=True)
    vocab = datadir / "tokenizer" / "bpe_simple_vocab_16e6.txt.gz"
    vocab.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz", vocab)
    for name in LEGAL_FILES:
        (datadir / name).write_text("random weights made by mmrag bench images\n")
    size = int(model.visual.image_size[0])
    model = model.eval()

    class Visual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = model.visual

        def forward(self, x):
            return self.visual(x)

    class Textual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model.encode_text(x)

    exports = ((Visual(), torch.randn(1, 3, size, size), "visual.onnx"),
               (Textual(), torch.zeros(1, 77, dtype=torch.long), "textual.onnx"))  # fmt: skip
    for module, example, name in exports:
        tmp = target / f".{name}"
        with torch.enable_grad():  # without grad, attention takes a fused path TorchScript cannot export
            torch.onnx.export(module.eval(), (example,), str(tmp), input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=18,
                              dynamo=False)  # fmt: skip
        os.replace(tmp, target / name)
    return datadir
