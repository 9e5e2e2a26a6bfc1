"""Tests of the appearance refinement of motion instances."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from vcups_core.configs.pseudo_labels import RegionGrowingSection
from vcups_core.pseudo.refine import band_width, group_instances, refine_instances


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
    cfg = dataclasses.replace(
        RegionGrowingSection(), refine="grabcut", refine_band=10.0, refine_band_scale=0.0
    )
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
    off = dataclasses.replace(RegionGrowingSection(), refine="none")
    assert refine_instances(image, labels, motion, off) is labels
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


def test_group_instances_by_gap_and_depth() -> None:
    labels = np.zeros((20, 50), np.int32)
    labels[5:10, 2:8] = 1
    labels[5:10, 10:16] = 2  # 2 px from 1
    labels[5:10, 18:24] = 3  # 2 px from 2
    labels[5:10, 26:32] = 4  # 2 px from 3
    depth = np.full((20, 50), np.nan, np.float32)
    depth[labels == 1] = 10.0
    depth[labels == 2] = 10.5  # 5 % deeper than 1: the same object at 10 %
    depth[labels == 3] = 15.0  # 43 % deeper than 2: a car behind it
    # 4 has no depth (unknown does not veto): it joins 3
    groups = group_instances(labels, 2, depth=depth, max_depth_difference=0.1)
    assert groups[1] == groups[2] != groups[3] == groups[4]
    # half of 2's pixels without depth: its median from the other half still counts
    depth[5:7, 10:16] = np.nan
    again = group_instances(labels, 2, depth=depth, max_depth_difference=0.1)
    assert again[1] == again[2] != again[3]


def test_a_small_unrefined_neighbour_keeps_its_pixels() -> None:
    image, square = _scene()
    labels = np.zeros(square.shape, np.int32)
    labels[40:80, 60:95] = 1  # most of the red square
    labels[40:80, 97:100] = 2  # a thin neighbour of the same colour, below refine_min_area
    motion = np.where(labels > 0, 0.95, 0.0).astype(np.float32)
    cfg = dataclasses.replace(
        RegionGrowingSection(),
        refine="grabcut",
        refine_merge_gap=0,
        refine_band=4.0,
        refine_min_area=150 / square.size,
    )
    out = refine_instances(image, labels, motion, cfg)
    # the large one's colour model spreads over the whole square, but not over its neighbour
    assert (out[40:80, 95:97] == out[60, 70]).all()
    small = out[labels == 2]
    assert (small == small[0]).all() and small[0] not in (0, out[60, 70])


def _noise_scene(seed: int, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour noise everywhere, one moving rectangle: image, its labels and motion score."""
    image = np.random.default_rng(seed).integers(0, 255, size=(120, 160, 3), dtype=np.uint8)
    labels = np.zeros((120, 160), np.int32)
    labels[rows, cols] = 1
    return image, labels, np.where(labels > 0, 0.95, 0.0).astype(np.float32)


def test_band_width() -> None:
    cfg = dataclasses.replace(RegionGrowingSection(), refine_band=16.0, refine_band_scale=0.1)
    assert band_width(cfg, 400) == pytest.approx(2.0)  # 0.1 * sqrt(400)
    assert band_width(cfg, 90_000) == 16.0  # 0.1 * 300 = 30, capped
    assert band_width(dataclasses.replace(cfg, refine_band_scale=0.0), 400) == 16.0


def test_a_small_object_keeps_its_sure_interior() -> None:
    """An object indistinguishable from its background keeps the interior beyond its band."""
    # 400 px: band 0.1 * 20 = 2 px instead of 16
    image, labels, motion = _noise_scene(1, slice(50, 70), slice(70, 90))
    cfg = dataclasses.replace(
        RegionGrowingSection(),
        refine="grabcut",
        refine_band=16.0,
        refine_band_scale=0.1,
        refine_min_area=0.0,
    )
    out = refine_instances(image, labels, motion, cfg)
    assert (out[53:67, 73:87] == 1).all()  # deeper than 2 px: sure foreground


def test_grabcut_does_not_depend_on_the_rng_state() -> None:
    """Resumed and sharded runs must write the same labels: OpenCV's global RNG (k-means++ of
    GrabCut's colour models) is seeded per call."""
    # colour noise everywhere: k-means++ from different states finds different colour models
    image, labels, motion = _noise_scene(2, slice(30, 90), slice(40, 120))
    cfg = dataclasses.replace(RegionGrowingSection(), refine="grabcut", refine_min_area=0.0)
    results = []
    for seed in (1, 12345, 7, 99):
        cv2.setRNGSeed(seed)
        cv2.randu(np.zeros((64, 64), np.float32), np.zeros(1), np.ones(1))  # move the RNG on
        results.append(refine_instances(image, labels, motion, cfg))
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])
