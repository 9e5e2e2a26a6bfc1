"""Clip-consistent augmentation (method §4.3) on tiny hand-made clips."""

from __future__ import annotations

import pytest
import torch

from vcups_core.configs.training import AugmentationSection
from vcups_core.pseudo.compose import mask_boxes
from vcups_core.train.augment import (
    ClipAugmentation,
    boxes_from_masks,
    draw_resolution,
    drop_small_instances,
    resize_clips,
)
from vcups_core.train.sample import ClipSample, FrameTargets

H, W = 24, 32


def _frame(boxes: list[tuple[int, int, int, int]], semantic: int = 1) -> FrameTargets:
    """A frame with one rectangular instance per ``(x0, y0, x1, y1)``, track ids ``1..N``."""
    masks = torch.zeros((len(boxes), H, W), dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        masks[i, y0:y1, x0:x1] = True
    sem = torch.full((H, W), semantic, dtype=torch.int64)
    sem[masks.any(dim=0)] = 0
    return FrameTargets(
        boxes=boxes_from_masks(masks),
        classes=torch.arange(len(boxes), dtype=torch.int64),
        masks=masks,
        track_ids=torch.arange(1, len(boxes) + 1, dtype=torch.int64),
        semantic=sem,
    )


def _clip(
    frames: list[list[tuple[int, int, int, int]]], images: torch.Tensor | None = None
) -> ClipSample:
    if images is None:
        images = torch.rand((len(frames), 3, H, W), generator=torch.Generator().manual_seed(7))
    clip = ClipSample(images=images, targets=[_frame(b) for b in frames], clip="toy")
    clip.validate()
    return clip


def _identical_frames_clip() -> ClipSample:
    image = torch.rand((1, 3, H, W), generator=torch.Generator().manual_seed(3))
    boxes = [(4, 6, 12, 14), (18, 2, 30, 20)]
    return _clip([boxes, boxes], images=image.expand(2, -1, -1, -1).clone())


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_boxes_from_masks_matches_compose_mask_boxes() -> None:
    masks = torch.rand((6, 9, 11), generator=_gen(0)) > 0.8
    masks[2] = False  # an empty mask gives zeros
    expected = torch.from_numpy(mask_boxes(masks.numpy()))
    assert torch.equal(boxes_from_masks(masks), expected)
    assert boxes_from_masks(torch.zeros((0, 4, 5), dtype=torch.bool)).shape == (0, 4)


def test_flip_moves_box_to_mirrored_box_in_every_frame() -> None:
    # Crop = the whole frame at the same size: the geometry is exactly the flip.
    clip = _clip([[(4, 6, 12, 14)], [(9, 6, 17, 14)]])
    flip = ClipAugmentation(crop_size=(H, W), crop_scale=(1.0, 1.0), flip_prob=1.0)
    out = flip.geometric(clip, _gen(0))
    assert out.targets[0].boxes.tolist() == [[W - 12, 6, W - 4, 14]]
    assert out.targets[1].boxes.tolist() == [[W - 17, 6, W - 9, 14]]
    assert torch.equal(out.images, clip.images.flip(-1))
    for before, after in zip(clip.targets, out.targets, strict=True):
        assert torch.equal(after.masks, before.masks.flip(-1))
        assert torch.equal(after.semantic, before.semantic.flip(-1))
    keep = ClipAugmentation(crop_size=(H, W), crop_scale=(1.0, 1.0), flip_prob=0.0)
    same = keep.geometric(clip, _gen(0))
    assert torch.equal(same.images, clip.images)
    assert same.targets[1].boxes.tolist() == [[9, 6, 17, 14]]


@pytest.mark.parametrize("seed", range(6))
def test_geometry_is_drawn_once_per_clip(seed: int) -> None:
    clip = _identical_frames_clip()
    aug = ClipAugmentation(crop_size=(18, 24), crop_scale=(0.3, 0.9), flip_prob=0.5)
    out = aug.geometric(clip, _gen(seed))
    assert out.size == (18, 24)
    first, second = out.targets
    assert torch.equal(out.images[0], out.images[1])
    assert torch.equal(first.masks, second.masks)
    assert torch.equal(first.semantic, second.semantic)
    assert torch.equal(first.boxes, second.boxes)
    assert torch.equal(first.track_ids, second.track_ids)
    out.validate()


def test_photometric_differs_per_frame_and_leaves_targets() -> None:
    clip = _identical_frames_clip()
    aug = ClipAugmentation(
        crop_size=(18, 24), crop_scale=(0.5, 0.9), color_jitter_prob=1.0, grayscale_prob=0.0
    )
    generator = _gen(11)
    geo = aug.geometric(clip, generator)
    out = aug.photometric(geo, generator)
    assert out.images.dtype == torch.float32
    assert float(out.images.min()) >= 0.0 and float(out.images.max()) <= 1.0
    assert (out.images[0] - out.images[1]).abs().max() > 1e-3
    assert not torch.equal(out.images, geo.images)
    for before, after in zip(geo.targets, out.targets, strict=True):
        assert torch.equal(before.masks, after.masks)
        assert torch.equal(before.semantic, after.semantic)
        assert torch.equal(before.boxes, after.boxes)
    assert torch.equal(out.targets[0].masks, out.targets[1].masks)


def test_blur_alone_is_drawn_per_frame() -> None:
    aug = ClipAugmentation(crop_size=(H, W), color_jitter_prob=0.0, grayscale_prob=0.0)
    out = aug.photometric(_identical_frames_clip(), _gen(2))
    assert (out.images[0] - out.images[1]).abs().max() > 1e-4


def test_grayscale_with_probability_one_gives_equal_channels() -> None:
    aug = ClipAugmentation(crop_size=(H, W), color_jitter_prob=0.0, grayscale_prob=1.0)
    out = aug.photometric(_identical_frames_clip(), _gen(0))
    assert torch.allclose(out.images[:, 0], out.images[:, 1])
    assert torch.allclose(out.images[:, 1], out.images[:, 2])


def test_same_seed_same_output_different_seed_different() -> None:
    clip = _clip([[(4, 6, 12, 14)], [(6, 6, 14, 14)]])
    aug = ClipAugmentation(crop_size=(12, 16), crop_scale=(0.5, 1.0), color_jitter_prob=0.5)
    torch.manual_seed(0)  # the global RNG must not matter
    a = aug(clip, _gen(5))
    torch.manual_seed(1)
    b = aug(clip, _gen(5))
    c = aug(clip, _gen(6))
    assert torch.equal(a.images, b.images)
    for fa, fb in zip(a.targets, b.targets, strict=True):
        assert torch.equal(fa.masks, fb.masks)
        assert torch.equal(fa.boxes, fb.boxes)
    assert not torch.equal(a.images, c.images)


def test_input_clip_is_not_modified() -> None:
    clip = _clip([[(4, 6, 12, 14)], [(6, 6, 14, 14)]])
    images = clip.images.clone()
    masks = [f.masks.clone() for f in clip.targets]
    ClipAugmentation(crop_size=(12, 16))(clip, _gen(0))
    resize_clips([clip], (12, 16))
    assert torch.equal(clip.images, images)
    assert all(torch.equal(f.masks, m) for f, m in zip(clip.targets, masks, strict=True))


def test_drop_small_instances_at_four_pixels() -> None:
    frame = _frame([(0, 0, 2, 2), (5, 5, 10, 6), (12, 3, 14, 6)])  # 4, 5, 6 pixels
    out = drop_small_instances(frame)
    assert out.track_ids.tolist() == [2, 3]
    assert out.boxes.tolist() == [[5, 5, 10, 6], [12, 3, 14, 6]]


def test_resize_drops_small_masks_and_recomputes_boxes() -> None:
    # Half size, nearest: output pixel o samples source pixel 2 o + 1.
    clip = _clip([[(20, 16, 23, 19), (4, 6, 12, 14)]] * 2)
    [out] = resize_clips([clip], (12, 16))
    assert out.size == (12, 16)
    assert out.images.shape == (2, 3, 12, 16)
    for frame in out.targets:
        # the 3 x 3 square keeps 1 pixel and is dropped; the 8 x 8 square becomes 4 x 4
        assert frame.track_ids.tolist() == [2]
        assert frame.boxes.tolist() == [[2, 3, 6, 7]]
        assert int(frame.masks.sum()) == 16
    out.validate()


def test_draw_resolution_is_deterministic_and_from_the_list() -> None:
    resolutions = ((8, 16), (12, 24), (16, 32))
    draws = [draw_resolution(resolutions, _gen(s)) for s in range(20)]
    assert set(draws) <= set(resolutions)
    assert len(set(draws)) > 1
    assert draws == [draw_resolution(resolutions, _gen(s)) for s in range(20)]
    with pytest.raises(ValueError, match="empty"):
        draw_resolution((), _gen(0))


def test_crop_outside_the_source_is_ignore() -> None:
    # Output aspect 2 on a 4:3 source with scale 1: the crop (39 x 20 px) is wider than the frame.
    clip = _clip([[(4, 6, 12, 14)]] * 2)
    aug = ClipAugmentation(crop_size=(16, 32), crop_scale=(1.0, 1.0), flip_prob=0.0)
    seen_outside = False
    for seed in range(8):
        out = aug.geometric(clip, _gen(seed))
        sem = out.targets[0].semantic
        outside = sem == 255
        cols = outside.all(dim=0)
        # ignore exactly on whole columns at the left or right border, never inside
        assert torch.equal(outside, cols[None, :].expand_as(outside))
        assert not bool(out.targets[0].masks[:, :, cols].any())
        assert bool((sem[:, ~cols] != 255).all())
        seen_outside = seen_outside or bool(cols.any())
    assert seen_outside


def test_crop_with_the_source_aspect_stays_inside() -> None:
    clip = _clip([[(4, 6, 12, 14)]] * 2)
    aug = ClipAugmentation.from_config(AugmentationSection(crop_height=12, crop_width=16))
    for seed in range(10):
        out = aug(clip, _gen(seed))
        assert all(not bool((f.semantic == 255).any()) for f in out.targets)
