"""Causal semantic smoothing."""

from __future__ import annotations

import numpy as np
import pytest

from vcups_core.streaming.smoother import SemanticSmoother


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


def test_grid_stride_and_bad_shapes() -> None:
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
    with pytest.raises(ValueError, match=r"expected float\[C, h, w\]"):
        sm.update(np.zeros((2, 2), np.float32), semantic_stride=1, height=2, width=2)


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
    """The node reconfigures a live smoother: the history follows the new window length."""
    sm = SemanticSmoother(window=3, grid_stride=1)
    kw = {"semantic_stride": 1, "height": 1, "width": 1}
    for _ in range(3):
        sm.update(probs_for(np.zeros((1, 1))), **kw)
    sm.configure(window=1, enabled=True)
    assert (sm.update(probs_for(np.ones((1, 1))), **kw).labels == 1).all()
    sm.configure(window=3, enabled=True)  # a new window length restarts the history
    sm.update(probs_for(np.ones((1, 1))), **kw)
    sm.update(probs_for(np.ones((1, 1))), **kw)
    # history [1, 1] then a 0 frame: channel 1 still leads (0.6 + 0.6 + 0.2 vs 0.2 + 0.2 + 0.6)
    assert (sm.update(probs_for(np.zeros((1, 1))), **kw).labels == 1).all()
    with pytest.raises(ValueError, match="window must be >= 1"):
        sm.configure(window=0, enabled=True)
    assert sm.window == 3  # a refused change changes nothing
