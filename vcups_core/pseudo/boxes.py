"""Bounding-box windows of label maps, shared by the refinement and the tracker."""

from __future__ import annotations


def union_box(boxes: list[tuple[slice, slice]]) -> tuple[slice, slice]:
    """The bounding box of several bounding boxes (``ndimage.find_objects`` slices, ``(rows,
    cols)``, each with explicit bounds)."""
    return (
        slice(min(b[0].start for b in boxes), max(b[0].stop for b in boxes)),
        slice(min(b[1].start for b in boxes), max(b[1].stop for b in boxes)),
    )
