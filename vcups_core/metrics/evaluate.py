"""The evaluation protocol end to end: pseudo-class matching, dataset rules, STQ and VPQ.

Two passes over the frames (method §6.1): the first accumulates the pixel confusion of predicted
pseudo-classes with ground-truth classes and matches them (Hungarian within things and within
stuff of the dataset's taxonomy, leftovers to their majority class; only the dataset's evaluated
classes are targets); the second maps every prediction, applies the dataset's rules (classes
outside ``evaluated_ids`` void in ground truth and prediction; instances only on tracked classes,
e.g. KITTI-STEP's person and car; Waymo: small ground-truth tracks become crowd) and feeds one
shared joint histogram per frame to STQ and VPQ. The settings are an
:class:`~vcups_core.configs.evaluation.EvaluationConfig` (``config/evaluation.yaml``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from vcups_core.configs.evaluation import EvaluationConfig
from vcups_core.data.datasets import DatasetDescriptor
from vcups_core.metrics.class_matching import ClassMatch, confusion_from, match_classes
from vcups_core.metrics.histogram import HistogramBuilder
from vcups_core.metrics.rules import (
    drop_untracked_instances,
    stq_for,
    void_unevaluated,
    vpq_for,
    waymo_crowd_small_tracks,
)
from vcups_core.metrics.tables import classwise_table

IntArray = npt.NDArray[np.integer[Any]]
Frame = tuple[str, IntArray, IntArray, IntArray, IntArray]
"""``(sequence id, gt_sem, gt_inst, pred_sem, pred_inst)`` of one frame."""
FrameSource = Callable[[], Iterator[Frame]]
"""Returns a fresh iterator over every frame, sequence by sequence, frames in order."""


def descriptor_thing_flags(descriptor: DatasetDescriptor) -> list[bool]:
    """Per class id of ``descriptor``: whether it is a thing of its taxonomy.

    The thing/stuff split of predictions stored in a dataset's own format, whose class ids are
    the dataset's (``vcups evaluate``).
    """
    return [c in descriptor.thing_ids for c in range(descriptor.num_classes)]


def evaluate(
    frames: FrameSource,
    descriptor: DatasetDescriptor,
    config: EvaluationConfig | None = None,
    *,
    match: Literal["hungarian", "none"] | None = None,
    num_pred_classes: int | None = None,
    pred_is_thing: Sequence[bool] | None = None,
    window_sizes: Sequence[int] | None = None,
    progress: Callable[[Iterator[Frame]], Iterator[Frame]] | None = None,
    class_match: ClassMatch | None = None,
) -> dict[str, Any]:
    """Score predictions against ground truth; returns a JSON-serialisable report.

    Args:
        frames: the frame source (called once per pass).
        descriptor: the dataset's classes, things, tracked and evaluated classes and void id.
        config: the protocol's settings (default: ``EvaluationConfig()``, the official rules);
            its ``dataset`` is not read here (``descriptor`` is).
        match: overrides ``config.match``: ``"hungarian"`` maps pseudo-classes to classes;
            ``"none"`` takes predictions as dataset class ids already.
        num_pred_classes: number of pseudo-classes (default: largest predicted id + 1).
        pred_is_thing: per pseudo-class; default: a pseudo-class is a thing if any of its
            predicted pixels carries an instance id (pass :func:`descriptor_thing_flags` for
            predictions in the dataset's own class ids).
        window_sizes: overrides ``config.vpq_window_sizes``.
        progress: optional wrapper of the second pass's iterator (e.g. ``tqdm``).
        class_match: with ``hungarian``, this matching instead of one made on ``frames``
            (:func:`match_pseudo_classes`; e.g. the whole set's matching for a subset).

    Raises:
        ValueError: from the metrics, naming the array and value, on malformed labels.
    """
    cfg = config if config is not None else EvaluationConfig()
    mode = match if match is not None else cfg.match
    windows = tuple(window_sizes) if window_sizes is not None else cfg.vpq_window_sizes
    shift = cfg.label_bit_shift
    ignore = descriptor.ignore_label
    if mode != "hungarian":
        class_match = None
    elif class_match is None:
        class_match = match_pseudo_classes(
            frames, descriptor, num_pred_classes, pred_is_thing, cfg.adhere_thing_stuff
        )
    stq = stq_for(descriptor, shift, pred_tubes=cfg.pred_tubes, pred_void=cfg.pred_void)
    vpq = vpq_for(descriptor, windows, shift)
    builder = HistogramBuilder(descriptor.num_classes, ignore, shift)
    stream = _with_rules(frames(), descriptor, shift, cfg.waymo_min_track_area)
    evaluated = descriptor.evaluated_ids
    partial = evaluated != frozenset(range(descriptor.num_classes))
    n_frames = 0
    sequences: list[str] = []
    for seq, gt_sem, gt_inst, pred_sem, pred_inst in progress(stream) if progress else stream:
        if class_match is not None:
            pred_sem = class_match.apply(pred_sem)
        if partial:
            gt_sem, gt_inst = void_unevaluated(gt_sem, gt_inst, evaluated, ignore)
            pred_sem, pred_inst = void_unevaluated(pred_sem, pred_inst, evaluated, ignore)
        if descriptor.tracked_ids != descriptor.thing_ids:
            pred_inst = drop_untracked_instances(pred_sem, pred_inst, descriptor.tracked_ids)
        hist = builder(gt_sem, gt_inst, pred_sem, pred_inst)
        stq.update_histogram(hist, seq)
        vpq.update_histogram(hist, seq)
        n_frames += 1
        if not sequences or sequences[-1] != seq:
            sequences.append(seq)
    s, v = stq.result(), vpq.result()
    names = descriptor.class_names
    scored = sorted(evaluated)
    iou = [float(x) for x in s["IoU_per_class"]]
    report: dict[str, Any] = {
        "dataset": descriptor.name,
        "sequences": len(sequences),
        "frames": n_frames,
        "STQ": float(s["STQ"]),
        "AQ": float(s["AQ"]),
        "SQ": float(s["SQ"]),
        "IoU_per_class": {names[c]: iou[c] for c in scored},
        "STQ_per_seq": {str(k): float(x) for k, x in s["STQ_per_seq"].items()},
        "AQ_per_seq": {str(k): float(x) for k, x in s["AQ_per_seq"].items()},
        "VPQ": float(v["VPQ"]),
        "VPQ_things": float(v["VPQ_things"]),
        "VPQ_stuff": float(v["VPQ_stuff"]),
        "VPQ_per_window": {
            str(k): {key: float(w[key]) for key in ("PQ", "SQ", "RQ")}
            for k, w in v["per_window"].items()
        },
        "classwise_table": classwise_table(
            np.asarray([iou[c] for c in scored]), [names[c] for c in scored]
        ),
        "protocol": {
            "match": mode,
            "adhere_thing_stuff": cfg.adhere_thing_stuff,
            "pred_void": cfg.pred_void,
            "pred_tubes": cfg.pred_tubes,
            "vpq_window_sizes": list(windows),
        },
    }
    if class_match is not None:
        report["class_mapping"] = {
            str(k): (names[int(c)] if int(c) < len(names) else "void")
            for k, c in enumerate(class_match.mapping.tolist())
        }
    return report


def match_pseudo_classes(
    frames: FrameSource,
    descriptor: DatasetDescriptor,
    num_pred_classes: int | None,
    pred_is_thing: Sequence[bool] | None,
    adhere_thing_stuff: bool = True,
) -> ClassMatch:
    """The protocol's class matching over every frame of ``frames`` (the first pass of
    :func:`evaluate`): the pseudo-class x class confusion, thing flags, then
    :func:`~vcups_core.metrics.class_matching.match_classes`."""
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
    gt_evaluated = np.array([c in descriptor.evaluated_ids for c in range(n_gt)])
    return match_classes(
        confusion,
        flags[: confusion.shape[0]],
        gt_is_thing,
        adhere_thing_stuff=adhere_thing_stuff,
        ignore_label=ignore,
        gt_evaluated=gt_evaluated,
    )


def _with_rules(
    frames: Iterator[Frame], descriptor: DatasetDescriptor, label_bit_shift: int, min_area: int
) -> Iterator[Frame]:
    """Compact large predicted track ids per sequence; crowd small Waymo tracks per sequence."""
    compact = _Compactor(1 << label_bit_shift)
    if descriptor.name != "waymo":
        for seq, gs, gi, ps, pi in frames:
            yield seq, gs, gi, ps, compact(seq, pi)
        return
    buffer: list[Frame] = []
    for frame in frames:  # Waymo's rule needs whole sequences
        if buffer and buffer[-1][0] != frame[0]:
            yield from _waymo_sequence(buffer, descriptor, compact, min_area)
            buffer = []
        buffer.append(frame)
    if buffer:
        yield from _waymo_sequence(buffer, descriptor, compact, min_area)


def _waymo_sequence(
    frames: list[Frame], descriptor: DatasetDescriptor, compact: _Compactor, min_area: int
) -> Iterator[Frame]:
    gt_inst = waymo_crowd_small_tracks(
        np.stack([f[1] for f in frames]),
        np.stack([f[2] for f in frames]),
        min_mean_area=min_area,
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
