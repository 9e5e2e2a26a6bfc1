"""The one import of NVIDIA's ``tensorrt`` module, shared by the TensorRT predictor
(:mod:`vcups_core.model.predictors.tensorrt_predictor`) and the engine builder
(:mod:`vcups_core.export.tensorrt`), so that the predictor needs no builder. The engine cache
(:mod:`vcups_core.model.predictors.engine_cache`) calls the builder; the builder imports nothing
of the predictors."""

from __future__ import annotations

from typing import Any

TENSORRT_INSTALL_HINT = (
    "TensorRT is not installed. It needs an NVIDIA CUDA GPU and TensorRT 10 or 11 for Python: "
    "`pip install tensorrt-cu13 --extra-index-url https://pypi.nvidia.com` "
    "(NVIDIA's package index; cu13 matches the CUDA 13 build of torch this project pins, "
    "use tensorrt-cu12 with a CUDA 12 torch). "
    "Without a GPU use the 'torch' or 'onnxruntime' backend."
)


def import_tensorrt() -> Any:
    """Import and return the ``tensorrt`` module.

    Raises:
        ImportError: with what to install, if it is missing.
    """
    try:
        import tensorrt
    except ImportError as exc:
        raise ImportError(TENSORRT_INSTALL_HINT) from exc
    return tensorrt
