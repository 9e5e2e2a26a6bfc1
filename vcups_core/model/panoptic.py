"""Panoptic merge of instances and semantics (detectron2 Panoptic-FPN, method §3.2), in numpy.

Shared by every backend (torch, onnxruntime, TensorRT), so they produce the same panoptic maps
from the same network outputs.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from vcups_core.types import IGNORE_LABEL


def combine_semantic_and_instances(
    semantic: npt.NDArray[np.floating],
    masks: npt.NDArray[np.bool_],
    scores: npt.NDArray[np.floating],
    classes: npt.NDArray[np.integer],
    *,
    num_things: int,
    score_threshold: float = 0.5,
    overlap_threshold: float = 0.5,
    stuff_area_limit: int = 4096,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32]]:
    """Merge instance masks and the semantic prediction into one panoptic labelling.

    1. Instances in order of descending score; stop at the first with
       ``score < score_threshold``. Skip empty masks. Skip an instance if more than
       ``overlap_threshold`` of its mask is already taken; otherwise place its free pixels.
    2. Stuff: for every semantic class ``k >= 1`` of the argmax map, its pixels not taken by an
       instance become stuff category ``num_things + k - 1`` if there are at least
       ``stuff_area_limit`` of them (else they stay void). Class 0 (the merged "thing" class)
       is never painted as stuff.
    3. Everything else is void.

    Args:
        semantic: ``float[S + 1, H, W]`` semantic probabilities or logits (only the argmax
            over the first axis is used).
        masks: ``bool[N, H, W]`` instance masks.
        scores: ``float[N]`` detection scores.
        classes: ``int[N]`` thing category ids ``0..T-1``.
        num_things: ``T``.
        score_threshold, overlap_threshold, stuff_area_limit: see above.

    Returns:
        ``(panoptic_semantic, panoptic_instance)``: ``uint8[H, W]`` category id per pixel in the
        :class:`~vcups_core.types.CategoryTable` id space (things ``0..T-1``, stuff ``T..``,
        :data:`~vcups_core.types.IGNORE_LABEL` = void), and ``int32[H, W]`` 1-based index of the
        detection owning the pixel (``0`` = stuff or void).

    Raises:
        ValueError: on inconsistent shapes or a category id that does not fit ``uint8``.
    """
    sem = np.asarray(semantic)
    if sem.ndim != 3:
        raise ValueError(f"semantic must be [S + 1, H, W], got shape {sem.shape}")
    h, w = sem.shape[1:]
    masks = np.asarray(masks, dtype=bool).reshape(-1, h, w)
    scores = np.asarray(scores).reshape(-1)
    classes = np.asarray(classes).reshape(-1)
    if not masks.shape[0] == scores.shape[0] == classes.shape[0]:
        raise ValueError(
            f"masks ({masks.shape[0]}), scores ({scores.shape[0]}) and classes "
            f"({classes.shape[0]}) must have the same length"
        )
    if num_things + sem.shape[0] - 1 > IGNORE_LABEL:
        raise ValueError(f"{num_things} things + {sem.shape[0] - 1} stuff do not fit uint8")
    panoptic_semantic = np.full((h, w), IGNORE_LABEL, dtype=np.uint8)
    panoptic_instance = np.zeros((h, w), dtype=np.int32)
    taken = np.zeros((h, w), dtype=bool)
    for idx in np.argsort(-scores, kind="stable"):
        if scores[idx] < score_threshold:
            break
        mask = masks[idx]
        area = int(mask.sum())
        if area == 0:
            continue
        overlap = int((mask & taken).sum())
        if overlap / area > overlap_threshold:
            continue
        free = mask & ~taken
        panoptic_semantic[free] = int(classes[idx])
        panoptic_instance[free] = int(idx) + 1
        taken |= free
    labels = sem.argmax(axis=0)
    for k in np.unique(labels[~taken]):
        if k == 0:
            continue
        region = (labels == k) & ~taken
        if int(region.sum()) < stuff_area_limit:
            continue
        panoptic_semantic[region] = num_things + int(k) - 1
    return panoptic_semantic, panoptic_instance
