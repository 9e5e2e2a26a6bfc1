"""Oracle cues: the synthetic world's ground truth through the cue contracts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from vcups_core.cues.base import FrameCues
from vcups_core.cues.flow import warp
from vcups_core.cues.oracle import OracleCues
from vcups_core.cues.validity import forward_backward_valid
from vcups_core.data.synthetic import SyntheticFrame, SyntheticWorld
from vcups_core.types import VideoFrame

H, W = 48, 64


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(height=H, width=W, num_frames=4, seed=7)


def _video(rendered: SyntheticFrame, size: tuple[int, int] | None = None) -> VideoFrame:
    image = rendered.rgb
    if size is not None:
        image = np.zeros((*size, 3), np.uint8)  # the oracle reads only the index
    return VideoFrame(image, stamp_ns=rendered.stamp_ns, index=rendered.index)


def _cues(frame: VideoFrame, partner: VideoFrame) -> FrameCues:
    zeros = np.zeros((frame.height, frame.width, 2), np.float32)
    return FrameCues(frame, partner, np.eye(3), zeros, True, zeros)


def test_oracle_flow_is_the_world_flow(world: SyntheticWorld) -> None:
    oracle = OracleCues(world)
    f0, f1 = world.render(0), world.render(1)
    v0, v1 = _video(f0), _video(f1)
    np.testing.assert_array_equal(oracle.flow(v0, v1), f0.flow_forward)
    np.testing.assert_array_equal(oracle.flow(v1, v0), f1.flow_backward)
    assert oracle.flow(v0, v1).dtype == np.float32
    assert oracle.name == oracle.flow.name == oracle.depth.name == oracle.motion.name == "oracle"


def test_oracle_flow_only_between_neighbours(world: SyntheticWorld) -> None:
    oracle = OracleCues(world)
    v0, v2 = _video(world.render(0)), _video(world.render(2))
    with pytest.raises(ValueError, match="neighbouring frames, got 0 -> 2"):
        oracle.flow(v0, v2)
    with pytest.raises(ValueError, match="neighbouring"):
        oracle.flow(v0, v0)
    unknown = VideoFrame(v0.image, 0)  # index -1
    with pytest.raises(ValueError, match="frame index -1"):
        oracle.flow(unknown, v0)


def test_oracle_depth_and_motion(world: SyntheticWorld) -> None:
    oracle = OracleCues(world)
    f1 = world.render(1)
    cues = _cues(_video(f1), _video(world.render(2)))
    depth = oracle.depth(cues)
    assert depth.dtype == np.float32 and depth.shape == (H, W)
    sky = np.isinf(f1.depth)
    assert sky.any()
    assert np.isnan(depth[sky]).all()
    np.testing.assert_array_equal(depth[~sky], f1.depth[~sky])
    score, ego = oracle.motion(cues)
    assert ego is None
    assert score.dtype == np.float32
    assert f1.motion.any()
    np.testing.assert_array_equal(score, f1.motion.astype(np.float32))


def test_fb_consistency_of_oracle_flow_on_unoccluded_pixels(world: SyntheticWorld) -> None:
    f0, f1 = world.render(0), world.render(1)
    oracle = OracleCues(world)
    flow = oracle.flow(_video(f0), _video(f1))
    back = oracle.flow(_video(f1), _video(f0))
    valid = forward_backward_valid(flow, back, fb_abs=1.0, fb_rel=0.05)
    # Unoccluded: the target pixel in frame 1 shows the same thing (class and track), and so do
    # all of its 3x3 neighbours (the bilinear sample of the flow back stays on one surface).
    key = f1.semantic.astype(np.int64) * 1000 + f1.instance
    uniform = (ndimage.maximum_filter(key, 3) == key) & (ndimage.minimum_filter(key, 3) == key)
    same = f0.semantic.astype(np.int64) * 1000 + f0.instance
    landing = warp(key, flow, nearest=True, fill=-1)
    landing_uniform = warp(uniform.astype(np.uint8), flow, nearest=True)
    clean = (landing == same) & (landing_uniform == 1) & (f0.semantic != 255)
    static = clean & ~f0.motion
    moving = clean & f0.motion
    assert static.sum() > 0.5 * H * W
    assert valid[static].mean() > 0.99
    assert moving.sum() > 50  # seed 7: about 300 moving pixels in frame 0
    assert valid[moving].mean() > 0.99
    # pixels whose flow leaves the image are invalid
    ys, xs = np.mgrid[0:H, 0:W]
    tx, ty = xs + flow[..., 0], ys + flow[..., 1]
    outside = (tx < -0.5) | (tx > W - 0.5) | (ty < -0.5) | (ty > H - 0.5)
    assert outside.any()
    assert not valid[outside].any()


def test_resized_frames_get_resized_ground_truth(world: SyntheticWorld) -> None:
    oracle = OracleCues(world)
    f0, f1 = world.render(0), world.render(1)
    half = (H // 2, W // 2)
    v0, v1 = _video(f0, half), _video(f1, half)
    flow = oracle.flow(v0, v1)
    assert flow.shape == (*half, 2) and flow.dtype == np.float32
    # an exact 2x bilinear downscale averages 2x2 blocks; the flow is then halved
    blocks = f0.flow_forward.reshape(H // 2, 2, W // 2, 2, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(flow, 0.5 * blocks, atol=1e-4)
    cues = _cues(v0, v1)
    depth = oracle.depth(cues)
    gt = np.where(np.isinf(f0.depth), np.nan, f0.depth)[::2, ::2]  # nearest: top-left pixel
    np.testing.assert_array_equal(depth, gt)
    score, _ = oracle.motion(cues)
    np.testing.assert_array_equal(score, f0.motion[::2, ::2].astype(np.float32))


def test_render_cache(world: SyntheticWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = world.render

    def counting(index: int) -> SyntheticFrame:
        calls.append(index)
        return original(index)

    monkeypatch.setattr(world, "render", counting)
    oracle = OracleCues(world, cache_size=2)
    v = [VideoFrame(np.zeros((H, W, 3), np.uint8), 0, index=i) for i in range(4)]
    oracle.flow(v[0], v[1])
    oracle.depth(_cues(v[0], v[1]))
    oracle.motion(_cues(v[0], v[1]))
    assert calls == [0]
    oracle.flow(v[1], v[2])
    oracle.flow(v[0], v[1])  # still cached (2 frames kept)
    assert calls == [0, 1]
    oracle.flow(v[2], v[3])  # evicts 1, the least recently used
    oracle.flow(v[1], v[2])
    assert calls == [0, 1, 2, 1]
    with pytest.raises(ValueError, match="cache_size"):
        OracleCues(world, cache_size=0)
