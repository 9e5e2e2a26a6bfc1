"""Panoptic-FPN semantic head (detectron2's ``SemSegFPNHead``, as CUPS's ``CustomSemSegFPNHead``).

Each of P2-P5 (strides 4, 8, 16, 32) goes through ``max(1, log2(stride / 4))`` blocks of
conv3x3 + norm + ReLU, each followed by a 2x bilinear upsample except at stride 4, so every level
ends at 1/4 scale with ``conv_dim`` channels; the levels are summed and a 1x1 conv predicts
``num_stuff + 1`` classes (channel 0 = the merged "thing" class, ``1..S`` = stuff).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
import torchvision
from torch import Tensor, nn

from vcups_core.model.backbone import ROI_FEATURE_NAMES
from vcups_core.types import IGNORE_LABEL

SemanticNorm = Literal["gn", "bn", "syncbn"]


def _norm(norm: SemanticNorm, channels: int) -> nn.Module:
    if norm == "gn":
        return nn.GroupNorm(math.gcd(32, channels), channels)
    if norm in ("bn", "syncbn"):
        return nn.BatchNorm2d(channels)
    raise ValueError(f"norm must be one of 'gn', 'bn', 'syncbn', got {norm!r}")


class SemanticHead(nn.Module):
    """Semantic segmentation from FPN features.

    Args:
        in_channels: FPN channels.
        num_classes: ``S + 1`` (thing + stuff classes).
        conv_dim: channels of the per-level convs (128).
        norm: ``"gn"`` (GroupNorm with 32 groups, the Panoptic-FPN default), ``"bn"``, or
            ``"syncbn"`` (SyncBatchNorm when ``torch.distributed`` is initialised, else bn).
        featmap_names: the FPN levels used, finest first (P2-P5).
        feature_strides: their strides (4, 8, 16, 32).
        loss_weight: multiplies the cross-entropy (0.5).
        ignore_index: target value left out of the loss (255).

    ``forward(features)`` returns ``float[B, S + 1, H / 4, W / 4]`` logits of the padded batch
    (same layers in train and eval); :meth:`loss` upsamples them to the targets.
    """

    common_stride: int = 4

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        conv_dim: int = 128,
        norm: SemanticNorm = "gn",
        featmap_names: Sequence[str] = ROI_FEATURE_NAMES,
        feature_strides: Sequence[int] = (4, 8, 16, 32),
        loss_weight: float = 0.5,
        ignore_index: int = IGNORE_LABEL,
    ) -> None:
        super().__init__()
        if len(featmap_names) != len(feature_strides):
            raise ValueError("featmap_names and feature_strides must have the same length")
        self.featmap_names = list(featmap_names)
        self.loss_weight = loss_weight
        self.ignore_index = ignore_index
        self.scale_heads = nn.ModuleList()
        for stride in feature_strides:
            steps = max(1, int(math.log2(stride) - math.log2(self.common_stride)))
            ops: list[nn.Module] = []
            for k in range(steps):
                conv = nn.Conv2d(
                    in_channels if k == 0 else conv_dim, conv_dim, 3, padding=1, bias=False
                )
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
                ops += [conv, _norm(norm, conv_dim), nn.ReLU(inplace=True)]
                if stride != self.common_stride:
                    ops.append(nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False))
            self.scale_heads.append(nn.Sequential(*ops))
        self.predictor = nn.Conv2d(conv_dim, num_classes, kernel_size=1)
        nn.init.kaiming_normal_(self.predictor.weight, mode="fan_out", nonlinearity="relu")
        if self.predictor.bias is not None:
            nn.init.zeros_(self.predictor.bias)
        if norm == "syncbn" and dist.is_available() and dist.is_initialized():
            nn.SyncBatchNorm.convert_sync_batchnorm(self)  # type: ignore[no-untyped-call]

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        x: Tensor | None = None
        for name, head in zip(self.featmap_names, self.scale_heads, strict=True):
            y = head(features[name])
            if x is not None:
                # Odd padded sizes cannot occur (inputs are padded to multiples of 32), but keep
                # the sum robust to a one-pixel mismatch.
                y = y[..., : x.shape[-2], : x.shape[-1]]
            x = y if x is None else x + y
        assert x is not None
        out: Tensor = self.predictor(x)
        return out

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Weighted cross-entropy at the padded input resolution.

        Args:
            logits: ``float[B, S + 1, H / 4, W / 4]`` from :meth:`forward`.
            targets: ``int64[B, H, W]`` (padded batch size), ``0`` = thing, ``1..S`` stuff,
                ``ignore_index`` ignored (also the padding).

        Returns:
            ``loss_weight * CE``; ``0`` (attached to the logits) if every pixel is ignored.
        """
        up = F.interpolate(
            logits.float(), size=targets.shape[-2:], mode="bilinear", align_corners=False
        )
        if not bool((targets != self.ignore_index).any()):
            return logits.sum() * 0.0
        loss = F.cross_entropy(up, targets, ignore_index=self.ignore_index)
        return loss * self.loss_weight

    def predict(
        self,
        logits: Tensor,
        image_sizes: list[tuple[int, int]],
        original_sizes: list[tuple[int, int]],
    ) -> list[Tensor]:
        """Softmax probabilities on each input image's grid of ``common_stride`` pixels.

        The logits (one per ``4 x 4`` cell of the padded batch) are cropped to each transformed
        image's cells, resized (bilinear) to the cells of its original size (skipped when they
        already agree, except while tracing), then softmaxed. Staying at the head's own
        resolution keeps the output 16x smaller than input resolution;
        :meth:`~vcups_core.types.FramePrediction.full_semantic_probs` upsamples on demand.

        Returns:
            Per image ``float32[S + 1, ceil(H_i / 4), ceil(W_i / 4)]``.
        """
        s = self.common_stride
        out = []
        tracing = torchvision._is_tracing()
        for i, ((h, w), (oh, ow)) in enumerate(zip(image_sizes, original_sizes, strict=True)):
            crop = logits[i : i + 1, :, : (h + s - 1) // s, : (w + s - 1) // s]
            cells = ((oh + s - 1) // s, (ow + s - 1) // s)
            if tracing or tuple(crop.shape[-2:]) != cells:
                # (Traced graphs always resize: the sizes are dynamic there.)
                crop = F.interpolate(crop, size=cells, mode="bilinear", align_corners=False)
            out.append(torch.softmax(crop[0], dim=0))
        return out
