"""Motion-based region growing (method §2.3) on hand-made flow, depth and motion fields."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from vcups_core.configs.pseudo_labels import RegionGrowingSection
from vcups_core.pseudo.region_growing import (
    REFERENCE_AREA,
    clean_instances,
    grow_regions,
    reference_step,
    scaled_min_area,
    similarity_components,
    stencil,
)

H, W = 40, 64
F32 = npt.NDArray[np.float32]


def scene() -> tuple[F32, F32, F32, npt.NDArray[np.bool_]]:
    """A static background: zero motion, zero flow, depth 50, all valid."""
    motion = np.zeros((H, W), np.float32)
    flow = np.zeros((H, W, 2), np.float32)
    depth = np.full((H, W), 50.0, np.float32)
    return motion, flow, depth, np.ones((H, W), bool)


def cfg(**changes: Any) -> RegionGrowingSection:
    """The defaults (α 0.15, accept_threshold 0.5, τ_d 0.02, τ_f 0.04, r 8, min_area 64), plus
    ``changes``.

    The hand-made fields below are built for thresholds per step of their own grid: on a 40x64
    frame ``scale_thresholds`` would multiply τ_d by ~18 (its own tests are below), so
    it is off unless a test sets it.
    """
    return dataclasses.replace(RegionGrowingSection(scale_thresholds=False), **changes)


def px(pixels: int) -> int:
    """``min_area`` (given for a 640x1280 frame) that means ``pixels`` on the H x W test frame."""
    return pixels * REFERENCE_AREA // (H * W)  # 320 x pixels: exact for 40 x 64


def test_min_area_scales_with_the_frame_area() -> None:
    assert scaled_min_area(64, 640, 1280) == 64
    assert scaled_min_area(64, 320, 640) == 16
    assert scaled_min_area(64, 256, 512) == 10  # 10.24 rounded
    assert scaled_min_area(1, 8, 8) == 1  # never below one pixel
    assert scaled_min_area(px(50), H, W) == 50


def grow(
    motion: F32, flow: F32, depth: F32 | None, valid: npt.NDArray[np.bool_], **changes: Any
) -> npt.NDArray[np.int32]:
    """Region growing at full resolution (``work_scale=1``, so the hand-made fields are exact)."""
    return grow_regions(motion, flow, depth, valid, cfg(**changes), work_scale=1.0)


def test_stencil_offsets() -> None:
    # 4 half-plane directions at distances 1, 2, 4, ..., radius (radius always included)
    assert stencil(1) == [(0, 1), (1, 0), (1, 1), (1, -1)]
    assert stencil(8) == [
        (dy * d, dx * d) for d in (1, 2, 4, 8) for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1))
    ]
    assert sorted({max(abs(dy), abs(dx)) for dy, dx in stencil(5)}) == [1, 2, 4, 5]
    assert sorted({max(abs(dy), abs(dx)) for dy, dx in stencil(3)}) == [1, 2, 3]
    for radius in range(1, 20):
        offsets = stencil(radius)
        assert len(offsets) == len(set(offsets))
        assert all(dy >= 0 for dy, _ in offsets)  # one half-plane: every pair counted once
        assert max(max(abs(dy), abs(dx)) for dy, dx in offsets) == radius


def test_touching_objects_at_different_depths_are_split_only_with_depth() -> None:
    motion, flow, depth, valid = scene()
    # two 12x12 squares side by side (touching), the same flow, depths 10 and 12
    motion[10:22, 10:34] = 1.0
    flow[10:22, 10:34] = (3.0, 1.0)
    depth[10:22, 10:22] = 10.0
    depth[10:22, 22:34] = 12.0  # relative difference 0.2 >> τ_d = 0.02
    with_depth = grow(motion, flow, depth, valid)
    assert with_depth.max() == 2
    assert len(np.unique(with_depth[10:22, 10:22])) == 1
    assert len(np.unique(with_depth[10:22, 22:34])) == 1
    assert with_depth[15, 15] != with_depth[15, 30]
    assert (with_depth[10:22, 10:34] > 0).all() and with_depth.sum() == 144 * 3
    without_depth = grow(motion, flow, None, valid)
    assert without_depth.max() == 1
    assert (without_depth == 1).sum() == 288
    # a depth step within τ_d does not split either
    depth[10:22, 22:34] = 10.1
    assert grow(motion, flow, depth, valid).max() == 1


def test_smooth_flow_gradient_stays_whole_and_a_flow_step_splits() -> None:
    motion, flow, _, valid = scene()
    motion[8:32, 8:56] = 1.0
    # flow grows gently from 5.0 to 6.0 px across the object: 0.021 px per column, well under
    # τ_f * |F| = 0.04 * 5 = 0.2 px (and no tolerance, so τ_f alone decides)
    ramp = np.linspace(5.0, 6.0, 48, dtype=np.float32)
    flow[8:32, 8:56, 0] = ramp[None, :]
    smooth = grow(motion, flow, None, valid, flow_tolerance=0.0)
    assert smooth.max() == 1
    assert (smooth[8:32, 8:56] == 1).all()
    # the same object with a 1 px step in the middle (0.18 relative > τ_f) is two regions
    flow[8:32, 32:56, 0] += 1.0
    stepped = grow(motion, flow, None, valid, flow_tolerance=0.0)
    assert stepped.max() == 2
    assert stepped[20, 20] != stepped[20, 40]
    # a tolerance above the step joins them again
    assert grow(motion, flow, None, valid, flow_tolerance=1.5).max() == 1


def test_diagonal_flow_norm_is_more_lenient() -> None:
    motion, flow, _, valid = scene()
    motion[8:32, 8:56] = 1.0
    flow[8:32, 8:32] = (5.0, 0.0)
    flow[8:32, 32:56] = (6.0, 0.0)  # 1 px step: relative 0.18 > τ_f, 1 / diag(75.5) < τ_f
    assert grow(motion, flow, None, valid, flow_tolerance=0.0).max() == 2
    assert grow(motion, flow, None, valid, flow_tolerance=0.0, flow_norm="diagonal").max() == 1


def test_reference_step() -> None:
    assert reference_step(640, 1280) == 1.0
    assert reference_step(320, 640) == 2.0  # the work_pixels grid of a 640x1280 frame
    assert reference_step(256, 512) == 2.5
    assert reference_step(1280, 2560) == 0.5


def slanted_object(h: int, w: int, step: float) -> tuple[F32, F32, F32, npt.NDArray[np.bool_]]:
    """A moving 16x24 object whose depth grows by ``step`` (relative) per column, like the side
    of a car seen at a grazing angle, on a static background far behind."""
    motion = np.zeros((h, w), np.float32)
    flow = np.zeros((h, w, 2), np.float32)
    depth = np.full((h, w), 200.0, np.float32)
    motion[40:56, 100:124] = 1.0
    flow[40:56, 100:124] = (2.0, -1.0)
    depth[40:56, 100:124] = (50.0 * (1.0 + step) ** np.arange(24, dtype=np.float32))[None, :]
    return motion, flow, depth, np.ones((h, w), bool)


def test_scaled_thresholds_keep_a_slanted_face_whole_at_low_resolution() -> None:
    # 256x512: one grid step is 2.5 pixels of a 640x1280 frame, τ_d 0.02 becomes 0.05
    motion, flow, depth, valid = slanted_object(256, 512, 0.023)
    scaled = grow_regions(motion, flow, depth, valid, cfg(scale_thresholds=True), work_scale=1.0)
    assert scaled.max() == 1 and (scaled[40:56, 100:124] == 1).all()
    # per grid step (the old rule), every column is a region of its own: 16-pixel strips
    strips = grow_regions(
        motion, flow, depth, valid, cfg(scale_thresholds=False, min_area=0), work_scale=1.0
    )
    assert strips.max() == 24
    # a real depth discontinuity (object 20 % in front of its neighbour) still splits
    depth[40:56, 112:124] *= 1.2
    split = grow_regions(motion, flow, depth, valid, cfg(scale_thresholds=True), work_scale=1.0)
    assert split.max() == 2 and split[48, 105] != split[48, 118]


def test_scaled_thresholds_at_the_reference_size_are_the_paper_values() -> None:
    # at 640x1280 grown at full resolution the step is 1 reference pixel: nothing changes
    motion, flow, depth, valid = slanted_object(640, 1280, 0.023)
    for scale in (True, False):
        labels = grow_regions(
            motion, flow, depth, valid, cfg(scale_thresholds=scale, min_area=0), work_scale=1.0
        )
        assert labels.max() == 24


def test_seed_on_noisy_static_background_is_rejected() -> None:
    rng = np.random.default_rng(0)
    motion, flow, depth, valid = scene()
    # static background: flow noise of 0.05 px, motion scores 0.06..0.12 with 5 % of the pixels
    # above α (noisy seeds); all of it is one similar component whose median score is below α
    flow[:] = rng.normal(0.0, 0.05, (H, W, 2))
    motion[:] = rng.uniform(0.06, 0.12, (H, W))
    noisy = rng.random((H, W)) < 0.05
    motion[noisy] = 0.3
    assert grow(motion, flow, depth, valid).max() == 0
    # a real moving object on the same background is still found (alone)
    motion[10:26, 10:26] = 0.9
    flow[10:26, 10:26] = (4.0, 0.0)
    labels = grow(motion, flow, depth, valid)
    assert labels.max() == 1
    assert (labels == 1).sum() == 256 and (labels[10:26, 10:26] == 1).all()


@pytest.mark.parametrize("accept", [0.0, 0.15, 0.5])
def test_accept_threshold_rejects_regions_that_barely_move(accept: float) -> None:
    # two objects with their own flow: one whose median score is 0.3 (parallax, flow noise just
    # above alpha), one that moves (0.9); alpha 0.15 keeps both, 0.5 only the mover, and an
    # accept_threshold below alpha changes nothing
    motion, flow, depth, valid = scene()
    motion[4:20, 4:20] = 0.3
    flow[4:20, 4:20] = (2.0, 0.0)
    motion[22:38, 40:56] = 0.9
    flow[22:38, 40:56] = (0.0, 5.0)
    labels = grow(motion, flow, depth, valid, accept_threshold=accept)
    assert (labels[22:38, 40:56] > 0).all()
    weak = labels[4:20, 4:20]
    if accept < 0.3:
        assert labels.max() == 2 and (weak > 0).all() and len(np.unique(weak)) == 1
    else:
        assert labels.max() == 1 and (weak == 0).all()


def test_unsupported_pixels_are_never_grown_into() -> None:
    # support_threshold above α: seeds between the two thresholds cannot join any region; they
    # must not turn the unsupported pixels into one huge instance
    motion, flow, depth, valid = scene()
    motion[:] = 0.3  # > α but < support_threshold: neither grown into nor a region of its own
    motion[10:26, 10:26] = 1.0
    flow[10:26, 10:26] = (4.0, 0.0)
    labels = grow(motion, flow, depth, valid, support_threshold=0.5)
    assert labels.max() == 1
    assert (labels == 1).sum() == 256


def test_invalid_pixels_are_not_grown_into() -> None:
    motion, flow, depth, valid = scene()
    motion[10:26, 4:60] = 1.0
    flow[10:26, 4:60] = (4.0, 0.0)
    valid[:, 26:36] = False  # an invalid stripe wider than r cuts the object in two
    flow[12, 40] = np.nan  # undefined flow is invalid too
    labels = grow(motion, flow, depth, valid, fill_holes=False)
    assert labels.max() == 2
    assert (labels[:, 26:36] == 0).all() and labels[12, 40] == 0
    assert (labels[10:26, 4:26] == 2).all() and (labels == 1).sum() == 16 * 24 - 1
    # a stripe narrower than r does not: the neighbourhood reaches across it
    valid[:, 30:36] = True
    assert grow(motion, flow, depth, valid).max() == 1


def test_holes_are_filled() -> None:
    motion, flow, depth, valid = scene()
    motion[8:28, 8:28] = 1.0
    flow[8:28, 8:28] = (4.0, 0.0)
    motion[14:22, 14:22] = 0.0  # a static hole inside the object (not grown into)
    filled = grow(motion, flow, depth, valid)
    assert filled.max() == 1
    assert (filled[8:28, 8:28] == 1).all()
    kept = grow(motion, flow, depth, valid, fill_holes=False)
    assert (kept[14:22, 14:22] == 0).all() and (kept == 1).sum() == 400 - 64


def test_min_area_and_ids_by_decreasing_area() -> None:
    motion, flow, depth, valid = scene()
    # areas 25 (top-left, found first), 160, 100 and 64, each with its own flow
    boxes = [(2, 7, 2, 7), (20, 36, 2, 12), (2, 12, 40, 50), (24, 32, 50, 58)]
    for k, (y0, y1, x0, x1) in enumerate(boxes):
        motion[y0:y1, x0:x1] = 1.0
        flow[y0:y1, x0:x1] = (2.0 + 3 * k, -1.0)
    labels = grow(motion, flow, depth, valid, min_area=px(50))
    assert labels.max() == 3
    assert (labels[2:7, 2:7] == 0).all()  # 25 px < min_area
    assert (labels[20:36, 2:12] == 1).all() and (labels == 1).sum() == 160
    assert (labels[2:12, 40:50] == 2).all() and (labels == 2).sum() == 100
    assert (labels[24:32, 50:58] == 3).all() and (labels == 3).sum() == 64
    assert grow(motion, flow, depth, valid, min_area=px(65)).max() == 2  # 64 px dropped too
    assert grow(motion, flow, depth, valid, min_area=0).max() == 4


def test_no_seed_gives_no_instance() -> None:
    motion, flow, depth, valid = scene()
    motion[10:26, 10:26] = 0.14  # < α
    flow[10:26, 10:26] = (4.0, 0.0)
    labels = grow(motion, flow, depth, valid)
    assert labels.dtype == np.int32 and labels.shape == (H, W) and labels.max() == 0


def test_half_resolution_graph() -> None:
    motion, flow, depth, valid = scene()
    motion[8:24, 8:24] = 1.0
    flow[8:24, 8:24] = (4.0, 0.0)
    depth[8:24, 8:24] = 10.0
    motion[8:24, 40:56] = 1.0
    flow[8:24, 40:56] = (-4.0, 0.0)
    labels = grow_regions(motion, flow, depth, valid, cfg(), work_scale=0.5)
    assert labels.shape == (H, W) and labels.max() == 2
    assert (labels[8:24, 8:24] > 0).all() and (labels[8:24, 40:56] > 0).all()
    assert (labels > 0).sum() == 512
    with pytest.raises(ValueError, match="work_scale"):
        grow_regions(motion, flow, depth, valid, cfg(), work_scale=0.0)
    with pytest.raises(ValueError, match="do not match"):
        grow_regions(motion, flow[:, :10], depth, valid, cfg())


def test_similarity_components_directly() -> None:
    flow = np.zeros((4, 6, 2), np.float32)
    flow[:, 3:] = (5.0, 0.0)
    active = np.ones((4, 6), bool)
    active[0, 0] = False
    comp = similarity_components(
        flow, None, active, radius=2, depth_threshold=0.02, flow_threshold=0.04
    )
    assert comp[0, 0] == -1
    # zero flow: relative threshold 0 and no tolerance, so every zero-flow pixel is alone
    assert len(np.unique(comp[:, :3])) == 12  # -1 and 11 singletons
    assert len(np.unique(comp[:, 3:])) == 1
    assert comp[0, 3] not in comp[:, :3]
    tolerant = similarity_components(
        flow, None, active, radius=2, depth_threshold=0.02, flow_threshold=0.04, flow_tolerance=0.1
    )
    assert len(np.unique(tolerant[:, :3][active[:, :3]])) == 1
    assert len(np.unique(tolerant)) == 3  # -1, the static part, the moving part


def test_clean_instances() -> None:
    labels = np.zeros((8, 10), np.int32)
    labels[1:6, 1:6] = 7  # a 5x5 ring around a 1-px hole ...
    labels[3, 3] = 0
    labels[0, 8:10] = 3  # ... a 2-px instance ...
    labels[5:8, 7:10] = 4  # ... and a 3x3 one
    out = clean_instances(labels, min_area=3)
    assert out.dtype == np.int32
    expected = np.zeros((8, 10), np.int32)
    expected[1:6, 1:6] = 1
    expected[5:8, 7:10] = 2
    np.testing.assert_array_equal(out, expected)
    unfilled = clean_instances(labels, min_area=0, fill_holes=False)
    assert unfilled[3, 3] == 0 and unfilled.max() == 3 and (unfilled == 3).sum() == 2
    assert clean_instances(np.zeros((3, 3), np.int32), min_area=1).max() == 0


def test_fast_hypot_comparison_equals_np_hypot_also_at_the_bound() -> None:
    from vcups_core.pseudo.region_growing import _below_hypot

    rng = np.random.default_rng(0)
    dx = rng.normal(0, 3, 20000).astype(np.float32)
    dy = rng.normal(0, 3, 20000).astype(np.float32)
    exact_h = np.hypot(dx, dy)
    # bounds exactly at, one ulp around, and far from each hypot; NaN and extreme bounds too
    bound = np.concatenate(
        [
            exact_h[:5000],
            np.nextafter(exact_h[5000:10000], np.float32(np.inf)),
            np.nextafter(exact_h[10000:15000], np.float32(0)),
            rng.uniform(0, 10, 5000).astype(np.float32),
        ]
    ).astype(np.float32)
    bound[:10] = np.nan
    bound[10:20] = np.float32(1e-20)
    bound[20:30] = np.float32(1e20)
    np.testing.assert_array_equal(_below_hypot(dx, dy, bound), exact_h < bound)
    dx[:5] = np.nan
    np.testing.assert_array_equal(_below_hypot(dx, dy, bound), np.hypot(dx, dy) < bound)
