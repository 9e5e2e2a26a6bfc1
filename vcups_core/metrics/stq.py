"""Segmentation and Tracking Quality STQ = sqrt(AQ * SQ) (Weber et al., NeurIPS 2021 D&B track).

By default the numbers equal those of deeplab2's numpy ``STQuality``
(``segmentation_and_tracking_quality.py``) exactly; two named options, ``pred_void`` and
``pred_tubes``, give the alternatives below. Frames are ``(gt_sem, gt_inst, pred_sem,
pred_inst)`` integer maps of one shape; classes are ``0..num_classes-1``, ``ignore_label`` is void,
``things`` are the tracked classes. Panoptic (tube) ids are ``(semantic << label_bit_shift) +
instance``.

**SQ** (segmentation quality, a mean IoU): one ``(num_classes + 1)``-square confusion (index
``num_classes`` is void) over all frames of all sequences; the void *row* (ground-truth void) is
dropped, so predictions on GT void count nowhere. ``IoU_c = TP / (TP + FP + FN)``; a labelled pixel
predicted as void is a false negative of its ground-truth class.

* ``pred_void="deeplab2"`` (default, the official code): the void *column* is an extra bin of the
  mean. Its TP and FN are 0 and its FP is the number of labelled pixels predicted void, so
  whenever some labelled pixel is predicted void it enters the mean with IoU 0:
  ``SQ = Σ_c IoU_c / (#{c: union_c > 0} + [some labelled pixel predicted void])``.
* ``pred_void="false_negative"``: predicted void is only a false negative; the mean runs over the
  real classes with a non-zero union (eq. 5 of the STQ supplement; ``docs/method.md`` §6.2). On
  the same counts this is the default's SQ times ``(n + 1) / n`` when void is predicted.

In both, a class that is predicted but absent from the ground truth has IoU 0 and counts.
``IoU_per_class`` holds the real classes only (the void bin's IoU is always 0).

**AQ** (association quality), per sequence:

* ground-truth tubes: distinct panoptic ids of pixels whose GT class is a thing and GT instance is
  not 0. GT thing pixels with instance 0 are *crowd*: ignored for AQ in ground truth and
  prediction alike (those pixels are removed from predicted tubes too).
* predicted tubes (``pred_tubes="deeplab2"``, default, exactly deeplab2): distinct panoptic ids of
  all pixels whose predicted class is a thing, except GT-crowd pixels. Predicted instance 0 forms
  a tube of its own, and predicted pixels on GT void or GT stuff count in the tube's size.
  ``pred_tubes="labelled"``: only pixels with predicted instance != 0 that lie on non-void GT
  (prediction on GT void is ignored, prediction on GT stuff still counts).
* Tubes are keyed by ``(class, instance)``, so an instance whose class flickers is several tubes.
* ``TPA(p, g) = |p ∩ g|``, ``IoU_id(p, g) = TPA / (|p| + |g| - TPA)``, and
  ``AQ = Σ_seq Σ_g (1/|g|) Σ_{p: TPA>0} TPA(p, g) IoU_id(p, g) / Σ_seq |G_seq|`` (pooled over the
  tubes of all sequences); ``AQ_per_seq`` divides by that sequence's tube count. Without any
  ground-truth tube AQ is 0 (as in deeplab2).

Memory: per sequence, one ``(num_classes + 1)**2`` confusion plus dicts of tube sizes and tube
intersections; never pixels.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Literal, TypedDict

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

PredTubeRule = Literal["deeplab2", "labelled"]
PredVoidRule = Literal["deeplab2", "false_negative"]
"""How SQ treats labelled pixels predicted as void (module docstring)."""
PRED_VOID_RULES: tuple[PredVoidRule, ...] = ("deeplab2", "false_negative")


class STQResult(TypedDict):
    """Result of :meth:`STQuality.result`; per-sequence dicts are keyed by sequence id."""

    STQ: float
    AQ: float
    SQ: float
    IoU_per_class: F64
    """``float64[num_classes]``; 0 for classes with zero union (as deeplab2)."""
    STQ_per_seq: dict[Hashable, float]
    AQ_per_seq: dict[Hashable, float]
    ID_per_seq: dict[Hashable, float]
    """Per-sequence mean IoU (SQ of that sequence alone); same values as ``IoU_per_seq``."""
    IoU_per_seq: dict[Hashable, float]
    Length_per_seq: dict[Hashable, int]


def iou_from_confusion(
    confusion: I64, num_classes: int, *, pred_void: PredVoidRule = "deeplab2"
) -> tuple[F64, float]:
    """Per-class IoU and their mean from a confusion with a void row and column.

    Args:
        confusion: ``int64[C + 1, C + 1]``, rows ground truth, columns prediction; index ``C`` is
            void. The void row is ignored; the void column counts as false negatives of the
            ground-truth classes.
        num_classes: ``C``.
        pred_void: ``"deeplab2"``: the void column is also an extra bin of the mean, with IoU 0,
            whenever it holds a pixel (deeplab2); ``"false_negative"``: it is not.

    Returns:
        ``(iou, mean)``: ``float64[C]`` IoU (0 where the union is 0) and the mean over classes
        with a non-zero union, plus the void bin under ``"deeplab2"`` (0 if there is none).
    """
    if pred_void not in PRED_VOID_RULES:
        raise ValueError(f"pred_void must be 'deeplab2' or 'false_negative', got {pred_void!r}")
    c = num_classes
    labelled = confusion[:c]
    tp = np.diagonal(labelled).astype(np.float64)
    fn = labelled.sum(axis=1) - tp  # includes pixels predicted void
    fp = labelled[:, :c].sum(axis=0) - tp
    union = tp + fp + fn
    present = union > 0
    iou = np.divide(tp, union, out=np.zeros(c, np.float64), where=present)
    counted = int(np.count_nonzero(present))
    if pred_void == "deeplab2" and labelled[:, c].sum() > 0:
        counted += 1  # the void bin: TP 0, FP = labelled pixels predicted void, IoU 0
    mean = float(iou[present].sum() / counted) if counted else 0.0
    return iou, mean


@dataclass
class _Sequence:
    """Accumulated statistics of one sequence."""

    confusion: I64
    gt_tubes: dict[int, int] = field(default_factory=dict)
    pred_tubes: dict[int, int] = field(default_factory=dict)
    overlaps: dict[tuple[int, int], int] = field(default_factory=dict)
    length: int = 0


def _add(target: dict[int, int], keys: I64, counts: I64) -> None:
    for key, n in zip(keys.tolist(), counts.tolist(), strict=True):
        target[key] = target.get(key, 0) + n


class STQuality:
    """Streaming STQ / AQ / SQ over frames of one or more sequences (see module docstring).

    Args:
        num_classes: number of classes (ids ``0..num_classes-1``).
        things: classes whose instances are tracked (AQ); KITTI-STEP uses ``{11, 13}``.
        ignore_label: void semantic id, ``>= num_classes``.
        label_bit_shift: panoptic id ``= (semantic << shift) + instance``; instance ids must be
            ``< 2**shift``.
        pred_tubes: ``"deeplab2"`` (default) or ``"labelled"``, see the module docstring.
        pred_void: ``"deeplab2"`` (default) or ``"false_negative"``: SQ's treatment of labelled
            pixels predicted void, see the module docstring.

    Raises:
        ValueError: on invalid arguments.
    """

    def __init__(
        self,
        num_classes: int,
        things: Iterable[int],
        ignore_label: int = IGNORE_LABEL,
        label_bit_shift: int = DEFAULT_LABEL_BIT_SHIFT,
        *,
        pred_tubes: PredTubeRule = "deeplab2",
        pred_void: PredVoidRule = "deeplab2",
    ) -> None:
        check_label_params(num_classes, ignore_label, label_bit_shift)
        if pred_tubes not in ("deeplab2", "labelled"):
            raise ValueError(f"pred_tubes must be 'deeplab2' or 'labelled', got {pred_tubes!r}")
        if pred_void not in PRED_VOID_RULES:
            raise ValueError(f"pred_void must be 'deeplab2' or 'false_negative', got {pred_void!r}")
        self.num_classes = num_classes
        self.things = check_things(things, num_classes)
        self.ignore_label = ignore_label
        self.label_bit_shift = label_bit_shift
        self.pred_tubes: PredTubeRule = pred_tubes
        self.pred_void: PredVoidRule = pred_void
        # is_thing[c] for c in 0..num_classes; index num_classes (void) is False.
        self._is_thing = np.zeros(num_classes + 1, np.bool_)
        self._is_thing[list(self.things)] = True
        self._builder = HistogramBuilder(num_classes, ignore_label, label_bit_shift)
        self._sequences: dict[Hashable, _Sequence] = {}

    def reset(self) -> None:
        """Forget every accumulated frame and sequence (and free the scratch buffers)."""
        self._sequences = {}
        self._builder.release()

    def update(
        self,
        gt_sem: IntArray,
        gt_inst: IntArray,
        pred_sem: IntArray,
        pred_inst: IntArray,
        sequence_id: Hashable = 0,
    ) -> None:
        """Accumulate one frame ``[H, W]`` or a block of frames ``[T, H, W]`` of a sequence.

        Args:
            gt_sem, gt_inst, pred_sem, pred_inst: integer arrays of one shape; semantic ids in
                ``[0, num_classes)`` or ``ignore_label``; instance ids in
                ``[0, 2**label_bit_shift)``.
            sequence_id: hashable id of the sequence the frames belong to; frames of different
                sequences may be interleaved.

        Raises:
            ValueError: naming the array and the offending value (shape mismatch, dtype,
                semantic id out of range, negative id, instance id too large). A failing block
                adds none of its frames.
        """
        frames = as_frames(gt_sem, gt_inst, pred_sem, pred_inst)
        hists = [self._builder(*frame) for frame in frames]
        for hist in hists:
            self.update_histogram(hist, sequence_id)

    def update_histogram(self, hist: JointHistogram, sequence_id: Hashable = 0) -> None:
        """Accumulate one frame given as its :class:`JointHistogram` (shared with VPQ).

        Raises:
            ValueError: if the histogram was built for other ``num_classes`` or ``ignore_label``.
        """
        if (hist.num_classes, hist.ignore_label) != (self.num_classes, self.ignore_label):
            raise ValueError(
                f"histogram built for num_classes={hist.num_classes}, ignore_label="
                f"{hist.ignore_label}; this metric has {self.num_classes}, {self.ignore_label}"
            )
        c, shift = self.num_classes, self.label_bit_shift
        seq = self._sequences.get(sequence_id)
        if seq is None:
            seq = self._sequences[sequence_id] = _Sequence(np.zeros((c + 1, c + 1), np.int64))
        seq.length += 1
        count = hist.count
        g_void = hist.gt_sem == self.ignore_label
        g_cls = np.where(g_void, c, hist.gt_sem)
        p_cls = np.where(hist.pred_sem == self.ignore_label, c, hist.pred_sem)
        np.add.at(seq.confusion, (g_cls, p_cls), count)

        g_thing = self._is_thing[g_cls]
        crowd = g_thing & (hist.gt_inst == 0)
        gt_tube = g_thing & ~crowd
        pred_tube = self._is_thing[p_cls] & ~crowd
        if self.pred_tubes == "labelled":
            pred_tube &= (hist.pred_inst != 0) & ~g_void
        gt_id = (hist.gt_sem << shift) + hist.gt_inst
        pred_id = (hist.pred_sem << shift) + hist.pred_inst
        _add(seq.gt_tubes, gt_id[gt_tube], count[gt_tube])
        _add(seq.pred_tubes, pred_id[pred_tube], count[pred_tube])
        both = gt_tube & pred_tube
        for g, p, n in zip(
            gt_id[both].tolist(), pred_id[both].tolist(), count[both].tolist(), strict=True
        ):
            seq.overlaps[g, p] = seq.overlaps.get((g, p), 0) + n

    def result(self) -> STQResult:
        """STQ, AQ, SQ over everything accumulated, plus per-class and per-sequence values.

        Per-sequence values of a sequence without ground-truth tubes have AQ 0, and without
        labelled pixels IoU 0 (deeplab2 divides by zero there).
        """
        c = self.num_classes
        total = np.zeros((c + 1, c + 1), np.int64)
        aq_sum_all, tubes_all = 0.0, 0
        stq_seq: dict[Hashable, float] = {}
        aq_seq: dict[Hashable, float] = {}
        iou_seq: dict[Hashable, float] = {}
        length: dict[Hashable, int] = {}
        for sid, seq in self._sequences.items():
            total += seq.confusion
            aq_sum = _association_sum(seq)
            aq_sum_all += aq_sum
            tubes_all += len(seq.gt_tubes)
            aq = aq_sum / len(seq.gt_tubes) if seq.gt_tubes else 0.0
            iou = iou_from_confusion(seq.confusion, c, pred_void=self.pred_void)[1]
            aq_seq[sid], iou_seq[sid], length[sid] = aq, iou, seq.length
            stq_seq[sid] = math.sqrt(aq * iou)
        iou_per_class, sq = iou_from_confusion(total, c, pred_void=self.pred_void)
        aq_all = aq_sum_all / tubes_all if tubes_all else 0.0
        return STQResult(
            STQ=math.sqrt(aq_all * sq),
            AQ=aq_all,
            SQ=sq,
            IoU_per_class=iou_per_class,
            STQ_per_seq=stq_seq,
            AQ_per_seq=aq_seq,
            ID_per_seq=dict(iou_seq),
            IoU_per_seq=iou_seq,
            Length_per_seq=length,
        )


def _association_sum(seq: _Sequence) -> float:
    """``Σ_g (1/|g|) Σ_p TPA(p, g) * IoU_id(p, g)`` of one sequence."""
    inner: dict[int, float] = {}
    for (g, p), tpa in seq.overlaps.items():
        union = seq.gt_tubes[g] + seq.pred_tubes[p] - tpa
        inner[g] = inner.get(g, 0.0) + tpa * tpa / union
    return sum(value / seq.gt_tubes[g] for g, value in inner.items())
