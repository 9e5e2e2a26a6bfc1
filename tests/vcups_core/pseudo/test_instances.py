"""InstanceLabeler end to end on hand-made FrameCues: region growing per frame, then tracking."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from vcups_core.config import config_from_dict
from vcups_core.configs.pseudo_labels import PseudoLabelConfig
from vcups_core.cues.base import FrameCues
from vcups_core.pseudo.instances import InstanceLabeler, detect_instances
from vcups_core.types import VideoFrame

H, W = 48, 64
SIZE, STEP = 16, 2  # a 16x16 square moving 2 px to the right per frame
Y0, X0 = 16, 10


def square(t: int) -> npt.NDArray[np.bool_]:
    mask = np.zeros((H, W), bool)
    mask[Y0 : Y0 + SIZE, X0 + STEP * t : X0 + STEP * t + SIZE] = True
    return mask


def flow_on(mask: npt.NDArray[np.bool_], dx: float) -> npt.NDArray[np.float32]:
    """Zero flow on the static background, ``(dx, 0)`` on ``mask``."""
    flow = np.zeros((H, W, 2), np.float32)
    flow[mask, 0] = dx
    return flow


def clip_cues(frames: int, *, missing: int | None = None) -> list[FrameCues]:
    """A translating square on a static background: flow, motion 1 on the square, all valid, no
    depth; with ``missing``, that frame's motion score is 0 (a missed detection)."""
    video = [VideoFrame(np.zeros((H, W, 3), np.uint8), 1000 * t, index=t) for t in range(frames)]
    cues = []
    for t in range(frames):
        last = t == frames - 1
        forward = flow_on(square(t), STEP)
        prev = flow_on(square(t), -STEP) if t > 0 else None
        motion = square(t).astype(np.float32) * (0.0 if t == missing else 1.0)
        cues.append(
            FrameCues(
                frame=video[t],
                partner=video[t - 1] if last else video[t + 1],
                intrinsics=np.array([[50.0, 0, W / 2], [0, 50.0, H / 2], [0, 0, 1]]),
                flow=prev if last and prev is not None else forward,
                flow_is_forward=not last,
                flow_back=flow_on(square(t + 1), -STEP),
                flow_prev=prev,
                valid=np.ones((H, W), bool),
                motion=motion,
            )
        )
    return cues


def label(cfg: PseudoLabelConfig, cues: list[FrameCues]) -> list[tuple[int, np.ndarray]]:
    labeler = InstanceLabeler(cfg)
    out = []
    for c in cues:
        out += labeler.push(c)
    return out + labeler.finish()


def config(**changes: Any) -> PseudoLabelConfig:
    """The defaults at H x W, without the appearance refinement (these frames are black: colour
    has nothing to say; ``test_refine.py`` tests the refinement)."""
    growing = {"refine": "none", **changes.pop("region_growing", {})}
    return config_from_dict(
        {"height": H, "width": W, "region_growing": growing, **changes}, PseudoLabelConfig
    )


def test_translating_square_is_one_track() -> None:
    out = label(config(), clip_cues(4))
    assert [i for i, _ in out] == [0, 1, 2, 3]
    for t, labels in out:
        assert labels.dtype == np.uint16 and labels.shape == (H, W)
        np.testing.assert_array_equal(labels, square(t).astype(np.uint16))


def test_detect_instances() -> None:
    cues = clip_cues(2)[0]
    detections = detect_instances(cues, config())
    assert detections.dtype == np.int32
    np.testing.assert_array_equal(detections, square(0).astype(np.int32))
    cues.valid = None  # every finite flow pixel counts as valid then
    np.testing.assert_array_equal(detect_instances(cues, config()), detections)
    cues.motion = None
    with pytest.raises(ValueError, match="motion score"):
        detect_instances(cues, config())


@pytest.mark.parametrize(("window", "filled_id", "after_id"), [(3, 1, 1), (2, 0, 2)])
def test_missed_frame_with_window_3_and_2(window: int, filled_id: int, after_id: int) -> None:
    out = dict(label(config(tracking={"window": window}), clip_cues(4, missing=1)))
    assert sorted(out) == [0, 1, 2, 3]
    assert np.unique(out[0]).tolist() == [0, 1]
    # window 3 fills frame 1 with the mask of frame 0 warped by frame 1's flow: square(1), plus
    # the strip the square uncovered (static background flow 0 samples frame 0's square there)
    if filled_id:
        np.testing.assert_array_equal(out[1], square(0) | square(1))
    else:
        assert out[1].max() == 0
    np.testing.assert_array_equal(out[2], after_id * square(2).astype(np.uint16))
    np.testing.assert_array_equal(out[3], after_id * square(3).astype(np.uint16))


def test_a_static_clip_has_no_instances() -> None:
    cues = clip_cues(3)
    for c in cues:
        assert c.motion is not None
        c.motion[:] = 0.0
    out = label(config(), cues)
    assert [i for i, _ in out] == [0, 1, 2]
    assert all(labels.max() == 0 for _, labels in out)


def test_growing_on_the_residual_flow() -> None:
    # the square's raw flow differs between its halves (a camera panning along with the left
    # half), but after removing the camera's flow both halves move alike
    cues = clip_cues(2)[0]
    mask = square(0)
    _, xs = np.nonzero(mask)
    left = mask & (np.arange(mask.shape[1])[None, :] < xs.min() + (xs.max() - xs.min() + 1) // 2)
    ego = np.zeros_like(cues.flow)
    ego[left] = (3.0, 0.0)
    cues.flow = (cues.flow + ego).astype(np.float32)
    cues.ego_flow = ego
    residual = detect_instances(cues, config())
    raw = detect_instances(cues, config(region_growing={"flow_source": "flow"}))
    assert np.unique(residual).tolist() == [0, 1]
    assert np.unique(raw).tolist() == [0, 1, 2]
