"""The model families, one module each: how a kind of checkpoint is loaded and run in full.

clip.py (open_clip: images and captions), clip_export.py (its text tower as ONNX), hf.py (a
transformers encoder plus pooling: `code:`), sentence.py (sentence-transformers: `text:`), tiny.py
(random-initialised stand-ins for tests and demos). Each exports its own towers' files; whether a
tower or the full model serves a request is decided in exported/towers.py.
"""
