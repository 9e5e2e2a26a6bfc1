"""Thing/stuff split of the semantic pseudo-classes (method §2.6, CUPS ``thingstuff_split.py``).

The split is computed once over all training pseudo-labels, from two integer counts per
pseudo-class ``c``:

* ``n_in(c)``: pixels of class ``c`` that lie inside any instance mask (track id != 0);
* ``n_all(c)``: pixels of class ``c`` overall.

Void pixels (:data:`~vcups_core.types.IGNORE_LABEL`) are counted in neither. The counts must be
taken on the *aligned* semantic maps (each instance mask carries its track's class, see
:func:`vcups_core.pseudo.compose.align_frame`), as CUPS does (it aligns, then counts).

:class:`ThingStuffStats` accumulates the counts frame by frame. Counts are integers, so the
statistic of a store is the exact sum of per-clip (or per-shard) statistics in any order: store
each clip's :meth:`ThingStuffStats.to_dict` in its status record and compute the split from the
merged sum; sharded and unsharded runs give the same split.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from vcups_core.types import IGNORE_LABEL

log = logging.getLogger(__name__)

DEFAULT_NUM_CLASSES: int = 27
"""Semantic pseudo-classes (DepthG clusters, method §1.2)."""

DEFAULT_PSI: float = 0.01
"""ψ_ts of VideoCUPS (method §2.6; the CUPS image default was 0.08)."""

RATIO_EPS: float = 1e-6
"""``ratio = n_in / (n_all + RATIO_EPS)`` (CUPS)."""


def check_label_maps(
    semantic: npt.NDArray[Any], instance: npt.NDArray[Any], num_classes: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Validate one frame's label maps and return them as ``int64`` views/copies.

    Args:
        semantic: ``int[H, W]`` pseudo-classes in ``[0, num_classes)``, or 255 (void).
        instance: ``int[H, W]`` track ids, 0 = no instance, non-negative.
        num_classes: number of pseudo-classes.

    Raises:
        ValueError: not 2-D, shapes differ, not integer, or a value out of range.
    """
    sem = np.asarray(semantic)
    inst = np.asarray(instance)
    if sem.ndim != 2 or sem.shape != inst.shape:
        raise ValueError(
            f"semantic {list(sem.shape)} and instance {list(inst.shape)} must be [H, W] of equal size"
        )
    for name, arr in (("semantic", sem), ("instance", inst)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must be an integer array, got {arr.dtype}")
    sem64 = sem.astype(np.int64, copy=False)
    inst64 = inst.astype(np.int64, copy=False)
    if sem64.size:
        bad = (sem64 < 0) | ((sem64 >= num_classes) & (sem64 != IGNORE_LABEL))
        if bad.any():
            raise ValueError(
                f"semantic value {int(sem64[bad][0])} is neither a pseudo-class in "
                f"[0, {num_classes}) nor void {IGNORE_LABEL}"
            )
        if int(inst64.min()) < 0:
            raise ValueError(f"instance ids must be >= 0, got {int(inst64.min())}")
    return sem64, inst64


class ThingStuffStats:
    """Mergeable per-class pixel counts ``n_in`` and ``n_all`` (see the module docstring).

    Args:
        num_classes: number of pseudo-classes ``C`` (default 27).

    Attributes:
        n_in: ``int64[C]`` pixels of each class inside an instance mask.
        n_all: ``int64[C]`` pixels of each class overall (void excluded).

    Example::

        stats = ThingStuffStats(27)
        for semantic, instance in frames:      # aligned maps of one clip
            stats.update(semantic, instance)
        record["thing_stuff"] = stats.to_dict()
        ...
        total = ThingStuffStats.sum(ThingStuffStats.from_dict(r["thing_stuff"]) for r in records)
        things, stuff = thing_stuff_split(total, psi=0.01)
    """

    def __init__(self, num_classes: int = DEFAULT_NUM_CLASSES) -> None:
        if not 1 <= num_classes <= IGNORE_LABEL:
            raise ValueError(f"num_classes must be in [1, {IGNORE_LABEL}], got {num_classes}")
        self.num_classes = num_classes
        self.n_in: npt.NDArray[np.int64] = np.zeros(num_classes, np.int64)
        self.n_all: npt.NDArray[np.int64] = np.zeros(num_classes, np.int64)

    def update(self, semantic: npt.NDArray[Any], instance: npt.NDArray[Any]) -> None:
        """Add one frame.

        Args:
            semantic: ``uint8[H, W]`` pseudo-classes, 255 = void (aligned to the instances).
            instance: ``uint16[H, W]`` track ids, 0 = no instance.

        Raises:
            ValueError: see :func:`check_label_maps`.
        """
        sem, inst = check_label_maps(semantic, instance, self.num_classes)
        valid = sem != IGNORE_LABEL
        c = self.num_classes
        self.n_all += np.bincount(sem[valid], minlength=c)[:c]
        self.n_in += np.bincount(sem[valid & (inst != 0)], minlength=c)[:c]

    def merge(self, other: ThingStuffStats) -> ThingStuffStats:
        """Add ``other``'s counts to this one (in place); returns ``self``.

        Raises:
            ValueError: the class counts differ.
        """
        if other.num_classes != self.num_classes:
            raise ValueError(
                f"cannot merge statistics of {other.num_classes} classes into {self.num_classes}"
            )
        self.n_in += other.n_in
        self.n_all += other.n_all
        return self

    @classmethod
    def sum(
        cls, parts: Iterable[ThingStuffStats], num_classes: int | None = None
    ) -> ThingStuffStats:
        """The sum of ``parts`` as a new object (the parts are not changed).

        Args:
            parts: statistics of equal ``num_classes``.
            num_classes: the class count if ``parts`` may be empty (default: that of the first
                part, else :data:`DEFAULT_NUM_CLASSES`).
        """
        items = list(parts)
        if num_classes is None:
            num_classes = items[0].num_classes if items else DEFAULT_NUM_CLASSES
        total = cls(num_classes)
        for part in items:
            total.merge(part)
        return total

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: ``{"num_classes": C, "n_in": [int]*C, "n_all": [int]*C}``."""
        return {
            "num_classes": self.num_classes,
            "n_in": [int(v) for v in self.n_in],
            "n_all": [int(v) for v in self.n_all],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ThingStuffStats:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: a key is missing, a list has the wrong length, a count is negative or
                not an integer, or ``n_in > n_all`` for some class.
        """
        try:
            out = cls(int(data["num_classes"]))
            n_in = list(data["n_in"])
            n_all = list(data["n_all"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a thing/stuff statistic ({type(exc).__name__}: {exc})") from None
        for name, values in (("n_in", n_in), ("n_all", n_all)):
            if len(values) != out.num_classes:
                raise ValueError(f"{name} has {len(values)} counts, expected {out.num_classes}")
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
                raise ValueError(f"{name} must hold non-negative integers")
        out.n_in = np.asarray(n_in, np.int64)
        out.n_all = np.asarray(n_all, np.int64)
        if (out.n_in > out.n_all).any():
            raise ValueError("n_in > n_all for some class")
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ThingStuffStats):
            return NotImplemented
        return (
            self.num_classes == other.num_classes
            and np.array_equal(self.n_in, other.n_in)
            and np.array_equal(self.n_all, other.n_all)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"ThingStuffStats(num_classes={self.num_classes}, in={int(self.n_in.sum())}, "
            f"all={int(self.n_all.sum())})"
        )


def thing_stuff_scores(
    stats: ThingStuffStats,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """The classes sorted by in-instance ratio and their normalised scores.

    ``ratio(c) = n_in(c) / (n_all(c) + 1e-6)``; classes sorted by ratio, descending, ties by
    ascending class id (a stable sort; CUPS' ``torch.sort`` leaves ties unspecified);
    ``q = ratio_sorted / sum(ratio)``, or all zeros if ``sum(ratio) == 0`` (CUPS would divide
    0 by 0 and get NaN, which compares False, so the split is the same). Computed in float64
    (CUPS: float32; this can only matter for ratios equal to within float32 rounding).

    Returns:
        ``(order, q_sorted)``: ``int64[C]`` class ids in sorted order and ``float64[C]`` their q.
    """
    ratio = stats.n_in.astype(np.float64) / (stats.n_all.astype(np.float64) + RATIO_EPS)
    order = np.argsort(-ratio, kind="stable").astype(np.int64)
    total = float(ratio.sum())
    q = ratio[order] / total if total > 0 else np.zeros_like(ratio)
    return order, q


def thing_stuff_split(
    stats: ThingStuffStats, psi: float = DEFAULT_PSI
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Split the pseudo-classes into thing and stuff classes, exactly as CUPS (method §2.6).

    ``num_things = argmin(q_sorted > psi)`` with ``q_sorted`` from :func:`thing_stuff_scores`:
    the thing classes are the leading classes before the first one with ``q <= psi``.

    Edge cases (CUPS behaviour, reproduced on purpose; each logs a warning):

    * every ``q > psi``: ``argmin`` of an all-true array is 0, so there are **no** thing classes
      (not all of them). This can happen only if ``C * psi < 1`` (e.g. 27 classes, ψ = 0.01,
      with nearly equal ratios).
    * no ``q > psi`` (also when every ratio is 0, i.e. no instance pixels): no thing classes.

    Args:
        stats: the summed statistic of all training pseudo-labels.
        psi: ψ_ts, in (0, 1).

    Returns:
        ``(thing_classes, stuff_classes)``: thing classes in the sorted (descending ratio)
        order, which is CUPS' ``things_classes`` order and so the detection-head class index;
        stuff classes **ascending** by class id (CUPS keeps them in the sorted order; the order
        only fixes the semantic-head channel of each stuff class, ``1 + index``, and ascending
        ids keep it stable when the statistics change slightly). Together they hold every class
        ``0..C-1`` once.

    Raises:
        ValueError: ``psi`` not in (0, 1).
    """
    if not 0.0 < psi < 1.0:
        raise ValueError(f"psi must be in (0, 1), got {psi}")
    order, q = thing_stuff_scores(stats)
    above = q > psi
    num_things = int(np.argmin(above))
    if above.all():
        log.warning(
            "thing/stuff split: every class has q > psi=%g; as in CUPS (argmin of an all-true "
            "array is 0) there are no thing classes",
            psi,
        )
    elif num_things == 0:
        log.warning("thing/stuff split: no class has q > psi=%g; no thing classes", psi)
    things = tuple(int(c) for c in order[:num_things])
    stuff = tuple(sorted(int(c) for c in order[num_things:]))
    return things, stuff
