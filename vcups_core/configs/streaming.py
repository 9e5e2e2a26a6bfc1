"""Settings of the streaming path: what happens to a frame's prediction after the network.

One :class:`StreamingConfig` for every caller of
:class:`~vcups_core.streaming.segmenter.StreamingSegmenter`: the ROS node (its ``streaming.*``
parameters, ``config/perception.yaml``), ``vcups replay`` and ``vcups evaluate`` (``--config`` /
``--node-config``: the same node parameter file), the held-out scoring of the demo, and
:mod:`vcups_core.streaming.dataset_run`. It is read in one place,
:meth:`StreamingSegmenter.configure <vcups_core.streaming.segmenter.StreamingSegmenter.configure>`,
at start-up and for live parameter changes alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vcups_core.config import option, section

MODEL_STUFF_AREA_LIMIT = -1
"""``stuff_area_limit`` value meaning "the model's ``inference.stuff_area_limit``"."""


@dataclass(frozen=True)
class TrackerSection:
    max_age: int = option(30, "frames a track is kept without a detection before it ends", ge=0)
    min_hits: int = option(2, "detections before a tentative track is confirmed", ge=1)
    iou_threshold: float = option(
        0.4,
        "mask IoU with a track seen within `window` frames at or above which the propagation "
        "bonus applies (a bonus, not a gate: detections below it still match by appearance, box "
        "and class)",
        ge=0.0,
        le=1.0,
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
        True,
        "the propagation bonus: mask IoU >= iou_threshold with a recently seen track adds the "
        "same-class weight (false: iou_threshold is not used)",
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
class StreamingConfig:
    """The segmenter's settings after the network: threshold, stuff, time, tracker, smoothing."""

    score_threshold: float = option(
        0.5,
        "thing detections are tracked when score >= this; the others' pixels fall back to stuff",
        ge=0.0,
        le=1.0,
    )
    stuff_area_limit: int = option(
        MODEL_STUFF_AREA_LIMIT,
        "stuff segments with fewer pixels become void (-1: the model's "
        "inference.stuff_area_limit, 4096 for a predictor without one)",
        ge=-1,
    )
    max_gap_s: float = option(
        2.0,
        "a jump between consecutive stamps longer than this resets tracker and smoother",
        gt=0.0,
    )
    tracker: TrackerSection = section(TrackerSection, "causal online tracker")
    smoothing: SmoothingSection = section(SmoothingSection, "causal semantic smoothing")
