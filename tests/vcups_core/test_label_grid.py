"""Grid helpers shared by the panoptic merge and the streaming composition (hand-made cases)."""

from __future__ import annotations

import numpy as np
import pytest

from vcups_core.label_grid import (
    cell_counts,
    channel_argmax,
    upsample_labels,
    visible_areas,
)


def test_visible_areas_subtract_hidden_pixels_and_count_partial_cells() -> None:
    # 5 x 6 image, stride 4: cells are 4x4, 4x2, 1x4 and 1x2 pixels
    labels = np.array([[1, 2], [1, 0]])
    hidden = np.array([[3, 0], [0, 1]])
    areas = visible_areas(labels, 4, hidden, 5, 6, 3)
    assert areas.tolist() == [1.0, 16 - 3 + 4, 8]


@pytest.mark.parametrize(
    ("height", "width", "stride"),
    [(8, 12, 4), (7, 10, 4), (6, 6, 1), (16, 24, 8), (9, 17, 8), (6, 10, 2), (9, 9, 3)],
)
def test_cell_counts_match_a_loop(height: int, width: int, stride: int) -> None:
    """Whole and partial edge cells agree with a plain loop (word-sized cell rows for strides 2, 4
    and 8, the generic block sum otherwise)."""
    mask = np.random.default_rng(height).random((height, width)) < 0.4
    counts = cell_counts(mask, stride)
    assert counts.shape == (-(-height // stride), -(-width // stride))
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            cell = mask[i * stride : (i + 1) * stride, j * stride : (j + 1) * stride]
            assert counts[i, j] == int(cell.sum())


def test_upsample_labels_repeats_each_cell() -> None:
    up = upsample_labels(np.array([[1, 2], [3, 4]]), 4, 6, 7)
    assert up.shape == (6, 7) and up[5, 6] == 4 and up[3, 3] == 1
    for dtype in (np.uint8, np.uint16):  # whole cells: OpenCV's nearest resize, same values
        grid = np.arange(12, dtype=dtype).reshape(3, 4)
        expected = np.repeat(np.repeat(grid, 8, axis=0), 8, axis=1)
        np.testing.assert_array_equal(upsample_labels(grid, 8, 24, 32), expected)


def test_channel_argmax_matches_numpy() -> None:
    rng = np.random.default_rng(3)
    for channels in (1, 2, 23, 256):
        values = rng.random((channels, 5, 7), dtype=np.float32)
        labels, best = channel_argmax(values)
        assert labels.dtype == np.uint8 and labels.shape == (5, 7)
        top = values.max(axis=0)
        # the keys drop at most the lowest 8 mantissa bits (256 channels): 2^-15 relative
        rtol = 2.0**-15
        np.testing.assert_allclose(best, top, rtol=rtol)
        chosen = np.take_along_axis(values, labels[None].astype(np.intp), axis=0)[0]
        np.testing.assert_allclose(chosen, top, rtol=rtol)
        second = np.sort(values, axis=0)[-2] if channels > 1 else np.zeros_like(top)
        clear = top - second > rtol * top  # no near tie: the label is numpy's exactly
        assert clear.mean() > 0.8
        assert (labels[clear] == values.argmax(axis=0)[clear]).all()


def test_channel_argmax_ties_and_limits() -> None:
    values = np.array([[[0.5, 0.0]], [[0.5, 0.25]], [[0.1, 0.25]]], np.float32)  # [3, 1, 2]
    labels, best = channel_argmax(values)
    assert labels.tolist() == [[0, 1]]  # ties go to the lower channel, like np.argmax
    assert best.tolist() == [[0.5, 0.25]]  # exact: these values have no low mantissa bits set
    with pytest.raises(ValueError, match=r"1\.\.256 channels"):
        channel_argmax(np.zeros((257, 1, 1), np.float32))
    with pytest.raises(ValueError, match="expected float32"):
        channel_argmax(np.zeros((2, 1, 1), np.float64))
