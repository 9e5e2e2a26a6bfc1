"""Panoptic Cascade MaskTrack R-CNN: the composed per-frame network (method §3).

The meta-architecture only composes parts; maths lives in the heads and in free functions
(:mod:`~vcups_core.model.losses`, :mod:`~vcups_core.model.panoptic`,
:mod:`~vcups_core.model.postprocess`). Build it from a config with
:func:`vcups_core.model.build.build_model`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes

from vcups_core.model.backbone import ResNetFPN
from vcups_core.model.cascade import CascadeRoIHeads
from vcups_core.model.mask_head import MaskHead
from vcups_core.model.postprocess import MergeSettings, RawOutputs, frame_prediction_from_raw
from vcups_core.model.rpn import ProposalNetwork
from vcups_core.model.semantic_head import SemanticHead
from vcups_core.model.track_head import TrackHead
from vcups_core.types import IGNORE_LABEL, CategoryTable, FramePrediction

if TYPE_CHECKING:
    from vcups_core.configs.model import ModelConfig

LOSS_NAMES: tuple[str, ...] = (
    "loss_rpn_objectness",
    "loss_rpn_box",
    "loss_cls_stage0",
    "loss_box_stage0",
    "loss_cls_stage1",
    "loss_box_stage1",
    "loss_cls_stage2",
    "loss_box_stage2",
    "loss_mask",
    "loss_semantic",
    "loss_track",
)
"""Keys of the training loss dict (with the default 3 cascade stages)."""

_REQUIRED_TARGET_KEYS = ("boxes", "labels", "masks", "semantic")


class PanopticCascadeMaskTrack(nn.Module):
    """Per-frame video panoptic network: Panoptic FPN + Cascade R-CNN + MaskTrack head.

    Args:
        transform: normalises (ImageNet mean/std), resizes (min/max size) and pads (to 32).
        backbone: ResNet + FPN (P2-P6).
        rpn: region proposal network.
        roi_heads: cascade box heads (their score threshold, NMS and top-k are the inference
            settings).
        mask_head: class-specific mask head.
        semantic_head: Panoptic-FPN semantic head with ``S + 1`` outputs.
        track_head: MaskTrack embedding head.
        categories: the category table (``T`` things then ``S`` stuff).
        merge: post-processing thresholds of the panoptic merge.
        name: model name (published as ``PanopticInfo.model_name``).

    ``forward(images, targets=None)``:

    * ``images``: list of ``float32[3, H_i, W_i]`` RGB in ``[0, 1]``, any sizes.
    * Training (``model.train()``): ``targets`` is one dict per image with ``boxes``
      ``float32[N, 4]`` xyxy input pixels, ``labels`` ``int64[N]`` thing class ``0..T-1``,
      ``masks`` ``uint8[N, H, W]``, ``semantic`` ``int64[H, W]`` (0 = thing, ``1..S`` = stuff,
      255 = ignore), optionally ``track_ids`` ``int64[N]`` and ``pair`` (int, batch index of
      this image's reference frame, ``-1`` = no tracking loss; the default). ``N`` may be 0.
      Returns a dict of scalar losses, keys :data:`LOSS_NAMES`.
    * Eval: returns one :class:`~vcups_core.types.FramePrediction` per image at the image's own
      resolution (numpy). Frames without detections give ``N = 0``.
    """

    config: ModelConfig | None
    """The config this model was built from (set by ``build_model``; saved in checkpoints)."""

    def __init__(
        self,
        *,
        transform: GeneralizedRCNNTransform,
        backbone: ResNetFPN,
        rpn: ProposalNetwork,
        roi_heads: CascadeRoIHeads,
        mask_head: MaskHead,
        semantic_head: SemanticHead,
        track_head: TrackHead,
        categories: CategoryTable,
        merge: MergeSettings,
        name: str = "vcups",
    ) -> None:
        super().__init__()
        if roi_heads.num_classes != categories.num_things:
            raise ValueError(
                f"roi_heads predict {roi_heads.num_classes} thing classes, categories have "
                f"{categories.num_things}"
            )
        semantic_outputs = semantic_head.predictor.out_channels
        if semantic_outputs != categories.num_stuff + 1:
            raise ValueError(
                f"semantic head predicts {semantic_outputs} classes, expected "
                f"{categories.num_stuff} stuff + 1 thing"
            )
        self.transform = transform
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.mask_head = mask_head
        self.semantic_head = semantic_head
        self.track_head = track_head
        self.categories = categories
        self.merge = merge
        self.name = name
        self.config = None

    # ---------------------------------------------------------------------------------------

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Any]] | None = None
    ) -> dict[str, Tensor] | list[FramePrediction]:
        if self.training:
            if targets is None:
                raise ValueError("training needs targets (one dict per image)")
            return self.forward_train(images, targets)
        return self.predict(images)

    def forward_train(
        self, images: list[Tensor], targets: list[dict[str, Any]]
    ) -> dict[str, Tensor]:
        """Training losses (see the class docstring for the target format)."""
        _check_images(images)
        pairs = _check_targets(images, targets)
        det_targets = [
            {
                "boxes": t["boxes"].to(torch.float32).reshape(-1, 4),
                "labels": t["labels"].to(torch.int64).reshape(-1),
                "masks": t["masks"].to(torch.uint8),
            }
            for t in targets
        ]
        image_list, resized = self.transform(images, det_targets)
        assert resized is not None
        sizes = [(int(h), int(w)) for h, w in image_list.image_sizes]
        features = self.backbone(image_list.tensors)
        proposals, rpn_losses = self.rpn(image_list, features, resized)
        losses: dict[str, Tensor] = dict(rpn_losses)
        cascade_losses, sampled = self.roi_heads.forward_train(features, proposals, sizes, resized)
        losses.update(cascade_losses)
        fg = sampled.foreground()
        losses["loss_mask"] = self.mask_head.loss(
            features,
            sizes,
            fg.boxes,
            fg.matched_idxs,
            [t["masks"] for t in resized],
            [t["labels"] for t in resized],
        )
        semantic = self._semantic_targets(targets, image_list)
        losses["loss_semantic"] = self.semantic_head.loss(self.semantic_head(features), semantic)
        track_ids = [_track_ids(t, r["boxes"]) for t, r in zip(targets, resized, strict=True)]
        losses["loss_track"] = self.track_head.loss(
            features, sizes, sampled.boxes, [t["boxes"] for t in resized], track_ids, pairs
        )
        return losses

    @torch.no_grad()
    def predict(self, images: list[Tensor]) -> list[FramePrediction]:
        """Inference on a list of ``float32[3, H, W]`` images in ``[0, 1]`` (eval mode only).

        Raises:
            RuntimeError: if the model is in training mode (call ``model.eval()``).
        """
        if self.training:
            raise RuntimeError("predict() needs eval mode: call model.eval() first")
        _check_images(images)
        return [
            frame_prediction_from_raw(
                raw_outputs_to_numpy(raw),
                image_size=(int(image.shape[-2]), int(image.shape[-1])),
                semantic_stride=self.semantic_head.common_stride,
                settings=self.merge,
            )
            for image, raw in zip(images, self.infer_raw(images), strict=True)
        ]

    def infer_raw(self, images: list[Tensor]) -> list[RawOutputs[Tensor]]:
        """The network part of inference (what the ONNX export contains), eval mode.

        Returns per image :class:`~vcups_core.model.postprocess.RawOutputs` of tensors: boxes in
        input pixels, scores, classes, ``28 x 28`` mask probabilities, embeddings and the
        semantic softmax on the head's grid of ``semantic_head.common_stride`` pixels. Written
        without Python branches on data so that tracing keeps every size dynamic.
        """
        original_sizes: list[tuple[int, int]] = []
        for img in images:
            hw = img.shape[-2:]
            original_sizes.append((hw[0], hw[1]))
        image_list, _ = self.transform(images)
        sizes = image_list.image_sizes
        features = self.backbone(image_list.tensors)
        proposals, _ = self.rpn(image_list, features)
        detections = self.roi_heads.predict(features, proposals, sizes)
        boxes = [d.boxes for d in detections]
        classes = [d.classes for d in detections]
        mask_probs = self.mask_head.predict(features, boxes, classes, sizes)
        counts = [b.shape[0] for b in boxes]
        embeddings = torch.split(self.track_head(features, boxes, sizes), counts)
        semantic = self.semantic_head.predict(self.semantic_head(features), sizes, original_sizes)
        outputs = []
        for i, det in enumerate(detections):
            outputs.append(
                RawOutputs(
                    boxes=resize_boxes(det.boxes, sizes[i], original_sizes[i]),
                    scores=det.scores,
                    classes=det.classes,
                    mask_probs=mask_probs[i],
                    embeddings=embeddings[i],
                    semantic_probs=semantic[i],
                )
            )
        return outputs

    # ---------------------------------------------------------------------------------------

    def _semantic_targets(self, targets: list[dict[str, Any]], image_list: ImageList) -> Tensor:
        """``int64[B, Hp, Wp]`` semantic targets resized (nearest) and padded with 255."""
        b, _, hp, wp = image_list.tensors.shape
        device = image_list.tensors.device
        out = torch.full((b, hp, wp), IGNORE_LABEL, dtype=torch.int64, device=device)
        for i, (t, (h, w)) in enumerate(zip(targets, image_list.image_sizes, strict=True)):
            sem = torch.as_tensor(t["semantic"]).to(device=device, dtype=torch.float32)
            resized = F.interpolate(sem[None, None], size=(int(h), int(w)), mode="nearest")
            out[i, : int(h), : int(w)] = resized[0, 0].to(torch.int64)
        return out


def raw_outputs_to_numpy(raw: RawOutputs[Tensor]) -> RawOutputs[np.ndarray[Any, Any]]:
    """Move :class:`RawOutputs` to numpy (floating-point fields as float32)."""
    return RawOutputs(
        *(
            t.detach().to("cpu").numpy()
            if not t.is_floating_point()
            else t.detach().float().cpu().numpy()
            for t in raw
        )
    )


def _track_ids(target: dict[str, Any], boxes: Tensor) -> Tensor:
    """``int64[N]`` track ids of a target (0 = no track when the target has none)."""
    if "track_ids" not in target:
        return torch.zeros(boxes.shape[0], dtype=torch.int64, device=boxes.device)
    ids = torch.as_tensor(target["track_ids"])
    return ids.to(device=boxes.device, dtype=torch.int64).reshape(-1)


def _check_images(images: list[Tensor]) -> None:
    if not isinstance(images, (list, tuple)) or not images:
        raise ValueError("images must be a non-empty list of float[3, H, W] tensors")
    for i, img in enumerate(images):
        if not isinstance(img, Tensor) or img.dim() != 3 or img.shape[0] != 3:
            shape = list(img.shape) if isinstance(img, Tensor) else type(img).__name__
            raise ValueError(f"images[{i}] must be float[3, H, W], got {shape}")
        if not img.is_floating_point():
            raise ValueError(f"images[{i}] must be floating point in [0, 1], got {img.dtype}")


def _check_targets(images: list[Tensor], targets: list[dict[str, Any]]) -> list[int]:
    """Validate the training targets; return the reference-frame index of every image."""
    if len(targets) != len(images):
        raise ValueError(f"{len(images)} images but {len(targets)} targets")
    pairs = []
    for i, (img, t) in enumerate(zip(images, targets, strict=True)):
        missing = [k for k in _REQUIRED_TARGET_KEYS if k not in t]
        if missing:
            raise ValueError(f"targets[{i}] lacks {missing}")
        n = t["boxes"].reshape(-1, 4).shape[0]
        h, w = img.shape[-2:]
        if t["labels"].numel() != n or tuple(t["masks"].shape) != (n, h, w):
            raise ValueError(
                f"targets[{i}]: {n} boxes need labels[{n}] and masks[{n}, {h}, {w}], got "
                f"labels{list(t['labels'].shape)} and masks{list(t['masks'].shape)}"
            )
        if tuple(t["semantic"].shape) != (h, w):
            raise ValueError(
                f"targets[{i}]: semantic must be [{h}, {w}], got {list(t['semantic'].shape)}"
            )
        pair = int(t.get("pair", -1))
        if not -1 <= pair < len(images) or pair == i:
            raise ValueError(f"targets[{i}]: pair must be -1 or another batch index, got {pair}")
        if pair >= 0 and ("track_ids" not in t or "track_ids" not in targets[pair]):
            raise ValueError(
                f"targets[{i}] and its pair {pair} need track_ids for the tracking loss"
            )
        if "track_ids" in t and torch.as_tensor(t["track_ids"]).numel() != n:
            raise ValueError(f"targets[{i}]: track_ids must have {n} entries")
        pairs.append(pair)
    return pairs
