"""The ground-plane depth prior of GeometricMotion: objects moving along their epipolar lines (a
car driving with or towards the camera) on a hand-made road scene with exact flow."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from vcups_core.cues.base import CameraMotion, FrameCues
from vcups_core.cues.depth import triangulate_depth
from vcups_core.cues.motion import GeometricMotion, fit_ground_plane
from vcups_core.types import VideoFrame

H, W = 96, 128
F = 100.0
K = np.array([[F, 0.0, W / 2], [0.0, F, H / 2], [0.0, 0.0, 1.0]])
HEIGHT = 2.0  # camera height above the road, in units of the camera's translation
WALL_RHO = 1.0 / 60.0  # a distant facade above the horizon
FORWARD = CameraMotion("essential", None, np.eye(3), np.array([0.0, 0.0, -1.0]), 1.0)


def rays() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5
    return (xs - K[0, 2]) / F, (ys - K[1, 2]) / F


def box_rows(depth: float, top_height: float) -> slice:
    """Image rows of a vertical surface at ``depth`` from the road up to ``top_height``."""
    bottom = K[1, 2] + F * HEIGHT / depth
    top = K[1, 2] + F * (HEIGHT - top_height) / depth
    return slice(int(np.ceil(top)), int(np.floor(bottom)))


def static_flow(rho: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """Flow of static points of inverse depth ``rho`` when the camera advances by ``|t| = 1``."""
    rx, ry = rays()
    scale = 1.0 / (1.0 - rho) - 1.0
    return np.stack([F * rx * scale, F * ry * scale], axis=-1).astype(np.float32)


def scene(
    objects: dict[str, tuple[slice, float]],
) -> tuple[FrameCues, dict[str, tuple[slice, slice]]]:
    """Road below the horizon, a facade above; ``objects``: name -> (columns, flow inverse depth
    as a multiple of its true one); every object is a box at depth 10 standing on the road."""
    _, ry = rays()
    rho = np.where(ry > 0, ry / HEIGHT, WALL_RHO)
    rho = np.maximum(rho, WALL_RHO)  # the facade closes the road near the horizon
    flow_rho = rho.copy()
    regions = {}
    rows = box_rows(10.0, 1.5)
    for name, (cols, factor) in objects.items():
        rho[rows, cols] = 0.1
        flow_rho[rows, cols] = 0.1 * factor
        regions[name] = (rows, cols)
    flow = static_flow(flow_rho)
    frame = VideoFrame(np.zeros((H, W, 3), np.uint8), 0, index=0)
    partner = VideoFrame(np.zeros((H, W, 3), np.uint8), 1, index=1)
    depth = triangulate_depth(flow, None, FORWARD, K)
    cues = FrameCues(
        frame, partner, K, flow, True, np.zeros_like(flow), camera=FORWARD, depth=depth
    )
    return cues, regions


OBJECTS = {
    "parked": (slice(14, 30), 1.0),  # static car: its flow fits its depth
    "with_us": (slice(38, 54), 0.0),  # drives at the camera's speed: no translational flow
    "slower": (slice(74, 90), 0.25),  # drives ahead, slower than the camera: looks 4x as far
    "oncoming": (slice(98, 114), 2.5),  # comes towards the camera: looks 2.5x as near
}


def test_epipolar_residual_alone_misses_objects_driving_along_their_epipolar_lines() -> None:
    cues, regions = scene(OBJECTS)
    score, _ = GeometricMotion(ground_prior=False)(cues)
    for name in ("with_us", "slower", "oncoming"):
        assert score[regions[name]].mean() < 0.05, name


def test_ground_prior_flags_cars_moving_along_the_road_and_not_static_structure() -> None:
    cues, regions = scene(OBJECTS)
    score, ego = GeometricMotion(ground_prior=True)(cues)
    assert ego is None
    assert score.dtype == np.float32 and score.min() >= 0.0 and score.max() <= 1.0
    for name in ("with_us", "oncoming"):
        assert np.median(score[regions[name]]) > 0.3, name
    # the slower car triangulates 4x as far: beyond the road along the rays of its lower third
    # (near its top the ray meets the road only far away; region growing takes it from there)
    rows, cols = regions["slower"]
    lower_third = slice(rows.stop - (rows.stop - rows.start) // 3, rows.stop)
    assert score[lower_third, cols].min() > 0.15
    static = np.ones((H, W), bool)
    for name in ("with_us", "slower", "oncoming"):
        static[regions[name]] = False
    # every static pixel: the road, the facade and the parked car
    assert np.quantile(score[static], 0.99) < 0.05
    assert score[regions["parked"]].max() < 0.05


def test_ground_prior_is_off_without_a_plausible_road() -> None:
    # everything at one depth (a wall facing the camera): no road plane, so no prior
    rho = np.full((H, W), 0.1)
    flow = static_flow(rho)
    flow[40:60, 20:40] = 0.0  # something moving with the camera in front of the wall
    frame = VideoFrame(np.zeros((H, W, 3), np.uint8), 0, index=0)
    cues = FrameCues(
        frame,
        frame,
        K,
        flow,
        True,
        np.zeros_like(flow),
        camera=FORWARD,
        depth=triangulate_depth(flow, None, FORWARD, K),
    )
    with_prior, _ = GeometricMotion(ground_prior=True)(cues)
    without, _ = GeometricMotion(ground_prior=False)(cues)
    np.testing.assert_array_equal(with_prior, without)


def test_ground_prior_only_in_the_parallax_path() -> None:
    cues, _ = scene(OBJECTS)
    # a depth that did not come from the flow (network, oracle): the rigid-flow residual decides
    score, _ = GeometricMotion(depth_from_flow=False, ground_prior=True)(cues)
    plain, _ = GeometricMotion(depth_from_flow=False, ground_prior=False)(cues)
    np.testing.assert_array_equal(score, plain)


def test_fit_ground_plane_recovers_the_road_among_outliers() -> None:
    rx, ry = rays()
    rho = np.where(ry > 0, ry / HEIGHT, np.nan)
    rng = np.random.default_rng(3)
    outliers = rng.random((H, W)) < 0.3
    rho_noisy = np.where(outliers, rho * rng.uniform(0.2, 5.0, (H, W)), rho)
    plane = fit_ground_plane(rx, ry, rho_noisy, np.ones((H, W), bool))
    assert plane is not None
    np.testing.assert_allclose(plane, [0.0, 1.0 / HEIGHT, 0.0], atol=2e-3)
    # a wall facing the camera (constant depth) is no road
    assert fit_ground_plane(rx, ry, np.full((H, W), 0.1), np.ones((H, W), bool)) is None
    # too few usable pixels
    assert fit_ground_plane(rx, ry, rho, np.zeros((H, W), bool)) is None


@pytest.mark.parametrize("margin", [-0.1])
def test_negative_margins_are_rejected(margin: float) -> None:
    with pytest.raises(ValueError, match="margin"):
        GeometricMotion(ground_margin=margin)
    with pytest.raises(ValueError, match="margin"):
        GeometricMotion(contact_margin=margin)
