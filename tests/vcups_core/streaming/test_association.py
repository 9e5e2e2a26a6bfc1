"""Association maths on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from vcups_core.streaming.association import assign, association_scores, box_iou, label_map_iou


def test_box_iou_by_hand() -> None:
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]], float)
    b = np.array([[1, 1, 3, 3], [5, 5, 6, 6], [0, 0, 0, 0]], float)
    # [0,0,2,2] vs [1,1,3,3]: inter 1, union 4+4-1 = 7; degenerate boxes give 0
    assert np.allclose(box_iou(a, b), [[1 / 7, 0, 0], [0, 0, 0]])


def test_label_map_iou_by_hand() -> None:
    # current: mask 1 = cells (0,0),(0,1); mask 2 = cell (1,2)
    current = np.array([[1, 1, 0], [0, 0, 2]])
    # previous: mask 1 = (0,1),(1,1); mask 2 = (2,2) only in... none here; mask 3 = (1,2)
    previous = np.array([[0, 1, 0], [0, 1, 3]])
    iou = label_map_iou(current, previous, 2, 3)
    # 1 vs 1: inter 1, union 2 + 2 - 1 = 3; 2 vs 3: identical; previous mask 2 is empty: 0
    assert np.allclose(iou, [[1 / 3, 0, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="differ in shape"):
        label_map_iou(current, previous[:1], 2, 3)


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


def test_greedy_assignment_follows_detection_scores_not_the_optimum() -> None:
    from vcups_core.streaming.association import assign_greedy

    # one track; detection 0 (score 0.9) fits it with 5, detection 1 (score 0.8) with 7
    pair = np.array([[5.0], [7.0]])
    new = np.array([0.0, 0.0])
    assert assign_greedy(pair, new, np.array([0.9, 0.8])).tolist() == [0, -1]
    assert assign(pair, new).tolist() == [-1, 0]  # Hungarian takes the better total
    # a track must beat "new object"; with no track everything is new
    assert assign_greedy(np.array([[1.0]]), np.array([1.0]), np.array([0.5])).tolist() == [-1]
    assert assign_greedy(np.zeros((2, 0)), np.zeros(2), np.ones(2)).tolist() == [-1, -1]


def test_segmenter_passes_the_tracker_settings() -> None:
    from vcups_core.config import apply_overrides
    from vcups_core.configs.streaming import StreamingConfig
    from vcups_core.streaming.segmenter import StreamingSegmenter

    cfg = apply_overrides(
        StreamingConfig(),
        [
            "tracker.assignment=greedy",
            "tracker.propagation_bonus=false",
            "tracker.mask_iou_weight=0",
            "stuff_area_limit=0",
        ],
        StreamingConfig,
    )
    seg = StreamingSegmenter.from_config(object(), cfg)  # type: ignore[arg-type]
    assert seg.tracker.assignment == "greedy"
    assert seg.tracker.propagation_bonus is False and seg.tracker.mask_coeff == 0.0
    assert seg.stuff_area_limit == 0
