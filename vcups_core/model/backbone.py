"""ResNet-18/34/50 with a feature pyramid (P2-P6), built from torchvision parts.

The output is an ordered dict of five maps with ``out_channels`` channels each, keyed
``"0"``, ``"1"``, ``"2"``, ``"3"`` (P2-P5, strides 4/8/16/32, from res2-res5) and ``"pool"``
(P6, stride 64, a stride-2 max-pool of P5 as in detectron2's ``LastLevelMaxPool``).
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Callable
from typing import Literal

import torch.distributed as dist
from torch import nn
from torchvision.models import resnet
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

logger = logging.getLogger(__name__)

Norm = Literal["bn", "syncbn", "frozenbn"]

FEATURE_NAMES: tuple[str, ...] = ("0", "1", "2", "3", "pool")
"""Keys of the backbone output, P2..P6."""

ROI_FEATURE_NAMES: tuple[str, ...] = ("0", "1", "2", "3")
"""P2..P5: the levels the RoI heads and the semantic head read."""

_RESNETS: dict[int, Callable[..., resnet.ResNet]] = {
    18: resnet.resnet18,
    34: resnet.resnet34,
    50: resnet.resnet50,
}
# detectron2 stage names -> torchvision module names (freeze_at counts these in order).
_STAGES: tuple[tuple[str, ...], ...] = (
    ("conv1", "bn1"),
    ("layer1",),
    ("layer2",),
    ("layer3",),
    ("layer4",),
)


def frozen_batch_norm(module: nn.Module) -> nn.Module:
    """Return ``module`` with every ``BatchNorm2d`` replaced by a ``FrozenBatchNorm2d``.

    The affine parameters and running statistics are copied, so the output is unchanged in
    eval mode; afterwards the statistics never update and the affine terms are buffers.
    """
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        if module.affine:
            frozen.weight.copy_(module.weight.detach())
            frozen.bias.copy_(module.bias.detach())
        if module.running_mean is not None and module.running_var is not None:
            frozen.running_mean.copy_(module.running_mean)
            frozen.running_var.copy_(module.running_var)
        return typing.cast(nn.Module, frozen)
    for name, child in module.named_children():
        new_child = frozen_batch_norm(child)
        if new_child is not child:
            setattr(module, name, new_child)
    return module


def freeze_stages(body: resnet.ResNet, freeze_at: int) -> None:
    """Freeze the first ``freeze_at`` stages (stem, res2, ..., res5) as detectron2 does.

    Frozen stages get ``requires_grad=False`` and frozen batch norm (in place).

    Raises:
        ValueError: if ``freeze_at`` is not in ``0..5``.
    """
    if not 0 <= freeze_at <= len(_STAGES):
        raise ValueError(f"freeze_at must be in 0..{len(_STAGES)}, got {freeze_at}")
    for stage in _STAGES[:freeze_at]:
        for name in stage:
            part = getattr(body, name)
            for param in part.parameters():
                param.requires_grad_(False)
            setattr(body, name, frozen_batch_norm(part))


def _norm_layer(norm: Norm) -> Callable[..., nn.Module]:
    if norm == "frozenbn":
        return typing.cast(Callable[..., nn.Module], FrozenBatchNorm2d)
    if norm in ("bn", "syncbn"):
        return nn.BatchNorm2d
    raise ValueError(f"norm must be one of 'bn', 'syncbn', 'frozenbn', got {norm!r}")


class ResNetFPN(BackboneWithFPN):  # type: ignore[misc]  # torchvision is untyped
    """ResNet + FPN producing P2-P6.

    Args:
        depth: ResNet depth, 18, 34 or 50 (50 uses bottleneck blocks, stride in the 3x3 conv,
            i.e. detectron2's ``STRIDE_IN_1X1=False``).
        out_channels: FPN channels of every output level.
        norm: ``"bn"`` (BatchNorm2d), ``"syncbn"`` (BatchNorm2d converted to SyncBatchNorm only
            when ``torch.distributed`` is initialised, otherwise plain BatchNorm2d) or
            ``"frozenbn"`` (FrozenBatchNorm2d, statistics never update). The FPN convs use
            the same batch norm for ``bn``/``syncbn`` (as CUPS) and no norm for ``frozenbn``.
        freeze_at: number of ResNet stages frozen (0: all trainable; 1: stem; 2: stem + res2;
            ... 5: everything).
        weights: optional local backbone weights (see :mod:`vcups_core.model.weights`), loaded
            into the ResNet before freezing. Never downloaded.

    Forward:
        ``x``: ``float32[B, 3, H, W]`` normalised images, ``H`` and ``W`` multiples of 32.
        Returns an ordered dict ``{"0": P2, "1": P3, "2": P4, "3": P5, "pool": P6}`` of
        ``float32[B, out_channels, H / s, W / s]`` with ``s`` = 4, 8, 16, 32, 64. Train and
        eval differ only through batch norm.
    """

    def __init__(
        self,
        *,
        depth: int = 50,
        out_channels: int = 256,
        norm: Norm = "bn",
        freeze_at: int = 0,
        weights: str = "",
    ) -> None:
        if depth not in _RESNETS:
            raise ValueError(f"depth must be one of {sorted(_RESNETS)}, got {depth}")
        body = _RESNETS[depth](weights=None, norm_layer=_norm_layer(norm))
        if weights:
            from vcups_core.model.weights import load_backbone_weights

            load_backbone_weights(body, weights)
        freeze_stages(body, freeze_at)
        expansion = 4 if depth >= 50 else 1
        in_channels = [64 * expansion * 2**i for i in range(4)]
        fpn_norm = nn.BatchNorm2d if norm in ("bn", "syncbn") else None
        super().__init__(
            body,
            return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
            in_channels_list=in_channels,
            out_channels=out_channels,
            extra_blocks=LastLevelMaxPool(),
            norm_layer=fpn_norm,
        )
        self.depth = depth
        self.norm = norm
        if norm == "syncbn":
            if dist.is_available() and dist.is_initialized():
                # Converts the children in place (self is not itself a batch norm).
                nn.SyncBatchNorm.convert_sync_batchnorm(self)  # type: ignore[no-untyped-call]
            else:
                logger.debug("norm=syncbn without torch.distributed: using BatchNorm2d")


__all__ = ["FEATURE_NAMES", "ROI_FEATURE_NAMES", "ResNetFPN", "freeze_stages", "frozen_batch_norm"]
