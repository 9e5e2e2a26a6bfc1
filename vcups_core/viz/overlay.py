"""Colour overlays of panoptic frames with track labels (for RViz, videos and reports)."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from vcups_core.types import MAX_SEGMENTS, VOID_SEGMENT, CategoryTable, PanopticFrame
from vcups_core.viz.palette import default_palette

_TRACK_COLOURS = 97  # prime: neighbouring track ids get distant hues


def segment_colours(frame: PanopticFrame, categories: CategoryTable) -> npt.NDArray[np.uint8]:
    """``uint8[MAX_SEGMENTS + 1, 3]`` colour per segment id: stuff by category, things by track."""
    stuff = default_palette(len(categories))
    tracks = default_palette(_TRACK_COLOURS)
    lut = np.zeros((MAX_SEGMENTS + 1, 3), np.uint8)
    for seg in frame.segments:
        if seg.is_thing and seg.track_id:
            lut[seg.segment_id] = tracks[seg.track_id % _TRACK_COLOURS]
        elif seg.category_id < len(categories):
            lut[seg.segment_id] = stuff[seg.category_id]
    return lut


def render_overlay(
    rgb: npt.NDArray[np.uint8],
    frame: PanopticFrame,
    categories: CategoryTable,
    *,
    alpha: float = 0.5,
    labels: bool = True,
) -> npt.NDArray[np.uint8]:
    """Blend segment colours over the image and write ``<class> #<track>`` at each tracked thing.

    Args:
        rgb: ``uint8[H, W, 3]`` the input image.
        frame: its panoptic frame (same size).
        categories: names for the labels.
        alpha: opacity of the colours (void pixels stay untouched).
        labels: draw the text labels.

    Returns:
        ``uint8[H, W, 3]`` RGB.
    """
    if rgb.shape[:2] != frame.segment_ids.shape:
        raise ValueError(
            f"image {rgb.shape[:2]} and panoptic frame {frame.segment_ids.shape} differ"
        )
    colours = segment_colours(frame, categories)[frame.segment_ids]
    out = (rgb * (1 - alpha) + colours * alpha).astype(np.uint8)
    void = frame.segment_ids == VOID_SEGMENT
    out[void] = rgb[void]
    if labels:
        scale = max(0.35, min(frame.width, frame.height) / 900)
        for seg in frame.segments:
            if not (seg.is_thing and seg.track_id):
                continue
            name = categories.names[seg.category_id] if seg.category_id < len(categories) else "?"
            text = f"{name} #{seg.track_id}"
            org = (seg.box.x0, max(seg.box.y0 - 3, 10))
            cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(
                out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
            )
    return out
