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
from vcups_core.cues.geometry import _endpoint_rays, _planar_rays, usable_mask


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
    # Only the usable pixels are computed (gathered into flat arrays); every pixel's arithmetic
    # is the same, in the same order, as on the whole grid, so the result does not depend on it.
    # They are computed in chunks: small temporaries are reused by the allocator, large ones
    # cost page faults every time.
    idx = np.flatnonzero(ok)
    rays_x, rays_y = _planar_rays(ok.shape, intrinsics)  # cached, read-only
    k_inv = np.linalg.inv(np.asarray(intrinsics, dtype=np.float64))
    min_angle = math.radians(min_parallax_deg)
    flat_depth = depth.reshape(-1)
    flat_flow = flow.reshape(-1, 2)
    flat_x, flat_y = rays_x.reshape(-1), rays_y.reshape(-1)
    for start in range(0, idx.size, _CHUNK):
        sub = idx[start : start + _CHUNK]
        _triangulate_at(
            flat_depth,
            sub,
            flat_x.take(sub),
            flat_y.take(sub),
            flat_flow.take(sub, axis=0),
            rot,
            t,
            k_inv,
            min_angle,
        )
    return depth


_CHUNK = 1 << 15
"""Pixels per chunk of :func:`triangulate_depth` (float64 temporaries of 256 KiB)."""


def _triangulate_at(
    depth: FloatMap,
    idx: npt.NDArray[np.intp],
    rx: npt.NDArray[np.float64],
    ry: npt.NDArray[np.float64],
    pairs: FloatMap,
    rot: npt.NDArray[np.float64],
    t: npt.NDArray[np.float64],
    k_inv: npt.NDArray[np.float64],
    min_angle: float,
) -> None:
    """Triangulate the pixels with flat indices ``idx`` (rays ``rx, ry``, flow ``pairs``) into
    the flat ``depth`` (left untouched where unknown)."""
    u, v = _endpoint_rays(rx, ry, pairs[:, 0], pairs[:, 1], k_inv)
    # In place (fewer large temporaries), each expression in its written order:
    # a = R r = (R00 rx + R01 ry) + R02, ...; c = u t_z - t_x, ...; e = a_xy - (u, v) a_z;
    # rho = (cx ex + cy ey) / (cx cx + cy cy). (a + b == b + a and a * b == b * a exactly.)
    tmp = np.empty_like(rx)
    ax = _affine(rot[0], rx, ry, tmp)
    ay = _affine(rot[1], rx, ry, tmp)
    az = _affine(rot[2], rx, ry, tmp)
    cx = np.multiply(u, t[2])
    cx -= t[0]
    cy = np.multiply(v, t[2])
    cy -= t[1]
    ex = np.subtract(ax, np.multiply(u, az, out=u), out=ax)
    ey = np.subtract(ay, np.multiply(v, az, out=v), out=ay)
    cc = np.multiply(cx, cx, out=u)
    cc += np.multiply(cy, cy, out=tmp)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.multiply(ex, cx, out=ex)
        rho += np.multiply(ey, cy, out=ey)
        rho /= cc
        # in front of both cameras; the angle only where that holds
        front = np.multiply(rho, t[2], out=tmp)
        front += az
        sel = np.flatnonzero((cc > 0) & (rho > 0) & (front > 0))
    rx, ry, rho = rx.take(sel), ry.take(sel), rho.take(sel)
    # angle at the point between the centres 0 and -w, w = R^T t: atan2(rho |r x w|, r.r + rho r.w)
    # with |r x w| = sqrt(((ry w2 - w1)^2 + (w0 - rx w2)^2) + (rx w1 - ry w0)^2)
    # and r.r + rho r.w = ((rx rx + ry ry) + 1) + rho ((rx w0 + ry w1) + w2)
    w = rot.T @ t
    tmp = np.empty_like(rx)
    cross = np.multiply(ry, w[2])
    cross -= w[1]
    np.square(cross, out=cross)
    term = np.multiply(rx, w[2])
    np.subtract(w[0], term, out=term)
    cross += np.square(term, out=term)
    np.multiply(rx, w[1], out=term)
    term -= np.multiply(ry, w[0], out=tmp)
    cross += np.square(term, out=term)
    np.sqrt(cross, out=cross)
    dot = np.multiply(rx, rx)
    dot += np.multiply(ry, ry, out=tmp)
    dot += 1.0
    along = np.multiply(rx, w[0], out=term)
    along += np.multiply(ry, w[1], out=tmp)
    along += w[2]
    along *= rho
    dot += along
    cross *= rho
    keep = _angle_at_least(cross, dot, min_angle)
    with np.errstate(divide="ignore"):
        depth[idx.take(sel)[keep]] = (1.0 / rho[keep]).astype(np.float32)


_TAN_MARGIN = 1e-6
"""Relative margin of the arctan-free test in :func:`_angle_at_least`: far above the rounding
error of ``x tan(theta)`` and of ``arctan2`` (a few units in the last place)."""


def _angle_at_least(
    y: npt.NDArray[np.float64], x: npt.NDArray[np.float64], theta: float
) -> npt.NDArray[np.bool_]:
    """``np.arctan2(y, x) >= theta`` elementwise, exactly, calling ``arctan2`` only near the bound.

    For ``0 < theta < pi / 2``: ``y > 0`` and ``y > x tan(theta) (1 + m)`` is an angle clearly
    above ``theta`` (``x <= 0``: at least ``pi / 2``), ``0 <= y < x tan(theta) (1 - m)`` with
    ``x > 0`` one clearly below it; every other element (within the margin ``m``, zeros, NaN, inf)
    is decided by ``arctan2`` itself, so the result is that of the plain comparison.
    """
    if not 0.0 < theta < 0.5 * math.pi - 1e-3:
        with np.errstate(invalid="ignore"):
            plain: npt.NDArray[np.bool_] = np.arctan2(y, x) >= theta
        return plain
    tan_theta = math.tan(theta)
    with np.errstate(invalid="ignore", over="ignore"):
        bound = x * (tan_theta * (1.0 + _TAN_MARGIN))
        above = (y > bound) & (y > 0)
        np.multiply(x, tan_theta * (1.0 - _TAN_MARGIN), out=bound)
        below = (y < bound) & (y >= 0) & (x > 0)
        near = np.flatnonzero(~(above | below))
        above[near] = np.arctan2(y.take(near), x.take(near)) >= theta
    return above


def _affine(
    row: npt.NDArray[np.float64],
    rx: npt.NDArray[np.float64],
    ry: npt.NDArray[np.float64],
    tmp: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """``(row[0] rx + row[1] ry) + row[2]`` (a fresh array; ``tmp`` is scratch)."""
    out: npt.NDArray[np.float64] = np.multiply(rx, row[0])
    out += np.multiply(ry, row[1], out=tmp)
    out += row[2]
    return out
