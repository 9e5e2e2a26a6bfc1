"""Causal semantic smoothing."""

from __future__ import annotations

import numpy as np
import pytest

from vcups_core.streaming.smoother import SemanticSmoother, channel_argmax, upsample_labels


def probs_for(labels: np.ndarray, channels: int = 3, p: float = 0.6) -> np.ndarray:
    out = np.full((channels, *labels.shape), (1 - p) / (channels - 1), np.float32)
    np.put_along_axis(out, labels[None].astype(np.intp), np.float32(p), axis=0)
    return out


def test_one_frame_flicker_is_removed() -> None:
    sm = SemanticSmoother(window=3, grid_stride=1)
    stable = np.full((4, 4), 1)
    flicker = stable.copy()
    flicker[:, :2] = 2
    kw = {"semantic_stride": 1, "height": 4, "width": 4}
    sm.update(probs_for(stable), **kw)
    sm.update(probs_for(stable), **kw)
    out = sm.update(probs_for(flicker), **kw)
    # mean over 3 frames on the flickered cells: channel 1 = (0.6 + 0.6 + 0.2) / 3 = 0.467 beats
    # channel 2 = (0.2 + 0.2 + 0.6) / 3 = 0.333; the other 8 cells stay at 0.6
    assert (out.labels == 1).all()
    assert np.isclose(out.confidence[1], (8 * 0.6 + 8 * (1.4 / 3)) / 16)
    # without smoothing the flicker comes through
    raw = SemanticSmoother(window=3, grid_stride=1, enabled=False)
    assert (raw.update(probs_for(flicker), **kw).labels[:, :2] == 2).all()


def test_gap_and_shape_change_restart_the_history() -> None:
    sm = SemanticSmoother(window=3, grid_stride=1)
    kw = {"semantic_stride": 1, "height": 2, "width": 2}
    sm.update(probs_for(np.zeros((2, 2))), **kw)
    sm.update(probs_for(np.zeros((2, 2))), **kw)
    after_gap = sm.update(probs_for(np.ones((2, 2))), gap=3, **kw)
    assert (after_gap.labels == 1).all()
    resized = sm.update(probs_for(np.full((3, 3), 2)), semantic_stride=1, height=3, width=3)
    assert resized.labels.shape == (3, 3) and (resized.labels == 2).all()


def test_grid_stride_and_upsampling() -> None:
    labels = np.arange(12).reshape(3, 4)
    sm = SemanticSmoother(window=1, grid_stride=4)
    # probabilities given every 2 px of a 6x8 image: the grid keeps every 2nd of them (4 px)
    out = sm.update(
        probs_for(np.repeat(np.repeat(labels % 3, 1, 0), 1, 1)),
        semantic_stride=2,
        height=6,
        width=8,
    )
    assert out.stride == 4 and out.labels.shape == (2, 2)
    up = upsample_labels(np.array([[1, 2], [3, 4]]), 4, 6, 7)
    assert up.shape == (6, 7) and up[5, 6] == 4 and up[3, 3] == 1
    for dtype in (np.uint8, np.uint16):  # whole cells: OpenCV's nearest resize, same values
        grid = np.arange(12, dtype=dtype).reshape(3, 4)
        expected = np.repeat(np.repeat(grid, 8, axis=0), 8, axis=1)
        np.testing.assert_array_equal(upsample_labels(grid, 8, 24, 32), expected)
    with pytest.raises(ValueError, match=r"expected float\[C, h, w\]"):
        sm.update(np.zeros((2, 2), np.float32), semantic_stride=1, height=2, width=2)


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


@pytest.mark.parametrize("size", [(8, 12), (7, 10)])
def test_grid_sampling_is_every_sub_th_probability(size: tuple[int, int]) -> None:
    """Both the resize fast path (sizes divisible by the factor) and the slice path."""
    rng = np.random.default_rng(0)
    probs = rng.random((3, *size), dtype=np.float32)
    out = SemanticSmoother(window=1, grid_stride=4).update(
        probs, semantic_stride=2, height=2 * size[0], width=2 * size[1]
    )
    assert out.stride == 4
    assert (out.labels == probs[:, ::2, ::2].argmax(axis=0)).all()


def test_window_change_at_run_time_takes_effect() -> None:
    """The node sets ``window`` on a live smoother: the history follows the new length."""
    sm = SemanticSmoother(window=3, grid_stride=1)
    kw = {"semantic_stride": 1, "height": 1, "width": 1}
    for _ in range(3):
        sm.update(probs_for(np.zeros((1, 1))), **kw)
    sm.window = 1
    assert (sm.update(probs_for(np.ones((1, 1))), **kw).labels == 1).all()
    sm.window = 3  # a new window length restarts the history
    sm.update(probs_for(np.ones((1, 1))), **kw)
    sm.update(probs_for(np.ones((1, 1))), **kw)
    # history [1, 1] then a 0 frame: channel 1 still leads (0.6 + 0.6 + 0.2 vs 0.2 + 0.2 + 0.6)
    assert (sm.update(probs_for(np.zeros((1, 1))), **kw).labels == 1).all()
