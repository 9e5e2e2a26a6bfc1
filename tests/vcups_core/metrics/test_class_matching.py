"""Pseudo-class matching: Hungarian per thing/stuff block, majority leftovers, apply, confusion."""

from __future__ import annotations

import numpy as np
import pytest

from vcups_core.metrics import confusion_from, match_classes

ALL_STUFF3 = np.zeros(3, bool)


def test_square_hungarian_beats_greedy() -> None:
    conf = np.array([[5, 4, 0], [6, 0, 0], [0, 0, 3]])
    # Greedy argmax would send pseudo 0 and 1 both to GT 0. Hungarian: 0->1, 1->0, 2->2 sums
    # 4 + 6 + 3 = 13 > 5 + 0 + 3 = 8 (0->0, 1->1, 2->2).
    m = match_classes(conf, ALL_STUFF3, ALL_STUFF3)
    np.testing.assert_array_equal(m.mapping, [1, 0, 2])
    assert m.hungarian_pairs == ((0, 1), (1, 0), (2, 2))
    # Rows are mapped predicted classes: GT row 0 <- pseudo 1, row 1 <- pseudo 0, row 2 <- 2.
    np.testing.assert_array_equal(m.matched_confusion, [[6, 0, 0], [5, 4, 0], [0, 0, 3]])


def test_more_pseudo_than_gt_leftovers_go_to_majority() -> None:
    conf = np.array([[10, 0], [0, 8], [3, 1], [1, 5]])
    # Hungarian pairs 0->0 and 1->1 (18); leftovers: pseudo 2 -> argmax 0, pseudo 3 -> 1.
    m = match_classes(conf, np.zeros(4, bool), np.zeros(2, bool))
    np.testing.assert_array_equal(m.mapping, [0, 1, 0, 1])
    assert m.hungarian_pairs == ((0, 0), (1, 1))
    np.testing.assert_array_equal(m.matched_confusion, [[13, 1], [1, 13]])


def test_unevaluated_gt_classes_are_never_targets() -> None:
    # GT 1 is not evaluated (e.g. Waymo's wall). Pseudo 1 overlaps it most (8 px). With GT 1 out
    # of the block the columns are GT 0 and 2: Hungarian takes 0->0, 1->2 (10 + 0 = 10) over
    # 0->2, 1->0 (0 + 2 = 2), so pseudo 1 lands on GT 2 although it never overlaps it.
    conf = np.array([[10, 0, 0], [2, 8, 0]])
    m = match_classes(conf, np.zeros(2, bool), ALL_STUFF3, gt_evaluated=[True, False, True])
    np.testing.assert_array_equal(m.mapping, [0, 2])
    assert 1 not in m.mapping.tolist()
    # Without the restriction pseudo 1 goes to GT 1.
    np.testing.assert_array_equal(
        match_classes(conf, np.zeros(2, bool), ALL_STUFF3).mapping, [0, 1]
    )
    with pytest.raises(ValueError, match="gt_evaluated must have length 3"):
        match_classes(conf, np.zeros(2, bool), ALL_STUFF3, gt_evaluated=[True])


def test_thing_stuff_separation() -> None:
    conf = np.array([[9, 1, 0], [0, 0, 5], [0, 3, 7]])
    pred_thing = np.array([True, False, True])
    gt_thing = np.array([False, True, True])
    # Thing block rows {0, 2} x cols {1, 2} = [[1, 0], [3, 7]]: 0->1, 2->2 (1 + 7 = 8 > 0 + 3).
    # Stuff block row {1} x col {0}: 1->0. Pseudo 0 never goes to stuff GT 0 despite 9 px there.
    m = match_classes(conf, pred_thing, gt_thing)
    np.testing.assert_array_equal(m.mapping, [1, 0, 2])
    # Without the separation: 0->0, 1->2, 2->1 (9 + 5 + 3 = 17 > 9 + 0 + 7 = 16).
    m = match_classes(conf, pred_thing, gt_thing, adhere_thing_stuff=False)
    np.testing.assert_array_equal(m.mapping, [0, 2, 1])


def test_block_without_gt_classes_maps_to_ignore() -> None:
    conf = np.array([[4, 1], [2, 6]])
    m = match_classes(conf, np.array([True, False]), np.array([False, False]))
    np.testing.assert_array_equal(m.mapping, [255, 1])  # pseudo 1 -> argmax col 1 via Hungarian
    np.testing.assert_array_equal(m.matched_confusion, [[0, 0], [2, 6]])


def test_apply_keeps_void_and_dtype() -> None:
    m = match_classes(np.array([[5, 4, 0], [6, 0, 0], [0, 0, 3]]), ALL_STUFF3, ALL_STUFF3)
    pred = np.array([[0, 1, 255], [2, 2, 0]], np.uint8)
    out = m.apply(pred)
    np.testing.assert_array_equal(out, [[1, 0, 255], [2, 2, 1]])
    assert out.dtype == np.uint8
    # int8 cannot hold the ignore label 255, so the result widens to int64.
    assert m.apply(np.array([[0, 2]], np.int8)).dtype == np.int64
    with pytest.raises(ValueError, match="pred_sem contains 7, expected a pseudo-class in"):
        m.apply(np.array([[0, 7]], np.uint8))
    with pytest.raises(ValueError, match="pred_sem contains -1"):
        m.apply(np.array([[0, -1]]))
    with pytest.raises(ValueError, match="pred_sem contains 300"):
        m.apply(np.array([[0, 300]]))


def test_confusion_from_excludes_void_on_both_sides() -> None:
    pred = np.array([[0, 0, 1, 255], [2, 1, 1, 0]])
    gt = np.array([[0, 1, 1, 1], [255, 1, 0, 0]])
    # Pairs (pred, gt) without void: (0,0) (0,1) (1,1) (1,1) (1,0) (0,0).
    expected = np.zeros((3, 2), np.int64)
    expected[0, 0], expected[0, 1], expected[1, 1], expected[1, 0] = 2, 1, 2, 1
    np.testing.assert_array_equal(confusion_from(pred, gt, 3, 2), expected)


@pytest.mark.parametrize(
    ("pred", "gt", "message"),
    [
        (np.zeros((2, 2), int), np.zeros((2, 3), int), "pred_sem shape"),
        (np.full((2, 2), 5), np.zeros((2, 2), int), "pred_sem contains 5"),
        (np.zeros((2, 2), int), np.full((2, 2), 2), "gt_sem contains 2"),
        (np.zeros((2, 2), float), np.zeros((2, 2), int), "integer array"),
    ],
)
def test_confusion_from_errors(pred, gt, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        confusion_from(pred, gt, 3, 2)


@pytest.mark.parametrize(
    ("conf", "pred_thing", "gt_thing", "message"),
    [
        (np.zeros(3), np.zeros(3, bool), np.zeros(3, bool), "2-D"),
        (-np.ones((2, 2)), np.zeros(2, bool), np.zeros(2, bool), "must be >= 0"),
        (np.ones((2, 2)) / 2, np.zeros(2, bool), np.zeros(2, bool), "integer pixel counts"),
        (
            np.ones((2, 3), int),
            np.zeros(3, bool),
            np.zeros(3, bool),
            "pred_is_thing must have length 2",
        ),
        (
            np.ones((2, 3), int),
            np.zeros(2, bool),
            np.zeros(2, bool),
            "gt_is_thing must have length 3",
        ),
    ],
)
def test_match_classes_errors(conf, pred_thing, gt_thing, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        match_classes(conf, pred_thing, gt_thing)
