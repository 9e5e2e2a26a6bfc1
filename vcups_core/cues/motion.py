"""Independent-motion score without weights: the flow the camera's own motion does not explain.

:class:`GeometricMotion` (the weight-free default) scores every pixel with

    score = clip(|R| / max(|F|, epsilon), 0, 1)

where ``F`` is the frame's flow and ``R`` the residual after the camera motion
(``method.md`` §2.3 step 2, the "equivalent alternative" to Dynamo-Depth's motion mask):

* **homography** camera (rotation, distant scene): ``R = F - F_H``, the 2-D residual;
* **essential** camera with a depth that did not come from this flow (a depth network, the
  oracle): ``R = F - F_rigid(D, R, s t)``, with the translation scale ``s`` fitted robustly
  (:func:`~vcups_core.cues.geometry.fit_translation_scale`);
* **essential** camera with parallax depth or none: ``|R|`` is the distance of the flow endpoint
  from its epipolar line (parallax depth is triangulated from the same flow, so its rigid flow
  would explain every pixel). This is blind to motion *along* the epipolar line (a car ahead
  driving in the camera's direction); pixels whose flow runs towards the epipole against the
  camera's translation (triangulated behind the camera) are scored as moving.

``epsilon`` (``motion.residual_floor``, px) keeps the score of nearly static pixels, where flow
noise is of the order of the flow itself, from exploding. Invalid pixels score 0.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from vcups_core.cues.base import FloatMap, FrameCues
from vcups_core.cues.geometry import (
    epipolar_distance,
    fit_translation_scale,
    normalized_correspondences,
    rigid_flow,
)


class GeometricMotion:
    """Motion score from the residual flow after the camera motion (a ``MotionEstimator``).

    Args:
        residual_floor: ``epsilon`` of the score (px).
        depth_from_flow: True when ``cues.depth`` is parallax depth triangulated from the same
            flow (then the epipolar distance is the residual; see the module docstring).
    """

    name = "geometric"

    def __init__(self, residual_floor: float = 1.0, *, depth_from_flow: bool = True) -> None:
        if not residual_floor > 0:
            raise ValueError(f"residual_floor must be > 0, got {residual_floor}")
        self.residual_floor = float(residual_floor)
        self.depth_from_flow = depth_from_flow

    def __call__(self, cues: FrameCues) -> tuple[FloatMap, FloatMap | None]:
        """``(score float32[H, W] in [0, 1], ego_flow float32[H, W, 2] or None)``."""
        flow = cues.flow
        h, w = flow.shape[:2]
        valid: npt.NDArray[np.bool_] = np.asarray(np.isfinite(flow).all(axis=2))
        if cues.valid is not None:
            valid &= cues.valid
        camera = cues.camera
        if camera is None:
            return np.zeros((h, w), np.float32), None
        ego: FloatMap | None = None
        if camera.model == "homography":
            ego = rigid_flow(camera, cues.intrinsics, (h, w))
            residual = np.linalg.norm(flow - ego, axis=2)
        elif cues.depth is not None and not self.depth_from_flow:
            scale = fit_translation_scale(flow, valid, camera, cues.intrinsics, cues.depth)
            if np.isfinite(scale):
                ego = rigid_flow(
                    camera, cues.intrinsics, (h, w), cues.depth, translation_scale=scale
                )
                residual = np.linalg.norm(flow - ego, axis=2)
                unknown = ~np.isfinite(residual)
                residual[unknown] = epipolar_distance(flow, camera, cues.intrinsics)[unknown]
            else:
                residual = epipolar_distance(flow, camera, cues.intrinsics).astype(np.float64)
        else:
            residual = epipolar_distance(flow, camera, cues.intrinsics).astype(np.float64)
            residual = np.where(_towards_epipole(cues), np.inf, residual)
        mag = np.linalg.norm(flow, axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            score = residual / np.maximum(mag, self.residual_floor)
        score = np.clip(np.nan_to_num(score, nan=0.0, posinf=1.0), 0.0, 1.0)
        score[~valid] = 0.0
        return score.astype(np.float32), ego


def _towards_epipole(cues: FrameCues) -> npt.NDArray[np.bool_]:
    """Pixels whose flow, after removing the rotation, runs against the camera's translation.

    A static point moves *away* from the epipole when the camera advances (and towards it when it
    retreats): with the rotation removed, the flow of ``r`` is ``rho (t_xy - t_z r_xy)`` per unit
    of normalised coordinates, so its component along ``t_xy - t_z r_xy`` must be positive.
    A clearly negative component (more than 1 px) means a triangulated depth behind the camera:
    the point moves by itself.
    """
    camera = cues.camera
    assert camera is not None
    assert camera.rotation is not None
    assert camera.translation is not None
    rx, ry, u, v = normalized_correspondences(cues.flow, cues.intrinsics)
    rot, t = camera.rotation, camera.translation
    a = rot[0, 0] * rx + rot[0, 1] * ry + rot[0, 2]
    b = rot[1, 0] * rx + rot[1, 1] * ry + rot[1, 2]
    c = rot[2, 0] * rx + rot[2, 1] * ry + rot[2, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        ax, ay = a / c, b / c  # where r lands after the rotation alone
        dx, dy = u - ax, v - ay  # the translational part of the flow (normalised units)
        ex, ey = t[0] - t[2] * ax, t[1] - t[2] * ay
        norm = np.hypot(ex, ey)
        along = (dx * ex + dy * ey) / np.where(norm > 0, norm, np.nan)
    focal = float(cues.intrinsics[0, 0])
    out: npt.NDArray[np.bool_] = np.nan_to_num(along * focal, nan=0.0) < -1.0
    return out
