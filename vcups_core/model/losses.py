"""Loss functions of the model as free functions (tested without building a model).

* :func:`drop_loss_weights` and :func:`weighted_cross_entropy`: Video DropLoss of the cascade
  classification loss (``docs/method.md`` §4.4).
* :func:`association_targets` and :func:`association_loss`: the MaskTrack association loss with
  the Video DropLoss rule for instances missing from the reference frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
from torch import Tensor
from torchvision.ops import box_iou

IGNORE_ASSOCIATION: int = -1
"""Association target of a proposal left out of the loss."""


def drop_loss_weights(regressed_boxes: Tensor, gt_boxes: Tensor, tau: float) -> Tensor:
    """Per-proposal DropLoss weights of one image.

    ``w_i = 0`` when the best IoU of proposal ``i``'s *regressed* box with the image's pseudo-GT
    boxes is ``<= tau`` (nothing known there: do not push it to background), else ``1``. An image
    without pseudo-GT keeps every proposal (plain cross-entropy).

    Args:
        regressed_boxes: ``float[R, 4]`` xyxy, the stage's deltas applied to its proposals.
        gt_boxes: ``float[G, 4]`` xyxy pseudo-GT boxes of the same image (``G`` may be 0).
        tau: the IoU threshold (VideoCUPS: 0.5).

    Returns:
        ``float32[R]`` of 0/1 weights (no gradient).
    """
    n = regressed_boxes.shape[0]
    if gt_boxes.numel() == 0 or n == 0:
        return torch.ones(n, dtype=torch.float32, device=regressed_boxes.device)
    iou: Tensor = box_iou(regressed_boxes.detach().float(), gt_boxes.detach().float())
    return (iou.max(dim=1).values > tau).to(torch.float32)


def weighted_cross_entropy(
    logits: Tensor, targets: Tensor, weights: Tensor | None = None
) -> Tensor:
    """Cross-entropy weighted per sample and averaged over **all** samples, dropped ones included.

    ``L = (1 / N) * sum_i w_i * CE(logits_i, target_i)`` (CutLER/CUPS DropLoss normalisation).

    Args:
        logits: ``float[N, C]``.
        targets: ``int64[N]`` in ``0..C-1``.
        weights: ``float[N]`` or ``None`` (all ones).

    Returns:
        Scalar loss; ``0`` (still attached to ``logits``) when ``N == 0``.
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    ce = F.cross_entropy(logits.float(), targets, reduction="none")
    if weights is not None:
        ce = ce * weights.to(ce.dtype)
    return ce.sum() / logits.shape[0]


def association_targets(
    query_track_ids: Tensor, reference_track_ids: Tensor, *, drop_missing: bool = True
) -> Tensor:
    """Targets over ``[new, ref_1 .. ref_M]`` for key-frame proposals (MaskTrack R-CNN).

    A proposal whose instance (track id) appears in the reference frame gets ``1 + j`` where ``j``
    is the first reference instance with that track id. One that does not appear gets the
    "new object" target ``0`` in MaskTrack; with ``drop_missing`` (Video DropLoss, method §4.4
    GUESS, the default) it gets :data:`IGNORE_ASSOCIATION` instead and is left out of the loss,
    because a missing pseudo-label is no evidence that the object is absent. Track ids ``<= 0``
    (no track) never match.

    Args:
        query_track_ids: ``int64[N]`` track id of the pseudo-GT instance each proposal matched.
        reference_track_ids: ``int64[M]`` track ids of the reference frame's pseudo-GT instances.
        drop_missing: ignore (instead of "new") proposals without a counterpart.

    Returns:
        ``int64[N]`` targets in ``{-1, 0, 1..M}``.
    """
    q = query_track_ids.reshape(-1, 1)
    r = reference_track_ids.reshape(1, -1)
    same = (q == r) & (q > 0)
    found = same.any(dim=1)
    first = same.to(torch.int64).argmax(dim=1) if r.shape[1] else torch.zeros_like(q[:, 0])
    missing = IGNORE_ASSOCIATION if drop_missing else 0
    return torch.where(found, first + 1, torch.full_like(first, missing)).to(torch.int64)


def association_loss(logits: Sequence[Tensor], targets: Sequence[Tensor]) -> Tensor:
    """Mean cross-entropy of the association logits over all valid targets of all frame pairs.

    Args:
        logits: per pair, ``float[N_p, M_p + 1]`` from
            :func:`vcups_core.model.track_head.association_logits` (column 0 = new object).
        targets: per pair, ``int64[N_p]`` from :func:`association_targets`
            (:data:`IGNORE_ASSOCIATION` = left out).

    Returns:
        Scalar: ``sum CE / number of valid targets``; ``0`` (attached to the logits) when there
        is none.
    """
    total: Tensor | None = None
    count = 0
    for lg, tg in zip(logits, targets, strict=True):
        zero = lg.sum() * 0.0
        total = zero if total is None else total + zero
        valid = tg != IGNORE_ASSOCIATION
        n = int(valid.sum())
        if n == 0:
            continue
        total = total + F.cross_entropy(lg[valid].float(), tg[valid], reduction="sum")
        count += n
    if total is None:
        return torch.zeros(())
    return total / max(count, 1)
