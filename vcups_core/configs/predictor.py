"""Which network runs and where: the input of
:func:`~vcups_core.model.predictors.load_predictor`.

The node's ``model.*`` parameters (``config/perception.yaml``); ``vcups replay`` and
``vcups evaluate`` read the same section of a node parameter file, their ``--checkpoint``,
``--backend`` and ``--device`` override it. ROS parameters cannot be null, so "not set" is the
empty string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vcups_core.config import option


@dataclass(frozen=True)
class PredictorConfig:
    """A checkpoint, exported graph or engine, and how to run it."""

    config: str = option(
        "",
        "model config YAML built instead of the checkpoint's own (e.g. other inference "
        "thresholds; torch backend only); empty: the config stored in the checkpoint",
    )
    checkpoint: str = option(
        "",
        "the network: a vcups checkpoint (.pt, torch), an exported .onnx (onnxruntime, or "
        "tensorrt through the engine cache) or a TensorRT .engine; empty: none (an error)",
    )
    backend: Literal["torch", "onnxruntime", "tensorrt"] = option("torch", "inference backend")
    device: str = option("cpu", "torch/onnxruntime device, e.g. cpu, cuda, cuda:1")
    half: bool = option(
        False, "FP16 inference (torch on CUDA; an FP16 engine for tensorrt from an .onnx)"
    )
    warmup: bool = option(
        True,
        "predict one black 256x512 image while configuring, so that the first camera frame "
        "does not pay the backend's start-up (0.6-1.4 s on an H200)",
    )
    engine_cache_dir: str = option(
        "",
        "where TensorRT engines built from an .onnx checkpoint are cached "
        "(empty: ~/.cache/vcups/engines)",
    )
