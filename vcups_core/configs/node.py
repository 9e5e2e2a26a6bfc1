"""Parameters of the ROS 2 perception node (``config/perception.yaml``, ``ros__parameters``).

The node declares one ROS parameter per leaf key (dotted, e.g.
``streaming.tracker.iou_threshold``) and fills :class:`NodeConfig` from them through
:func:`vcups_core.config.config_from_dict`, so the node and every offline tool validate
parameters with the same code. ROS parameters cannot be null, so "not set" is the empty string.
The ``model`` section is a :class:`~vcups_core.configs.predictor.PredictorConfig` and the
``streaming`` section a :class:`~vcups_core.configs.streaming.StreamingConfig`, the same schemas
``vcups replay`` and ``vcups evaluate`` read from this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vcups_core.config import option, section
from vcups_core.configs.predictor import PredictorConfig
from vcups_core.configs.streaming import StreamingConfig


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
    model: PredictorConfig = section(PredictorConfig, "which network runs and where")
    input: InputSection = section(InputSection, "image subscription")
    streaming: StreamingConfig = section(
        StreamingConfig, "after the network: score threshold, stuff, time, tracker, smoothing"
    )
    output: OutputSection = section(OutputSection, "published topics")
    diagnostics: DiagnosticsSection = section(DiagnosticsSection, "/diagnostics")
