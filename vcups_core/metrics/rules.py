"""Dataset-specific evaluation rules, applied to ``(gt_sem, gt_inst, pred_sem, pred_inst)``.

Rules never modify their inputs (arrays a rule leaves unchanged may be returned as they are); the
results are passed to the metrics' ``update``. Which classes are tracked comes from :class:`~vcups_core.data.datasets.DatasetDescriptor`
(:func:`stq_for` / :func:`vpq_for` build metrics with the right ``things``):

* **Every dataset**: ground truth of a class outside the descriptor's ``evaluated_ids`` is void,
  and so is a prediction of such a class (:func:`void_unevaluated`; Waymo scores 16 classes, no
  wall, fence or terrain). Matching never maps a pseudo-class to such a class either.
* **KITTI-STEP**: the Cityscapes 8 things are things for class matching, but only person (11) and
  car (13) are tracked; predicted instances of any other class are dropped
  (:func:`kitti_step_rule`), so those classes count only semantically, and the STQ and VPQ
  ``things`` are ``{11, 13}``.
* **Waymo**: ground-truth tracks with a mean area under 400 pixels per frame (over the frames
  where they appear) become crowd (:func:`waymo_crowd_small_tracks`).
* **MOTS**: two classes, background 0 (stuff) and person 1 (thing) (:data:`MOTS_THINGS`).
* **STQ^D / STQ^S** (dynamic / static objects): :func:`restrict_to_tracks` keeps only the
  ground-truth tracks of one kind and voids everything else in ground truth *and* prediction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

import numpy as np
import numpy.typing as npt

from vcups_core.data.datasets import KITTI_STEP, MOTS, DatasetDescriptor
from vcups_core.metrics.stq import PredTubeRule, PredVoidRule, STQuality
from vcups_core.metrics.vpq import VideoPanopticQuality
from vcups_core.types import DEFAULT_LABEL_BIT_SHIFT, IGNORE_LABEL

IntArray = npt.NDArray[np.integer]
Frames = tuple[IntArray, IntArray, IntArray, IntArray]

KITTI_STEP_TRACKED: frozenset[int] = KITTI_STEP.tracked_ids
"""Classes tracked in KITTI-STEP: person (11) and car (13)."""

MOTS_NUM_CLASSES: int = MOTS.num_classes
MOTS_THINGS: frozenset[int] = MOTS.thing_ids
"""MOTS classes: background 0 (stuff), person 1 (thing)."""

WAYMO_MIN_MEAN_AREA = 400
"""Waymo: ground-truth tracks with a smaller mean per-frame area (pixels) become crowd."""


def stq_for(
    descriptor: DatasetDescriptor,
    label_bit_shift: int = DEFAULT_LABEL_BIT_SHIFT,
    *,
    pred_tubes: PredTubeRule = "deeplab2",
    pred_void: PredVoidRule = "deeplab2",
) -> STQuality:
    """STQ metric of a dataset: its classes, its *tracked* classes as things, its void id."""
    return STQuality(
        descriptor.num_classes,
        descriptor.tracked_ids,
        descriptor.ignore_label,
        label_bit_shift,
        pred_tubes=pred_tubes,
        pred_void=pred_void,
    )


def vpq_for(
    descriptor: DatasetDescriptor,
    window_sizes: Iterable[int] = (1, 2, 3, 4),
    label_bit_shift: int = DEFAULT_LABEL_BIT_SHIFT,
) -> VideoPanopticQuality:
    """VPQ metric of a dataset: its classes, its *tracked* classes as things, its void id.

    Tracked, not :attr:`~vcups_core.data.datasets.DatasetDescriptor.thing_ids`: a thing class
    without ground-truth instances (KITTI-STEP's rider) would otherwise be all crowd.
    """
    return VideoPanopticQuality(
        descriptor.num_classes,
        descriptor.tracked_ids,
        descriptor.ignore_label,
        window_sizes,
        label_bit_shift,
    )


def drop_untracked_instances(
    pred_sem: IntArray, pred_inst: IntArray, tracked: Iterable[int]
) -> IntArray:
    """``pred_inst`` with instance 0 wherever the predicted class is not tracked.

    Args:
        pred_sem, pred_inst: integer arrays of one shape.
        tracked: class ids whose predicted instances are kept.

    Raises:
        ValueError: on shape mismatch.
    """
    sem, inst = np.asarray(pred_sem), np.asarray(pred_inst)
    if sem.shape != inst.shape:
        raise ValueError(f"pred_inst shape {inst.shape} != pred_sem shape {sem.shape}")
    keep = np.isin(sem, np.fromiter(tracked, np.int64))
    return np.where(keep, inst, 0).astype(inst.dtype)


def kitti_step_rule(
    gt_sem: IntArray, gt_inst: IntArray, pred_sem: IntArray, pred_inst: IntArray
) -> Frames:
    """KITTI-STEP: predicted instances of classes other than person and car are set to 0.

    Ground truth is returned unchanged (it has instances only for person and car).
    """
    return (
        gt_sem,
        gt_inst,
        pred_sem,
        drop_untracked_instances(pred_sem, pred_inst, KITTI_STEP_TRACKED),
    )


def void_unevaluated(
    sem: IntArray, inst: IntArray, evaluated: Iterable[int], ignore_label: int = IGNORE_LABEL
) -> tuple[IntArray, IntArray]:
    """``(sem, inst)`` with every pixel of a class outside ``evaluated`` made void (instance 0).

    Applied to ground truth and prediction alike: a class the benchmark does not score is neither
    a target nor a prediction (Waymo: wall, fence, terrain). Returns the inputs themselves when
    no pixel changes.

    Raises:
        ValueError: on shape mismatch.
    """
    s, i = np.asarray(sem), np.asarray(inst)
    if s.shape != i.shape:
        raise ValueError(f"instance shape {i.shape} != semantic shape {s.shape}")
    drop = ~np.isin(s, np.fromiter(evaluated, np.int64)) & (s != ignore_label)
    if not drop.any():
        return sem, inst
    return (
        np.where(drop, ignore_label, s).astype(s.dtype),
        np.where(drop, 0, i).astype(i.dtype),
    )


def _track_keys(sem: IntArray, inst: IntArray) -> npt.NDArray[np.int64]:
    """One int64 key ``(semantic << 32) | instance`` per pixel."""
    return (sem.astype(np.int64) << 32) | inst.astype(np.int64)


def _check_pair(sem: IntArray, inst: IntArray, name: str = "gt_inst") -> None:
    if sem.shape != inst.shape:
        raise ValueError(f"{name} shape {inst.shape} != gt_sem shape {sem.shape}")
    for arr_name, arr in (("gt_sem", sem), (name, inst)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{arr_name} must be an integer array, got dtype {arr.dtype}")
        if arr.size and not 0 <= int(arr.min()) <= int(arr.max()) < (1 << 31):
            bad = int(arr.min()) if int(arr.min()) < 0 else int(arr.max())
            raise ValueError(f"{arr_name} contains {bad}, ids must be in [0, 2**31)")


def waymo_crowd_small_tracks(
    gt_sem: IntArray,
    gt_inst: IntArray,
    min_mean_area: float = WAYMO_MIN_MEAN_AREA,
    ignore_label: int = IGNORE_LABEL,
) -> IntArray:
    """Waymo: ground-truth tracks whose mean area is below ``min_mean_area`` become crowd.

    A track is a ``(class, instance)`` pair with instance != 0 on non-void pixels; its mean area is
    its pixel count divided by the number of frames in which it appears. Its pixels get instance 0
    (crowd: ignored for tracking, still counted semantically).

    Args:
        gt_sem: ``int[T, H, W]`` semantic ids of one sequence.
        gt_inst: ``int[T, H, W]`` instance ids, consistent over the sequence.
        min_mean_area: pixels per frame; tracks with a smaller mean are crowded.
        ignore_label: void id (void pixels belong to no track).

    Returns:
        ``gt_inst`` with the small tracks set to 0 (a new array of the same dtype).

    Raises:
        ValueError: on shape mismatch, non-3-D input, negative ids or a negative
            ``min_mean_area``.
    """
    sem, inst = np.asarray(gt_sem), np.asarray(gt_inst)
    if sem.ndim != 3:
        raise ValueError(f"gt_sem must be [T, H, W] (one sequence), got shape {sem.shape}")
    _check_pair(sem, inst)
    if min_mean_area < 0:
        raise ValueError(f"min_mean_area must be >= 0, got {min_mean_area}")
    area: dict[int, int] = {}
    frames: dict[int, int] = {}
    for t in range(sem.shape[0]):
        tracked = (inst[t] != 0) & (sem[t] != ignore_label)
        keys, counts = np.unique(_track_keys(sem[t][tracked], inst[t][tracked]), return_counts=True)
        for key, n in zip(keys.tolist(), counts.tolist(), strict=True):
            area[key] = area.get(key, 0) + n
            frames[key] = frames.get(key, 0) + 1
    small = np.array(
        [k for k, total in area.items() if total / frames[k] < min_mean_area], np.int64
    )
    out = inst.copy()
    if small.size:
        for t in range(sem.shape[0]):
            crowd = np.isin(_track_keys(sem[t], inst[t]), small) & (sem[t] != ignore_label)
            out[t][crowd] = 0
    return out


def restrict_to_tracks(
    gt_sem: IntArray,
    gt_inst: IntArray,
    pred_sem: IntArray,
    pred_inst: IntArray,
    things: Iterable[int],
    dynamic: Mapping[tuple[int, int], bool],
    keep: Literal["dynamic", "static"],
    ignore_label: int = IGNORE_LABEL,
) -> Frames:
    """Masking for STQ^D (``keep="dynamic"``) and STQ^S (``keep="static"``).

    Exact rule: a pixel is kept iff its ground truth is a track ``(class, instance)`` of a thing
    class with instance != 0 and ``dynamic[track] == (keep == "dynamic")``. Every other pixel
    (stuff, crowd, void, tracks of the other kind) becomes void in the ground truth (semantic
    ``ignore_label``, instance 0) **and** in the prediction, so predictions there are ignored by SQ
    and by AQ alike (under either predicted-tube rule). Note that SQ then still counts predicted
    stuff classes on kept pixels as false positives of those classes.

    Args:
        gt_sem, gt_inst, pred_sem, pred_inst: integer arrays ``[H, W]`` or ``[T, H, W]``.
        things: thing classes.
        dynamic: for every ground-truth track ``(class, instance)`` present, whether it moves.
        keep: which kind of track to keep.
        ignore_label: void id.

    Returns:
        New ``(gt_sem, gt_inst, pred_sem, pred_inst)``, dtypes preserved.

    Raises:
        ValueError: on shape mismatch, an unknown ``keep``, or a track missing from ``dynamic``
            (named in the message).
    """
    if keep not in ("dynamic", "static"):
        raise ValueError(f"keep must be 'dynamic' or 'static', got {keep!r}")
    arrays = [np.asarray(a) for a in (gt_sem, gt_inst, pred_sem, pred_inst)]
    for name, arr in zip(("gt_inst", "pred_sem", "pred_inst"), arrays[1:], strict=True):
        if arr.shape != arrays[0].shape:
            raise ValueError(f"{name} shape {arr.shape} != gt_sem shape {arrays[0].shape}")
    sem, inst = arrays[0], arrays[1]
    _check_pair(sem, inst)
    keys = _track_keys(sem, inst)
    is_track = np.isin(sem, np.fromiter(things, np.int64)) & (inst != 0)
    wanted = keep == "dynamic"
    chosen = []
    for key in np.unique(keys[is_track]).tolist():
        track = (key >> 32, key & 0xFFFFFFFF)
        if track not in dynamic:
            raise ValueError(
                f"dynamic has no entry for ground-truth track (class {track[0]}, instance {track[1]})"
            )
        if bool(dynamic[track]) == wanted:
            chosen.append(key)
    kept = is_track & np.isin(keys, np.array(chosen, np.int64))
    return (
        np.where(kept, sem, ignore_label).astype(sem.dtype),
        np.where(kept, inst, 0).astype(inst.dtype),
        np.where(kept, arrays[2], ignore_label).astype(arrays[2].dtype),
        np.where(kept, arrays[3], 0).astype(arrays[3].dtype),
    )
