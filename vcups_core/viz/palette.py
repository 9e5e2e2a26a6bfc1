"""Deterministic colour palettes for categories and tracks."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

_GOLDEN = 0.618033988749895


def default_palette(n: int) -> npt.NDArray[np.uint8]:
    """``uint8[n, 3]`` RGB colours with well-separated hues (golden-ratio steps), same every call."""
    if n < 0:
        raise ValueError(f"n: expected >= 0, got {n}")
    if n == 0:
        return np.zeros((0, 3), np.uint8)
    hues = (np.arange(n) * _GOLDEN) % 1.0
    hsv = np.stack([hues * 180, np.full(n, 200), np.full(n, 230)], axis=1).astype(np.uint8)
    return np.asarray(cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0], dtype=np.uint8).reshape(n, 3)
