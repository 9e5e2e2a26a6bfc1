"""Instance propagation and tracking over a 3-frame window (method §2.4) on hand-made masks."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from vcups_core.pseudo.tracking import (
    InstanceTracker,
    absorb_fragments,
    hungarian_iou,
    joint_counts,
    split_merged,
)

H, W = 24, 40
Labels = npt.NDArray[np.int32]
Flow = npt.NDArray[np.float32]


def empty() -> Labels:
    return np.zeros((H, W), np.int32)


def box(labels: Labels, y0: int, y1: int, x0: int, x1: int, value: int = 1) -> Labels:
    out = labels.copy()
    out[y0:y1, x0:x1] = value
    return out


def still() -> Flow:
    return np.zeros((H, W, 2), np.float32)


def run(
    tracker: InstanceTracker, frames: list[tuple[Labels, Flow | None]]
) -> list[tuple[int, npt.NDArray[np.uint16]]]:
    """Push every frame (detections, flow to the previous frame) and finish."""
    out = []
    for index, (detections, flow_prev) in enumerate(frames):
        out += tracker.push(index, detections, flow_prev)
    return out + tracker.finish()


def test_hungarian_iou_on_a_hand_matrix() -> None:
    # greedy would take (0, 0) = 0.5 and leave row 1 alone; the optimum pairs crosswise (0.9)
    iou = np.array([[0.5, 0.45], [0.45, 0.0]])
    assert sorted(hungarian_iou(iou, 0.4)) == [(0, 1), (1, 0)]
    # pairs below the threshold are never returned and do not steer the assignment: without the
    # gate the crosswise pairs would win (0.39 + 0.45 > 0.5) and only (1, 0) survive
    iou = np.array([[0.5, 0.39], [0.45, 0.0]])
    assert hungarian_iou(iou, 0.4) == [(0, 0)]
    # rectangular, and a pair at exactly the threshold is accepted
    iou = np.array([[0.1, 0.4, 0.8]])
    assert hungarian_iou(iou, 0.4) == [(0, 2)]
    assert hungarian_iou(iou.T, 0.9) == []
    assert hungarian_iou(np.zeros((0, 3)), 0.4) == []


def test_split_merged_shares_a_blob_between_the_tracks_inside_it() -> None:
    warped = box(box(empty(), 8, 16, 4, 12, 5), 8, 16, 24, 32, 9).astype(np.uint16)
    blob = box(empty(), 6, 18, 2, 34)  # one detection over both tracks and the gap between
    split = split_merged(blob, warped, [5, 9])
    assert sorted(np.unique(split).tolist()) == [0, 1, 2]
    assert (split[6:18, 2:18] == 1).all() and (split[6:18, 19:34] == 2).all()
    assert (split > 0).sum() == (blob > 0).sum()
    # a detection that holds only one track (or less than half of the other) is left alone
    one = split_merged(blob, box(empty(), 8, 16, 4, 12, 5).astype(np.uint16), [5])
    np.testing.assert_array_equal(one, blob)
    half_out = box(box(empty(), 8, 16, 4, 12, 5), 8, 16, 30, 40, 9).astype(np.uint16)
    np.testing.assert_array_equal(split_merged(blob, half_out, [5, 9]), blob)  # 4 of 10 cols in
    np.testing.assert_array_equal(split_merged(empty(), warped, [5, 9]), empty())


def test_every_frame_comes_out_once_in_order() -> None:
    square = box(empty(), 4, 12, 4, 12)
    for fill_gaps in (False, True):  # window 2 and window 3
        tracker = InstanceTracker(fill_gaps=fill_gaps)
        assert tracker.push(0, square, None) == []
        for index in range(1, 5):
            final = tracker.push(index, square, still())
            assert [i for i, _ in final] == [index - 1]
        last = tracker.finish()
        assert [i for i, _ in last] == [4]
        assert tracker.finish() == []
        assert last[0][1].dtype == np.uint16 and last[0][1].shape == (H, W)
    assert InstanceTracker().finish() == []


def test_a_translating_object_keeps_its_id() -> None:
    flow_prev = still()
    flow_prev[..., 0] = -2.0  # everything came from 2 px to the left
    frames: list[tuple[Labels, Flow | None]] = [
        (box(empty(), 6, 16, 4 + 2 * t, 14 + 2 * t), flow_prev) for t in range(5)
    ]
    frames[0] = (frames[0][0], None)
    out = run(InstanceTracker(), frames)
    assert [i for i, _ in out] == [0, 1, 2, 3, 4]
    for t, labels in out:
        np.testing.assert_array_equal(labels, frames[t][0].astype(np.uint16))


def test_one_frame_gap_is_filled_with_the_same_id() -> None:
    flow_prev = still()
    flow_prev[..., 0] = -2.0
    frames: list[tuple[Labels, Flow | None]] = [
        (box(empty(), 6, 16, 4 + 2 * t, 14 + 2 * t), flow_prev) for t in range(3)
    ]
    frames[0] = (frames[0][0], None)
    frames[1] = (empty(), flow_prev)  # missed at t = 1
    filled = dict(run(InstanceTracker(fill_gaps=True), frames))
    assert filled[0].max() == 1 and filled[2].max() == 1
    # the gap holds the mask of t - 1 warped one step (2 px to the right), with the same id
    np.testing.assert_array_equal(filled[1], box(empty(), 6, 16, 6, 16).astype(np.uint16))
    np.testing.assert_array_equal(filled[2], frames[2][0].astype(np.uint16))
    # window 2: no gap filling, the object comes back under a new id
    plain = dict(run(InstanceTracker(fill_gaps=False), frames))
    assert plain[1].max() == 0
    assert np.unique(plain[2]).tolist() == [0, 2]


def test_a_gap_is_not_filled_when_the_object_does_not_come_back() -> None:
    square = box(empty(), 6, 16, 4, 14)
    frames: list[tuple[Labels, Flow | None]] = [(square, None), (empty(), still())]
    frames.append((box(empty(), 6, 16, 26, 36), still()))  # something else, elsewhere
    out = dict(run(InstanceTracker(), frames))
    assert out[1].max() == 0
    assert np.unique(out[2]).tolist() == [0, 2]


def test_crossing_objects_are_never_merged() -> None:
    a, b = (8, 16, 4, 12), (8, 16, 24, 32)
    first = box(box(empty(), *a, 1), *b, 2)
    # both objects and the gap between them in one detection (they touch / cross): its IoU
    # with either track is 64 / 224 < τ_m, so unsplit both tracks would end here
    blob = box(empty(), 8, 16, 4, 32)
    after = box(box(empty(), *a, 2), *b, 1)  # apart again; region growing numbers them anew
    out = dict(run(InstanceTracker(), [(first, None), (blob, still()), (after, still())]))
    assert np.unique(out[0]).tolist() == [0, 1, 2]
    ids_a, ids_b = int(out[0][8, 4]), int(out[0][8, 24])
    # the blob is split between the two tracks, each keeps its own id
    assert np.unique(out[1]).tolist() == [0, 1, 2]
    assert (out[1][8:16, 4:12] == ids_a).all() and (out[1][8:16, 24:32] == ids_b).all()
    assert (out[1] > 0).sum() == (blob > 0).sum()
    # and afterwards too, whatever the detection numbering
    assert out[2][8, 4] == ids_a and out[2][8, 24] == ids_b


@pytest.mark.parametrize(("overlap", "same_id"), [(38, False), (40, True), (42, True)])
def test_tau_m_is_respected(overlap: int, same_id: bool) -> None:
    # a 10x10 track; the next detection is its first ``overlap`` pixels: IoU = overlap / 100
    first = box(empty(), 4, 14, 4, 14)
    nxt = empty()
    ys, xs = np.nonzero(first)
    nxt[ys[:overlap], xs[:overlap]] = 1
    out = dict(run(InstanceTracker(0.4), [(first, None), (nxt, still())]))
    assert np.unique(out[1]).tolist() == [0, 1 if same_id else 2]
    # the threshold is the tracker's: a lower one accepts the 0.38 pair too
    out = dict(run(InstanceTracker(0.3), [(first, None), (nxt, still())]))
    assert np.unique(out[1]).tolist() == [0, 1]


def test_track_ids_are_unique_per_clip() -> None:
    a, b = (4, 12, 4, 12), (4, 12, 24, 32)
    frames: list[tuple[Labels, Flow | None]] = [
        (box(empty(), *a), None),  # A: id 1
        (box(empty(), *b), still()),  # A gone, B born: id 2
        (empty(), still()),
        (empty(), still()),
        (box(box(empty(), *a, 1), *b, 2), still()),  # both back after two frames: new ids
        (box(box(empty(), 14, 22, 4, 12, 3), *b, 1), still()),  # B kept (det 1), C born
    ]
    out = run(InstanceTracker(), frames)
    ids = [sorted(set(np.unique(labels).tolist()) - {0}) for _, labels in out]
    assert ids == [[1], [2], [], [], [3, 4], [4, 5]]
    assert out[4][1][4, 4] == 3 and out[4][1][4, 24] == 4 and out[5][1][4, 24] == 4
    # a second tracker (the next clip) counts from 1 again
    assert np.unique(run(InstanceTracker(), frames[:1])[0][1]).tolist() == [0, 1]


def test_an_empty_clip_and_empty_frames() -> None:
    out = run(InstanceTracker(), [(empty(), None), (empty(), still()), (empty(), still())])
    assert [i for i, _ in out] == [0, 1, 2]
    assert all(labels.max() == 0 for _, labels in out)


def test_containment_pass_keeps_an_entering_object_and_never_overrides_tau_m() -> None:
    # an object entering the image: 4x10 px, then 12x10 px around it (IoU 40/120 = 0.33 < tau_m,
    # but all of the smaller mask lies inside the larger one)
    first = box(empty(), 4, 8, 0, 10)
    grown = box(empty(), 0, 12, 0, 10)
    frames: list[tuple[Labels, Flow | None]] = [(first, None), (grown, still())]
    assert np.unique(dict(run(InstanceTracker(0.4), frames))[1]).tolist() == [0, 2]
    out = dict(run(InstanceTracker(0.4, min_containment=0.8), frames))
    assert np.unique(out[1]).tolist() == [0, 1]
    # a pair that passes tau_m is decided first: the contained fragment cannot take the track
    big = box(box(empty(), 4, 14, 4, 14), 6, 9, 20, 23, value=2)
    nxt = box(box(empty(), 4, 14, 5, 15), 6, 8, 5, 7, value=2)  # fragment inside the warped track
    out = dict(run(InstanceTracker(0.4, min_containment=0.8), [(big, None), (nxt, still())]))
    assert out[1][5, 10] == out[0][5, 10]  # the shifted body keeps the track (IoU 0.82)
    assert out[1][6, 5] not in (0, out[0][5, 10])  # the fragment gets an id of its own


def gap_frames(missing: int) -> list[tuple[Labels, Flow | None]]:
    """A square moving 2 px right per frame, detected in frames 0-1, missed in ``missing``
    frames, then detected again (plus, from then on, an unrelated square elsewhere)."""
    flow_prev = still()
    flow_prev[..., 0] = -2.0
    frames: list[tuple[Labels, Flow | None]] = []
    for t in range(2 + missing + 2):
        moving = box(empty(), 6, 14, 2 + 2 * t, 10 + 2 * t)
        seen = t < 2 or t >= 2 + missing
        labels = moving if seen else empty()
        if t >= 2 + missing:
            labels = box(labels, 18, 22, 30, 36, 2)
        frames.append((labels, None if t == 0 else flow_prev))
    return frames


@pytest.mark.parametrize("missing", [2, 3])
def test_a_lost_track_is_relinked_within_max_lost_frames(missing: int) -> None:
    frames = gap_frames(missing)
    back = 2 + missing
    for max_lost, same in ((0, False), (missing - 1, False), (missing, True), (10, True)):
        out = dict(run(InstanceTracker(max_lost=max_lost), frames))
        assert out[1].max() == 1
        for t in range(2, back):
            assert out[t].max() == 0  # the frames in between stay empty
        moving = out[back][6:14, 2 + 2 * back : 10 + 2 * back]
        assert (moving == moving.flat[0]).all()
        assert (moving.flat[0] == 1) == same, (max_lost, missing)
        # the unrelated square never takes the lost id, and ids stay consistent afterwards
        assert out[back][18, 30] not in (0, 1)
        np.testing.assert_array_equal(out[back + 1] > 0, frames[back + 1][0] > 0)
        assert out[back + 1][6, 2 + 2 * (back + 1)] == moving.flat[0]


def test_a_lost_track_that_moved_elsewhere_is_not_relinked() -> None:
    frames = gap_frames(3)
    far = box(empty(), 6, 14, 30, 38)  # comes back where the flow did not carry the old mask
    frames[5] = (far, frames[5][1])
    out = dict(run(InstanceTracker(max_lost=5), frames))
    assert out[5][6, 30] not in (0, 1)


def test_max_lost_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="max_lost"):
        InstanceTracker(max_lost=-1)


def test_split_min_share_ignores_sliver_tracks() -> None:
    # a big track and a 2x2 sliver track, both inside one detection
    warped = box(box(empty(), 6, 18, 2, 30, 5), 8, 10, 31, 33, 9).astype(np.uint16)
    blob = box(empty(), 6, 18, 2, 34)  # 12 x 32 = 384 px; the sliver is 4 px (1 %)
    assert int(split_merged(blob, warped, [5, 9]).max()) == 2  # the plain rule splits
    np.testing.assert_array_equal(split_merged(blob, warped, [5, 9], min_share=0.1), blob)
    # two real objects (each 64 / 384 = 17 % of the blob) are still split
    two = box(box(empty(), 8, 16, 4, 12, 5), 8, 16, 24, 32, 9).astype(np.uint16)
    assert int(split_merged(blob, two, [5, 9], min_share=0.1).max()) == 2


def test_absorb_fragments_on_hand_masks() -> None:
    tracks = box(box(empty(), 4, 14, 4, 20, 3), 4, 14, 26, 36, 7).astype(np.uint16)
    dets = box(box(box(empty(), 4, 8, 4, 10, 1), 10, 14, 14, 20, 2), 4, 14, 20, 28, 3)
    # det 1 and 2 lie inside track 3; det 3 straddles (6 of 8 columns outside track 7)
    assert absorb_fragments(dets, tracks, [1, 2, 3], 0.8) == {1: 3, 2: 3}
    assert absorb_fragments(dets, tracks, [2, 3], 0.8) == {2: 3}  # only the free ones
    assert absorb_fragments(dets, tracks, [1, 2, 3], 0.0) == {}  # off
    assert absorb_fragments(dets, empty().astype(np.uint16), [1, 2, 3], 0.8) == {}


def test_a_fragmented_object_keeps_one_id() -> None:
    # one object (ids 1..2 per frame as region growing numbers them): whole, then broken in two
    # pieces for two frames, then whole again; the plain rule gives the second piece a new track
    # that then splits the whole object again every frame
    whole = box(empty(), 4, 16, 4, 28)
    broken = box(box(empty(), 4, 16, 4, 18, 1), 4, 16, 19, 28, 2)
    frames: list[tuple[Labels, Flow | None]] = [(whole, None)] + [
        (f, still()) for f in (broken, broken, whole, whole)
    ]
    plain = dict(run(InstanceTracker(min_containment=0.8), frames))
    assert len(np.unique(plain[4])) == 3  # two ids on the whole object, forever
    fixed = dict(run(InstanceTracker(min_containment=0.8, fragment_inside=0.8), frames))
    for t in range(5):
        np.testing.assert_array_equal(fixed[t], (frames[t][0] > 0).astype(np.uint16))


def test_a_new_object_beside_a_track_is_not_absorbed() -> None:
    a = box(empty(), 4, 14, 4, 14)
    beside = box(a, 4, 14, 12, 22, 2)  # half of it inside a's mask, half outside
    out = dict(run(InstanceTracker(fragment_inside=0.8), [(a, None), (beside, still())]))
    assert np.unique(out[1]).tolist() == [0, 1, 2]


def test_crossing_objects_are_never_merged_with_the_new_options() -> None:
    a, b = (8, 16, 4, 12), (8, 16, 24, 32)
    first = box(box(empty(), *a, 1), *b, 2)
    blob = box(empty(), 8, 16, 4, 32)
    after = box(box(empty(), *a, 2), *b, 1)
    tracker = InstanceTracker(min_containment=0.8, fragment_inside=0.8, split_min_share=0.1)
    out = dict(run(tracker, [(first, None), (blob, still()), (after, still())]))
    ids_a, ids_b = int(out[0][8, 4]), int(out[0][8, 24])
    assert ids_a != ids_b
    assert (out[1][8:16, 4:12] == ids_a).all() and (out[1][8:16, 24:32] == ids_b).all()
    assert out[2][8, 4] == ids_a and out[2][8, 24] == ids_b


@pytest.mark.parametrize("min_frames", [2, 3])
def test_short_tracks_are_removed(min_frames: int) -> None:
    obj = box(empty(), 4, 14, 4, 14)
    blip = box(obj, 18, 22, 30, 36, 2)  # a false detection in frames 1 and 2 only
    frames: list[tuple[Labels, Flow | None]] = [(obj, None)] + [
        (f, still()) for f in (blip, blip, obj, obj)
    ]
    tracker = InstanceTracker(min_track_frames=min_frames)
    out = []
    for t, (det, flow) in enumerate(frames):
        got = tracker.push(t, det, flow)
        # held back min_frames - 1 frames (plus the one frame of the 3-frame window)
        assert [i for i, _ in got] == ([t - min_frames] if t >= min_frames else [])
        out += got
    out += tracker.finish()
    assert [i for i, _ in out] == [0, 1, 2, 3, 4]
    blip_kept = min_frames <= 2
    for t, labels in out:
        assert labels[5, 5] == 1
        assert (labels[18, 30] == 2) == (blip_kept and t in (1, 2))


def test_new_options_are_validated() -> None:
    with pytest.raises(ValueError, match="fragment_inside"):
        InstanceTracker(fragment_inside=1.5)
    with pytest.raises(ValueError, match="min_track_frames"):
        InstanceTracker(min_track_frames=0)


def test_fragment_flow_keeps_an_object_that_moves_differently_apart() -> None:
    tracks = box(empty(), 4, 16, 4, 30, 3).astype(np.uint16)
    dets = box(box(empty(), 4, 16, 4, 20, 1), 6, 12, 22, 28, 2)  # det 2 lies inside track 3
    flow = still()
    flow[..., 0] = -4.0  # the track (and det 1) moved 4 px right
    assert absorb_fragments(dets, tracks, [2], 0.8, flow, 0.2) == {2: 3}  # moves along: joins
    flow[6:12, 22:28] = (0.0, 3.0)  # det 2 moves down instead: a different object
    assert absorb_fragments(dets, tracks, [2], 0.8, flow, 0.2) == {}
    assert absorb_fragments(dets, tracks, [2], 0.8, flow, 0.0) == {2: 3}  # no flow test


def test_fragment_depth_keeps_an_object_behind_the_track_apart() -> None:
    tracks = box(empty(), 4, 16, 4, 30, 3).astype(np.uint16)
    dets = box(box(empty(), 4, 16, 4, 20, 1), 6, 12, 22, 28, 2)  # det 2 lies inside track 3
    depth = np.full((H, W), 10.0, np.float32)
    assert absorb_fragments(dets, tracks, [2], 0.8, depth=depth, max_depth_diff=0.1) == {2: 3}
    depth[6:12, 22:28] = 10.9  # 9 % behind the track's other pixels: still the same object
    assert absorb_fragments(dets, tracks, [2], 0.8, depth=depth, max_depth_diff=0.1) == {2: 3}
    depth[6:12, 22:28] = 11.5  # 15 % behind: another object peeking out
    assert absorb_fragments(dets, tracks, [2], 0.8, depth=depth, max_depth_diff=0.1) == {}
    assert absorb_fragments(dets, tracks, [2], 0.8, depth=depth, max_depth_diff=0.0) == {2: 3}
    depth[6:12, 22:26] = np.nan  # most of the fragment without depth: the test does not veto
    assert absorb_fragments(dets, tracks, [2], 0.8, depth=depth, max_depth_diff=0.1) == {2: 3}
    depth[6:12, 22:28] = 11.5
    depth[4:16, 4:20] = np.nan  # the track's other pixels without depth: no veto either
    assert absorb_fragments(dets, tracks, [2], 0.8, depth=depth, max_depth_diff=0.1) == {2: 3}


def test_the_tracker_passes_each_frames_own_depth_to_the_fragment_test() -> None:
    first = box(empty(), 4, 16, 4, 30)
    nxt = box(box(empty(), 4, 16, 4, 20, 1), 6, 12, 22, 28, 2)  # the object, then a piece of it
    near = np.full((H, W), 10.0, np.float32)
    far = near.copy()
    far[6:12, 22:28] = 20.0  # in frame 1 the piece lies far behind the object

    def labels(depths: list[npt.NDArray[np.float32] | None]) -> npt.NDArray[np.uint16]:
        tracker = InstanceTracker(fragment_inside=0.8, fragment_depth=0.1)
        out = tracker.push(0, first, None, depths[0])
        out += tracker.push(1, nxt, still(), depths[1])
        return dict(out + tracker.finish())[1]

    assert np.unique(labels([near, near])).tolist() == [0, 1]  # one track
    assert np.unique(labels([near, far])).tolist() == [0, 1, 2]  # frame 1's depth: two
    assert np.unique(labels([far, near])).tolist() == [0, 1]  # frame 0's depth is not used
    with pytest.raises(ValueError, match="fragment_depth"):
        InstanceTracker(fragment_depth=-0.1)


def test_joint_counts_counts_every_label_pair() -> None:
    a = np.array([[0, 1, 1], [2, 2, 0]], np.int32)
    b = np.array([[1, 1, 0], [1, 0, 0]], np.uint16)
    # rows: a = 0, 1, 2; columns: b = 0, 1
    assert joint_counts(a, b, 2, 1).tolist() == [[1, 1], [1, 1], [1, 1]]
    assert joint_counts(b, a, 1, 2).tolist() == [[1, 1, 1], [1, 1, 1]]
