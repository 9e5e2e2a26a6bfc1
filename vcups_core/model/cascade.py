"""Cascade R-CNN box heads (3 stages) with Video DropLoss, as detectron2's ``CascadeROIHeads``.

Every stage is a 2-FC box head on 7x7 RoIAlign features with a classifier over ``T + 1``
classes (things ``0..T-1``, **background last** = ``T``, detectron2's convention) and a
class-agnostic box regressor (4 deltas) with its own box-coder weights.

Training (detectron2/CUPS semantics):

1. Stage 0: the ground-truth boxes are added to the RPN proposals, every box is matched to the
   GT with the stage-0 IoU threshold (foreground if IoU >= threshold, no low-quality matches),
   and ``batch_size_per_image`` boxes are sampled with ``positive_fraction`` positives.
2. Stage ``k > 0``: its proposals are stage ``k-1``'s regressed boxes (detached, clipped,
   empty ones removed), matched to the GT with stage ``k``'s threshold; no re-sampling.
3. Per stage: classification loss with Video DropLoss (:func:`~vcups_core.model.losses.drop_loss_weights`
   on the stage's regressed boxes, :func:`~vcups_core.model.losses.weighted_cross_entropy`
   averaged over all sampled proposals; images without GT use plain CE) and a smooth-L1 box
   loss on the foreground proposals, summed and divided by the number of proposals.
   The RoI features' gradient is scaled by ``1 / num_stages`` (detectron2).

Inference: all stages run on all proposals; class probabilities are averaged over the stages,
boxes come from the last stage; then a score threshold (``score > threshold``), per-class NMS
and the top ``detections_per_image``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
from torch import Tensor, nn
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler, BoxCoder, Matcher
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image
from torchvision.ops import boxes as box_ops

from vcups_core.model.backbone import ROI_FEATURE_NAMES
from vcups_core.model.losses import drop_loss_weights, weighted_cross_entropy
from vcups_core.model.roi_pool import ParallelMultiScaleRoIAlign
from vcups_core.types import passes_score_threshold


class Detections(NamedTuple):
    """Final detections of one image, in the transformed (resized) image's pixels.

    Attributes:
        boxes: ``float32[N, 4]`` xyxy.
        scores: ``float32[N]`` stage-averaged class probability.
        classes: ``int64[N]`` thing class ``0..T-1``.
    """

    boxes: Tensor
    scores: Tensor
    classes: Tensor


@dataclass
class SampledProposals:
    """The stage-0 proposals sampled for the losses (the mask and track heads train on these).

    Attributes:
        boxes: per image ``float32[R_i, 4]`` xyxy (RPN proposals + GT boxes, sampled).
        labels: per image ``int64[R_i]``: thing class ``0..T-1`` or ``T`` (background).
        matched_idxs: per image ``int64[R_i]``: index of the matched GT box (0 when background
            or when the image has no GT).
        num_classes: ``T``.
    """

    boxes: list[Tensor]
    labels: list[Tensor]
    matched_idxs: list[Tensor]
    num_classes: int

    def foreground(self) -> SampledProposals:
        """Only the proposals labelled as a thing class."""
        keep = [lab < self.num_classes for lab in self.labels]
        return SampledProposals(
            [b[k] for b, k in zip(self.boxes, keep, strict=True)],
            [lab[k] for lab, k in zip(self.labels, keep, strict=True)],
            [m[k] for m, k in zip(self.matched_idxs, keep, strict=True)],
            self.num_classes,
        )


class _ScaleGradient(torch.autograd.Function):
    """Identity forward, gradient times ``scale`` backward (detectron2 cascade)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.scale, None


class BoxHeadStage(nn.Module):
    """One cascade stage: flatten -> FC -> ReLU -> FC -> ReLU -> (class logits, 4 deltas).

    Args:
        in_channels: channels of the pooled features.
        pooler_resolution: side of the pooled features.
        fc_dim: width of the two FC layers.
        num_classes: ``T`` (the classifier has ``T + 1`` outputs, background last).

    Forward: ``float[R, C, P, P]`` -> ``(float[R, T + 1] logits, float[R, 4] deltas)``.
    """

    def __init__(
        self, *, in_channels: int, pooler_resolution: int, fc_dim: int, num_classes: int
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_channels * pooler_resolution**2, fc_dim)
        self.fc2 = nn.Linear(fc_dim, fc_dim)
        self.cls_score = nn.Linear(fc_dim, num_classes + 1)
        self.bbox_pred = nn.Linear(fc_dim, 4)
        for fc in (self.fc1, self.fc2):  # detectron2 c2_xavier_fill
            nn.init.kaiming_uniform_(fc.weight, a=1)
            nn.init.zeros_(fc.bias)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.cls_score(x), self.bbox_pred(x)


class CascadeRoIHeads(nn.Module):
    """Three (or more) cascade box stages sharing one RoIAlign pooler.

    Args:
        in_channels: FPN channels.
        num_classes: number of thing classes ``T``.
        featmap_names: FPN levels pooled from (P2-P5).
        pooler_resolution: RoIAlign output side (7).
        sampling_ratio: RoIAlign samples per bin (torchvision's Mask R-CNN: 2).
        fc_dim: FC width of every stage (1024).
        iou_thresholds: foreground IoU of every stage (0.5, 0.6, 0.7).
        bbox_reg_weights: box-coder weights ``(wx, wy, ww, wh)`` of every stage.
        batch_size_per_image: RoIs sampled per image at stage 0 (512).
        positive_fraction: fraction of positives in that sample (0.25).
        drop_loss_iou: Video DropLoss ``tau`` (0.5); None turns DropLoss off (plain
            cross-entropy on every proposal, for ablations).
        smooth_l1_beta: beta of the box loss (detectron2's default 0.0 is plain L1).
        score_threshold: inference: keep ``score >= score_threshold``
            (:func:`~vcups_core.types.passes_score_threshold`).
        nms_threshold: inference: per-class NMS IoU.
        detections_per_image: inference: at most this many detections.

    Use :meth:`forward_train` in training and :meth:`predict` at inference.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        featmap_names: Sequence[str] = ROI_FEATURE_NAMES,
        pooler_resolution: int = 7,
        sampling_ratio: int = 2,
        fc_dim: int = 1024,
        iou_thresholds: Sequence[float] = (0.5, 0.6, 0.7),
        bbox_reg_weights: Sequence[tuple[float, float, float, float]] = (
            (10.0, 10.0, 5.0, 5.0),
            (20.0, 20.0, 10.0, 10.0),
            (30.0, 30.0, 15.0, 15.0),
        ),
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        drop_loss_iou: float | None = 0.5,
        smooth_l1_beta: float = 0.0,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.5,
        detections_per_image: int = 100,
    ) -> None:
        super().__init__()
        if len(iou_thresholds) != len(bbox_reg_weights) or not iou_thresholds:
            raise ValueError(
                f"need one IoU threshold per box-coder weight, got {len(iou_thresholds)} and "
                f"{len(bbox_reg_weights)}"
            )
        self.num_classes = num_classes
        self.pooler = ParallelMultiScaleRoIAlign(
            featmap_names=list(featmap_names),
            output_size=pooler_resolution,
            sampling_ratio=sampling_ratio,
        )
        self.stages = nn.ModuleList(
            BoxHeadStage(
                in_channels=in_channels,
                pooler_resolution=pooler_resolution,
                fc_dim=fc_dim,
                num_classes=num_classes,
            )
            for _ in iou_thresholds
        )
        self.box_coders = [BoxCoder(tuple(w)) for w in bbox_reg_weights]
        self.matchers = [Matcher(t, t, allow_low_quality_matches=False) for t in iou_thresholds]
        self.iou_thresholds = tuple(float(t) for t in iou_thresholds)
        self.sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.drop_loss_iou = drop_loss_iou
        self.smooth_l1_beta = smooth_l1_beta
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.detections_per_image = detections_per_image

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    # ---------------------------------------------------------------------------------------
    # Training

    @torch.no_grad()
    def _label(
        self, boxes: list[Tensor], gt_boxes: list[Tensor], gt_labels: list[Tensor], stage: int
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Class label (``T`` = background) and matched GT index of every box, per image."""
        labels, matched = [], []
        for b, gb, gl in zip(boxes, gt_boxes, gt_labels, strict=True):
            if gb.numel() == 0:
                matched.append(torch.zeros(b.shape[0], dtype=torch.int64, device=b.device))
                labels.append(
                    torch.full((b.shape[0],), self.num_classes, dtype=torch.int64, device=b.device)
                )
                continue
            idx = self.matchers[stage](box_iou(gb, b))
            fg = idx >= 0
            idx = idx.clamp(min=0)
            lab = gl[idx].to(torch.int64)
            lab = torch.where(fg, lab, torch.full_like(lab, self.num_classes))
            matched.append(idx)
            labels.append(lab)
        return labels, matched

    @torch.no_grad()
    def sample_proposals(
        self, proposals: list[Tensor], gt_boxes: list[Tensor], gt_labels: list[Tensor]
    ) -> SampledProposals:
        """Stage-0 proposals: add the GT boxes, match, sample ``batch_size_per_image``."""
        boxes = [
            torch.cat([p.detach(), g.to(p.dtype)]) for p, g in zip(proposals, gt_boxes, strict=True)
        ]
        labels, matched = self._label(boxes, gt_boxes, gt_labels, 0)
        binary = [(lab < self.num_classes).to(torch.int64) for lab in labels]
        pos, neg = self.sampler(binary)
        keep = [torch.where(p | n)[0] for p, n in zip(pos, neg, strict=True)]
        return SampledProposals(
            [b[k] for b, k in zip(boxes, keep, strict=True)],
            [lab[k] for lab, k in zip(labels, keep, strict=True)],
            [m[k] for m, k in zip(matched, keep, strict=True)],
            self.num_classes,
        )

    def forward_train(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]],
    ) -> tuple[dict[str, Tensor], SampledProposals]:
        """Training losses of every stage.

        Args:
            features: FPN maps ``float[B, C, h, w]`` by level name.
            proposals: per image ``float[R_i, 4]`` RPN boxes in transformed-image pixels.
            image_sizes: per image ``(h, w)`` of the transformed (unpadded) image.
            targets: per image ``boxes`` ``float[G_i, 4]`` and ``labels`` ``int64[G_i]`` in
                ``0..T-1`` (``G_i`` may be 0).

        Returns:
            ``({"loss_cls_stage{k}", "loss_box_stage{k}"}, stage-0 sampled proposals)``.
        """
        gt_boxes = [t["boxes"] for t in targets]
        gt_labels = [t["labels"] for t in targets]
        sampled = self.sample_proposals(proposals, gt_boxes, gt_labels)
        boxes, labels, matched = sampled.boxes, sampled.labels, sampled.matched_idxs
        losses: dict[str, Tensor] = {}
        boxes_next: list[Tensor] = []
        for k, stage in enumerate(self.stages):
            if k > 0:
                with torch.no_grad():
                    boxes = [
                        clip_boxes_to_image(b, size)
                        for b, size in zip(boxes_next, image_sizes, strict=True)
                    ]
                    boxes = [b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])] for b in boxes]
                    labels, matched = self._label(boxes, gt_boxes, gt_labels, k)
            counts = [b.shape[0] for b in boxes]
            flat = torch.cat(boxes)
            x = self.pooler(features, boxes, image_sizes)
            x = _ScaleGradient.apply(x, 1.0 / self.num_stages)
            logits, deltas = stage(x)
            coder = self.box_coders[k]
            regressed = coder.decode_single(deltas, flat)
            tau = self.drop_loss_iou
            weights = (
                None
                if tau is None
                else torch.cat(
                    [
                        drop_loss_weights(r, g, tau)
                        for r, g in zip(
                            torch.split(regressed.detach(), counts), gt_boxes, strict=True
                        )
                    ]
                )
            )
            cls_targets = torch.cat(labels)
            losses[f"loss_cls_stage{k}"] = weighted_cross_entropy(logits, cls_targets, weights)
            fg = torch.where(cls_targets < self.num_classes)[0]
            if fg.numel():
                matched_boxes = torch.cat(
                    [
                        g[m] if g.numel() else torch.zeros_like(b)
                        for g, m, b in zip(gt_boxes, matched, boxes, strict=True)
                    ]
                )
                reg_targets = coder.encode_single(matched_boxes[fg].to(flat.dtype), flat[fg])
                box_loss = F.smooth_l1_loss(
                    deltas[fg], reg_targets, beta=self.smooth_l1_beta, reduction="sum"
                ) / max(flat.shape[0], 1)
            else:
                box_loss = deltas.sum() * 0.0
            losses[f"loss_box_stage{k}"] = box_loss
            boxes_next = list(torch.split(regressed.detach(), counts))
        return losses, sampled

    # ---------------------------------------------------------------------------------------
    # Inference

    def run_stages(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
    ) -> list[tuple[Tensor, list[Tensor]]]:
        """Run every stage on every proposal (no filtering, as detectron2 at test time).

        Returns:
            Per stage ``(logits float[R, T + 1], regressed boxes per image float[R_i, 4])``;
            the boxes are clipped to the image and are the next stage's proposals.
        """
        boxes = proposals
        outputs: list[tuple[Tensor, list[Tensor]]] = []
        for k, stage in enumerate(self.stages):
            counts = [b.shape[0] for b in boxes]
            x = self.pooler(features, boxes, image_sizes)
            logits, deltas = stage(x)
            regressed = self.box_coders[k].decode_single(deltas, torch.cat(boxes))
            boxes = [
                clip_boxes_to_image(b, size)
                for b, size in zip(torch.split(regressed, counts), image_sizes, strict=True)
            ]
            outputs.append((logits, boxes))
        return outputs

    def stage_boxes(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
    ) -> list[list[Tensor]]:
        """Regressed boxes after each stage: ``[stage][image] -> float[R_i, 4]``."""
        return [boxes for _, boxes in self.run_stages(features, proposals, image_sizes)]

    def predict(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
    ) -> list[Detections]:
        """Final detections per image (stage-averaged scores, last-stage boxes, NMS, top-k)."""
        outputs = self.run_stages(features, proposals, image_sizes)
        probs = torch.stack([F.softmax(logits, dim=-1) for logits, _ in outputs]).mean(dim=0)
        counts = [b.shape[0] for b in proposals]
        results = []
        for p, boxes, size in zip(
            torch.split(probs, counts), outputs[-1][1], image_sizes, strict=True
        ):
            results.append(self._postprocess(p, boxes, size))
        return results

    def _postprocess(self, probs: Tensor, boxes: Tensor, image_size: tuple[int, int]) -> Detections:
        num_classes = self.num_classes
        scores = probs[:, :num_classes]
        labels = torch.arange(num_classes, device=probs.device).view(1, -1).expand_as(scores)
        boxes = clip_boxes_to_image(boxes, image_size)
        boxes = boxes[:, None, :].repeat(1, num_classes, 1).reshape(-1, 4)
        scores = scores.reshape(-1)
        labels = labels.reshape(-1)
        keep = torch.where(passes_score_threshold(scores, self.score_threshold))[0]
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = batched_nms(boxes, scores, labels, self.nms_threshold)
        keep = keep[: self.detections_per_image]
        return Detections(boxes[keep], scores[keep], labels[keep])
