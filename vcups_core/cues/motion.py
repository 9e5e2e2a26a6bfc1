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
  With ``ground_prior`` on, a **ground-plane depth prior** covers the rest of this degenerate
  case (an object driving along its epipolar line gets a parallax depth that is wrong compared
  with the road it stands on; ``docs/cues.md``), see :func:`ground_prior_residual`.

The score is ``max(r - n, 0) / max(|flow|, epsilon)`` for the residual ``r`` (px). ``n``
(``motion.residual_noise``, px; 0 here = the paper's plain ratio, 0.5 in the pipeline's config for
DIS) is an allowance for the flow's own noise: a residual within it is not evidence of motion
(ours, not the paper's). Measured with DIS at ``n`` = 0.5 against 0: DAVIS union J 0.646 vs
0.630, best-track J 0.597 vs 0.583, on held-out synthetic drives fewer pseudo-tracks and a higher
class-agnostic moving AQ (0.055 vs 0.039), panoptic pseudo-label STQ 0.119 vs 0.113 (semantic
mIoU 0.616 vs 0.629); the oracle cues score the same. ``epsilon`` (``motion.residual_floor``,
px) keeps the score of nearly static pixels, where flow noise is of the order of the flow itself,
from exploding.
Invalid pixels score 0.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from vcups_core.cues.base import CameraMotion, FloatMap, FrameCues
from vcups_core.cues.depth import _affine
from vcups_core.cues.geometry import (
    _ROUNDING_MARGIN,
    _SQUARES_RANGE,
    _endpoint_rays,
    _epipolar_distance_at,
    _grid_axes,
    _over_hypot_f32,
    _planar_rays,
    _rays_x_row,
    epipolar_fundamental,
    fit_translation_scale,
    normalized_correspondences,
    pixel_centres,
    rigid_flow,
    usable_mask,
)
from vcups_core.cues.validity import _norm


class GeometricMotion:
    """Motion score from the residual flow after the camera motion (a ``MotionEstimator``).

    Args:
        residual_floor: ``epsilon`` of the score (px).
        residual_noise: ``n``: px subtracted from the residual before the score (the flow's
            noise; 0 = the plain ratio).
        depth_from_flow: True when ``cues.depth`` is parallax depth triangulated from the same
            flow (then the epipolar distance is the residual; see the module docstring).
        ground_prior: add the ground-plane depth prior to the epipolar residual (essential camera,
            depth from the flow; :func:`ground_prior_residual`).
        ground_margin: ``m_g``: a pixel whose inverse depth is below ``rho_g / (1 + m_g)`` (farther
            than ``1 + m_g`` times the ground along its ray) is moving.
        contact_margin: ``m_c``: a pixel whose inverse depth exceeds ``(1 + m_c)`` times that of its
            ground contact (nearer than the ground it stands on) is moving.
    """

    name = "geometric"

    def __init__(
        self,
        residual_floor: float = 1.0,
        *,
        residual_noise: float = 0.0,
        depth_from_flow: bool = True,
        ground_prior: bool = False,
        ground_margin: float = 1.0,
        contact_margin: float = 0.3,
    ) -> None:
        if not residual_floor > 0:
            raise ValueError(f"residual_floor must be > 0, got {residual_floor}")
        if not ground_margin >= 0 or not contact_margin >= 0:
            raise ValueError(
                f"ground_margin and contact_margin must be >= 0, got {ground_margin}, "
                f"{contact_margin}"
            )
        if not residual_noise >= 0:
            raise ValueError(f"residual_noise must be >= 0, got {residual_noise}")
        self.residual_floor = float(residual_floor)
        self.residual_noise = float(residual_noise)
        self.depth_from_flow = depth_from_flow
        self.ground_prior = ground_prior
        self.ground_margin = float(ground_margin)
        self.contact_margin = float(contact_margin)

    def __call__(
        self, cues: FrameCues, where: npt.NDArray[np.bool_] | None = None
    ) -> tuple[FloatMap, FloatMap | None]:
        """``(score float32[H, W] in [0, 1], ego_flow float32[H, W, 2] or None)``.

        ``where``: ``bool[H, W]``, the pixels whose score the caller reads (None: all); the
        others score 0. Each scored pixel's value is the same with or without ``where`` (the
        camera's translation scale is still fitted on every valid pixel); with ``ground_prior``
        every pixel is scored.
        """
        flow = cues.flow
        h, w = flow.shape[:2]
        valid = usable_mask(flow, cues.valid)
        camera = cues.camera
        if camera is None:
            return np.zeros((h, w), np.float32), None
        # The score is 0 outside ``valid``: only the valid pixels are computed, gathered into
        # flat arrays, each with the same arithmetic as on the whole grid, in chunks (small
        # temporaries are reused by the allocator; large ones cost page faults every time);
        # the common case, the epipolar residual, by blocks of rows (:func:`_epipolar_scores`).
        any_valid = bool(valid.any())  # the indices only where needed (not the common case)
        ego: FloatMap | None = None
        scale = math.nan
        if camera.model == "homography":
            ego = rigid_flow(camera, cues.intrinsics, (h, w))
        elif cues.depth is not None and not self.depth_from_flow:
            scale = fit_translation_scale(flow, valid, camera, cues.intrinsics, cues.depth)
            if np.isfinite(scale):
                ego = rigid_flow(
                    camera, cues.intrinsics, (h, w), cues.depth, translation_scale=scale
                )
        behind_test = camera.model == "essential" and (cues.depth is None or self.depth_from_flow)
        with_prior = behind_test and self.ground_prior
        scored = valid if where is None or with_prior else valid & where
        out = np.zeros((h, w), np.float32)
        out_flat = out.reshape(-1)
        parts: _TranslationalParts | None = None
        # constants of every chunk, computed once (only where a chunk would compute them)
        fund = None
        if (
            any_valid
            and camera.model == "essential"
            and camera.rotation is not None
            and camera.translation is not None
        ):
            fund = epipolar_fundamental(camera, cues.intrinsics)
        rays = _planar_rays((h, w), cues.intrinsics) if behind_test and any_valid else None
        k_inv = np.linalg.inv(np.asarray(cues.intrinsics, dtype=np.float64))
        if (
            ego is None
            and fund is not None
            and not with_prior
            and (scored is valid or np.count_nonzero(scored) >= _GATHER_BELOW * scored.size)
        ):
            # the common case (essential camera, the epipolar residual): in blocks of rows
            # (few pixels asked for: gathered below instead, the same arithmetic per pixel)
            _epipolar_scores(
                out,
                flow,
                scored,
                camera,
                cues.intrinsics,
                fund,
                behind_test=behind_test,
                residual_floor=self.residual_floor,
                residual_noise=self.residual_noise,
            )
            return out, ego
        idx = np.flatnonzero(scored)
        step = max(idx.size, 1) if with_prior else _CHUNK
        # the scores of the valid pixels, in ``idx`` order (one scatter at the end is faster
        # than one per chunk)
        scores = np.empty(idx.size, np.float32)
        for start in range(0, idx.size, step):
            sub = idx[start : start + step]
            pairs = flow.reshape(-1, 2).take(sub, axis=0)
            fx, fy = pairs[:, 0], pairs[:, 1]
            residual: npt.NDArray[np.floating[Any]]
            if ego is not None:  # homography, or essential with a depth and its scale
                diff = np.subtract(pairs, ego.reshape(-1, 2).take(sub, axis=0))
                residual = _norm(diff[:, 0], diff[:, 1])
                if camera.model == "essential":
                    unknown = np.flatnonzero(~np.isfinite(residual))
                    if unknown.size:
                        residual[unknown] = _epipolar_distance_at(
                            fx.take(unknown),
                            fy.take(unknown),
                            *_centres_at(sub.take(unknown), (h, w)),
                            camera,
                            cues.intrinsics,
                            fund=fund,
                        )
            else:
                residual = _epipolar_distance_at(
                    fx, fy, *_centres_at(sub, (h, w)), camera, cues.intrinsics, fund=fund
                ).astype(np.float64)
                if behind_test:
                    behind = _behind(
                        fx,
                        fy,
                        sub,
                        camera,
                        cues.intrinsics,
                        (h, w),
                        exact=with_prior,
                        rays=rays,
                        k_inv=k_inv,
                    )
                    residual[behind.against] = np.inf
                    if with_prior:
                        parts = behind.parts(sub, (h, w))
            if self.residual_noise > 0:  # inf (behind the camera) stays inf, NaN stays NaN
                np.subtract(residual, self.residual_noise, out=residual)
                np.maximum(residual, 0.0, out=residual)
            mag = _norm(fx, fy)
            np.maximum(mag, self.residual_floor, out=mag)
            with np.errstate(invalid="ignore", divide="ignore"):
                score = np.divide(residual, mag, out=residual)
            # = clip(nan_to_num(score, nan=0, posinf=1), 0, 1), with fmax(NaN, 0) = 0 and
            # fmax(-inf, 0) = 0 (the score is never -0.0: the residual is >= +0)
            np.fmax(score, 0.0, out=score)
            np.minimum(score, 1.0, out=score)
            scores[start : start + sub.size] = score  # rounded to float32 here
        out_flat[idx] = scores
        if parts is not None:
            prior = ground_prior_residual(
                cues,
                valid,
                parts,
                ground_margin=self.ground_margin,
                contact_margin=self.contact_margin,
                residual_floor=self.residual_floor,
            )
            if prior is not None:
                # rounding is monotonic, so the maximum commutes with it; the prior is 0
                # outside ``valid``
                np.maximum(out, prior, out=out)
        return out, ego


_CHUNK = 1 << 15
"""Valid pixels per chunk of :meth:`GeometricMotion.__call__` (float64 temporaries of 256 KiB)."""

_GATHER_BELOW = 0.5
"""Fraction of the frame's pixels asked for (``where``) below which the epipolar residual is
computed on the gathered pixels rather than on blocks of whole rows (:func:`_epipolar_scores`)."""


def _centres_at(
    idx: npt.NDArray[np.intp], shape: tuple[int, int]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The centres ``(x + 0.5, y + 0.5)`` of the pixels with flat indices ``idx``."""
    gx, gy = pixel_centres(shape)
    return gx.reshape(-1).take(idx), gy.reshape(-1).take(idx)


@dataclasses.dataclass(frozen=True)
class _Behind:
    """The translational decomposition (:class:`_TranslationalParts`) of some pixels' flow.

    Attributes:
        az, e_norm, along: as in :class:`_TranslationalParts`, ``float64[N]`` (``along`` is only
            meaningful where ``e_norm > 0``); ``e_norm`` and ``along`` are None unless
            :func:`_behind` ran ``exact``.
        against: ``bool[N]``: the flow runs against the epipolar direction by more than 1 px
            (``along * focal < -1`` where ``e_norm > 0``; a triangulated depth behind the camera).
        focal, tz: as in :class:`_TranslationalParts`.
        intrinsics: ``float64[3, 3]`` K.
    """

    az: npt.NDArray[np.float64]
    e_norm: npt.NDArray[np.float64] | None
    along: npt.NDArray[np.float64] | None
    against: npt.NDArray[np.bool_]
    focal: float
    tz: float
    intrinsics: npt.NDArray[np.float64]

    def parts(self, idx: npt.NDArray[np.intp], shape: tuple[int, int]) -> _TranslationalParts:
        """The :class:`_TranslationalParts` of the whole grid, NaN outside the pixels ``idx``
        (needs ``exact``)."""
        assert self.e_norm is not None
        assert self.along is not None
        rx, ry = _planar_rays(shape, self.intrinsics)
        grids = []
        for values in (self.az, self.e_norm, self.along):
            grid = np.full(shape, np.nan)
            grid.reshape(-1)[idx] = values
            grids.append(grid)
        along = grids[2]
        along[~(grids[1] > 0)] = np.nan
        return _TranslationalParts(rx, ry, grids[0], grids[1], along, self.focal, self.tz)


def _behind(
    fx: npt.NDArray[np.float32],
    fy: npt.NDArray[np.float32],
    idx: npt.NDArray[np.intp],
    camera: CameraMotion,
    intrinsics: npt.NDArray[np.float64],
    shape: tuple[int, int],
    *,
    exact: bool = False,
    rays: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None,
    k_inv: npt.NDArray[np.float64] | None = None,
) -> _Behind:
    """:func:`_translational_parts` of the pixels ``idx`` (flat indices, flow ``fx, fy``), with
    the same arithmetic per pixel as on the whole grid; ``e_norm`` and ``along`` only with
    ``exact`` (the ``against`` test is the same either way). ``rays``: ``_planar_rays(shape,
    intrinsics)`` and ``k_inv``: the inverse of ``intrinsics``, when already known."""
    assert camera.rotation is not None
    assert camera.translation is not None
    rays_x, rays_y = _planar_rays(shape, intrinsics) if rays is None else rays  # read-only
    rx = rays_x.reshape(-1).take(idx)
    ry = rays_y.reshape(-1).take(idx)
    if k_inv is None:
        k_inv = np.linalg.inv(np.asarray(intrinsics, dtype=np.float64))
    u, v = _endpoint_rays(rx, ry, fx, fy, k_inv)
    rot, t = camera.rotation, camera.translation
    tmp = np.empty_like(rx)
    # a = (R00 rx + R01 ry) + R02, ..., in place, each expression in its written order
    ax = _affine(rot[0], rx, ry, tmp)
    ay = _affine(rot[1], rx, ry, tmp)
    c = _affine(rot[2], rx, ry, tmp)
    focal = float(intrinsics[0, 0])
    with np.errstate(invalid="ignore", divide="ignore"):
        along, ex, ey = _along_epipole(u, v, ax, ay, c, t)
        if exact:
            norm = np.hypot(ex, ey)
            along /= norm
            against = np.multiply(along, focal, out=tmp) < -1.0
            against &= norm > 0
            return _Behind(c, norm, along, against, focal, float(t[2]), intrinsics)
        against = _against(along, ex, ey, focal)
    return _Behind(c, None, None, against, focal, float(t[2]), intrinsics)


def _along_epipole(
    u: npt.NDArray[np.float64],
    v: npt.NDArray[np.float64],
    ax: npt.NDArray[np.float64],
    ay: npt.NDArray[np.float64],
    c: npt.NDArray[np.float64],
    t: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The translational part of the flow against the epipolar direction, in place.

    ``(u, v)``: the flow endpoints' rays (normalised units); ``(ax, ay, c)``: the rotated start
    rays (``a = R r``, unnormalised); ``t``: the camera translation. ``a / c`` is where a start
    ray lands after the rotation alone, ``d = (u, v) - a / c`` the translational part of the
    flow, ``E = t_xy - (a / c) t_z`` the direction away from the epipole. Overwrites ``u, v, ax,
    ay`` (call under ``np.errstate``: ``c`` may be 0).

    Returns:
        ``(along, ex, ey)``: ``d . E`` and ``E``, in the storage of ``u``, ``ax``, ``ay``.
    """
    ax /= c
    ay /= c
    dx = np.subtract(u, ax, out=u)
    dy = np.subtract(v, ay, out=v)
    ex = np.multiply(ax, t[2], out=ax)
    np.subtract(t[0], ex, out=ex)
    ey = np.multiply(ay, t[2], out=ay)
    np.subtract(t[1], ey, out=ey)
    along = np.multiply(dx, ex, out=dx)
    along += np.multiply(dy, ey, out=dy)
    return along, ex, ey


def _against(
    along: npt.NDArray[np.float64],
    ex: npt.NDArray[np.float64],
    ey: npt.NDArray[np.float64],
    focal: float,
) -> npt.NDArray[np.bool_]:
    """The ``against`` test of :func:`_behind` (not ``exact``) on flat arrays: ``along / |E| *
    focal < -1`` and ``|E| > 0``, ``|E| = np.hypot(ex, ey)``.

    Only a negative ``along`` can run against the epipolar direction (0, NaN: never), and few
    do: the test runs on those elements only. Without np.hypot (slow): ``sqrt(ex^2 + ey^2)`` is
    within a relative 1e-15 of it, which decides the comparison except within the margin of -1;
    those elements use hypot.
    """
    against = np.zeros(along.shape, bool)
    neg = np.flatnonzero(along < 0)
    if neg.size:
        ex, ey, along = ex.take(neg), ey.take(neg), along.take(neg)
        squares = np.multiply(ex, ex)
        tmp = np.multiply(ey, ey)
        squares += tmp
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            approx = np.sqrt(squares, out=tmp)
            np.divide(along, approx, out=approx)
            approx *= focal
            hit = approx < -1.0 - _ROUNDING_MARGIN
            sure = np.greater(approx, -1.0 + _ROUNDING_MARGIN)
            sure |= hit
            sure &= squares > _SQUARES_RANGE[0]
            sure &= squares < _SQUARES_RANGE[1]
            redo = np.flatnonzero(~sure)
            if redo.size:
                norm = np.hypot(ex.take(redo), ey.take(redo))
                value = along.take(redo) / norm * focal
                hit[redo] = (value < -1.0) & (norm > 0)
        against[neg] = hit
    return against


def _epipolar_scores(
    out: FloatMap,
    flow: FloatMap,
    valid: npt.NDArray[np.bool_],
    camera: CameraMotion,
    intrinsics: npt.NDArray[np.float64],
    fund: npt.NDArray[np.float64],
    *,
    behind_test: bool,
    residual_floor: float,
    residual_noise: float,
) -> None:
    """The motion score of an essential camera without ego flow (the epipolar residual, and with
    ``behind_test`` the ``against`` pixels scored as moving), written into ``out`` where
    ``valid`` (``out`` is left as it is elsewhere).

    Every pixel's arithmetic is that of :func:`_epipolar_distance_at` and :func:`_behind` on the
    valid pixels, but on blocks of whole rows (within the columns that hold valid pixels): no
    gathers, and the terms that depend on the pixel's column or row alone (``F_i0 x``,
    ``F_i1 y``, ``R_i1 r_y``) are computed once per column or row. Invalid pixels of a block
    are computed too and not written.
    """
    assert camera.rotation is not None
    assert camera.translation is not None
    h, w = valid.shape
    cols = np.flatnonzero(valid.any(axis=0))
    if not cols.size:
        return
    rows = np.flatnonzero(valid.any(axis=1))
    c0, c1 = int(cols[0]), int(cols[-1]) + 1
    col, row = _grid_axes((h, w))  # x + 0.5 as [1, W], y + 0.5 as [H, 1]
    px = col[:, c0:c1]
    # l_i = (F_i0 x + F_i1 y) + F_i2, as in _epipolar_distance_at
    lx = [np.multiply(px, fund[i, 0]) for i in range(3)]
    ly = [np.multiply(row, fund[i, 1]) for i in range(3)]
    rot, t = camera.rotation, camera.translation
    focal = float(intrinsics[0, 0])
    if behind_test:
        rays_x, rays_y = _planar_rays((h, w), intrinsics)  # ray_y depends on the row alone
        k_inv = np.linalg.inv(np.asarray(intrinsics, dtype=np.float64))
        ry_col = rays_y[:, :1]
        ry_rot = [np.multiply(ry_col, rot[i, 1]) for i in range(3)]  # R_i1 r_y, [H, 1]
        # r_x (and R_i0 r_x) is the same in every row without skew
        rx_row = _rays_x_row((h, w), intrinsics)
        rx_row = None if rx_row is None else rx_row[:, c0:c1]
        rx_rot = [np.multiply(rx_row, rot[i, 0]) for i in range(3)] if rx_row is not None else None
    step = max(1, _CHUNK // (c1 - c0))
    with np.errstate(all="ignore"):  # the invalid pixels of a block may be anything
        for r0 in range(int(rows[0]), int(rows[-1]) + 1, step):
            r1 = min(r0 + step, h)
            block = valid[r0:r1, c0:c1]
            f = flow[r0:r1, c0:c1]
            fx, fy = f[..., 0].copy(), f[..., 1].copy()  # contiguous: faster loops below
            py = row[r0:r1]
            # _epipolar_distance_at
            l0 = np.add(lx[0], ly[0][r0:r1])
            l0 += fund[0, 2]
            l1 = np.add(lx[1], ly[1][r0:r1])
            l1 += fund[1, 2]
            l2 = np.add(lx[2], ly[2][r0:r1])
            l2 += fund[2, 2]
            num = np.add(px, fx, dtype=np.float64)
            num *= l0
            term = np.add(py, fy, dtype=np.float64)
            term *= l1
            num += term
            num += l2
            np.abs(num, out=num)
            residual = _over_hypot_f32(num.reshape(-1), l0.reshape(-1), l1.reshape(-1))
            if behind_test:
                # _behind, not exact
                rx = rays_x[r0:r1, c0:c1] if rx_row is None else rx_row
                u, v = _endpoint_rays(rx, ry_col[r0:r1], fx, fy, k_inv)
                # a_i = (R_i0 r_x + R_i1 r_y) + R_i2, as in _affine
                if rx_rot is None:
                    ax, ay, c = (np.multiply(rx, rot[i, 0]) for i in range(3))
                    for i, a in enumerate((ax, ay, c)):
                        a += ry_rot[i][r0:r1]
                else:
                    ax, ay, c = (np.add(rx_rot[i], ry_rot[i][r0:r1]) for i in range(3))
                for i, a in enumerate((ax, ay, c)):
                    a += rot[i, 2]
                along, ex, ey = _along_epipole(u, v, ax, ay, c, t)
                against = _against(along.reshape(-1), ex.reshape(-1), ey.reshape(-1), focal)
                residual[against] = np.inf
            mag = _norm(fx, fy).reshape(-1)
            np.maximum(mag, residual_floor, out=mag)
            if residual_noise > 0:  # in float64, as in GeometricMotion.__call__
                wide = np.subtract(residual, residual_noise, dtype=np.float64)
                np.maximum(wide, 0.0, out=wide)
                score = np.divide(wide, mag, out=wide)
            else:
                # float32(residual / mag) of the float64 quotient is the float32 quotient of
                # the two float32 numbers: rounding a float64 quotient of float32 operands to
                # float32 is innocuous (53 >= 2 * 24 + 2; Figueroa 1995)
                score = np.divide(residual, mag, out=residual)
            np.fmax(score, 0.0, out=score)  # as in GeometricMotion.__call__
            np.minimum(score, 1.0, out=score)
            # score where valid, else +0 (the score is finite and >= +0 here), rounded to float32
            np.multiply(
                score.reshape(block.shape), block, out=out[r0:r1, c0:c1], casting="same_kind"
            )


@dataclasses.dataclass(frozen=True)
class _TranslationalParts:
    """Per-pixel decomposition of the flow under an essential camera motion ``(R, t)``.

    With the rotation removed, a static point of inverse depth ``rho`` on the ray ``r`` moves by
    ``rho E / (a_z + rho t_z)`` (normalised units), ``a = R r``, ``E = t_xy - t_z a_xy / a_z``:
    along the epipolar direction ``E / |E|`` and monotonically in ``rho``.

    Attributes:
        rx, ry: the pixel's ray ``(rx, ry, 1)``.
        az: ``(R r)_z``.
        e_norm: ``|E|``.
        along: the flow's translational component along ``E / |E|`` (normalised units; NaN where
            undefined).
        focal: ``K[0, 0]`` (px per normalised unit).
        tz: ``t_z``.
    """

    rx: npt.NDArray[np.float64]
    ry: npt.NDArray[np.float64]
    az: npt.NDArray[np.float64]
    e_norm: npt.NDArray[np.float64]
    along: npt.NDArray[np.float64]
    focal: float
    tz: float

    def along_of(self, rho: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The ``along`` component of a static point of inverse depth ``rho`` (NaN where that
        point would be behind the partner camera)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            den = self.az + rho * self.tz
            out: npt.NDArray[np.float64] = np.where(den > 0, rho * self.e_norm / den, np.nan)
        return out

    def inverse_depth(self) -> npt.NDArray[np.float64]:
        """Signed inverse depth whose static flow has this ``along`` (the inverse of
        :meth:`along_of`; negative = behind the camera)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            out: npt.NDArray[np.float64] = (
                self.along * self.az / (self.e_norm - self.along * self.tz)
            )
        return out


def _translational_parts(cues: FrameCues) -> _TranslationalParts:
    """:class:`_TranslationalParts` of ``cues.flow`` under the essential ``cues.camera``.

    A static point moves *away* from the epipole when the camera advances (and towards it when it
    retreats), so its ``along`` is positive; a clearly negative one (more than 1 px) means a
    triangulated depth behind the camera: the point moves by itself.
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
    return _TranslationalParts(rx, ry, c, norm, along, float(cues.intrinsics[0, 0]), float(t[2]))


# Ground-plane fit (relative inverse-depth tolerance, hypotheses, sample size, acceptance).
_PLANE_TOLERANCE = 0.15
_PLANE_HYPOTHESES = 64
_PLANE_SAMPLES = 2000
_PLANE_MIN_INLIERS = 0.3
_PLANE_MAX_TILT_DEG = 30.0
_GROUND_TOLERANCE = 0.2  # |rho / rho_g - 1| of a pixel that lies on the ground


def fit_ground_plane(
    rx: npt.NDArray[np.float64],
    ry: npt.NDArray[np.float64],
    inverse_depth: npt.NDArray[np.float64],
    usable: npt.NDArray[np.bool_],
) -> npt.NDArray[np.float64] | None:
    """The road's plane from the inverse depth of the lower half of the image, or None.

    A plane ``n . X = h`` seen from a camera at height ``h`` above it has, on the ray
    ``r = (rx, ry, 1)``, the inverse z-depth ``rho = p . r`` with ``p = n / h``: the inverse depth
    of the ground is *affine* in the normalised image coordinates. ``p`` is fitted by RANSAC
    (minimal samples of 3 pixels, a relative inverse-depth tolerance, deterministic sampling) on
    the usable pixels with a positive inverse depth below the principal point, then refined by
    least squares on the inliers. The plane is accepted only if it looks like a road under a
    roughly upright camera: the camera above it (``p_y > 0``, image y points down), a normal
    within 30 degrees of the camera's y axis, and at least 30 % of the sampled pixels on it.

    Returns:
        ``float64[3]`` ``p`` (in the units of ``inverse_depth``), or None.
    """
    h = rx.shape[0]
    lower = usable & np.isfinite(inverse_depth) & (inverse_depth > 0) & (ry > 0)
    lower[: h // 2] = False
    idx = np.flatnonzero(lower)
    if idx.size < 50:
        return None
    rng = np.random.default_rng(0)
    if idx.size > _PLANE_SAMPLES:
        idx = np.sort(rng.choice(idx, _PLANE_SAMPLES, replace=False))
    design = np.stack([rx.ravel()[idx], ry.ravel()[idx], np.ones(idx.size)], axis=1)
    target = inverse_depth.ravel()[idx]
    triples = rng.integers(0, idx.size, size=(_PLANE_HYPOTHESES, 3))
    systems = design[triples]
    solvable = np.abs(np.linalg.det(systems)) > 1e-12
    if not solvable.any():
        return None
    hypotheses = np.linalg.solve(systems[solvable], target[triples][solvable][..., None])[..., 0]
    predicted = hypotheses @ design.T
    inliers = np.abs(target - predicted) < _PLANE_TOLERANCE * np.abs(predicted)
    mask = inliers[np.argmax(inliers.sum(axis=1))]
    plane: npt.NDArray[np.float64] | None = None
    for _ in range(2):
        if mask.sum() < 3:
            return None
        plane = np.asarray(np.linalg.lstsq(design[mask], target[mask], rcond=None)[0], np.float64)
        predicted_best = design @ plane
        mask = np.abs(target - predicted_best) < _PLANE_TOLERANCE * np.abs(predicted_best)
    assert plane is not None
    norm = float(np.linalg.norm(plane))
    if (
        mask.mean() < _PLANE_MIN_INLIERS
        or not plane[1] > 0
        or plane[1] < norm * np.cos(np.radians(_PLANE_MAX_TILT_DEG))
    ):
        return None
    return plane


def ground_prior_residual(
    cues: FrameCues,
    valid: npt.NDArray[np.bool_],
    parts: _TranslationalParts,
    *,
    ground_margin: float,
    contact_margin: float,
    residual_floor: float,
) -> FloatMap | None:
    """Motion score from the ground plane: parallax depth that contradicts the road (or None).

    An object that moves along its epipolar line (a car driving in the camera's direction)
    keeps a flow that static geometry explains, but with a wrong depth. The road's plane
    (:func:`fit_ground_plane`, from the parallax depth) gives every ray below the horizon its
    ground inverse depth ``rho_g``, and two physical bounds hold for static points:

    * **beyond the ground**: a static point on a ray cannot lie behind the ground that ray hits
      (``rho >= rho_g``). A car driving away with (or ahead of) the camera has too little flow and
      triangulates too far. Residual (px): ``max(0, A(rho_g / (1 + m_g)) - A_obs)``, where
      ``A(rho)`` is the along-epipolar flow a static point of inverse depth ``rho`` would have and
      ``A_obs`` the observed one; divided by ``max(A(rho_g), epsilon)``.
    * **in front of its contact**: a static thing standing on the road is, in every pixel above
      its ground contact, no nearer than that contact (vertical surfaces, no overhang). The
      contact of a pixel is the nearest *ground* pixel below it in its column (``|rho / rho_g - 1|
      < 0.2``); an oncoming car has too much flow and triangulates nearer than it. Residual (px):
      ``max(0, A_obs - (1 + m_c) A(rho_contact))``, divided by ``max(A_obs, epsilon)``.

    Both compare flows in pixels, so flow noise near the epipole (tiny flow) stays below the floor
    ``epsilon``. The score is the larger of the two, in ``[0, 1]``.

    Returns:
        ``float32[H, W]`` in ``[0, 1]``, or None without an accepted ground plane.
    """
    rho = parts.inverse_depth()
    if cues.depth is not None:
        with np.errstate(divide="ignore"):
            fit_rho = 1.0 / cues.depth.astype(np.float64)
    else:
        fit_rho = rho
    plane = fit_ground_plane(parts.rx, parts.ry, fit_rho, valid)
    if plane is None:
        return None
    rho_g = plane[0] * parts.rx + plane[1] * parts.ry + plane[2]
    along = parts.along
    hits = valid & (rho_g > 0) & np.isfinite(along)
    floor = residual_floor / parts.focal
    with np.errstate(invalid="ignore", divide="ignore"):
        # beyond the ground along the pixel's own ray
        along_g = parts.along_of(rho_g)
        far = (parts.along_of(rho_g / (1.0 + ground_margin)) - along) / np.maximum(along_g, floor)
        # nearer than the ground contact below it in its column
        ground = hits & (np.abs(rho / rho_g - 1.0) < _GROUND_TOLERANCE)
        h, w = ground.shape
        rows = np.where(ground, np.arange(h, dtype=np.int32)[:, None], np.int32(h))
        below = np.minimum.accumulate(rows[::-1], axis=0)[::-1]  # nearest ground row at or below
        contact_row = np.concatenate([below[1:], np.full((1, w), h, np.int32)], axis=0)
        rho_padded = np.concatenate([rho_g, np.full((1, w), np.nan)], axis=0)
        rho_contact = np.take_along_axis(rho_padded, contact_row, axis=0)
        near = (along - (1.0 + contact_margin) * parts.along_of(rho_contact)) / np.maximum(
            along, floor
        )
        near = np.where(ground, 0.0, near)
        score = np.where(hits, np.fmax(far, near), 0.0)
    out: FloatMap = np.clip(np.nan_to_num(score, nan=0.0), 0.0, 1.0).astype(np.float32)
    return out
