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
from vcups_core.cues.geometry import _endpoint_rays, _planar_rays, _rays_x_row, usable_mask


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
    # Every pixel's arithmetic is the same, in the same order, as on the whole grid, so the
    # result does not depend on how the pixels are grouped. The grid is computed in blocks of
    # whole rows (small temporaries are reused by the allocator, large ones cost page faults
    # every time), the unusable pixels of a block too (few) and then left out; the terms that
    # depend on the pixel's column or row alone (``R_i0 r_x``, ``R_i1 r_y``) once per column or
    # row. The angle test runs on the pixels that pass the others.
    h, w = ok.shape
    rays_x, rays_y = _planar_rays((h, w), intrinsics)  # cached, read-only
    rx_row = _rays_x_row((h, w), intrinsics)  # r_x is the same in every row without skew
    rx_all = rays_x if rx_row is None else rx_row  # [H, W] or [1, W]
    ry_col = rays_y[:, :1]  # r_y depends on the row alone: [H, 1]
    k_inv = np.linalg.inv(np.asarray(intrinsics, dtype=np.float64))
    min_angle = math.radians(min_parallax_deg)
    # the terms of a pixel's ray alone, per column (r_x) and per row (r_y):
    # R_i0 r_x and R_i1 r_y of a_i = (R_i0 r_x + R_i1 r_y) + R_i2, as in _affine;
    # with w = R^T t, (ry w2 - w1)^2 and (w0 - rx w2)^2 of |r x w|^2, rx w1 and ry w0 of its last
    # term, rx rx and ry ry of r.r, rx w0 and ry w1 of r.w (see _keep_angle)
    wv = rot.T @ t
    rx_rot = [np.multiply(rx_all, rot[i, 0]) for i in range(3)]
    ry_rot = [np.multiply(ry_col, rot[i, 1]) for i in range(3)]
    cross_y = np.square(np.subtract(np.multiply(ry_col, wv[2]), wv[1]))
    cross_x = np.square(np.subtract(wv[0], np.multiply(rx_all, wv[2])))
    last_x, last_y = np.multiply(rx_all, wv[1]), np.multiply(ry_col, wv[0])
    dot_x, dot_y = np.multiply(rx_all, rx_all), np.multiply(ry_col, ry_col)
    along_x, along_y = np.multiply(rx_all, wv[0]), np.multiply(ry_col, wv[1])
    rows = np.flatnonzero(ok.any(axis=1))
    step = max(1, _CHUNK // w)
    for r0 in range(int(rows[0]), int(rows[-1]) + 1, step):
        r1 = min(r0 + step, h)
        x = slice(None) if rx_row is not None else slice(r0, r1)  # the rows of the [.., W] terms
        f = flow[r0:r1]
        fx, fy = f[..., 0].copy(), f[..., 1].copy()  # contiguous: faster loops below
        with np.errstate(all="ignore"):  # the unusable pixels of a block may be anything
            u, v = _endpoint_rays(rx_all[x], ry_col[r0:r1], fx, fy, k_inv)
            ax, ay, az = (np.add(rx_rot[i][x], ry_rot[i][r0:r1]) for i in range(3))
            for i, a in enumerate((ax, ay, az)):
                a += rot[i, 2]
            passed, rho = _inverse_depth(u, v, ax, ay, az, t)
            passed &= ok[r0:r1]
            # the triangulation angle, as in _keep_angle: |r x w| = sqrt(((ry w2 - w1)^2 +
            # (w0 - rx w2)^2) + (rx w1 - ry w0)^2), r.r + rho r.w = ((rx rx + ry ry) + 1) +
            # rho ((rx w0 + ry w1) + w2)
            cross = np.add(cross_y[r0:r1], cross_x[x])
            term = np.subtract(last_x[x], last_y[r0:r1], out=u)
            cross += np.square(term, out=term)
            np.sqrt(cross, out=cross)
            cross *= rho
            dot = np.add(dot_x[x], dot_y[r0:r1], out=v)
            dot += 1.0
            along = np.add(along_x[x], along_y[r0:r1], out=ay)
            along += wv[2]
            along *= rho
            dot += along
            keep = _angle_at_least(cross, dot, min_angle, where=passed)
            np.divide(1.0, rho, out=rho)
        np.copyto(depth[r0:r1], rho, where=keep, casting="same_kind")  # 1 / rho as float32
    return depth


_CHUNK = 1 << 15
"""Pixels per block of :func:`triangulate_depth` (float64 temporaries of 256 KiB)."""


def _inverse_depth(
    u: npt.NDArray[np.float64],
    v: npt.NDArray[np.float64],
    ax: npt.NDArray[np.float64],
    ay: npt.NDArray[np.float64],
    az: npt.NDArray[np.float64],
    t: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """``(passed, rho)``: the inverse depth ``rho = (c . e) / (c . c)`` of the pixels with
    endpoint rays ``(u, v)`` and rotated rays ``a = R r``, and where it is usable (``c . c > 0``,
    ``rho > 0``, in front of the partner camera). Overwrites its arguments but ``az``: ``rho``
    is stored in ``ax``, and ``u, v, ay`` are free scratch afterwards (any shape, the same for
    all).
    """
    # In place (fewer large temporaries), each expression in its written order:
    # c = u t_z - t_x, ...; e = a_xy - (u, v) a_z; rho = (cx ex + cy ey) / (cx cx + cy cy).
    # (a + b == b + a and a * b == b * a exactly.)
    cx = np.multiply(u, t[2])
    cx -= t[0]
    cy = np.multiply(v, t[2])
    cy -= t[1]
    ex = np.subtract(ax, np.multiply(u, az, out=u), out=ax)
    ey = np.subtract(ay, np.multiply(v, az, out=v), out=ay)
    cc = np.multiply(cx, cx, out=u)
    cc += np.multiply(cy, cy, out=v)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.multiply(ex, cx, out=ex)
        rho += np.multiply(ey, cy, out=ey)
        rho /= cc
        # in front of both cameras; the angle only where that holds
        front = np.multiply(rho, t[2], out=cx)
        front += az
        passed = cc > 0
        passed &= rho > 0
        passed &= front > 0
    return passed, rho


_TAN_MARGIN = 1e-6
"""Relative margin of the arctan-free test in :func:`_angle_at_least`: far above the rounding
error of ``x tan(theta)`` and of ``arctan2`` (a few units in the last place)."""


def _angle_at_least(
    y: npt.NDArray[np.float64],
    x: npt.NDArray[np.float64],
    theta: float,
    *,
    where: npt.NDArray[np.bool_] | None = None,
) -> npt.NDArray[np.bool_]:
    """``np.arctan2(y, x) >= theta`` elementwise, exactly, calling ``arctan2`` only near the bound.

    For ``0 < theta < pi / 2``: ``y > 0`` and ``y > x tan(theta) (1 + m)`` is an angle clearly
    above ``theta`` (``x <= 0``: at least ``pi / 2``), ``0 <= y < x tan(theta) (1 - m)`` with
    ``x > 0`` one clearly below it; every other element (within the margin ``m``, zeros, NaN, inf)
    is decided by ``arctan2`` itself, so the result is that of the plain comparison.

    ``where`` (``bool``, the shape of ``y``): the elements to decide; the others are False (and
    cost no ``arctan2``). ``y`` and ``x`` may have any (the same) shape.
    """
    if not 0.0 < theta < 0.5 * math.pi - 1e-3:
        with np.errstate(invalid="ignore"):
            plain: npt.NDArray[np.bool_] = np.arctan2(y, x) >= theta
        if where is not None:
            plain &= where
        return plain
    tan_theta = math.tan(theta)
    with np.errstate(invalid="ignore", over="ignore"):
        bound = x * (tan_theta * (1.0 + _TAN_MARGIN))
        above = (y > bound) & (y > 0)
        np.multiply(x, tan_theta * (1.0 - _TAN_MARGIN), out=bound)
        below = (y < bound) & (y >= 0) & (x > 0)
        undecided = np.logical_not(above | below, out=below)
        if where is not None:
            above &= where
            undecided &= where
        near = np.flatnonzero(undecided)
        above.reshape(-1)[near] = np.arctan2(y.take(near), x.take(near)) >= theta
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
