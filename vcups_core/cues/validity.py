"""Which pixels carry usable flow evidence: forward-backward consistency and the image border.

CUPS drops forward/backward-inconsistent flow and the image border (``method.md`` §2.3 step 1);
the tolerances and border fractions are :class:`~vcups_core.configs.pseudo_labels.ValiditySection`.
Flow conventions are those of :mod:`vcups_core.cues.base`.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from vcups_core.configs.pseudo_labels import ValiditySection
from vcups_core.cues.flow import _outside_image, _sample_points_of, warp

BoolMap = npt.NDArray[np.bool_]


def forward_backward_valid(
    flow: npt.NDArray[np.float32],
    flow_back: npt.NDArray[np.float32],
    *,
    fb_abs: float,
    fb_rel: float,
) -> BoolMap:
    """Forward-backward consistency of a flow field with its partner's flow back.

    For a pixel ``x`` with flow ``f = flow(x)`` the partner's flow back is sampled bilinearly at
    the target, ``b = flow_back(x + f)`` (:func:`~vcups_core.cues.flow.warp`); on a consistent
    pair ``b = -f``. The pixel is valid when

    ``|f + b| <= fb_abs + fb_rel * (|f| + |b|)``,

    the target ``x + f`` lies inside the image and neither flow is NaN there. Occluded pixels
    (whose target shows another surface, whose flow back goes elsewhere) fail the test.

    Args:
        flow: ``float32[H, W, 2]`` flow from this frame to the partner.
        flow_back: ``float32[H, W, 2]`` the partner's flow back to this frame, on the partner's
            grid.
        fb_abs: error (pixels) always tolerated.
        fb_rel: error tolerated per pixel of flow magnitude.

    Returns:
        ``bool[H, W]``, True where the flow is consistent.

    Raises:
        ValueError: if the shapes differ or are not ``[H, W, 2]``, or a tolerance is negative.
    """
    _check(flow, flow_back, fb_abs, fb_rel)
    h, w = flow.shape[:2]
    return _consistent(flow, flow_back, fb_abs, fb_rel, slice(0, h), slice(0, w))


def _check(
    flow: npt.NDArray[np.float32], flow_back: npt.NDArray[np.float32], fb_abs: float, fb_rel: float
) -> None:
    if flow.shape != flow_back.shape or flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(
            f"flow and flow_back must both be [H, W, 2], got {list(flow.shape)} and "
            f"{list(flow_back.shape)}"
        )
    if fb_abs < 0 or fb_rel < 0:
        raise ValueError(f"fb_abs and fb_rel must be >= 0, got {fb_abs}, {fb_rel}")


def _consistent(
    flow: npt.NDArray[np.float32],
    flow_back: npt.NDArray[np.float32],
    fb_abs: float,
    fb_rel: float,
    rows: slice,
    cols: slice,
) -> BoolMap:
    """:func:`forward_backward_valid` of the pixels ``[rows, cols]`` (non-empty slices with
    explicit bounds)."""
    # the components as contiguous planes (the arithmetic below is elementwise, and strided
    # float32 loops are slow)
    fx, fy = _planes(flow[rows, cols])
    back = flow_back.astype(np.float32, copy=False)
    h, w = flow.shape[:2]
    map_x, map_y, outside = _sample_points_of(
        fx, fy, x0=cols.start, y0=rows.start, width=w, height=h
    )
    # = warp(back, flow) without the fill of the points outside: they are excluded below (with
    # the fill, their error is NaN, which fails the test)
    # each component of ``back`` as a contiguous plane in turn, in one buffer
    plane = np.empty(back.shape[:2], np.float32)
    bx, by = (_remap(_copy_to(plane, back[..., c]), map_x, map_y) for c in (0, 1))
    if bx.size and (np.isnan(bx.max()) or np.isnan(by.max())):
        # a NaN of ``back`` was sampled (perhaps with weight 0, which cv2 spreads but warp does
        # not): warp's NaN rules. Without a NaN sample, no NaN of ``back`` took part in any
        # sample, and warp's samples are these.
        bx, by = _planes(warp(back, flow.astype(np.float32, copy=False))[rows, cols])
    # |f + b| and fb_abs + fb_rel * (|f| + |b|), in float32 with the operations of
    # np.linalg.norm(..., axis=-1) (sqrt(x * x + y * y)), but without its slow reduction over
    # an axis of length 2; in the storage of the sample points and the planes (no longer
    # needed: fresh large arrays cost page faults)
    ex = np.add(fx, bx, out=map_x)
    ey = np.add(fy, by, out=map_y)
    error = _norm(ex, ey, in_place=True)
    tolerance = _norm(fx, fy, in_place=True)
    tolerance += _norm(bx, by, in_place=True)
    tolerance *= fb_rel  # = fb_abs + fb_rel * tolerance (in float32)
    tolerance += fb_abs
    valid: BoolMap = np.less_equal(error, tolerance)  # False wherever a NaN is involved
    valid &= np.logical_not(outside, out=outside)
    return valid


def _remap(
    plane: npt.NDArray[np.float32], map_x: npt.NDArray[np.float32], map_y: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """Bilinear :func:`cv2.remap` of one ``float32`` plane, border replicated (as
    :func:`~vcups_core.cues.flow.warp` samples one channel)."""
    return np.asarray(
        cv2.remap(plane, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
        dtype=np.float32,
    )


def _planes(
    flow: npt.NDArray[np.floating[Any]],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """The two components of a ``[H, W, 2]`` flow as fresh (writable) contiguous
    ``float32[H, W]``."""
    return (
        np.array(flow[..., 0], dtype=np.float32, order="C"),
        np.array(flow[..., 1], dtype=np.float32, order="C"),
    )


def _norm(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32] | None = None,
    *,
    in_place: bool = False,
) -> npt.NDArray[np.float32]:
    """``sqrt(x * x + y * y)`` elementwise (bit-identical to ``np.linalg.norm`` of the pair);
    ``out`` may be ``x`` or ``y``. With ``in_place``, the result is stored in ``x`` and ``y`` is
    scratch (both overwritten; no fresh arrays)."""
    if in_place:
        out = x
    yy = np.multiply(y, y, out=y if in_place else None)
    res = np.multiply(x, x, out=out)
    res += yy
    result: npt.NDArray[np.float32] = np.sqrt(res, out=res)
    return result


def _copy_to(
    buffer: npt.NDArray[np.float32], values: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """``values`` copied into ``buffer`` (returned)."""
    np.copyto(buffer, values)
    return buffer


def _pixels(fraction: float, size: int, what: str, upper: float) -> int:
    if not 0.0 <= fraction < upper:
        raise ValueError(f"border {what}: expected a fraction in [0, {upper}), got {fraction}")
    return math.floor(fraction * size + 0.5)


def border_mask(height: int, width: int, *, sides: float, top: float, bottom: float) -> BoolMap:
    """The usable part of the image once its borders are ignored.

    Each fraction is rounded to whole pixels (half up): ``round(sides * width)`` columns at the
    left and as many at the right, ``round(top * height)`` rows at the top and
    ``round(bottom * height)`` at the bottom are False.

    Args:
        height, width: image size (pixels).
        sides: fraction of the width ignored at each of the left and right, in ``[0, 0.5)``.
        top: fraction of the height ignored at the top, in ``[0, 1)``.
        bottom: fraction of the height ignored at the bottom (ego-vehicle hood), in ``[0, 1)``.

    Returns:
        ``bool[height, width]``, True = usable.

    Raises:
        ValueError: if a fraction is out of range or the size is not positive.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"border_mask: size must be positive, got {height}x{width}")
    s = _pixels(sides, width, "sides", 0.5)
    t = _pixels(top, height, "top", 1.0)
    b = _pixels(bottom, height, "bottom", 1.0)
    mask = np.zeros((height, width), dtype=bool)
    mask[t : height - b, s : width - s] = True
    return mask


def leaves_image(
    flow: npt.NDArray[np.floating[Any]], where: npt.NDArray[np.bool_] | None = None
) -> BoolMap:
    """Pixels whose finite flow points outside the image (``x + f`` beyond the pixel centres'
    range ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``, the rule of :func:`forward_backward_valid`).

    Args:
        flow: ``float[H, W, 2]``.
        where: ``bool[H, W]``: test only these pixels (False elsewhere); None = all.

    Returns:
        ``bool[H, W]``; False where the flow is NaN or infinite.
    """
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be [H, W, 2], got shape {list(flow.shape)}")
    h, w = flow.shape[:2]
    if where is None:
        where = np.ones((h, w), bool)
    elif where.shape != (h, w):
        raise ValueError(f"where {list(where.shape)} must be [H, W] = {[h, w]}")
    out = np.zeros((h, w), bool)
    idx = np.flatnonzero(where)
    if idx.size == 0:
        return out
    ys, xs = np.divmod(idx, w)
    fx = flow[..., 0].reshape(-1).take(idx)
    fy = flow[..., 1].reshape(-1).take(idx)
    # the arithmetic of the forward-backward test's sample points (float32 targets)
    tx = np.add(xs.astype(np.float32), fx, dtype=np.float32)
    ty = np.add(ys.astype(np.float32), fy, dtype=np.float32)
    outside = _outside_image(tx, ty, w, h)
    out.reshape(-1)[idx] = outside & np.isfinite(fx) & np.isfinite(fy)
    return out


def validity_mask(
    flow: npt.NDArray[np.float32], flow_back: npt.NDArray[np.float32], cfg: ValiditySection
) -> BoolMap:
    """Pixels whose flow is forward-backward consistent and that lie inside the border mask.

    Args:
        flow: ``float32[H, W, 2]`` flow from this frame to the partner.
        flow_back: ``float32[H, W, 2]`` the partner's flow back, on the partner's grid.
        cfg: tolerances (``fb_abs``, ``fb_rel``) and border fractions.

    Returns:
        ``bool[H, W]`` (what :attr:`~vcups_core.cues.base.FrameCues.valid` holds).
    """
    _check(flow, flow_back, cfg.fb_abs, cfg.fb_rel)
    height, width = flow.shape[:2]
    valid = border_mask(
        height, width, sides=cfg.border_sides, top=cfg.border_top, bottom=cfg.border_bottom
    )
    # the consistency test inside the border only (outside, the mask is False anyway)
    s = _pixels(cfg.border_sides, width, "sides", 0.5)
    rows = slice(
        _pixels(cfg.border_top, height, "top", 1.0),
        height - _pixels(cfg.border_bottom, height, "bottom", 1.0),
    )
    cols = slice(s, width - s)
    if rows.start < rows.stop and cols.start < cols.stop:
        valid[rows, cols] = _consistent(flow, flow_back, cfg.fb_abs, cfg.fb_rel, rows, cols)
    return valid
