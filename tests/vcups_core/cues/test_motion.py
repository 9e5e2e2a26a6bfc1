"""GeometricMotion: the independent-motion score from the flow the camera motion leaves
unexplained, on hand-made camera motions and flow fields."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from vcups_core.cues.base import CameraMotion, FrameCues
from vcups_core.cues.geometry import rigid_flow
from vcups_core.cues.motion import GeometricMotion
from vcups_core.types import VideoFrame

H, W = 48, 64
F = 60.0
K = np.array([[F, 0.0, W / 2], [0.0, F, H / 2], [0.0, 0.0, 1.0]])
PATCH = (slice(8, 20), slice(4, 16))  # away from the image centre (the epipole below)


def rotation_y(deg: float) -> npt.NDArray[np.float64]:
    a = math.radians(deg)
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def homography_camera(deg: float = 1.0) -> CameraMotion:
    """A pure rotation about the vertical axis: ``H = K R K^-1``."""
    hom = K @ rotation_y(deg) @ np.linalg.inv(K)
    return CameraMotion("homography", hom, None, None, 1.0)


def forward_camera() -> CameraMotion:
    """The camera drives straight ahead: ``X' = X + t`` with ``t = (0, 0, -1)`` (static points
    come closer), so static flow runs away from the epipole at the image centre."""
    return CameraMotion("essential", None, np.eye(3), np.array([0.0, 0.0, -1.0]), 1.0)


def cues_for(
    flow: npt.NDArray[np.float32],
    camera: CameraMotion | None,
    *,
    depth: npt.NDArray[np.float32] | None = None,
    valid: npt.NDArray[np.bool_] | None = None,
) -> FrameCues:
    frame = VideoFrame(np.zeros((H, W, 3), np.uint8), 0, index=0)
    partner = VideoFrame(np.zeros((H, W, 3), np.uint8), 1, index=1)
    return FrameCues(
        frame, partner, K, flow, True, np.zeros_like(flow), valid=valid, camera=camera, depth=depth
    )


def background_mask() -> npt.NDArray[np.bool_]:
    mask = np.ones((H, W), bool)
    mask[PATCH] = False
    return mask


def test_homography_camera_rotation_flow_scores_zero_and_a_moving_patch_one() -> None:
    camera = homography_camera(1.0)
    rotation = rigid_flow(camera, K, (H, W))
    assert np.abs(rotation[..., 0]).min() > 0.9  # the rotation alone moves every pixel ~1 px
    flow = rotation.copy()
    flow[PATCH] += np.array([0.0, 8.0], np.float32)  # the patch also moves 8 px down
    score, ego = GeometricMotion()(cues_for(flow, camera))
    assert score.dtype == np.float32 and score.shape == (H, W)
    assert ego is not None
    np.testing.assert_allclose(ego, rotation, atol=1e-5)
    assert score[background_mask()].max() < 0.01
    assert score[PATCH].min() > 0.9  # |residual| = 8 px of a flow of ~8.1 px
    assert score.max() <= 1.0


def test_invalid_pixels_score_zero() -> None:
    camera = homography_camera(1.0)
    flow = rigid_flow(camera, K, (H, W))
    flow[PATCH] += np.array([0.0, 8.0], np.float32)
    valid = np.ones((H, W), bool)
    valid[8:14] = False  # the patch's upper half is not trustworthy
    flow[16, 8] = np.nan  # nor is an undefined flow
    score, _ = GeometricMotion()(cues_for(flow, camera, valid=valid))
    assert (score[8:14] == 0).all() and score[16, 8] == 0
    assert score[14:20, 4:16][np.isfinite(flow[14:20, 4:16, 0])].min() > 0.9
    assert np.isfinite(score).all()


def test_residual_floor() -> None:
    # a static camera; the background jitters by 0.2 px, the patch moves 4 px
    camera = CameraMotion("homography", np.eye(3), None, None, 1.0)
    flow = np.zeros((H, W, 2), np.float32)
    flow[..., 0] = 0.2
    flow[PATCH] = (4.0, 0.0)
    cues = cues_for(flow, camera)
    score, _ = GeometricMotion(residual_floor=1.0)(cues)
    # |R| / max(|F|, 1): the jitter is damped (0.2), the patch is fully moving
    np.testing.assert_allclose(score[background_mask()], 0.2, atol=1e-6)
    np.testing.assert_allclose(score[PATCH], 1.0)
    # a floor below the jitter lets noise look like motion
    score, _ = GeometricMotion(residual_floor=0.1)(cues)
    np.testing.assert_allclose(score[background_mask()], 1.0)
    # a floor above the patch's flow damps it as well
    score, _ = GeometricMotion(residual_floor=8.0)(cues)
    np.testing.assert_allclose(score[PATCH], 0.5)
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="residual_floor"):
            GeometricMotion(residual_floor=bad)


def test_residual_noise_is_subtracted_before_the_score() -> None:
    # the same scene: background jitter 0.2 px, the patch moves 4 px, the static camera
    camera = CameraMotion("homography", np.eye(3), None, None, 1.0)
    flow = np.zeros((H, W, 2), np.float32)
    flow[..., 0] = 0.2
    flow[PATCH] = (4.0, 0.0)
    cues = cues_for(flow, camera)
    # max(|R| - 0.5, 0) / max(|F|, 1): the jitter is within the noise (0), the patch 3.5 / 4
    score, _ = GeometricMotion(residual_floor=1.0, residual_noise=0.5)(cues)
    np.testing.assert_allclose(score[background_mask()], 0.0, atol=1e-6)
    np.testing.assert_allclose(score[PATCH], 0.875, atol=1e-6)
    # 0 is the plain ratio
    score, _ = GeometricMotion(residual_floor=1.0, residual_noise=0.0)(cues)
    np.testing.assert_allclose(score[background_mask()], 0.2, atol=1e-6)
    for bad in (-0.1, math.nan):
        with pytest.raises(ValueError, match="residual_noise"):
            GeometricMotion(residual_noise=bad)


def test_the_config_residual_noise_reaches_the_motion_score() -> None:
    from dataclasses import replace

    from vcups_core.configs.pseudo_labels import PseudoLabelConfig
    from vcups_core.cues.build import build_motion

    cfg = PseudoLabelConfig()
    assert cfg.motion.residual_noise == 0.5  # on by default for DIS (README: measured both ways)
    motion = build_motion(replace(cfg, motion=replace(cfg.motion, residual_noise=0.7)))
    assert isinstance(motion, GeometricMotion) and motion.residual_noise == 0.7


def test_no_camera_motion_scores_zero() -> None:
    flow = np.full((H, W, 2), 3.0, np.float32)
    score, ego = GeometricMotion()(cues_for(flow, None))
    assert ego is None and score.dtype == np.float32 and (score == 0).all()


def test_essential_camera_flags_a_patch_moving_towards_the_epipole() -> None:
    camera = forward_camera()
    depth = np.full((H, W), 10.0, np.float32)
    static = rigid_flow(camera, K, (H, W), depth)  # outward from the centre, 0 at the epipole
    # the patch flows towards the epipole, along its epipolar line: no epipolar distance at all
    flow = static.copy()
    flow[PATCH] = -2.0 * static[PATCH]
    assert np.hypot(*np.moveaxis(flow[PATCH], -1, 0)).min() > 2.0
    score, ego = GeometricMotion(depth_from_flow=True)(cues_for(flow, camera))
    assert ego is None
    assert score[background_mask()].max() < 0.01
    assert (score[PATCH] == 1.0).all()
    # the same patch moving *away* from the epipole faster than the scene is invisible to the
    # epipolar test (the documented blind spot of parallax depth) ...
    flow[PATCH] = 2.0 * static[PATCH]
    score, _ = GeometricMotion(depth_from_flow=True)(cues_for(flow, camera))
    assert score.max() < 0.01
    # ... but not to the rigid flow of a depth that did not come from this flow
    score, ego = GeometricMotion(depth_from_flow=False)(cues_for(flow, camera, depth=depth))
    assert ego is not None
    np.testing.assert_allclose(ego, static, atol=1e-4)  # translation scale fitted on the scene
    assert score[background_mask()].max() < 0.01
    np.testing.assert_allclose(score[PATCH], 0.5, atol=0.01)  # |R| = |F| / 2


def test_essential_camera_with_a_sideways_moving_patch() -> None:
    # motion across the epipolar lines is an epipolar distance: scored without any depth
    camera = forward_camera()
    static = rigid_flow(camera, K, (H, W), np.full((H, W), 10.0, np.float32))
    flow = static.copy()
    flow[PATCH] += np.array([0.0, 6.0], np.float32)
    score, _ = GeometricMotion(depth_from_flow=True)(cues_for(flow, camera))
    assert score[background_mask()].max() < 0.01
    assert np.median(score[PATCH]) > 0.3


@pytest.mark.parametrize("share", [0.1, 0.9])  # gathered pixels / blocks of rows
@pytest.mark.parametrize("depth_from_flow", [True, False])
def test_where_scores_only_the_pixels_asked_for_with_the_same_values(
    share: float, depth_from_flow: bool
) -> None:
    camera = forward_camera()
    depth = np.full((H, W), 10.0, np.float32)
    static = rigid_flow(camera, K, (H, W), depth)
    flow = static.copy()
    flow[PATCH] = -2.0 * static[PATCH]  # towards the epipole: scored 1 (behind test)
    flow[30:40, 40:60] += np.array([0.0, 3.0], np.float32)  # across its epipolar lines
    rng = np.random.default_rng(0)
    flow += rng.normal(0.0, 0.3, flow.shape).astype(np.float32)
    where = rng.random((H, W)) < share
    where[PATCH] = True
    motion = GeometricMotion(depth_from_flow=depth_from_flow, residual_noise=0.2)
    cues = cues_for(flow, camera, depth=None if depth_from_flow else depth)
    full, _ = motion(cues)
    part, _ = motion(cues, where)
    assert (full[where] > 0).mean() > 0.2  # not a test of zeros against zeros
    np.testing.assert_array_equal(part[where], full[where])  # bit for bit
    assert (part[~where] == 0).all()
