"""The one predictor contract, with no backend imported: what the streaming path, the node,
``vcups replay`` and the metrics code call, whatever runs the network.

This module imports neither torch nor any runtime, so :mod:`vcups_core.streaming` depends on the
contract only; the backends (:mod:`.torch_predictor`, :mod:`.onnx_predictor`,
:mod:`.tensorrt_predictor`) and :func:`~vcups_core.model.predictors.load.load_predictor` are
imported where a network is really run.
"""

from __future__ import annotations

import time
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from vcups_core.types import CategoryTable, FramePrediction

Backend = Literal["torch", "onnxruntime", "tensorrt"]
"""The inference backends (:attr:`vcups_core.configs.predictor.PredictorConfig.backend`)."""

WARMUP_SIZE = (256, 512)
"""``(H, W)`` of the black image :func:`warm_up` predicts."""


@runtime_checkable
class Predictor(Protocol):
    """One image in, one :class:`~vcups_core.types.FramePrediction` out.

    Implemented by the torch, onnxruntime and TensorRT backends, by the ground-truth oracle
    (:class:`vcups_core.data.oracle.OraclePredictor`) and by test fakes.

    Attributes:
        categories: the model's category table (thing ids ``0..T-1``, then stuff).
        model_name: published as ``PanopticInfo.model_name``.
        checksum: SHA-256 of the weights (the same for a checkpoint and its exports; empty
            when there are none).
    """

    categories: CategoryTable
    model_name: str
    checksum: str

    def predict(self, image: npt.NDArray[np.uint8]) -> FramePrediction:
        """Predict one ``uint8[H, W, 3]`` RGB image at its own resolution."""
        ...


def warm_up(predictor: Predictor, size: tuple[int, int] = WARMUP_SIZE) -> float:
    """Run one prediction on a black ``uint8[H, W, 3]`` image; return how long it took (s).

    A backend's first prediction pays one-off costs: the CUDA context, library handles, loading
    kernels. Measured on an H200 host (R50, 1024x2048, ``benchmarks/bench_gpu.py``, fresh
    processes): the first camera frame took 0.6-1.4 s against 36-50 ms for the next ones;
    after a 256x512 warm-up (0.6-0.8 s) it took 44-48 ms. Any error of the prediction
    propagates, so a model that cannot run fails here instead of at the first camera frame.

    Raises:
        ValueError: if ``size`` is not two positive integers.
    """
    height, width = size
    if height < 1 or width < 1:
        raise ValueError(f"size: expected (H, W) >= 1, got {size}")
    start = time.perf_counter()
    predictor.predict(np.zeros((height, width, 3), np.uint8))
    return time.perf_counter() - start
