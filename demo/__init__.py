"""The mmrag web demo: a Gradio UI over one collection (app.py) and a CC0 sample corpus (sample/)."""

from __future__ import annotations
