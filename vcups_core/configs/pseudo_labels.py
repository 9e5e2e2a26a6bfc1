"""Pseudo-label generation from raw video (``config/pseudo_labels.yaml``).

Values follow ``docs/method.md`` §2 (the supplement's Tables 6-8 and A.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vcups_core.config import option, section


@dataclass(frozen=True)
class FlowSection:
    method: Literal["dis", "raft"] = option(
        "dis", "optical flow: OpenCV DIS (no weights) or RAFT with local SMURF/RAFT weights"
    )
    weights: str = option("", "RAFT weights file (method: raft)")
    fb_consistency: float = option(
        1.0, "forward-backward flow error (px) above which flow is invalid", gt=0.0
    )


@dataclass(frozen=True)
class RegionGrowingSection:
    seed_threshold: float = option(
        0.15, "alpha: motion score that seeds an instance", ge=0.0, le=1.0
    )
    depth_threshold: float = option(0.02, "tau_d: relative depth difference to grow", gt=0.0)
    flow_threshold: float = option(0.04, "tau_f: relative flow difference to grow", gt=0.0)
    radius: int = option(8, "r: neighbourhood radius in pixels", ge=1)
    min_area: int = option(64, "instances with fewer pixels are dropped", ge=0)


@dataclass(frozen=True)
class SemanticsSection:
    num_classes: int = option(27, "semantic pseudo-classes (DepthG clusters)", ge=2)
    crop_size: int = option(320, "sliding-window crop", gt=0)
    stride: int = option(160, "sliding-window stride", gt=0)
    cluster_temperature: float = option(2.0, "alpha of log_softmax(alpha * cos)", gt=0.0)
    crf_iterations: int = option(10, "dense-CRF iterations (0 disables the CRF)", ge=0)
    weights: str = option("", "DepthG head weights file")


@dataclass(frozen=True)
class TrackingSection:
    window: int = option(3, "frames of the propagation window", ge=2)
    iou_threshold: float = option(
        0.4, "tau_m: Hungarian matches need at least this IoU", ge=0.0, le=1.0
    )


@dataclass(frozen=True)
class PseudoLabelConfig:
    """Everything that turns raw monocular video into panoptic pseudo-labels."""

    height: int = option(640, "processing height (pixels)", gt=0)
    width: int = option(1280, "processing width (pixels)", gt=0)
    semantic_smoothing_window: int = option(3, "frames of temporal semantic smoothing", ge=1)
    thing_stuff_threshold: float = option(
        0.01, "psi: normalised in-instance ratio above which a class is a thing", gt=0.0, lt=1.0
    )
    flow: FlowSection = section(FlowSection, "optical flow")
    region_growing: RegionGrowingSection = section(RegionGrowingSection, "motion instances")
    semantics: SemanticsSection = section(SemanticsSection, "unsupervised semantics")
    tracking: TrackingSection = section(TrackingSection, "instance propagation and tracking")
