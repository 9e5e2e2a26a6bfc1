"""Pure association maths of the online tracker (method §3.3, MaskTrack R-CNN scoring + Hungarian).

Scores are log-probability-like: higher is better. For detection ``i`` and live track ``j``::

    s_ij = log_softmax_j([0, e_i . m_1, ..., e_i . m_M])[1 + j]        (embedding, "new" logit 0)
           + c_score * log(score_i) + c_box * IoU(box_i, box_j) + c_class * [class_i == class_j]
           + c_mask * maskIoU(mask_i, last mask of j within the window)

and the "new object" score of detection ``i`` is ``log_softmax(...)[0] + c_score * log(score_i)
+ c_class`` (IoU terms 0, class term 1, as in MaskTrack). :func:`assign` solves the assignment with
the Hungarian algorithm over tracks plus one private "new object" column per detection, so a
detection joins a track only when that beats starting a new one, and no track takes two detections.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

_NEG = -1e9


def box_iou(a: npt.NDArray[np.floating], b: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """Pairwise IoU of ``float[N, 4]`` and ``float[M, 4]`` xyxy boxes -> ``float64[N, M]``."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def label_map_iou(
    current: npt.NDArray[np.integer], previous: npt.NDArray[np.integer], n: int, m: int
) -> npt.NDArray[np.float64]:
    """IoU of every pair of masks stored as two label maps of the same shape.

    Args:
        current: ``int[h, w]`` labels ``0..n`` (0 = no mask; mask ``i`` is label ``i + 1``).
        previous: ``int[h, w]`` labels ``0..m``.
        n, m: the number of masks in each map.

    Returns:
        ``float64[n, m]``, from one joint histogram of the two maps (masks in one map do not
        overlap, so counting each pixel once is exact).
    """
    if current.shape != previous.shape:
        raise ValueError(f"label maps differ in shape: {current.shape} vs {previous.shape}")
    joint = np.bincount(
        (current.astype(np.int64) * (m + 1) + previous).ravel(), minlength=(n + 1) * (m + 1)
    ).reshape(n + 1, m + 1)
    inter = joint[1:, 1:].astype(np.float64)
    union = joint[1:, :].sum(axis=1)[:, None] + joint[:, 1:].sum(axis=0)[None, :] - inter
    iou: npt.NDArray[np.float64] = np.divide(
        inter, union, out=np.zeros_like(inter), where=union > 0
    )
    return iou


def association_scores(
    det_embeddings: npt.NDArray[np.floating],
    det_scores: npt.NDArray[np.floating],
    det_classes: npt.NDArray[np.integer],
    det_boxes: npt.NDArray[np.floating],
    track_embeddings: npt.NDArray[np.floating],
    track_classes: npt.NDArray[np.integer],
    track_boxes: npt.NDArray[np.floating],
    mask_ious: npt.NDArray[np.floating],
    *,
    coeffs: tuple[float, float, float] = (1.0, 2.0, 10.0),
    mask_coeff: float = 2.0,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Detection-to-track scores and "new object" scores (see the module docstring).

    Args:
        det_embeddings: ``float[N, D]``; det_scores ``float[N]``; det_classes ``int[N]``;
            det_boxes ``float[N, 4]``.
        track_embeddings: ``float[M, D]``; track_classes ``int[M]``; track_boxes ``float[M, 4]``.
        mask_ious: ``float[N, M]`` mask IoU with each track's recent mask (0 if none).
        coeffs: MaskTrack weights ``(c_score, c_box, c_class)``.
        mask_coeff: weight of the mask IoU term.

    Returns:
        ``(pair_scores float64[N, M], new_scores float64[N])``.
    """
    n, m = len(det_scores), len(track_classes)
    c_score, c_box, c_class = coeffs
    log_score = c_score * np.log(np.clip(np.asarray(det_scores, np.float64), 1e-6, 1.0))
    if m == 0:
        return np.zeros((n, 0)), log_score + c_class
    # einsum, not BLAS: alone, a BLAS matmul is 8x faster (0.04 vs 0.32 ms), but OpenBLAS's
    # worker threads then spin on the second core and the node's overhead (bench_node.py) rose
    # from about 18 to about 34 ms
    logits = np.einsum(
        "nd,md->nm",
        np.asarray(det_embeddings, np.float64),
        np.asarray(track_embeddings, np.float64),
    )
    logits = np.concatenate([np.zeros((n, 1)), logits], axis=1)
    logits -= logits.max(axis=1, keepdims=True)
    log_prob = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    same_class = (np.asarray(det_classes)[:, None] == np.asarray(track_classes)[None, :]).astype(
        float
    )
    pair = (
        log_prob[:, 1:]
        + log_score[:, None]
        + c_box * box_iou(det_boxes, track_boxes)
        + c_class * same_class
        + mask_coeff * np.asarray(mask_ious, np.float64)
    )
    new = log_prob[:, 0] + log_score + c_class
    return pair, new


def assign(
    pair_scores: npt.NDArray[np.floating],
    new_scores: npt.NDArray[np.floating],
    allowed: npt.NDArray[np.bool_] | None = None,
) -> npt.NDArray[np.int64]:
    """Best one-to-one assignment of detections to tracks or to "new object".

    Args:
        pair_scores: ``float[N, M]`` detection-to-track scores.
        new_scores: ``float[N]`` score of starting a new track for each detection.
        allowed: optional ``bool[N, M]`` gate; disallowed pairs are never matched.

    Returns:
        ``int64[N]``: the matched track column for each detection, or -1 for a new track (also
        when a track only ties with "new object").
    """
    n, m = pair_scores.shape
    if n == 0:
        return np.zeros(0, np.int64)
    scores = np.full((n, m + n), _NEG)
    tie_break = 1e-6  # a track must beat "new object" strictly: ties start a new track
    pair = pair_scores - tie_break
    scores[:, :m] = pair if allowed is None else np.where(allowed, pair, _NEG)
    scores[np.arange(n), m + np.arange(n)] = new_scores
    rows, cols = linear_sum_assignment(scores, maximize=True)
    out = np.full(n, -1, np.int64)
    for r, c in zip(rows, cols, strict=True):
        if c < m and scores[r, c] > _NEG / 2:
            out[r] = c
    return out


def assign_greedy(
    pair_scores: npt.NDArray[np.floating],
    new_scores: npt.NDArray[np.floating],
    det_scores: npt.NDArray[np.floating],
) -> npt.NDArray[np.int64]:
    """MaskTrack R-CNN's online matching: detections in descending detection score each take
    the best track still free, if it beats their "new object" score.

    Args:
        pair_scores: ``float[N, M]`` detection-to-track scores.
        new_scores: ``float[N]`` score of starting a new track.
        det_scores: ``float[N]`` detection scores (the order of the greedy pass).

    Returns:
        ``int64[N]``: matched track column, or -1 for a new track (also on a tie).
    """
    n, m = pair_scores.shape
    out = np.full(n, -1, np.int64)
    taken = np.zeros(m, bool)
    for i in np.argsort(-np.asarray(det_scores), kind="stable").tolist():
        if m == 0:
            break
        row = np.where(taken, -np.inf, np.asarray(pair_scores[i], np.float64))
        j = int(np.argmax(row))
        if np.isfinite(row[j]) and row[j] > new_scores[i]:
            out[i] = j
            taken[j] = True
    return out
