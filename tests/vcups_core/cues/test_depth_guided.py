"""Depth-guided semantic inference (method §2.2 step 1) on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vcups_core.cues.depth_guided import (
    DEFAULT_METRIC_MEDIAN_M,
    depth_guided_logits,
    encode_then_probe,
    fuse,
    fusion_weights,
    global_logits,
    median_depth_scale,
    padded_size,
    resize_bilinear,
    sliding_window_logits,
    window_counts,
    window_starts,
)


def _image(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(channels, h, w)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# sliding window


def test_padding_and_window_layout_at_cups_size() -> None:
    assert padded_size(640, 320, 160) == 640
    assert padded_size(1280, 320, 160) == 1280
    assert padded_size(600, 320, 160) == 640  # next multiple of the stride
    assert padded_size(100, 320, 160) == 320  # at least one crop
    assert window_starts(640, 320, 160) == [0, 160, 320]
    assert window_starts(1280, 320, 160) == [0, 160, 320, 480, 640, 800, 960]
    with pytest.raises(ValueError, match="stride <= crop"):
        padded_size(640, 320, 400)


@pytest.mark.parametrize(("h", "w"), [(640, 1280), (600, 1000), (100, 500), (321, 479)])
def test_counts_cover_every_pixel(h: int, w: int) -> None:
    counts = window_counts(h, w, 320, 160)
    assert counts.shape == (h, w)
    assert counts.min() >= 1
    # brute force: count the windows over each pixel
    expected = np.zeros((h, w), np.float32)
    for y0 in window_starts(h, 320, 160):
        for x0 in window_starts(w, 320, 160):
            expected[y0 : y0 + 320, x0 : x0 + 320] += 1
    np.testing.assert_array_equal(counts, expected)


def test_counts_at_cups_size() -> None:
    counts = window_counts(640, 1280)
    # rows covered by 1, 2, 2, 1 windows per 160-pixel band, columns by 1, 2, ..., 2, 1
    assert counts[0, 0] == 1 and counts[639, 1279] == 1
    assert counts[0, 200] == 2 and counts[200, 0] == 2
    assert counts[200, 200] == 4 and counts[400, 700] == 4 and counts[500, 700] == 2
    assert counts.sum() == 21 * 320 * 320  # 3 x 7 windows


@pytest.mark.parametrize(("h", "w"), [(640, 1280), (600, 1000), (100, 500)])
@pytest.mark.parametrize("pad_mode", ["constant", "edge"])
def test_sliding_window_on_constant_infer_is_exact(h: int, w: int, pad_mode: str) -> None:
    value = np.array([1.5, -2.25, 0.125], np.float32)[:, None, None]
    calls: list[tuple[int, ...]] = []

    def infer(crop: np.ndarray) -> np.ndarray:
        calls.append(crop.shape)
        return np.broadcast_to(value, (3, *crop.shape[1:])).copy()

    out = sliding_window_logits(_image(h, w), infer, 320, 160, pad_mode=pad_mode)  # type: ignore[arg-type]
    assert out.shape == (3, h, w) and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.broadcast_to(value, (3, h, w)))
    assert all(shape == (3, 320, 320) for shape in calls)
    assert len(calls) == len(window_starts(h, 320, 160)) * len(window_starts(w, 320, 160))


def test_sliding_window_of_a_pointwise_infer_reproduces_it_and_crops_the_padding() -> None:
    image = _image(300, 700, seed=1)

    def infer(crop: np.ndarray) -> np.ndarray:  # per pixel: every window agrees
        return np.stack([crop[0] * 2.0, crop[1] - crop[2]])

    out = sliding_window_logits(image, infer, 128, 64)
    np.testing.assert_allclose(out[0], image[0] * 2.0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out[1], image[1] - image[2], rtol=1e-6, atol=1e-6)


def test_sliding_window_averages_disagreeing_windows() -> None:
    # 1 x 6 image, crop 4, stride 2: windows at x = 0 and 2 (padded width 6); each window
    # returns its own start offset, so the overlap [2, 4) is the mean (0 + 2) / 2
    image = np.zeros((1, 4, 6), np.float32)
    image[0] = np.arange(6, dtype=np.float32)[None, :]

    def infer(crop: np.ndarray) -> np.ndarray:
        return np.full((1, 4, 4), crop[0, 0, 0], np.float32)

    out = sliding_window_logits(image, infer, 4, 2)
    np.testing.assert_array_equal(out[0, 0], [0, 0, 1, 1, 2, 2])


def test_sliding_window_rejects_wrong_output_shape() -> None:
    def infer(crop: np.ndarray) -> np.ndarray:
        return np.zeros((2, 10, 10), np.float32)

    with pytest.raises(ValueError, match=r"\[C, 320, 320\]"):
        sliding_window_logits(_image(320, 320), infer)


# ---------------------------------------------------------------------------------------------
# global pass


def test_global_flip_averaging_of_a_position_dependent_infer() -> None:
    # infer(x)[0, y, i] = x[0, y, i] * (i + 1) is not flip-equivariant. The flipped pass flipped
    # back gives x[0, y, i] * (w - i), so the average is x[0, y, i] * (w + 1) / 2.
    h, w = 4, 6
    image = _image(h, w, seed=2)

    def infer(x: np.ndarray) -> np.ndarray:
        return x[:1] * np.arange(1, x.shape[2] + 1, dtype=np.float32)[None, None, :]

    out = global_logits(image, infer, scale=1.0, flip=True)
    np.testing.assert_allclose(out[0], image[0] * (w + 1) / 2, rtol=1e-6, atol=1e-6)
    no_flip = global_logits(image, infer, scale=1.0, flip=False)
    np.testing.assert_allclose(no_flip[0], image[0] * np.arange(1, w + 1), rtol=1e-6)


def test_global_half_resolution_flip_average_and_upsampling() -> None:
    # infer ignores its input and returns the column index: the flipped pass flipped back is
    # (w' - 1 - i), so the average is (w' - 1) / 2 = 1.5 at half width w' = 4, upsampled to 4x8
    sizes: list[tuple[int, ...]] = []

    def infer(x: np.ndarray) -> np.ndarray:
        sizes.append(x.shape)
        return np.broadcast_to(np.arange(x.shape[2], dtype=np.float32), (1, *x.shape[1:])).copy()

    out = global_logits(_image(4, 8), infer)
    assert sizes == [(3, 2, 4), (3, 2, 4)]
    assert out.shape == (1, 4, 8)
    np.testing.assert_allclose(out, 1.5, rtol=0, atol=1e-6)


def test_global_downsampling_is_exact_on_two_by_two_blocks() -> None:
    small = _image(3, 5, seed=3)
    image = np.repeat(np.repeat(small, 2, axis=1), 2, axis=2)  # 6 x 10, constant 2x2 blocks
    seen: list[np.ndarray] = []

    def infer(x: np.ndarray) -> np.ndarray:
        seen.append(x.copy())
        return x[:1]

    global_logits(image, infer, flip=False)
    np.testing.assert_allclose(seen[0], small, rtol=1e-6, atol=1e-6)


def test_global_with_probe_averages_the_code_before_the_probe() -> None:
    h, w = 4, 6
    image = _image(h, w, seed=4)

    def encode(x: np.ndarray) -> np.ndarray:  # not flip-equivariant
        return x[:1] * np.arange(1, x.shape[2] + 1, dtype=np.float32)[None, None, :]

    def probe(code: np.ndarray) -> np.ndarray:  # non-linear
        return code**2

    cups_order = global_logits(image, encode, scale=1.0, probe=probe)
    expected_code = image[0] * (w + 1) / 2
    np.testing.assert_allclose(cups_order[0], expected_code**2, rtol=1e-5, atol=1e-6)
    logits_order = global_logits(image, lambda x: probe(encode(x)), scale=1.0)
    col = np.arange(1, w + 1, dtype=np.float32)
    expected_logits = image[0] ** 2 * (col**2 + (w + 1 - col) ** 2) / 2
    np.testing.assert_allclose(logits_order[0], expected_logits, rtol=1e-5, atol=1e-6)


def test_encode_then_probe_upsamples_the_code_to_the_crop() -> None:
    def encode(x: np.ndarray) -> np.ndarray:  # a 1/2-resolution code
        return resize_bilinear(x, (x.shape[1] // 2, x.shape[2] // 2))

    infer = encode_then_probe(encode, lambda code: code[:2] * 3.0)
    crop = np.ones((3, 8, 8), np.float32)
    out = infer(crop)
    assert out.shape == (2, 8, 8)
    np.testing.assert_allclose(out, 3.0, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# fusion and depth scale


def test_fusion_weights_at_hand_computed_depths() -> None:
    depth = np.array([[0.0, 1.0, 3.0, math.inf]], np.float32)
    np.testing.assert_allclose(fusion_weights(depth), [[1.0, 0.5, 0.25, 0.0]])
    # depth_scale multiplies the depth first: 2 * 1 -> 1/3
    np.testing.assert_allclose(
        fusion_weights(depth, depth_scale=2.0), [[1.0, 1 / 3, 1 / 7, 0.0]], rtol=1e-6
    )


def test_nan_depth_falls_back_to_the_frame_median_or_the_given_depth() -> None:
    depth = np.array([[0.0, 1.0, 3.0, np.nan]], np.float32)
    # median of the valid depths {0, 1, 3} is 1 -> w = 0.5
    np.testing.assert_allclose(fusion_weights(depth), [[1.0, 0.5, 0.25, 0.5]])
    np.testing.assert_allclose(fusion_weights(depth, fallback_depth=3.0), [[1.0, 0.5, 0.25, 0.25]])
    # the fallback is already in scaled units: not multiplied by depth_scale
    np.testing.assert_allclose(
        fusion_weights(depth, depth_scale=2.0, fallback_depth=3.0),
        [[1.0, 1 / 3, 1 / 7, 0.25]],
        rtol=1e-6,
    )
    # median of the scaled depths {0, 2, 6} is 2 -> w = 1/3
    np.testing.assert_allclose(fusion_weights(depth, depth_scale=2.0)[0, 3], 1 / 3, rtol=1e-6)


def test_all_nan_depth_needs_an_explicit_fallback() -> None:
    depth = np.full((2, 3), np.nan, np.float32)
    with pytest.raises(ValueError, match="fallback_depth"):
        fusion_weights(depth)
    np.testing.assert_allclose(fusion_weights(depth, fallback_depth=15.0), 1 / 16)


def test_fusion_weights_reject_bad_input() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        fusion_weights(np.array([[-1.0]], np.float32))
    with pytest.raises(ValueError, match="depth_scale"):
        fusion_weights(np.ones((1, 1), np.float32), depth_scale=0.0)
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        fusion_weights(np.ones((1, 1, 1), np.float32))


def test_median_depth_scale_maps_the_valid_median_to_the_target() -> None:
    depth = np.array([[1.0, 2.0, 3.0, np.nan, 0.0]], np.float32)  # 0 is not valid for scaling
    scale = median_depth_scale(depth, 15.0)
    assert scale == pytest.approx(7.5)
    assert median_depth_scale(np.full((2, 2), np.nan, np.float32)) is None
    assert DEFAULT_METRIC_MEDIAN_M == 15.0
    with pytest.raises(ValueError, match="target_median"):
        median_depth_scale(depth, 0.0)


def test_fuse_blends_global_and_sliding_by_depth() -> None:
    g = np.full((2, 1, 3), 4.0, np.float32)
    s = np.full((2, 1, 3), -2.0, np.float32)
    depth = np.array([[0.0, 1.0, 3.0]], np.float32)
    out = fuse(g, s, depth)
    # w = 1, 0.5, 0.25 -> 4, 1, -0.5
    np.testing.assert_allclose(out, np.broadcast_to([[4.0, 1.0, -0.5]], (2, 1, 3)))
    with pytest.raises(ValueError, match="share"):
        fuse(g, s, depth[:, :2])


def test_depth_guided_logits_composes_the_branches() -> None:
    h, w = 8, 12
    image = _image(h, w, seed=5)
    depth = np.random.default_rng(6).uniform(0.5, 4.0, size=(h, w)).astype(np.float32)
    depth[0, 0] = np.nan

    def infer(x: np.ndarray) -> np.ndarray:
        return np.stack([x[0] * np.arange(1, x.shape[2] + 1, dtype=np.float32), x[1]])

    out = depth_guided_logits(
        image, depth, infer, crop=4, stride=2, depth_scale="median", target_median=2.0
    )
    sliding = sliding_window_logits(image, infer, 4, 2)
    whole = global_logits(image, infer)
    scale = median_depth_scale(depth, 2.0)
    assert scale is not None
    expected = fuse(whole, sliding, depth, depth_scale=scale, fallback_depth=2.0)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    # the NaN pixel got the target median's weight 1 / (1 + 2)
    w00 = 1 / 3
    np.testing.assert_allclose(
        out[:, 0, 0], w00 * whole[:, 0, 0] + (1 - w00) * sliding[:, 0, 0], rtol=1e-5
    )
    # a frame without valid depth: every pixel at the target median's weight
    nan_depth = np.full((h, w), np.nan, np.float32)
    out_nan = depth_guided_logits(
        image, nan_depth, infer, crop=4, stride=2, depth_scale="median", target_median=2.0
    )
    np.testing.assert_allclose(out_nan, w00 * whole + (1 - w00) * sliding, rtol=1e-5, atol=1e-6)
