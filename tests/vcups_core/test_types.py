"""Tests of vcups_core.types: label encoding, VideoFrame, PanopticFrame, MaskCrops (hand-computed)."""

from __future__ import annotations

import numpy as np
import pytest

from vcups_core.types import (
    IGNORE_LABEL,
    Box,
    FramePrediction,
    MaskCrops,
    PanopticFrame,
    Segment,
    TrackState,
    VideoFrame,
    boxes_of,
    decode_panoptic,
    encode_panoptic,
    passes_score_threshold,
)


def test_encode_decode_panoptic_round_trip() -> None:
    sem = np.array([[0, 11], [13, 255]])
    inst = np.array([[0, 3], [65535, 0]])
    pan = encode_panoptic(sem, inst)
    # 11 << 16 = 720896; 13 << 16 = 851968; 255 << 16 = 16711680
    assert pan.tolist() == [[0, 720899], [917503, 16711680]]
    back_sem, back_inst = decode_panoptic(pan)
    assert back_sem.tolist() == sem.tolist()
    assert back_inst.tolist() == inst.tolist()


@pytest.mark.parametrize(
    ("sem", "inst", "message"),
    [
        (np.zeros((2, 2)), np.zeros((2, 3)), "shape"),
        (np.array([-1]), np.array([0]), "semantic ids must be >= 0, got -1"),
        (np.array([1]), np.array([65536]), "got 65536"),
        (np.array([1]), np.array([-2]), "got -2"),
    ],
)
def test_encode_panoptic_rejects_bad_ids(sem: np.ndarray, inst: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_panoptic(sem, inst)


def test_from_maps_builds_the_hand_computed_table(tiny_frame: PanopticFrame) -> None:
    # Segments in ascending (category, track) order: (0, -), (1, -), (3, 7).
    assert tiny_frame.segments == [
        Segment(1, 0, False, 0, 1.0, 9, Box(0, 0, 6, 2)),
        Segment(2, 1, False, 0, 1.0, 10, Box(0, 2, 6, 4)),
        Segment(3, 3, True, 7, 0.875, 4, Box(1, 1, 3, 3)),
    ]
    assert tiny_frame.segment_ids.tolist() == [
        [1, 1, 1, 1, 1, 1],
        [1, 3, 3, 1, 1, 0],
        [2, 3, 3, 2, 2, 2],
        [2, 2, 2, 2, 2, 2],
    ]
    assert (tiny_frame.stamp_ns, tiny_frame.frame_id, tiny_frame.frame_index) == (
        1_700_000_000_123_456_789,
        "cam_front",
        41,
    )
    assert len(tiny_frame) == 3


def test_semantic_and_track_maps_are_derived_from_the_table(tiny_frame: PanopticFrame) -> None:
    assert tiny_frame.semantic.tolist() == [
        [0, 0, 0, 0, 0, 0],
        [0, 3, 3, 0, 0, IGNORE_LABEL],
        [1, 3, 3, 1, 1, 1],
        [1, 1, 1, 1, 1, 1],
    ]
    assert tiny_frame.semantic.dtype == np.uint8
    assert int(tiny_frame.track_ids.sum()) == 4 * 7
    assert tiny_frame.track_ids[1, 1] == 7
    assert tiny_frame.track_ids[0, 0] == 0


def test_from_maps_on_an_empty_frame() -> None:
    frame = PanopticFrame.from_maps(
        np.full((3, 3), IGNORE_LABEL, np.uint8), np.zeros((3, 3), np.int64), frozenset()
    )
    assert frame.segments == []
    assert not frame.segment_ids.any()
    assert (frame.semantic == IGNORE_LABEL).all()


def test_stuff_is_one_segment_per_class_whatever_the_track_ids() -> None:
    # Class 2 is stuff: its stray track id 5 is ignored, so both pixels form one segment.
    # Class 1 is a thing: tracks 0 and 4 are two segments.
    frame = PanopticFrame.from_maps(
        np.array([[2, 2, 1, 1]]), np.array([[0, 5, 0, 4]]), frozenset({1})
    )
    assert [(s.category_id, s.track_id, s.area) for s in frame.segments] == [
        (1, 0, 1),
        (1, 4, 1),
        (2, 0, 2),
    ]
    assert frame.segment_ids.tolist() == [[3, 3, 1, 2]]


def test_panoptic_frame_validates_its_table() -> None:
    ids = np.zeros((2, 2), np.uint16)
    seg = Segment(1, 0, False, 0, 1.0, 0, Box(0, 0, 0, 0))
    with pytest.raises(ValueError, match="duplicate segment_id 1"):
        PanopticFrame(ids, [seg, seg])
    with pytest.raises(ValueError, match="segment_id must be in"):
        PanopticFrame(ids, [Segment(0, 0, False, 0, 1.0, 0, Box(0, 0, 0, 0))])
    with pytest.raises(ValueError, match=r"uint16\[H, W\]"):
        PanopticFrame(np.zeros((2, 2), np.int32))


def test_segments_are_sorted_by_id() -> None:
    a = Segment(2, 0, False, 0, 1.0, 0, Box(0, 0, 0, 0))
    b = Segment(1, 1, True, 4, 0.5, 0, Box(0, 0, 0, 0), TrackState.CONFIRMED, 3)
    assert [s.segment_id for s in PanopticFrame(np.zeros((1, 1), np.uint16), [a, b]).segments] == [
        1,
        2,
    ]


def test_boxes_of_marks_absent_segments_empty() -> None:
    ids = np.array([[0, 3], [3, 0]], np.uint16)
    assert boxes_of(ids, 3) == [Box(0, 0, 0, 0), Box(0, 0, 0, 0), Box(0, 0, 2, 2)]


def test_video_frame_checks_its_image() -> None:
    frame = VideoFrame(np.zeros((4, 5, 3), np.uint8), stamp_ns=7)
    assert (frame.height, frame.width, frame.index, frame.frame_id) == (4, 5, -1, "")
    with pytest.raises(ValueError, match=r"uint8\[H, W, 3\], got float32\[4, 5, 3\]"):
        VideoFrame(np.zeros((4, 5, 3), np.float32), stamp_ns=0)
    with pytest.raises(ValueError, match=r"got uint8\[4, 5\]"):
        VideoFrame(np.zeros((4, 5), np.uint8), stamp_ns=0)
    with pytest.raises(ValueError, match="stamp_ns must be >= 0"):
        VideoFrame(np.zeros((1, 1, 3), np.uint8), stamp_ns=-1)


def test_mask_crops_round_trip_select_and_tight_boxes() -> None:
    dense = np.zeros((3, 5, 6), bool)
    dense[0, 1:3, 2:5] = True
    dense[1, 4, 0] = True  # one pixel in the corner
    masks = MaskCrops.from_dense(dense)  # third mask empty
    assert masks.shape == (3, 5, 6) and len(masks) == 3
    assert masks.regions.tolist() == [[2, 1, 5, 3], [0, 4, 1, 5], [0, 0, 0, 0]]
    np.testing.assert_array_equal(masks.to_dense(), dense)
    np.testing.assert_array_equal(masks.dense(1), dense[1])
    picked = masks[np.array([False, True, True])]
    assert picked.regions.tolist() == [[0, 4, 1, 5], [0, 0, 0, 0]]
    np.testing.assert_array_equal(masks[[0]].to_dense(), dense[:1])
    # explicit regions crop (pixels outside a region are dropped)
    clipped = MaskCrops.from_dense(dense, np.array([[2, 1, 4, 3], [0, 0, 6, 5], [0, 0, 1, 1]]))
    assert clipped.crops[0].shape == (2, 2) and clipped.crops[0].all()


def test_mask_crops_reject_regions_outside_and_wrong_crops() -> None:
    with pytest.raises(ValueError, match=r"region 0 \[0, 0, 7, 5\] is not inside the 5x6 image"):
        MaskCrops(np.array([[0, 0, 7, 5]]), [np.zeros((5, 7), bool)], 5, 6)
    with pytest.raises(ValueError, match=r"crop 0: expected bool\[2, 3\], got uint8\[2, 3\]"):
        MaskCrops(np.array([[0, 0, 3, 2]]), [np.zeros((2, 3), np.uint8)], 5, 6)
    with pytest.raises(ValueError, match="2 regions but 1 crops"):
        MaskCrops(np.zeros((2, 4), int), [np.zeros((0, 0), bool)], 5, 6)
    with pytest.raises(TypeError, match=r"use dense\(i\) or crops\[i\]"):
        MaskCrops.from_dense(np.zeros((2, 3, 3), bool))[0]  # type: ignore[index]
    assert repr(MaskCrops.from_dense(np.zeros((2, 3, 4), bool))) == (
        "MaskCrops(2 masks of a 3x4 image)"
    )


def test_frame_prediction_asks_for_mask_crops() -> None:
    args = dict(
        boxes=np.zeros((1, 4), np.float32),
        scores=np.ones(1, np.float32),
        classes=np.zeros(1, np.int64),
        embeddings=np.zeros((1, 2), np.float32),
        semantic_probs=np.zeros((2, 3, 4), np.float32),
        panoptic_instance=np.zeros((3, 4), np.int32),
    )
    with pytest.raises(TypeError, match=r"expected MaskCrops, got ndarray \(MaskCrops.from_dense"):
        FramePrediction(masks=np.zeros((1, 3, 4), bool), **args)  # type: ignore[arg-type]
    pred = FramePrediction(masks=MaskCrops.from_dense(np.zeros((1, 3, 4), bool)), **args)
    assert pred.masks.shape == (1, 3, 4)


def test_score_threshold_rule_keeps_a_score_equal_to_the_threshold() -> None:
    """The one meaning of a score threshold (``score >= threshold``), on numpy arrays, torch
    tensors and plain floats alike; the boundary is kept, the next float below is not."""
    import torch

    below = float(np.nextafter(np.float32(0.5), np.float32(0)))
    scores = np.array([below, 0.5, 0.75], np.float32)
    assert passes_score_threshold(scores, 0.5).tolist() == [False, True, True]
    assert passes_score_threshold(torch.from_numpy(scores), 0.5).tolist() == [False, True, True]
    assert passes_score_threshold(0.5, 0.5) and not passes_score_threshold(below, 0.5)
    assert passes_score_threshold(np.zeros(2, np.float32), 0.0).all()  # 0 keeps everything
