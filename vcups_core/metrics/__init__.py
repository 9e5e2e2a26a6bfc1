"""Evaluation metrics: STQ/AQ/SQ, VPQ, pseudo-class matching, dataset rules and tables.

Typical use: accumulate :func:`confusion_from` over a dataset, :func:`match_classes` once, then per
frame ``match.apply(pred_sem)``, a dataset rule from :mod:`~vcups_core.metrics.rules`, and
``update`` of :class:`STQuality` / :class:`VideoPanopticQuality` (or one
:class:`HistogramBuilder` call shared by both via ``update_histogram``).
"""

from vcups_core.metrics.class_matching import ClassMatch, confusion_from, match_classes
from vcups_core.metrics.histogram import HistogramBuilder, JointHistogram, joint_histogram
from vcups_core.metrics.rules import (
    KITTI_STEP_TRACKED,
    MOTS_NUM_CLASSES,
    MOTS_THINGS,
    WAYMO_MIN_MEAN_AREA,
    drop_untracked_instances,
    kitti_step_rule,
    restrict_to_tracks,
    stq_for,
    void_unevaluated,
    vpq_for,
    waymo_crowd_small_tracks,
)
from vcups_core.metrics.stq import PredVoidRule, STQResult, STQuality, iou_from_confusion
from vcups_core.metrics.tables import classwise_table
from vcups_core.metrics.vpq import VideoPanopticQuality, VPQResult, WindowResult

__all__ = [
    "KITTI_STEP_TRACKED",
    "MOTS_NUM_CLASSES",
    "MOTS_THINGS",
    "WAYMO_MIN_MEAN_AREA",
    "ClassMatch",
    "HistogramBuilder",
    "JointHistogram",
    "PredVoidRule",
    "STQResult",
    "STQuality",
    "VPQResult",
    "VideoPanopticQuality",
    "WindowResult",
    "classwise_table",
    "confusion_from",
    "drop_untracked_instances",
    "iou_from_confusion",
    "joint_histogram",
    "kitti_step_rule",
    "match_classes",
    "restrict_to_tracks",
    "stq_for",
    "void_unevaluated",
    "vpq_for",
    "waymo_crowd_small_tracks",
]
