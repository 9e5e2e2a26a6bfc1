"""StreamingSegmenter end to end on the synthetic world with the oracle predictor."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from vcups_core.data.oracle import CATEGORIES, OraclePredictor
from vcups_core.data.synthetic import SyntheticFrame, SyntheticWorld
from vcups_core.streaming.segmenter import (
    StampOrderError,
    StreamingSegmenter,
    compose_panoptic,
)
from vcups_core.streaming.smoother import SemanticSmoother, SmoothedSemantics
from vcups_core.streaming.tracker import OnlineTracker, TrackAssignment
from vcups_core.types import CategoryTable, FramePrediction, MaskCrops, TrackState, VideoFrame


@pytest.fixture(scope="module")
def frames() -> list[SyntheticFrame]:
    world = SyntheticWorld(height=96, width=192, num_frames=24, seed=3, num_moving=6, num_static=4)
    return list(world.frames())


def segmenter(predictor: OraclePredictor) -> StreamingSegmenter:
    return StreamingSegmenter(
        predictor, tracker=OnlineTracker(), smoother=SemanticSmoother(), stuff_area_limit=10
    )


def run(seg: StreamingSegmenter, frames: list[SyntheticFrame]) -> list[dict[int, int]]:
    """Per frame: ground-truth track id -> predicted track id (by majority of the segment)."""
    out = []
    for f in frames:
        result = seg.step(VideoFrame(f.rgb, f.stamp_ns, "cam", f.index))
        assert result.stamp_ns == f.stamp_ns and result.frame_id == "cam"
        mapping = {}
        for s in result.segments:
            if s.is_thing:
                gt = np.bincount(f.instance[result.segment_ids == s.segment_id]).argmax()
                mapping[int(gt)] = s.track_id
        out.append(mapping)
    return out


def test_ids_are_stable_through_a_one_frame_dropout(frames: list[SyntheticFrame]) -> None:
    everyone = {int(t) for f in frames for t in np.unique(f.instance) if t}
    seg = segmenter(OraclePredictor(frames, drop={8: everyone}))
    maps = run(seg, frames)
    assert maps[8] == {}  # nothing detected on frame 8
    first: dict[int, int] = {}
    for m in maps:
        for gt, tid in m.items():
            assert first.setdefault(gt, tid) == tid, f"object {gt} changed id"
    # new objects got new ids, and no id stands for two objects
    assert len(set(first.values())) == len(first)
    assert seg.tracker.next_id - 1 == len(first)


def test_without_appearance_overlap_still_carries_ids(frames: list[SyntheticFrame]) -> None:
    oracle = OraclePredictor(frames)
    oracle.embedding = lambda track_id: np.zeros(oracle.embed_dim, np.float32)  # type: ignore[method-assign]
    maps = run(segmenter(oracle), frames[:12])
    first: dict[int, int] = {}
    switches = sum(first.setdefault(gt, tid) != tid for m in maps for gt, tid in m.items())
    assert switches <= 2  # box and mask overlap alone keep nearly every id


def test_time_jump_resets_but_never_reuses_ids(frames: list[SyntheticFrame]) -> None:
    seg = segmenter(OraclePredictor(frames))
    before = run(seg, frames[:5])
    jumped = [dataclasses_replace(f, stamp_ns=f.stamp_ns + 10**11) for f in frames[5:8]]
    after = run(seg, jumped)
    assert seg.resets == 1
    old_ids = {t for m in before for t in m.values()}
    new_ids = {t for m in after for t in m.values()}
    assert old_ids and new_ids and not old_ids & new_ids
    # a stamp going backwards: the frame is skipped (the node's and replay's one policy) and
    # the tracks reset; tracking restarts from the next frame, with new ids
    with pytest.raises(StampOrderError, match="is not after the previous frame's"):
        run(seg, frames[:1])
    assert seg.resets == 2 and seg.frames_processed == 8
    restarted = run(seg, frames[1:2])
    assert restarted[0] and not set(restarted[0].values()) & (old_ids | new_ids)


def test_a_stamp_equal_to_the_previous_one_is_skipped_too(frames: list[SyntheticFrame]) -> None:
    """The boundary of the stamp policy: "after" is strict, so a repeated stamp is skipped."""
    seg = segmenter(OraclePredictor(frames))
    run(seg, frames[:2])
    with pytest.raises(StampOrderError):
        run(seg, frames[1:2])
    assert (seg.frames_processed, seg.resets) == (2, 1)
    assert run(seg, frames[2:3])[0]  # the next later stamp is processed


@pytest.mark.parametrize(
    ("threshold", "tracked"),
    [(0.5, True), (float(np.nextafter(np.float32(0.5), np.float32(1))), False)],
)
def test_score_threshold_keeps_a_score_equal_to_it(
    frames: list[SyntheticFrame], threshold: float, tracked: bool
) -> None:
    """One meaning of the threshold (``score >= threshold``): the oracle scores every object
    0.5; at threshold 0.5 they are tracked, at the next float32 above they fall back to stuff."""
    seg = StreamingSegmenter(
        OraclePredictor(frames, score=0.5),
        tracker=OnlineTracker(),
        smoother=SemanticSmoother(),
        score_threshold=threshold,
        stuff_area_limit=10,
    )
    (mapping,) = run(seg, frames[:1])
    assert bool(mapping) is tracked


@pytest.mark.parametrize(
    ("known", "expected_age"),
    [
        (None, 5),  # from the stamps alone
        (1, 5),  # the caller never saw frames 3 and 4 (lost in transport): the stamps show them
        (3, 5),  # the caller skipped them itself
        (4, 6),  # the caller knows of more frames than the stamps show: its count wins
    ],
)
def test_frame_gap_is_the_larger_of_the_callers_count_and_the_stamps(
    frames: list[SyntheticFrame], known: int | None, expected_age: int
) -> None:
    seg = segmenter(OraclePredictor(frames))
    for f in frames[:3]:
        seg.step(VideoFrame(f.rgb, f.stamp_ns, "cam", f.index), gap=None if known is None else 1)
    f = frames[5]
    result = seg.step(VideoFrame(f.rgb, f.stamp_ns, "cam", f.index), gap=known)
    ages = {s.track_age for s in result.segments if s.is_thing}
    assert max(ages) == expected_age  # a track first seen on frame 0, seen again "now"
    with pytest.raises(ValueError, match="gap: expected >= 1, got 0"):
        seg.step(VideoFrame(f.rgb, f.stamp_ns + 1, "cam", f.index), gap=0)


def dataclasses_replace(frame: SyntheticFrame, **changes: int) -> SyntheticFrame:
    import dataclasses

    return dataclasses.replace(frame, **changes)


def test_smoothing_removes_stuff_flicker(frames: list[SyntheticFrame]) -> None:
    from vcups_core.data import cityscapes_classes as cs

    flicker = {i: (cs.ROAD, cs.SIDEWALK) for i in range(2, 20, 3)}  # every 3rd frame swaps them
    smooth = segmenter(OraclePredictor(frames, flicker=flicker))
    raw = StreamingSegmenter(
        OraclePredictor(frames, flicker=flicker),
        tracker=OnlineTracker(),
        smoother=SemanticSmoother(enabled=False),
        stuff_area_limit=10,
    )
    road = CATEGORIES.names.index("road")
    errors = {"smooth": 0, "raw": 0}
    for name, seg in (("smooth", smooth), ("raw", raw)):
        for f in frames[:20]:
            result = seg.step(VideoFrame(f.rgb, f.stamp_ns, "cam", f.index))
            truth_road = (f.semantic == cs.ROAD) & (f.instance == 0)
            errors[name] += int((result.semantic[truth_road] != road).sum())
    assert errors["raw"] > 0
    assert errors["smooth"] < 0.2 * errors["raw"]


def test_compose_by_hand() -> None:
    """6x8 frame, grid stride 2; stuff channels 1 (left) and 2 (right), one detection.

    grid (3x4 cells of 2x2 px):  1 1 2 2 / 1 1 2 2 / 1 0 2 2   (channel 0 = "thing" -> void)
    detection 1 covers pixels rows 1..2, cols 1..3 (6 px): over stuff 1 (cols 1) and 2 (cols 2..3)
    """
    cats = CategoryTable(("car", "road", "grass"), 1, (0, 1, 2))
    grid = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [1, 0, 2, 2]], np.uint8)
    det = np.zeros((6, 8), np.int32)
    det[1:3, 1:4] = 1
    pred = FramePrediction(
        np.array([[1, 1, 4, 3]], np.float32),
        np.array([0.7], np.float32),
        np.array([0]),
        MaskCrops.from_dense(det[None] > 0),
        np.zeros((1, 2), np.float32),
        np.zeros((3, 3, 4), np.float32),
        det,
        semantic_stride=2,
    )
    assign = TrackAssignment(np.array([42]), (TrackState.CONFIRMED,), np.array([5]))
    stuff = SmoothedSemantics(grid, 2, np.array([0.0, 0.9, 0.8]))
    out = compose_panoptic(
        det, stuff, pred, assign, cats, stuff_area_limit=0, stamp_ns=7, frame_id="c", frame_index=3
    )
    # ids: detection 0 -> 1; stuff channel c -> N + c = 1 + c.
    # stuff 1: 5 cells with label 1 * 4 px = 20, minus the car's 6 px, which all lie in cells
    # labelled 1 (pixel cols 1..3 are grid cols 0..1) -> 14. stuff 2: 6 cells * 4 px = 24.
    by_id = {s.segment_id: s for s in out.segments}
    assert by_id[2].area == 20 - 6 and by_id[3].area == 24
    assert (by_id[2].category_id, by_id[3].category_id) == (1, 2)
    car = by_id[1]
    assert (car.track_id, car.area, car.track_state, car.track_age) == (
        42,
        6,
        TrackState.CONFIRMED,
        5,
    )
    assert (car.box.x0, car.box.y0, car.box.x1, car.box.y1) == (1, 1, 4, 3)
    assert out.segment_ids[4:6, 2:4].tolist() == [[0, 0], [0, 0]]  # "thing" channel without car
    assert int((out.segment_ids == 2).sum()) == by_id[2].area
    assert (out.segment_ids[1:3, 1:4] == 1).all() and int((out.segment_ids == 1).sum()) == 6
    assert np.isclose(by_id[2].score, 0.9)
    # the stuff area limit turns small stuff into void
    small = compose_panoptic(
        det, stuff, pred, assign, cats, stuff_area_limit=15, stamp_ns=7, frame_id="c", frame_index=3
    )
    assert {s.segment_id for s in small.segments} == {1, 3}
    assert int((small.segment_ids == 0).sum()) == 4 + 14
    # a detection that is not kept: its pixels show the stuff below (20 px of stuff 1)
    none = TrackAssignment(np.zeros(0, np.int64), (), np.zeros(0, np.int64))
    dropped = compose_panoptic(
        det,
        stuff,
        pred,
        none,
        cats,
        keep=np.array([False]),
        stuff_area_limit=0,
        stamp_ns=7,
        frame_id="c",
        frame_index=3,
    )
    assert [(s.segment_id, s.area) for s in dropped.segments] == [(2, 20), (3, 24)]
    assert (dropped.segment_ids[1:3, 1:4] == 2).all()
    with pytest.raises(ValueError, match="keep: expected bool"):
        compose_panoptic(
            det,
            stuff,
            pred,
            none,
            cats,
            stuff_area_limit=0,
            stamp_ns=7,
            frame_id="c",
            frame_index=3,
        )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compose_matches_a_plain_reference_on_partial_cells(seed: int) -> None:
    """13x22 image, grid stride 4 (partial last cells), random blobs and one dropped detection:
    ids, areas and thing boxes equal a straightforward full-frame computation."""
    rng = np.random.default_rng(seed)
    h, w, g = 13, 22, 4
    cats = CategoryTable(("car", "person", "road", "sky"), 2, (0, 1, 2, 3))
    grid = rng.integers(0, 3, (4, 6)).astype(np.uint8)  # channels 0 (thing), 1, 2
    det = np.zeros((h, w), np.int32)
    boxes = np.array([[0, 0, 9, 7], [6, 4, 18, 13], [12, 0, 22, 9]], np.float32)
    for k, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
        blob = rng.random((y1 - y0, x1 - x0)) < 0.7
        det[y0:y1, x0:x1][blob] = k + 1  # later detections overlap earlier ones
    keep = np.array([True, False, True])
    pred = FramePrediction(
        boxes,
        np.array([0.9, 0.2, 0.8], np.float32),
        np.array([0, 1, 0]),
        MaskCrops.from_dense(np.stack([det == k + 1 for k in range(3)])),
        np.zeros((3, 2), np.float32),
        np.zeros((3, 4, 6), np.float32),
        det,
        semantic_stride=4,
    )
    assign = TrackAssignment(
        np.array([5, 6]), (TrackState.CONFIRMED, TrackState.TENTATIVE), np.array([3, 0])
    )
    stuff = SmoothedSemantics(grid, g, np.array([0.0, 0.7, 0.6]))
    out = compose_panoptic(
        det,
        stuff,
        pred,
        assign,
        cats,
        keep=keep,
        stuff_area_limit=0,
        stamp_ns=1,
        frame_id="c",
        frame_index=0,
    )
    # reference: stuff channel c -> id N + c (0 = void), kept detection k -> k + 1
    cell = np.repeat(np.repeat(grid, g, 0), g, 1)[:h, :w].astype(np.int64)
    ref = np.where(cell > 0, 3 + cell, 0)
    for k in np.nonzero(keep)[0]:
        ref[det == k + 1] = k + 1
    assert (out.segment_ids == ref).all()
    by_id = {s.segment_id: s for s in out.segments}
    assert set(by_id) == set(np.unique(ref)) - {0}
    for sid, s in by_id.items():
        ys, xs = np.nonzero(ref == sid)
        assert s.area == len(ys)
        if s.is_thing:
            assert (s.box.x0, s.box.y0, s.box.x1, s.box.y1) == (
                xs.min(),
                ys.min(),
                xs.max() + 1,
                ys.max() + 1,
            )
            assert s.track_id == {1: 5, 3: 6}[sid]


def test_memory_stays_bounded_over_5000_frames() -> None:
    """The whole segmenter's state (tracks, mask maps, smoothing ring, stamp history) stops
    growing while new objects keep appearing, frames are lost now and then, and the time jumps
    (a reset) in each part of the run."""
    h, w, stride = 16, 32, 4
    rng = np.random.default_rng(0)

    def prediction() -> FramePrediction:
        n = int(rng.integers(0, 4))
        x0 = rng.integers(0, w - 6, n)
        y0 = rng.integers(0, h - 6, n)
        boxes = np.stack([x0, y0, x0 + 6, y0 + 6], 1).astype(np.float32).reshape(n, 4)
        inst = np.zeros((h, w), np.int32)
        for k in range(n):
            inst[y0[k] : y0[k] + 6, x0[k] : x0[k] + 6] = k + 1
        crops = [inst[y0[k] : y0[k] + 6, x0[k] : x0[k] + 6] == k + 1 for k in range(n)]
        probs = rng.random((4, h // stride, w // stride)).astype(np.float32)
        return FramePrediction(
            boxes,
            np.full(n, 0.9, np.float32),
            rng.integers(0, 2, n),
            MaskCrops(boxes.astype(np.int64), crops, h, w),
            rng.standard_normal((n, 8)).astype(np.float32) * 4,  # a new look: new tracks
            probs,
            inst,
            semantic_stride=stride,
        )

    pool = [prediction() for _ in range(64)]

    class Cycling:
        categories = CategoryTable.default(2, 3)

        def __init__(self) -> None:
            self.t = 0

        def predict(self, image: np.ndarray) -> FramePrediction:
            self.t += 1
            return pool[self.t % len(pool)]

    seg = StreamingSegmenter(
        Cycling(), tracker=OnlineTracker(max_age=5), smoother=SemanticSmoother(), stuff_area_limit=1
    )
    image = np.zeros((h, w, 3), np.uint8)
    stamp = 0

    def run_frames(count: int) -> None:
        nonlocal stamp
        for t in range(count):
            stamp += 100_000_000 * (3 if t % 97 == 0 else 1)  # now and then two frames lost
            if t == 500:
                stamp += 10**10  # a time jump: reset
            seg.step(VideoFrame(image, stamp, "cam", t))

    tracemalloc.start()
    try:
        run_frames(1000)
        before = tracemalloc.get_traced_memory()[0]
        ids_before = seg.tracker.next_id
        run_frames(4000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert seg.tracker.next_id - ids_before > 500  # objects kept arriving
    assert seg.resets == 1 + 1  # once in each run
    assert len(seg.tracker.tracks) <= 3 * (5 + 1)  # <= 3 a frame, each kept max_age + 1 frames
    # about 1.5 KB here; one leaked float per frame would be about 100 KB
    assert grown < 16 * 1024, f"the segmenter's memory grew by {grown} bytes over 4000 frames"
