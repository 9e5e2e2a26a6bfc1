"""Config -> cue backends, and the streaming cue pipeline of a clip (oracle cues on a tiny
synthetic clip); plus one end-to-end run of ``run_pseudo_labels`` with the real cues and labeler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from vcups_core.config import config_from_dict
from vcups_core.configs.pseudo_labels import PseudoLabelConfig
from vcups_core.cues.build import (
    CuePipeline,
    build_cue_pipeline,
    build_depth,
    build_flow,
    build_motion,
    cue_device,
    with_oracle_cues,
)
from vcups_core.cues.depth import NoDepth, ParallaxDepth
from vcups_core.cues.flow import DISFlow
from vcups_core.cues.motion import GeometricMotion
from vcups_core.cues.oracle import OracleCues
from vcups_core.data.synthetic import SyntheticWorld
from vcups_core.pseudo.pipeline import run_pseudo_labels
from vcups_core.pseudo.sources import SourceSpec
from vcups_core.pseudo.store import read_manifest
from vcups_core.types import VideoFrame

H, W = 48, 96
ORACLE = {
    "flow": {"method": "oracle"},
    "depth": {"method": "oracle"},
    "motion": {"method": "oracle"},
}


def config(**changes: Any) -> PseudoLabelConfig:
    return config_from_dict({"height": 0, "width": 0, **changes}, PseudoLabelConfig)


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(height=H, width=W, num_frames=4, seed=3)


def frames_of(world: SyntheticWorld, count: int) -> list[VideoFrame]:
    return [VideoFrame(world.render(i).rgb, world.stamp_ns(i), index=i) for i in range(count)]


def test_each_method_builds_its_backend(world: SyntheticWorld) -> None:
    default = config()
    flow = build_flow(default)
    assert isinstance(flow, DISFlow) and flow.name == "dis:medium"
    assert build_flow(config(flow={"dis_preset": "fast"})).name == "dis:fast"
    depth = build_depth(default)
    assert isinstance(depth, ParallaxDepth) and depth.min_parallax_deg == 0.2
    assert isinstance(build_depth(config(depth={"method": "none"})), NoDepth)
    motion = build_motion(config(motion={"residual_floor": 2.5}))
    assert isinstance(motion, GeometricMotion) and motion.residual_floor == 2.5
    # parallax depth (or none) comes from the flow itself, so the residual is epipolar; a depth
    # of its own (network, oracle) gets the rigid-flow residual
    assert motion.depth_from_flow
    for method, from_flow in (("none", True), ("oracle", False), ("network", False)):
        built = build_motion(config(depth={"method": method}))
        assert isinstance(built, GeometricMotion) and built.depth_from_flow is from_flow
    oracle = OracleCues(world)
    assert build_flow(config(**ORACLE), oracle) is oracle.flow
    assert build_depth(config(**ORACLE), oracle) is oracle.depth
    assert build_motion(config(**ORACLE), oracle) is oracle.motion
    pipeline = build_cue_pipeline(config(**ORACLE), oracle=world)  # a world is wrapped
    assert pipeline.backends == {"flow": "oracle", "depth": "oracle", "motion": "oracle"}
    assert not pipeline.needs_camera
    assert build_cue_pipeline(default).backends == {
        "flow": "dis:medium",
        "depth": "parallax",
        "motion": "geometric",
    }
    assert build_cue_pipeline(default).needs_camera


def test_with_oracle_cues_changes_only_the_methods(world: SyntheticWorld) -> None:
    cfg = config_from_dict(
        {"depth": {"min_parallax_deg": 0.3}, "flow": {"dis_preset": "fast"}}, PseudoLabelConfig
    )
    oracle = with_oracle_cues(cfg)
    assert (oracle.flow.method, oracle.depth.method, oracle.motion.method) == ("oracle",) * 3
    assert oracle.depth.min_parallax_deg == 0.3 and oracle.flow.dis_preset == "fast"
    assert oracle.region_growing == cfg.region_growing
    assert cfg.flow.method == "dis"  # the input is not changed
    assert build_cue_pipeline(oracle, oracle=world).backends["flow"] == "oracle"


@pytest.mark.parametrize("cue", ["flow", "depth", "motion"])
def test_oracle_without_a_world_names_the_key(cue: str) -> None:
    cfg = config(**{cue: {"method": "oracle"}})
    with pytest.raises(ValueError, match=rf"^{cue}\.method: oracle needs the synthetic world"):
        build_cue_pipeline(cfg)
    build = {"flow": build_flow, "depth": build_depth, "motion": build_motion}[cue]
    with pytest.raises(ValueError, match=rf"{cue}\.method"):
        build(cfg)


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"flow": {"method": "raft"}}, "flow.weights"),
        ({"depth": {"method": "network"}}, "depth.weights"),
        ({"motion": {"method": "network"}}, "motion.weights"),
    ],
)
def test_a_network_without_weights_names_the_key(changes: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        build_cue_pipeline(config(**changes))


def test_a_missing_weights_file_is_reported_by_the_backend(tmp_path: Path) -> None:
    cfg = config(flow={"method": "raft", "weights": str(tmp_path / "missing.pth")})
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        build_cue_pipeline(cfg)


def test_cue_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert cue_device(config(device="cuda")) == "cuda"
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert cue_device(config(device="cuda")) == "cuda:3"
    assert cue_device(config(device="cpu")) == "cpu"
    assert cue_device(config(device="cuda:1")) == "cuda:1"


@pytest.mark.parametrize("count", [4, 2])
def test_pipeline_run_gives_one_frame_cues_per_frame(world: SyntheticWorld, count: int) -> None:
    pipeline = build_cue_pipeline(config(**ORACLE), oracle=world)
    frames = frames_of(world, count)
    out = list(pipeline.run(iter(frames), world.intrinsics))
    assert [c.frame.index for c in out] == list(range(count))
    assert [c.flow_is_forward for c in out] == [True] * (count - 1) + [False]
    assert [c.flow_prev is None for c in out] == [True] + [False] * (count - 1)
    for t, c in enumerate(out):
        rendered = world.render(t)
        assert c.valid is not None and c.valid.shape == (H, W) and c.valid.any()
        assert c.motion is not None and c.motion.shape == (H, W)
        np.testing.assert_array_equal(c.motion, rendered.motion.astype(np.float32))
        assert c.depth is not None and c.depth.shape == (H, W)
        assert c.camera is None  # oracle depth and motion need no camera motion
        assert c.partner.index == (t + 1 if t < count - 1 else t - 1)
        if t < count - 1:
            np.testing.assert_array_equal(c.flow, rendered.flow_forward)
            np.testing.assert_array_equal(c.flow_back, world.render(t + 1).flow_backward)
        else:  # the last frame's motion flow goes back to the previous frame
            np.testing.assert_array_equal(c.flow, rendered.flow_backward)
            np.testing.assert_array_equal(c.flow_back, world.render(t - 1).flow_forward)
        if t > 0:
            assert c.flow_prev is not None
            np.testing.assert_array_equal(c.flow_prev, rendered.flow_backward)
    assert any(c.motion is not None and c.motion.any() for c in out)


def test_pipeline_with_geometric_motion_estimates_the_camera(world: SyntheticWorld) -> None:
    pipeline = build_cue_pipeline(config(flow={"method": "oracle"}), oracle=world)
    assert pipeline.backends == {"flow": "oracle", "depth": "parallax", "motion": "geometric"}
    out = list(pipeline.run(frames_of(world, 2), world.intrinsics))
    assert len(out) == 2
    for c in out:
        assert c.camera is not None
        assert c.motion is not None and c.motion.dtype == np.float32
        assert c.motion.min() >= 0.0 and c.motion.max() <= 1.0


def test_a_one_frame_clip_raises(world: SyntheticWorld) -> None:
    pipeline = build_cue_pipeline(config(**ORACLE), oracle=world)
    with pytest.raises(ValueError, match="at least 2 frames"):
        list(pipeline.run(frames_of(world, 1), world.intrinsics))
    assert list(pipeline.run([], world.intrinsics)) == []


def test_run_pseudo_labels_with_the_real_cues_and_labeler(tmp_path: Path) -> None:
    world = SyntheticWorld(height=64, width=128, num_frames=4, seed=1)
    folder = tmp_path / "clip"
    folder.mkdir()
    for rendered in world.frames():
        cv2.imwrite(str(folder / f"{rendered.index:05d}.png"), rendered.rgb[:, :, ::-1])
    store = tmp_path / "store"
    code = run_pseudo_labels(SourceSpec.frames([folder]), store, config(), progress=False)
    manifest = read_manifest(store)
    assert code == 0, manifest["clips"]
    assert manifest["cue_backends"] == {
        "depth": "parallax",
        "flow": "dis:medium",
        "motion": "geometric",
    }
    assert manifest["clips"]["clip"]["status"] == "done"
    assert (manifest["height"], manifest["width"]) == (64, 128)
    pngs = sorted((store / "clip" / "instance").glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(4)]
    for path in pngs:
        labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert labels is not None and labels.dtype == np.uint16 and labels.shape == (64, 128)


class _StillFlow:
    name = "still"

    def __call__(self, source: VideoFrame, target: VideoFrame) -> Any:
        return np.zeros((source.height, source.width, 2), np.float32)


class _SidedMotion:
    """Scores the left half along forward flow and the right three quarters along backward flow
    (as a smear would: on opposite sides of the object in the two directions); 0 outside
    ``where`` (as a backend may leave the pixels the pipeline does not read)."""

    name = "sided"

    def __call__(self, cues: Any, where: Any = None) -> tuple[Any, None]:
        score = np.zeros(cues.flow.shape[:2], np.float32)
        w = score.shape[1]
        if cues.flow_is_forward:
            score[:, : w // 2] = 1.0
        else:
            score[:, w // 4 :] = 1.0
        if where is not None:
            score[~where] = 0.0
        return score, None


@pytest.mark.parametrize("bidirectional", [True, False])
def test_bidirectional_motion_keeps_what_moves_in_both_directions(bidirectional: bool) -> None:
    cfg = config(
        motion={"bidirectional": bidirectional, "method": "oracle"}, depth={"method": "none"}
    )
    pipeline = CuePipeline(cfg, _StillFlow(), NoDepth(), _SidedMotion())
    frames = [VideoFrame(np.zeros((4, 8, 3), np.uint8), i, index=i) for i in range(3)]
    first, middle, last = list(pipeline.run(frames, np.eye(3)))
    forward = np.zeros((4, 8), np.float32)
    forward[:, :4] = 1
    backward = np.zeros((4, 8), np.float32)
    backward[:, 2:] = 1
    np.testing.assert_array_equal(first.motion, forward)  # no previous frame: forward only
    np.testing.assert_array_equal(last.motion, backward)  # the last frame has only backward flow
    both = np.minimum(forward, backward)  # columns 2-3
    np.testing.assert_array_equal(middle.motion, both if bidirectional else forward)


class _BrokenFlow:
    """Zero flow, except 2 px to the right in ``cols`` for the pair ``source -> target``: the
    check against the zero flow back fails there (a failed flow, as in a fast pan's blur)."""

    name = "broken"

    def __init__(self, pair: tuple[int, int], cols: slice) -> None:
        self.pair, self.cols = pair, cols

    def __call__(self, source: VideoFrame, target: VideoFrame) -> Any:
        flow = np.zeros((source.height, source.width, 2), np.float32)
        if (source.index, target.index) == self.pair:
            flow[:, self.cols, 0] = 2.0
        return flow


@pytest.mark.parametrize("min_share", [0.0, 0.7])
@pytest.mark.parametrize("failed", ["forward", "backward"])
def test_a_failed_flow_direction_is_left_out_of_the_bidirectional_score(
    failed: str, min_share: float
) -> None:
    # the middle frame's flow to the previous frame (backward) or to the next one (forward) is
    # consistent on half of the frame only, the other direction everywhere (share 0.5 < 0.7)
    cfg = config(
        motion={"bidirectional": True, "method": "oracle", "bidirectional_min_share": min_share},
        depth={"method": "none"},
    )
    flow = (
        _BrokenFlow((1, 0), slice(4, 8))
        if failed == "backward"
        else _BrokenFlow((1, 2), slice(0, 4))
    )
    pipeline = CuePipeline(cfg, flow, NoDepth(), _SidedMotion())
    frames = [VideoFrame(np.zeros((4, 8, 3), np.uint8), i, index=i) for i in range(3)]
    middle = list(pipeline.run(frames, np.eye(3)))[1]
    # forward scores columns 0-3, backward columns 2-7 (_SidedMotion)
    if failed == "backward":
        expected = [0, 0, 1, 1, 0, 0, 0, 0] if min_share == 0 else [1, 1, 1, 1, 0, 0, 0, 0]
    else:
        expected = [0, 0, 1, 1, 0, 0, 0, 0] if min_share == 0 else [0, 0, 1, 1, 1, 1, 1, 1]
    np.testing.assert_array_equal(middle.motion, np.tile(np.array(expected, np.float32), (4, 1)))
