"""The cue contracts: what every flow, depth and motion backend takes and returns.

Conventions (all cue backends, all pseudo-label code):

* Flow is ``float32[H, W, 2]`` in pixels at the processing size, ``flow[y, x] = (dx, dy)``: the
  pixel centred at ``(x + 0.5, y + 0.5)`` moves to ``(x + 0.5 + dx, y + 0.5 + dy)`` in the other
  frame. It may be NaN where undefined (oracle flow behind the camera); consumers treat NaN as
  invalid.
* Depth is ``float32[H, W]``, positive, NaN where unknown. Its scale is arbitrary but shared
  by the pixels of one frame (parallax depth is relative; only depth *ratios* are used).
* A motion score is ``float32[H, W]`` in ``[0, 1]``: how likely the pixel moves independently of
  the camera.
* Intrinsics are ``float64[3, 3]`` at the processing size.

Backends are small callables (:class:`FlowEstimator`, :class:`DepthEstimator`,
:class:`MotionEstimator`), so a user plugs in the network they have; :mod:`vcups_core.cues.build`
turns ``config/pseudo_labels.yaml`` into them in one place.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from vcups_core.types import VideoFrame

FloatMap = npt.NDArray[np.float32]


@dataclasses.dataclass(frozen=True)
class CameraMotion:
    """The camera's own motion between a frame and its flow partner, as estimated from the flow.

    Attributes:
        model: which model explains the static scene: ``"homography"`` (rotation or a distant
            scene; ``homography`` set) or ``"essential"`` (translation through a 3-D scene;
            ``rotation`` and ``translation`` set).
        homography: ``float64[3, 3]`` mapping pixels of this frame to the partner frame, or None.
        rotation: ``float64[3, 3]`` R of ``X_partner = R @ X + t`` (camera coordinates), or None.
        translation: ``float64[3]`` unit-norm t of the same, or None.
        inlier_ratio: fraction of the sampled valid correspondences that the model explains.
    """

    model: Literal["homography", "essential"]
    homography: npt.NDArray[np.float64] | None
    rotation: npt.NDArray[np.float64] | None
    translation: npt.NDArray[np.float64] | None
    inlier_ratio: float


@dataclasses.dataclass
class FrameCues:
    """Everything the instance pseudo-labels need of one frame, filled in cue by cue.

    ``flow`` is the frame's *motion flow*: to the next frame, or for the last frame of a clip to
    the previous one (``flow_is_forward`` False), so every frame has motion evidence.

    Attributes:
        frame: the frame at the processing size (``image`` ``uint8[H, W, 3]``; ``index`` is its
            position in the clip).
        partner: the frame ``flow`` goes to (next frame, or previous for the last frame).
        intrinsics: ``float64[3, 3]`` K at the processing size.
        flow: ``float32[H, W, 2]`` motion flow (see above).
        flow_is_forward: True if ``flow`` goes to frame ``index + 1``.
        flow_back: ``float32[H, W, 2]`` the partner frame's flow back to this frame, on the
            partner's grid (for the forward-backward consistency check).
        flow_prev: ``float32[H, W, 2]`` flow from this frame to the previous one (None at the
            first frame): what the tracker warps the previous masks with.
        valid: ``bool[H, W]`` pixels whose flow passed the forward-backward check and lie
            inside the border mask (with ``validity.exits_from_back``, also those whose flow
            leaves the image while their flow to the previous frame passes the check).
        camera: the estimated camera motion along ``flow`` (None before it is estimated, or if
            the estimate failed).
        depth: ``float32[H, W]`` (NaN = unknown), or None with ``depth.method: none``.
        motion: ``float32[H, W]`` motion score in ``[0, 1]``.
        ego_flow: ``float32[H, W, 2]`` the part of ``flow`` the camera motion explains (None if
            the motion backend does not model the camera).
    """

    frame: VideoFrame
    partner: VideoFrame
    intrinsics: npt.NDArray[np.float64]
    flow: FloatMap
    flow_is_forward: bool
    flow_back: FloatMap
    flow_prev: FloatMap | None = None
    valid: npt.NDArray[np.bool_] | None = None
    camera: CameraMotion | None = None
    depth: FloatMap | None = None
    motion: FloatMap | None = None
    ego_flow: FloatMap | None = None


class FlowEstimator(Protocol):
    """Dense optical flow between two frames of the same size."""

    name: str
    """Backend name recorded in the store's manifest (e.g. ``"dis:medium"``)."""

    def __call__(self, source: VideoFrame, target: VideoFrame) -> FloatMap:
        """Flow from ``source`` to ``target``: ``float32[H, W, 2]`` on ``source``'s grid."""
        ...


class DepthEstimator(Protocol):
    """Per-frame depth; may use the frame's flow and camera motion (parallax) or only the image."""

    name: str

    def __call__(self, cues: FrameCues) -> FloatMap | None:
        """``float32[H, W]`` depth (NaN unknown), or None when this backend gives no depth."""
        ...


class MotionEstimator(Protocol):
    """Per-pixel independent-motion score."""

    name: str

    def __call__(
        self, cues: FrameCues, where: npt.NDArray[np.bool_] | None = None
    ) -> tuple[FloatMap, FloatMap | None]:
        """``(score float32[H, W] in [0, 1], ego_flow float32[H, W, 2] or None)``.

        ``where``: ``bool[H, W]``, the pixels whose score the caller reads (None: all); a backend
        may leave the others 0 to save time, or ignore ``where``.
        """
        ...
