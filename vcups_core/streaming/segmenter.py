"""``StreamingSegmenter``: one camera stream in, tracked panoptic frames out (pure Python state).

``step(frame)`` runs the predictor, associates the detections with the live tracks, smooths the
semantic probabilities over the last frames, and composes a :class:`PanopticFrame` whose stamp
and frame id are the input's. State is bounded (tracks pruned after ``max_age`` frames, a few
low-resolution probability maps); ``reset()`` forgets it (ids still never repeat).

Time handling: the frame gap is the larger of the caller's count (the node knows how many images
it skipped) and an estimate from the stamps (which also sees frames lost before the caller, e.g.
by the transport); a stamp that goes backwards or jumps by more than ``max_gap_s`` resets the
tracker and the smoother.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt
from scipy import ndimage

from vcups_core.configs.node import NodeConfig
from vcups_core.label_grid import cell_counts, upsample_labels, visible_areas
from vcups_core.streaming.smoother import SemanticSmoother, SmoothedSemantics
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


WARMUP_SIZE = (256, 512)
"""``(H, W)`` of the black image :func:`warm_up` predicts."""


def warm_up(predictor: Predictor, size: tuple[int, int] = WARMUP_SIZE) -> float:
    """Run one prediction on a black ``uint8[H, W, 3]`` image; return how long it took (s).

    A backend's first prediction pays one-off costs: the CUDA context, library handles, loading
    kernels. Measured on an H200 host (R50, 1024x2048, ``benchmarks/bench_gpu.py``, fresh
    processes): the first camera frame took 0.6-1.4 s against 36-50 ms for the next ones;
    after a 256x512 warm-up (0.6-0.8 s) it took 44-48 ms. Any error of the prediction propagates, so a model that
    cannot run fails here instead of at the first camera frame.

    Raises:
        ValueError: if ``size`` is not two positive integers.
    """
    height, width = size
    if height < 1 or width < 1:
        raise ValueError(f"size: expected (H, W) >= 1, got {size}")
    start = time.perf_counter()
    predictor.predict(np.zeros((height, width, 3), np.uint8))
    return time.perf_counter() - start


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
        self._periods: deque[float] = deque(maxlen=15)
        self.frames_processed = 0
        self.resets = 0

    @classmethod
    def from_config(
        cls, predictor: Predictor, cfg: NodeConfig, *, stuff_area_limit: int | None = None
    ) -> StreamingSegmenter:
        """Build from the node's parameters (the one place that reads them for streaming).

        ``stuff_area_limit=None`` takes the model config's ``inference.stuff_area_limit`` from
        the predictor's merge settings (``predictor.settings``; 4096 for a predictor without).
        """
        if stuff_area_limit is None:
            settings = getattr(predictor, "settings", None)
            stuff_area_limit = int(getattr(settings, "stuff_area_limit", 4096))
        t = cfg.tracker
        return cls(
            predictor,
            tracker=OnlineTracker(
                max_age=t.max_age,
                min_hits=t.min_hits,
                iou_threshold=t.iou_threshold,
                window=t.window,
                match_coeffs=t.match_coeffs,
                mask_coeff=t.mask_iou_weight,
                propagation_bonus=t.propagation_bonus,
                assignment=t.assignment,
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
        """Segment one frame.

        ``gap``: frames since the previous call as the caller knows them (the node counts the
        images it skipped), or None. Frames lost before the caller saw them show in the stamps:
        the gap used is the larger of ``gap`` and the stamps' estimate (the time since the
        previous frame over the median frame period seen so far).
        """
        gap = self._gap(frame.stamp_ns, gap)
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
        return compose_panoptic(
            prediction.panoptic_instance,
            stuff,
            prediction,
            assignment,
            self.categories,
            keep=None if keep.all() else keep,
            stuff_area_limit=self.stuff_area_limit,
            stamp_ns=stamp_ns,
            frame_id=frame_id,
            frame_index=self.frames_processed,
        )

    def _gap(self, stamp: int, known: int | None) -> int:
        if known is not None and known < 1:
            raise ValueError(f"gap: expected >= 1, got {known}")
        last = self._last_stamp
        if last is None:
            return known or 1
        dt = stamp - last
        if dt <= 0 or dt > self.max_gap_ns:
            self.reset()
            return known or 1
        # the period per frame the caller knows of; the median ignores the odd lost frame
        per_frame = dt / (known or 1)
        period = statistics.median(self._periods) if self._periods else per_frame
        self._periods.append(per_frame)
        return max(known or 1, round(dt / period))


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
        panoptic_instance=prediction.panoptic_instance,
        semantic_stride=prediction.semantic_stride,
    )


def compose_panoptic(
    det_of_pixel: npt.NDArray[np.int32],
    stuff: SmoothedSemantics,
    detections: FramePrediction,
    assignment: TrackAssignment,
    categories: CategoryTable,
    *,
    keep: npt.NDArray[np.bool_] | None = None,
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
        detections: the frame's ``N`` detections; each one's pixels lie in its mask's region
            (``detections.masks.regions``).
        assignment: track ids of the kept detections, in order.
        categories: the model's category table (``T = categories.num_things``).
        keep: ``bool[N]`` detections to paint (None: all); the pixels of the others fall back to
            stuff.
        stuff_area_limit: stuff segments with fewer visible pixels become void.

    Segment ids: detection ``k`` -> ``1 + k``; stuff category ``T + j`` -> ``N + 1 + j``; 0 = void
    (the "thing" channel where no instance is, small stuff). Areas are exact; thing boxes are tight;
    a stuff box is the box of its grid cells, which can be looser than its visible pixels where an
    instance covers a whole edge. Full-resolution work: the upsampling of the grid, plus a few
    passes over each kept detection's region.
    """
    height, width = det_of_pixel.shape
    n_stuff, n_det = categories.num_stuff, len(detections)
    if n_stuff + n_det > MAX_SEGMENTS:
        raise ValueError(f"{n_stuff + n_det} segments exceed {MAX_SEGMENTS}")
    kept = np.ones(n_det, bool) if keep is None else np.asarray(keep, bool)
    if kept.shape != (n_det,) or int(kept.sum()) != len(assignment.track_ids):
        raise ValueError(
            f"keep: expected bool[{n_det}] selecting {len(assignment.track_ids)} detections, "
            f"got shape {kept.shape} selecting {int(kept.sum())}"
        )
    grid, g = stuff.labels, stuff.stride

    # instances: area, tight box and the pixels they hide, from each kept detection's region
    # (grown to whole grid cells); the pixels of dropped detections keep the stuff below them
    regions = detections.masks.regions.copy()
    regions[:, :2] -= regions[:, :2] % g
    regions[:, 2:] = np.minimum(-(-regions[:, 2:] // g) * g, (width, height))
    hidden = np.zeros(grid.shape, np.int64)
    # (detection, slot, tight box, area, its pixels in its region, the region's corner)
    painted: list[tuple[int, int, Box, int, npt.NDArray[np.bool_], int, int]] = []
    corners = regions.tolist()  # Python ints: the loop runs per detection
    for slot, k in enumerate(np.nonzero(kept)[0].tolist()):
        x0, y0, x1, y1 = corners[k]
        m = det_of_pixel[y0:y1, x0:x1] == k + 1
        counts = cell_counts(m, g)
        area = int(counts.sum())
        if area == 0:
            continue
        bx, by, bw, bh = cv2.boundingRect(m.view(np.uint8))
        hidden[y0 // g : y0 // g + counts.shape[0], x0 // g : x0 // g + counts.shape[1]] += counts
        box = Box(x0 + bx, y0 + by, x0 + bx + bw, y0 + by + bh)
        painted.append((k, slot, box, area, m, x0, y0))

    # stuff: visible pixels per cell = cell size - hidden pixels, summed per channel
    stuff_area = visible_areas(grid, g, hidden, height, width, n_stuff + 1)
    small = (stuff_area > 0) & (stuff_area < stuff_area_limit)
    small[0] = True  # the "thing" channel without an instance is void
    channel_lut = np.where(small, 0, np.arange(n_stuff + 1)).astype(np.uint8)
    shown = channel_lut[grid]
    id_lut = np.where(channel_lut > 0, n_det + np.arange(n_stuff + 1), 0).astype(np.uint16)
    seg = np.ascontiguousarray(upsample_labels(id_lut[grid], g, height, width))
    for k, _, _, _, m, x0, y0 in painted:
        np.copyto(seg[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]], k + 1, where=m)

    segments = []
    t = categories.num_things
    slices = ndimage.find_objects(shown, max_label=n_stuff)
    for c in np.nonzero((stuff_area > 0) & ~small)[0]:
        sl = slices[c - 1]
        if sl is None:
            continue
        box = Box(
            sl[1].start * g,
            sl[0].start * g,
            min(sl[1].stop * g, width),
            min(sl[0].stop * g, height),
        )
        segments.append(
            Segment(
                n_det + int(c),
                t + int(c) - 1,
                False,
                0,
                float(stuff.confidence[c]),
                round(float(stuff_area[c])),
                box,
            )
        )
    classes, scores = detections.classes.tolist(), detections.scores.tolist()
    track_ids, ages = assignment.track_ids.tolist(), assignment.ages.tolist()
    for k, slot, box, area, *_ in painted:
        segments.append(
            Segment(
                k + 1,
                int(classes[k]),
                True,
                int(track_ids[slot]),
                float(scores[k]),
                area,
                box,
                TrackState(assignment.states[slot]),
                int(ages[slot]),
            )
        )
    return PanopticFrame(
        seg, segments, stamp_ns=stamp_ns, frame_id=frame_id, frame_index=frame_index
    )
