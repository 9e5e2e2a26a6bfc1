"""Camera motion from flow: hand-made scenes with a known R, t, and one synthetic-world frame."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vcups_core.cues import geometry as geo
from vcups_core.cues.base import CameraMotion
from vcups_core.data.synthetic import SyntheticWorld

H, W, F = 48, 64, 60.0
K = np.array([[F, 0.0, W / 2], [0.0, F, H / 2], [0.0, 0.0, 1.0]])


def rot_xyz(yaw_deg: float, pitch_deg: float, roll_deg: float = 0.0) -> np.ndarray:
    y, p, r = (math.radians(a) for a in (yaw_deg, pitch_deg, roll_deg))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return ry @ rx @ rz


def scene_flow(depth: np.ndarray, rot: np.ndarray, t: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Oracle flow of a static scene (independent of the library: [..., 3] matrix products)."""
    h, w = depth.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    pix = np.stack([xs, ys, np.ones_like(xs)], axis=-1)
    pts = (pix @ np.linalg.inv(k).T) * depth[..., None]
    moved = pts @ rot.T + t
    proj = moved @ k.T
    return (proj[..., :2] / proj[..., 2:] - pix[..., :2]).astype(np.float32)


def bumpy_depth(h: int = H, w: int = W) -> np.ndarray:
    """A non-planar static scene, 3 to 13 (m)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    return (8.0 + 5.0 * np.sin(xs / 7.0) * np.cos(ys / 5.0)).astype(np.float32)


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def rotation_error_deg(ra: np.ndarray, rb: np.ndarray) -> float:
    return math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(ra.T @ rb) - 1) / 2))))


ROT = rot_xyz(1.0, -0.5, 0.3)
T = np.array([0.2, -0.05, 1.0])


# ----------------------------------------------------------------------------------------------
# sample_correspondences


def test_sample_correspondences_takes_a_regular_grid_of_pixel_centres() -> None:
    flow = np.zeros((4, 4, 2), np.float32)
    flow[...] = (1.0, 2.0)
    pts0, pts1 = geo.sample_correspondences(flow, None, max_points=4)
    # 16 valid pixels, at most 4: stride 2 from offset 1 -> pixels (1,1), (3,1), (1,3), (3,3)
    np.testing.assert_array_equal(pts0, [[1.5, 1.5], [3.5, 1.5], [1.5, 3.5], [3.5, 3.5]])
    np.testing.assert_array_equal(pts1, pts0 + np.array([1.0, 2.0]))
    assert pts0.dtype == np.float64


def test_sample_correspondences_skips_invalid_and_nan_and_respects_max_points() -> None:
    flow = np.zeros((3, 3, 2), np.float32)
    flow[0, 1] = np.nan
    valid = np.ones((3, 3), bool)
    valid[2, 2] = False
    pts0, _ = geo.sample_correspondences(flow, valid, max_points=100)
    assert len(pts0) == 7
    assert [1.5, 0.5] not in pts0.tolist()
    assert [2.5, 2.5] not in pts0.tolist()
    for m in (1, 2, 3, 5):
        assert len(geo.sample_correspondences(flow, valid, max_points=m)[0]) <= m
    empty0, empty1 = geo.sample_correspondences(flow, np.zeros((3, 3), bool))
    assert empty0.shape == empty1.shape == (0, 2)


# ----------------------------------------------------------------------------------------------
# estimate_camera_motion


@pytest.mark.parametrize("model", ["auto", "essential"])
def test_essential_recovers_rotation_and_translation_direction(model: str) -> None:
    flow = scene_flow(bumpy_depth(), ROT, T, K)
    cam = geo.estimate_camera_motion(flow, None, K, model=model)  # type: ignore[arg-type]
    assert cam is not None
    assert cam.model == "essential"
    assert cam.rotation is not None and cam.translation is not None
    assert rotation_error_deg(cam.rotation, ROT) < 1e-3
    assert angle_deg(cam.translation, T) < 1e-2  # the sign too: points lie in front
    assert np.linalg.norm(cam.translation) == pytest.approx(1.0)
    assert cam.inlier_ratio == pytest.approx(1.0)


def test_essential_is_robust_to_a_moving_block_and_recovers_a_distant_scene() -> None:
    # every point is more than 50 baselines away: cv2.recoverPose counts no point in front
    # there and returns a rotation 180 degrees off; the parallax vote does not need near points
    k = np.array([[600.0, 0.0, W / 2], [0.0, 600.0, H / 2], [0.0, 0.0, 1.0]])
    t = np.array([0.5, 0.05, 0.15])  # |t| ~ 0.52, depth 30 to 130: parallax 2 to 10 px
    flow = scene_flow(10.0 * bumpy_depth(), ROT, t, k)
    flow[10:26, 20:40] += (4.0, -3.0)  # an independently moving object (~10 % of the pixels)
    cam = geo.estimate_camera_motion(flow, None, k, model="essential")
    assert cam is not None and cam.rotation is not None and cam.translation is not None
    assert rotation_error_deg(cam.rotation, ROT) < 1e-2
    assert angle_deg(cam.translation, t) < 0.1
    assert cam.inlier_ratio == pytest.approx(1.0 - 16 * 20 / (H * W), abs=0.01)


def test_pure_rotation_auto_chooses_the_homography_and_essential_fails() -> None:
    rot = rot_xyz(2.0, 1.0)
    flow = scene_flow(bumpy_depth(), rot, np.zeros(3), K)
    cam = geo.estimate_camera_motion(flow, None, K, model="auto")
    assert cam is not None
    assert cam.model == "homography"
    assert cam.homography is not None and cam.rotation is None and cam.translation is None
    expected = K @ rot @ np.linalg.inv(K)
    np.testing.assert_allclose(cam.homography, expected / expected[2, 2], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(geo.rigid_flow(cam, K, (H, W)), flow, atol=1e-3)
    # no translation: no measurable parallax, no essential-model estimate
    assert geo.estimate_camera_motion(flow, None, K, model="essential") is None


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_a_plane_seen_by_a_translating_camera_is_a_homography(noise: float) -> None:
    # Both models explain a plane exactly; GRIC prefers the one of lower dimension.
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5
    rays = np.stack([(xs - W / 2) / F, (ys - H / 2) / F, np.ones_like(xs)], axis=-1)
    depth = (8.0 / (rays @ np.array([0.1, -0.3, 1.0]))).astype(np.float32)  # n . X = 8
    rng = np.random.default_rng(0)
    flow = scene_flow(depth, ROT, T, K) + rng.normal(0.0, noise, (H, W, 2)).astype(np.float32)
    essential = geo.estimate_camera_motion(flow, None, K, model="essential")
    assert essential is not None and essential.inlier_ratio > 0.99  # the essential fit works...
    cam = geo.estimate_camera_motion(flow, None, K, model="auto")
    assert cam is not None and cam.model == "homography"  # ...but loses to the homography
    assert cam.inlier_ratio > 0.99


def test_translation_through_depth_prefers_essential_even_with_noise() -> None:
    rng = np.random.default_rng(0)
    flow = scene_flow(bumpy_depth(), ROT, 0.3 * T, K)
    flow += rng.normal(0.0, 0.3, flow.shape).astype(np.float32)
    cam = geo.estimate_camera_motion(flow, None, K)
    assert cam is not None and cam.model == "essential"
    rot_flow = scene_flow(bumpy_depth(), rot_xyz(2.0, 1.0), np.zeros(3), K)
    rot_flow += rng.normal(0.0, 0.3, flow.shape).astype(np.float32)
    cam = geo.estimate_camera_motion(rot_flow, None, K)
    assert cam is not None and cam.model == "homography"


def test_outliers_do_not_turn_a_rotation_into_an_essential_matrix() -> None:
    # 60 % of the pixels have random flow (moving things, flow errors): they fit neither model
    # and must not decide between them (the essential model's GRIC cap for them is lower)
    rng = np.random.default_rng(0)
    flow = scene_flow(bumpy_depth(), rot_xyz(2.0, 1.0), np.zeros(3), K)
    flow += rng.normal(0.0, 0.3, flow.shape).astype(np.float32)
    rows = int(0.6 * H)
    flow[:rows] += rng.uniform(-8.0, 8.0, (rows, W, 2)).astype(np.float32)
    essential = geo.estimate_camera_motion(flow, None, K, model="essential")
    assert essential is not None  # random flow has "parallax": the essential fit succeeds
    cam = geo.estimate_camera_motion(flow, None, K, model="auto")
    assert cam is not None and cam.model == "homography"
    assert cam.inlier_ratio == pytest.approx(0.4, abs=0.03)


def test_homography_model_on_request_and_none_without_enough_points() -> None:
    flow = scene_flow(bumpy_depth(), ROT, T, K)
    cam = geo.estimate_camera_motion(flow, None, K, model="homography")
    assert cam is not None and cam.model == "homography"
    assert cam.inlier_ratio < 0.9  # the parallax of a 3-D scene is off the homography
    valid = np.zeros((H, W), bool)
    valid[0, : geo.MIN_CORRESPONDENCES - 1] = True
    assert geo.estimate_camera_motion(flow, valid, K) is None


def test_estimate_camera_motion_rejects_bad_arguments() -> None:
    flow = np.zeros((H, W, 2), np.float32)
    with pytest.raises(ValueError, match="model"):
        geo.estimate_camera_motion(flow, None, K, model="affine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ransac_threshold"):
        geo.estimate_camera_motion(flow, None, K, ransac_threshold=0.0)
    with pytest.raises(ValueError, match="flow"):
        geo.estimate_camera_motion(flow[..., 0], None, K)
    with pytest.raises(ValueError, match="intrinsics"):
        geo.estimate_camera_motion(flow, None, np.eye(2))


def _motion_bytes(cam: CameraMotion | None) -> bytes:
    assert cam is not None
    parts = [cam.model.encode(), np.float64(cam.inlier_ratio).tobytes()]
    for m in (cam.homography, cam.rotation, cam.translation):
        parts.append(b"-" if m is None else m.tobytes())
    return b"".join(parts)


def test_estimates_are_bit_identical_across_calls_and_processes(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    flow = scene_flow(bumpy_depth(), ROT, T, K)
    flow += rng.normal(0.0, 0.5, flow.shape).astype(np.float32)
    flow[5:20, 5:30] += (6.0, 2.0)
    digests = {
        model: hashlib.sha256(
            _motion_bytes(geo.estimate_camera_motion(flow, None, K, model=model))  # type: ignore[arg-type]
        ).hexdigest()
        for model in ("auto", "homography", "essential")
    }
    for model in ("auto", "homography", "essential"):
        again = geo.estimate_camera_motion(flow, None, K, model=model)  # type: ignore[arg-type]
        assert hashlib.sha256(_motion_bytes(again)).hexdigest() == digests[model]
    np.save(tmp_path / "flow.npy", flow)
    np.save(tmp_path / "k.npy", K)
    script = f"""
import hashlib, sys
import numpy as np
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_geometry import _motion_bytes
from vcups_core.cues import geometry as geo
flow = np.load({str(tmp_path / "flow.npy")!r}); k = np.load({str(tmp_path / "k.npy")!r})
for model in ("auto", "homography", "essential"):
    cam = geo.estimate_camera_motion(flow, None, k, model=model)
    print(model, hashlib.sha256(_motion_bytes(cam)).hexdigest())
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    other = dict(line.split() for line in out.strip().splitlines())
    assert other == digests


# ----------------------------------------------------------------------------------------------
# GRIC and weighted median


def test_gric_matches_the_formula_by_hand() -> None:
    # residuals 0 and 1 px, sigma 1: fit 0 + 1; homography (c=2, k=8); n = 2
    expected_h = 1.0 + math.log(4) * 2 * 2 + math.log(8) * 8
    assert geo.gric(np.array([0.0, 1.0]), 1.0, 2, 8) == pytest.approx(expected_h)
    # a residual of 10 sigma is capped at 2c = 2 for the essential model (c=1, k=5)
    expected_e = 2.0 + math.log(4) * 3 * 1 + math.log(4) * 5
    assert geo.gric(np.array([10.0]), 1.0, 1, 5) == pytest.approx(expected_e)


def test_weighted_median_by_hand() -> None:
    assert geo.weighted_median(np.array([3.0, 1.0, 2.0]), np.ones(3)) == 2.0
    assert geo.weighted_median(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 5.0])) == 3.0
    assert geo.weighted_median(np.array([1.0, 2.0]), np.array([1.0, 1.0])) == 1.0


# ----------------------------------------------------------------------------------------------
# rigid_flow, fit_translation_scale, epipolar_distance

SIDEWAYS = CameraMotion("essential", None, np.eye(3), np.array([1.0, 0.0, 0.0]), 1.0)
FORWARD = CameraMotion("essential", None, np.eye(3), np.array([0.0, 0.0, 1.0]), 1.0)


def test_rigid_flow_of_a_sideways_translation_by_hand() -> None:
    # R = I, t = (s, 0, 0): a point at depth d moves by f s / d pixels to the left in x.
    # Here the camera moves by t, so X' = X + t and the flow is +f s / d.
    k = np.array([[10.0, 0.0, 2.0], [0.0, 10.0, 1.5], [0.0, 0.0, 1.0]])
    depth = np.full((3, 4), 5.0, np.float32)
    depth[0, 0] = np.inf
    depth[0, 1] = np.nan
    flow = geo.rigid_flow(SIDEWAYS, k, (3, 4), depth, translation_scale=2.0)
    assert flow.dtype == np.float32 and flow.shape == (3, 4, 2)
    np.testing.assert_allclose(flow[1:], np.broadcast_to([4.0, 0.0], (2, 4, 2)), atol=1e-6)
    np.testing.assert_allclose(flow[0, 0], [0.0, 0.0], atol=1e-6)  # infinitely far: no parallax
    assert np.isnan(flow[0, 1]).all()


def test_rigid_flow_of_a_homography_by_hand() -> None:
    shift = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -1.0], [0.0, 0.0, 1.0]])
    cam = CameraMotion("homography", shift, None, None, 1.0)
    flow = geo.rigid_flow(cam, K, (2, 3))
    np.testing.assert_allclose(flow, np.broadcast_to([3.0, -1.0], (2, 3, 2)), atol=1e-6)
    zoom = CameraMotion("homography", np.diag([2.0, 2.0, 1.0]), None, None, 1.0)
    # p' = 2 p: pixel (1, 0) has centre (1.5, 0.5), flow (1.5, 0.5)
    np.testing.assert_allclose(geo.rigid_flow(zoom, K, (1, 2))[0, 1], [1.5, 0.5], atol=1e-6)


def test_rigid_flow_with_true_depth_reproduces_the_static_flow() -> None:
    depth = bumpy_depth()
    flow = scene_flow(depth, ROT, T, K)
    cam = geo.estimate_camera_motion(flow, None, K)
    assert cam is not None and cam.model == "essential"
    ego = geo.rigid_flow(cam, K, (H, W), depth, translation_scale=float(np.linalg.norm(T)))
    np.testing.assert_allclose(ego, flow, atol=2e-3)
    with pytest.raises(ValueError, match="depth"):
        geo.rigid_flow(cam, K, (H, W))


def test_rigid_flow_marks_points_behind_the_partner_camera() -> None:
    # X' = X - 2 (0, 0, 1): a point at depth 1 ends up behind the partner camera, one at 4 not
    depth = np.array([[1.0, 4.0]], np.float32)
    flow = geo.rigid_flow(FORWARD, K, (1, 2), depth, translation_scale=-2.0)
    assert np.isnan(flow[0, 0]).all()
    assert np.isfinite(flow[0, 1]).all()


def test_fit_translation_scale_recovers_the_depth_units_despite_outliers() -> None:
    depth = bumpy_depth()
    flow = scene_flow(depth, ROT, 0.7 * T, K)
    cam = CameraMotion("essential", None, ROT, T / np.linalg.norm(T), 1.0)
    # the depth in arbitrary units (x 3): s = 3 * |0.7 T|
    expected = 3.0 * 0.7 * float(np.linalg.norm(T))
    s = geo.fit_translation_scale(flow, None, cam, K, 3.0 * depth)
    assert s == pytest.approx(expected, rel=1e-5)
    flow[:20, :30] += (5.0, 5.0)  # a moving object covering 20 % of the pixels
    s = geo.fit_translation_scale(flow, None, cam, K, 3.0 * depth)
    assert s == pytest.approx(expected, rel=1e-3)
    assert math.isnan(geo.fit_translation_scale(flow, None, cam, K, np.full_like(depth, np.inf)))
    with pytest.raises(ValueError, match="essential"):
        geo.fit_translation_scale(
            flow, None, CameraMotion("homography", np.eye(3), None, None, 1.0), K, depth
        )


def test_epipolar_distance_of_a_tangential_motion_by_hand() -> None:
    # forward motion: epipolar lines are radial through the principal point (W/2, H/2);
    # a flow endpoint displaced 3 px perpendicular to that line is 3 px from it
    depth = np.full((H, W), 10.0, np.float32)
    flow = geo.rigid_flow(FORWARD, K, (H, W), depth)
    y, x = 8, 50
    radial = np.array([x + 0.5 - W / 2, y + 0.5 - H / 2])
    tangent = np.array([-radial[1], radial[0]]) / np.linalg.norm(radial)
    flow[y, x] += (3.0 * tangent).astype(np.float32)
    flow[0, 0] = np.nan
    dist = geo.epipolar_distance(flow, FORWARD, K)
    assert dist.dtype == np.float32 and dist.shape == (H, W)
    assert dist[y, x] == pytest.approx(3.0, abs=1e-4)
    assert np.isnan(dist[0, 0])
    static = np.isfinite(dist)
    static[y, x] = False
    assert np.nanmax(dist[static]) < 1e-4


def test_epipolar_distance_of_a_homography_is_the_2d_residual() -> None:
    cam = CameraMotion("homography", np.eye(3), None, None, 1.0)
    flow = np.zeros((2, 2, 2), np.float32)
    flow[1, 0] = (3.0, 4.0)
    np.testing.assert_allclose(geo.epipolar_distance(flow, cam, K), [[0.0, 0.0], [5.0, 0.0]])


def test_synthetic_driving_frame_is_essential_with_the_true_pose() -> None:
    world = SyntheticWorld(height=64, width=128, seed=3, num_frames=4)
    frame = world.render(1)
    nxt = world.camera_pose(world.time_of(2))
    rot_gt = nxt[:3, :3].T @ frame.pose[:3, :3]
    t_gt = nxt[:3, :3].T @ (frame.pose[:3, 3] - nxt[:3, 3])
    cam = geo.estimate_camera_motion(frame.flow_forward, None, frame.intrinsics)
    assert cam is not None and cam.model == "essential"
    assert cam.rotation is not None and cam.translation is not None
    assert rotation_error_deg(cam.rotation, rot_gt) < 0.01
    assert angle_deg(cam.translation, t_gt) < 0.1
    # the moving things of this world drive along the road, i.e. along their epipolar lines:
    # they stay close to them (the degenerate case); the static scene is on them
    dist = geo.epipolar_distance(frame.flow_forward, cam, frame.intrinsics)
    static = ~frame.motion & np.isfinite(dist)
    assert np.percentile(dist[static], 99) < 0.05
