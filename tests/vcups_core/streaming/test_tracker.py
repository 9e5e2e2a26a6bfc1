"""The online tracker's life cycle on hand-made detections."""

from __future__ import annotations

import numpy as np
import pytest

from vcups_core.streaming.tracker import OnlineTracker
from vcups_core.types import FramePrediction, MaskCrops, TrackState

H, W = 40, 60


def frame(
    objects: list[tuple[int, int, int, int]], embed: list[int] | None = None
) -> FramePrediction:
    """Rectangles (x0, y0, x1, y1) as detections of class 0; embeddings one-hot by ``embed``."""
    n = len(objects)
    masks = np.zeros((n, H, W), bool)
    inst = np.zeros((H, W), np.int32)
    for k, (x0, y0, x1, y1) in enumerate(objects):
        masks[k, y0:y1, x0:x1] = True
        inst[y0:y1, x0:x1] = k + 1
    emb = np.zeros((n, 8), np.float32)
    for k, e in enumerate(embed or []):
        emb[k, e] = 4.0
    return FramePrediction(
        np.array(objects, np.float32).reshape(n, 4),
        np.full(n, 0.9, np.float32),
        np.zeros(n, np.int64),
        MaskCrops.from_dense(masks),
        emb,
        np.ones((1, H, W), np.float32),
        inst,
    )


def test_same_objects_keep_their_ids_and_get_confirmed() -> None:
    tr = OnlineTracker(min_hits=2, mask_stride=1)
    a = tr.update(frame([(0, 0, 10, 10), (30, 10, 40, 20)]))
    b = tr.update(frame([(31, 10, 41, 20), (1, 0, 11, 10)]))  # moved and listed in another order
    assert a.track_ids.tolist() == [1, 2]
    assert b.track_ids.tolist() == [2, 1]
    assert a.states == (TrackState.TENTATIVE, TrackState.TENTATIVE)
    assert b.states == (TrackState.CONFIRMED, TrackState.CONFIRMED)
    assert b.ages.tolist() == [1, 1]


def test_one_frame_dropout_keeps_the_id_and_new_objects_get_new_ids() -> None:
    tr = OnlineTracker(mask_stride=1)
    tr.update(frame([(0, 0, 10, 10)]))
    assert len(tr.update(frame([])).track_ids) == 0  # empty frame: nothing, nothing lost
    back = tr.update(frame([(2, 0, 12, 10), (40, 20, 50, 30)]))
    assert back.track_ids.tolist() == [1, 2]


def test_dropped_frames_are_counted_in_the_age() -> None:
    tr = OnlineTracker(max_age=5, mask_stride=1)
    tr.update(frame([(0, 0, 10, 10)]))
    kept = tr.update(frame([(0, 0, 10, 10)]), gap=4)
    assert kept.track_ids.tolist() == [1] and kept.ages.tolist() == [4]
    lost = tr.update(frame([(0, 0, 10, 10)]), gap=6)  # 6 frames unseen > max_age 5: forgotten
    assert lost.track_ids.tolist() == [2]
    with pytest.raises(ValueError, match="gap: expected >= 1"):
        tr.update(frame([]), gap=0)


def test_far_jump_is_matched_by_appearance_only_when_embeddings_agree() -> None:
    tr = OnlineTracker(mask_stride=1)
    tr.update(frame([(0, 0, 10, 10)], embed=[3]))
    same = tr.update(frame([(45, 25, 55, 35)], embed=[3]))  # no overlap, same appearance
    other = tr.update(frame([(0, 0, 10, 10)], embed=[5]))  # overlaps the old place, new look
    assert same.track_ids.tolist() == [1]
    assert other.track_ids.tolist() == [2]


def test_ids_are_never_reused_and_memory_stays_bounded() -> None:
    tr = OnlineTracker(max_age=3, mask_stride=1)
    seen: set[int] = set()
    for t in range(5000):
        # a new object every frame at a new place, each living 2 frames
        x = (7 * t) % 50
        objs = [(x, 0, x + 5, 5)] if t % 2 == 0 else [(x, 20, x + 5, 25)]
        out = tr.update(frame(objs, embed=[t % 8]))
        seen.update(out.track_ids.tolist())
        assert len(tr.tracks) <= 5
        assert len(tr._maps) <= tr.window  # mask maps of the window's frames only
        if t == 2500:
            tr.reset()
    assert tr.next_id - 1 == len(seen)  # every id handed out once, counter never rewound


def test_iou_threshold_is_a_bonus_not_a_gate() -> None:
    """At ``iou_threshold`` 1 no moved object earns the bonus, yet a 1-pixel move (mask IoU 0.82)
    keeps its id: the threshold only adds the same-class weight, it never forbids a match."""
    tr = OnlineTracker(iou_threshold=1.0, mask_stride=1)
    tr.update(frame([(0, 0, 10, 10)], embed=[2]))
    assert tr.update(frame([(1, 0, 11, 10)], embed=[2])).track_ids.tolist() == [1]


def test_configure_changes_a_live_tracker_and_keeps_its_tracks() -> None:
    tr = OnlineTracker(mask_stride=1)
    tr.update(frame([(0, 0, 10, 10)]))
    settings = {
        "max_age": 1,
        "min_hits": 1,
        "iou_threshold": 0.2,
        "window": 2,
        "match_coeffs": (1.0, 1.0, 1.0),
        "mask_coeff": 0.0,
        "propagation_bonus": False,
        "assignment": "greedy",
    }
    tr.configure(**settings)
    assert (tr.max_age, tr.min_hits, tr.assignment, tr.mask_stride) == (1, 1, "greedy", 1)
    again = tr.update(frame([(1, 0, 11, 10)]))
    assert again.track_ids.tolist() == [1] and again.states == (TrackState.CONFIRMED,)
    with pytest.raises(ValueError, match="window >= 1"):
        tr.configure(**{**settings, "window": 0})
    assert tr.window == 2  # a refused change changes nothing


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="iou_threshold"):
        OnlineTracker(iou_threshold=1.5)
    with pytest.raises(ValueError, match="min_hits >= 1"):
        OnlineTracker(min_hits=0)


def test_unmatched_live_tracks_are_coasting() -> None:
    tr = OnlineTracker(mask_stride=1)
    tr.update(frame([(0, 0, 10, 10), (30, 10, 40, 20)]))
    tr.update(frame([(0, 0, 10, 10)]))
    states = {t.track_id: t.state for t in tr.tracks}
    assert states == {1: TrackState.CONFIRMED, 2: TrackState.COASTING}


def test_overlapping_masks_go_to_the_higher_score_and_ious_reach_back_over_the_window() -> None:
    """Label map: where two detections' masks overlap, the higher score keeps the pixels; a track
    missed for one frame still gets its mask IoU from the map of the frame it was last seen in."""
    tr = OnlineTracker(window=3, mask_stride=1)
    first = frame([(0, 0, 10, 10), (5, 0, 15, 10)])
    first.scores[:] = (0.9, 0.6)  # the first detection wins the overlap x = 5..9
    labels = tr._mask_map(first)
    assert (labels[0:10, 0:10] == 1).all() and (labels[0:10, 10:15] == 2).all()
    tr.update(first)
    tr.update(frame([]))  # both missed in frame 1
    ious = tr._mask_ious(tr._mask_map(frame([(0, 0, 10, 10)])), 1, now=2)
    # track 1's visible mask in frame 0 is the full 10x10 box: IoU 1; track 2's is 10x5: 0
    assert np.allclose(ious, [[1.0, 0.0]])
    # a 10x10 mask at x = 5..14: with track 1 (x = 0..9) inter 50, union 150; with track 2's
    # visible 10x5 (x = 10..14) inter 50, union 100
    ious = tr._mask_ious(tr._mask_map(frame([(5, 0, 15, 10)])), 1, now=2)
    assert np.allclose(ious, [[1 / 3, 0.5]])


def test_mask_map_samples_crops_on_the_global_stride_grid() -> None:
    """Crops at offsets that are not multiples of the stride land on the same grid points as
    the dense masks sampled every 4th pixel (higher score painted last)."""
    rng = np.random.default_rng(5)
    dense = np.zeros((3, H, W), bool)
    for k, (x0, y0, x1, y1) in enumerate([(5, 3, 23, 18), (17, 9, 42, 31), (30, 1, 59, 39)]):
        dense[k, y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.6
    scores = np.array([0.9, 0.5, 0.7], np.float32)
    pred = frame([(0, 0, 1, 1)] * 3)
    pred.masks, pred.scores = MaskCrops.from_dense(dense), scores
    expected = np.zeros((H // 4, W // 4), np.int32)
    for k in np.argsort(scores, kind="stable"):
        expected[dense[k, ::4, ::4]] = k + 1
    np.testing.assert_array_equal(OnlineTracker(mask_stride=4)._mask_map(pred), expected)
