"""Video DropLoss and the association loss on hand-made inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from vcups_core.model.losses import (
    IGNORE_ASSOCIATION,
    association_loss,
    association_targets,
    drop_loss_weights,
    weighted_cross_entropy,
)
from vcups_core.model.track_head import association_logits


def test_drop_loss_weights_keep_only_boxes_overlapping_pseudo_labels() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    regressed = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # IoU 1 with gt 0            -> kept
            [0.0, 0.0, 10.0, 5.0],  # IoU 0.5 with gt 0 (not >)  -> dropped
            [0.0, 0.0, 10.0, 6.0],  # IoU 0.6                    -> kept
            [21.0, 21.0, 30.0, 30.0],  # IoU 0.81 with gt 1      -> kept
            [40.0, 40.0, 50.0, 50.0],  # no overlap              -> dropped
        ]
    )
    weights = drop_loss_weights(regressed, gt, tau=0.5)
    assert weights.tolist() == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert weights.dtype == torch.float32
    # CutLER's tau 0.01 keeps anything that touches a pseudo-label.
    assert drop_loss_weights(regressed, gt, tau=0.01).tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]
    # An image without pseudo-labels keeps everything (plain cross-entropy).
    assert drop_loss_weights(regressed, torch.zeros((0, 4)), tau=0.5).tolist() == [1.0] * 5


def test_weighted_cross_entropy_averages_over_all_proposals() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.0, 0.0]])
    targets = torch.tensor([0, 0, 1, 1])
    ce = F.cross_entropy(logits, targets, reduction="none")
    weights = torch.tensor([1.0, 0.0, 1.0, 0.0])
    expected = (ce[0] + ce[2]) / 4  # dropped proposals still count in the denominator
    torch.testing.assert_close(weighted_cross_entropy(logits, targets, weights), expected)
    torch.testing.assert_close(weighted_cross_entropy(logits, targets), ce.mean())
    empty = torch.zeros((0, 2), requires_grad=True)
    loss = weighted_cross_entropy(empty, torch.zeros(0, dtype=torch.int64))
    assert loss == 0 and loss.requires_grad


def test_association_logits_put_the_new_object_column_first() -> None:
    query = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    reference = torch.tensor([[1.0, 1.0], [3.0, 0.0], [0.0, -1.0]])
    logits = association_logits(query, reference)
    assert logits.tolist() == [[0.0, 1.0, 3.0, 0.0], [0.0, 2.0, 0.0, -2.0]]
    assert association_logits(query, reference[:0]).tolist() == [[0.0], [0.0]]


def test_association_targets_and_the_dropped_missing_counterpart() -> None:
    query_ids = torch.tensor([3, 5, 7, 3, 0])
    reference_ids = torch.tensor([5, 3, 9])
    # 3 -> reference index 1 -> target 2; 5 -> target 1; 7 is absent; 0 = no track.
    dropped = association_targets(query_ids, reference_ids)
    assert dropped.tolist() == [2, 1, IGNORE_ASSOCIATION, 2, IGNORE_ASSOCIATION]
    masktrack = association_targets(query_ids, reference_ids, drop_missing=False)
    assert masktrack.tolist() == [2, 1, 0, 2, 0]  # the "new object" slot
    assert association_targets(query_ids, torch.zeros(0, dtype=torch.int64)).tolist() == [-1] * 5


def test_association_loss_averages_valid_targets_over_pairs() -> None:
    a = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 1.0]], requires_grad=True)
    b = torch.tensor([[0.0, math.log(3.0)]], requires_grad=True)
    ta = torch.tensor([1, IGNORE_ASSOCIATION])
    tb = torch.tensor([1])
    loss = association_loss([a, b], [ta, tb])
    expected = (F.cross_entropy(a[:1], ta[:1], reduction="sum") + math.log(4.0 / 3.0)) / 2
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert a.grad is not None and a.grad[1].abs().sum() == 0  # the dropped row gets no gradient
    # Nothing valid: zero but still part of the graph.
    nothing = association_loss([a], [torch.tensor([-1, -1])])
    assert nothing == 0 and nothing.requires_grad


@pytest.mark.parametrize("drop", [True, False])
def test_track_head_loss_uses_reference_gt_boxes(drop: bool) -> None:
    from vcups_core.model.track_head import TrackHead

    torch.manual_seed(0)
    head = TrackHead(in_channels=4, embed_dim=8, featmap_names=["0"], drop_missing_counterpart=drop)
    features = {"0": torch.rand(2, 4, 32, 32)}
    sizes = [(32, 32), (32, 32)]
    gt = [
        torch.tensor([[2.0, 2.0, 12.0, 12.0], [16.0, 16.0, 30.0, 30.0]]),
        torch.tensor([[3.0, 3.0, 13.0, 13.0]]),
    ]
    ids = [torch.tensor([4, 6]), torch.tensor([4])]
    # Image 0's proposals: a near copy of each GT box (positives) and one far box (negative).
    proposals = [
        torch.tensor([[2.0, 2.0, 12.0, 13.0], [16.0, 16.0, 30.0, 29.0], [0.0, 20.0, 6.0, 31.0]]),
        gt[1],
    ]
    loss = head.loss(features, sizes, proposals, gt, ids, pairs=[1, -1])
    with torch.no_grad():
        q = head(features, [proposals[0][:2], proposals[1][:0]], sizes)
        r = head(features, [gt[0][:0], gt[1]], sizes)
    logits = association_logits(q, r)
    if drop:  # instance 6 is absent from the reference frame: left out
        expected = F.cross_entropy(logits[:1], torch.tensor([1]))
    else:  # MaskTrack: instance 6 targets "new object"
        expected = F.cross_entropy(logits, torch.tensor([1, 0]))
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
