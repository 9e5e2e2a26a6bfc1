"""Deployment exports of the per-frame network: ONNX (:mod:`.onnx`) and TensorRT (:mod:`.tensorrt`).

Neither module imports ``onnx``/``onnxruntime``/``tensorrt`` at import time; each function
imports what it needs and raises :class:`ImportError` with install instructions if missing.
"""
