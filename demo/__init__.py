"""The mmrag web demo: a Gradio UI over one collection (app.py) and a CC0 sample corpus (sample/).

It lives in the top-level demo/ of a clone and installs as the package `mmrag_demo`; the sample
corpus ships inside it as package data, so an installed mmrag finds it by import, not by path.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from mmrag.errors import ConfigError


def sample_corpus() -> Path:
    """The bundled sample corpus as a folder on disk: the demo's collection links to its files."""
    root = resources.files(__name__) / "sample"
    if not isinstance(root, Path) or not root.is_dir():
        raise ConfigError(
            f"The demo's sample corpus is not a folder on disk ({root}): reinstall mmrag from its wheel or sdist"
        )
    return root
