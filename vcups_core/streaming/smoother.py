"""Causal temporal smoothing of semantic probabilities, so stuff labels do not flicker.

The semantic head predicts at 1/4 resolution, so smoothing on a coarse grid loses nothing of
substance and keeps the per-frame cost small: the probabilities are sampled on a grid of
``grid_stride`` input pixels, the last ``window`` maps (current frame included) are averaged, and
the argmax is returned on that grid (upsampling is left to the caller, which paints instances over
it anyway).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import numpy.typing as npt

from vcups_core.label_grid import channel_argmax


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
        if grid_stride is not None and grid_stride < 1:
            raise ValueError(f"grid_stride must be >= 1, got {grid_stride}")
        self.grid_stride = grid_stride
        self.configure(window=window, enabled=enabled)
        # the last ``window`` grids in a ring, and a scratch sum: allocated once per shape and
        # window length, so the state stays bounded and a frame allocates nothing large
        self._ring: npt.NDArray[np.float32] | None = None
        self._total: npt.NDArray[np.float32] | None = None
        self._filled = 0
        self._next = 0
        self._key: tuple[int, ...] | None = None

    def configure(self, *, window: int, enabled: bool) -> None:
        """Set ``window`` and ``enabled`` (see the class), also while running: a new window
        length restarts the history at the next frame.

        Raises:
            ValueError: ``window < 1`` (nothing is changed then).
        """
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window, self.enabled = window, enabled

    def reset(self) -> None:
        self._ring = self._total = None
        self._filled = self._next = 0
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

        Probabilities are non-negative (a negative value loses to every non-negative one).

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
        window = self.window  # the node may change it at run time (configure)
        shape = (channels, -(-probs.shape[1] // sub), -(-probs.shape[2] // sub))
        key = (window, *shape, stride)
        if self._key != key or self._ring is None or self._total is None:
            self._ring = np.empty((window, *shape), np.float32)
            self._total = np.empty(shape, np.float32)
            self._filled = self._next = 0
            self._key = key
        if gap >= window or not self.enabled:
            self._filled = self._next = 0
        _subsample(probs, sub, out=self._ring[self._next])
        self._next = (self._next + 1) % window
        self._filled = min(self._filled + 1, window)
        total, ring = self._total, self._ring
        if self._filled == 1:
            np.copyto(total, ring[0])
        else:  # plain adds: about twice as fast as np.sum over axis 0
            np.add(ring[0], ring[1], out=total)
            for i in range(2, self._filled):
                total += ring[i]
        labels, best = channel_argmax(total, overwrite=True)
        used = self._filled
        best_mean = best.astype(np.float64) / used
        counts = np.bincount(labels.ravel(), minlength=channels)
        sums = np.bincount(labels.ravel(), weights=best_mean.ravel(), minlength=channels)
        confidence = np.divide(sums, counts, out=np.zeros(channels), where=counts > 0)
        return SmoothedSemantics(labels, stride, confidence)


def _subsample(probs: npt.NDArray[np.float32], sub: int, *, out: npt.NDArray[np.float32]) -> None:
    """``out[...] = probs[:, ::sub, ::sub]`` (``out``: contiguous ``float32``)."""
    channels, h, w = probs.shape
    if sub > 1 and h % sub == 0 and w % sub == 0:
        # nearest resampling of the (C*h, w) stack by an integer factor picks rows and columns
        # 0, sub, 2 sub, ...: the same samples as the slice, about twice as fast as numpy's copy
        flat = np.ascontiguousarray(probs, dtype=np.float32).reshape(channels * h, w)
        dst = out.reshape(channels * h // sub, w // sub)
        cv2.resize(flat, (w // sub, channels * h // sub), dst=dst, interpolation=cv2.INTER_NEAREST)
    else:
        np.copyto(out, probs[:, ::sub, ::sub], casting="same_kind")
