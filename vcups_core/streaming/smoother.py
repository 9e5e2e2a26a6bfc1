"""Causal temporal smoothing of semantic probabilities, so stuff labels do not flicker.

The semantic head predicts at 1/4 resolution, so smoothing on a coarse grid loses nothing of
substance and keeps the per-frame cost small: the probabilities are sampled on a grid of
``grid_stride`` input pixels, the last ``window`` maps (current frame included) are averaged, and
the argmax is returned on that grid (upsampling is left to the caller, which paints instances over
it anyway).
"""

from __future__ import annotations

import dataclasses
from collections import deque

import numpy as np
import numpy.typing as npt


@dataclasses.dataclass(frozen=True)
class SmoothedSemantics:
    """Smoothed semantic argmax on a grid.

    Attributes:
        labels: ``uint8[ceil(H / stride), ceil(W / stride)]`` channel index (0 = "thing").
        stride: input pixels per grid cell along each axis.
        confidence: ``float64[C]`` mean smoothed probability of each channel's cells (0 if absent).
    """

    labels: npt.NDArray[np.uint8]
    stride: int
    confidence: npt.NDArray[np.float64]


class SemanticSmoother:
    """Average the last ``window`` semantic probability maps (causal: no future frames).

    Args:
        window: frames averaged, the current one included (1 = no smoothing).
        grid_stride: grid spacing in input pixels (rounded to a multiple of the probabilities' own
            stride); ``None`` picks ``max(1, min(8, min(H, W) // 128))``.
        enabled: when false, the argmax of the current frame is returned.
    """

    def __init__(
        self, *, window: int = 3, grid_stride: int | None = None, enabled: bool = True
    ) -> None:
        if window < 1 or (grid_stride is not None and grid_stride < 1):
            raise ValueError(f"window and grid_stride must be >= 1, got {window}, {grid_stride}")
        self.window, self.grid_stride, self.enabled = window, grid_stride, enabled
        self._history: deque[npt.NDArray[np.float32]] = deque(maxlen=window)
        self._key: tuple[int, ...] | None = None

    def reset(self) -> None:
        self._history.clear()
        self._key = None

    def update(
        self,
        probs: npt.NDArray[np.float32],
        *,
        semantic_stride: int,
        height: int,
        width: int,
        gap: int = 1,
    ) -> SmoothedSemantics:
        """Add one frame's ``float32[C, h, w]`` probabilities (sampled every ``semantic_stride`` px).

        A gap of ``window`` frames or more, or a change of shape, restarts the history.
        """
        if probs.ndim != 3:
            raise ValueError(f"probs: expected float[C, h, w], got shape {probs.shape}")
        channels = probs.shape[0]
        if channels > 255:
            raise ValueError(f"probs: at most 255 channels fit uint8 labels, got {channels}")
        target = self.grid_stride or max(1, min(8, min(height, width) // 128))
        sub = max(1, target // semantic_stride)
        stride = semantic_stride * sub
        grid = np.ascontiguousarray(probs[:, ::sub, ::sub], dtype=np.float32)
        key = (*grid.shape, stride)
        if self._key != key or gap >= self.window or not self.enabled:
            self._history.clear()
        self._key = key
        self._history.append(grid)
        history = list(self._history)
        total = history[0] if len(history) == 1 else history[0] + history[1]
        for older in history[2:]:
            total += older
        # argmax over channels one channel at a time: contiguous passes, no transposed copy
        best = total[0].copy()
        labels = np.zeros(best.shape, np.uint8)
        for c in range(1, channels):
            better = total[c] > best
            np.maximum(best, total[c], out=best)
            labels[better] = c
        best_mean = best.astype(np.float64) / len(self._history)
        counts = np.bincount(labels.ravel(), minlength=channels)
        sums = np.bincount(labels.ravel(), weights=best_mean.ravel(), minlength=channels)
        confidence = np.divide(sums, counts, out=np.zeros(channels), where=counts > 0)
        return SmoothedSemantics(labels, stride, confidence)


def upsample_labels(
    labels: npt.NDArray[np.generic], stride: int, height: int, width: int
) -> npt.NDArray[np.generic]:
    """Nearest upsampling of a grid map (one value per ``stride x stride`` cell) to ``height x width``."""
    if stride == 1:
        return labels[:height, :width]
    return np.repeat(np.repeat(labels, stride, axis=0), stride, axis=1)[:height, :width]
