"""Label maps on a coarse grid (numpy, no state).

The semantic head predicts on a grid of ``stride x stride`` pixel cells; the panoptic merge of
one frame (:mod:`vcups_core.model.panoptic`) and the streaming composition
(:mod:`vcups_core.streaming.segmenter`) both keep semantics on that grid and work at full
resolution only inside each detection's mask region. These are the pieces they share.
"""

from __future__ import annotations

from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt


def cell_counts(mask: npt.NDArray[np.bool_], stride: int) -> npt.NDArray[np.int64]:
    """``int64[ceil(h / stride), ceil(w / stride)]``: pixels of ``bool[h, w]`` per grid cell.

    Cells are ``stride x stride`` from the top-left corner; the last row and column of cells may
    be partial. Exact (block sums).
    """
    if stride == 1:
        return mask.astype(np.int64)
    h, w = mask.shape
    gh, gw = -(-h // stride), -(-w // stride)
    m = mask
    if (h, w) != (gh * stride, gw * stride):
        m = np.zeros((gh * stride, gw * stride), mask.dtype)
        m[:h, :w] = mask
    elif not m.flags.c_contiguous:
        m = np.ascontiguousarray(m)
    word = _CELL_WORDS.get(stride)
    if word is not None:
        # one machine word holds one cell row (``stride`` bytes of 0/1): multiplying by
        # 0x0101...01 sums its bytes into the top byte (at most 8, so no carry crosses bytes);
        # then the rows of each cell are added (about 1.6x faster than two numpy reductions)
        dtype, ones, shift = word
        per_row = m.view(dtype) * ones
        per_row >>= shift
        summed: npt.NDArray[np.int64] = per_row.reshape(gh, stride, gw).sum(axis=1, dtype=np.int64)
        return summed
    # rows first (contiguous adds), then the short runs along each row of cells
    dtype = np.uint16 if stride < 65536 else np.int64  # a row sum is at most ``stride``
    rows = m.view(np.uint8).reshape(gh, stride, gw * stride).sum(axis=1, dtype=dtype)
    counts: npt.NDArray[np.int64] = rows.reshape(gh, gw, stride).sum(axis=2, dtype=np.int64)
    return counts


# grid strides whose cell row is one machine word: word type, 0x01 in every byte, top-byte shift
_CELL_WORDS = {
    2: (np.uint16, np.uint16(0x0101), np.uint16(8)),
    4: (np.uint32, np.uint32(0x01010101), np.uint32(24)),
    8: (np.uint64, np.uint64(0x0101010101010101), np.uint64(56)),
}


def upsample_labels(
    labels: npt.NDArray[np.generic], stride: int, height: int, width: int
) -> npt.NDArray[np.generic]:
    """Nearest upsampling of a grid map (one value per ``stride x stride`` cell) to ``height x width``."""
    if stride == 1:
        return labels[:height, :width]
    gh, gw = labels.shape
    if (gh * stride, gw * stride) == (height, width) and labels.dtype in (np.uint8, np.uint16):
        # OpenCV's pixel-centre nearest rule maps output pixel d to cell (d + 0.5) // stride =
        # d // stride for an integer factor: the same values as np.repeat, in one faster pass
        up: npt.NDArray[np.generic] = cv2.resize(
            cast("npt.NDArray[np.integer[Any]]", labels),
            (width, height),
            interpolation=cv2.INTER_NEAREST_EXACT,
        )
        return up
    return np.repeat(np.repeat(labels, stride, axis=0), stride, axis=1)[:height, :width]


def visible_areas(
    labels: npt.NDArray[np.integer[Any]],
    stride: int,
    hidden: npt.NDArray[np.integer[Any]],
    height: int,
    width: int,
    channels: int,
) -> npt.NDArray[np.float64]:
    """``float64[channels]``: pixels of each grid label that no instance hides (exact integers).

    Args:
        labels: ``int[ceil(H / stride), ceil(W / stride)]`` label of each cell.
        stride: cell size in pixels (the last row and column of cells may be partial).
        hidden: same shape as ``labels``: pixels of each cell covered by instances
            (:func:`cell_counts` of the instance map).
        height, width: the image size ``H, W``.
        channels: number of labels (``labels < channels``).
    """
    rows = np.minimum(stride, height - stride * np.arange(labels.shape[0]))
    cols = np.minimum(stride, width - stride * np.arange(labels.shape[1]))
    visible = np.outer(rows, cols) - hidden
    areas = np.bincount(labels.ravel(), weights=visible.ravel(), minlength=channels)
    return cast("npt.NDArray[np.float64]", areas)


def channel_argmax(
    values: npt.NDArray[np.float32], *, overwrite: bool = False
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]:
    """Argmax and max over axis 0 of non-negative ``float32[C, h, w]`` (``C <= 256``).

    Each value's lowest ``ceil(log2 C)`` mantissa bits are replaced by ``2^b - 1 - c`` and one
    integer max is taken over the channels (non-negative IEEE floats order like their bit
    patterns). About 7x faster than ``np.argmax(axis=0)``. Exact except for channels whose values
    agree to within ``2^(b - 23)`` relative (a near tie, which goes to the lower channel); the
    returned maximum is the winner's value with those bits cleared. ``overwrite`` lets it use
    ``values`` (contiguous) as its scratch space instead of a copy.

    Returns:
        ``(labels uint8[h, w], maxima float32[h, w])``.
    """
    channels = values.shape[0]
    if not 1 <= channels <= 256:
        raise ValueError(f"values: expected 1..256 channels, got {channels}")
    if values.dtype != np.float32:
        raise ValueError(f"values: expected float32, got {values.dtype}")
    bits = max(1, (channels - 1).bit_length())
    low = np.int32((1 << bits) - 1)
    if overwrite and values.flags.c_contiguous and values.flags.writeable:
        keys = values.view(np.int32)
        keys &= ~low
    else:
        keys = np.ascontiguousarray(values).view(np.int32) & ~low
    keys |= (low - np.arange(channels, dtype=np.int32))[:, None, None]
    best = keys.max(axis=0)
    labels = (low - (best & low)).astype(np.uint8)
    best &= ~low
    return labels, best.view(np.float32)
