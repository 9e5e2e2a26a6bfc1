"""STQ / AQ / SQ on hand-computed 4x4 cases, a naive reference, and every input error.

Classes: 0 = road (stuff), 1 = car (thing), 2 = person (thing); ``v`` = void (255).
Grid tokens are ``class`` or ``class.instance``.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from metric_frames import VOID, frame, pair, reference_stq

from vcups_core.metrics import HistogramBuilder, STQuality, iou_from_confusion

C, THINGS = 3, {1, 2}

CAR1 = """
1.1 1.1 0 0
1.1 1.1 0 0
0   0   0 0
0   0   0 0
"""


def stq(*frames, sequence_id=0, rule="deeplab2", pred_void="deeplab2"):
    metric = STQuality(C, THINGS, pred_tubes=rule, pred_void=pred_void)
    for f in frames:
        metric.update(*f, sequence_id=sequence_id)
    return metric.result()


def relabel(grid: str, old: str, new: str) -> str:
    return re.sub(rf"(?<![\d.]){re.escape(old)}(?![\d.])", new, grid)


def test_perfect_prediction() -> None:
    two = """
    0   0   2.3 2.3
    1.1 1.1 2.3 2.3
    1.1 1.1 0   0
    v   0   0   0
    """
    r = stq(pair(two, two), pair(CAR1, CAR1))
    # Every tube equals its prediction (TPA = |p| = |g|, IoU_id = 1) and every class IoU is 1.
    assert r["STQ"] == r["AQ"] == r["SQ"] == 1.0
    np.testing.assert_array_equal(r["IoU_per_class"], [1.0, 1.0, 1.0])
    assert r["Length_per_seq"] == {0: 2}


def test_id_switch_mid_sequence() -> None:
    # GT tube car.1 = 4 + 4 = 8 px; predicted car.5 (frame 0) and car.6 (frame 1), 4 px each.
    # IoU_id = 4 / (4 + 8 - 4) = 0.5 for both; AQ = (1/8)(4*0.5 + 4*0.5) = 0.5; SQ = 1.
    r = stq(pair(CAR1, relabel(CAR1, "1.1", "1.5")), pair(CAR1, relabel(CAR1, "1.1", "1.6")))
    assert r["AQ"] == pytest.approx(0.5)
    assert r["SQ"] == 1.0
    assert r["STQ"] == pytest.approx(math.sqrt(0.5))


def test_track_swap_between_two_objects() -> None:
    gt = """
    1.1 1.1 1.2 1.2
    1.1 1.1 1.2 1.2
    0   0   0   0
    0   0   0   0
    """
    first = relabel(relabel(gt, "1.1", "1.10"), "1.2", "1.20")
    swapped = relabel(relabel(gt, "1.1", "1.20"), "1.2", "1.10")
    # Tubes: g1 = g2 = 8 px, p10 = p20 = 8 px; each GT tube meets each prediction in 4 px.
    # IoU_id = 4 / (8 + 8 - 4) = 1/3; AQ_g = (1/8)(4/3 + 4/3) = 1/3 for both tubes.
    r = stq(pair(gt, first), pair(gt, swapped))
    assert r["AQ"] == pytest.approx(1 / 3)
    assert r["STQ"] == pytest.approx(math.sqrt(1 / 3))


def test_class_flicker_splits_a_predicted_track() -> None:
    # Predicted instance 7 is car in frame 0 and person in frame 1: tubes (1,7) and (2,7), 4 px
    # each. GT car.1 = 8 px. TPA ignores class: 4 with each, IoU_id = 4/(4+8-4) = 0.5 -> AQ = 0.5.
    # SQ: road 12+12 px all right (IoU 1); car TP 4, FN 4 (IoU 0.5); person FP 4, not in the GT
    # (IoU 0, counted). SQ = (1 + 0.5 + 0) / 3 = 0.5; STQ = sqrt(0.25) = 0.5.
    r = stq(pair(CAR1, relabel(CAR1, "1.1", "1.7")), pair(CAR1, relabel(CAR1, "1.1", "2.7")))
    assert r["AQ"] == pytest.approx(0.5)
    np.testing.assert_allclose(r["IoU_per_class"], [1.0, 0.5, 0.0])
    assert r["SQ"] == pytest.approx(0.5)
    assert r["STQ"] == pytest.approx(0.5)


def test_fragmented_track() -> None:
    pred = """
    1.3 1.4 0 0
    1.3 1.4 0 0
    0   0   0 0
    0   0   0 0
    """
    # One GT tube (4 px) predicted as ids 3 and 4 (2 px each): IoU_id = 2/(2+4-2) = 0.5 each;
    # AQ = (1/4)(2*0.5 + 2*0.5) = 0.5.
    assert stq(pair(CAR1, pred))["AQ"] == pytest.approx(0.5)


def test_merged_tracks() -> None:
    gt = """
    1.1 1.1 1.2 1.2
    1.1 1.1 1.2 1.2
    0   0   0   0
    0   0   0   0
    """
    pred = relabel(relabel(gt, "1.1", "1.9"), "1.2", "1.9")
    # p9 = 8 px covers both 4-px tubes: IoU_id = 4/(8+4-4) = 0.5; AQ_g = (1/4)(4*0.5) = 0.5 each.
    assert stq(pair(gt, pred))["AQ"] == pytest.approx(0.5)


CROWD = """
1   1   1.1 1.1
1   1   1.1 1.1
0   0   0   0
0   0   0   0
"""


def test_crowd_is_ignored_for_aq_but_counted_for_sq() -> None:
    # One prediction id 6 covers the crowd (car, instance 0) and the car.1 tube. Crowd pixels are
    # removed from predicted tubes, so |p6| = 4 = |g| and AQ = 1 (it would be 0.5 otherwise).
    covered = relabel(relabel(CROWD, "1", "1.6"), "1.1", "1.6")
    r = stq(pair(CROWD, covered))
    assert r["AQ"] == 1.0 and r["SQ"] == 1.0
    # Crowd predicted as road: AQ unaffected, but SQ counts the crowd as car pixels:
    # car TP 4, FN 4 -> 0.5; road TP 8, FP 4 -> 8/12; person absent -> SQ = (0.5 + 2/3) / 2.
    as_road = relabel(CROWD, "1", "0")
    r = stq(pair(CROWD, as_road))
    assert r["AQ"] == 1.0
    assert r["SQ"] == pytest.approx((0.5 + 2 / 3) / 2)


@pytest.mark.parametrize(
    ("pred_void", "expected"),
    [
        # road: TP 12, FN 4 (predicted void) -> IoU 12/16 = 0.75; car and person: union 0.
        # deeplab2 (default): the void bin has FP 4 -> union 4 > 0, IoU 0, and enters the mean:
        # SQ = (0.75 + 0) / 2 = 0.375. "false_negative": SQ = 0.75 / 1 = 0.75.
        ("deeplab2", 0.375),
        ("false_negative", 0.75),
    ],
)
def test_void_prediction_on_one_class(pred_void: str, expected: float) -> None:
    gt = "\n".join(["0 0 0 0"] * 4)
    pred = "\n".join(["v v 0 0", "v v 0 0", "0 0 0 0", "0 0 0 0"])
    r = stq(pair(gt, pred), pred_void=pred_void)
    np.testing.assert_allclose(r["IoU_per_class"], [0.75, 0.0, 0.0])  # real classes only
    assert r["SQ"] == pytest.approx(expected)
    assert r["AQ"] == 0.0 and r["STQ"] == 0.0  # no GT tube


CAR1_ROAD_VOID = """
1.1 1.1 v v
1.1 1.1 0 0
0   0   0 0
0   0   0 0
"""


@pytest.mark.parametrize(
    ("pred_void", "sq"),
    [
        # road: TP 10, FN 2 (predicted void), FP 0 -> 10/12 = 5/6; car 4/4 = 1; person union 0.
        # deeplab2: 2 classes + the void bin (FP 2, IoU 0): SQ = (5/6 + 1 + 0) / 3 = 11/18.
        ("deeplab2", 11 / 18),
        # false_negative: SQ = (5/6 + 1) / 2 = 11/12 (= 11/18 * 3/2, the n -> n + 1).
        ("false_negative", 11 / 12),
    ],
)
def test_void_prediction_with_things(pred_void: str, sq: float) -> None:
    r = stq(pair(CAR1, CAR1_ROAD_VOID), pred_void=pred_void)
    np.testing.assert_allclose(r["IoU_per_class"], [5 / 6, 1.0, 0.0])
    assert r["SQ"] == pytest.approx(sq)
    assert r["AQ"] == 1.0  # the car tube is exact; void on stuff does not touch AQ
    assert r["STQ"] == pytest.approx(math.sqrt(sq))


@pytest.mark.parametrize("pred_void", ["deeplab2", "false_negative"])
def test_void_prediction_on_void_ground_truth_adds_no_bin(pred_void: str) -> None:
    gt = CAR1.replace("1.1 1.1 0 0", "1.1 1.1 v v", 1)
    # The two GT-void pixels are predicted void: the void row is dropped, so the void column
    # holds no labelled pixel and there is no bin: road 10/10, car 4/4 -> SQ 1 under both rules.
    assert stq(pair(gt, gt), pred_void=pred_void)["SQ"] == 1.0


@pytest.mark.parametrize(
    ("pred_void", "pooled", "seq_b"),
    [
        # "a": CAR1 exact (road 12/12, car 4/4, no void) -> 1 under both rules.
        # "b": road everywhere, 4 px predicted void -> road 12/16 = 0.75; deeplab2 adds the bin:
        #      0.75 / 2 = 0.375; false_negative: 0.75.
        # pooled: road TP 24, FN 4 -> 24/28 = 6/7; car 1; deeplab2: (6/7 + 1 + 0) / 3 = 13/21,
        #         false_negative: (6/7 + 1) / 2 = 13/14.
        ("deeplab2", 13 / 21, 0.375),
        ("false_negative", 13 / 14, 0.75),
    ],
)
def test_void_bin_per_sequence_and_pooled(pred_void: str, pooled: float, seq_b: float) -> None:
    metric = STQuality(C, THINGS, pred_void=pred_void)
    metric.update(*pair(CAR1, CAR1), sequence_id="a")
    road = "\n".join(["0 0 0 0"] * 4)
    voided = "\n".join(["v v 0 0", "v v 0 0", "0 0 0 0", "0 0 0 0"])
    metric.update(*pair(road, voided), sequence_id="b")
    r = metric.result()
    assert r["SQ"] == pytest.approx(pooled)
    assert r["IoU_per_seq"] == pytest.approx({"a": 1.0, "b": seq_b})


def test_iou_from_confusion_by_hand() -> None:
    # rows GT (road, car, void), columns prediction (road, car, void); C = 2.
    confusion = np.array(
        [
            [6, 1, 3],  # road: TP 6, FN 1 + 3 (3 predicted void)
            [2, 4, 0],  # car: TP 4, FN 2
            [5, 5, 9],  # GT void: dropped
        ],
        np.int64,
    )
    # road: union = 6 + FP 2 + FN 4 = 12 -> 0.5; car: union = 4 + FP 1 + FN 2 = 7 -> 4/7.
    iou, mean = iou_from_confusion(confusion, 2)
    np.testing.assert_allclose(iou, [0.5, 4 / 7])
    assert mean == pytest.approx((0.5 + 4 / 7) / 3)  # deeplab2: + void bin (FP 3, IoU 0)
    _, mean_fn = iou_from_confusion(confusion, 2, pred_void="false_negative")
    assert mean_fn == pytest.approx((0.5 + 4 / 7) / 2)
    with pytest.raises(ValueError, match="pred_void"):
        iou_from_confusion(confusion, 2, pred_void="other")  # type: ignore[arg-type]


def test_empty_prediction() -> None:
    empty = "\n".join(["v v v v"] * 4)
    # Every labelled pixel is a FN: IoU 0 for road and car (unions 12 and 4), so SQ = 0; no
    # predicted tube, so AQ = 0.
    r = stq(pair(CAR1, empty))
    assert r["STQ"] == r["AQ"] == r["SQ"] == 0.0


def test_class_absent_from_gt_but_predicted_counts() -> None:
    gt = "\n".join(["0 0 0 0"] * 4)
    pred = "\n".join(["2.3 2.3 0 0", "2.3 2.3 0 0", "0 0 0 0", "0 0 0 0"])
    # road TP 12, FN 4 -> 0.75; person TP 0, FP 4 -> union 4, IoU 0, counted; car union 0 -> out.
    r = stq(pair(gt, pred))
    assert r["SQ"] == pytest.approx((0.75 + 0.0) / 2)


def test_pooled_versus_per_sequence() -> None:
    metric = STQuality(C, THINGS)
    # Sequence "a": one perfect tube -> AQ_a = 1.
    metric.update(*pair(CAR1, CAR1), sequence_id="a")
    # Sequence "b": car.1 perfect (1.0) and car.2 with an ID switch (0.5) -> AQ_b = 0.75.
    gt = """
    1.1 1.1 1.2 1.2
    1.1 1.1 1.2 1.2
    0   0   0   0
    0   0   0   0
    """
    metric.update(*pair(gt, gt), sequence_id="b")
    metric.update(*pair(gt, relabel(gt, "1.2", "1.8")), sequence_id="b")
    r = metric.result()
    # Pooled over the 3 tubes: (1 + 1 + 0.5) / 3 = 5/6, not the mean of sequences (0.875).
    assert r["AQ"] == pytest.approx(5 / 6)
    assert r["AQ_per_seq"] == pytest.approx({"a": 1.0, "b": 0.75})
    assert r["ID_per_seq"] == r["IoU_per_seq"] == {"a": 1.0, "b": 1.0}
    assert r["STQ_per_seq"] == pytest.approx({"a": 1.0, "b": math.sqrt(0.75)})
    assert r["Length_per_seq"] == {"a": 1, "b": 2}


def test_per_sequence_iou_uses_only_that_sequence() -> None:
    metric = STQuality(C, THINGS)
    metric.update(*pair(CAR1, CAR1), sequence_id="a")
    # Sequence "b": road everywhere, predicted person on 4 px -> road 12/16, person 0 -> 0.375.
    road = "\n".join(["0 0 0 0"] * 4)
    person = "\n".join(["2.1 2.1 0 0", "2.1 2.1 0 0", "0 0 0 0", "0 0 0 0"])
    metric.update(*pair(road, person), sequence_id="b")
    r = metric.result()
    assert r["ID_per_seq"]["a"] == 1.0
    assert r["ID_per_seq"]["b"] == pytest.approx(0.375)
    # Pooled: road TP 12 + 12 = 24, FN 4 -> 24/28; car 4/4 = 1; person 0 -> (24/28 + 1 + 0) / 3.
    assert r["SQ"] == pytest.approx((24 / 28 + 1) / 3)


def test_single_frame() -> None:
    r = stq(pair(CAR1, CAR1), sequence_id="only")
    assert r["STQ"] == 1.0 and r["Length_per_seq"] == {"only": 1}


def test_nothing_accumulated() -> None:
    r = STQuality(C, THINGS).result()
    assert r["STQ"] == r["AQ"] == r["SQ"] == 0.0 and r["AQ_per_seq"] == {}


def test_block_update_equals_frame_by_frame() -> None:
    rng = np.random.default_rng(0)
    block = [rng.integers(0, C, (3, 6, 8)), rng.integers(0, 3, (3, 6, 8))] * 2
    block[0][:, 0, :2] = VOID
    block[2] = rng.integers(0, C, (3, 6, 8))
    a, b = STQuality(C, THINGS), STQuality(C, THINGS)
    a.update(*block, sequence_id="s")
    for t in range(3):
        b.update(*(x[t] for x in block), sequence_id="s")
    ra, rb = a.result(), b.result()
    assert ra["STQ"] == rb["STQ"] and ra["Length_per_seq"] == rb["Length_per_seq"] == {"s": 3}


def test_reset() -> None:
    metric = STQuality(C, THINGS)
    metric.update(*pair(CAR1, relabel(CAR1, "1.1", "1.5")))
    metric.reset()
    metric.update(*pair(CAR1, CAR1))
    assert metric.result()["STQ"] == 1.0


PRED_ZERO = relabel(CAR1, "1.1", "1")
CAR_ON_VOID = """
1.1 1.1 v 0
1.1 1.1 v 0
0   0   0 0
0   0   0 0
"""
PRED_OVER_VOID = relabel(relabel(CAR_ON_VOID, "1.1", "1.5"), "v", "1.5")


@pytest.mark.parametrize(
    ("gt", "pred", "deeplab2", "labelled"),
    [
        # Predicted car with instance 0 on the tube: deeplab2 makes it the tube (1, 0) -> AQ 1;
        # "labelled" ignores instance-0 predictions -> no predicted tube -> AQ 0.
        (CAR1, PRED_ZERO, 1.0, 0.0),
        # car.5 covers the 4-px tube and 2 GT-void px. deeplab2: |p| = 6, IoU_id = 4/6, AQ = 2/3;
        # "labelled": void pixels are not in p, |p| = 4, AQ = 1.
        (CAR_ON_VOID, PRED_OVER_VOID, 2 / 3, 1.0),
    ],
)
def test_predicted_tube_rules(gt: str, pred: str, deeplab2: float, labelled: float) -> None:
    assert stq(pair(gt, pred))["AQ"] == pytest.approx(deeplab2)
    assert stq(pair(gt, pred), rule="labelled")["AQ"] == pytest.approx(labelled)


def test_prediction_on_gt_stuff_counts_in_tube_size() -> None:
    pred = relabel(CAR1, "1.1", "1.5").replace("1.5 1.5 0 0", "1.5 1.5 1.5 0", 1)
    # car.5 = 5 px (one on road): IoU_id = 4 / (5 + 4 - 4) = 0.8 under both rules.
    assert stq(pair(CAR1, pred))["AQ"] == pytest.approx(0.8)
    assert stq(pair(CAR1, pred), rule="labelled")["AQ"] == pytest.approx(0.8)


def test_things_restrict_tracking() -> None:
    # With things = {2}, car is stuff for AQ: no GT tube -> AQ 0 although ids switch.
    metric = STQuality(C, {2})
    metric.update(*pair(CAR1, relabel(CAR1, "1.1", "1.5")))
    assert metric.result()["AQ"] == 0.0


@pytest.mark.parametrize("pred_void", ["deeplab2", "false_negative"])
@pytest.mark.parametrize("rule", ["deeplab2", "labelled"])
@pytest.mark.parametrize("run_fraction", [0.0, 1.0])
def test_matches_naive_reference(rule: str, run_fraction: float, pred_void: str) -> None:
    rng = np.random.default_rng(7)
    sequences = {}
    metric = STQuality(C, THINGS, pred_tubes=rule, pred_void=pred_void)
    # Feed histograms from a builder forced onto one counting path (public update_histogram).
    builder = HistogramBuilder(C, max_run_fraction=run_fraction)
    for sid in ("x", "y"):
        frames = []
        for _ in range(3):
            gs = np.kron(rng.choice([0, 1, 2, VOID], (3, 4)), np.ones((2, 2), np.int64))
            gi = np.kron(rng.integers(0, 3, (3, 4)), np.ones((2, 2), np.int64))
            ps = np.where(rng.random(gs.shape) < 0.8, gs, rng.choice([0, 1, 2, VOID], gs.shape))
            pi = np.where(rng.random(gs.shape) < 0.8, gi, rng.integers(0, 4, gs.shape))
            frames.append((gs, gi, ps, pi))
            metric.update_histogram(builder(gs, gi, ps, pi), sequence_id=sid)
        sequences[sid] = frames
    expected = reference_stq(sequences, C, THINGS, rule, pred_void)
    r = metric.result()
    assert (r["STQ"], r["AQ"], r["SQ"]) == pytest.approx(expected[:3])
    assert r["AQ_per_seq"] == pytest.approx(expected[3])


GOOD = frame(CAR1)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ((*GOOD, GOOD[0], GOOD[1][:3]), r"pred_inst shape \(3, 4\) != gt_sem shape \(4, 4\)"),
        (
            (*GOOD, np.full((4, 4), 3), GOOD[1]),
            r"pred_sem contains 3, expected a class id in \[0, 3\)",
        ),
        ((np.full((4, 4), 200), GOOD[1], *GOOD), "gt_sem contains 200"),
        ((*GOOD, GOOD[0], np.full((4, 4), -2)), "pred_inst contains -2, ids must be >= 0"),
        (
            (GOOD[0], np.full((4, 4), 1 << 16), *GOOD),
            r"gt_inst contains 65536, instance ids must be < 2\*\*16",
        ),
        ((GOOD[0].astype(np.int8) - 1, GOOD[1], *GOOD), "gt_sem contains -1, ids must be >= 0"),
        ((GOOD[0].astype(float), GOOD[1], *GOOD), "gt_sem must be an integer array"),
        (
            (GOOD[0][None, None], GOOD[1][None, None], GOOD[0][None, None], GOOD[1][None, None]),
            "gt_sem must be",
        ),
    ],
)
def test_bad_input_errors(arrays, message: str) -> None:
    metric = STQuality(C, THINGS)
    with pytest.raises(ValueError, match=message):
        metric.update(*arrays)
    assert metric.result()["Length_per_seq"] == {}  # nothing was accumulated


def test_failing_block_adds_no_frame() -> None:
    gs, gi = frame(CAR1)
    block = [np.stack([gs, gs]), np.stack([gi, gi]), np.stack([gs, gs]), np.stack([gi, gi])]
    block[2][1, 0, 0] = 9
    metric = STQuality(C, THINGS)
    with pytest.raises(ValueError, match="pred_sem contains 9"):
        metric.update(*block)
    assert metric.result()["Length_per_seq"] == {}


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((0, set()), {}, "num_classes"),
        ((3, {1}), {"ignore_label": 2}, "ignore_label"),
        ((3, {3}), {}, "things contains 3"),
        ((3, 5), {}, "things must be an iterable"),
        ((3, {1}), {"label_bit_shift": 32}, "label_bit_shift"),
        ((3, {1}), {"pred_tubes": "other"}, "pred_tubes"),
        ((3, {1}), {"pred_void": "other"}, "pred_void"),
    ],
)
def test_constructor_checks(args, kwargs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        STQuality(*args, **kwargs)


def test_mixed_histogram_rejected() -> None:
    from vcups_core.metrics import joint_histogram

    hist = joint_histogram(*pair(CAR1, CAR1), num_classes=4)
    with pytest.raises(ValueError, match="histogram built for num_classes=4"):
        STQuality(C, THINGS).update_histogram(hist)
