"""Dataset rules (KITTI-STEP, Waymo, MOTS, dynamic/static masking) and the class-wise table."""

from __future__ import annotations

import numpy as np
import pytest
from metric_frames import VOID, frame

from vcups_core.data import cityscapes_classes as cs
from vcups_core.data.datasets import KITTI_STEP, MOTS, WAYMO, DatasetDescriptor
from vcups_core.metrics import (
    KITTI_STEP_TRACKED,
    MOTS_NUM_CLASSES,
    MOTS_THINGS,
    STQuality,
    classwise_table,
    kitti_step_rule,
    restrict_to_tracks,
    stq_for,
    void_unevaluated,
    vpq_for,
    waymo_crowd_small_tracks,
)


def test_kitti_step_drops_instances_of_untracked_classes() -> None:
    gs, gi = frame("11.1 13.2 14.3 0")
    ps, pi = frame("11.4 13.5 14.6 18.7")
    out = kitti_step_rule(gs, gi, ps, pi)
    np.testing.assert_array_equal(out[3], [[4, 5, 0, 0]])  # truck and bicycle lose their ids
    assert out[3].dtype == pi.dtype
    assert out[0] is gs and out[1] is gi and out[2] is ps
    np.testing.assert_array_equal(pi, [[4, 5, 6, 7]])  # input untouched


def test_mots_classes() -> None:
    assert (MOTS_NUM_CLASSES, sorted(MOTS_THINGS), sorted(KITTI_STEP_TRACKED)) == (2, [1], [11, 13])


def test_descriptor_metrics() -> None:
    stq = stq_for(KITTI_STEP)
    assert stq.things == {11, 13} and stq.num_classes == 19
    assert stq.pred_void == "deeplab2" and stq_for(MOTS, pred_void="false_negative").pred_void == (
        "false_negative"
    )
    # KITTI-STEP: VPQ things are the tracked classes too (rider has no GT instances).
    assert vpq_for(KITTI_STEP).things == {11, 13}
    vpq = vpq_for(MOTS, window_sizes=(1, 2))
    assert vpq.things == {1} and vpq.num_classes == 2 and vpq.window_sizes == (1, 2)


def test_descriptor_thing_split_and_evaluated_classes() -> None:
    # Class matching uses the Cityscapes 8-thing / 11-stuff split on KITTI-STEP and Waymo.
    assert KITTI_STEP.thing_ids == WAYMO.thing_ids == cs.THING_IDS
    assert KITTI_STEP.tracked_ids == {cs.PERSON, cs.CAR}
    assert len(WAYMO.evaluated_ids) == 16
    assert WAYMO.evaluated_ids.isdisjoint({cs.WALL, cs.FENCE, cs.TERRAIN})
    with pytest.raises(ValueError, match="tracked_ids must be thing classes"):
        DatasetDescriptor("x", ("a", "b"), frozenset({1}), frozenset({0}), frozenset({0, 1}))
    with pytest.raises(ValueError, match=r"evaluated_ids has \[2\]"):
        DatasetDescriptor("x", ("a", "b"), frozenset({1}), frozenset({1}), frozenset({2}))


def test_void_unevaluated() -> None:
    sem, inst = frame("0 3.4 13.2 v")
    out_sem, out_inst = void_unevaluated(sem, inst, WAYMO.evaluated_ids)
    np.testing.assert_array_equal(out_sem, [[0, VOID, 13, VOID]])  # wall (3) becomes void
    np.testing.assert_array_equal(out_inst, [[0, 0, 2, 0]])
    assert out_sem.dtype == sem.dtype and out_inst.dtype == inst.dtype
    kept = frame("0 13.2")
    assert void_unevaluated(*kept, WAYMO.evaluated_ids)[0] is kept[0]  # nothing to change
    with pytest.raises(ValueError, match="instance shape"):
        void_unevaluated(sem, inst[:, :2], WAYMO.evaluated_ids)


def test_waymo_crowds_small_tracks() -> None:
    gs = np.full((2, 4, 4), 13, np.uint8)
    gi = np.zeros((2, 4, 4), np.int32)
    # Track 1: 6 px in frame 0, 4 px in frame 1 -> mean 5 (kept at threshold 5: not < 5).
    gi[0, 0, :4], gi[0, 1, :2] = 1, 1
    gi[1, 0, :4] = 1
    # Track 2: 4 px in frame 0 only -> mean 4 over the one frame where present -> crowd.
    gi[0, 2, :4] = 2
    # Track 3: 3 px in frame 0 and 8 px in frame 1 -> mean 5.5 -> kept.
    gi[0, 3, :3] = 3
    gi[1, 2:4, :4] = 3
    out = waymo_crowd_small_tracks(gs, gi, min_mean_area=5)
    expected = gi.copy()
    expected[gi == 2] = 0
    np.testing.assert_array_equal(out, expected)
    assert (gi[0, 2] == 2).all()  # input untouched


def test_waymo_default_threshold_is_400() -> None:
    gs = np.full((1, 40, 40), 11, np.uint8)
    gi = np.zeros((1, 40, 40), np.int32)
    gi[0, :20, :20] = 1  # 400 px -> kept
    gi[0, 20:39, 20:40] = 2  # 380 px -> crowd
    out = waymo_crowd_small_tracks(gs, gi)
    assert (out[0, :20, :20] == 1).all() and (out == 2).sum() == 0


def test_waymo_void_pixels_are_no_track_and_errors() -> None:
    gs = np.full((1, 2, 2), VOID, np.uint8)
    gi = np.ones((1, 2, 2), np.int32)
    np.testing.assert_array_equal(waymo_crowd_small_tracks(gs, gi, 1), gi)
    with pytest.raises(ValueError, match=r"\[T, H, W\]"):
        waymo_crowd_small_tracks(gs[0], gi[0])
    with pytest.raises(ValueError, match="min_mean_area"):
        waymo_crowd_small_tracks(gs, gi, -1)
    with pytest.raises(ValueError, match=r"gt_inst contains -1, ids must be in \[0, 2\*\*31\)"):
        waymo_crowd_small_tracks(gs, -gi)


SCENE = """
0 0   0   0
0 1.1 1.1 1
0 1.2 1.2 v
0 0   0   0
"""


@pytest.mark.parametrize(
    ("keep", "kept_track"),
    [("dynamic", 1), ("static", 2)],
)
def test_restrict_to_tracks(keep: str, kept_track: int) -> None:
    gs, gi = frame(SCENE)
    ps, pi = frame(SCENE.replace("1.1", "1.8").replace("1.2", "1.9"))
    dynamic = {(1, 1): True, (1, 2): False}
    out = restrict_to_tracks(gs, gi, ps, pi, {1}, dynamic, keep)
    kept = gi == kept_track
    # Kept: the two pixels of the chosen track; stuff, crowd (1 with instance 0), void and the
    # other track become void in ground truth and prediction.
    np.testing.assert_array_equal(out[0], np.where(kept, 1, VOID))
    np.testing.assert_array_equal(out[1], np.where(kept, kept_track, 0))
    np.testing.assert_array_equal(out[2], np.where(kept, 1, VOID))
    np.testing.assert_array_equal(out[3], np.where(kept, pi, 0))
    # STQ^D / STQ^S of this perfect prediction: one tube, matched -> 1.
    metric = STQuality(2, {1})
    metric.update(*out)
    assert metric.result()["STQ"] == 1.0


def test_restrict_to_tracks_errors() -> None:
    gs, gi = frame(SCENE)
    with pytest.raises(
        ValueError, match=r"no entry for ground-truth track \(class 1, instance 2\)"
    ):
        restrict_to_tracks(gs, gi, gs, gi, {1}, {(1, 1): True}, "dynamic")
    with pytest.raises(ValueError, match="keep must be"):
        restrict_to_tracks(gs, gi, gs, gi, {1}, {}, "moving")
    with pytest.raises(ValueError, match="pred_inst shape"):
        restrict_to_tracks(gs, gi, gs, gi[:2], {1}, {}, "dynamic")


def test_classwise_table() -> None:
    table = classwise_table(np.array([0.95, 0.5, np.nan]), ["road", "car", "person"])
    assert table.splitlines() == [
        "| Class | SQ |",
        "|:--|--:|",
        "| road | 95.0 |",
        "| car | 50.0 |",
        "| person | - |",
        "| mean | 72.5 |",  # (95.0 + 50.0) / 2; the NaN class is left out of the mean
    ]
    with pytest.raises(ValueError, match="class_names has 2"):
        classwise_table([0.1, 0.2, 0.3], ["a", "b"])
