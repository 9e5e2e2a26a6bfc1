"""Evaluation protocol (``config/evaluation.yaml``); see ``docs/method.md`` §6.

Read by :func:`vcups_core.metrics.evaluate.evaluate` (every key but ``dataset``) and by
``vcups evaluate`` (``dataset`` is the default of ``--dataset``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vcups_core.config import option


@dataclass(frozen=True)
class EvaluationConfig:
    """How predictions are matched to ground-truth classes and scored."""

    dataset: Literal["cityscapes-vps", "kitti-step", "mots", "waymo"] = option(
        "cityscapes-vps", "ground-truth format and dataset rules"
    )
    match: Literal["hungarian", "none"] = option(
        "hungarian",
        "pseudo-class -> class mapping: Hungarian within thing/stuff, rest by majority "
        "(none: predictions are class ids already)",
    )
    adhere_thing_stuff: bool = option(
        True, "match pseudo-things only to thing classes (and stuff to stuff)"
    )
    label_bit_shift: int = option(16, "panoptic id = (semantic << shift) + instance", ge=1, le=31)
    vpq_window_sizes: tuple[int, ...] = option((1, 2, 3, 4), "VPQ window sizes (frames)", ge=1)
    waymo_min_track_area: int = option(
        400, "Waymo: ground-truth tracks with a smaller mean area become crowd", ge=0
    )
    pred_void: Literal["deeplab2", "false_negative"] = option(
        "deeplab2",
        "SQ: labelled pixels predicted void add a void bin with IoU 0 to the mean (deeplab2, "
        "official) or are only false negatives",
    )
    pred_tubes: Literal["deeplab2", "labelled"] = option(
        "deeplab2",
        "AQ: predicted tubes are all predicted thing pixels (deeplab2, official) or only those "
        "with an instance id on labelled ground truth",
    )
