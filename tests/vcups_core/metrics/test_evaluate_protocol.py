"""The two-pass protocol (`vcups_core.metrics.evaluate.evaluate`) on hand-computed frames:
Waymo's 16 evaluated classes, KITTI-STEP's 8-thing matching split, and the config's rules."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from vcups_core.configs.evaluation import EvaluationConfig
from vcups_core.data import cityscapes_classes as cs
from vcups_core.data.datasets import KITTI_STEP, WAYMO
from vcups_core.metrics.evaluate import Frame, descriptor_thing_flags, evaluate

VOID = 255


def scene() -> tuple[np.ndarray, np.ndarray]:
    """40x40 ground truth: rows 0-9 wall (400 px), car track 1 in rows 20-39 x cols 0-19 (400 px,
    kept by Waymo's 400-px rule), road everywhere else (800 px)."""
    sem = np.full((40, 40), cs.ROAD, np.uint8)
    inst = np.zeros((40, 40), np.int32)
    sem[:10] = cs.WALL
    sem[20:, :20], inst[20:, :20] = cs.CAR, 1
    return sem, inst


def source(*frames: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]):
    def frames_() -> Iterator[Frame]:
        for f in frames:
            yield ("seq", *f)

    return frames_


def test_waymo_unevaluated_class_is_never_a_match_target() -> None:
    gs, gi = scene()
    # pseudo-classes: 0 on road, 1 on the wall, 2 (a thing) on the car with track 5
    ps = np.where(gs == cs.WALL, 1, np.where(gs == cs.CAR, 2, 0)).astype(np.uint8)
    pi = np.where(gs == cs.CAR, 5, 0).astype(np.int32)
    report = evaluate(source((gs, gi, ps, pi)), WAYMO, pred_is_thing=[False, False, True])
    assert report["class_mapping"]["0"] == "road" and report["class_mapping"]["2"] == "car"
    assert report["class_mapping"]["1"] != "wall"  # wall is not one of Waymo's 16 classes
    # GT wall is void, so pseudo-class 1 lies on void only: road 800/800, car 400/400 -> SQ 1.
    assert report["SQ"] == 1.0 and report["STQ"] == 1.0
    assert "wall" not in report["IoU_per_class"] and len(report["IoU_per_class"]) == 16


@pytest.mark.parametrize(
    ("pred_void", "sq"),
    [
        # GT wall -> void; predicted wall -> void too. Road: TP 700, FN 100 (predicted wall, now
        # void) -> 0.875; car 400/400 = 1; wall: no pixel left. deeplab2 adds the void bin (FP
        # 100, IoU 0): (0.875 + 1 + 0) / 3 = 0.625. (Scoring wall would give (0.875 + 1 +
        # 400/500) / 3 = 0.8917.)
        ("deeplab2", 0.625),
        ("false_negative", (0.875 + 1) / 2),  # 0.9375
    ],
)
def test_waymo_unevaluated_class_is_void_in_scoring(pred_void: str, sq: float) -> None:
    gs, gi = scene()
    ps = gs.copy()
    ps[10:20, :10] = cs.WALL  # 100 road pixels predicted as wall
    pi = gi.copy()
    cfg = EvaluationConfig(match="none", pred_void=pred_void)  # type: ignore[arg-type]
    report = evaluate(source((gs, gi, ps, pi)), WAYMO, cfg)
    assert report["SQ"] == pytest.approx(sq)
    assert report["IoU_per_class"]["road"] == pytest.approx(0.875)
    assert report["protocol"]["pred_void"] == pred_void and report["protocol"]["match"] == "none"


def test_kitti_step_matches_with_the_cityscapes_thing_split() -> None:
    # GT: road, a rider region (no instance ids in KITTI-STEP) and car track 1.
    gs = np.full((8, 8), cs.ROAD, np.uint8)
    gi = np.zeros((8, 8), np.int32)
    gs[:4, :4] = cs.RIDER
    gs[4:, 4:], gi[4:, 4:] = cs.CAR, 1
    # pseudo-classes in KITTI ids: rider predicted as 18 (bicycle), car as 14 (truck), road as 1.
    ps = np.where(gs == cs.RIDER, 18, np.where(gs == cs.CAR, 14, 1)).astype(np.uint8)
    pi = np.where(gs == cs.CAR, 3, 0).astype(np.int32)
    report = evaluate(
        source((gs, gi, ps, pi)),
        KITTI_STEP,
        pred_is_thing=descriptor_thing_flags(KITTI_STEP),
        window_sizes=(1,),  # one frame: longer windows do not exist
    )
    # Rider is a thing (8-thing split), so the pseudo-thing 18 can be matched to it; with the old
    # {person, car} split it was stuff and out of the thing block.
    assert report["class_mapping"]["18"] == "rider" and report["class_mapping"]["14"] == "car"
    assert report["class_mapping"]["1"] == "road"
    assert report["STQ"] == 1.0 and report["VPQ"] == pytest.approx(1.0)


def test_config_window_sizes_and_tube_rule_are_read() -> None:
    gs, gi = scene()
    cfg = EvaluationConfig(match="none", vpq_window_sizes=(1,), pred_tubes="labelled")
    report = evaluate(source((gs, gi, gs, gi)), WAYMO, cfg)
    assert list(report["VPQ_per_window"]) == ["1"]
    assert report["protocol"]["pred_tubes"] == "labelled"
    # the Waymo crowd threshold comes from the config: at 401 px the 400-px car becomes crowd,
    # so there is no GT tube and AQ is 0
    crowd = EvaluationConfig(match="none", waymo_min_track_area=401)
    assert evaluate(source((gs, gi, gs, gi)), WAYMO, crowd)["AQ"] == 0.0


def test_classes_absent_from_the_world_are_not_matched() -> None:
    """Three stuff pseudo-classes all on road: the Hungarian step sends two of them to classes
    without a ground-truth pixel when every Cityscapes class is evaluated (road IoU 400/1200,
    two classes at IoU 0, car 1: SQ = (1/3 + 0 + 0 + 1) / 4); with only the classes the data
    has (as :data:`~vcups_core.data.datasets.SYNTHETIC_WORLD` for the synthetic world) all three
    go to road by majority and SQ = 1."""
    import dataclasses

    from vcups_core.data.datasets import CITYSCAPES_VPS

    gs = np.full((40, 40), cs.ROAD, np.uint8)
    gi = np.zeros((40, 40), np.int32)
    gs[20:, :20], gi[20:, :20] = cs.CAR, 1
    ps = np.zeros((40, 40), np.uint8)
    ps[10:20] = 1
    ps[20:] = 3
    ps[20:, :20] = 2
    pi = np.where(ps == 2, 5, 0).astype(np.int32)
    flags = [False, False, True, False]
    pc = frozenset({cs.PERSON, cs.CAR})
    everything = dataclasses.replace(CITYSCAPES_VPS, thing_ids=pc, tracked_ids=pc)
    only_present = dataclasses.replace(everything, evaluated_ids=frozenset({cs.ROAD, cs.CAR}))
    full = evaluate(source((gs, gi, ps, pi)), everything, pred_is_thing=flags, window_sizes=(1,))
    assert full["SQ"] == pytest.approx((1 / 3 + 1) / 4)
    mapped = {int(k): v for k, v in full["class_mapping"].items()}
    assert sorted(mapped[k] for k in (0, 1, 3)).count("road") == 1
    own = evaluate(source((gs, gi, ps, pi)), only_present, pred_is_thing=flags, window_sizes=(1,))
    assert own["SQ"] == pytest.approx(1.0)
    assert {own["class_mapping"][str(k)] for k in (0, 1, 3)} == {"road"}
