"""mmrag: search images, code and text with one query."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Engine", "Hit", "Item", "open_collection", "__version__"]


def __getattr__(name: str):
    # lazy: `mmrag --help` and the server's start-up should not pay for FAISS and model imports
    if name in ("Engine", "open_collection"):
        from . import api

        return getattr(api, name)
    if name in ("Hit", "Item"):
        from . import items

        return getattr(items, name)
    raise AttributeError(name)
