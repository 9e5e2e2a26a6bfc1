"""Panoptic merge of instances and semantics (detectron2 Panoptic-FPN, method §3.2), in numpy.

Shared by every backend (torch, onnxruntime, TensorRT), so they produce the same panoptic maps
from the same network outputs. The semantic prediction stays on its grid (the head predicts
every 4 pixels) and instance work stays inside each detection's region, so the cost is a few
passes over the grid, the instances' regions and one upsampling, not passes over the whole
frame per detection.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from vcups_core.label_grid import cell_counts, channel_argmax, upsample_labels, visible_areas
from vcups_core.types import IGNORE_LABEL, MaskCrops


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
    """Merge instance masks and the semantic prediction into one panoptic labelling.

    1. Instances in order of descending score; stop at the first with
       ``score < score_threshold``. Skip empty masks. Skip an instance if more than
       ``overlap_threshold`` of its mask is already taken; otherwise place its free pixels.
    2. Stuff: for every semantic class ``k >= 1`` of the argmax map (nearest-upsampled from its
       grid), its pixels not taken by an instance become stuff category ``num_things + k - 1``
       if there are at least ``stuff_area_limit`` of them (else they stay void). Class 0 (the
       merged "thing" class) is never painted as stuff.
    3. Everything else is void.

    Args:
        semantic: ``float[S + 1, ceil(H / s), ceil(W / s)]`` semantic probabilities or logits
            sampled every ``s = semantic_stride`` pixels (only the argmax over the first axis is
            used: :func:`~vcups_core.label_grid.channel_argmax`, whose near ties go to the lower
            channel, or numpy's where every channel is negative).
        masks: the ``N`` instance masks of the ``H x W`` image, as crops of their regions.
        scores: ``float[N]`` detection scores.
        classes: ``int[N]`` thing category ids ``0..T-1``.
        num_things: ``T``.
        semantic_stride: ``s`` above (1 = input resolution).
        score_threshold, overlap_threshold, stuff_area_limit: see above.

    Returns:
        ``(panoptic_semantic, panoptic_instance)``: ``uint8[H, W]`` category id per pixel in the
        :class:`~vcups_core.types.CategoryTable` id space (things ``0..T-1``, stuff ``T..``,
        :data:`~vcups_core.types.IGNORE_LABEL` = void), and ``int32[H, W]`` 1-based index of the
        detection owning the pixel (``0`` = stuff or void; detection ``k``'s pixels lie in
        ``masks.regions[k]``).

    Raises:
        ValueError: on inconsistent shapes or a category id that does not fit ``uint8``.
    """
    sem = np.asarray(semantic)
    if sem.ndim != 3:
        raise ValueError(f"semantic must be [S + 1, h, w], got shape {sem.shape}")
    n, h, w = masks.shape
    s = semantic_stride
    grid_shape = (-(-h // s), -(-w // s)) if s >= 1 else None
    if grid_shape is None or sem.shape[1:] != grid_shape:
        raise ValueError(
            f"semantic: expected [S + 1, {grid_shape}] for {h}x{w} masks and semantic_stride "
            f"{s}, got shape {sem.shape}"
        )
    scores = np.asarray(scores).reshape(-1)
    classes = np.asarray(classes).reshape(-1)
    if not n == scores.shape[0] == classes.shape[0]:
        raise ValueError(
            f"masks ({n}), scores ({scores.shape[0]}) and classes ({classes.shape[0]}) must "
            "have the same length"
        )
    if num_things + sem.shape[0] - 1 > IGNORE_LABEL:
        raise ValueError(f"{num_things} things + {sem.shape[0] - 1} stuff do not fit uint8")
    boxes = masks.regions.tolist()

    # instances, best first, each inside its region
    panoptic_instance = np.zeros((h, w), dtype=np.int32)
    taken = np.zeros((h, w), dtype=bool)
    placed: list[tuple[int, list[int], npt.NDArray[np.bool_]]] = []
    for idx in np.argsort(-scores, kind="stable").tolist():
        if scores[idx] < score_threshold:
            break
        x0, y0, x1, y1 = boxes[idx]
        mask = masks.crops[idx]
        area = int(np.count_nonzero(mask))
        if area == 0:
            continue
        already = taken[y0:y1, x0:x1]
        overlap = int(np.count_nonzero(mask & already))
        if overlap / area > overlap_threshold:
            continue
        free = mask & ~already
        np.copyto(panoptic_instance[y0:y1, x0:x1], idx + 1, where=free)
        already |= free
        placed.append((idx, boxes[idx], free))

    # stuff on the grid: a class keeps its cells if enough of their pixels are not taken
    channels = sem.shape[0]
    # one integer max over the float bit patterns; it orders negative values backwards, which
    # only matters where every channel is negative (logits): there numpy's argmax decides
    labels, best = channel_argmax(np.asarray(sem, np.float32))
    if best.size and float(best.min()) < 0:
        labels = sem.argmax(axis=0)
    areas = visible_areas(labels, s, cell_counts(taken, s), h, w, channels)
    stuff = np.arange(channels) >= 1
    lut = np.where(
        stuff & (areas >= stuff_area_limit), num_things + np.arange(channels) - 1, IGNORE_LABEL
    ).astype(np.uint8)
    panoptic_semantic = np.ascontiguousarray(upsample_labels(lut[labels], s, h, w))
    for idx, (x0, y0, x1, y1), free in placed:
        np.copyto(panoptic_semantic[y0:y1, x0:x1], int(classes[idx]), where=free)
    return panoptic_semantic, panoptic_instance
