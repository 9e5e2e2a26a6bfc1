"""Tests of the appearance refinement of motion instances."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vcups_core.configs.pseudo_labels import RegionGrowingSection
from vcups_core.pseudo.refine import group_instances, refine_instances


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """A red square on a textured grey-green background; the motion blob overshoots it."""
    rng = np.random.default_rng(0)
    image = np.empty((120, 160, 3), np.uint8)
    image[...] = (70, 110, 80)
    image += rng.integers(0, 12, size=(120, 160, 3), dtype=np.uint8)
    square = np.zeros((120, 160), bool)
    square[40:80, 60:100] = True
    image[square] = (220, 30, 30)
    return image, square


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_motion_blob_shrinks_to_the_square() -> None:
    image, square = _scene()
    labels = np.zeros(square.shape, np.int32)
    labels[33:87, 53:107] = 1  # 7 px too large on every side
    motion = np.where(labels > 0, 0.95, 0.0).astype(np.float32)
    cfg = dataclasses.replace(RegionGrowingSection(), refine="grabcut", refine_band=10.0)
    out = refine_instances(image, labels, motion, cfg)
    assert out.dtype == np.int32
    assert _iou(labels > 0, square) < 0.6
    assert _iou(out == 1, square) > 0.95
    assert out.max() == 1


def test_fragments_are_refined_as_one_instance() -> None:
    image, square = _scene()
    labels = np.zeros(square.shape, np.int32)
    labels[40:80, 60:78] = 1
    labels[40:80, 82:100] = 2  # a 4 px gap between the fragments
    motion = np.where(labels > 0, 0.95, 0.0).astype(np.float32)
    cfg = dataclasses.replace(
        RegionGrowingSection(), refine="grabcut", refine_merge_gap=4, refine_band=4.0
    )
    out = refine_instances(image, labels, motion, cfg)
    assert out.max() == 1
    assert _iou(out == 1, square) > 0.95


def test_none_and_small_instances_are_untouched() -> None:
    image, square = _scene()
    labels = np.zeros(square.shape, np.int32)
    labels[33:87, 53:107] = 1
    motion = np.ones(square.shape, np.float32)
    assert refine_instances(image, labels, motion, RegionGrowingSection()) is labels
    cfg = dataclasses.replace(RegionGrowingSection(), refine="grabcut", refine_min_area=0.5)
    np.testing.assert_array_equal(refine_instances(image, labels, motion, cfg), labels)


def test_group_instances_by_gap() -> None:
    labels = np.zeros((20, 40), np.int32)
    labels[5:10, 2:8] = 1
    labels[5:10, 10:16] = 2
    labels[5:10, 30:36] = 3
    groups = group_instances(labels, 2)
    assert groups[1] == groups[2] != groups[3]
    assert list(group_instances(labels, 0)) == [0, 1, 2, 3]


def test_shape_mismatch_raises() -> None:
    cfg = dataclasses.replace(RegionGrowingSection(), refine="grabcut", refine_band=4.0)
    labels = np.ones((10, 10), np.int32)
    with pytest.raises(ValueError, match="vs labels"):
        refine_instances(np.zeros((5, 5, 3), np.uint8), labels, np.ones((10, 10), np.float32), cfg)


def test_group_instances_by_gap_and_flow() -> None:
    labels = np.zeros((20, 40), np.int32)
    labels[5:10, 2:8] = 1
    labels[5:10, 10:16] = 2  # 2 px from 1
    labels[5:10, 18:24] = 3  # 2 px from 2
    flow = np.zeros((20, 40, 2), np.float32)
    flow[labels == 1] = (10.0, 0.0)
    flow[labels == 2] = (11.0, 0.0)  # moves like 1 (difference 1 < 0.25 * 11 + 0.5)
    flow[labels == 3] = (-10.0, 0.0)  # moves the other way
    groups = group_instances(labels, 2, flow, 0.25)
    assert groups[1] == groups[2] != groups[3]
    # without the flow, distance alone joins all three
    by_gap = group_instances(labels, 2)
    assert by_gap[1] == by_gap[2] == by_gap[3]
