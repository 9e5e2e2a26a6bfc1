"""VPQ on hand-computed windows (k = 1, 2), the void and FP-exclusion rules, and a reference.

Classes: 0 = road (stuff), 1 = car (thing), 2 = person (thing); ``v`` = void (255).
"""

from __future__ import annotations

import numpy as np
import pytest
from metric_frames import VOID, pair, reference_pq

from vcups_core.metrics import VideoPanopticQuality

C, THINGS = 3, {1, 2}

CAR = """
1.1 1.1 0 0
1.1 1.1 0 0
0   0   0 0
0   0   0 0
"""
# Frame 1 prediction: car.5 covers the 4 car pixels plus 4 road pixels (8 px).
CAR_WIDE = """
1.5 1.5 1.5 1.5
1.5 1.5 1.5 1.5
0   0   0   0
0   0   0   0
"""


def vpq(*frames, sizes=(1, 2), sequence_id=0):
    metric = VideoPanopticQuality(C, THINGS, window_sizes=sizes)
    for f in frames:
        metric.update(*f, sequence_id=sequence_id)
    return metric.result()


def test_tube_matched_only_when_concatenated() -> None:
    r = vpq(pair(CAR, CAR.replace("1.1", "1.5")), pair(CAR, CAR_WIDE))
    k1, k2 = r["per_window"][1], r["per_window"][2]
    # k = 1, frame 0: car IoU 1 (TP), road IoU 1 (TP).
    # k = 1, frame 1: car IoU 4 / (4 + 8 - 4) = 0.5, not > 0.5 -> FP + FN; road 8 / 12 (TP).
    # car: TP 1, FP 1, FN 1, ΣIoU 1 -> PQ = 1 / 2 = 0.5, SQ = 1, RQ = 0.5.
    # road: TP 2, ΣIoU 1 + 2/3 -> PQ = SQ = 5/6, RQ = 1. person: not counted.
    np.testing.assert_array_equal(k1["tp"], [2, 1, 0])
    np.testing.assert_array_equal(k1["fp"], [0, 1, 0])
    np.testing.assert_array_equal(k1["fn"], [0, 1, 0])
    np.testing.assert_allclose(k1["per_class"][:2], [[5 / 6, 5 / 6, 1.0], [0.5, 1.0, 0.5]])
    np.testing.assert_array_equal(k1["counted"], [True, True, False])
    assert k1["PQ"] == pytest.approx((0.5 + 5 / 6) / 2)
    assert k1["num_windows"] == 2
    # k = 2, one window: car |g| = 8, |p| = 12, ∩ = 8 -> IoU 8/12 = 2/3 (TP);
    # road |g| = 24, |p| = 20, ∩ = 20 -> IoU 5/6. PQ = (2/3 + 5/6) / 2 = 0.75.
    np.testing.assert_array_equal(k2["tp"], [1, 1, 0])
    assert k2["PQ"] == pytest.approx(0.75)
    assert k2["PQ_things"] == pytest.approx(2 / 3)
    assert k2["PQ_stuff"] == pytest.approx(5 / 6)
    assert k2["num_windows"] == 1
    # VPQ = mean over window sizes.
    assert r["VPQ"] == pytest.approx(((0.5 + 5 / 6) / 2 + 0.75) / 2)
    assert r["VPQ_things"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert r["VPQ_stuff"] == pytest.approx(5 / 6)


def test_tube_matched_per_frame_but_not_when_concatenated() -> None:
    # ID switch: car.5 in frame 0, car.6 in frame 1, each exactly on the GT car.
    r = vpq(pair(CAR, CAR.replace("1.1", "1.5")), pair(CAR, CAR.replace("1.1", "1.6")))
    k1, k2 = r["per_window"][1], r["per_window"][2]
    assert k1["PQ_things"] == 1.0  # both frames: IoU 1
    # k = 2: |g| = 8; p5 and p6 each meet it in 4 px: IoU 4/8 = 0.5, not > 0.5 -> FN 1, FP 2.
    assert (k2["tp"][1], k2["fp"][1], k2["fn"][1]) == (0, 2, 1)
    assert k2["PQ_things"] == 0.0
    assert k2["RQ_stuff"] == 1.0


def test_void_is_removed_from_the_union() -> None:
    gt = """
    1.1 1.1 v v
    1.1 1.1 v v
    0   0   0 0
    0   0   0 0
    """
    pred = gt.replace("1.1", "1.5").replace("v", "1.5")
    # car.5 = 8 px, 4 of them on void: IoU = 4 / (4 + 8 - 4 - 4) = 1 (0.5 without the rule).
    k1 = vpq(pair(gt, pred), sizes=(1,))["per_window"][1]
    assert (k1["tp"][1], k1["fp"][1], k1["fn"][1]) == (1, 0, 0)
    assert k1["per_class"][1, 1] == 1.0  # SQ of car


ROAD_WITH_VOID = """
v v 0 0
v v 0 0
0 0 0 0
0 0 0 0
"""


@pytest.mark.parametrize(
    ("pred", "car_fp"),
    [
        # car.7: 3 px on void + 1 on road -> 3/4 > 0.5 on void: not a false positive.
        ("1.7 1.7 1.7 0\n1.7 v 0 0\n0 0 0 0\n0 0 0 0", 0),
        # car.7: 2 px on void + 2 on road -> 2/4 = 0.5, not > 0.5: a false positive.
        ("1.7 1.7 1.7 1.7\nv v 0 0\n0 0 0 0\n0 0 0 0", 1),
    ],
)
def test_false_positive_exclusion_on_void(pred: str, car_fp: int) -> None:
    k1 = vpq(pair(ROAD_WITH_VOID, pred), sizes=(1,))["per_window"][1]
    assert k1["fp"][1] == car_fp
    assert bool(k1["counted"][1]) == bool(car_fp)


CROWD = """
1 1 0 0
1 1 0 0
0 0 0 0
0 0 0 0
"""


def test_false_positive_exclusion_on_crowd_of_own_class_only() -> None:
    # car.3 covers 3 crowd-car px + 1 road px: 3/4 on crowd of its class -> not FP. Crowd is no
    # GT segment, so nothing is a FN for car either.
    pred = "1.3 1.3 1.3 0\n1 0 0 0\n0 0 0 0\n0 0 0 0"
    k1 = vpq(pair(CROWD, pred), sizes=(1,))["per_window"][1]
    assert (k1["tp"][1], k1["fp"][1], k1["fn"][1]) == (0, 0, 0)
    # person.3 on the same pixels: crowd of another class does not excuse it -> FP of person.
    pred = pred.replace("1.3", "2.3")
    k1 = vpq(pair(CROWD, pred), sizes=(1,))["per_window"][1]
    assert k1["fp"][2] == 1


def test_stuff_instance_ids_are_ignored_and_things_split() -> None:
    gt = """
    0.4 0.4 2.2 2.2
    0.4 0.4 2.2 2.2
    0   0   0   0
    0   0   0   0
    """
    pred = gt.replace("0.4", "0.9").replace("2.2", "2.8")
    # Stuff is one segment per class whatever its instance ids; person.2 <-> person.8 matches.
    k1 = vpq(pair(gt, pred), sizes=(1,))["per_window"][1]
    assert k1["PQ"] == k1["PQ_things"] == k1["PQ_stuff"] == 1.0
    np.testing.assert_array_equal(k1["counted"], [True, False, True])


def test_sequences_shorter_than_the_window_have_none() -> None:
    metric = VideoPanopticQuality(C, THINGS, window_sizes=(1, 2))
    metric.update(*pair(CAR, CAR), sequence_id="a")
    metric.update(*pair(CAR, CAR), sequence_id="b")  # windows never span two sequences
    r = metric.result()
    assert r["per_window"][1]["num_windows"] == 2
    assert r["per_window"][2]["num_windows"] == 0
    assert r["per_window"][2]["PQ"] == 0.0  # mean over no class
    assert r["VPQ"] == pytest.approx(0.5)


def test_resumed_sequence_is_rejected() -> None:
    metric = VideoPanopticQuality(C, THINGS)
    metric.update(*pair(CAR, CAR), sequence_id="a")
    metric.update(*pair(CAR, CAR), sequence_id="b")
    with pytest.raises(ValueError, match="sequence 'a' resumed after sequence 'b'"):
        metric.update(*pair(CAR, CAR), sequence_id="a")
    metric.reset()
    metric.update(*pair(CAR, CAR), sequence_id="a")  # a fresh start after reset


def test_block_update_equals_frame_by_frame() -> None:
    rng = np.random.default_rng(2)
    block = [rng.integers(0, C, (4, 6, 6)), rng.integers(0, 3, (4, 6, 6))] * 2
    a = VideoPanopticQuality(C, THINGS)
    b = VideoPanopticQuality(C, THINGS)
    a.update(*block, sequence_id=1)
    for t in range(4):
        b.update(*(x[t] for x in block), sequence_id=1)
    assert a.result()["VPQ"] == b.result()["VPQ"]


def test_matches_naive_concatenation() -> None:
    """Window statistics from summed per-frame tables equal PQ of the concatenated frames."""
    rng = np.random.default_rng(11)
    sizes = (1, 2, 3)
    metric = VideoPanopticQuality(C, THINGS, window_sizes=sizes)
    expected = {k: [np.zeros(C, np.int64)] * 3 + [np.zeros(C)] for k in sizes}
    for sid, length in (("x", 4), ("y", 2)):
        frames = []
        for _ in range(length):
            gs = np.kron(rng.choice([0, 1, 2, VOID], (3, 3)), np.ones((2, 2), np.int64))
            gi = np.kron(rng.integers(0, 3, (3, 3)), np.ones((2, 2), np.int64))
            ps = np.where(rng.random(gs.shape) < 0.85, gs, rng.choice([0, 1, 2, VOID], gs.shape))
            pi = np.where(rng.random(gs.shape) < 0.85, gi, rng.integers(0, 3, gs.shape))
            frames.append((gs, gi, ps, pi))
            metric.update(gs, gi, ps, pi, sequence_id=sid)
        for k in sizes:
            for start in range(length - k + 1):
                window = frames[start : start + k]
                cat = [np.concatenate([f[i] for f in window]) for i in range(4)]
                stats = reference_pq(*cat, C, THINGS)
                expected[k] = [e + s for e, s in zip(expected[k], stats, strict=True)]
    r = metric.result()
    for k in sizes:
        tp, fp, fn, iou = expected[k]
        w = r["per_window"][k]
        np.testing.assert_array_equal(w["tp"], tp)
        np.testing.assert_array_equal(w["fp"], fp)
        np.testing.assert_array_equal(w["fn"], fn)
        sq = np.divide(iou, tp, out=np.zeros(C), where=tp > 0)
        np.testing.assert_allclose(w["per_class"][:, 1], sq)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window_sizes": ()}, "window_sizes"),
        ({"window_sizes": (0, 1)}, "window_sizes"),
        ({"window_sizes": (2, 2)}, "window_sizes"),
        ({"ignore_label": 1}, "ignore_label"),
        ({"things": {7}}, "things contains 7"),
    ],
)
def test_constructor_checks(kwargs: dict, message: str) -> None:
    args = {"num_classes": C, "things": THINGS} | kwargs
    with pytest.raises(ValueError, match=message):
        VideoPanopticQuality(**args)


def test_bad_input_is_named() -> None:
    gs, gi, ps, pi = pair(CAR, CAR)
    pi[0, 0] = -1
    with pytest.raises(ValueError, match="pred_inst contains -1"):
        VideoPanopticQuality(C, THINGS).update(gs, gi, ps, pi.astype(np.int32))
