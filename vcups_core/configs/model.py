"""Panoptic Cascade MaskTrack R-CNN (``config/model/*.yaml``); defaults are the paper's model.

Values follow ``docs/method.md`` §3 (CUPS/Detectron2 settings the paper builds on). Sizes in
pixels, strides relative to the input image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vcups_core.config import option, section


@dataclass(frozen=True)
class BackboneSection:
    depth: Literal[18, 34, 50] = option(50, "ResNet depth")
    fpn_channels: int = option(256, "FPN output channels (P2-P6)", gt=0)
    norm: Literal["bn", "syncbn", "frozenbn"] = option(
        "syncbn", "normalization (syncbn falls back to bn when not distributed)"
    )
    freeze_at: int = option(0, "number of ResNet stages frozen (0: all trainable)", ge=0, le=5)
    weights: str = option(
        "", "local backbone weights (torchvision or detectron2 layout); empty: random"
    )


@dataclass(frozen=True)
class RPNSection:
    anchor_sizes: tuple[int, ...] = option(
        (32, 64, 128, 256, 512), "anchor size per FPN level P2-P6", gt=0
    )
    aspect_ratios: tuple[float, ...] = option((0.5, 1.0, 2.0), "anchor aspect ratios", gt=0.0)
    nms_threshold: float = option(0.65, "RPN NMS IoU", gt=0.0, le=1.0)
    pre_nms_topk_train: int = option(2000, "proposals per level before NMS (training)", gt=0)
    post_nms_topk_train: int = option(4000, "proposals kept after NMS (training)", gt=0)
    pre_nms_topk_test: int = option(1000, "proposals per level before NMS (inference)", gt=0)
    post_nms_topk_test: int = option(1000, "proposals kept after NMS (inference)", gt=0)
    batch_size_per_image: int = option(256, "anchors sampled per image for the RPN losses", gt=0)


@dataclass(frozen=True)
class CascadeSection:
    iou_thresholds: tuple[float, ...] = option(
        (0.5, 0.6, 0.7), "foreground IoU of each cascade stage", gt=0.0, lt=1.0
    )
    bbox_reg_weights: tuple[tuple[float, float, float, float], ...] = option(
        ((10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0), (30.0, 30.0, 15.0, 15.0)),
        "box-coder weights (wx, wy, ww, wh) of each stage",
    )
    batch_size_per_image: int = option(512, "sampled RoIs per image", gt=0)
    positive_fraction: float = option(0.25, "fraction of positive RoIs", gt=0.0, le=1.0)
    pooler_resolution: int = option(7, "RoIAlign output size of the box head", gt=0)
    fc_dim: int = option(1024, "width of the 2 FC layers of each box head", gt=0)

    def __post_init__(self) -> None:
        if len(self.iou_thresholds) != len(self.bbox_reg_weights):
            raise ValueError(
                f"iou_thresholds ({len(self.iou_thresholds)} stages) and bbox_reg_weights "
                f"({len(self.bbox_reg_weights)} stages) must have the same length"
            )


@dataclass(frozen=True)
class MaskSection:
    num_convs: int = option(4, "conv layers of the mask head", ge=1)
    pooler_resolution: int = option(14, "RoIAlign output size of the mask head", gt=0)


@dataclass(frozen=True)
class SemanticSection:
    conv_dim: int = option(128, "channels of the Panoptic-FPN semantic head", gt=0)
    norm: Literal["gn", "bn", "syncbn"] = option(
        "gn", "normalization of the semantic head convs (gn: GroupNorm, Panoptic-FPN default)"
    )
    loss_weight: float = option(0.5, "weight of the semantic cross-entropy", ge=0.0)


@dataclass(frozen=True)
class TrackSection:
    embed_dim: int = option(1024, "width of the 2 FC layers of the MaskTrack embedding head", gt=0)
    pooler_resolution: int = option(7, "RoIAlign output size of the track head", gt=0)
    loss_weight: float = option(1.0, "weight of the association cross-entropy", ge=0.0)


@dataclass(frozen=True)
class InferenceSection:
    score_threshold: float = option(
        0.5,
        "ROI test score threshold and panoptic merge threshold (kept: score >= this)",
        ge=0.0,
        le=1.0,
    )
    nms_threshold: float = option(0.5, "per-class NMS IoU of final detections", gt=0.0, le=1.0)
    overlap_threshold: float = option(
        0.5, "drop an instance if this fraction of it is already covered", ge=0.0, le=1.0
    )
    stuff_area_limit: int = option(4096, "stuff segments with fewer pixels become void", ge=0)
    detections_per_image: int = option(100, "maximum detections per frame", gt=0)
    resize: bool = option(
        False,
        "scale inputs to min_size/max_size at inference (false: native resolution, as the paper "
        "evaluates, method 5; training never resizes)",
    )


@dataclass(frozen=True)
class ModelConfig:
    """The network and its inference settings."""

    name: str = option("vcups_r50", "model name (published in PanopticInfo.model_name)")
    num_thing_classes: int = option(5, "pseudo-thing classes (detection/mask/track heads)", ge=1)
    num_stuff_classes: int = option(22, "pseudo-stuff classes (semantic head adds 1 'thing')", ge=1)
    min_size: int = option(
        640,
        "with inference.resize: inputs are scaled (up or down) so that the short side is this, "
        "unless the long side would then exceed max_size",
        gt=0,
    )
    max_size: int = option(1280, "upper bound of the scaled long side (see min_size)", gt=0)
    pixel_mean: tuple[float, float, float] = option(
        (0.485, 0.456, 0.406), "RGB mean of inputs in [0, 1]"
    )
    pixel_std: tuple[float, float, float] = option(
        (0.229, 0.224, 0.225), "RGB std of inputs in [0, 1]", gt=0.0
    )
    backbone: BackboneSection = section(BackboneSection, "ResNet + FPN")
    rpn: RPNSection = section(RPNSection, "region proposal network")
    cascade: CascadeSection = section(CascadeSection, "Cascade R-CNN box heads")
    mask: MaskSection = section(MaskSection, "mask head")
    semantic: SemanticSection = section(SemanticSection, "semantic FPN head")
    track: TrackSection = section(TrackSection, "MaskTrack embedding head")
    inference: InferenceSection = section(InferenceSection, "post-processing and panoptic merge")
