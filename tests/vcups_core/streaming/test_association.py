"""Association maths on hand-computed cases."""

from __future__ import annotations

import numpy as np

from vcups_core.streaming.association import assign, association_scores, box_iou, mask_iou


def test_box_iou_by_hand() -> None:
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]], float)
    b = np.array([[1, 1, 3, 3], [5, 5, 6, 6], [0, 0, 0, 0]], float)
    # [0,0,2,2] vs [1,1,3,3]: inter 1, union 4+4-1 = 7; degenerate boxes give 0
    assert np.allclose(box_iou(a, b), [[1 / 7, 0, 0], [0, 0, 0]])


def test_mask_iou_on_crops_by_hand() -> None:
    # mask A: cells (1,1),(1,2) of a grid; crop box x0=1,y0=1,x1=3,y1=2
    a = [np.array([[True, True]])]
    # mask B: cells (1,2),(2,2); crop box x0=2,y0=1,x1=3,y1=3
    b = [np.array([[True], [True]]), np.array([[True]])]
    boxes_a = np.array([[1, 1, 3, 2]])
    boxes_b = np.array([[2, 1, 3, 3], [7, 7, 8, 8]])
    # A ∩ B = {(1,2)}: 1 pixel; union 2 + 2 - 1 = 3. Second mask is far away: 0.
    assert np.allclose(mask_iou(a, boxes_a, b, boxes_b), [[1 / 3, 0.0]])


def test_scores_prefer_the_matching_embedding() -> None:
    e = np.eye(2, dtype=np.float32) * 5
    pair, new = association_scores(
        e,
        np.array([1.0, 1.0]),
        np.array([0, 0]),
        np.zeros((2, 4)),
        e[::-1],
        np.array([0, 0]),
        np.zeros((2, 4)),
        np.zeros((2, 2)),
        coeffs=(1, 2, 10),
    )
    # det 0 matches track 1 (same embedding): logits [0, 0, 25] -> log p(track 1) ~ 0
    assert pair[0, 1] > pair[0, 0] and pair[0, 1] > new[0]
    assert np.isclose(pair[0, 1], -np.log1p(2 * np.exp(-25)) + 10)
    assert np.allclose(new, -25 + 10, atol=1e-6)


def test_assign_solves_conflicts_and_prefers_new_when_better() -> None:
    pair = np.array([[5.0, 1.0], [4.0, 0.0], [0.0, 0.0]])
    new = np.array([0.0, 3.0, 2.0])
    # det 0 -> track 0 (5); det 1 would also like track 0 but 5+3 > 4+0: det 1 starts a new track;
    # det 2: track 1 (0) < new (2) -> new
    assert assign(pair, new).tolist() == [0, -1, -1]
    allowed = np.array([[False, True], [True, True], [True, True]])
    assert assign(pair, new, allowed).tolist() == [1, 0, -1]
    assert assign(np.zeros((0, 3)), np.zeros(0)).tolist() == []
