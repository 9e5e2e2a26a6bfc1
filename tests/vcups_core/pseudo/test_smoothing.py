"""Temporal smoothing of semantic probabilities (method §2.2 step 3) on small synthetic clips."""

from __future__ import annotations

import numpy as np
import pytest

from vcups_core.pseudo.smoothing import (
    Neighbour,
    TemporalSmoother,
    smooth_probabilities,
    warp_probabilities,
    warp_validity,
)

H, W, C = 6, 8, 3


def _flow(dx: float, dy: float, h: int = H, w: int = W) -> np.ndarray:
    flow = np.empty((h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    return flow


def _zero() -> np.ndarray:
    return _flow(0.0, 0.0)


def _soft(labels: np.ndarray, confidence: float = 0.7) -> np.ndarray:
    """``[C, H, W]`` probabilities: ``confidence`` on the label, the rest spread evenly."""
    probs = np.full((C, *labels.shape), (1 - confidence) / (C - 1), np.float32)
    np.put_along_axis(probs, labels[None], confidence, axis=0)
    return probs


def _smooth_clip(
    probs: list[np.ndarray], flows_fwd: list[np.ndarray], flows_bwd: list[np.ndarray]
) -> list[np.ndarray]:
    """Batch smoothing of a clip; ``flows_fwd[t]`` is t -> t + 1, ``flows_bwd[t]`` t + 1 -> t
    (on frame t + 1's grid)."""
    out = []
    for t, p in enumerate(probs):
        prev = Neighbour(probs[t - 1], flows_bwd[t - 1], flows_fwd[t - 1]) if t > 0 else None
        nxt = Neighbour(probs[t + 1], flows_fwd[t], flows_bwd[t]) if t + 1 < len(probs) else None
        out.append(smooth_probabilities(p, prev, nxt))
    return out


# ---------------------------------------------------------------------------------------------
# warping


def test_warped_probabilities_follow_a_known_translation() -> None:
    rng = np.random.default_rng(0)
    prev = rng.random((C, H, W)).astype(np.float32)
    # this frame's pixel (x, y) is at (x + 2, y - 1) in the previous frame
    warped = warp_probabilities(prev, _flow(2.0, -1.0))
    assert warped.shape == (C, H, W) and warped.dtype == np.float32
    np.testing.assert_allclose(warped[:, 1:, : W - 2], prev[:, : H - 1, 2:], rtol=1e-6)
    assert np.isnan(warped[:, 0, :]).all()  # sample points above the image
    assert np.isnan(warped[:, :, W - 2 :]).all()  # right of the image
    valid = warp_validity(_flow(2.0, -1.0))
    expected = np.zeros((H, W), bool)
    expected[1:, : W - 2] = True
    np.testing.assert_array_equal(valid, expected)


def test_sub_pixel_translation_is_bilinear() -> None:
    prev = np.zeros((C, H, W), np.float32)
    prev[0] = np.arange(W, dtype=np.float32)[None, :]  # a ramp along x
    warped = warp_probabilities(prev, _flow(0.5, 0.0))
    expected = np.broadcast_to(np.arange(W - 1) + 0.5, (H, W - 1))
    np.testing.assert_allclose(warped[0, :, : W - 1], expected, atol=1e-5)


@pytest.mark.parametrize("classes", [2, 5, 27])
def test_warp_is_exact_bilinear_for_any_number_of_classes(classes: int) -> None:
    # OpenCV rounds sample points to 1/32 px for channel counts other than 1, 3, 4
    rng = np.random.default_rng(classes)
    h, w = 12, 20
    probs = rng.random((classes, h, w)).astype(np.float32)
    flow = rng.uniform(-0.9, 0.9, size=(h, w, 2)).astype(np.float32)
    x = np.clip(np.arange(w)[None, :] + flow[..., 0].astype(np.float64), 0, w - 1)
    y = np.clip(np.arange(h)[:, None] + flow[..., 1].astype(np.float64), 0, h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    ax, ay = x - x0, y - y0
    expected = (
        probs[:, y0, x0] * (1 - ax) * (1 - ay)
        + probs[:, y0, x1] * ax * (1 - ay)
        + probs[:, y1, x0] * (1 - ax) * ay
        + probs[:, y1, x1] * ax * ay
    )
    warped = warp_probabilities(probs, flow)
    inside = warp_validity(flow)
    np.testing.assert_allclose(warped[:, inside], expected[:, inside], atol=1e-5)


def test_forward_backward_check_rejects_inconsistent_flow() -> None:
    flow = _flow(1.0, 0.0)
    back = _flow(-1.0, 0.0)
    back[:, 3] = (4.0, 0.0)  # the neighbour's pixels at column 3 go elsewhere (occlusion)
    valid = warp_validity(flow, back)
    assert not valid[:, 2].any()  # 2 + 1 = 3 lands on the inconsistent column
    assert valid[:, :2].all() and valid[:, 3 : W - 1].all()
    assert not valid[:, W - 1].any()  # leaves the image


# ---------------------------------------------------------------------------------------------
# smoothing


def test_one_frame_flicker_returns_to_the_majority() -> None:
    labels = np.zeros((H, W), np.int64)
    flicker = labels.copy()
    flicker[2:4, 2:5] = 1  # one frame only
    probs = [_soft(labels), _soft(flicker), _soft(labels)]
    fwd, bwd = [_zero(), _zero()], [_zero(), _zero()]
    smoothed = _smooth_clip(probs, fwd, bwd)
    for frame in smoothed:
        np.testing.assert_array_equal(frame.argmax(0), labels)
        np.testing.assert_allclose(frame.sum(0), 1.0, rtol=1e-6)


def test_a_persistent_class_change_is_kept() -> None:
    before = np.zeros((H, W), np.int64)
    after = before.copy()
    after[1:5, 1:6] = 2
    sequence = [before, before, after, after, after]  # switches at frame 2 and stays
    probs = [_soft(s) for s in sequence]
    smoothed = _smooth_clip(probs, [_zero()] * 4, [_zero()] * 4)
    for t, frame in enumerate(smoothed):
        np.testing.assert_array_equal(frame.argmax(0), sequence[t], err_msg=f"frame {t}")


def test_flicker_is_removed_under_motion() -> None:
    # the scene moves 1 px to the right per frame; the region flips class in frame 1 only
    def scene(t: int) -> np.ndarray:
        labels = np.zeros((H, W), np.int64)
        labels[2:4, 1 + t : 4 + t] = 2
        return labels

    flicker = scene(1)
    flicker[flicker == 2] = 1
    probs = [_soft(scene(0)), _soft(flicker), _soft(scene(2))]
    fwd, bwd = [_flow(1.0, 0.0)] * 2, [_flow(-1.0, 0.0)] * 2
    smoothed = _smooth_clip(probs, fwd, bwd)
    np.testing.assert_array_equal(smoothed[1].argmax(0), scene(1))


def test_occluded_neighbours_do_not_vote() -> None:
    labels = np.zeros((H, W), np.int64)
    current = labels.copy()
    current[:, 4:] = 1  # this frame alone says class 1 on the right
    occluded = np.zeros((H, W), bool)
    occluded[:, 4:] = True
    prev = Neighbour(_soft(labels), _zero(), valid=~occluded)
    nxt = Neighbour(_soft(labels), _zero(), valid=~occluded)
    out = smooth_probabilities(_soft(current), prev, nxt)
    # occluded pixels fall back to the current frame exactly
    np.testing.assert_array_equal(out[:, :, 4:], _soft(current)[:, :, 4:])
    np.testing.assert_array_equal(out.argmax(0), current)
    # without the occlusion mask the two neighbours outvote it
    out_all = smooth_probabilities(_soft(current), Neighbour(_soft(labels), _zero()), nxt)
    # one neighbour masked on the right: the current frame and the other neighbour
    np.testing.assert_allclose(
        out_all[:, :, 4:], (_soft(current) + _soft(labels))[:, :, 4:] / 2, rtol=1e-6
    )
    out_none = smooth_probabilities(
        _soft(current), Neighbour(_soft(labels), _zero()), Neighbour(_soft(labels), _zero())
    )
    np.testing.assert_array_equal(out_none.argmax(0), labels)


def test_fb_inconsistent_and_out_of_image_neighbours_do_not_vote() -> None:
    current = _soft(np.ones((H, W), np.int64))
    other = _soft(np.zeros((H, W), np.int64))
    # prev: flow leaves the image for the last two columns
    prev = Neighbour(other, _flow(2.0, 0.0), _flow(-2.0, 0.0))
    # next: consistent except where its flow back disagrees (landing on column 5)
    back = _zero()
    back[:, 5] = (3.0, 0.0)
    nxt = Neighbour(other, _zero(), back)
    out = smooth_probabilities(current, prev, nxt)
    two = (current + other) / 2
    three = (current + 2 * other) / 3
    np.testing.assert_allclose(out[:, :, W - 2 :], two[:, :, W - 2 :], rtol=1e-6)  # prev out
    np.testing.assert_allclose(out[:, :, 5], two[:, :, 5], rtol=1e-6)  # next inconsistent
    np.testing.assert_allclose(out[:, :, :5], three[:, :, :5], rtol=1e-6)  # both vote


def test_first_and_last_frames_use_the_available_neighbour() -> None:
    a = _soft(np.zeros((H, W), np.int64))
    b = _soft(np.ones((H, W), np.int64))
    first = smooth_probabilities(a, None, Neighbour(b, _zero()))
    np.testing.assert_allclose(first, (a + b) / 2)
    alone = smooth_probabilities(a)
    np.testing.assert_array_equal(alone, a)


def test_shape_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match="must match current"):
        smooth_probabilities(
            np.zeros((C, H, W), np.float32), Neighbour(np.zeros((C + 1, H, W)), _zero())
        )
    with pytest.raises(ValueError, match="flow_to_prev"):
        warp_probabilities(np.zeros((C, H, W), np.float32), _flow(0, 0, H + 1, W))


# ---------------------------------------------------------------------------------------------
# streaming


def _random_clip(n: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    probs = []
    for _ in range(n):
        logits = rng.normal(size=(C, H, W)).astype(np.float32)
        e = np.exp(logits)
        probs.append((e / e.sum(0)).astype(np.float32))
    fwd = [rng.normal(scale=1.5, size=(H, W, 2)).astype(np.float32) for _ in range(n - 1)]
    bwd = [
        (-f + rng.normal(scale=0.7, size=(H, W, 2))).astype(np.float32) for f in fwd
    ]  # partly inconsistent, so the fb check matters
    return probs, fwd, bwd


@pytest.mark.parametrize("n", [1, 2, 3, 6])
def test_streaming_equals_batch(n: int) -> None:
    probs, fwd, bwd = _random_clip(n, seed=n)
    expected = _smooth_clip(probs, fwd, bwd)
    smoother = TemporalSmoother()
    got = []
    for t, p in enumerate(probs):
        out = smoother.push(p, bwd[t - 1], fwd[t - 1]) if t > 0 else smoother.push(p)
        if t == 0:
            assert out is None
        else:
            assert out is not None
            got.append(out)
    last = smoother.flush()
    assert last is not None
    got.append(last)
    assert smoother.flush() is None  # reset after the flush
    assert len(got) == n
    for t in range(n):
        np.testing.assert_array_equal(got[t], expected[t], err_msg=f"frame {t}")


def test_streaming_without_flow_does_not_smooth_across_the_gap() -> None:
    a = _soft(np.zeros((H, W), np.int64))
    b = _soft(np.ones((H, W), np.int64))
    smoother = TemporalSmoother()
    assert smoother.push(a) is None
    out_a = smoother.push(b)  # no flows: the frames are unconnected
    assert out_a is not None
    np.testing.assert_array_equal(out_a, a)
    out_b = smoother.flush()
    assert out_b is not None
    np.testing.assert_array_equal(out_b, b)


def test_streaming_validity_masks_reach_the_right_warp() -> None:
    a = _soft(np.zeros((H, W), np.int64))
    b = _soft(np.ones((H, W), np.int64))
    mask = np.zeros((H, W), bool)
    mask[:, :4] = True
    smoother = TemporalSmoother()
    smoother.push(a)
    out_a = smoother.push(b, _zero(), _zero(), valid_to_prev=None, valid_prev_to_this=mask)
    assert out_a is not None
    np.testing.assert_allclose(out_a[:, :, :4], (a + b)[:, :, :4] / 2)
    np.testing.assert_array_equal(out_a[:, :, 4:], a[:, :, 4:])
    out_b = smoother.flush()
    assert out_b is not None
    np.testing.assert_allclose(out_b, (a + b) / 2)
