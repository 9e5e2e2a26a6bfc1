"""Panoptic merge on a hand-made 6x6 case, mask pasting, and raw outputs to a prediction."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torchvision.models.detection.roi_heads import paste_masks_in_image

from vcups_core.model.panoptic import combine_semantic_and_instances, semantic_map
from vcups_core.model.postprocess import (
    MergeSettings,
    RawOutputs,
    frame_prediction_from_raw,
    mask_regions,
    paste_masks,
)
from vcups_core.model.predictors.exported import ExportedPredictor
from vcups_core.types import IGNORE_LABEL, CategoryTable, FramePrediction, MaskCrops

V = IGNORE_LABEL
# Semantic argmax: 0 = "thing", 1 and 2 = stuff classes (categories T + 0 and T + 1 with T = 2).
LABELS = np.array(
    [
        [0, 0, 0, 1, 1, 1],
        [0, 0, 0, 1, 1, 1],
        [0, 0, 0, 1, 1, 1],
        [0, 0, 2, 2, 1, 1],
        [2, 2, 2, 2, 1, 1],
        [2, 2, 2, 2, 1, 1],
    ]
)


def _mask(rows: slice, cols: slice) -> np.ndarray:
    m = np.zeros((6, 6), dtype=bool)
    m[rows, cols] = True
    return m


# Instances (index: score, class, mask):
#   0: 0.90, class 1, rows 0-1 x cols 0-2  -> placed first
#   1: 0.80, class 0, rows 1-2 x cols 0-2  -> half covered (3/6 = 0.5, not > 0.5): free row 2 placed
#   2: 0.70, class 0, rows 0-2 x cols 1-2  -> fully covered: dropped
#   3: 0.40, class 1, rows 4-5 x cols 4-5  -> below the score threshold: not placed
#   4: 0.95, class 0, empty mask           -> skipped
MASKS = MaskCrops.from_dense(
    np.stack(
        [
            _mask(slice(0, 2), slice(0, 3)),
            _mask(slice(1, 3), slice(0, 3)),
            _mask(slice(0, 3), slice(1, 3)),
            _mask(slice(4, 6), slice(4, 6)),
            np.zeros((6, 6), dtype=bool),
        ]
    )
)
SCORES = np.array([0.9, 0.8, 0.7, 0.4, 0.95], dtype=np.float32)
CLASSES = np.array([1, 0, 0, 1, 0])


def _probs(labels: np.ndarray, channels: int = 3) -> np.ndarray:
    onehot = np.eye(channels, dtype=np.float32)[labels].transpose(2, 0, 1)
    return 0.2 + 0.6 * onehot  # argmax = labels


def test_merge_follows_score_order_overlap_rule_and_stuff_area_limit() -> None:
    sem, inst = combine_semantic_and_instances(
        _probs(LABELS), MASKS, SCORES, CLASSES, num_things=2, stuff_area_limit=12
    )
    # Stuff 1 has 15 free pixels (kept, category 2); stuff 2 has 10 (< 12: void); the two
    # "thing" pixels at row 3 that no instance covers are void as well.
    expected_sem = np.array(
        [
            [1, 1, 1, 2, 2, 2],
            [1, 1, 1, 2, 2, 2],
            [0, 0, 0, 2, 2, 2],
            [V, V, V, V, 2, 2],
            [V, V, V, V, 2, 2],
            [V, V, V, V, 2, 2],
        ],
        dtype=np.uint8,
    )
    expected_inst = np.zeros((6, 6), dtype=np.int32)
    expected_inst[0:2, 0:3] = 1  # detection 0, 1-based
    expected_inst[2, 0:3] = 2  # detection 1, only its free pixels
    assert sem.dtype == np.uint8 and inst.dtype == np.int32
    np.testing.assert_array_equal(sem, expected_sem)
    np.testing.assert_array_equal(inst, expected_inst)


def test_merge_thresholds_are_arguments() -> None:
    # A stricter overlap rule drops detection 1; a lower stuff limit keeps stuff 2 (category 3);
    # a lower score threshold places detection 3 on top of stuff 1.
    sem, inst = combine_semantic_and_instances(
        np.log(_probs(LABELS)),  # logits work as well (only the argmax is used)
        MASKS,
        SCORES,
        CLASSES,
        num_things=2,
        score_threshold=0.3,
        overlap_threshold=0.4,
        stuff_area_limit=10,
    )
    assert (inst[2, 0:3] == 0).all() and (sem[2, 0:3] == V).all()
    assert (inst[4:6, 4:6] == 4).all() and (sem[4:6, 4:6] == 1).all()
    assert (sem[4:6, 0:4] == 3).all() and sem[3, 2] == 3
    assert (sem[0:3, 3:6] == 2).all()


def test_merge_places_a_detection_whose_score_equals_the_threshold() -> None:
    """``score >= score_threshold`` is placed (the one rule): detection 3 (score 0.4) is placed
    at threshold 0.4 and not at the next float32 above it."""
    at = float(SCORES[3])
    above = float(np.nextafter(SCORES[3], np.float32(1)))
    for threshold, placed in ((at, True), (above, False)):
        _, inst = combine_semantic_and_instances(
            _probs(LABELS), MASKS, SCORES, CLASSES, num_things=2, score_threshold=threshold
        )
        assert bool((inst == 4).any()) is placed


def test_merge_without_detections_and_bad_shapes() -> None:
    sem, inst = combine_semantic_and_instances(
        _probs(LABELS),
        MaskCrops.from_dense(np.zeros((0, 6, 6), bool)),
        np.zeros(0),
        np.zeros(0, np.int64),
        num_things=2,
        stuff_area_limit=0,
    )
    assert (inst == 0).all()
    np.testing.assert_array_equal(sem, np.where(LABELS == 0, V, LABELS + 1))
    with pytest.raises(ValueError, match="same length"):
        combine_semantic_and_instances(_probs(LABELS), MASKS, SCORES[:2], CLASSES, num_things=2)


def _plain_merge(
    labels: np.ndarray,
    masks: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    num_things: int,
    stuff_area_limit: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The merge written out at full resolution over whole frames (the reference)."""
    h, w = labels.shape
    sem = np.full((h, w), V, np.uint8)
    inst = np.zeros((h, w), np.int32)
    taken = np.zeros((h, w), bool)
    for idx in np.argsort(-scores, kind="stable"):
        if scores[idx] < 0.5:
            break
        area = int(masks[idx].sum())
        if area == 0 or (masks[idx] & taken).sum() / area > 0.5:
            continue
        free = masks[idx] & ~taken
        sem[free], inst[free] = classes[idx], idx + 1
        taken |= free
    for k in range(1, labels.max() + 1):
        region = (labels == k) & ~taken
        if region.sum() >= stuff_area_limit:
            sem[region] = num_things + k - 1
    return sem, inst


@pytest.mark.parametrize(("seed", "stride"), [(0, 4), (1, 4), (2, 1), (3, 3)])
def test_grid_and_region_merge_equals_the_plain_full_frame_merge(seed: int, stride: int) -> None:
    """Semantics on a grid (partial last cells) and masks confined to their regions give exactly
    the full-frame result on the nearest-upsampled semantics."""
    rng = np.random.default_rng(seed)
    h, w, n = 21, 30, 6
    grid = rng.integers(0, 4, size=(-(-h // stride), -(-w // stride)))
    labels = np.repeat(np.repeat(grid, stride, 0), stride, 1)[:h, :w]
    regions = np.zeros((n, 4), np.int64)
    masks = np.zeros((n, h, w), bool)
    for i in range(n):
        x0, y0 = rng.integers(0, w - 4), rng.integers(0, h - 4)
        x1, y1 = rng.integers(x0 + 1, w + 1), rng.integers(y0 + 1, h + 1)
        regions[i] = (x0, y0, x1, y1)
        masks[i, y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.7
    scores = rng.uniform(0.3, 1.0, n).astype(np.float32)
    classes = rng.integers(0, 2, n)
    probs = _probs(grid, 4)
    expected = _plain_merge(labels, masks, scores, classes, 2, 20)
    for crops in (MaskCrops.from_dense(masks, regions), MaskCrops.from_dense(masks)):
        sem, inst = combine_semantic_and_instances(
            probs,
            crops,
            scores,
            classes,
            num_things=2,
            semantic_stride=stride,
            stuff_area_limit=20,
        )
        np.testing.assert_array_equal(sem, expected[0])
        np.testing.assert_array_equal(inst, expected[1])
    wrong = _probs(np.zeros((5, 8), int), 4)  # 21 rows need 6 cells of 4
    with pytest.raises(ValueError, match=r"semantic: expected \[S \+ 1, \(6, 8\)\]"):
        combine_semantic_and_instances(
            wrong, MaskCrops.from_dense(masks), scores, classes, num_things=2, semantic_stride=4
        )


def test_paste_masks_places_a_full_mask_exactly_on_its_box() -> None:
    masks = paste_masks(np.ones((1, 28, 28), np.float32), np.array([[2.0, 3.0, 6.0, 8.0]]), 10, 12)
    expected = np.zeros((10, 12), bool)
    expected[3:8, 2:6] = True
    np.testing.assert_array_equal(masks.dense(0), expected)
    # the crop covers the box plus one mask cell (4/28 and 5/28 px) on each side
    assert masks.regions.tolist() == [[1, 2, 7, 9]]
    # Degenerate and off-image boxes give empty masks; no detections give [0, H, W].
    boxes = np.array([[5.0, 5.0, 5.0, 9.0], [20.0, 20.0, 30.0, 30.0]])
    assert not paste_masks(np.ones((2, 28, 28)), boxes, 10, 12).to_dense().any()
    assert paste_masks(np.zeros((0, 28, 28)), np.zeros((0, 4)), 10, 12).shape == (0, 10, 12)


def test_mask_regions_are_the_box_plus_one_cell_clipped_or_empty() -> None:
    boxes = np.array(
        [
            [2.0, 3.0, 6.0, 8.0],  # cells 4/28 x 5/28 px: one more pixel on each side
            [-5.0, 1.0, 14.0, 9.5],  # clipped to the 12x10 image
            [5.0, 5.0, 5.0, 9.0],  # no width
            [np.nan, 0.0, 4.0, 4.0],  # not finite
            [20.0, 20.0, 30.0, 30.0],  # off the image
            [1e30, 0.0, 2e30, 4.0],  # finite, but far beyond int64 once in pixels
            [-30.0, 0.0, -20.0, 4.0],  # left of the image
        ]
    )
    assert mask_regions(boxes, (28, 28), 10, 12).tolist() == [
        [1, 2, 7, 9],
        [0, 0, 12, 10],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
    ]


def test_paste_masks_handles_bad_boxes_quietly_and_leaves_the_boxes_alone() -> None:
    boxes = np.array([[np.inf, 0.0, np.inf, 4.0], [1.0, 1.0, 5.0, 5.0]])
    before = boxes.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value" from the non-finite box
        masks = paste_masks(np.ones((2, 28, 28), np.float32), boxes, 10, 12)
    np.testing.assert_array_equal(boxes, before)
    assert masks.crops[0].shape == (0, 0)
    assert masks.dense(1)[1:5, 1:5].all() and masks.dense(1).sum() == 16
    with pytest.raises(ValueError, match=r"mask_probs \(3\) and boxes \(2\)"):
        paste_masks(np.ones((3, 28, 28), np.float32), boxes, 10, 12)
    with pytest.raises(ValueError, match=r"mask_probs: expected float\[N, M, M\], got shape"):
        paste_masks(np.ones((2, 28), np.float32), boxes, 10, 12)


def _grid_sample_paste(mask: torch.Tensor, box: np.ndarray, h: int, w: int) -> np.ndarray:
    """detectron2's ``_do_paste_mask``: grid_sample at pixel centres, zero padding."""
    x0, y0, x1, y1 = (float(v) for v in box)
    ys = (torch.arange(h, dtype=torch.float32) + 0.5 - y0) / (y1 - y0) * 2 - 1
    xs = (torch.arange(w, dtype=torch.float32) + 0.5 - x0) / (x1 - x0) * 2 - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)
    out = F.grid_sample(mask[None, None], grid[None], align_corners=False)
    return out[0, 0].numpy()


def test_paste_masks_agrees_with_grid_sample_and_torchvision() -> None:
    rng = np.random.default_rng(0)
    probs = rng.random((6, 28, 28)).astype(np.float32)
    probs = np.clip(probs * 0.3 + np.pad(np.ones((18, 18)), 5)[None] * 0.6, 0, 1).astype(np.float32)
    boxes = np.array(
        [
            [10, 10, 60, 50],
            [0, 0, 30, 90],
            [40.5, 5.25, 119, 35],
            [70, 60, 110, 99],
            [5, 50, 25, 70],
            [-10, -10, 40, 40],
        ],
        dtype=np.float32,
    )
    ours = paste_masks(probs, boxes, 100, 120).to_dense()
    for i in range(len(boxes)):
        reference = _grid_sample_paste(torch.from_numpy(probs[i]), boxes[i], 100, 120) >= 0.5
        assert (ours[i] ^ reference).sum() <= 2, i  # float rounding at the 0.5 level only
    # torchvision rounds boxes to integers and adds one pixel: close, not identical.
    theirs = paste_masks_in_image(
        torch.from_numpy(probs)[:, None], torch.from_numpy(boxes), (100, 120)
    )
    theirs = theirs[:, 0].numpy() >= 0.5
    for a, b in zip(ours, theirs, strict=True):
        assert (a & b).sum() / (a | b).sum() > 0.75


def _category_map(pred: FramePrediction, stuff_area_limit: int) -> np.ndarray:
    return semantic_map(
        pred.semantic_probs,
        pred.panoptic_instance,
        pred.classes,
        num_things=2,
        semantic_stride=pred.semantic_stride,
        stuff_area_limit=stuff_area_limit,
    )


def test_frame_prediction_from_raw_reads_grid_or_full_resolution_semantics() -> None:
    """Stride 4 (current graphs) and stride 1 (graphs exported before the grid output) give the
    same maps for the same semantics; a grid that does not fit the image is refused."""
    rng = np.random.default_rng(0)
    h, w = 10, 13
    grid = rng.integers(0, 3, size=(3, 4))
    boxes = np.array([[1.0, 2.0, 6.0, 9.0]], np.float32)
    raw = RawOutputs(
        boxes,
        np.array([0.9], np.float32),
        np.array([1]),
        np.ones((1, 28, 28), np.float32),
        np.zeros((1, 2), np.float32),
        _probs(grid),
    )
    settings = MergeSettings(stuff_area_limit=5)
    strided = frame_prediction_from_raw(
        raw, image_size=(h, w), semantic_stride=4, settings=settings
    )
    full = np.repeat(np.repeat(_probs(grid), 4, axis=1), 4, axis=2)[:, :h, :w]
    old = frame_prediction_from_raw(
        raw._replace(semantic_probs=full),
        image_size=(h, w),
        semantic_stride=1,
        settings=settings,
    )
    assert strided.semantic_stride == 4 and old.semantic_stride == 1
    np.testing.assert_array_equal(*(_category_map(p, 5) for p in (strided, old)))
    np.testing.assert_array_equal(strided.panoptic_instance, old.panoptic_instance)
    assert (strided.panoptic_instance[2:9, 1:6] == 1).all()
    with pytest.raises(ValueError, match="vcups_semantic_stride"):
        frame_prediction_from_raw(raw, image_size=(h, w), semantic_stride=1, settings=settings)
    graph = ExportedPredictor()
    graph.path = Path("graph.onnx")
    cats = CategoryTable.default(2, 2)
    graph._read_metadata({"vcups_weights_sha256": "0"}, cats, missing="graph.onnx")
    assert graph.semantic_stride == 1  # no key: an older graph
    graph._read_metadata(
        {"vcups_semantic_stride": "4", "vcups_weights_sha256": "0"}, cats, missing=""
    )
    assert graph.semantic_stride == 4
