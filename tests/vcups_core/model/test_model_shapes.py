"""Shapes, dtypes and empty cases through every part of the network (tiny config, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_fixtures import box_targets, tiny_config
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from vcups_core.model.backbone import FEATURE_NAMES, ResNetFPN
from vcups_core.model.build import build_model
from vcups_core.model.meta_arch import LOSS_NAMES
from vcups_core.model.panoptic import semantic_map
from vcups_core.types import IGNORE_LABEL, CategoryTable, FramePrediction

SIZES = [(96, 128), (128, 160)]


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(tiny_config())


def _images() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.rand((3, h, w), generator=g) for h, w in SIZES]


def test_every_head_has_the_documented_shapes(model: torch.nn.Module) -> None:
    model.eval()
    cfg = model.config
    t, s = cfg.num_thing_classes, cfg.num_stuff_classes
    with torch.no_grad():
        image_list, _ = model.transform(_images())
        # 96x128 -> 128x171 (min 128), 128x160 -> 128x160; padded to 32: 128x192
        assert image_list.image_sizes == [(128, 170), (128, 160)]
        assert tuple(image_list.tensors.shape) == (2, 3, 128, 192)
        features = model.backbone(image_list.tensors)
        assert list(features) == list(FEATURE_NAMES)
        for name, stride in zip(FEATURE_NAMES, (4, 8, 16, 32, 64), strict=True):
            assert tuple(features[name].shape) == (2, 64, 128 // stride, 192 // stride)
        proposals, losses = model.rpn(image_list, features)
        assert losses == {}
        assert [p.shape[1] for p in proposals] == [4, 4]
        assert all(p.shape[0] <= cfg.rpn.post_nms_topk_test for p in proposals)
        sizes = image_list.image_sizes
        stages = model.roi_heads.stage_boxes(features, proposals, sizes)
        assert len(stages) == 3
        assert [b.shape for b in stages[2]] == [p.shape for p in proposals]
        boxes = [p[:7] for p in proposals]
        mask_logits = model.mask_head(features, boxes, sizes)
        assert tuple(mask_logits.shape) == (14, t, 28, 28)
        embeddings = model.track_head(features, boxes, sizes)
        assert tuple(embeddings.shape) == (14, cfg.track.embed_dim)
        semantic = model.semantic_head(features)
        assert tuple(semantic.shape) == (2, s + 1, 32, 48)
        probs = model.semantic_head.predict(semantic, sizes, SIZES)
        # on the head's 4-pixel grid of each original image
        assert [tuple(p.shape) for p in probs] == [
            (s + 1, -(-h // 4), -(-w // 4)) for h, w in SIZES
        ]
        torch.testing.assert_close(probs[0].sum(0), torch.ones(probs[0].shape[1:]))


def _check_prediction(pred: FramePrediction, height: int, width: int, model: nn.Module) -> None:
    cats = model.categories
    n = len(pred)
    assert pred.boxes.dtype == np.float32 and pred.boxes.shape == (n, 4)
    assert pred.scores.dtype == np.float32 and pred.classes.dtype == np.int64
    assert pred.masks.shape == (n, height, width)
    assert all(c.dtype == np.bool_ for c in pred.masks.crops)
    assert pred.embeddings.dtype == np.float32
    assert pred.embeddings.shape == (n, model.config.track.embed_dim)
    assert pred.semantic_probs.dtype == np.float32
    assert pred.semantic_stride == 4
    assert pred.semantic_probs.shape == (cats.num_stuff + 1, -(-height // 4), -(-width // 4))
    assert pred.panoptic_instance.dtype == np.int32
    assert ((pred.classes >= 0) & (pred.classes < cats.num_things)).all()
    assert ((pred.scores >= 0) & (pred.scores <= 1)).all()
    assert (pred.boxes[:, [0, 2]] <= width).all() and (pred.boxes[:, [1, 3]] <= height).all()
    categories = _category_map(pred, model)
    assert categories.dtype == np.uint8 and categories.shape == (height, width)
    assert all(v < len(cats) or v == IGNORE_LABEL for v in np.unique(categories))
    assert pred.panoptic_instance.max(initial=0) <= n


def _category_map(pred: FramePrediction, model: nn.Module) -> np.ndarray:
    return semantic_map(
        pred.semantic_probs,
        pred.panoptic_instance,
        pred.classes,
        num_things=model.categories.num_things,
        semantic_stride=pred.semantic_stride,
        stuff_area_limit=model.merge.stuff_area_limit,
    )


def test_eval_returns_frame_predictions_at_input_resolution(model: torch.nn.Module) -> None:
    model.eval()
    model.roi_heads.score_threshold = 0.0  # random weights score ~1/(T+1): keep detections
    try:
        preds = model(_images())
    finally:
        model.roi_heads.score_threshold = model.config.inference.score_threshold
    assert len(preds) == 2
    for pred, (h, w) in zip(preds, SIZES, strict=True):
        assert isinstance(pred, FramePrediction)
        assert len(pred) == model.config.inference.detections_per_image
        _check_prediction(pred, h, w, model)


def test_a_frame_with_zero_detections() -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config(inference={"score_threshold": 1.0})).eval()
    (pred,) = model.predict([torch.rand(3, 70, 90)])
    assert len(pred) == 0
    _check_prediction(pred, 70, 90, model)
    assert (pred.panoptic_instance == 0).all()
    assert not (_category_map(pred, model) < model.categories.num_things).any()


def test_predict_refuses_training_mode(model: torch.nn.Module) -> None:
    model.train()
    with pytest.raises(RuntimeError, match="eval"):
        model.predict(_images())


def test_training_returns_every_named_loss_also_without_ground_truth() -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config()).train()
    (h0, w0), (h1, w1) = SIZES
    targets = [
        box_targets(
            h0, w0, [(10, 12, 50, 60), (60, 20, 110, 80)], [1, 4], track_ids=[3, 5], pair=1
        ),
        box_targets(h1, w1, [(14, 10, 56, 62)], [1], track_ids=[3], pair=0),
    ]
    losses = model(_images(), targets)
    assert tuple(losses) == tuple(sorted(losses, key=LOSS_NAMES.index))
    assert set(losses) == set(LOSS_NAMES)
    for name, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), name
    assert losses["loss_track"] > 0  # instance 3 is in both frames
    sum(losses.values()).backward()
    assert model.track_head.fc1.weight.grad is not None

    # The second image has no ground truth at all (and no pair).
    empty = box_targets(h1, w1, [], [], pair=-1)
    targets[0]["pair"] = -1
    losses = model(_images(), [targets[0], empty])
    assert set(losses) == set(LOSS_NAMES)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_track"] == 0

    # A batch without any ground truth trains too; the box/mask losses are exactly 0.
    losses = model(_images(), [box_targets(h, w, [], []) for h, w in SIZES])
    assert all(torch.isfinite(v) for v in losses.values())
    for name in ("loss_box_stage0", "loss_box_stage1", "loss_box_stage2", "loss_mask"):
        assert losses[name] == 0, name
    sum(losses.values()).backward()


def test_targets_are_validated() -> None:
    model = build_model(tiny_config()).train()
    images = _images()
    good = [box_targets(h, w, [(1, 1, 20, 20)], [0]) for h, w in SIZES]
    bad = dict(good[0])
    bad["masks"] = bad["masks"][:, :10]
    with pytest.raises(ValueError, match="masks"):
        model(images, [bad, good[1]])
    with pytest.raises(ValueError, match="pair"):
        model(images, [{**good[0], "pair": 0}, good[1]])
    with pytest.raises(ValueError, match="targets"):
        model(images)


@pytest.mark.parametrize(("depth", "channels"), [(18, 512), (34, 512), (50, 2048)])
def test_backbone_depths_and_frozen_stages(depth: int, channels: int) -> None:
    net = ResNetFPN(depth=depth, out_channels=32, norm="bn", freeze_at=2)
    assert net.body.layer4[-1].conv1.in_channels in (channels, channels // 4 * 4)
    assert not any(p.requires_grad for p in net.body.conv1.parameters())
    assert not any(p.requires_grad for p in net.body.layer1.parameters())
    assert all(p.requires_grad for p in net.body.layer2.parameters())
    assert isinstance(net.body.bn1, FrozenBatchNorm2d)
    assert isinstance(net.body.layer2[0].bn1, nn.BatchNorm2d)
    out = net(torch.rand(1, 3, 64, 64))
    assert [tuple(v.shape) for v in out.values()] == [
        (1, 32, 16, 16),
        (1, 32, 8, 8),
        (1, 32, 4, 4),
        (1, 32, 2, 2),
        (1, 32, 1, 1),
    ]


def test_syncbn_falls_back_to_bn_without_distributed_and_frozenbn_has_no_batchnorm() -> None:
    net = ResNetFPN(depth=18, out_channels=16, norm="syncbn")
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in net.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    frozen = ResNetFPN(depth=18, out_channels=16, norm="frozenbn")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    with pytest.raises(ValueError, match="depth"):
        ResNetFPN(depth=101)


def test_build_model_checks_categories() -> None:
    cfg = tiny_config()
    with pytest.raises(ValueError, match="categories"):
        build_model(cfg, CategoryTable.default(3, 22))
    cats = CategoryTable(tuple(f"c{i}" for i in range(27)), 5, tuple(range(100, 127)))
    assert build_model(cfg, cats).categories is cats


def test_parallel_roi_align_is_identical_to_torchvision() -> None:
    from torchvision.ops import MultiScaleRoIAlign

    from vcups_core.model.roi_pool import ParallelMultiScaleRoIAlign

    g = torch.Generator().manual_seed(0)
    features = {
        name: torch.rand((2, 8, 64 // s, 96 // s), generator=g)
        for name, s in zip(("0", "1", "2", "3"), (1, 2, 4, 8), strict=True)
    }
    xy = torch.rand((2, 400, 2), generator=g) * torch.tensor([200.0, 120.0])
    wh = torch.rand((2, 400, 2), generator=g) * 150 + 2
    boxes = list(torch.cat([xy, xy + wh], dim=2))
    sizes = [(256, 384), (256, 384)]
    reference = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    parallel = ParallelMultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            expected = reference(features, boxes, sizes)
            parallel(features, boxes, sizes)  # first call infers the level scales
            torch.testing.assert_close(parallel(features, boxes, sizes), expected, rtol=0, atol=0)
    finally:
        torch.set_num_threads(threads)


def test_cascade_keeps_a_score_equal_to_its_threshold() -> None:
    """The cascade's test threshold is the one rule (``score >= threshold``): class 0 of the
    first proposal (score 0.5 at threshold 0.5) is kept, the second (0.25) is not."""
    from vcups_core.model.cascade import CascadeRoIHeads

    heads = CascadeRoIHeads(in_channels=4, num_classes=2, fc_dim=8, score_threshold=0.5)
    probs = torch.tensor([[0.5, 0.25, 0.25], [0.25, 0.25, 0.5]])
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    detections = heads._postprocess(probs, boxes, (64, 64))
    assert detections.scores.tolist() == [0.5] and detections.classes.tolist() == [0]
    assert detections.boxes.tolist() == [[0.0, 0.0, 10.0, 10.0]]
