"""The fast paths of the weight-free motion score give the bit-identical results of the plain
whole-grid formulas they replace (gathered valid pixels, no ``np.hypot`` where it cannot matter,
the homography flow in blocks of rows, the bidirectional combination)."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from vcups_core.configs.pseudo_labels import PseudoLabelConfig
from vcups_core.cues import geometry as geo
from vcups_core.cues import motion as mot
from vcups_core.cues.base import CameraMotion, FrameCues
from vcups_core.cues.build import build_cue_pipeline
from vcups_core.cues.depth import triangulate_depth
from vcups_core.types import VideoFrame

H, W = 48, 80
K = np.array([[70.0, 0.0, W / 2 + 0.3], [0.0, 70.0, H / 2 - 0.2], [0.0, 0.0, 1.0]])


def _essential(rng: np.random.Generator) -> CameraMotion:
    rot = np.asarray(cv2.Rodrigues(rng.normal(size=3) * 0.02)[0], np.float64)
    t = rng.normal(size=3)
    return CameraMotion("essential", None, rot, t / np.linalg.norm(t), 1.0)


def _flow(rng: np.random.Generator, scale: float) -> npt.NDArray[np.float32]:
    flow = (rng.normal(size=(H, W, 2)) * scale).astype(np.float32)
    flow[3, 4] = np.nan
    return flow


def _cues(
    flow: npt.NDArray[np.float32], camera: CameraMotion, valid: npt.NDArray[np.bool_]
) -> FrameCues:
    frame = VideoFrame(np.zeros((H, W, 3), np.uint8), 0, index=0)
    partner = VideoFrame(np.zeros((H, W, 3), np.uint8), 1, index=1)
    return FrameCues(frame, partner, K, flow, True, flow, valid=valid, camera=camera, depth=None)


def _reference_score(cues: FrameCues, residual_floor: float) -> npt.NDArray[np.float32]:
    """The motion score as the whole-grid formulas of the module docstring compute it."""
    flow = cues.flow
    assert cues.camera is not None and cues.valid is not None
    valid = np.isfinite(flow).all(axis=2) & cues.valid
    if cues.camera.model == "homography":
        ego = geo.rigid_flow(cues.camera, K, (H, W))
        residual = np.linalg.norm(flow - ego, axis=2)
    else:
        residual = geo.epipolar_distance(flow, cues.camera, K).astype(np.float64)
        parts = mot._translational_parts(cues)
        residual = np.where(parts.along * parts.focal < -1.0, np.inf, residual)
    mag = np.linalg.norm(flow, axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = residual / np.maximum(mag, residual_floor)
    score = np.clip(np.nan_to_num(score, nan=0.0, posinf=1.0), 0.0, 1.0)
    score[~valid] = 0.0
    out: npt.NDArray[np.float32] = score.astype(np.float32)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_over_hypot_matches_the_plain_quotient(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 20_000
    x = rng.normal(size=n) * 10.0 ** rng.integers(-6, 3)
    y = rng.normal(size=n) * 10.0 ** rng.integers(-6, 3)
    num = np.abs(rng.normal(size=n)) * 10.0 ** rng.integers(-4, 4)
    # quotients on the midpoints between neighbouring float32 values: the rounding boundaries
    f = rng.random(n // 2).astype(np.float32)
    mid = (f.astype(np.float64) + np.nextafter(f, np.float32(2)).astype(np.float64)) / 2
    num[: n // 2] = mid * np.hypot(x[: n // 2], y[: n // 2])
    x[:20], y[:10], num[30:40] = 0.0, 0.0, np.nan
    x[50:55], y[50:55] = 1e-200, 0.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        den = np.hypot(x, y)
        expected = num / den
        expected[~(den > 0)] = np.nan
        expected = expected.astype(np.float32)
    got = geo._over_hypot_f32(num.copy(), x, y)
    assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("seed", range(4))
def test_epipolar_distance_at_some_pixels_equals_the_whole_grid(seed: int) -> None:
    rng = np.random.default_rng(seed)
    camera = _essential(rng)
    flow = _flow(rng, 3.0)
    idx = np.flatnonzero(rng.random(H * W) < 0.7)
    pairs = flow.reshape(-1, 2)[idx]
    gx, gy = geo.pixel_centres((H, W))
    got = geo._epipolar_distance_at(
        pairs[:, 0], pairs[:, 1], gx.reshape(-1)[idx], gy.reshape(-1)[idx], camera, K
    )
    expected = geo.epipolar_distance(flow, camera, K).reshape(-1)[idx]
    assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("seed", range(4))
def test_the_against_test_without_hypot_equals_the_exact_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    camera = _essential(rng)
    flow = _flow(rng, 10.0 ** rng.integers(-2, 2))
    idx = np.flatnonzero(np.isfinite(flow).all(axis=2))
    pairs = flow.reshape(-1, 2)[idx]
    fast = mot._behind(pairs[:, 0], pairs[:, 1], idx, camera, K, (H, W)).against
    exact = mot._behind(pairs[:, 0], pairs[:, 1], idx, camera, K, (H, W), exact=True).against
    cues = _cues(flow, camera, np.ones((H, W), bool))
    parts = mot._translational_parts(cues)
    with np.errstate(invalid="ignore"):
        expected = (parts.along * parts.focal < -1.0).reshape(-1)[idx]
    np.testing.assert_array_equal(fast, expected)
    np.testing.assert_array_equal(exact, expected)


def test_the_homography_flow_equals_the_whole_grid_formula() -> None:
    rng = np.random.default_rng(0)
    m = np.eye(3) + rng.normal(size=(3, 3)) * [
        [1e-2, 1e-2, 2.0],
        [1e-2, 1e-2, 2.0],
        [1e-4, 1e-4, 0],
    ]
    camera = CameraMotion("homography", m, None, None, 1.0)
    gx, gy = geo._planar_grid((H, W))
    hx = m[0, 0] * gx + m[0, 1] * gy + m[0, 2]
    hy = m[1, 0] * gx + m[1, 1] * gy + m[1, 2]
    hz = m[2, 0] * gx + m[2, 1] * gy + m[2, 2]
    expected = np.stack([hx / hz - gx, hy / hz - gy], axis=-1).astype(np.float32)
    assert geo.rigid_flow(camera, K, (H, W)).tobytes() == expected.tobytes()


@pytest.mark.parametrize("model", ["homography", "essential"])
@pytest.mark.parametrize("seed", range(3))
def test_the_gathered_score_equals_the_whole_grid_score(model: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    flow = _flow(rng, 2.0)
    valid = rng.random((H, W)) < 0.8
    if model == "essential":
        camera = _essential(rng)
    else:
        m = np.eye(3) + rng.normal(size=(3, 3)) * [[1e-2, 1e-2, 1.0], [1e-2, 1e-2, 1.0], [0, 0, 0]]
        camera = CameraMotion("homography", m, None, None, 1.0)
    cues = _cues(flow, camera, valid)
    cues.depth = triangulate_depth(flow, valid, camera, K)
    score, _ = mot.GeometricMotion(1.0)(cues)
    assert score.tobytes() == _reference_score(cues, 1.0).tobytes()


def test_the_bidirectional_combination_keeps_the_formula() -> None:
    rng = np.random.default_rng(3)
    frames = [
        VideoFrame(rng.integers(0, 255, (H, W, 3), dtype=np.uint8), i, index=i) for i in range(3)
    ]
    flows = {(a, b): _flow(rng, 1.0) for a in range(3) for b in range(3) if abs(a - b) == 1}

    class Fixed:
        name = "fixed"

        def __call__(self, source: VideoFrame, target: VideoFrame) -> npt.NDArray[np.float32]:
            return flows[(source.index, target.index)]

    pipe = build_cue_pipeline(PseudoLabelConfig())
    pipe.flow = Fixed()
    middle = list(pipe.run(frames, K))[1]
    forward = FrameCues(frames[1], frames[2], K, flows[(1, 2)], True, flows[(2, 1)])
    backward = FrameCues(frames[1], frames[0], K, flows[(1, 0)], False, flows[(0, 1)])
    pipe._fill(forward)
    pipe._fill_geometry(backward, depth=forward.depth)
    pipe._fill_motion(backward)  # every pixel (the pipeline asks only for those it combines)
    assert forward.valid is not None and backward.valid is not None
    assert pipe._failed_direction(forward.valid, backward.valid) is None
    assert forward.motion is not None and backward.motion is not None
    expected = np.where(
        forward.valid & backward.valid,
        np.minimum(forward.motion, backward.motion),
        np.where(forward.valid, forward.motion, backward.motion),
    ).astype(np.float32)
    assert middle.motion is not None
    assert middle.motion.tobytes() == expected.tobytes()


@pytest.mark.parametrize("noise", [0.0, 0.4])
@pytest.mark.parametrize("seed", range(3))
def test_the_block_score_equals_the_whole_grid_score_with_skew_and_noise(
    noise: float, seed: int
) -> None:
    # a skewed K: the rays' x differ between rows (the blocks cannot share a row's terms)
    k = K.copy()
    k[0, 1] = 0.7 if seed else 0.0
    rng = np.random.default_rng(seed)
    flow = _flow(rng, 3.0)
    valid = rng.random((H, W)) < 0.8
    valid[:, :5] = False
    camera = _essential(rng)
    cues = FrameCues(
        VideoFrame(np.zeros((H, W, 3), np.uint8), 0, index=0),
        VideoFrame(np.zeros((H, W, 3), np.uint8), 1, index=1),
        k,
        flow,
        True,
        flow,
        valid=valid,
        camera=camera,
        depth=None,
    )
    score, ego = mot.GeometricMotion(1.0, residual_noise=noise)(cues)
    assert ego is None
    residual = geo.epipolar_distance(flow, camera, k).astype(np.float64)
    parts = mot._translational_parts(cues)
    with np.errstate(invalid="ignore", divide="ignore"):
        residual = np.where(parts.along * parts.focal < -1.0, np.inf, residual)
        residual = np.maximum(residual - noise, 0.0) if noise else residual
        expected = residual / np.maximum(np.linalg.norm(flow, axis=2), 1.0)
    expected = np.clip(np.nan_to_num(expected, nan=0.0, posinf=1.0), 0.0, 1.0)
    expected[~(np.isfinite(flow).all(axis=2) & valid)] = 0.0
    assert score.tobytes() == expected.astype(np.float32).tobytes()
