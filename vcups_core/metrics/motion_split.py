"""STQ and AQ on moving vs static objects (the paper's STQ^D / STQ^S, [S Tab. 9]).

The paper's central claim is that the trained model finds objects its motion-based pseudo-labels
never contain: static ones. To measure it, the ground truth is split by which of its tracks move
(known for the synthetic world: ``SceneObject.moving``):

* **moving**: the ground-truth pixels of static objects become void (ignored in ground truth and
  prediction), so only moving tracks are scored;
* **static**: the other way round.

Both subsets reuse the class matching of the whole set (:func:`match_pseudo_classes`), so a
subset changes which objects are scored, never what a pseudo-class means.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from vcups_core.configs.evaluation import EvaluationConfig
from vcups_core.data.datasets import DatasetDescriptor
from vcups_core.metrics.evaluate import Frame, FrameSource, evaluate, match_pseudo_classes


def void_instances(
    frames: FrameSource, keep: Mapping[str, Collection[int]], *, moving: bool, ignore_label: int
) -> FrameSource:
    """``frames`` with some ground-truth instances made void (semantic ``ignore_label``,
    instance 0).

    Args:
        frames: the frame source.
        keep: per sequence, the ground-truth instance ids of the moving objects.
        moving: True keeps the moving objects (voids the others), False keeps the static ones.
        ignore_label: the dataset's void id.
    """

    def source() -> Iterator[Frame]:
        for seq, gt_sem, gt_inst, pred_sem, pred_inst in frames():
            ids = np.fromiter(keep.get(seq, ()), np.int64)
            inside = gt_inst > 0
            is_moving = np.isin(gt_inst, ids)
            drop = inside & (~is_moving if moving else is_moving)
            if drop.any():
                gt_sem = gt_sem.copy()
                gt_inst = gt_inst.copy()
                gt_sem[drop] = ignore_label
                gt_inst[drop] = 0
            yield seq, gt_sem, gt_inst, pred_sem, pred_inst

    return source


def evaluate_by_motion(
    frames: FrameSource,
    descriptor: DatasetDescriptor,
    moving_ids: Mapping[str, Collection[int]],
    *,
    config: EvaluationConfig | None = None,
    num_pred_classes: int | None = None,
    pred_is_thing: Sequence[bool] | None = None,
) -> dict[str, Any]:
    """:func:`~vcups_core.metrics.evaluate.evaluate` of the whole set, plus ``STQ_moving``,
    ``AQ_moving``, ``SQ_moving``, ``STQ_static``, ``AQ_static`` and ``SQ_static`` (one class
    matching for all three).

    Args:
        frames: the frame source (called once per pass: three evaluations and the matching).
        descriptor: the dataset's classes and rules.
        moving_ids: per sequence id, the ground-truth instance ids of moving objects.
        config, num_pred_classes, pred_is_thing: as :func:`evaluate`.
    """
    cfg = config if config is not None else EvaluationConfig()
    match = None
    if cfg.match == "hungarian":
        match = match_pseudo_classes(
            frames, descriptor, num_pred_classes, pred_is_thing, cfg.adhere_thing_stuff
        )
    kwargs: dict[str, Any] = {
        "num_pred_classes": num_pred_classes,
        "pred_is_thing": pred_is_thing,
        "class_match": match,
    }
    report = evaluate(frames, descriptor, cfg, **kwargs)
    for name, moving in (("moving", True), ("static", False)):
        subset = void_instances(
            frames, moving_ids, moving=moving, ignore_label=descriptor.ignore_label
        )
        sub = evaluate(subset, descriptor, cfg, **kwargs)
        for key in ("STQ", "AQ", "SQ"):
            report[f"{key}_{name}"] = sub[key]
    return report
