"""MaskTrack R-CNN tracking head: RoI embeddings and their association logits (method §3.3).

RoIAlign 7x7 features (256 channels) -> flatten -> FC 1024 -> ReLU -> FC 1024. The association
score of a key-frame instance with a reference instance is the inner product of their
embeddings; a constant ``0`` logit in column 0 stands for "new object".

Training pairs each key frame with a reference frame of the same clip: positive key-frame
proposals (IoU > ``positive_iou`` with a pseudo-GT instance) are classified over
``[new, ref_1 .. ref_M]`` where the reference embeddings come from the reference frame's GT
boxes. Proposals whose instance has no counterpart in the reference frame are dropped from the
loss (Video DropLoss, method §4.4 GUESS) unless ``drop_missing_counterpart=False``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
from torch import Tensor, nn
from torchvision.ops import box_iou

from vcups_core.model.backbone import ROI_FEATURE_NAMES
from vcups_core.model.losses import association_loss, association_targets
from vcups_core.model.roi_pool import ParallelMultiScaleRoIAlign


def association_logits(query: Tensor, reference: Tensor) -> Tensor:
    """Association logits of ``N`` query embeddings against ``M`` reference embeddings.

    Args:
        query: ``float[N, D]``.
        reference: ``float[M, D]``.

    Returns:
        ``float[N, M + 1]``: column 0 is the constant "new object" logit ``0``, column
        ``1 + j`` is ``query_i . reference_j``.
    """
    dots = query @ reference.t()
    return torch.cat([dots.new_zeros((query.shape[0], 1)), dots], dim=1)


class TrackHead(nn.Module):
    """Embedding head for MaskTrack association.

    Args:
        in_channels: FPN channels.
        embed_dim: width of both FC layers and of the embedding (1024).
        pooler_resolution: RoIAlign output side (7).
        featmap_names: FPN levels pooled from.
        sampling_ratio: RoIAlign samples per bin.
        loss_weight: multiplies the association loss (1.0).
        positive_iou: a key-frame proposal is positive if its IoU with a pseudo-GT box exceeds
            this (0.5, the DropLoss rule).
        drop_missing_counterpart: leave out positives whose instance is absent from the
            reference frame (True) instead of targeting "new object" (MaskTrack's original).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        embed_dim: int = 1024,
        pooler_resolution: int = 7,
        featmap_names: Sequence[str] = ROI_FEATURE_NAMES,
        sampling_ratio: int = 2,
        loss_weight: float = 1.0,
        positive_iou: float = 0.5,
        drop_missing_counterpart: bool = True,
    ) -> None:
        super().__init__()
        self.pooler = ParallelMultiScaleRoIAlign(
            featmap_names=list(featmap_names),
            output_size=pooler_resolution,
            sampling_ratio=sampling_ratio,
        )
        self.fc1 = nn.Linear(in_channels * pooler_resolution**2, embed_dim)
        self.fc2 = nn.Linear(embed_dim, embed_dim)
        for fc in (self.fc1, self.fc2):
            nn.init.normal_(fc.weight, std=0.01)
            nn.init.zeros_(fc.bias)
        self.loss_weight = loss_weight
        self.positive_iou = positive_iou
        self.drop_missing_counterpart = drop_missing_counterpart

    def forward(
        self, features: dict[str, Tensor], boxes: list[Tensor], image_sizes: list[tuple[int, int]]
    ) -> Tensor:
        """Embeddings ``float[sum N_i, D]`` of the boxes (``float[N_i, 4]`` per image)."""
        x = self.pooler(features, boxes, image_sizes).flatten(1)
        out: Tensor = self.fc2(F.relu(self.fc1(x)))
        return out

    def loss(
        self,
        features: dict[str, Tensor],
        image_sizes: list[tuple[int, int]],
        proposals: list[Tensor],
        gt_boxes: list[Tensor],
        gt_track_ids: list[Tensor],
        pairs: list[int],
    ) -> Tensor:
        """Association loss over all (key, reference) pairs of the batch.

        Args:
            features: FPN maps of the whole batch (key and reference frames).
            image_sizes: transformed image sizes.
            proposals: per image ``float[R_i, 4]`` sampled proposals (stage 0 of the cascade).
            gt_boxes: per image ``float[G_i, 4]`` pseudo-GT boxes (transformed pixels).
            gt_track_ids: per image ``int64[G_i]`` track ids.
            pairs: per image the batch index of its reference frame, ``-1`` for none.

        Returns:
            ``loss_weight * mean CE``; ``0`` (attached to the head) when no pair has a valid
            target.
        """
        anchor = torch.stack([p.sum() for p in self.parameters()]).sum() * 0.0
        keys = [
            i for i, j in enumerate(pairs) if j >= 0 and gt_boxes[i].numel() and gt_boxes[j].numel()
        ]
        if not keys:
            return anchor
        query_boxes, query_ids = [], []
        for i in keys:
            iou = box_iou(proposals[i].detach(), gt_boxes[i].to(proposals[i].dtype))
            best, idx = iou.max(dim=1)
            positive = best > self.positive_iou
            query_boxes.append(proposals[i].detach()[positive])
            query_ids.append(gt_track_ids[i][idx[positive]])
        refs = [pairs[i] for i in keys]
        query_emb = self(features, _per_image(query_boxes, keys, len(pairs)), image_sizes)
        ref_emb = self(
            features, _per_image([gt_boxes[j] for j in refs], refs, len(pairs)), image_sizes
        )
        # The pooler returns RoIs grouped by image index; undo that grouping per pair.
        q_chunks = _chunks(query_emb, [b.shape[0] for b in query_boxes], keys)
        r_chunks = _chunks(ref_emb, [gt_boxes[j].shape[0] for j in refs], refs)
        logits, targets = [], []
        for n, j in enumerate(refs):
            logits.append(association_logits(q_chunks[n], r_chunks[n]))
            targets.append(
                association_targets(
                    query_ids[n], gt_track_ids[j], drop_missing=self.drop_missing_counterpart
                )
            )
        return anchor + association_loss(logits, targets) * self.loss_weight


def _per_image(boxes: list[Tensor], owners: list[int], num_images: int) -> list[Tensor]:
    """Put box sets owned by batch images into a per-image list (images may repeat)."""
    out: list[list[Tensor]] = [[] for _ in range(num_images)]
    for b, i in zip(boxes, owners, strict=True):
        out[i].append(b)
    empty = boxes[0].new_zeros((0, 4))
    return [torch.cat(parts) if parts else empty for parts in out]


def _chunks(embeddings: Tensor, sizes: list[int], owners: list[int]) -> list[Tensor]:
    """Inverse of :func:`_per_image` for the pooled rows (grouped by owner image index)."""
    order = sorted(range(len(owners)), key=lambda n: (owners[n], n))
    pieces = torch.split(embeddings, [sizes[n] for n in order])
    out: list[Tensor] = [embeddings[:0]] * len(owners)
    for n, piece in zip(order, pieces, strict=True):
        out[n] = piece
    return out
