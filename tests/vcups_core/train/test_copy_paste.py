"""Self-enhanced video copy-paste (method §4.5) on tiny hand-made clips."""

from __future__ import annotations

import pytest
import torch

from vcups_core.configs.training import CopyPasteSection
from vcups_core.train.augment import boxes_from_masks
from vcups_core.train.copy_paste import (
    VideoObject,
    novel_objects,
    paste_objects,
    video_objects,
)
from vcups_core.train.sample import ClipSample, FrameTargets

RED = (1.0, 0.0, 0.0)
BLUE = (0.0, 0.0, 1.0)
GREY = 0.5

Box = tuple[int, int, int, int]


def _frame(size: tuple[int, int], boxes: dict[int, Box], classes: dict[int, int]) -> FrameTargets:
    """Rectangular instances ``{track id: (x0, y0, x1, y1)}``; stuff semantic 1 elsewhere."""
    h, w = size
    ids = sorted(boxes)
    masks = torch.zeros((len(ids), h, w), dtype=torch.bool)
    for i, k in enumerate(ids):
        x0, y0, x1, y1 = boxes[k]
        masks[i, y0:y1, x0:x1] = True
    semantic = torch.ones((h, w), dtype=torch.int64)
    semantic[masks.any(dim=0)] = 0
    return FrameTargets(
        boxes=boxes_from_masks(masks),
        classes=torch.tensor([classes[k] for k in ids], dtype=torch.int64),
        masks=masks,
        track_ids=torch.tensor(ids, dtype=torch.int64),
        semantic=semantic,
    )


def _source(
    frames: list[Box], size: tuple[int, int] = (24, 32), two_tone: bool = True
) -> ClipSample:
    """One object (track 1, class 2) per frame; left half red and right half blue if two-tone."""
    h, w = size
    images = torch.full((len(frames), 3, h, w), GREY)
    for t, (x0, y0, x1, y1) in enumerate(frames):
        mid = (x0 + x1) // 2 if two_tone else x1
        images[t, :, y0:y1, x0:mid] = torch.tensor(RED)[:, None, None]
        images[t, :, y0:y1, mid:x1] = torch.tensor(BLUE)[:, None, None]
    targets = [_frame(size, {1: b}, {1: 2}) for b in frames]
    clip = ClipSample(images=images, targets=targets, clip="source")
    clip.validate()
    return clip


def _target(size: tuple[int, int] = (48, 64), boxes: dict[int, Box] | None = None) -> ClipSample:
    """A 2-frame grey clip with the given instances (class 0) in both frames."""
    boxes = boxes or {}
    images = torch.zeros((2, 3, *size))
    frame = _frame(size, boxes, dict.fromkeys(boxes, 0))
    clip = ClipSample(images=images, targets=[frame, _frame(size, boxes, dict.fromkeys(boxes, 0))])
    clip.validate()
    return clip


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pasted(frame: FrameTargets, track_id: int) -> int:
    [index] = (frame.track_ids == track_id).nonzero()[:, 0].tolist()
    return int(index)


def test_video_objects_rule_and_crops() -> None:
    size = (24, 32)
    small_then_large = [_frame(size, {1: (0, 0, 3, 3), 2: (10, 0, 14, 6)}, {1: 4, 2: 1})]
    small_then_large.append(_frame(size, {1: (2, 2, 7, 7), 2: (10, 0, 14, 6)}, {1: 4, 2: 1}))
    images = torch.rand((2, 3, *size), generator=_gen(0))
    clip = ClipSample(images=images, targets=small_then_large)
    [obj] = video_objects(clip, min_box_size=5)  # track 2 is 4 x 6: never 5 wide and high
    assert obj.class_index == 4
    assert obj.track_id == 1
    assert obj.boxes.tolist() == [[0, 0, 3, 3], [2, 2, 7, 7]]
    crop0, crop1 = obj.crops
    assert crop0 is not None and crop1 is not None
    assert torch.equal(crop0[0], images[0, :, 0:3, 0:3])
    assert torch.equal(crop1[0], images[1, :, 2:7, 2:7])
    assert bool(crop1[1].all())
    assert len(video_objects(clip, min_box_size=4)) == 2


def test_video_objects_marks_absent_frames() -> None:
    size = (24, 32)
    targets = [_frame(size, {1: (0, 0, 8, 8)}, {1: 0}), _frame(size, {}, {})]
    clip = ClipSample(images=torch.zeros((2, 3, *size)), targets=targets)
    [obj] = video_objects(clip, min_box_size=8)
    assert obj.crops[1] is None
    assert obj.present() == [0]
    assert obj.boxes[1].tolist() == [0, 0, 0, 0]


def test_novel_objects_filters_at_iou_half() -> None:
    size = (24, 40)
    objects_clip = ClipSample(
        images=torch.zeros((2, 3, *size)),
        targets=[
            _frame(
                size,
                {1: (0, 0, 10, 10), 2: (20, 0, 30, 10), 3: (0, 12, 10, 22)},
                {1: 0, 2: 0, 3: 0},
            ),
            _frame(
                size,
                {1: (0, 0, 10, 10), 2: (20, 0, 30, 10), 3: (0, 12, 10, 22)},
                {1: 0, 2: 0, 3: 0},
            ),
        ],
    )
    objects = video_objects(objects_clip, min_box_size=1)
    pseudo = ClipSample(
        images=torch.zeros((2, 3, *size)),
        targets=[
            # track 1: IoU 50 / 100 = 0.5 -> explained; track 2: 40 / 100 -> novel
            _frame(size, {1: (0, 0, 10, 5), 2: (20, 0, 30, 4)}, {1: 0, 2: 0}),
            # track 3 overlaps only in frame 1: IoU 60 / 100 -> explained
            _frame(size, {1: (0, 16, 10, 22), 2: (20, 0, 30, 4)}, {1: 0, 2: 0}),
        ],
    )
    kept = novel_objects(objects, pseudo, iou=0.5)
    assert [o.track_id for o in kept] == [2]
    assert [o.track_id for o in novel_objects(objects, pseudo, iou=0.61)] == [1, 2, 3]


def test_paste_without_objects_returns_target() -> None:
    target = _target()
    assert paste_objects(target, [], CopyPasteSection(), _gen(0)) is target


@pytest.mark.parametrize("seed", range(8))
def test_static_source_gives_equal_boxes_fresh_equal_ids(seed: int) -> None:
    source = _source([(4, 4, 20, 20), (4, 4, 20, 20)])
    objects = video_objects(source, min_box_size=8)
    target = _target(boxes={1: (0, 0, 6, 6), 2: (50, 30, 60, 40)})
    cfg = CopyPasteSection(max_objects=1, scale_range=(0.25, 1.5))
    out = paste_objects(target, objects, cfg, _gen(seed))
    out.validate()
    new_id = target.num_tracks + 1
    assert new_id not in {int(i) for f in target.targets for i in f.track_ids}
    f0, f1 = out.targets
    i0, i1 = _pasted(f0, new_id), _pasted(f1, new_id)
    assert torch.equal(f0.boxes[i0], f1.boxes[i1])
    assert torch.equal(f0.masks[i0], f1.masks[i1])
    assert int(f0.classes[i0]) == int(f1.classes[i1]) == 2


@pytest.mark.parametrize("seed", range(10))
def test_moving_source_keeps_one_transform(seed: int) -> None:
    # The source moves by (+3, +2); with scale 2 the pasted object moves by (+-6, +4).
    source = _source([(2, 4, 8, 10), (5, 6, 11, 12)])
    objects = video_objects(source, min_box_size=4)
    target = _target()
    cfg = CopyPasteSection(max_objects=1, scale_range=(2.0, 2.0))
    out = paste_objects(target, objects, cfg, _gen(seed))
    f0, f1 = out.targets
    new_id = target.num_tracks + 1
    b0 = f0.boxes[_pasted(f0, new_id)]
    b1 = f1.boxes[_pasted(f1, new_id)]
    assert (b0[2:] - b0[:2]).tolist() == [12, 12]
    assert (b1[2:] - b1[:2]).tolist() == [12, 12]
    x0, y0 = int(b0[0]), int(b0[1])
    flipped = bool(out.images[0, 2, y0, x0] > 0.5)  # blue on the left: mirrored
    dx = -6 if flipped else 6
    assert (b1 - b0).tolist() == [dx, 4, dx, 4]
    assert bool(out.images[1, 2, int(b1[1]), int(b1[0])] > 0.5) == flipped  # same flip


def test_paste_sets_thing_semantic_hard_paste_and_clears_occluded() -> None:
    source = _source([(4, 4, 12, 12), (6, 4, 14, 12)], two_tone=False)  # all red
    objects = video_objects(source, min_box_size=4)
    # an existing instance covering the whole left half in both frames
    target = _target(boxes={1: (0, 0, 32, 48)})
    cfg = CopyPasteSection(max_objects=1, scale_range=(1.0, 1.5))
    for seed in range(6):
        out = paste_objects(target, objects, cfg, _gen(seed))
        for t in range(2):
            before, after = target.targets[t], out.targets[t]
            pasted = after.masks[_pasted(after, 2)]
            assert bool((after.semantic[pasted] == 0).all())
            assert bool((after.semantic[~pasted] == before.semantic[~pasted]).all())
            red = torch.tensor(RED)[:, None]
            assert torch.allclose(out.images[t][:, pasted], red.expand(3, int(pasted.sum())))
            assert torch.equal(out.images[t][:, ~pasted], target.images[t][:, ~pasted])
            left = before.masks[0] & ~pasted
            if int(left.sum()) > 4:
                assert torch.equal(after.masks[_pasted(after, 1)], left)
            assert torch.equal(after.boxes, boxes_from_masks(after.masks))


def test_fully_occluded_instances_are_removed() -> None:
    # scale 4 turns the 8 x 8 object into 32 x 32: it covers the whole 24 x 32 target
    source = _source([(4, 4, 12, 12), (4, 4, 12, 12)])
    target = _target(size=(24, 32), boxes={1: (0, 0, 6, 6), 2: (20, 10, 30, 20)})
    cfg = CopyPasteSection(max_objects=1, scale_range=(4.0, 4.0))
    out = paste_objects(target, video_objects(source, 4), cfg, _gen(0))
    for frame in out.targets:
        assert frame.track_ids.tolist() == [3]
        assert bool(frame.masks[0].all())
        assert bool((frame.semantic == 0).all())
        assert frame.boxes.tolist() == [[0, 0, 32, 24]]


def test_several_objects_get_distinct_fresh_ids_and_input_is_untouched() -> None:
    source = _source([(4, 4, 12, 12), (4, 4, 12, 12)])
    # three copies of the object, distinguishable by class
    base = video_objects(source, 4)[0]
    objects = [VideoObject(base.crops, base.boxes, class_index=c) for c in (5, 6, 7)]
    target = _target(boxes={1: (0, 0, 6, 6)})
    images = target.images.clone()
    masks = target.targets[0].masks.clone()
    semantic = target.targets[0].semantic.clone()
    cfg = CopyPasteSection(max_objects=8, scale_range=(0.5, 1.0))
    counts = set()
    for seed in range(8):
        out = paste_objects(target, objects, cfg, _gen(seed))
        ids0 = sorted(int(i) for i in out.targets[0].track_ids if i > 1)
        ids1 = sorted(int(i) for i in out.targets[1].track_ids if i > 1)
        assert ids0 == ids1
        assert set(ids0) <= {2, 3, 4}
        counts.add(len(ids0))
    assert len(counts) > 1
    assert torch.equal(target.images, images)
    assert torch.equal(target.targets[0].masks, masks)
    assert torch.equal(target.targets[0].semantic, semantic)


def test_same_seed_same_paste_different_seed_different() -> None:
    source = _source([(2, 4, 8, 10), (5, 6, 11, 12)])
    objects = video_objects(source, min_box_size=4)
    target = _target()
    cfg = CopyPasteSection(max_objects=3, scale_range=(0.5, 1.5))
    torch.manual_seed(0)
    a = paste_objects(target, objects, cfg, _gen(1))
    torch.manual_seed(1)
    b = paste_objects(target, objects, cfg, _gen(1))
    c = paste_objects(target, objects, cfg, _gen(2))
    assert torch.equal(a.images, b.images)
    assert all(torch.equal(x.masks, y.masks) for x, y in zip(a.targets, b.targets, strict=True))
    assert not torch.equal(a.images, c.images)


def test_shorter_source_pastes_nothing_in_later_frames() -> None:
    source = _source([(4, 4, 12, 12)])  # one frame only
    target = _target()
    cfg = CopyPasteSection(max_objects=1, scale_range=(1.0, 1.0))
    out = paste_objects(target, video_objects(source, 4), cfg, _gen(0))
    assert out.targets[0].track_ids.tolist() == [1]
    assert len(out.targets[1]) == 0
    assert torch.equal(out.images[1], target.images[1])
