"""Joint pixel histogram of one frame: the only per-pixel work the video metrics do.

STQ, AQ, SQ and VPQ are all functions of how many pixels each combination
``(gt_sem, gt_inst, pred_sem, pred_inst)`` covers in a frame, so a frame is scanned once into a
:class:`JointHistogram` (typically tens to hundreds of rows) and the metrics work on that table.

Speed: label maps are piecewise constant, so the frame is run-length encoded first. Four
vectorised ``!=`` comparisons of each flattened array with itself shifted by one pixel mark where
any of the four ids changes; only the run starts (a few percent of the pixels on real label maps)
are gathered, validated and counted, weighted by run length. On 1024x2048 driving-like maps that
costs under two ``np.bincount`` passes over the frame (``benchmarks/bench_metrics.py``). Frames
with more runs than ``max_run_fraction`` of the pixels (noise-like maps, where run-length coding
stops paying off) are counted pixel by pixel instead. Both paths give identical tables and
identical validation errors (the first offending value in raster order, or the min / max).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vcups_core.types import DEFAULT_LABEL_BIT_SHIFT, IGNORE_LABEL

IntArray = npt.NDArray[np.integer]
I64 = npt.NDArray[np.int64]

ARRAY_NAMES = ("gt_sem", "gt_inst", "pred_sem", "pred_inst")
"""Names of the four input arrays, as used in error messages."""

_LUT_IDS = 1 << 22  # ids below this are compacted with a lookup table, larger ones by np.unique
_DIRECT_BINS = 1 << 20  # code spaces up to this size are counted with np.bincount, larger by sort


@dataclass(frozen=True)
class JointHistogram:
    """Pixel counts of every ``(gt_sem, gt_inst, pred_sem, pred_inst)`` present in a frame.

    Rows are unique, sorted by ``(gt_sem, pred_sem, gt_inst, pred_inst)`` with void last, and every
    ``count`` is positive. Void pixels keep the ignore label as semantic id and their instance id
    as given: what void, stuff and instance 0 mean is each metric's business.

    Attributes:
        gt_sem, gt_inst, pred_sem, pred_inst: ``int64[M]`` ids of each row.
        count: ``int64[M]`` pixels of each row.
        num_pixels: pixels of the frame (``count.sum()``).
        num_classes: class count the ids were validated against.
        ignore_label: the void semantic id.
    """

    gt_sem: I64
    gt_inst: I64
    pred_sem: I64
    pred_inst: I64
    count: I64
    num_pixels: int
    num_classes: int
    ignore_label: int


def check_label_params(num_classes: int, ignore_label: int, label_bit_shift: int) -> None:
    """Validate the label-space arguments every metric shares.

    Raises:
        ValueError: unless ``1 <= num_classes <= 4096``, ``num_classes <= ignore_label < 2**16``
            and ``1 <= label_bit_shift <= 31``.
    """
    if not 1 <= num_classes <= 4096:
        raise ValueError(f"num_classes must be in [1, 4096], got {num_classes}")
    if not num_classes <= ignore_label < (1 << 16):
        raise ValueError(
            f"ignore_label must be in [num_classes={num_classes}, 65536) so that void is not a "
            f"class, got {ignore_label}"
        )
    if not 1 <= label_bit_shift <= 31:
        raise ValueError(f"label_bit_shift must be in [1, 31], got {label_bit_shift}")


def check_things(things: Iterable[int], num_classes: int) -> frozenset[int]:
    """Validate thing class ids and return them as a frozenset.

    Raises:
        ValueError: if ``things`` is not an iterable of ints in ``[0, num_classes)``.
    """
    try:
        ids = frozenset(int(t) for t in things)
    except TypeError:
        raise ValueError(f"things must be an iterable of class ids, got {things!r}") from None
    bad = sorted(i for i in ids if not 0 <= i < num_classes)
    if bad:
        raise ValueError(f"things contains {bad[0]}, expected class ids in [0, {num_classes})")
    return ids


def as_frames(
    gt_sem: IntArray, gt_inst: IntArray, pred_sem: IntArray, pred_inst: IntArray
) -> list[tuple[IntArray, IntArray, IntArray, IntArray]]:
    """Split ``[H, W]`` or ``[T, H, W]`` inputs into a list of ``[H, W]`` frames (views).

    Raises:
        ValueError: naming the array whose dtype or shape is wrong.
    """
    arrays = [np.asarray(a) for a in (gt_sem, gt_inst, pred_sem, pred_inst)]
    _check_arrays(arrays)
    shape = arrays[0].shape
    if len(shape) not in (2, 3):
        raise ValueError(f"gt_sem must be [H, W] or [T, H, W], got shape {shape}")
    if len(shape) == 2:
        return [(arrays[0], arrays[1], arrays[2], arrays[3])]
    return [(arrays[0][t], arrays[1][t], arrays[2][t], arrays[3][t]) for t in range(shape[0])]


def _check_arrays(arrays: Sequence[npt.NDArray[np.generic]]) -> None:
    for name, arr in zip(ARRAY_NAMES, arrays, strict=True):
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must be an integer array, got dtype {arr.dtype}")
        if arr.shape != arrays[0].shape:
            raise ValueError(f"{name} shape {arr.shape} != gt_sem shape {arrays[0].shape}")


class HistogramBuilder:
    """Validates frames and computes their :class:`JointHistogram`, reusing scratch buffers.

    A builder keeps two bytes of scratch per pixel of the largest frame seen (fresh buffers per
    frame would cost page faults comparable to the comparisons themselves).

    Args:
        num_classes: semantic ids must be in ``[0, num_classes)`` or equal ``ignore_label``.
        ignore_label: void semantic id, ``>= num_classes``.
        label_bit_shift: instance ids must be ``< 2**label_bit_shift``.
        max_run_fraction: use the run-length path while runs are at most this fraction of the
            pixels (``0`` forces the pixel path, ``1`` the run path; both give the same table).

    Raises:
        ValueError: on invalid arguments (see :func:`check_label_params`).
    """

    def __init__(
        self,
        num_classes: int,
        ignore_label: int = IGNORE_LABEL,
        label_bit_shift: int = DEFAULT_LABEL_BIT_SHIFT,
        max_run_fraction: float = 0.5,
    ) -> None:
        check_label_params(num_classes, ignore_label, label_bit_shift)
        if not 0.0 <= max_run_fraction <= 1.0:
            raise ValueError(f"max_run_fraction must be in [0, 1], got {max_run_fraction}")
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.label_bit_shift = label_bit_shift
        self.max_run_fraction = max_run_fraction
        self._changed: npt.NDArray[np.bool_] = np.zeros(0, np.bool_)
        self._scratch: npt.NDArray[np.bool_] = np.zeros(0, np.bool_)

    def release(self) -> None:
        """Drop the scratch buffers (they are re-allocated by the next frame)."""
        self._changed = np.zeros(0, np.bool_)
        self._scratch = np.zeros(0, np.bool_)

    def __call__(
        self, gt_sem: IntArray, gt_inst: IntArray, pred_sem: IntArray, pred_inst: IntArray
    ) -> JointHistogram:
        """Histogram of one frame.

        Args:
            gt_sem, gt_inst, pred_sem, pred_inst: integer arrays of one shape (``[H, W]`` in
                practice; any shape is flattened), semantic ids in ``[0, num_classes)`` or the
                ignore label, instance ids in ``[0, 2**label_bit_shift)``.

        Raises:
            ValueError: naming the array and the offending dtype, shape or value.
        """
        arrays = [np.asarray(a) for a in (gt_sem, gt_inst, pred_sem, pred_inst)]
        _check_arrays(arrays)
        flat = [a.reshape(-1) for a in arrays]
        n = flat[0].size
        starts = self._run_starts(flat)
        if starts is None:
            return self._aggregate(flat, None, n)
        lengths = np.diff(starts, append=n)
        return self._aggregate([a.take(starts) for a in flat], lengths, n)

    def _run_starts(self, flat: list[IntArray]) -> I64 | None:
        """Indices where any of the four ids differs from the previous pixel (plus 0).

        Returns None when the runs exceed ``max_run_fraction`` of the pixels.
        """
        n = flat[0].size
        if n == 0:
            return np.zeros(0, np.int64)
        if self.max_run_fraction == 0.0:
            return None
        if self._changed.size < n - 1:
            self._changed = np.empty(n - 1, np.bool_)
            self._scratch = np.empty(n - 1, np.bool_)
        changed, scratch = self._changed[: n - 1], self._scratch[: n - 1]
        np.not_equal(flat[0][1:], flat[0][:-1], out=changed)
        for arr in flat[1:]:
            np.not_equal(arr[1:], arr[:-1], out=scratch)
            np.logical_or(changed, scratch, out=changed)
        runs = int(np.count_nonzero(changed)) + 1
        if runs > self.max_run_fraction * n:
            return None
        starts = np.empty(runs, np.int64)
        starts[0] = 0
        starts[1:] = np.flatnonzero(changed)
        starts[1:] += 1
        return starts

    def _check_semantic(self, values: IntArray, name: str) -> None:
        if values.size == 0:
            return
        c, ignore = self.num_classes, self.ignore_label
        if int(values.min()) >= 0 and int(values.max()) < c:
            return
        bad = values[((values < 0) | (values >= c)) & (values != ignore)]
        if bad.size:
            value = int(bad[0])
            if value < 0:
                raise ValueError(f"{name} contains {value}, ids must be >= 0")
            raise ValueError(
                f"{name} contains {value}, expected a class id in [0, {c}) or the ignore label "
                f"{ignore}"
            )

    def _check_instance(self, values: IntArray, name: str) -> int:
        """Largest id of ``values`` (0 if empty), after checking the range."""
        if values.size == 0:
            return 0
        lo, hi = int(values.min()), int(values.max())
        if lo < 0:
            raise ValueError(f"{name} contains {lo}, ids must be >= 0")
        if hi >= (1 << self.label_bit_shift):
            raise ValueError(
                f"{name} contains {hi}, instance ids must be < 2**{self.label_bit_shift}"
            )
        return hi

    def _aggregate(self, values: list[IntArray], weights: I64 | None, n: int) -> JointHistogram:
        """Validate ``values`` (per pixel or per run) and sum ``weights`` (1 per pixel) per row."""
        gs, gi, ps, pi = values
        self._check_semantic(gs, "gt_sem")
        gi_max = self._check_instance(gi, "gt_inst")
        self._check_semantic(ps, "pred_sem")
        pi_max = self._check_instance(pi, "pred_inst")
        c, ignore, k = self.num_classes, self.ignore_label, self.num_classes + 1
        # Fold void onto class id c so that semantic ids are dense in [0, c].
        gs64 = np.where(gs == ignore, c, gs).astype(np.int64)
        ps64 = np.where(ps == ignore, c, ps).astype(np.int64)
        if k * k * (gi_max + 1) * (pi_max + 1) <= _DIRECT_BINS:  # ids index the code directly
            g_ids, g_idx = np.arange(gi_max + 1, dtype=np.int64), gi.astype(np.int64)
            p_ids, p_idx = np.arange(pi_max + 1, dtype=np.int64), pi.astype(np.int64)
        else:
            g_ids, g_idx = _compact(gi, gi_max)
            p_ids, p_idx = _compact(pi, pi_max)
        ng, np_ = len(g_ids), len(p_ids)
        code = ((gs64 * k + ps64) * ng + g_idx) * np_ + p_idx
        bins = k * k * ng * np_
        if bins <= _DIRECT_BINS:
            hist = np.bincount(code, weights=weights, minlength=bins)
            keys = np.flatnonzero(hist)
            count = np.rint(hist[keys]).astype(np.int64)
        else:
            keys, inverse = np.unique(code, return_inverse=True)
            summed = np.bincount(inverse.reshape(-1), weights=weights, minlength=len(keys))
            count = np.rint(summed).astype(np.int64)
        p_out = p_ids[keys % np_]
        rest = keys // np_
        g_out = g_ids[rest % ng]
        rest //= ng
        g_sem, p_sem = rest // k, rest % k
        g_sem[g_sem == c] = ignore
        p_sem[p_sem == c] = ignore
        return JointHistogram(
            g_sem.astype(np.int64), g_out, p_sem.astype(np.int64), p_out, count, n, c, ignore
        )


def _compact(ids: IntArray, max_id: int) -> tuple[I64, I64]:
    """Sorted distinct ``ids`` and each element's index into them."""
    if ids.size == 0:
        return np.zeros(1, np.int64), ids.astype(np.int64)
    if max_id < _LUT_IDS:
        present = np.bincount(ids.astype(np.intp, copy=False), minlength=max_id + 1) > 0
        lut = np.cumsum(present, dtype=np.int64) - 1
        return np.flatnonzero(present).astype(np.int64), lut.take(ids)
    distinct, inverse = np.unique(ids, return_inverse=True)
    return distinct.astype(np.int64), inverse.reshape(-1).astype(np.int64)


def joint_histogram(
    gt_sem: IntArray,
    gt_inst: IntArray,
    pred_sem: IntArray,
    pred_inst: IntArray,
    num_classes: int,
    ignore_label: int = IGNORE_LABEL,
    label_bit_shift: int = DEFAULT_LABEL_BIT_SHIFT,
) -> JointHistogram:
    """:class:`JointHistogram` of one frame with a throw-away :class:`HistogramBuilder`."""
    builder = HistogramBuilder(num_classes, ignore_label, label_bit_shift)
    return builder(gt_sem, gt_inst, pred_sem, pred_inst)
