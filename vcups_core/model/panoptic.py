"""Panoptic merge of instances and semantics (detectron2 Panoptic-FPN, method §3.2), in numpy.

Shared by every backend (torch, onnxruntime, TensorRT), so they produce the same panoptic maps
from the same network outputs. Instance placement works inside each detection's mask region
and the semantic prediction stays on its grid (the head predicts every 4 pixels), so the cost is
a few passes over the instances' regions and the grid, not passes over the whole frame per
detection. The predictors run only :func:`place_instances`; :func:`semantic_map` gives the
per-frame category map on demand.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from vcups_core.label_grid import cell_counts, channel_argmax, upsample_labels, visible_areas
from vcups_core.types import IGNORE_LABEL, MaskCrops, passes_score_threshold


def place_instances(
    masks: MaskCrops,
    scores: npt.NDArray[np.floating],
    *,
    score_threshold: float = 0.5,
    overlap_threshold: float = 0.5,
) -> npt.NDArray[np.int32]:
    """Step 1 of the merge: which detection owns each pixel.

    Instances in order of descending score, those with ``score >= score_threshold`` only
    (:func:`~vcups_core.types.passes_score_threshold`).
    Skip empty masks. Skip an instance if more than ``overlap_threshold`` of its mask is already
    taken; otherwise place its free pixels. Works inside each mask's region only.

    Args:
        masks: the ``N`` instance masks of the ``H x W`` image, as crops of their regions.
        scores: ``float[N]`` detection scores.

    Returns:
        ``int32[H, W]``: 1-based index of the detection owning the pixel (``0`` = none);
        detection ``k``'s pixels lie in ``masks.regions[k]``.

    Raises:
        ValueError: if ``scores`` does not have one score per mask.
    """
    n, h, w = masks.shape
    scores = np.asarray(scores).reshape(-1)
    if scores.shape[0] != n:
        raise ValueError(f"masks ({n}) and scores ({scores.shape[0]}) must have the same length")
    boxes = masks.regions.tolist()
    panoptic_instance = np.zeros((h, w), dtype=np.int32)
    taken = np.zeros((h, w), dtype=bool)
    for idx in np.argsort(-scores, kind="stable").tolist():
        if not passes_score_threshold(float(scores[idx]), score_threshold):
            break
        x0, y0, x1, y1 = boxes[idx]
        mask = masks.crops[idx]
        area = int(np.count_nonzero(mask))
        if area == 0:
            continue
        already = taken[y0:y1, x0:x1]
        free = np.greater(mask, already)  # mask & ~already, in one pass
        if (area - int(np.count_nonzero(free))) / area > overlap_threshold:
            continue
        np.copyto(panoptic_instance[y0:y1, x0:x1], idx + 1, where=free)
        already |= free
    return panoptic_instance


def semantic_map(
    semantic: npt.NDArray[np.floating],
    panoptic_instance: npt.NDArray[np.integer],
    classes: npt.NDArray[np.integer],
    *,
    num_things: int,
    semantic_stride: int = 1,
    stuff_area_limit: int = 4096,
) -> npt.NDArray[np.uint8]:
    """Steps 2 and 3 of the merge: a category id for every pixel.

    Pixels of a placed instance get its class. For every semantic class ``k >= 1`` of the argmax
    map (nearest-upsampled from its grid), its pixels not taken by an instance become stuff
    category ``num_things + k - 1`` if there are at least ``stuff_area_limit`` of them (else they
    stay void). Class 0 (the merged "thing" class) is never painted as stuff. Everything else is
    void. The streaming path does not need this map (it composes its own from smoothed
    semantics), so the predictors do not compute it; call it where a per-frame map is wanted.

    Args:
        semantic: ``float[S + 1, ceil(H / s), ceil(W / s)]`` semantic probabilities or logits
            sampled every ``s = semantic_stride`` pixels (only the argmax over the first axis is
            used: :func:`~vcups_core.label_grid.channel_argmax`, whose near ties go to the lower
            channel, or numpy's where every channel is negative).
        panoptic_instance: ``int[H, W]`` from :func:`place_instances`.
        classes: ``int[N]`` thing category ids ``0..T-1`` of the detections.
        num_things: ``T``.
        semantic_stride: ``s`` above (1 = input resolution).
        stuff_area_limit: see above.

    Returns:
        ``uint8[H, W]`` category id per pixel in the :class:`~vcups_core.types.CategoryTable` id
        space (things ``0..T-1``, stuff ``T..``, :data:`~vcups_core.types.IGNORE_LABEL` = void).

    Raises:
        ValueError: on inconsistent shapes or a category id that does not fit ``uint8``.
    """
    sem = np.asarray(semantic)
    if sem.ndim != 3:
        raise ValueError(f"semantic must be [S + 1, h, w], got shape {sem.shape}")
    h, w = panoptic_instance.shape
    s = semantic_stride
    grid_shape = (-(-h // s), -(-w // s)) if s >= 1 else None
    if grid_shape is None or sem.shape[1:] != grid_shape:
        raise ValueError(
            f"semantic: expected [S + 1, {grid_shape}] for a {h}x{w} image and semantic_stride "
            f"{s}, got shape {sem.shape}"
        )
    if num_things + sem.shape[0] - 1 > IGNORE_LABEL:
        raise ValueError(f"{num_things} things + {sem.shape[0] - 1} stuff do not fit uint8")
    channels = sem.shape[0]
    # one integer max over the float bit patterns; it orders negative values backwards, which
    # only matters where every channel is negative (logits): there numpy's argmax decides
    labels, best = channel_argmax(np.asarray(sem, np.float32))
    if best.size and float(best.min()) < 0:
        labels = sem.argmax(axis=0)
    taken = panoptic_instance > 0
    areas = visible_areas(labels, s, cell_counts(taken, s), h, w, channels)
    stuff = np.arange(channels) >= 1
    lut = np.where(
        stuff & (areas >= stuff_area_limit), num_things + np.arange(channels) - 1, IGNORE_LABEL
    ).astype(np.uint8)
    out = np.ascontiguousarray(upsample_labels(lut[labels], s, h, w))
    thing_lut = np.concatenate([[IGNORE_LABEL], np.asarray(classes).reshape(-1)]).astype(np.uint8)
    np.copyto(out, thing_lut[panoptic_instance], where=taken)
    return out


def combine_semantic_and_instances(
    semantic: npt.NDArray[np.floating],
    masks: MaskCrops,
    scores: npt.NDArray[np.floating],
    classes: npt.NDArray[np.integer],
    *,
    num_things: int,
    semantic_stride: int = 1,
    score_threshold: float = 0.5,
    overlap_threshold: float = 0.5,
    stuff_area_limit: int = 4096,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32]]:
    """The whole merge: :func:`place_instances`, then :func:`semantic_map`.

    Returns:
        ``(panoptic_semantic uint8[H, W], panoptic_instance int32[H, W])``.

    Raises:
        ValueError: on inconsistent shapes or a category id that does not fit ``uint8``.
    """
    classes = np.asarray(classes).reshape(-1)
    if classes.shape[0] != len(masks):
        raise ValueError(
            f"masks ({len(masks)}) and classes ({classes.shape[0]}) must have the same length"
        )
    instance = place_instances(
        masks, scores, score_threshold=score_threshold, overlap_threshold=overlap_threshold
    )
    sem = semantic_map(
        semantic,
        instance,
        classes,
        num_things=num_things,
        semantic_stride=semantic_stride,
        stuff_area_limit=stuff_area_limit,
    )
    return sem, instance
