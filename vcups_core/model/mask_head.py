"""Mask head: 4 convs on 14x14 RoIAlign features, a 2x deconv and class-specific mask logits.

Same layout as detectron2's ``MaskRCNNConvUpsampleHead`` (and torchvision's ``MaskRCNNHeads``
+ ``MaskRCNNPredictor``); the loss and the per-class selection at inference are torchvision's
:func:`~torchvision.models.detection.roi_heads.maskrcnn_loss` and
:func:`~torchvision.models.detection.roi_heads.maskrcnn_inference`. Class indices are the thing
classes ``0..T-1`` directly (there is no background mask channel).
"""

from __future__ import annotations

import typing
from collections.abc import Sequence

import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import maskrcnn_inference, maskrcnn_loss

from vcups_core.model.backbone import ROI_FEATURE_NAMES
from vcups_core.model.roi_pool import ParallelMultiScaleRoIAlign


class MaskHead(nn.Module):
    """Class-specific mask prediction for boxes.

    Args:
        in_channels: FPN channels.
        num_classes: thing classes ``T`` (one mask channel each).
        num_convs: 3x3 convs before the deconv (4).
        conv_dim: channels of those convs (256).
        pooler_resolution: RoIAlign output side (14); masks are ``2 * pooler_resolution``.
        featmap_names: FPN levels pooled from.
        sampling_ratio: RoIAlign samples per bin.

    ``forward(features, boxes, image_sizes)`` returns ``float[sum N_i, T, M, M]`` logits with
    ``M = 2 * pooler_resolution``; train and eval run the same layers.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        num_convs: int = 4,
        conv_dim: int = 256,
        pooler_resolution: int = 14,
        featmap_names: Sequence[str] = ROI_FEATURE_NAMES,
        sampling_ratio: int = 2,
    ) -> None:
        super().__init__()
        self.pooler = ParallelMultiScaleRoIAlign(
            featmap_names=list(featmap_names),
            output_size=pooler_resolution,
            sampling_ratio=sampling_ratio,
        )
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(num_convs):
            conv = nn.Conv2d(channels, conv_dim, kernel_size=3, padding=1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            _zero_bias(conv)
            layers += [conv, nn.ReLU(inplace=True)]
            channels = conv_dim
        self.convs = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(channels, conv_dim, kernel_size=2, stride=2)
        nn.init.kaiming_normal_(self.deconv.weight, mode="fan_out", nonlinearity="relu")
        _zero_bias(self.deconv)
        self.predictor = nn.Conv2d(conv_dim, num_classes, kernel_size=1)
        nn.init.normal_(self.predictor.weight, std=0.001)
        _zero_bias(self.predictor)

    def forward(
        self, features: dict[str, Tensor], boxes: list[Tensor], image_sizes: list[tuple[int, int]]
    ) -> Tensor:
        x = self.pooler(features, boxes, image_sizes)
        x = self.convs(x)
        x = F.relu(self.deconv(x))
        out: Tensor = self.predictor(x)
        return out

    def loss(
        self,
        features: dict[str, Tensor],
        image_sizes: list[tuple[int, int]],
        boxes: list[Tensor],
        matched_idxs: list[Tensor],
        gt_masks: list[Tensor],
        gt_labels: list[Tensor],
    ) -> Tensor:
        """Per-pixel BCE of the matched class's mask (torchvision's ``maskrcnn_loss``).

        Args:
            features: FPN maps.
            image_sizes: transformed image sizes.
            boxes: per image ``float[P_i, 4]`` foreground proposals.
            matched_idxs: per image ``int64[P_i]`` index of each proposal's GT instance.
            gt_masks: per image ``uint8[G_i, h, w]`` GT masks at the transformed resolution.
            gt_labels: per image ``int64[G_i]`` thing classes ``0..T-1``.

        Returns:
            Scalar loss; ``0`` (attached to the head) without foreground proposals.
        """
        logits: Tensor = self(features, boxes, image_sizes)
        if logits.shape[0] == 0:
            return logits.sum() * 0.0
        return typing.cast(Tensor, maskrcnn_loss(logits, boxes, gt_masks, gt_labels, matched_idxs))

    def predict(
        self,
        features: dict[str, Tensor],
        boxes: list[Tensor],
        classes: list[Tensor],
        image_sizes: list[tuple[int, int]],
    ) -> list[Tensor]:
        """Mask probabilities of each detection's class: per image ``float[N_i, M, M]``."""
        logits = self(features, boxes, image_sizes)
        probs: list[Tensor] = maskrcnn_inference(logits, classes)
        return [p[:, 0] for p in probs]


def _zero_bias(layer: nn.Conv2d | nn.ConvTranspose2d) -> None:
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
