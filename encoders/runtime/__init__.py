"""What executes a model: torch, ONNX Runtime or OpenVINO, chosen in one place (choose.py).

choose.py: the backends, which one "auto" picks, and the runtime that serves an exported file;
forward.py: the runtimes as one callable contract (int64 arrays in, float32 states out);
onnx.py: exporting a transformer to ONNX (optimised, optionally int8) and the cache of those files;
image_export.py: exporting an image tower (float32 pixels -> features) to ONNX.
"""
