"""Depth without a network: triangulated motion parallax, or no depth at all.

:class:`ParallaxDepth` triangulates every pixel's flow correspondence with the camera motion that
was estimated along the same flow (:func:`vcups_core.cues.geometry.estimate_camera_motion`). The
translation has unit length, so the depth is relative: one unknown scale per frame, the length of
the camera's translation between the frame and its flow partner, and it is consistent with
``rigid_flow(..., translation_scale=1)``.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from vcups_core.cues.base import CameraMotion, FloatMap, FrameCues
from vcups_core.cues.geometry import normalized_correspondences, usable_mask


class ParallaxDepth:
    """Relative z-depth of every pixel from its flow and the camera's translation (no weights).

    Triangulation, vectorised over all pixels. The pixel grid is exact and the flow endpoint
    carries the noise, so the point is kept on the pixel's own ray ``r = K^-1 (p, 1)``
    (``r_z = 1``, so the ray parameter is the z-depth ``d``) and only its inverse depth
    ``rho = 1 / d`` is solved for. With ``a = R r`` and the endpoint's ray
    ``(u, v, 1) = K^-1 (p + flow, 1)``, the point ``X' = d a + t`` of the partner camera projects
    to ``(u, v)`` when::

        rho (u t_z - t_x) = a_x - u a_z        rho (v t_z - t_y) = a_y - v a_z      (rho c = e)

    (the linear triangulation of one unknown), so ``rho = (c . e) / (c . c)``. Working in inverse
    depth keeps distant points finite (``rho -> 0``). The triangulation angle is the angle at
    the point between the two camera centres, ``0`` and ``-R^T t``::

        angle = atan2(rho |r x R^T t|, |r|^2 + rho r . R^T t)

    Depth is NaN where it cannot be trusted: no camera motion or a homography (no translation,
    no parallax); an invalid or NaN flow; ``|c| = 0`` (the epipole); ``rho <= 0`` (behind this
    camera or at infinity); ``d a_z + t_z <= 0`` (behind the partner); or an angle below
    ``min_parallax_deg`` (near the focus of expansion, distant structure). Independently moving
    pixels get a depth, but not their true one (often far off or behind a camera, hence NaN).

    A backward flow (``cues.flow_is_forward`` False: the last frame of a clip, flow to the
    previous frame) needs nothing special: the camera motion was estimated along the same flow,
    so ``R, t`` map this frame's camera to the partner's whichever way time runs.

    Args:
        min_parallax_deg: smallest triangulation angle (degrees) of a valid depth (>= 0).
    """

    name: str = "parallax"

    def __init__(self, min_parallax_deg: float = 0.2) -> None:
        if not min_parallax_deg >= 0:
            raise ValueError(f"min_parallax_deg must be >= 0, got {min_parallax_deg}")
        self.min_parallax_deg = float(min_parallax_deg)

    def __call__(self, cues: FrameCues) -> FloatMap:
        """Relative depth of ``cues.frame`` from ``cues.flow``, ``cues.valid`` and ``cues.camera``.

        Args:
            cues: the frame's cues with ``flow`` (``float32[H, W, 2]``), ``intrinsics``,
                ``valid`` (``bool[H, W]`` or None for every finite flow pixel) and ``camera``.

        Returns:
            ``float32[H, W]`` z-depth in units of the camera's translation to the partner frame,
            NaN where unknown (all NaN without an essential-model camera motion).
        """
        return triangulate_depth(
            cues.flow,
            cues.valid,
            cues.camera,
            cues.intrinsics,
            min_parallax_deg=self.min_parallax_deg,
        )


class NoDepth:
    """The ``depth.method: none`` backend: no depth cue (region growing uses flow alone)."""

    name: str = "none"

    def __call__(self, cues: FrameCues) -> FloatMap | None:
        """Always None."""
        return None


def triangulate_depth(
    flow: FloatMap,
    valid: npt.NDArray[np.bool_] | None,
    camera: CameraMotion | None,
    intrinsics: npt.NDArray[np.float64],
    *,
    min_parallax_deg: float = 0.2,
) -> FloatMap:
    """Per-pixel triangulation of ``flow`` with ``camera`` (the math is in :class:`ParallaxDepth`).

    Args:
        flow: ``float32[H, W, 2]`` flow to the partner frame (NaN = undefined).
        valid: ``bool[H, W]`` usable pixels, or None for every finite flow pixel.
        camera: the camera motion estimated along ``flow``; a homography or None gives all NaN.
        intrinsics: ``float64[3, 3]`` K.
        min_parallax_deg: smallest triangulation angle (degrees) of a valid depth.

    Returns:
        ``float32[H, W]`` z-depth in this frame's camera, in units of ``|t|``; NaN where unknown.
    """
    ok = usable_mask(flow, valid)
    depth = np.full(ok.shape, np.nan, np.float32)
    if (
        camera is None
        or camera.model != "essential"
        or camera.rotation is None
        or camera.translation is None
        or not ok.any()
    ):
        return depth
    rot, t = camera.rotation, camera.translation
    rx, ry, u, v = normalized_correspondences(flow, intrinsics)  # float64[H, W] each
    ax = rot[0, 0] * rx + rot[0, 1] * ry + rot[0, 2]  # a = R r, r = (rx, ry, 1)
    ay = rot[1, 0] * rx + rot[1, 1] * ry + rot[1, 2]
    az = rot[2, 0] * rx + rot[2, 1] * ry + rot[2, 2]
    cx, cy = u * t[2] - t[0], v * t[2] - t[1]
    ex, ey = ax - u * az, ay - v * az
    cc = cx * cx + cy * cy
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = (cx * ex + cy * ey) / cc
    # angle at the point between the centres 0 and -w, w = R^T t: atan2(rho |r x w|, r.r + rho r.w)
    w = rot.T @ t
    cross = np.sqrt(
        (ry * w[2] - w[1]) ** 2 + (w[0] - rx * w[2]) ** 2 + (rx * w[1] - ry * w[0]) ** 2
    )
    angle = np.arctan2(rho * cross, rx * rx + ry * ry + 1.0 + rho * (rx * w[0] + ry * w[1] + w[2]))
    with np.errstate(invalid="ignore"):
        keep = (
            ok
            & (cc > 0)
            & (rho > 0)
            & (az + rho * t[2] > 0)
            & (angle >= math.radians(min_parallax_deg))
        )
    with np.errstate(divide="ignore"):
        depth[keep] = (1.0 / rho[keep]).astype(np.float32)
    return depth
