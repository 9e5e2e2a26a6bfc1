"""Forward-backward consistency, border mask and their combination, on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from vcups_core.configs.pseudo_labels import ValiditySection
from vcups_core.cues.flow import warp
from vcups_core.cues.validity import (
    border_mask,
    forward_backward_valid,
    leaves_image,
    validity_mask,
)


def _constant(h: int, w: int, dx: float, dy: float) -> np.ndarray:
    flow = np.empty((h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    return flow


def test_consistent_pair_is_valid_except_pixels_leaving_the_image() -> None:
    flow = _constant(6, 8, 2.0, 0.0)
    back = _constant(6, 8, -2.0, 0.0)
    valid = forward_backward_valid(flow, back, fb_abs=1.0, fb_rel=0.05)
    assert valid.dtype == np.bool_ and valid.shape == (6, 8)
    # x + 2 <= 7.5 for x <= 5; columns 6 and 7 leave the image
    expected = np.zeros((6, 8), bool)
    expected[:, :6] = True
    np.testing.assert_array_equal(valid, expected)
    assert valid.sum() == 36


def test_disagreeing_backward_flow_is_flagged() -> None:
    flow = _constant(6, 8, 2.0, 0.0)
    back = _constant(6, 8, -2.0, 0.0)
    back[2, 4] = (-2.0, 3.0)  # the partner pixel that (y=2, x=2) lands on exactly
    valid = forward_backward_valid(flow, back, fb_abs=1.0, fb_rel=0.05)
    # e = |(2, 0) + (-2, 3)| = 3 > 1 + 0.05 * (2 + sqrt(13)) = 1.28
    assert not valid[2, 2]
    assert valid[:, :6].sum() == 35


@pytest.mark.parametrize(
    ("back_dx", "expected"),
    [
        (-1.5, True),  # e = 0.5 <= 0.5 + 0.1 * (2 + 1.5) = 0.85
        (-1.2, True),  # e = 0.8 <= 0.5 + 0.1 * (2 + 1.2) = 0.82
        (-1.0, False),  # e = 1.0 > 0.5 + 0.1 * (2 + 1) = 0.8
        (-2.4, True),  # e = 0.4 <= 0.5 + 0.1 * (2 + 2.4) = 0.94 (overshooting back)
        (-3.5, False),  # e = 1.5 > 0.5 + 0.1 * (2 + 3.5) = 1.05
    ],
)
def test_tolerance_is_absolute_plus_relative(back_dx: float, expected: bool) -> None:
    flow = _constant(3, 8, 2.0, 0.0)
    back = _constant(3, 8, back_dx, 0.0)
    valid = forward_backward_valid(flow, back, fb_abs=0.5, fb_rel=0.1)
    assert valid[1, 2] == expected


def test_nan_flow_is_invalid() -> None:
    flow = _constant(4, 6, 1.0, 0.0)
    back = _constant(4, 6, -1.0, 0.0)
    flow[1, 1] = np.nan
    back[2, 3] = np.nan  # the partner pixel that (y=2, x=2) lands on
    valid = forward_backward_valid(flow, back, fb_abs=1.0, fb_rel=0.0)
    assert not valid[1, 1] and not valid[2, 2]
    assert valid[:, :5].sum() == 4 * 5 - 2


def test_shape_and_tolerance_errors() -> None:
    with pytest.raises(ValueError, match="must both be"):
        forward_backward_valid(
            np.zeros((4, 6, 2), np.float32), np.zeros((4, 5, 2), np.float32), fb_abs=1, fb_rel=0
        )
    with pytest.raises(ValueError, match=">= 0"):
        forward_backward_valid(
            np.zeros((4, 6, 2), np.float32), np.zeros((4, 6, 2), np.float32), fb_abs=-1, fb_rel=0
        )


def test_border_mask_pixel_counts() -> None:
    # 40 x 80: sides 0.025 * 80 = 2 px, top 0.05 * 40 = 2 rows, bottom 0.2 * 40 = 8 rows
    mask = border_mask(40, 80, sides=0.025, top=0.05, bottom=0.2)
    assert mask.shape == (40, 80) and mask.dtype == np.bool_
    assert mask.sum() == (40 - 2 - 8) * (80 - 2 * 2) == 2280
    assert mask[2, 2] and mask[31, 77]
    assert not mask[1, 40] and not mask[32, 40] and not mask[20, 1] and not mask[20, 78]


def test_border_mask_rounds_half_up_and_defaults_to_everything() -> None:
    assert border_mask(10, 20, sides=0.0, top=0.0, bottom=0.0).all()
    # 0.025 * 20 = 0.5 px -> 1 column each side; 0.04 * 10 = 0.4 row -> 0 rows
    mask = border_mask(10, 20, sides=0.025, top=0.04, bottom=0.0)
    assert mask.sum() == 10 * 18
    # CUPS: 32 px of 1280
    assert border_mask(8, 1280, sides=0.025, top=0, bottom=0)[0].sum() == 1280 - 64


def test_border_mask_rejects_bad_fractions() -> None:
    with pytest.raises(ValueError, match="sides"):
        border_mask(10, 10, sides=0.5, top=0, bottom=0)
    with pytest.raises(ValueError, match="bottom"):
        border_mask(10, 10, sides=0, top=0, bottom=-0.1)
    with pytest.raises(ValueError, match="positive"):
        border_mask(0, 10, sides=0, top=0, bottom=0)


def test_validity_mask_combines_both() -> None:
    cfg = ValiditySection(
        fb_abs=1.0, fb_rel=0.05, border_sides=0.125, border_top=0.0, border_bottom=0.25
    )
    flow = _constant(8, 8, 0.0, -1.0)  # row 0 leaves the image at the top
    back = _constant(8, 8, 0.0, 1.0)
    valid = validity_mask(flow, back, cfg)
    expected = np.zeros((8, 8), bool)
    expected[1:6, 1:7] = True  # rows 1..5 (bottom 2 rows cut), columns 1..6
    np.testing.assert_array_equal(valid, expected)


@pytest.mark.parametrize("seed", range(4))
def test_the_consistency_test_equals_its_formula_on_warped_flow(seed: int) -> None:
    """Bit for bit the formula of the docstring on ``warp``'s samples (NaN outside the image),
    also with NaN in the flow back (sampled by ``warp``'s rules) and inside a border."""
    rng = np.random.default_rng(seed)
    flow = (rng.normal(size=(20, 30, 2)) * 4.0).astype(np.float32)
    back = (-flow + rng.normal(size=flow.shape) * 0.6).astype(np.float32)
    flow[2, 3] = np.nan
    if seed % 2:
        back[rng.random((20, 30)) < 0.05] = np.nan
    sampled = warp(back, flow)
    error = np.linalg.norm(flow + sampled, axis=-1)
    tolerance = 1.0 + 0.05 * (np.linalg.norm(flow, axis=-1) + np.linalg.norm(sampled, axis=-1))
    expected = error <= tolerance
    np.testing.assert_array_equal(
        forward_backward_valid(flow, back, fb_abs=1.0, fb_rel=0.05), expected
    )
    cfg = ValiditySection(
        fb_abs=1.0, fb_rel=0.05, border_sides=0.1, border_top=0.15, border_bottom=0.05
    )
    border = border_mask(20, 30, sides=0.1, top=0.15, bottom=0.05)
    np.testing.assert_array_equal(validity_mask(flow, back, cfg), expected & border)


def test_leaves_image_marks_finite_flow_beyond_the_pixel_centres() -> None:
    flow = np.zeros((2, 3, 2), np.float32)
    flow[0, 0] = (-0.6, 0.0)  # x = -0.6: outside
    flow[0, 1] = (-1.5, 0.0)  # x = -0.5: on the edge, inside
    flow[0, 2] = (0.6, 0.0)  # x = 2.6 > 2.5: outside
    flow[1, 0] = (0.0, 1.0)  # y = 2 > 1.5: outside
    flow[1, 1] = (np.nan, 5.0)  # NaN: not "leaving"
    flow[1, 2] = (-1.0, -1.0)  # (1, 0): inside
    assert leaves_image(flow).tolist() == [[True, False, True], [True, False, False]]
    where = np.array([[False, True, True], [True, True, True]])
    assert leaves_image(flow, where=where).tolist() == [[False, False, True], [True, False, False]]
    with pytest.raises(ValueError, match=r"\[H, W, 2\]"):
        leaves_image(np.zeros((2, 3), np.float32))
