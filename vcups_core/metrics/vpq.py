"""Video Panoptic Quality VPQ (Kim et al., CVPR 2020, VPSNet; deeplab2 ``video_panoptic_quality``).

For each window size ``k``, every run of ``k`` consecutive frames of a sequence (stride 1; a
sequence shorter than ``k`` has no window of that size) is scored like one image formed by
concatenating its frames, with COCO panoptic-quality rules:

* segments are ``(class, instance)`` tubes within the window: one segment per stuff class
  (instance ids ignored), one per instance id of a thing class. A ground-truth thing pixel with
  instance 0 is *crowd* of its class; a predicted thing pixel with instance 0 belongs to the
  ordinary predicted segment ``(class, 0)``. Void pixels form no segment.
* a predicted and a ground-truth segment of the same class match if
  ``IoU = |p ∩ g| / (|p| + |g| - |p ∩ g| - |p ∩ GT-void|) > 0.5`` (the part of ``p`` on void is
  not in the union); crowd segments are never matched.
* per class, over all windows of all sequences: TP count, sum of TP IoUs, FP (unmatched predicted
  segments, except those more than half of whose area lies on GT void plus GT crowd of their own
  class) and FN (unmatched non-crowd ground-truth segments).
* ``PQ_c = ΣIoU / (TP + FP/2 + FN/2)``, ``SQ_c = ΣIoU / TP`` (0 without TP),
  ``RQ_c = TP / (TP + FP/2 + FN/2)``; means run over classes with ``TP + FP + FN > 0``, split into
  things and stuff; a mean over no class is 0. ``VPQ`` is the mean of ``PQ`` over the window
  sizes (likewise ``VPQ_things`` and ``VPQ_stuff``).

Window statistics are sums of per-frame statistics (segment keys are the same in every frame),
so each frame is scanned once into a table of ``(gt segment, predicted segment) -> pixels`` and
only the tables of the last ``max(window_sizes)`` frames of the current sequence are kept.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import numpy.typing as npt

from vcups_core.metrics.histogram import (
    HistogramBuilder,
    IntArray,
    JointHistogram,
    as_frames,
    check_label_params,
    check_things,
)
from vcups_core.types import DEFAULT_LABEL_BIT_SHIFT, IGNORE_LABEL

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

VOID_KEY = -1
"""Segment key of void pixels (ground truth or prediction) in the per-frame tables."""

_NO_SEQUENCE = (
    object()
)  # current sequence before the first frame (any hashable, None too, is valid)


class WindowResult(TypedDict):
    """Scores of one window size."""

    PQ: float
    SQ: float
    RQ: float
    PQ_things: float
    SQ_things: float
    RQ_things: float
    PQ_stuff: float
    SQ_stuff: float
    RQ_stuff: float
    per_class: F64
    """``float64[num_classes, 3]``: columns PQ, SQ, RQ; 0 for classes not counted."""
    counted: npt.NDArray[np.bool_]
    """``bool[num_classes]``: classes with ``TP + FP + FN > 0`` (those entering the means)."""
    tp: I64
    fp: I64
    fn: I64
    num_windows: int


class VPQResult(TypedDict):
    """Result of :meth:`VideoPanopticQuality.result`."""

    VPQ: float
    VPQ_things: float
    VPQ_stuff: float
    per_window: dict[int, WindowResult]


@dataclass(frozen=True)
class _PairTable:
    """Pixels per ``(gt segment key, predicted segment key)`` of one frame or window."""

    gt: I64
    pred: I64
    count: I64


def _sum_pairs(gt: I64, pred: I64, count: I64) -> _PairTable:
    """Merge rows with equal ``(gt, pred)`` keys, summing their counts."""
    if gt.size == 0:
        return _PairTable(gt, pred, count)
    g_keys, g_idx = np.unique(gt, return_inverse=True)
    p_keys, p_idx = np.unique(pred, return_inverse=True)
    pair = g_idx.reshape(-1) * len(p_keys) + p_idx.reshape(-1)
    keys, inverse = np.unique(pair, return_inverse=True)
    summed = np.bincount(inverse.reshape(-1), weights=count, minlength=len(keys))
    return _PairTable(
        g_keys[keys // len(p_keys)], p_keys[keys % len(p_keys)], np.rint(summed).astype(np.int64)
    )


class VideoPanopticQuality:
    """Streaming VPQ over the frames of one or more sequences (see module docstring).

    Args:
        num_classes: number of classes (ids ``0..num_classes-1``).
        things: thing classes (instances are segments); all other classes are stuff.
        ignore_label: void semantic id, ``>= num_classes``.
        window_sizes: distinct positive window lengths in frames.
        label_bit_shift: instance ids must be ``< 2**label_bit_shift``.

    Raises:
        ValueError: on invalid arguments.
    """

    def __init__(
        self,
        num_classes: int,
        things: Iterable[int],
        ignore_label: int = IGNORE_LABEL,
        window_sizes: Iterable[int] = (1, 2, 3, 4),
        label_bit_shift: int = DEFAULT_LABEL_BIT_SHIFT,
    ) -> None:
        check_label_params(num_classes, ignore_label, label_bit_shift)
        sizes = tuple(int(k) for k in window_sizes)
        if not sizes or any(k < 1 for k in sizes) or len(set(sizes)) != len(sizes):
            raise ValueError(f"window_sizes must be distinct positive ints, got {sizes}")
        self.num_classes = num_classes
        self.things = check_things(things, num_classes)
        self.ignore_label = ignore_label
        self.window_sizes = sizes
        self.label_bit_shift = label_bit_shift
        self._is_thing = np.zeros(num_classes + 1, np.bool_)  # index num_classes = void
        self._is_thing[list(self.things)] = True
        self._builder = HistogramBuilder(num_classes, ignore_label, label_bit_shift)
        self.reset()

    def reset(self) -> None:
        """Forget every accumulated window, frame and sequence."""
        shape = (len(self.window_sizes), self.num_classes)
        self._tp = np.zeros(shape, np.int64)
        self._fp = np.zeros(shape, np.int64)
        self._fn = np.zeros(shape, np.int64)
        self._iou = np.zeros(shape, np.float64)
        self._num_windows = np.zeros(len(self.window_sizes), np.int64)
        self._recent: deque[_PairTable] = deque(maxlen=max(self.window_sizes))
        self._current: Hashable = _NO_SEQUENCE
        self._finished: set[Hashable] = set()
        self._builder.release()

    def update(
        self,
        gt_sem: IntArray,
        gt_inst: IntArray,
        pred_sem: IntArray,
        pred_inst: IntArray,
        sequence_id: Hashable = 0,
    ) -> None:
        """Accumulate the next frame ``[H, W]`` (or next frames ``[T, H, W]``) of a sequence.

        The frames of a sequence must arrive in order and contiguously: once another sequence
        has started, an earlier one cannot continue.

        Raises:
            ValueError: naming the array and the offending value, or on a resumed sequence. A
                failing block adds none of its frames.
        """
        self._check_sequence(sequence_id)
        frames = as_frames(gt_sem, gt_inst, pred_sem, pred_inst)
        hists = [self._builder(*frame) for frame in frames]
        for hist in hists:
            self.update_histogram(hist, sequence_id)

    def _check_sequence(self, sequence_id: Hashable) -> None:
        if sequence_id != self._current and sequence_id in self._finished:
            raise ValueError(
                f"sequence {sequence_id!r} resumed after sequence {self._current!r}; VPQ needs "
                "the frames of each sequence in order and contiguous"
            )

    def update_histogram(self, hist: JointHistogram, sequence_id: Hashable = 0) -> None:
        """Accumulate the next frame given as its :class:`JointHistogram` (shared with STQ).

        Raises:
            ValueError: on a resumed sequence or a histogram of another label space.
        """
        if (hist.num_classes, hist.ignore_label) != (self.num_classes, self.ignore_label):
            raise ValueError(
                f"histogram built for num_classes={hist.num_classes}, ignore_label="
                f"{hist.ignore_label}; this metric has {self.num_classes}, {self.ignore_label}"
            )
        self._check_sequence(sequence_id)
        if sequence_id != self._current:
            if self._current is not _NO_SEQUENCE:
                self._finished.add(self._current)
            self._current = sequence_id
            self._recent.clear()
        self._recent.append(self._frame_table(hist))
        for w, k in enumerate(self.window_sizes):
            if len(self._recent) < k:
                continue
            window = list(self._recent)[-k:]
            table = _sum_pairs(
                np.concatenate([t.gt for t in window]),
                np.concatenate([t.pred for t in window]),
                np.concatenate([t.count for t in window]),
            )
            self._score_window(table, w)

    def _frame_table(self, hist: JointHistogram) -> _PairTable:
        """Segment keys of a frame: ``(class << shift) + instance`` (stuff: instance 0), or void."""
        c, shift = self.num_classes, self.label_bit_shift
        keys = []
        for sem, inst in ((hist.gt_sem, hist.gt_inst), (hist.pred_sem, hist.pred_inst)):
            cls = np.where(sem == self.ignore_label, c, sem)
            key = (sem << shift) + np.where(self._is_thing[cls], inst, 0)
            keys.append(np.where(cls == c, VOID_KEY, key))
        return _sum_pairs(keys[0], keys[1], hist.count)

    def _score_window(self, table: _PairTable, w: int) -> None:
        """Match the segments of one window and add its TP/FP/FN/IoU to window size index ``w``."""
        c, shift = self.num_classes, self.label_bit_shift
        self._num_windows[w] += 1
        g, p, n = table.gt, table.pred, table.count
        g_cls = np.where(g == VOID_KEY, c, g >> shift)
        p_cls = np.where(p == VOID_KEY, c, p >> shift)
        g_keys, g_idx = np.unique(g, return_inverse=True)
        p_keys, p_idx = np.unique(p, return_inverse=True)
        g_idx, p_idx = g_idx.reshape(-1), p_idx.reshape(-1)
        g_area = np.bincount(g_idx, weights=n, minlength=len(g_keys))
        p_area = np.bincount(p_idx, weights=n, minlength=len(p_keys))
        g_void = g == VOID_KEY
        g_crowd = ~g_void & self._is_thing[g_cls] & ((g & ((1 << shift) - 1)) == 0)
        on_void = np.bincount(p_idx[g_void], weights=n[g_void], minlength=len(p_keys))
        own_crowd = g_crowd & (g_cls == p_cls)
        on_crowd = np.bincount(p_idx[own_crowd], weights=n[own_crowd], minlength=len(p_keys))

        candidate = ~g_void & ~g_crowd & (p != VOID_KEY) & (g_cls == p_cls)
        union = g_area[g_idx] + p_area[p_idx] - n - on_void[p_idx]
        iou = np.divide(n, union, out=np.zeros(len(n)), where=candidate)
        match = candidate & (iou > 0.5)
        m_cls = g_cls[match]
        self._tp[w] += np.bincount(m_cls, minlength=c)[:c]
        self._iou[w] += np.bincount(m_cls, weights=iou[match], minlength=c)[:c]

        gt_matched = np.zeros(len(g_keys), np.bool_)
        gt_matched[g_idx[match]] = True
        g_key_cls = np.where(g_keys == VOID_KEY, c, g_keys >> shift)
        g_key_crowd = (
            (g_keys != VOID_KEY) & self._is_thing[g_key_cls] & ((g_keys & ((1 << shift) - 1)) == 0)
        )
        missed = ~gt_matched & (g_keys != VOID_KEY) & ~g_key_crowd
        self._fn[w] += np.bincount(g_key_cls[missed], minlength=c)[:c]

        pred_matched = np.zeros(len(p_keys), np.bool_)
        pred_matched[p_idx[match]] = True
        ignored = (on_void + on_crowd) / np.maximum(p_area, 1) > 0.5
        false_pos = ~pred_matched & (p_keys != VOID_KEY) & ~ignored
        p_key_cls = np.where(p_keys == VOID_KEY, c, p_keys >> shift)
        self._fp[w] += np.bincount(p_key_cls[false_pos], minlength=c)[:c]

    def result(self) -> VPQResult:
        """VPQ over everything accumulated, with per-window-size and per-class detail."""
        per_window: dict[int, WindowResult] = {}
        for w, k in enumerate(self.window_sizes):
            per_window[k] = self._window_result(w)
        sizes = len(self.window_sizes)
        return VPQResult(
            VPQ=sum(r["PQ"] for r in per_window.values()) / sizes,
            VPQ_things=sum(r["PQ_things"] for r in per_window.values()) / sizes,
            VPQ_stuff=sum(r["PQ_stuff"] for r in per_window.values()) / sizes,
            per_window=per_window,
        )

    def _window_result(self, w: int) -> WindowResult:
        tp = self._tp[w].astype(np.float64)
        fp, fn, iou = self._fp[w], self._fn[w], self._iou[w]
        counted = (self._tp[w] + fp + fn) > 0
        denom = tp + 0.5 * fp + 0.5 * fn
        pq = np.divide(iou, denom, out=np.zeros_like(tp), where=counted)
        sq = np.divide(iou, tp, out=np.zeros_like(tp), where=tp > 0)
        rq = np.divide(tp, denom, out=np.zeros_like(tp), where=counted)
        thing = self._is_thing[: self.num_classes]

        def mean(values: F64, select: npt.NDArray[np.bool_]) -> float:
            chosen = values[select & counted]
            return float(chosen.mean()) if chosen.size else 0.0

        every = np.ones(self.num_classes, np.bool_)
        return WindowResult(
            PQ=mean(pq, every),
            SQ=mean(sq, every),
            RQ=mean(rq, every),
            PQ_things=mean(pq, thing),
            SQ_things=mean(sq, thing),
            RQ_things=mean(rq, thing),
            PQ_stuff=mean(pq, ~thing),
            SQ_stuff=mean(sq, ~thing),
            RQ_stuff=mean(rq, ~thing),
            per_class=np.stack([pq, sq, rq], axis=1),
            counted=counted,
            tp=self._tp[w].copy(),
            fp=fp.copy(),
            fn=fn.copy(),
            num_windows=int(self._num_windows[w]),
        )
