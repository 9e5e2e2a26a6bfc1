"""The synthetic world checked against itself: flow, depth, poses and track ids agree."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from vcups_core.data import cityscapes_classes as cs
from vcups_core.data.synthetic import SyntheticFrame, SyntheticWorld

H, W = 96, 192


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(height=H, width=W, num_frames=30, seed=3, num_moving=6, num_static=4)


@pytest.fixture(scope="module")
def frames(world: SyntheticWorld) -> list[SyntheticFrame]:
    return list(world.frames())


def warp(image: np.ndarray, flow: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Sample ``image`` at pixel + flow (backward warping)."""
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    return cv2.remap(
        image,
        xs + flow[..., 0],
        ys + flow[..., 1],
        interpolation,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def non_occluded(a: SyntheticFrame, b: SyntheticFrame) -> np.ndarray:
    """Pixels of ``a`` whose forward flow lands inside ``b`` and comes back (fw-bw check)."""
    fw = np.nan_to_num(a.flow_forward, nan=1e6)
    back = warp(np.nan_to_num(b.flow_backward, nan=1e6), fw, cv2.INTER_NEAREST)
    ys, xs = np.mgrid[0:H, 0:W]
    inside = (
        (xs + fw[..., 0] >= 0)
        & (xs + fw[..., 0] <= W - 1)
        & (ys + fw[..., 1] >= 0)
        & (ys + fw[..., 1] <= H - 1)
    )
    return inside & (np.linalg.norm(fw + back, axis=-1) < 0.5)


def test_frames_have_the_documented_types(
    frames: list[SyntheticFrame], world: SyntheticWorld
) -> None:
    f = frames[0]
    assert f.rgb.shape == (H, W, 3) and f.rgb.dtype == np.uint8
    assert f.semantic.dtype == np.uint8 and f.instance.dtype == np.int32
    assert f.depth.dtype == np.float32 and f.flow_forward.shape == (H, W, 2)
    assert f.motion.dtype == np.bool_ and f.pose.shape == (4, 4)
    assert [fr.stamp_ns for fr in frames[:2]] == [world.start_ns, world.start_ns + 100_000_000]
    # sky is the only infinite depth, and things carry ids while stuff does not
    assert np.array_equal(np.isinf(f.depth), f.semantic == cs.SKY)
    things = np.isin(f.semantic, list(cs.THING_IDS))
    assert np.array_equal(things, f.instance > 0)


def test_scene_has_every_stuff_class_and_both_thing_kinds(frames: list[SyntheticFrame]) -> None:
    seen = set(np.unique(np.concatenate([f.semantic.ravel() for f in frames])).tolist())
    expected = {
        cs.ROAD,
        cs.SIDEWALK,
        cs.BUILDING,
        cs.POLE,
        cs.TRAFFIC_SIGN,
        cs.VEGETATION,
        cs.TERRAIN,
        cs.SKY,
        cs.PERSON,
        cs.CAR,
    }
    assert expected <= seen


def test_moving_and_static_objects_enter_and_leave(
    world: SyntheticWorld, frames: list[SyntheticFrame]
) -> None:
    assert any(o.moving for o in world.objects) and any(not o.moving for o in world.objects)
    visible = [set(np.unique(f.instance).tolist()) - {0} for f in frames]
    assert visible[0] != visible[-1]
    assert any(i not in visible[0] for v in visible for i in v) or any(
        i not in visible[-1] for i in visible[0]
    ), "no object enters or leaves the view"


def test_rendering_is_deterministic_and_seeded() -> None:
    a = SyntheticWorld(height=32, width=64, seed=7).render(4)
    b = SyntheticWorld(height=32, width=64, seed=7).render(4)
    c = SyntheticWorld(height=32, width=64, seed=8).render(4)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.instance, b.instance)
    assert not np.array_equal(a.rgb, c.rgb)


def test_static_flow_agrees_with_depth_and_poses(frames: list[SyntheticFrame]) -> None:
    for a, b in zip(frames[:-1:7], frames[1::7], strict=True):
        static = ~a.motion & np.isfinite(a.depth)
        k = a.intrinsics
        ys, xs = np.mgrid[0:H, 0:W] + 0.5
        cam = np.stack([(xs - k[0, 2]) / k[0, 0], (ys - k[1, 2]) / k[1, 1], np.ones_like(xs)], -1)
        depth = np.where(static, a.depth, 1.0)[..., None]
        world_pts = (cam * depth) @ a.pose[:3, :3].T + a.pose[:3, 3]
        other = (world_pts - b.pose[:3, 3]) @ b.pose[:3, :3]
        u = k[0, 0] * other[..., 0] / other[..., 2] + k[0, 2]
        v = k[1, 1] * other[..., 1] / other[..., 2] + k[1, 2]
        expected = np.stack([u - xs, v - ys], -1)
        err = np.abs(expected - a.flow_forward)[static]
        assert np.nanmax(err) < 2e-3, f"frame {a.index}: static flow off by {np.nanmax(err)} px"
        # on moving objects the ego-motion alone does not explain the flow
        if a.motion.any():
            moving_err = np.linalg.norm(expected - a.flow_forward, axis=-1)[a.motion]
            assert np.median(moving_err) > 0.05


def test_flow_warps_the_next_frame_onto_this_one(frames: list[SyntheticFrame]) -> None:
    for a, b in zip(frames[:-1:5], frames[1::5], strict=True):
        valid = non_occluded(a, b)
        assert valid.mean() > 0.6
        warped = warp(b.rgb, np.nan_to_num(a.flow_forward))
        err = np.abs(warped.astype(int) - a.rgb.astype(int)).mean(axis=-1)[valid]
        assert err.mean() < 8.0, f"frame {a.index}: mean photometric error {err.mean():.1f}"
        assert np.percentile(err, 90) < 20.0


def test_backward_flow_inverts_forward_flow(frames: list[SyntheticFrame]) -> None:
    a, b = frames[10], frames[11]
    valid = non_occluded(a, b)
    fw = a.flow_forward
    back = warp(np.nan_to_num(b.flow_backward), np.nan_to_num(fw), cv2.INTER_LINEAR)
    assert np.median(np.linalg.norm(fw + back, axis=-1)[valid]) < 0.05


def test_track_ids_persist_along_the_flow(frames: list[SyntheticFrame]) -> None:
    checked = 0
    for a, b in itertools.pairwise(frames):
        valid = non_occluded(a, b)
        landed = warp(
            b.instance.astype(np.float32), np.nan_to_num(a.flow_forward), cv2.INTER_NEAREST
        )
        for tid in set(np.unique(a.instance).tolist()) - {0}:
            # interior pixels: an edge pixel may land within half a pixel of the object's border
            inner = cv2.erode((a.instance == tid).astype(np.uint8), np.ones((3, 3), np.uint8))
            m = inner.astype(bool) & valid
            if m.sum() < 20:
                continue
            assert (landed[m] == tid).mean() > 0.9, (
                f"track {tid} lost between {a.index} and {b.index}"
            )
            checked += 1
    assert checked > 20


def test_the_world_descriptor_evaluates_exactly_the_classes_it_renders(
    frames: list[SyntheticFrame],
) -> None:
    from vcups_core.data.datasets import SYNTHETIC_WORLD, get_descriptor

    assert get_descriptor("synthetic-world") is SYNTHETIC_WORLD
    drawn = set().union(*(np.unique(f.semantic).tolist() for f in frames)) - {255}
    assert drawn <= SYNTHETIC_WORLD.evaluated_ids  # nothing the world draws is voided
    # and every evaluated class is one the world can draw (this clip shows most of them)
    assert len(drawn) >= 8
    assert SYNTHETIC_WORLD.evaluated_ids.isdisjoint({cs.WALL, cs.FENCE, cs.RIDER, cs.TRUCK})
    assert SYNTHETIC_WORLD.thing_ids == {cs.PERSON, cs.CAR}
