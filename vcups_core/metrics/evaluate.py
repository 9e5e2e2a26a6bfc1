"""The evaluation protocol end to end: pseudo-class matching, dataset rules, STQ and VPQ.

Two passes over the frames (method §6.1): the first accumulates the pixel confusion of predicted
pseudo-classes with ground-truth classes and matches them (Hungarian within things and within
stuff, leftovers to their majority class); the second maps every prediction, applies the
dataset's rule (KITTI-STEP: only person and car tracked; Waymo: small ground-truth tracks become
crowd) and feeds one shared joint histogram per frame to STQ and VPQ.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from vcups_core.data.datasets import DatasetDescriptor
from vcups_core.metrics.class_matching import ClassMatch, confusion_from, match_classes
from vcups_core.metrics.histogram import HistogramBuilder
from vcups_core.metrics.rules import kitti_step_rule, stq_for, vpq_for, waymo_crowd_small_tracks
from vcups_core.metrics.tables import classwise_table
from vcups_core.types import DEFAULT_LABEL_BIT_SHIFT

IntArray = npt.NDArray[np.integer[Any]]
Frame = tuple[str, IntArray, IntArray, IntArray, IntArray]
"""``(sequence id, gt_sem, gt_inst, pred_sem, pred_inst)`` of one frame."""
FrameSource = Callable[[], Iterator[Frame]]
"""Returns a fresh iterator over every frame, sequence by sequence, frames in order."""


def evaluate(
    frames: FrameSource,
    descriptor: DatasetDescriptor,
    *,
    match: Literal["hungarian", "none"] = "hungarian",
    num_pred_classes: int | None = None,
    pred_is_thing: Sequence[bool] | None = None,
    window_sizes: Sequence[int] = (1, 2, 3, 4),
    progress: Callable[[Iterator[Frame]], Iterator[Frame]] | None = None,
) -> dict[str, Any]:
    """Score predictions against ground truth; returns a JSON-serialisable report.

    Args:
        frames: the frame source (called once per pass).
        descriptor: the dataset's classes, things, tracked classes and void id.
        match: ``"hungarian"`` maps pseudo-classes to classes; ``"none"`` takes predictions as
            dataset class ids already.
        num_pred_classes: number of pseudo-classes (default: largest predicted id + 1).
        pred_is_thing: per pseudo-class; default: a pseudo-class is a thing if any of its
            predicted pixels carries an instance id.
        window_sizes: VPQ windows.
        progress: optional wrapper of the second pass's iterator (e.g. ``tqdm``).

    Raises:
        ValueError: from the metrics, naming the array and value, on malformed labels.
    """
    ignore = descriptor.ignore_label
    class_match: ClassMatch | None = None
    if match == "hungarian":
        class_match = _match(frames, descriptor, num_pred_classes, pred_is_thing)
    stq = stq_for(descriptor)
    vpq = vpq_for(descriptor, window_sizes)
    builder = HistogramBuilder(descriptor.num_classes, ignore, DEFAULT_LABEL_BIT_SHIFT)
    stream = _with_rules(frames(), descriptor)
    n_frames = 0
    sequences: list[str] = []
    for seq, gt_sem, gt_inst, pred_sem, pred_inst in progress(stream) if progress else stream:
        if class_match is not None:
            pred_sem = class_match.apply(pred_sem)
        if descriptor.name == "kitti-step":
            gt_sem, gt_inst, pred_sem, pred_inst = kitti_step_rule(
                gt_sem, gt_inst, pred_sem, pred_inst
            )
        hist = builder(gt_sem, gt_inst, pred_sem, pred_inst)
        stq.update_histogram(hist, seq)
        vpq.update_histogram(hist, seq)
        n_frames += 1
        if not sequences or sequences[-1] != seq:
            sequences.append(seq)
    s, v = stq.result(), vpq.result()
    names = descriptor.class_names
    iou = [float(x) for x in s["IoU_per_class"]]
    report: dict[str, Any] = {
        "dataset": descriptor.name,
        "sequences": len(sequences),
        "frames": n_frames,
        "STQ": float(s["STQ"]),
        "AQ": float(s["AQ"]),
        "SQ": float(s["SQ"]),
        "IoU_per_class": {names[c]: iou[c] for c in range(len(names))},
        "STQ_per_seq": {str(k): float(x) for k, x in s["STQ_per_seq"].items()},
        "AQ_per_seq": {str(k): float(x) for k, x in s["AQ_per_seq"].items()},
        "VPQ": float(v["VPQ"]),
        "VPQ_things": float(v["VPQ_things"]),
        "VPQ_stuff": float(v["VPQ_stuff"]),
        "VPQ_per_window": {
            str(k): {key: float(w[key]) for key in ("PQ", "SQ", "RQ")}
            for k, w in v["per_window"].items()
        },
        "classwise_table": classwise_table(np.asarray(iou), list(names)),
    }
    if class_match is not None:
        report["class_mapping"] = {
            str(k): (names[int(c)] if int(c) < len(names) else "void")
            for k, c in enumerate(class_match.mapping.tolist())
        }
    return report


def _match(
    frames: FrameSource,
    descriptor: DatasetDescriptor,
    num_pred_classes: int | None,
    pred_is_thing: Sequence[bool] | None,
) -> ClassMatch:
    """First pass: the pseudo-class x class confusion, thing flags, then the matching."""
    ignore = descriptor.ignore_label
    n_gt = descriptor.num_classes
    confusion = np.zeros((0, n_gt), np.int64)
    thing_pixels = np.zeros(0, np.int64)
    for _, gt_sem, _, pred_sem, pred_inst in frames():
        valid = pred_sem[pred_sem != ignore]
        top = int(valid.max()) + 1 if valid.size else 0
        need = max(top, num_pred_classes or 0, confusion.shape[0])
        if need > confusion.shape[0]:
            confusion = np.pad(confusion, ((0, need - confusion.shape[0]), (0, 0)))
            thing_pixels = np.pad(thing_pixels, (0, need - thing_pixels.size))
        confusion += confusion_from(pred_sem, gt_sem, confusion.shape[0], n_gt, ignore)
        with_inst = pred_sem[(pred_inst > 0) & (pred_sem != ignore)]
        thing_pixels += np.bincount(with_inst.astype(np.int64), minlength=thing_pixels.size)
    flags = np.asarray(pred_is_thing, bool) if pred_is_thing is not None else thing_pixels > 0
    if flags.size < confusion.shape[0]:
        flags = np.pad(flags, (0, confusion.shape[0] - flags.size))
    gt_is_thing = np.array([c in descriptor.thing_ids for c in range(n_gt)])
    return match_classes(confusion, flags[: confusion.shape[0]], gt_is_thing, ignore_label=ignore)


def _with_rules(frames: Iterator[Frame], descriptor: DatasetDescriptor) -> Iterator[Frame]:
    """Compact large predicted track ids per sequence; crowd small Waymo tracks per sequence."""
    compact = _Compactor(1 << DEFAULT_LABEL_BIT_SHIFT)
    if descriptor.name != "waymo":
        for seq, gs, gi, ps, pi in frames:
            yield seq, gs, gi, ps, compact(seq, pi)
        return
    buffer: list[Frame] = []
    for frame in frames:  # Waymo's rule needs whole sequences
        if buffer and buffer[-1][0] != frame[0]:
            yield from _waymo_sequence(buffer, descriptor, compact)
            buffer = []
        buffer.append(frame)
    if buffer:
        yield from _waymo_sequence(buffer, descriptor, compact)


def _waymo_sequence(
    frames: list[Frame], descriptor: DatasetDescriptor, compact: _Compactor
) -> Iterator[Frame]:
    gt_inst = waymo_crowd_small_tracks(
        np.stack([f[1] for f in frames]),
        np.stack([f[2] for f in frames]),
        ignore_label=descriptor.ignore_label,
    )
    for (seq, gs, _, ps, pi), gi in zip(frames, gt_inst, strict=True):
        yield seq, gs, gi, ps, compact(seq, pi)


class _Compactor:
    """Renumbers predicted instance ids 1, 2, ... in order of appearance, consistently over the
    frames of a sequence, so any tracker id (node ids grow without bound) fits the encoding."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seq: str | None = None
        self._ids: dict[int, int] = {}

    def __call__(self, seq: str, inst: IntArray) -> IntArray:
        if seq != self._seq:
            self._seq, self._ids = seq, {}
        values, inverse = np.unique(inst, return_inverse=True)
        for v in values.tolist():
            if v != 0 and v not in self._ids:
                self._ids[v] = len(self._ids) + 1
        if len(self._ids) >= self.limit:
            raise ValueError(
                f"pred_inst: sequence {seq} has {len(self._ids)} track ids, more than {self.limit - 1}"
            )
        lut = np.array([self._ids.get(v, 0) for v in values.tolist()], np.int64)
        return lut[inverse].reshape(inst.shape)
