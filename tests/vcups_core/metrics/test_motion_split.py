"""STQ/AQ on moving vs static objects: a prediction that finds only the moving car."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from vcups_core.data import cityscapes_classes as cs
from vcups_core.data.datasets import CITYSCAPES_VPS
from vcups_core.metrics.evaluate import Frame
from vcups_core.metrics.motion_split import evaluate_by_motion

ROAD, CAR = cs.ROAD, cs.CAR


def _frames() -> Iterator[Frame]:
    """Two 20x20 frames: road, car 1 (moving) in rows 0-9 x cols 0-9, car 2 (static) in rows
    10-19 x cols 10-19. The prediction: pseudo-class 0 on road and on car 2, pseudo-class 1 with
    track 7 exactly on car 1."""
    gs = np.full((20, 20), ROAD, np.uint8)
    gi = np.zeros((20, 20), np.int32)
    gs[:10, :10], gi[:10, :10] = CAR, 1
    gs[10:, 10:], gi[10:, 10:] = CAR, 2
    ps = np.zeros((20, 20), np.uint8)
    pi = np.zeros((20, 20), np.int32)
    ps[:10, :10], pi[:10, :10] = 1, 7
    for _ in range(2):
        yield "seq", gs, gi, ps, pi


def test_moving_found_static_missed() -> None:
    report = evaluate_by_motion(
        _frames, CITYSCAPES_VPS, {"seq": {1}}, num_pred_classes=2, pred_is_thing=[False, True]
    )
    # moving subset: car 2 is void, car 1 is predicted exactly -> AQ 1
    assert report["AQ_moving"] == 1.0
    # static subset: car 1 is void, car 2 has no predicted tube -> AQ 0, STQ 0
    assert report["AQ_static"] == 0.0 and report["STQ_static"] == 0.0
    # whole set: one of two equal-size tracks found -> AQ 1/2
    assert abs(report["AQ"] - 0.5) < 1e-9
    # one class matching for all: pseudo 1 -> car, pseudo 0 -> road in every subset, so the
    # moving subset's SQ is perfect (road 300/300 px, car 100/100 px per frame)
    assert report["SQ_moving"] == 1.0
