"""``StreamingSegmenter``: one camera stream in, tracked panoptic frames out (pure Python state).

``step(frame)`` runs the predictor, associates the detections with the live tracks, smooths the
semantic probabilities over the last frames, and composes a :class:`PanopticFrame` whose stamp
and frame id are the input's. State is bounded (tracks pruned after ``max_age`` frames, a few
low-resolution probability maps); ``reset()`` forgets it (ids still never repeat).

Time handling: the frame gap is taken from the caller (the node knows how many images it dropped)
or estimated from the stamps; a stamp that goes backwards or jumps by more than ``max_gap_s``
resets the tracker and the smoother.
"""

from __future__ import annotations

import statistics
from collections import deque
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt
from scipy import ndimage

from vcups_core.configs.node import NodeConfig
from vcups_core.streaming.smoother import SemanticSmoother, SmoothedSemantics, upsample_labels
from vcups_core.streaming.tracker import OnlineTracker, TrackAssignment
from vcups_core.types import (
    MAX_SEGMENTS,
    Box,
    CategoryTable,
    FramePrediction,
    PanopticFrame,
    Segment,
    TrackState,
    VideoFrame,
)


class Predictor(Protocol):
    """What the segmenter needs from a network backend (torch, onnxruntime, TensorRT, fake)."""

    @property
    def categories(self) -> CategoryTable: ...

    def predict(self, image: npt.NDArray[np.uint8]) -> FramePrediction: ...


class StreamingSegmenter:
    """Causal video panoptic segmentation of one stream.

    Args:
        predictor: per-frame network backend.
        tracker: the online tracker (owned by this segmenter).
        smoother: the semantic smoother (owned by this segmenter).
        score_threshold: detections below it are not tracked; their pixels fall back to stuff.
        stuff_area_limit: stuff segments with fewer pixels become void.
        max_gap_s: a larger jump between stamps resets tracker and smoother.
    """

    def __init__(
        self,
        predictor: Predictor,
        *,
        tracker: OnlineTracker,
        smoother: SemanticSmoother,
        score_threshold: float = 0.5,
        stuff_area_limit: int = 4096,
        max_gap_s: float = 2.0,
    ) -> None:
        self.predictor = predictor
        self.tracker, self.smoother = tracker, smoother
        self.score_threshold = score_threshold
        self.stuff_area_limit = stuff_area_limit
        self.max_gap_ns = int(max_gap_s * 1e9)
        self._last_stamp: int | None = None
        self._periods: deque[int] = deque(maxlen=15)
        self.frames_processed = 0
        self.resets = 0

    @classmethod
    def from_config(
        cls, predictor: Predictor, cfg: NodeConfig, *, stuff_area_limit: int = 4096
    ) -> StreamingSegmenter:
        """Build from the node's parameters (the one place that reads them for streaming)."""
        t = cfg.tracker
        return cls(
            predictor,
            tracker=OnlineTracker(
                max_age=t.max_age,
                min_hits=t.min_hits,
                iou_threshold=t.iou_threshold,
                window=t.window,
                match_coeffs=t.match_coeffs,
            ),
            smoother=SemanticSmoother(window=cfg.smoothing.window, enabled=cfg.smoothing.enabled),
            score_threshold=cfg.score_threshold,
            stuff_area_limit=stuff_area_limit,
        )

    @property
    def categories(self) -> CategoryTable:
        return self.predictor.categories

    def reset(self) -> None:
        """Forget tracks, smoothing history and timing (call on a camera change)."""
        self.tracker.reset()
        self.smoother.reset()
        self._last_stamp = None
        self._periods.clear()
        self.resets += 1

    def step(self, frame: VideoFrame, gap: int | None = None) -> PanopticFrame:
        """Segment one frame. ``gap``: frames since the previous call (None: from the stamps)."""
        gap = self._gap(frame.stamp_ns) if gap is None else self._checked_gap(frame.stamp_ns, gap)
        prediction = self.predictor.predict(frame.image)
        result = self.compose(prediction, gap, frame.stamp_ns, frame.frame_id)
        self._last_stamp = frame.stamp_ns
        self.frames_processed += 1
        return result

    def compose(
        self, prediction: FramePrediction, gap: int, stamp_ns: int, frame_id: str
    ) -> PanopticFrame:
        """Track, smooth and merge one prediction (everything after the network)."""
        keep = prediction.scores >= self.score_threshold
        kept = _select(prediction, keep)
        assignment = self.tracker.update(kept, gap=gap)
        stuff = self.smoother.update(
            prediction.semantic_probs,
            semantic_stride=prediction.semantic_stride,
            height=prediction.height,
            width=prediction.width,
            gap=gap,
        )
        det_of_pixel = prediction.panoptic_instance
        if not keep.all():  # renumber kept detections 1..K; dropped ones become 0
            remap = np.zeros(len(prediction) + 1, np.int32)
            remap[1:][keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
            det_of_pixel = remap[det_of_pixel]
        return compose_panoptic(
            det_of_pixel,
            stuff,
            kept,
            assignment,
            self.categories,
            stuff_area_limit=self.stuff_area_limit,
            stamp_ns=stamp_ns,
            frame_id=frame_id,
            frame_index=self.frames_processed,
        )

    def _checked_gap(self, stamp: int, gap: int) -> int:
        if gap < 1:
            raise ValueError(f"gap: expected >= 1, got {gap}")
        if self._last_stamp is not None and (
            stamp <= self._last_stamp or stamp - self._last_stamp > self.max_gap_ns
        ):
            self.reset()
        return gap

    def _gap(self, stamp: int) -> int:
        last = self._last_stamp
        if last is None:
            return 1
        dt = stamp - last
        if dt <= 0 or dt > self.max_gap_ns:
            self.reset()
            return 1
        period = statistics.median(self._periods) if self._periods else dt
        self._periods.append(dt)
        return max(1, round(dt / period))


def _select(prediction: FramePrediction, keep: npt.NDArray[np.bool_]) -> FramePrediction:
    if keep.all():
        return prediction
    return FramePrediction(
        boxes=prediction.boxes[keep],
        scores=prediction.scores[keep],
        classes=prediction.classes[keep],
        masks=prediction.masks[keep],
        embeddings=prediction.embeddings[keep],
        semantic_probs=prediction.semantic_probs,
        panoptic_semantic=prediction.panoptic_semantic,
        panoptic_instance=prediction.panoptic_instance,
        semantic_stride=prediction.semantic_stride,
    )


def instance_regions(
    boxes: npt.NDArray[np.floating], height: int, width: int
) -> npt.NDArray[np.int64]:
    """``int64[N, 4]`` pixel regions ``(x0, y0, x1, y1)`` that contain each detection's pixels.

    The :class:`FramePrediction` contract: boxes grown by 10 % of their size + 2 px, clipped.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    grow_x = 0.1 * (b[:, 2] - b[:, 0]) + 2
    grow_y = 0.1 * (b[:, 3] - b[:, 1]) + 2
    out = np.stack(
        [
            np.floor(b[:, 0] - grow_x),
            np.floor(b[:, 1] - grow_y),
            np.ceil(b[:, 2] + grow_x),
            np.ceil(b[:, 3] + grow_y),
        ],
        axis=1,
    )
    out[:, 0::2] = np.clip(out[:, 0::2], 0, width)
    out[:, 1::2] = np.clip(out[:, 1::2], 0, height)
    return out.astype(np.int64)


def _stuff_under(
    m: npt.NDArray[np.bool_], x0: int, y0: int, grid: npt.NDArray[np.uint8], g: int, channels: int
) -> npt.NDArray[np.float64]:
    """Pixels of ``m`` (a region at ``(x0, y0)``) per grid channel: counts per cell, then a bincount."""
    if g == 1:
        return np.bincount(
            grid[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]][m], minlength=channels
        ).astype(np.float64)
    oy, ox = y0 % g, x0 % g  # pad the region to whole grid cells
    ch, cw = -(-(m.shape[0] + oy) // g), -(-(m.shape[1] + ox) // g)
    if oy == ox == 0 and m.shape == (ch * g, cw * g):
        padded = m.view(np.uint8)
    else:
        padded = np.zeros((ch * g, cw * g), np.uint8)
        padded[oy : oy + m.shape[0], ox : ox + m.shape[1]] = m
    # mean over each g x g cell (OpenCV's area resampling is exact for integer factors) * g^2
    means = cv2.resize(padded.astype(np.float32), (cw, ch), interpolation=cv2.INTER_AREA)
    cells = np.rint(means.reshape(ch, cw) * (g * g)).astype(np.int64)
    labels = grid[y0 // g : y0 // g + ch, x0 // g : x0 // g + cw]
    counts = np.bincount(
        labels.ravel(),
        weights=cells[: labels.shape[0], : labels.shape[1]].ravel(),
        minlength=channels,
    )
    return counts.astype(np.float64)


def compose_panoptic(
    det_of_pixel: npt.NDArray[np.int32],
    stuff: SmoothedSemantics,
    detections: FramePrediction,
    assignment: TrackAssignment,
    categories: CategoryTable,
    *,
    stuff_area_limit: int,
    stamp_ns: int,
    frame_id: str,
    frame_index: int,
) -> PanopticFrame:
    """Merge tracked instances and smoothed stuff into a :class:`PanopticFrame`.

    Args:
        det_of_pixel: ``int32[H, W]`` 1-based index of the detection owning the pixel, 0 = none.
        stuff: smoothed semantic argmax on a grid: channel 0 = "thing", ``1 + j`` = stuff category
            ``T + j``.
        detections: the (kept) detections; ``assignment`` gives their track ids.
        categories: the model's category table (``T = categories.num_things``).
        stuff_area_limit: stuff segments with fewer visible pixels become void.

    Segment ids: stuff category ``T + j`` -> ``1 + j``; detection ``k`` -> ``S + 1 + k``; 0 = void
    (the "thing" channel where no instance is, small stuff). Areas are exact; thing boxes are tight;
    a stuff box is the box of its grid cells, which can be looser than its visible pixels where an
    instance covers a whole edge. The work is a few passes over the grid plus one over each
    instance's region, never a full-resolution histogram.
    """
    height, width = det_of_pixel.shape
    n_stuff, n_det = categories.num_stuff, len(detections)
    if n_stuff + n_det > MAX_SEGMENTS:
        raise ValueError(f"{n_stuff + n_det} segments exceed {MAX_SEGMENTS}")
    grid, g = stuff.labels, stuff.stride
    rows = np.minimum(g, height - g * np.arange(grid.shape[0]))
    cols = np.minimum(g, width - g * np.arange(grid.shape[1]))
    stuff_area = np.bincount(
        grid.ravel(), weights=np.outer(rows, cols).ravel(), minlength=n_stuff + 1
    ).astype(np.float64)

    regions = instance_regions(detections.boxes, height, width)
    if n_det:  # stuff pixels hidden by instances, counted per grid cell in one pass
        stuff_area -= _stuff_under(det_of_pixel > 0, 0, 0, grid, g, n_stuff + 1)
    painted: list[tuple[int, npt.NDArray[np.bool_], Box, int]] = []
    for k in range(n_det):
        x0, y0, x1, y1 = (int(v) for v in regions[k])
        m = det_of_pixel[y0:y1, x0:x1] == k + 1
        area = int(np.count_nonzero(m))
        if area == 0:
            continue
        ys, xs = np.any(m, axis=1), np.any(m, axis=0)
        box = Box(
            x0 + int(xs.argmax()),
            y0 + int(ys.argmax()),
            x0 + len(xs) - int(xs[::-1].argmax()),
            y0 + len(ys) - int(ys[::-1].argmax()),
        )
        painted.append((k, m, box, area))

    lut = np.arange(n_stuff + 1, dtype=np.uint16)
    lut[0] = 0
    small = (stuff_area > 0) & (stuff_area < stuff_area_limit)
    small[0] = False
    lut[small] = 0
    grid_seg = lut[grid]
    seg = np.ascontiguousarray(upsample_labels(grid_seg, g, height, width))
    slices = ndimage.find_objects(grid_seg, max_label=n_stuff)

    segments = []
    t = categories.num_things
    for c in np.nonzero((stuff_area > 0) & ~small)[0]:
        if c == 0 or slices[c - 1] is None:
            continue
        sl = slices[c - 1]
        box = Box(
            sl[1].start * g,
            sl[0].start * g,
            min(sl[1].stop * g, width),
            min(sl[0].stop * g, height),
        )
        segments.append(
            Segment(
                int(c),
                t + int(c) - 1,
                False,
                0,
                float(stuff.confidence[c]),
                round(float(stuff_area[c])),
                box,
            )
        )
    for k, m, box, area in painted:
        sid = n_stuff + 1 + k
        x0, y0, x1, y1 = (int(v) for v in regions[k])
        seg[y0:y1, x0:x1][m] = sid
        segments.append(
            Segment(
                sid,
                int(detections.classes[k]),
                True,
                int(assignment.track_ids[k]),
                float(detections.scores[k]),
                area,
                box,
                TrackState(assignment.states[k]),
                int(assignment.ages[k]),
            )
        )
    return PanopticFrame(
        seg, segments, stamp_ns=stamp_ns, frame_id=frame_id, frame_index=frame_index
    )
