"""``build_model``: the one place that translates a :class:`ModelConfig` into constructor args."""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from vcups_core.configs.model import ModelConfig
from vcups_core.model.backbone import ResNetFPN
from vcups_core.model.cascade import CascadeRoIHeads
from vcups_core.model.mask_head import MaskHead
from vcups_core.model.meta_arch import PanopticCascadeMaskTrack
from vcups_core.model.postprocess import MergeSettings
from vcups_core.model.rpn import ProposalNetwork
from vcups_core.model.semantic_head import SemanticHead
from vcups_core.model.track_head import TrackHead
from vcups_core.types import CategoryTable


class InputTransform(GeneralizedRCNNTransform):  # type: ignore[misc]  # torchvision is untyped
    """torchvision's transform (normalise, resize to ``min_size``/``max_size``, pad to 32), except
    that in eval mode the resize only happens with ``resize_at_inference``: by default inference
    runs at the input's native resolution (``ModelConfig.inference.resize``, method §5). Training
    follows torchvision (``_skip_resize=True`` keeps the input size)."""

    def __init__(self, *args: Any, resize_at_inference: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resize_at_inference = resize_at_inference

    def resize(
        self, image: Tensor, target: dict[str, Tensor] | None = None
    ) -> tuple[Tensor, dict[str, Tensor] | None]:
        if not self.training and not self.resize_at_inference:
            return image, target
        resized: tuple[Tensor, dict[str, Tensor] | None] = super().resize(image, target)
        return resized


def build_model(
    cfg: ModelConfig,
    categories: CategoryTable | None = None,
    *,
    drop_loss_iou: float = 0.5,
    video_drop_loss: bool = True,
) -> PanopticCascadeMaskTrack:
    """Build the network described by ``cfg`` (random weights, or local backbone weights).

    Args:
        cfg: the model config (``config/model/*.yaml``).
        categories: category names and pseudo-class ids; default: generic names for
            ``cfg.num_thing_classes`` things and ``cfg.num_stuff_classes`` stuff.
        drop_loss_iou: Video DropLoss ``tau`` (``TrainingConfig.drop_loss_iou``; training only);
            also the IoU that makes a key-frame proposal a positive of the tracking loss.
        video_drop_loss: False turns Video DropLoss off (``TrainingConfig.video_drop_loss``, for
            ablations): plain cross-entropy on every proposal and the MaskTrack "new object"
            target for instances missing from the reference frame.

    Returns:
        The model in training mode, with ``model.config = cfg``.

    Raises:
        ValueError: if ``categories`` disagrees with the config's class counts.
    """
    if categories is None:
        categories = CategoryTable.default(cfg.num_thing_classes, cfg.num_stuff_classes)
    if (categories.num_things, categories.num_stuff) != (
        cfg.num_thing_classes,
        cfg.num_stuff_classes,
    ):
        raise ValueError(
            f"categories have {categories.num_things} things + {categories.num_stuff} stuff, "
            f"the config {cfg.num_thing_classes} + {cfg.num_stuff_classes}"
        )
    channels = cfg.backbone.fpn_channels
    inference = cfg.inference
    model = PanopticCascadeMaskTrack(
        transform=InputTransform(
            min_size=cfg.min_size,
            max_size=cfg.max_size,
            image_mean=list(cfg.pixel_mean),
            image_std=list(cfg.pixel_std),
            size_divisible=32,
            # Training keeps the size the data pipeline made (crop + resolution jitter, method
            # §4.3), as detectron2's mappers do; min/max size apply at inference only, and only
            # with inference.resize (default: native resolution, method §5).
            _skip_resize=True,
            resize_at_inference=inference.resize,
        ),
        backbone=ResNetFPN(
            depth=cfg.backbone.depth,
            out_channels=channels,
            norm=cfg.backbone.norm,
            freeze_at=cfg.backbone.freeze_at,
            weights=cfg.backbone.weights,
        ),
        rpn=ProposalNetwork(
            in_channels=channels,
            anchor_sizes=cfg.rpn.anchor_sizes,
            aspect_ratios=cfg.rpn.aspect_ratios,
            nms_threshold=cfg.rpn.nms_threshold,
            pre_nms_topk_train=cfg.rpn.pre_nms_topk_train,
            post_nms_topk_train=cfg.rpn.post_nms_topk_train,
            pre_nms_topk_test=cfg.rpn.pre_nms_topk_test,
            post_nms_topk_test=cfg.rpn.post_nms_topk_test,
            batch_size_per_image=cfg.rpn.batch_size_per_image,
        ),
        roi_heads=CascadeRoIHeads(
            in_channels=channels,
            num_classes=cfg.num_thing_classes,
            pooler_resolution=cfg.cascade.pooler_resolution,
            fc_dim=cfg.cascade.fc_dim,
            iou_thresholds=cfg.cascade.iou_thresholds,
            bbox_reg_weights=cfg.cascade.bbox_reg_weights,
            batch_size_per_image=cfg.cascade.batch_size_per_image,
            positive_fraction=cfg.cascade.positive_fraction,
            drop_loss_iou=drop_loss_iou if video_drop_loss else None,
            score_threshold=inference.score_threshold,
            nms_threshold=inference.nms_threshold,
            detections_per_image=inference.detections_per_image,
        ),
        mask_head=MaskHead(
            in_channels=channels,
            num_classes=cfg.num_thing_classes,
            num_convs=cfg.mask.num_convs,
            conv_dim=channels,
            pooler_resolution=cfg.mask.pooler_resolution,
        ),
        semantic_head=SemanticHead(
            in_channels=channels,
            num_classes=cfg.num_stuff_classes + 1,
            conv_dim=cfg.semantic.conv_dim,
            norm=cfg.semantic.norm,
            loss_weight=cfg.semantic.loss_weight,
        ),
        track_head=TrackHead(
            in_channels=channels,
            embed_dim=cfg.track.embed_dim,
            pooler_resolution=cfg.track.pooler_resolution,
            loss_weight=cfg.track.loss_weight,
            positive_iou=drop_loss_iou,
            drop_missing_counterpart=video_drop_loss,
        ),
        categories=categories,
        merge=MergeSettings(
            score_threshold=inference.score_threshold,
            overlap_threshold=inference.overlap_threshold,
            stuff_area_limit=inference.stuff_area_limit,
        ),
        name=cfg.name,
    )
    model.config = cfg
    return model
