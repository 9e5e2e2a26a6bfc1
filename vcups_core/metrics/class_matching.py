"""Pseudo-class → ground-truth class matching for unsupervised predictions (the CUPS rule).

An unsupervised model predicts pseudo-classes; before scoring, each pseudo-class is mapped to a
ground-truth class from their pixel overlap ``confusion[k, c]`` (pseudo-class ``k``, GT class
``c``, void excluded on both sides):

1. The pseudo-things × GT-things block and the pseudo-stuff × GT-stuff block are matched
   separately (``adhere_thing_stuff=True``; otherwise one block of everything).
2. In each block, the Hungarian assignment maximising the total overlap pairs
   ``min(#pseudo, #gt)`` classes one-to-one (rectangular blocks allowed).
3. Every pseudo-class of the block left unassigned goes to its majority GT class within the block
   (many-to-one; ties go to the lowest class id). GT classes left unmatched are never predicted.
4. A pseudo-class whose block has no GT class at all maps to ``ignore_label`` (its pixels become
   void, which the metrics count as false negatives of the ground truth there).

GT classes outside ``gt_evaluated`` (a dataset's classes that are not scored, e.g. Waymo's wall,
fence and terrain) take no part: no pseudo-class is ever mapped to them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from vcups_core.types import IGNORE_LABEL

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ClassMatch:
    """Result of :func:`match_classes`.

    Attributes:
        mapping: ``int64[num_pseudo]``: GT class of each pseudo-class, or ``ignore_label``.
        matched_confusion: ``int64[num_gt, num_gt]`` confusion after mapping; rows are the mapped
            predicted GT class, columns the GT class (pseudo-classes mapped to void dropped).
        hungarian_pairs: ``(pseudo, gt)`` pairs chosen by the Hungarian step, sorted.
        ignore_label: value of void in predictions and in ``mapping``.
    """

    mapping: I64
    matched_confusion: I64
    hungarian_pairs: tuple[tuple[int, int], ...]
    ignore_label: int = IGNORE_LABEL

    def apply(self, pred_sem: npt.NDArray[np.integer]) -> npt.NDArray[np.integer]:
        """Map a predicted pseudo-class map to GT classes; void stays void.

        Args:
            pred_sem: integer array of pseudo-class ids in ``[0, num_pseudo)`` or ``ignore_label``.

        Returns:
            Same shape; same dtype when it can hold every mapped id, else ``int64``.

        Raises:
            ValueError: naming the first id that is neither a pseudo-class nor void.
        """
        pred = np.asarray(pred_sem)
        if not np.issubdtype(pred.dtype, np.integer):
            raise ValueError(f"pred_sem must be an integer array, got dtype {pred.dtype}")
        num_pseudo = len(self.mapping)
        lut = np.full(max(num_pseudo, self.ignore_label + 1), -1, np.int64)
        lut[:num_pseudo] = self.mapping
        lut[self.ignore_label] = self.ignore_label
        if pred.size:
            lo, hi = int(pred.min()), int(pred.max())
            if lo < 0 or hi >= len(lut):
                bad = pred[(pred < 0) | (pred >= len(lut))]
                raise ValueError(
                    _bad_pseudo(int(bad.reshape(-1)[0]), num_pseudo, self.ignore_label)
                )
        mapped = lut[pred]
        if pred.size and int(mapped.min()) < 0:
            bad = pred[mapped < 0]
            raise ValueError(_bad_pseudo(int(bad.reshape(-1)[0]), num_pseudo, self.ignore_label))
        top = int(lut.max())
        if np.can_cast(np.min_scalar_type(top), pred.dtype, "safe"):
            return mapped.astype(pred.dtype)
        return mapped


def _bad_pseudo(value: int, num_pseudo: int, ignore_label: int) -> str:
    return (
        f"pred_sem contains {value}, expected a pseudo-class in [0, {num_pseudo}) or the ignore "
        f"label {ignore_label}"
    )


def _flags(values: npt.ArrayLike, name: str, length: int, axis: str) -> npt.NDArray[np.bool_]:
    flags = np.asarray(values)
    if flags.shape != (length,):
        raise ValueError(
            f"{name} must have length {length} ({axis} of confusion), got {flags.shape}"
        )
    return flags.astype(np.bool_)


def match_classes(
    confusion: npt.ArrayLike,
    pred_is_thing: npt.ArrayLike,
    gt_is_thing: npt.ArrayLike,
    *,
    adhere_thing_stuff: bool = True,
    ignore_label: int = IGNORE_LABEL,
    gt_evaluated: npt.ArrayLike | None = None,
) -> ClassMatch:
    """Map pseudo-classes to GT classes by Hungarian matching plus majority vote (module rule).

    Args:
        confusion: ``int[num_pseudo, num_gt]`` pixel overlaps (see :func:`confusion_from`).
        pred_is_thing: ``bool[num_pseudo]``: pseudo-class is a thing.
        gt_is_thing: ``bool[num_gt]``: GT class is a thing.
        adhere_thing_stuff: match things to things and stuff to stuff (else one block).
        ignore_label: id given to pseudo-classes whose block has no GT class.
        gt_evaluated: ``bool[num_gt]``: GT classes that may be matched (default: all).

    Raises:
        ValueError: if ``confusion`` is not a non-negative 2-D array or a flag vector's length
            does not match it.
    """
    conf = np.asarray(confusion)
    if conf.ndim != 2:
        raise ValueError(f"confusion must be 2-D [num_pseudo, num_gt], got shape {conf.shape}")
    if conf.size and float(conf.min()) < 0:
        raise ValueError(f"confusion contains {conf.min()}, counts must be >= 0")
    if not np.issubdtype(conf.dtype, np.integer) and not np.array_equal(conf, np.round(conf)):
        raise ValueError("confusion must hold integer pixel counts")
    conf = conf.astype(np.int64)
    num_pseudo, num_gt = conf.shape
    if ignore_label < num_gt:
        raise ValueError(f"ignore_label must be >= num_gt={num_gt}, got {ignore_label}")
    pred_thing = _flags(pred_is_thing, "pred_is_thing", num_pseudo, "rows")
    gt_thing = _flags(gt_is_thing, "gt_is_thing", num_gt, "columns")
    allowed = (
        np.ones(num_gt, np.bool_)
        if gt_evaluated is None
        else _flags(gt_evaluated, "gt_evaluated", num_gt, "columns")
    )

    if adhere_thing_stuff:
        blocks = [(pred_thing, gt_thing & allowed), (~pred_thing, ~gt_thing & allowed)]
    else:
        blocks = [(np.ones(num_pseudo, np.bool_), allowed)]
    mapping = np.full(num_pseudo, ignore_label, np.int64)
    pairs: list[tuple[int, int]] = []
    for row_sel, col_sel in blocks:
        rows, cols = np.flatnonzero(row_sel), np.flatnonzero(col_sel)
        if len(rows) == 0 or len(cols) == 0:
            continue  # pseudo-classes of a block without GT classes stay ignore_label
        block = conf[np.ix_(rows, cols)]
        assigned_r, assigned_c = linear_sum_assignment(block, maximize=True)
        majority = cols[np.argmax(block, axis=1)]
        mapping[rows] = majority
        mapping[rows[assigned_r]] = cols[assigned_c]
        pairs.extend(
            (int(r), int(c)) for r, c in zip(rows[assigned_r], cols[assigned_c], strict=True)
        )

    matched = np.zeros((num_gt, num_gt), np.int64)
    kept = mapping != ignore_label
    np.add.at(matched, mapping[kept], conf[kept])
    return ClassMatch(mapping, matched, tuple(sorted(pairs)), ignore_label)


def confusion_from(
    pred_sem: npt.NDArray[np.integer],
    gt_sem: npt.NDArray[np.integer],
    num_pseudo: int,
    num_gt: int,
    ignore_label: int = IGNORE_LABEL,
) -> I64:
    """Pixel overlap of pseudo-classes and GT classes, void on either side excluded.

    Accumulate over a dataset by summing the returned matrices.

    Args:
        pred_sem: integer array of pseudo-class ids in ``[0, num_pseudo)`` or ``ignore_label``.
        gt_sem: integer array of the same shape, GT ids in ``[0, num_gt)`` or ``ignore_label``.
        num_pseudo, num_gt: class counts.
        ignore_label: void id of both maps.

    Returns:
        ``int64[num_pseudo, num_gt]``.

    Raises:
        ValueError: on shape mismatch or an id out of range, naming the array and the value.
    """
    if num_pseudo < 1 or num_gt < 1:
        raise ValueError(f"num_pseudo and num_gt must be >= 1, got {num_pseudo} and {num_gt}")
    pred, gt = np.asarray(pred_sem), np.asarray(gt_sem)
    if pred.shape != gt.shape:
        raise ValueError(f"pred_sem shape {pred.shape} != gt_sem shape {gt.shape}")
    for name, arr, limit in (("pred_sem", pred, num_pseudo), ("gt_sem", gt, num_gt)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must be an integer array, got dtype {arr.dtype}")
        bad = arr[((arr < 0) | (arr >= limit)) & (arr != ignore_label)]
        if bad.size:
            raise ValueError(
                f"{name} contains {int(bad[0])}, expected an id in [0, {limit}) or the ignore "
                f"label {ignore_label}"
            )
    valid = (pred != ignore_label) & (gt != ignore_label)
    code = pred[valid].astype(np.int64) * num_gt + gt[valid]
    counts = np.bincount(code, minlength=num_pseudo * num_gt)
    return counts.reshape(num_pseudo, num_gt).astype(np.int64)
