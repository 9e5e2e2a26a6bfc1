"""From raw network outputs to a :class:`~vcups_core.types.FramePrediction`, in numpy.

The network (torch module, exported ONNX graph or TensorRT engine) stops at fixed-size
per-detection mask probabilities and the semantic softmax on the head's 4-pixel grid; pasting
the masks into the image, thresholding and placing the instances happen here, identically for
every backend, and only inside each detection's region (see :mod:`vcups_core.model.panoptic`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from vcups_core.model.panoptic import place_instances
from vcups_core.types import FramePrediction, MaskCrops

ArrayT = TypeVar("ArrayT")


class RawOutputs(NamedTuple, Generic[ArrayT]):
    """The network's outputs for one frame (``RawOutputs[Tensor]`` or ``RawOutputs[ndarray]``).

    Attributes:
        boxes: ``float32[N, 4]`` xyxy in input-image pixels.
        scores: ``float32[N]``.
        classes: ``int64[N]`` thing classes ``0..T-1``.
        mask_probs: ``float32[N, M, M]`` mask probability of each detection's class inside its
            box (``M = 28`` by default).
        embeddings: ``float32[N, D]`` MaskTrack embeddings.
        semantic_probs: ``float32[S + 1, ceil(H / s), ceil(W / s)]`` semantic softmax sampled
            every ``s`` pixels (``s`` = the semantic head's stride, 4; graphs exported before
            the head kept its own resolution have ``s = 1``).
    """

    boxes: ArrayT
    scores: ArrayT
    classes: ArrayT
    mask_probs: ArrayT
    embeddings: ArrayT
    semantic_probs: ArrayT


OUTPUT_NAMES: tuple[str, ...] = RawOutputs._fields
"""Output names of the exported graph, in order."""


@dataclass(frozen=True)
class MergeSettings:
    """Post-processing thresholds (from ``ModelConfig.inference``).

    Attributes:
        score_threshold: instances with a lower score are not placed in the panoptic maps
            (``score >= score_threshold`` is placed).
        overlap_threshold: skip an instance whose mask is more than this fraction covered.
        stuff_area_limit: stuff regions with fewer pixels become void.
        mask_threshold: pasted mask probability at or above which a pixel is in the mask.
    """

    score_threshold: float = 0.5
    overlap_threshold: float = 0.5
    stuff_area_limit: int = 4096
    mask_threshold: float = 0.5


def check_rgb_image(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The image as an array, checked to be ``uint8[H, W, 3]`` (RGB).

    Raises:
        ValueError: if the image is not ``uint8[H, W, 3]``.
    """
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected a uint8[H, W, 3] RGB image, got {img.dtype}{list(img.shape)}")
    return img


def image_to_chw(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """``uint8[H, W, 3]`` RGB -> ``float32[3, H, W]`` in ``[0, 1]`` (the network input).

    Raises:
        ValueError: if the image is not ``uint8[H, W, 3]``.
    """
    img = check_rgb_image(image)
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)


def _tent_weights(
    lo: npt.NDArray[np.float64],
    hi: npt.NDArray[np.float64],
    size: int,
    start: npt.NDArray[np.int64],
    stop: npt.NDArray[np.int64],
) -> list[npt.NDArray[np.float32]]:
    """Bilinear (zero-padded, ``align_corners=False``) sampling weights along one axis, for ``K``
    boxes at once.

    Box ``k`` spans ``[lo[k], hi[k])`` with ``size`` mask cells; its weights are
    ``float32[stop[k] - start[k], size]`` for the pixel centres ``start[k] .. stop[k] - 1``
    (``stop >= start``). One set of array operations for all boxes: per box, numpy's call
    overhead would cost more than the arithmetic.
    """
    lengths = stop - start
    ends = np.cumsum(lengths)
    # pixel index of each row of the stacked weights: start[k] + 0, 1, ... within box k
    owner = np.repeat(np.arange(len(lengths)), lengths)
    pixels = np.arange(int(ends[-1]) if len(ends) else 0) + (start - (ends - lengths))[owner]
    u = (pixels + 0.5 - lo[owner]) / (hi - lo)[owner] * size - 0.5
    # the tent max(1 - |u - j|, 0) is non-zero at cells floor(u) and floor(u) + 1 only
    cell = np.floor(u)
    right = cell + 1.0
    weights = np.zeros((len(u), size), np.float32)
    rows = np.arange(len(u))
    for j, w in ((cell, 1.0 - (u - cell)), (right, 1.0 - (right - u))):
        inside = (j >= 0) & (j < size)
        weights[rows[inside], j[inside].astype(np.int64)] = w[inside]
    bounds = ends.tolist()
    return [weights[b - n : b] for b, n in zip(bounds, lengths.tolist(), strict=True)]


def mask_regions(
    boxes: npt.NDArray[np.floating], mask_size: tuple[int, int], height: int, width: int
) -> npt.NDArray[np.int64]:
    """``int64[N, 4]`` xyxy pixels each pasted mask can reach: the box plus one mask cell on each
    side (the bilinear tent's support), clipped to the image; ``0, 0, 0, 0`` for a degenerate,
    non-finite or off-image box.

    Args:
        boxes: ``float[N, 4]`` xyxy in image pixels.
        mask_size: ``(M_h, M_w)`` cells of each box-relative mask.
        height, width: image size.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ok = np.isfinite(b).all(axis=1) & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    b = np.where(ok[:, None], b, 0.0)
    cell_x = (b[:, 2] - b[:, 0]) / mask_size[1]
    cell_y = (b[:, 3] - b[:, 1]) / mask_size[0]
    # clipped before the cast, so a huge (finite) coordinate cannot overflow int64
    regions = np.stack(
        [
            np.clip(np.floor(b[:, 0] - cell_x), 0, width),
            np.clip(np.floor(b[:, 1] - cell_y), 0, height),
            np.clip(np.ceil(b[:, 2] + cell_x), 0, width),
            np.clip(np.ceil(b[:, 3] + cell_y), 0, height),
        ],
        axis=1,
    ).astype(np.int64)
    ok &= (regions[:, 2] > regions[:, 0]) & (regions[:, 3] > regions[:, 1])
    regions[~ok] = 0
    return regions


def paste_masks(
    mask_probs: npt.NDArray[np.floating],
    boxes: npt.NDArray[np.floating],
    height: int,
    width: int,
    *,
    threshold: float = 0.5,
) -> MaskCrops:
    """Paste box-relative mask probabilities into the image and threshold them.

    Each ``M x M`` mask is sampled bilinearly (zero outside the mask, pixel centres, like
    ``grid_sample(align_corners=False)`` in detectron2's ``paste_masks_in_image``) at every
    pixel near its box; pixels with probability ``>= threshold`` are in the mask. Bilinear
    sampling with zero padding is separable, so each mask costs two small matrix products.

    Args:
        mask_probs: ``float[N, M, M]``.
        boxes: ``float[N, 4]`` xyxy in image pixels.
        height, width: image size.
        threshold: probability threshold.

    Returns:
        The ``N`` masks of the ``height x width`` image, each cropped to the pixels its box can
        reach (:func:`mask_regions`; an empty region for a degenerate or off-image box).
    """
    probs = np.asarray(mask_probs, dtype=np.float32)
    if probs.ndim != 3:
        raise ValueError(f"mask_probs: expected float[N, M, M], got shape {probs.shape}")
    n, m_h, m_w = probs.shape
    box = np.array(boxes, dtype=np.float64).reshape(-1, 4)  # a copy: cleaned below
    if box.shape[0] != n:
        raise ValueError(f"mask_probs ({n}) and boxes ({box.shape[0]}) must have the same length")
    regions = mask_regions(box, (m_h, m_w), height, width)
    box[~np.isfinite(box)] = 0.0  # such boxes have empty regions: no weights are computed
    wy = _tent_weights(box[:, 1], box[:, 3], m_h, regions[:, 1], regions[:, 3])
    wx = _tent_weights(box[:, 0], box[:, 2], m_w, regions[:, 0], regions[:, 2])
    crops = [wy[i] @ probs[i] @ wx[i].T >= threshold for i in range(n)]
    return MaskCrops(regions, crops, height, width)


def frame_prediction_from_raw(
    raw: RawOutputs[npt.NDArray[np.generic]],
    *,
    image_size: tuple[int, int],
    semantic_stride: int,
    settings: MergeSettings,
) -> FramePrediction:
    """Build the :class:`FramePrediction` of one frame from numpy :class:`RawOutputs`.

    Pastes the masks (as crops of the pixels each box can reach), places the instances
    (:func:`~vcups_core.model.panoptic.place_instances`, inside those regions) and casts every
    field to its contract dtype. The semantic probabilities stay on their grid; the per-frame
    category map is :func:`~vcups_core.model.panoptic.semantic_map`, on demand.

    Args:
        raw: the network's outputs.
        image_size: ``(H, W)`` of the input image.
        semantic_stride: pixels per semantic cell (the model's ``semantic_head.common_stride``,
            or ``vcups_semantic_stride`` in an exported graph's metadata).
        settings: merge thresholds.

    Raises:
        ValueError: if the semantic grid does not match ``image_size`` and ``semantic_stride``.
    """
    h, w = image_size
    s = semantic_stride
    semantic = np.asarray(raw.semantic_probs, dtype=np.float32)
    cells = (-(-h // s), -(-w // s)) if s >= 1 else None
    if semantic.ndim != 3 or cells is None or semantic.shape[1:] != cells:
        raise ValueError(
            f"semantic_probs: expected [S + 1, {cells}] for a {h}x{w} image with semantic "
            f"stride {s}, got shape {semantic.shape} (does the exported graph's "
            "vcups_semantic_stride match it?)"
        )
    boxes = np.asarray(raw.boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(raw.scores, dtype=np.float32).reshape(-1)
    classes = np.asarray(raw.classes, dtype=np.int64).reshape(-1)
    embeddings = np.asarray(raw.embeddings, dtype=np.float32)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be [N, D], got shape {embeddings.shape}")
    masks = paste_masks(
        np.asarray(raw.mask_probs, dtype=np.float32), boxes, h, w, threshold=settings.mask_threshold
    )
    instance = place_instances(
        masks,
        scores,
        score_threshold=settings.score_threshold,
        overlap_threshold=settings.overlap_threshold,
    )
    return FramePrediction(
        boxes=boxes,
        scores=scores,
        classes=classes,
        masks=masks,
        embeddings=embeddings,
        semantic_probs=semantic,
        panoptic_instance=instance,
        semantic_stride=s,
    )
