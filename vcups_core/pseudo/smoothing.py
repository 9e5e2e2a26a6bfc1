"""Temporal smoothing of semantic pseudo-label probabilities (method §2.2 step 3).

The supplement only says "temporal semantic smoothing over a three-frame sliding window"; the
operator is a GUESS (method §2.2): for frame ``t`` the class probabilities of frames ``t - 1``
and ``t + 1`` are brought onto frame ``t``'s grid by backward warping with the flows
``t → t - 1`` and ``t → t + 1`` (bilinear, :func:`vcups_core.cues.flow.warp`, the project's one
warp), and per pixel the current probabilities and the *valid* warped neighbours are averaged.
The pseudo-class is the argmax of the average (left to the caller).

A neighbour's warp is invalid where its sample point leaves the image or the flow is NaN, where
the flow fails the forward-backward check against the neighbour's flow back (occlusion,
:func:`vcups_core.cues.validity.forward_backward_valid`), where an extra validity mask says so,
or where the warped probabilities are not finite. Invalid neighbours do not vote, so an occluded
pixel keeps its own frame's prediction (the occlusion-aware fallback to the current frame); the
first and last frame of a clip are averaged with their one neighbour.

:func:`smooth_probabilities` smooths one frame given its neighbours; :class:`TemporalSmoother`
does the same over a stream with one frame of delay, holding at most two frames.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt

from vcups_core.configs.pseudo_labels import ValiditySection
from vcups_core.cues.flow import warp
from vcups_core.cues.validity import forward_backward_valid

FloatArray = npt.NDArray[np.float32]
BoolMap = npt.NDArray[np.bool_]

_VALIDITY_DEFAULTS = ValiditySection()
DEFAULT_FB_ABS: float = _VALIDITY_DEFAULTS.fb_abs
"""Forward-backward tolerance (px), the pseudo-label config's ``validity.fb_abs`` default."""
DEFAULT_FB_REL: float = _VALIDITY_DEFAULTS.fb_rel
"""Tolerance per pixel of flow magnitude, the config's ``validity.fb_rel`` default."""


def _check_flow(flow: npt.NDArray[Any], hw: tuple[int, ...], what: str) -> None:
    if flow.ndim != 3 or flow.shape[2] != 2 or flow.shape[:2] != hw:
        raise ValueError(f"{what} must be [H, W, 2] with H, W = {list(hw)}, got {list(flow.shape)}")


def _check_probs(probs: npt.NDArray[Any], what: str) -> None:
    if probs.ndim != 3 or min(probs.shape) < 1:
        raise ValueError(f"{what} must be [C, H, W], got {list(probs.shape)}")


def warp_probabilities(probs_prev: npt.NDArray[Any], flow_to_prev: npt.NDArray[Any]) -> FloatArray:
    """Bring a neighbour frame's class probabilities onto this frame's grid (backward warping).

    ``out[c, y, x] = probs_prev[c, y + f_y, x + f_x]`` with ``f = flow_to_prev[y, x]``, bilinear
    (:func:`~vcups_core.cues.flow.warp`). Works for either neighbour: pass the next frame's
    probabilities and the flow to the next frame the same way.

    Args:
        probs_prev: ``float32[C, H, W]`` probabilities on the neighbour's grid.
        flow_to_prev: ``float32[H, W, 2]`` flow from this frame to the neighbour (``(dx, dy)``,
            pixels; :mod:`vcups_core.cues.base` conventions).

    Returns:
        ``float32[C, H, W]``; NaN where the sample point leaves the image or the flow is NaN
        (see :func:`warp_validity` for the full validity).

    Raises:
        ValueError: if the shapes do not match.
    """
    probs = np.asarray(probs_prev, dtype=np.float32)
    flow = np.asarray(flow_to_prev, dtype=np.float32)
    _check_probs(probs, "probs_prev")
    _check_flow(flow, probs.shape[1:], "flow_to_prev")
    # one [H, W] warp per class: OpenCV's remap interpolates 1-, 3- and 4-channel float images
    # exactly, other channel counts with sample points rounded to 1/32 pixel (measured: up to
    # 0.023 off on random probabilities with 27 channels); per class it is exact, as fast, and
    # needs no channel-last copies
    out: FloatArray = np.empty(probs.shape, np.float32)
    for c in range(probs.shape[0]):
        out[c] = warp(probs[c], flow)
    return out


def warp_validity(
    flow_to_neighbour: npt.NDArray[Any],
    flow_neighbour_to_this: npt.NDArray[Any] | None = None,
    *,
    fb_abs: float = DEFAULT_FB_ABS,
    fb_rel: float = DEFAULT_FB_REL,
) -> BoolMap:
    """Where the warp of :func:`warp_probabilities` can be trusted.

    Always: the sample point ``x + flow`` lies inside the image (within the outer pixel edges,
    as in :func:`~vcups_core.cues.flow.warp`) and the flow is finite. With the neighbour's flow
    back: also forward-backward consistent (:func:`~vcups_core.cues.validity.
    forward_backward_valid` with ``fb_abs``, ``fb_rel``), which rejects occluded pixels.

    Args:
        flow_to_neighbour: ``float32[H, W, 2]`` flow from this frame to the neighbour.
        flow_neighbour_to_this: ``float32[H, W, 2]`` the neighbour's flow back to this frame, on
            the neighbour's grid, or None (no consistency check).
        fb_abs, fb_rel: forward-backward tolerances (defaults: the config's ``validity``).

    Returns:
        ``bool[H, W]``, True = the warped neighbour may vote at this pixel.

    Raises:
        ValueError: if the shapes are wrong.
    """
    flow = np.asarray(flow_to_neighbour, dtype=np.float32)
    _check_flow(flow, flow.shape[:2], "flow_to_neighbour")
    if flow_neighbour_to_this is not None:
        back = np.asarray(flow_neighbour_to_this, dtype=np.float32)
        _check_flow(back, flow.shape[:2], "flow_neighbour_to_this")
        return forward_backward_valid(flow, back, fb_abs=fb_abs, fb_rel=fb_rel)
    h, w = flow.shape[:2]
    x = np.arange(w, dtype=np.float32)[None, :] + flow[..., 0]
    y = np.arange(h, dtype=np.float32)[:, None] + flow[..., 1]
    # NaN compares False, so a NaN flow is invalid
    valid: BoolMap = (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)
    return valid


@dataclasses.dataclass(frozen=True)
class Neighbour:
    """A neighbour frame as seen from the frame being smoothed.

    Attributes:
        probs: ``float32[C, H, W]`` the neighbour's probabilities on its own grid.
        flow: ``float32[H, W, 2]`` flow from the frame being smoothed to the neighbour.
        flow_back: ``float32[H, W, 2]`` the neighbour's flow back, on its grid, or None (then
            no forward-backward check).
        valid: ``bool[H, W]`` an extra mask on the smoothed frame's grid (e.g. a precomputed
            validity), or None.
    """

    probs: npt.NDArray[Any]
    flow: npt.NDArray[Any]
    flow_back: npt.NDArray[Any] | None = None
    valid: npt.NDArray[np.bool_] | None = None


def smooth_probabilities(
    current: npt.NDArray[Any],
    prev: Neighbour | None = None,
    next: Neighbour | None = None,  # the frame after (shadows the builtin here only)
    *,
    fb_abs: float = DEFAULT_FB_ABS,
    fb_rel: float = DEFAULT_FB_REL,
) -> FloatArray:
    """Average of the current probabilities and the valid warped neighbours, per pixel.

    ``out = (p_t + [v_prev] · W(p_{t-1}) + [v_next] · W(p_{t+1})) / (1 + [v_prev] + [v_next])``
    with ``W`` = :func:`warp_probabilities` and ``v`` = :func:`warp_validity` (and the
    neighbour's ``valid`` mask, and finite warped values). A missing neighbour (None: the first
    or last frame, or no flow across a cut) does not vote anywhere.

    Args:
        current: ``float32[C, H, W]`` this frame's probabilities.
        prev, next: the neighbours (:class:`Neighbour`), or None.
        fb_abs, fb_rel: forward-backward tolerances (defaults: the config's ``validity``).

    Returns:
        ``float32[C, H, W]`` smoothed probabilities (a distribution where the inputs are).

    Raises:
        ValueError: if the shapes do not match.
    """
    cur = np.asarray(current, dtype=np.float32)
    _check_probs(cur, "current")
    total = cur.copy()
    votes = np.ones(cur.shape[1:], np.float32)
    for name, neighbour in (("prev", prev), ("next", next)):
        if neighbour is None:
            continue
        probs = np.asarray(neighbour.probs, dtype=np.float32)
        if probs.shape != cur.shape:
            raise ValueError(
                f"{name}.probs {list(probs.shape)} must match current {list(cur.shape)}"
            )
        warped = warp_probabilities(probs, neighbour.flow)
        valid = warp_validity(neighbour.flow, neighbour.flow_back, fb_abs=fb_abs, fb_rel=fb_rel)
        if neighbour.valid is not None:
            mask = np.asarray(neighbour.valid, dtype=bool)
            if mask.shape != valid.shape:
                raise ValueError(
                    f"{name}.valid {list(mask.shape)} must be [H, W] = {list(valid.shape)}"
                )
            valid &= mask
        valid &= np.isfinite(warped).all(axis=0)
        np.add(total, warped, out=total, where=valid[None])
        votes += valid
    total /= votes[None]
    return total


class TemporalSmoother:
    """:func:`smooth_probabilities` over a stream of frames, one frame behind.

    Push the frames of one clip in order; each push returns the smoothed probabilities of the
    *previous* frame (its next neighbour has just arrived), the first push returns None, and
    :meth:`flush` returns the last frame (smoothed with its previous neighbour only) and resets.
    The state is two frames' probabilities and one pair of flows, whatever the clip length. The
    results equal :func:`smooth_probabilities` on the whole clip.

    Args:
        fb_abs, fb_rel: forward-backward tolerances (defaults: the config's ``validity``).
    """

    def __init__(self, *, fb_abs: float = DEFAULT_FB_ABS, fb_rel: float = DEFAULT_FB_REL) -> None:
        if fb_abs < 0 or fb_rel < 0:
            raise ValueError(f"fb_abs and fb_rel must be >= 0, got {fb_abs}, {fb_rel}")
        self.fb_abs, self.fb_rel = fb_abs, fb_rel
        self._prev_neighbour: Neighbour | None = None  # frame t-2 as seen from frame t-1
        self._pending: FloatArray | None = None  # frame t-1's probabilities (not yet smoothed)

    def reset(self) -> None:
        """Forget the clip (call at a sequence boundary; :meth:`flush` first to get its last
        frame)."""
        self._prev_neighbour = None
        self._pending = None

    def push(
        self,
        probs: npt.NDArray[Any],
        flow_to_prev: npt.NDArray[Any] | None = None,
        flow_prev_to_this: npt.NDArray[Any] | None = None,
        *,
        valid_to_prev: npt.NDArray[np.bool_] | None = None,
        valid_prev_to_this: npt.NDArray[np.bool_] | None = None,
    ) -> FloatArray | None:
        """Add frame ``t`` and return the smoothed frame ``t - 1`` (None for the first frame).

        Args:
            probs: ``float32[C, H, W]`` frame ``t``'s probabilities.
            flow_to_prev: ``float32[H, W, 2]`` flow ``t → t - 1`` on frame ``t``'s grid (warps
                frame ``t - 1`` onto ``t``). None: frame ``t - 1`` does not vote for ``t``.
            flow_prev_to_this: ``float32[H, W, 2]`` flow ``t - 1 → t`` on frame ``t - 1``'s grid
                (warps frame ``t`` onto ``t - 1``). None: frame ``t`` does not vote for ``t - 1``.
                With both flows, each warp is forward-backward checked against the other.
            valid_to_prev: optional ``bool[H, W]`` extra mask for the warp along
                ``flow_to_prev``.
            valid_prev_to_this: optional ``bool[H, W]`` extra mask for the warp along
                ``flow_prev_to_this``.

        Both flows are ignored on the first frame of a clip.

        Returns:
            ``float32[C, H, W]`` smoothed probabilities of frame ``t - 1``, or None.
        """
        current = np.asarray(probs, dtype=np.float32)
        _check_probs(current, "probs")
        for what, flow in (
            ("flow_to_prev", flow_to_prev),
            ("flow_prev_to_this", flow_prev_to_this),
        ):
            if flow is not None:
                _check_flow(np.asarray(flow), current.shape[1:], what)
        pending = self._pending
        if pending is None:
            self._pending = current
            self._prev_neighbour = None
            return None
        if current.shape != pending.shape:
            raise ValueError(
                f"probs {list(current.shape)} differ from the previous frame's "
                f"{list(pending.shape)}; reset() between clips of different sizes"
            )
        next_of_pending = (
            None
            if flow_prev_to_this is None
            else Neighbour(current, flow_prev_to_this, flow_to_prev, valid_prev_to_this)
        )
        smoothed = smooth_probabilities(
            pending,
            self._prev_neighbour,
            next_of_pending,
            fb_abs=self.fb_abs,
            fb_rel=self.fb_rel,
        )
        self._prev_neighbour = (
            None
            if flow_to_prev is None
            else Neighbour(pending, flow_to_prev, flow_prev_to_this, valid_to_prev)
        )
        self._pending = current
        return smoothed

    def flush(self) -> FloatArray | None:
        """The smoothed last frame (None if nothing is pending); the smoother is then reset."""
        pending = self._pending
        if pending is None:
            return None
        smoothed = smooth_probabilities(
            pending, self._prev_neighbour, None, fb_abs=self.fb_abs, fb_rel=self.fb_rel
        )
        self.reset()
        return smoothed
