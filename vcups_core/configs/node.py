"""Parameters of the ROS 2 perception node (``config/perception.yaml``, ``ros__parameters``).

The node declares one ROS parameter per leaf key (dotted, e.g. ``tracker.iou_threshold``) and
fills :class:`NodeConfig` from them through :func:`vcups_core.config.config_from_dict`, so the
node and every offline tool validate parameters with the same code. ROS parameters cannot be
null, so "not set" is the empty string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vcups_core.config import option, section


@dataclass(frozen=True)
class ModelSection:
    config: str = option("", "model config YAML (empty: the packaged config/model/tiny.yaml)")
    checkpoint: str = option("", "weights file (.pt, weights_only); empty: none loaded")
    backend: Literal["torch", "onnxruntime", "tensorrt"] = option("torch", "inference backend")
    device: str = option("cpu", "torch/onnxruntime device, e.g. cpu, cuda, cuda:1")
    half: bool = option(False, "FP16 inference on GPU backends")
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


@dataclass(frozen=True)
class InputSection:
    transport: Literal["raw", "compressed"] = option(
        "raw", "subscribe to `image` (sensor_msgs/Image) or `image/compressed`"
    )
    reliability: Literal["best_effort", "reliable"] = option(
        "best_effort", "QoS reliability of the image subscription (KEEP_LAST, depth 1)"
    )
    max_image_age_s: float = option(
        0.0, "drop images older than this (node clock, works with use_sim_time); 0 disables", ge=0.0
    )
    max_pixels: int = option(
        4096 * 4096, "images with more pixels are rejected (protects memory)", gt=0
    )


@dataclass(frozen=True)
class TrackerSection:
    max_age: int = option(30, "frames a track is kept without a detection before it ends", ge=0)
    min_hits: int = option(2, "detections before a tentative track is confirmed", ge=1)
    iou_threshold: float = option(
        0.4, "minimum mask IoU to associate with a propagated track", ge=0.0, le=1.0
    )
    window: int = option(3, "frames of mask history used for association", ge=1)
    match_coeffs: tuple[float, float, float] = option(
        (1.0, 2.0, 10.0),
        "MaskTrack weights of (log detection score, box IoU, same class)",
        ge=0.0,
    )
    mask_iou_weight: float = option(
        2.0, "weight of the mask IoU with a recently seen track (0: MaskTrack's cues only)", ge=0.0
    )
    propagation_bonus: bool = option(
        True, "mask IoU >= iou_threshold with a recently seen track adds the same-class weight"
    )
    assignment: Literal["hungarian", "greedy"] = option(
        "hungarian",
        "one-to-one assignment: hungarian (optimal) or greedy (MaskTrack: best-scoring first)",
    )


@dataclass(frozen=True)
class SmoothingSection:
    enabled: bool = option(True, "causal temporal smoothing of semantic probabilities")
    window: int = option(3, "number of frames averaged (current + previous)", ge=1)


@dataclass(frozen=True)
class OutputSection:
    embed_segment_ids: bool = option(True, "embed the 16UC1 segment-id image in PanopticTrackArray")
    publish_overlay: bool = option(True, "publish panoptic/overlay (bgr8) for RViz")
    overlay_alpha: float = option(0.5, "overlay opacity of the segment colours", ge=0.0, le=1.0)
    publish_markers: bool = option(False, "publish panoptic/markers (track id text labels)")


@dataclass(frozen=True)
class DiagnosticsSection:
    period_s: float = option(1.0, "period of /diagnostics messages", gt=0.0)
    warn_drop_ratio: float = option(
        0.5, "dropped/received ratio above which diagnostics report WARN", ge=0.0, le=1.0
    )
    warn_latency_ms: float = option(
        500.0, "mean latency (publish - header stamp) above which diagnostics report WARN", gt=0.0
    )


@dataclass(frozen=True)
class NodeConfig:
    """All parameters of ``perception_node``."""

    autostart: bool = option(True, "configure and activate the lifecycle node at start-up")
    score_threshold: float = option(
        0.5, "thing detections with a lower score are discarded", ge=0.0, le=1.0
    )
    model: ModelSection = section(ModelSection, "which network runs and where")
    input: InputSection = section(InputSection, "image subscription")
    tracker: TrackerSection = section(TrackerSection, "causal online tracker")
    smoothing: SmoothingSection = section(SmoothingSection, "causal semantic smoothing")
    output: OutputSection = section(OutputSection, "published topics")
    diagnostics: DiagnosticsSection = section(DiagnosticsSection, "/diagnostics")
