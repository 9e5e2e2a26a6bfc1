"""Track-class vote, frame composition and training targets (method §2.5), by hand."""

from __future__ import annotations

import numpy as np
import pytest

from vcups_core.pseudo.compose import (
    TrackVote,
    align_frame,
    compose_frame,
    mask_boxes,
    track_classes,
    training_targets,
)

V = 255  # void

# Three frames, 5 pseudo-classes. Votes per track over the clip:
#   track 1: class 3 -> 2 + 1 = 3, class 2 -> 2, class 0 -> 2 + 1 + 1 = 4.
#            Frame 1 alone would say 2 (flicker); with class 0 excluded the track is 3,
#            with class 0 voting it would be 0 (4 > 3).
#   track 2: class 0 once, then only void -> fallback 0.
#   track 3: class 4 twice, class 1 twice -> tie -> the smaller id, 1.
SEM = [
    np.array([[3, 3, 0, 0], [4, 4, 0, V]], np.uint8),
    np.array([[2, 2, 0, 3], [1, 1, V, V]], np.uint8),
    np.array([[0, 1, 1, 1], [1, 1, 1, 1]], np.uint8),
]
INST = [
    np.array([[1, 1, 1, 1], [3, 3, 2, 2]], np.uint16),
    np.array([[1, 1, 1, 1], [3, 3, 2, 2]], np.uint16),
    np.array([[1, 0, 0, 0], [0, 0, 0, 0]], np.uint16),
]


def test_track_vote_counts_by_hand() -> None:
    vote = TrackVote(5)
    for sem, inst in zip(SEM, INST, strict=True):
        vote.update(sem, inst)
    assert len(vote) == 3
    assert vote.counts(1).tolist() == [4, 0, 2, 3, 0]
    assert vote.counts(2).tolist() == [1, 0, 0, 0, 0]
    assert vote.counts(3).tolist() == [0, 2, 0, 0, 2]


def test_track_class_is_one_class_per_track_with_class_zero_excluded() -> None:
    assert track_classes(SEM, INST, 5) == {1: 3, 2: 0, 3: 1}
    # Frame by frame the vote flickers (frame 1 alone says 2 for track 1) ...
    assert track_classes(SEM[1:2], INST[1:2], 5)[1] == 2
    # ... and with class 0 voting, track 1 would be 0.
    assert track_classes(SEM, INST, 5, exclude_class_zero=False) == {1: 0, 2: 0, 3: 1}


def test_class_zero_loses_ties_when_it_votes() -> None:
    inst = np.full((1, 3), 9, np.uint16)
    tie = np.array([[0, 5, V]], np.uint8)
    more_zero = np.array([[0, 0, 5]], np.uint8)
    assert track_classes([tie], [inst], 6, exclude_class_zero=False) == {9: 5}
    assert track_classes([more_zero], [inst], 6, exclude_class_zero=False) == {9: 0}
    assert track_classes([more_zero], [inst], 6) == {9: 5}


def test_track_vote_streams_and_merges() -> None:
    first = TrackVote(5)
    for sem, inst in zip(SEM[:2], INST[:2], strict=True):
        first.update(sem, inst)
    second = TrackVote(5)
    second.update(SEM[2], INST[2])
    assert first.merge(second) is first
    assert first.result() == track_classes(SEM, INST, 5)
    assert first.counts(1).tolist() == [4, 0, 2, 3, 0]
    # A generator is consumed lazily (no list needed for long clips).
    assert track_classes((s for s in SEM), (i for i in INST), 5) == {1: 3, 2: 0, 3: 1}
    with pytest.raises(ValueError, match="settings"):
        first.merge(TrackVote(5, exclude_class_zero=False))


def test_track_vote_edge_cases() -> None:
    assert track_classes([SEM[0]], [np.zeros((2, 4), np.uint16)], 5) == {}
    with pytest.raises(ValueError):  # noqa: PT011 (zip(strict=True) message)
        track_classes(SEM, INST[:2], 5)
    with pytest.raises(ValueError, match="pseudo-class"):
        TrackVote(3).update(SEM[0], INST[0])  # class 3, 4 >= 3


# --------------------------------------------------------------------------------------------
# Align and compose


def test_compose_drops_stuff_instances_and_writes_track_classes() -> None:
    track_class = track_classes(SEM, INST, 5)  # {1: 3, 2: 0, 3: 1}
    sem_in, inst_in = SEM[1].copy(), INST[1].copy()
    sem, inst = compose_frame(SEM[1], INST[1], track_class, thing_classes=(3, 4))
    # Track 1 (class 3, thing): its whole mask becomes 3, although this frame votes for 2.
    # Tracks 3 (class 1) and 2 (class 0) are stuff: removed, their pixels void.
    assert sem.tolist() == [[3, 3, 3, 3], [V, V, V, V]]
    assert inst.tolist() == [[1, 1, 1, 1], [0, 0, 0, 0]]
    assert sem.dtype == np.uint8
    assert inst.dtype == np.uint16
    np.testing.assert_array_equal(SEM[1], sem_in)  # inputs untouched
    np.testing.assert_array_equal(INST[1], inst_in)


def test_compose_keeps_thing_pixels_outside_instances_and_fills_void_in_masks() -> None:
    semantic = np.array([[4, 3, 1, V], [0, 2, 3, V]], np.uint8)
    instance = np.array([[0, 0, 0, 0], [0, 1, 1, 1]], np.uint16)
    sem, inst = compose_frame(semantic, instance, {1: 3}, thing_classes=(3, 4))
    # Outside: thing 4 and thing 3 keep their class, void stays void.
    # Inside track 1: 2 -> 3, and the void pixel inside the mask gets 3 too.
    assert sem.tolist() == [[4, 3, 1, V], [0, 3, 3, 3]]
    np.testing.assert_array_equal(inst, instance)
    np.testing.assert_array_equal(align_frame(semantic, instance, {1: 3}), sem)


def test_align_keeps_stuff_instances() -> None:
    sem = align_frame(SEM[1], INST[1], {1: 3, 2: 0, 3: 1})
    assert sem.tolist() == [[3, 3, 3, 3], [1, 1, 0, 0]]


def test_compose_requires_every_track() -> None:
    with pytest.raises(ValueError, match="no class"):
        compose_frame(SEM[0], INST[0], {1: 3, 2: 0}, thing_classes=(3,))


# --------------------------------------------------------------------------------------------
# Training targets

# 6x8 aligned frame. Thing classes (5, 2) -> head indices 0, 1; stuff (0, 1, 3, 4) -> 1..4.
#   track 7: class 5, rows 1-3, cols 1-2  -> box (1, 1, 3, 4), class index 0
#   track 4: class 2, rows 3-4, cols 3-5  -> box (3, 3, 6, 5), class index 1
#   track 9: class 3 = stuff             -> dropped, its 4 pixels void
#   (4, 6): thing class 5 outside any instance -> 0
TT_SEM = np.array(
    [
        [0, 0, 0, 0, 1, 1, 1, 1],
        [0, 5, 5, 0, 1, 1, 1, 1],
        [0, 5, 5, 0, 3, 3, 3, V],
        [0, 5, 5, 2, 2, 2, 3, V],
        [4, 4, 4, 2, 2, 2, 5, 3],
        [4, 4, 4, 4, 4, 4, 4, 4],
    ],
    np.uint8,
)
TT_INST = np.array(
    [
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 7, 7, 0, 0, 0, 0, 0],
        [0, 7, 7, 0, 9, 9, 9, 0],
        [0, 7, 7, 4, 4, 4, 9, 0],
        [0, 0, 0, 4, 4, 4, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
    ],
    np.uint16,
)
TT_SEM_SEG = [
    [1, 1, 1, 1, 2, 2, 2, 2],
    [1, 0, 0, 1, 2, 2, 2, 2],
    [1, 0, 0, 1, V, V, V, V],
    [1, 0, 0, 0, 0, 0, V, V],
    [4, 4, 4, 0, 0, 0, 0, 3],
    [4, 4, 4, 4, 4, 4, 4, 4],
]
THINGS = (5, 2)
STUFF = (0, 1, 3, 4)


def test_training_targets_by_hand() -> None:
    t = training_targets(TT_SEM, TT_INST, THINGS, STUFF)
    assert t.sem_seg.tolist() == TT_SEM_SEG
    assert t.sem_seg.dtype == np.uint8
    assert t.has_instances
    assert len(t) == 2
    assert t.image_size == (6, 8)
    assert t.track_ids.tolist() == [4, 7]
    assert t.classes.tolist() == [1, 0]
    assert t.boxes.dtype == np.float32
    assert t.boxes.tolist() == [[3, 3, 6, 5], [1, 1, 3, 4]]
    assert t.masks.shape == (2, 6, 8)
    assert t.masks.dtype == np.bool_
    np.testing.assert_array_equal(t.masks[0], TT_INST == 4)
    np.testing.assert_array_equal(t.masks[1], TT_INST == 7)


def test_training_targets_same_for_aligned_and_composed_input() -> None:
    track_class = {4: 2, 7: 5, 9: 3}
    sem, inst = compose_frame(TT_SEM, TT_INST, track_class, THINGS)
    a = training_targets(TT_SEM, TT_INST, THINGS, STUFF)
    b = training_targets(sem, inst, THINGS, STUFF)
    np.testing.assert_array_equal(a.sem_seg, b.sem_seg)
    np.testing.assert_array_equal(a.track_ids, b.track_ids)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.boxes, b.boxes)


def test_training_targets_ignore_unknown_thing_regions() -> None:
    t = training_targets(TT_SEM, TT_INST, THINGS, STUFF, ignore_unknown_thing_regions=True)
    expected = np.array(TT_SEM_SEG)
    expected[4, 6] = V  # the only thing pixel outside an instance
    np.testing.assert_array_equal(t.sem_seg, expected)


def test_training_targets_majority_class_survives_a_void_pixel() -> None:
    sem = TT_SEM.copy()
    sem[1, 1] = V  # e.g. an augmentation border inside track 7's mask
    t = training_targets(sem, TT_INST, THINGS, STUFF)
    assert t.track_ids.tolist() == [4, 7]
    assert t.classes.tolist() == [1, 0]
    assert t.sem_seg[1, 1] == V


def test_training_targets_void_never_votes() -> None:
    sem = TT_SEM.copy()
    sem[1:3, 1:3] = V  # 4 of track 7's 6 pixels void: its 2 class-5 pixels decide
    t = training_targets(sem, TT_INST, THINGS, STUFF)
    assert t.track_ids.tolist() == [4, 7]
    assert t.classes.tolist() == [1, 0]
    sem[3, 1:3] = V  # all of track 7 void: no class, dropped
    t = training_targets(sem, TT_INST, THINGS, STUFF)
    assert t.track_ids.tolist() == [4]
    assert (t.sem_seg[TT_INST == 7] == V).all()


def test_training_targets_void_votes_do_not_leak_between_instances() -> None:
    # Track 1: void, void, 5 -> 5. Track 2: 5 -> 5. (A void vote that leaked into the next
    # track's class-0 count would turn track 2 into class 0, a thing here too.)
    sem = np.array([[V, V, 5, 5]], np.uint8)
    inst = np.array([[1, 1, 1, 2]], np.uint16)
    t = training_targets(sem, inst, (5, 0), (1,))
    assert t.classes.tolist() == [0, 0]
    assert t.sem_seg.tolist() == [[V, V, 0, 0]]


def test_training_targets_without_instances() -> None:
    inst = np.zeros_like(TT_INST)
    t = training_targets(TT_SEM, inst, THINGS, STUFF)
    assert not t.has_instances
    assert t.masks.shape == (0, 6, 8)
    assert t.boxes.shape == (0, 4)
    assert t.classes.shape == (0,)
    # Only a stuff instance: dropped, so no instances either.
    only_stuff = np.where(TT_INST == 9, 9, 0).astype(np.uint16)
    t = training_targets(TT_SEM, only_stuff, THINGS, STUFF)
    assert not t.has_instances
    assert (t.sem_seg[only_stuff == 9] == V).all()


def test_training_targets_checks_class_lists() -> None:
    with pytest.raises(ValueError, match="disjoint"):
        training_targets(TT_SEM, TT_INST, (5, 2), (2, 0, 1, 3, 4))
    with pytest.raises(ValueError, match="disjoint"):
        training_targets(TT_SEM, TT_INST, (5, 5), STUFF)


def test_mask_boxes_detectron2_convention() -> None:
    masks = np.zeros((3, 4, 5), bool)
    masks[0, 2, 3] = True  # one pixel at x=3, y=2
    masks[1, 0:4, 0:5] = True  # the whole image
    # masks[2] empty -> zeros (Detectron2 BitMasks.get_bounding_boxes)
    assert mask_boxes(masks).tolist() == [[3, 2, 4, 3], [0, 0, 5, 4], [0, 0, 0, 0]]
