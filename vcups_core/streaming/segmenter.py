"""``StreamingSegmenter``: one camera stream in, tracked panoptic frames out (pure Python state).

``step(frame)`` runs the predictor, associates the detections with the live tracks, smooths the
semantic probabilities over the last frames, and composes a :class:`PanopticFrame` whose stamp
and frame id are the input's. State is bounded (tracks pruned after ``max_age`` frames, a few
low-resolution probability maps); ``reset()`` forgets it (ids still never repeat).

Settings: one :class:`~vcups_core.configs.streaming.StreamingConfig`, read in one place
(:meth:`StreamingSegmenter.configure`) at start-up (:meth:`StreamingSegmenter.from_config`) and
for live changes (the node's parameters) alike.

Time handling, the one policy of the node and ``vcups replay``: the frame gap is the larger of
the caller's count (the node knows how many images it skipped) and an estimate from the stamps
(which also sees frames lost before the caller, e.g. by the transport). A jump of more than
``max_gap_s`` resets the tracker and the smoother, and the frame starts a new sequence. A stamp
that is not after the previous frame's (a bag looping, a clock reset, a duplicate) is not
processed: :meth:`StreamingSegmenter.step` resets and raises :class:`StampOrderError`, the
callers count the frame as skipped, and tracking restarts from the next frame.
"""

from __future__ import annotations

import statistics
from collections import deque

import cv2
import numpy as np
import numpy.typing as npt
from scipy import ndimage

from vcups_core.configs.streaming import MODEL_STUFF_AREA_LIMIT, StreamingConfig
from vcups_core.label_grid import cell_counts, upsample_labels, visible_areas
from vcups_core.model.predictors.base import Predictor
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
    passes_score_threshold,
)

DEFAULT_STUFF_AREA_LIMIT = 4096
"""Stuff area limit for ``stuff_area_limit: -1`` with a predictor without merge settings."""


class StampOrderError(ValueError):
    """A frame's stamp is not after the previous frame's: the frame was not processed, and the
    tracker and the smoother were reset (tracking restarts from the next frame)."""


class StreamingSegmenter:
    """Causal video panoptic segmentation of one stream.

    Args:
        predictor: per-frame network backend.
        tracker: the online tracker (owned by this segmenter).
        smoother: the semantic smoother (owned by this segmenter).
        score_threshold: detections are tracked when ``score >= score_threshold``
            (:func:`~vcups_core.types.passes_score_threshold`); the pixels of the others fall
            back to stuff.
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
    def from_config(cls, predictor: Predictor, cfg: StreamingConfig) -> StreamingSegmenter:
        """A segmenter with a fresh tracker and smoother, set up by :meth:`configure`."""
        segmenter = cls(predictor, tracker=OnlineTracker(), smoother=SemanticSmoother())
        segmenter.configure(cfg)
        return segmenter

    def configure(self, cfg: StreamingConfig) -> None:
        """Apply ``cfg``: the one place that reads a :class:`StreamingConfig`.

        Called at start-up and for live changes (the node's ``streaming.*`` parameters, which
        are validated by the same schema first); tracks, ids and smoothing history are kept.
        ``stuff_area_limit: -1`` takes the model config's ``inference.stuff_area_limit`` from
        the predictor's merge settings (``predictor.settings``; :data:`DEFAULT_STUFF_AREA_LIMIT`
        for a predictor without).

        Raises:
            ValueError: a tracker or smoother setting out of range (a config loaded through
                :mod:`vcups_core.config` never has one).
        """
        t = cfg.tracker
        self.tracker.configure(
            max_age=t.max_age,
            min_hits=t.min_hits,
            iou_threshold=t.iou_threshold,
            window=t.window,
            match_coeffs=t.match_coeffs,
            mask_coeff=t.mask_iou_weight,
            propagation_bonus=t.propagation_bonus,
            assignment=t.assignment,
        )
        self.smoother.configure(window=cfg.smoothing.window, enabled=cfg.smoothing.enabled)
        self.score_threshold = cfg.score_threshold
        limit = cfg.stuff_area_limit
        if limit == MODEL_STUFF_AREA_LIMIT:
            settings = getattr(self.predictor, "settings", None)
            limit = int(getattr(settings, "stuff_area_limit", DEFAULT_STUFF_AREA_LIMIT))
        self.stuff_area_limit = limit
        self.max_gap_ns = int(cfg.max_gap_s * 1e9)

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

        Raises:
            StampOrderError: ``frame.stamp_ns`` is not after the previous frame's; nothing
                was predicted, tracker and smoother were reset, and this stamp is now the
                previous one (see the module docstring).
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
        keep = passes_score_threshold(prediction.scores, self.score_threshold)
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
        if dt <= 0:
            self.reset()
            self._last_stamp = stamp
            raise StampOrderError(
                f"stamp {stamp} ns is not after the previous frame's {last} ns; frame skipped, "
                "tracks reset"
            )
        if dt > self.max_gap_ns:
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
