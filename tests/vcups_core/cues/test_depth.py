"""Parallax depth: hand-computed triangulations, degenerate cameras, and a synthetic-world frame."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vcups_core.cues import geometry as geo
from vcups_core.cues.base import CameraMotion, DepthEstimator, FrameCues
from vcups_core.cues.depth import NoDepth, ParallaxDepth
from vcups_core.data.synthetic import SyntheticWorld
from vcups_core.types import VideoFrame

K10 = np.array([[10.0, 0.0, 2.0], [0.0, 10.0, 1.5], [0.0, 0.0, 1.0]])  # 3 x 4 images
SIDEWAYS = CameraMotion("essential", None, np.eye(3), np.array([1.0, 0.0, 0.0]), 1.0)


def make_cues(
    flow: np.ndarray,
    k: np.ndarray,
    camera: CameraMotion | None,
    valid: np.ndarray | None = None,
    *,
    forward: bool = True,
) -> FrameCues:
    h, w = flow.shape[:2]
    image = np.zeros((h, w, 3), np.uint8)
    return FrameCues(
        frame=VideoFrame(image, stamp_ns=0, index=0),
        partner=VideoFrame(image, stamp_ns=1, index=1 if forward else -1),
        intrinsics=k,
        flow=flow.astype(np.float32),
        flow_is_forward=forward,
        flow_back=-flow.astype(np.float32),
        valid=valid,
        camera=camera,
    )


def scene_flow(depth: np.ndarray, rot: np.ndarray, t: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Oracle flow of a static scene: X = d K^-1 p, X' = R X + t, p' = K X' / z'."""
    h, w = depth.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    pix = np.stack([xs, ys, np.ones_like(xs)], axis=-1)
    moved = (pix @ np.linalg.inv(k).T) * depth[..., None] @ rot.T + t
    proj = moved @ k.T
    return (proj[..., :2] / proj[..., 2:] - pix[..., :2]).astype(np.float32)


def test_backends_satisfy_the_protocol_and_have_names() -> None:
    parallax: DepthEstimator = ParallaxDepth()
    none: DepthEstimator = NoDepth()
    assert (parallax.name, none.name) == ("parallax", "none")
    flow = np.zeros((3, 4, 2), np.float32)
    assert NoDepth()(make_cues(flow, K10, SIDEWAYS)) is None
    with pytest.raises(ValueError, match="min_parallax_deg"):
        ParallaxDepth(min_parallax_deg=-1.0)


def test_sideways_translation_by_hand() -> None:
    # R = I, t = (1, 0, 0), f = 10: a point at depth d moves by f / d = 10 / d px in x.
    flow = np.zeros((3, 4, 2), np.float32)
    flow[..., 0] = 2.0  # -> depth 5
    flow[0, 0] = (-2.0, 0.0)  # moving the wrong way: behind the camera
    flow[0, 1] = (0.0, 0.0)  # no parallax: infinitely far
    flow[0, 2] = np.nan
    flow[0, 3] = (4.0, 0.0)  # -> depth 2.5, but invalid below
    valid = np.ones((3, 4), bool)
    valid[0, 3] = False
    depth = ParallaxDepth(min_parallax_deg=0.1)(make_cues(flow, K10, SIDEWAYS, valid))
    assert depth.dtype == np.float32 and depth.shape == (3, 4)
    np.testing.assert_allclose(depth[1:], 5.0, rtol=1e-6)
    assert np.isnan(depth[0]).all()


def test_min_parallax_angle_by_hand() -> None:
    # The centre pixel column x = 2 (ray (0.05, ., 1)) at depth 5 with a baseline 1 sideways:
    # angle ~ atan(1 / 5) ~ 11.3 deg; at depth 500: ~0.115 deg
    flow = np.zeros((3, 4, 2), np.float32)
    flow[:, :2, 0] = 10.0 / 5.0
    flow[:, 2:, 0] = 10.0 / 500.0
    depth = ParallaxDepth(min_parallax_deg=0.2)(make_cues(flow, K10, SIDEWAYS))
    np.testing.assert_allclose(depth[:, :2], 5.0, rtol=1e-5)
    assert np.isnan(depth[:, 2:]).all()
    depth = ParallaxDepth(min_parallax_deg=0.1)(make_cues(flow, K10, SIDEWAYS))
    np.testing.assert_allclose(depth[:, 2:], 500.0, rtol=1e-4)
    depth = ParallaxDepth(min_parallax_deg=12.0)(make_cues(flow, K10, SIDEWAYS))
    assert np.isnan(depth).all()


def test_point_behind_the_partner_camera_is_nan() -> None:
    # t = (0, 0, -1): the camera moves backwards by 1. A point at depth 0.5 on the ray
    # (0.2, 0, 1) ends at (0.1, 0, -0.5), behind the partner; it projects to u = -0.2, a flow
    # of f * (-0.2 - 0.2) = -4 px. Triangulation gives rho = 2 (depth 0.5) but a_z + rho t_z < 0.
    k = np.array(
        [[10.0, 0.0, -1.5], [0.0, 10.0, 0.5], [0.0, 0.0, 1.0]]
    )  # pixel (0,0) -> ray (0.2, 0)
    back = CameraMotion("essential", None, np.eye(3), np.array([0.0, 0.0, -1.0]), 1.0)
    flow = np.array([[[-4.0, 0.0]]], np.float32)
    assert np.isnan(ParallaxDepth(min_parallax_deg=0.0)(make_cues(flow, k, back))).all()
    # the same ray at depth 2 (in front of both cameras): X' = (0.4, 0, 1) -> u = 0.4, flow 2 px
    flow = np.array([[[2.0, 0.0]]], np.float32)
    depth = ParallaxDepth(min_parallax_deg=0.0)(make_cues(flow, k, back))
    np.testing.assert_allclose(depth, [[2.0]], rtol=1e-6)


def test_fronto_parallel_scene_has_the_true_depth_up_to_one_scale() -> None:
    h, w = 24, 32
    k = np.array([[40.0, 0.0, w / 2], [0.0, 40.0, h / 2], [0.0, 0.0, 1.0]])
    depth_gt = np.full((h, w), 6.0, np.float32)
    depth_gt[:, w // 2 :] = 12.0  # two fronto-parallel planes
    angle = math.radians(1.5)
    rot = np.array(
        [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]]
    )
    t = np.array([0.6, 0.1, 0.5])
    flow = scene_flow(depth_gt, rot, t, k)
    cam = CameraMotion("essential", None, rot, t / np.linalg.norm(t), 1.0)
    depth = ParallaxDepth(min_parallax_deg=0.0)(make_cues(flow, k, cam))
    # unit-norm translation: depth = true depth / |t|
    np.testing.assert_allclose(depth, depth_gt / np.linalg.norm(t), rtol=1e-4)
    # and with the camera estimated from the flow (two planes: a 3-D scene)
    est = geo.estimate_camera_motion(flow, None, k)
    assert est is not None and est.model == "essential"
    depth = ParallaxDepth(min_parallax_deg=0.0)(make_cues(flow, k, est))
    np.testing.assert_allclose(depth, depth_gt / np.linalg.norm(t), rtol=1e-3)


def test_rigid_flow_of_parallax_depth_reproduces_the_flow() -> None:
    h, w = 24, 32
    k = np.array([[40.0, 0.0, w / 2], [0.0, 40.0, h / 2], [0.0, 0.0, 1.0]])
    ys, xs = np.mgrid[0:h, 0:w]
    depth_gt = (5.0 + 0.2 * xs + 0.1 * ys).astype(np.float32)
    t = np.array([-0.3, 0.0, 1.0])
    flow = scene_flow(depth_gt, np.eye(3), t, k)
    cam = CameraMotion("essential", None, np.eye(3), t / np.linalg.norm(t), 1.0)
    depth = ParallaxDepth(min_parallax_deg=0.0)(make_cues(flow, k, cam))
    ok = np.isfinite(depth)
    assert ok.mean() > 0.95  # only the pixels at the focus of expansion have no parallax
    ego = geo.rigid_flow(cam, k, (h, w), depth)  # parallax depth has translation scale 1
    np.testing.assert_allclose(ego[ok], flow[ok], atol=1e-3)


def test_no_translation_means_no_depth() -> None:
    rng = np.random.default_rng(0)
    h, w = 24, 32
    k = np.array([[40.0, 0.0, w / 2], [0.0, 40.0, h / 2], [0.0, 0.0, 1.0]])
    depth_gt = rng.uniform(3.0, 10.0, (h, w)).astype(np.float32)
    angle = math.radians(2.0)
    rot = np.array(
        [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]]
    )
    flow = scene_flow(depth_gt, rot, np.zeros(3), k)  # a pure rotation
    cam = geo.estimate_camera_motion(flow, None, k, model="auto")
    assert cam is not None and cam.model == "homography"
    assert np.isnan(ParallaxDepth()(make_cues(flow, k, cam))).all()
    assert np.isnan(ParallaxDepth()(make_cues(flow, k, None))).all()


@pytest.mark.parametrize("forward", [True, False])
def test_synthetic_frame_parallax_depth_matches_ground_truth(forward: bool) -> None:
    world = SyntheticWorld(height=64, width=128, seed=3, num_frames=4)
    frame = world.render(1)
    flow = frame.flow_forward if forward else frame.flow_backward
    cam = geo.estimate_camera_motion(flow, None, frame.intrinsics)
    assert cam is not None and cam.model == "essential"
    depth = ParallaxDepth()(make_cues(flow, frame.intrinsics, cam, forward=forward))
    static = ~frame.motion & np.isfinite(frame.depth)
    ok = static & np.isfinite(depth)
    assert ok.sum() > 0.8 * static.sum()
    log_ratio = np.log(depth[ok]) - np.log(frame.depth[ok])
    scale = np.median(log_ratio)  # the best single scale in the log domain
    assert np.median(np.abs(log_ratio - scale)) < 0.005
    assert np.exp(-scale) == pytest.approx(0.8, rel=0.01)  # |t| = ego speed 8 m/s / 10 fps
    assert np.isnan(depth[np.isinf(frame.depth)]).all()  # the sky has no parallax
