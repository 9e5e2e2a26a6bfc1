"""Tracked instance pseudo-labels of a clip: region growing per frame, then tracking (§2.3-2.4).

:class:`InstanceLabeler` is what :func:`vcups_core.pseudo.pipeline.run_pseudo_labels` drives: it
takes one :class:`~vcups_core.cues.base.FrameCues` per frame and returns the frames whose track
maps are final (one frame of delay, for the gap filling of the 3-frame window).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from vcups_core.configs.pseudo_labels import PseudoLabelConfig
from vcups_core.cues.base import FrameCues
from vcups_core.pseudo.refine import refine_instances
from vcups_core.pseudo.region_growing import grow_regions
from vcups_core.pseudo.tracking import InstanceTracker


def detect_instances(cues: FrameCues, cfg: PseudoLabelConfig) -> npt.NDArray[np.int32]:
    """Instance masks of one frame (``int32[H, W]``, ``1..N`` by decreasing area, 0 = none)."""
    if cues.motion is None:
        raise ValueError("detect_instances needs the motion score (cues.motion is None)")
    valid = cues.valid if cues.valid is not None else np.asarray(np.isfinite(cues.flow).all(axis=2))
    flow = cues.flow
    if cfg.region_growing.flow_source == "residual" and cues.ego_flow is not None:
        flow = (cues.flow - cues.ego_flow).astype(np.float32)
    labels = grow_regions(cues.motion, flow, cues.depth, valid, cfg.region_growing)
    if cfg.region_growing.refine != "none":
        labels = refine_instances(
            cues.frame.image, labels, cues.motion, cfg.region_growing, flow, cues.depth
        )
    return labels


class InstanceLabeler:
    """Streaming instance pseudo-labels of one clip (a fresh labeler per clip).

    Args:
        cfg: pseudo-label config (``region_growing`` and ``tracking`` sections).
    """

    def __init__(self, cfg: PseudoLabelConfig) -> None:
        self.cfg = cfg
        self.tracker = InstanceTracker(
            cfg.tracking.iou_threshold,
            fill_gaps=cfg.tracking.fill_gaps and cfg.tracking.window >= 3,
            min_containment=cfg.tracking.min_containment,
            max_lost=cfg.tracking.max_lost,
            fragment_inside=cfg.tracking.fragment_inside,
            fragment_flow=cfg.tracking.fragment_flow,
            fragment_depth=cfg.tracking.fragment_depth,
            split_min_share=cfg.tracking.split_min_share,
            min_track_frames=cfg.tracking.min_track_frames,
        )

    def push(self, cues: FrameCues) -> list[tuple[int, npt.NDArray[np.uint16]]]:
        """Add a frame's cues; return ``(index, uint16[H, W] track ids)`` of frames now final."""
        detections = detect_instances(cues, self.cfg)
        return self.tracker.push(cues.frame.index, detections, cues.flow_prev, cues.depth)

    def finish(self) -> list[tuple[int, npt.NDArray[np.uint16]]]:
        """The remaining frames (the last one)."""
        return self.tracker.finish()
