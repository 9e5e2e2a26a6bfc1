"""Region proposal network over P2-P6 (torchvision's RPN with a keyword constructor).

One anchor size per level (32..512 on P2..P6) and 3 aspect ratios, as detectron2's default
``DefaultAnchorGenerator`` in CUPS. Proposals are decoded from the anchors, the top
``pre_nms_topk`` per level are kept, NMS runs per level, and the best ``post_nms_topk`` per
image survive (detectron2's ``find_top_rpn_proposals``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead


class ProposalNetwork(RegionProposalNetwork):  # type: ignore[misc]  # torchvision is untyped
    """RPN with explicit keyword arguments and vcups loss names.

    Args:
        in_channels: channels of every FPN level.
        anchor_sizes: one anchor size (pixels) per level, P2 first.
        aspect_ratios: anchor aspect ratios (height / width), shared by all levels.
        nms_threshold: IoU of the per-level proposal NMS.
        pre_nms_topk_train, pre_nms_topk_test: proposals kept per level before NMS.
        post_nms_topk_train, post_nms_topk_test: proposals kept per image after NMS.
        batch_size_per_image: anchors sampled per image for the losses.
        positive_fraction: fraction of positive anchors in that sample.
        fg_iou_threshold, bg_iou_threshold: anchor labelling IoUs (detectron2: 0.7 / 0.3;
            the best anchor of every GT box is always positive).

    Forward (``images``: the transformed :class:`ImageList`; ``features``: dict of FPN maps in
    level order; ``targets``: per-image dicts with ``boxes`` ``float32[N, 4]`` xyxy in the
    transformed image's pixels, required in training):
        Returns ``(proposals, losses)``: ``proposals`` is a list of ``float32[R_i, 4]`` xyxy
        boxes (sorted by objectness, ``R_i <= post_nms_topk``); ``losses`` is
        ``{"loss_rpn_objectness", "loss_rpn_box"}`` in training and empty in eval.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        nms_threshold: float = 0.65,
        pre_nms_topk_train: int = 2000,
        post_nms_topk_train: int = 4000,
        pre_nms_topk_test: int = 1000,
        post_nms_topk_test: int = 1000,
        batch_size_per_image: int = 256,
        positive_fraction: float = 0.5,
        fg_iou_threshold: float = 0.7,
        bg_iou_threshold: float = 0.3,
    ) -> None:
        anchors = AnchorGenerator(
            sizes=tuple((int(s),) for s in anchor_sizes),
            aspect_ratios=tuple(tuple(float(a) for a in aspect_ratios) for _ in anchor_sizes),
        )
        head = RPNHead(in_channels, anchors.num_anchors_per_location()[0])
        super().__init__(
            anchors,
            head,
            fg_iou_thresh=fg_iou_threshold,
            bg_iou_thresh=bg_iou_threshold,
            batch_size_per_image=batch_size_per_image,
            positive_fraction=positive_fraction,
            pre_nms_top_n={"training": pre_nms_topk_train, "testing": pre_nms_topk_test},
            post_nms_top_n={"training": post_nms_topk_train, "testing": post_nms_topk_test},
            nms_thresh=nms_threshold,
        )

    def forward(
        self,
        images: ImageList,
        features: dict[str, Tensor],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        proposals, losses = super().forward(images, features, targets)
        renamed = (
            {
                "loss_rpn_objectness": losses["loss_objectness"],
                "loss_rpn_box": losses["loss_rpn_box_reg"],
            }
            if losses
            else {}
        )
        return proposals, renamed
