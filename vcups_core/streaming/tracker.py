"""Causal online tracker: per-frame detections in, stable track ids out (method §3.3, §5).

State machine, one instance per camera stream:

* a detection that no live track claims starts a **tentative** track with a fresh id;
* ``min_hits`` detections make it **confirmed**;
* a live track without a detection in the current frame is **coasting** (it has no pixels, so
  it appears in :attr:`OnlineTracker.tracks` but not in the frame's segments);
* a track missed for more than ``max_age`` frames is forgotten, so memory stays bounded;
* ids come from a per-instance counter that :meth:`OnlineTracker.reset` does not rewind: ids are
  never reused within a stream, not even across resets.

Association (:mod:`vcups_core.streaming.association`): MaskTrack scores (embedding similarity with
a "new object" slot, detection score, box IoU, class consistency) plus the IoU of the detection's
mask with the track's last mask, solved with the Hungarian algorithm. Masks are compared on every
``mask_stride``-th pixel as one label map per frame (where detections overlap, the higher score
keeps the pixel, as in the panoptic merge), so all IoUs of a frame pair come from one histogram.

Flow-free propagation: for a track seen within the last ``window`` frames, a mask IoU of at least
``iou_threshold`` adds a bonus as strong as class consistency (the pseudo-label tracker's rule,
Hungarian on IoU >= 0.4, as a cue); objects that moved too far to overlap, and tracks seen longer
ago, are matched by appearance, box and class alone.

Contract of :meth:`OnlineTracker.update`: call it on every processed frame, also when there are no
detections, with ``gap`` = frames elapsed since the previous call (``gap > 1`` after dropped frames).
Call :meth:`OnlineTracker.reset` on a time jump or a camera change.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from vcups_core.streaming.association import (
    assign,
    assign_greedy,
    association_scores,
    label_map_iou,
)
from vcups_core.types import FramePrediction, TrackState


@dataclasses.dataclass
class Track:
    """A live track (internal state; exposed read-only through :attr:`OnlineTracker.tracks`)."""

    track_id: int
    category: int
    embedding: npt.NDArray[np.float32]
    box: npt.NDArray[np.float32]
    mask_label: int  # this track's label in the mask map of frame ``last_frame``
    first_frame: int
    last_frame: int
    hits: int
    state: TrackState


@dataclasses.dataclass(frozen=True)
class TrackAssignment:
    """Per detection of one frame: its track id, state and age (frames since birth)."""

    track_ids: npt.NDArray[np.int64]
    states: tuple[TrackState, ...]
    ages: npt.NDArray[np.int64]


class OnlineTracker:
    """Causal MaskTrack-style tracker with a bounded memory.

    Args:
        max_age: frames a track survives without a detection.
        min_hits: detections before a track is confirmed.
        iou_threshold: a mask IoU at or above it with a track seen within ``window`` frames
            earns the propagation bonus (a bonus, not a gate: with a lower IoU, or none, a
            detection still matches by appearance, box and class).
        window: "recently seen" means within this many frames.
        match_coeffs: MaskTrack weights of (log detection score, box IoU, same class).
        mask_coeff: weight of the mask IoU in the association score (0: MaskTrack's cues only).
        propagation_bonus: a mask IoU of at least ``iou_threshold`` with a track seen within
            ``window`` frames adds the same-class weight (False: MaskTrack's cues only).
        assignment: ``"hungarian"`` (optimal one-to-one) or ``"greedy"`` (MaskTrack R-CNN's
            online matching: detections by descending score each take their best free option).
        mask_stride: masks are compared on every ``mask_stride``-th pixel (cost ~ 1/stride²);
            ``None`` picks ``max(1, min(H, W) // 128)`` per frame (8 px at 1024 rows: IoU
            decisions at 0.4 need no finer masks).
    """

    def __init__(
        self,
        *,
        max_age: int = 30,
        min_hits: int = 2,
        iou_threshold: float = 0.4,
        window: int = 3,
        match_coeffs: tuple[float, float, float] = (1.0, 2.0, 10.0),
        mask_coeff: float = 2.0,
        mask_stride: int | None = None,
        propagation_bonus: bool = True,
        assignment: str = "hungarian",
    ) -> None:
        if mask_stride is not None and mask_stride < 1:
            raise ValueError(f"mask_stride: expected >= 1 or None, got {mask_stride}")
        self.mask_stride = mask_stride
        self.configure(
            max_age=max_age,
            min_hits=min_hits,
            iou_threshold=iou_threshold,
            window=window,
            match_coeffs=match_coeffs,
            mask_coeff=mask_coeff,
            propagation_bonus=propagation_bonus,
            assignment=assignment,
        )
        self._next_id = 1
        self._frame = -1
        self._tracks: list[Track] = []
        # strided mask maps of the last ``window`` frames: frame -> (labels, number of masks)
        self._maps: dict[int, tuple[npt.NDArray[np.int32], int]] = {}

    def configure(
        self,
        *,
        max_age: int,
        min_hits: int,
        iou_threshold: float,
        window: int,
        match_coeffs: tuple[float, float, float],
        mask_coeff: float,
        propagation_bonus: bool,
        assignment: str,
    ) -> None:
        """Set the association settings (see the class; all but ``mask_stride``); live tracks
        and the id counter are kept, so a running stream can change them. Checked here, at
        construction and for changes alike.

        Raises:
            ValueError: a setting out of range (nothing is changed then).
        """
        if max_age < 0 or min_hits < 1 or window < 1 or mask_coeff < 0 or min(match_coeffs) < 0:
            raise ValueError(
                "expected max_age >= 0, min_hits >= 1, window >= 1, mask_coeff >= 0 and "
                f"match_coeffs >= 0; got {max_age}, {min_hits}, {window}, {mask_coeff}, "
                f"{match_coeffs}"
            )
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold: expected 0..1, got {iou_threshold}")
        if assignment not in ("hungarian", "greedy"):
            raise ValueError(f"assignment: expected hungarian or greedy, got {assignment!r}")
        self.propagation_bonus = propagation_bonus
        self.assignment = assignment
        self.max_age, self.min_hits, self.window = max_age, min_hits, window
        self.iou_threshold = iou_threshold
        self.match_coeffs, self.mask_coeff = match_coeffs, mask_coeff

    @property
    def tracks(self) -> tuple[Track, ...]:
        """Live tracks (detected within the last ``max_age`` frames)."""
        return tuple(self._tracks)

    @property
    def next_id(self) -> int:
        return self._next_id

    def reset(self) -> None:
        """Forget every track (e.g. on a time jump); ids keep counting up."""
        self._tracks = []
        self._maps = {}
        self._frame = -1

    def update(self, prediction: FramePrediction, gap: int = 1) -> TrackAssignment:
        """Associate one frame's detections; see the module docstring for the contract."""
        if gap < 1:
            raise ValueError(f"gap: expected >= 1 frames, got {gap}")
        self._frame = self._frame + gap if self._frame >= 0 else 0
        now = self._frame
        self._tracks = [t for t in self._tracks if now - t.last_frame <= self.max_age]
        n = len(prediction)
        current = self._mask_map(prediction)
        tracks = self._tracks
        if tracks and n:
            mious = self._mask_ious(current, n, now)
            pair, new = association_scores(
                prediction.embeddings,
                prediction.scores,
                prediction.classes,
                prediction.boxes,
                np.stack([t.embedding for t in tracks]),
                np.array([t.category for t in tracks]),
                np.stack([t.box for t in tracks]),
                mious,
                coeffs=self.match_coeffs,
                mask_coeff=self.mask_coeff,
            )
            if self.propagation_bonus:
                pair += self.match_coeffs[2] * (mious >= max(self.iou_threshold, 1e-9))
            if self.assignment == "hungarian":
                matches = assign(pair, new)
            else:
                matches = assign_greedy(pair, new, prediction.scores)
        else:
            matches = np.full(n, -1, np.int64)

        matched = {int(m) for m in matches if m >= 0}
        for j, track in enumerate(tracks):
            if j not in matched:  # alive, but not seen this frame
                track.state = TrackState.COASTING
        ids = np.zeros(n, np.int64)
        states: list[TrackState] = []
        ages = np.zeros(n, np.int64)
        for i in range(n):
            if matches[i] >= 0:
                track = tracks[int(matches[i])]
                track.hits += 1
                track.last_frame = now
                track.category = int(prediction.classes[i])
            else:
                track = Track(
                    self._next_id,
                    int(prediction.classes[i]),
                    prediction.embeddings[i],
                    prediction.boxes[i],
                    i + 1,
                    now,
                    now,
                    1,
                    TrackState.TENTATIVE,
                )
                self._next_id += 1
                self._tracks.append(track)
            track.embedding = np.asarray(prediction.embeddings[i], np.float32)
            track.box = np.asarray(prediction.boxes[i], np.float32)
            track.mask_label = i + 1
            track.state = (
                TrackState.CONFIRMED if track.hits >= self.min_hits else TrackState.TENTATIVE
            )
            ids[i] = track.track_id
            states.append(track.state)
            ages[i] = now - track.first_frame
        self._maps[now] = (current, n)
        for frame in [f for f in self._maps if f <= now - self.window]:  # out of every window
            del self._maps[frame]
        return TrackAssignment(ids, tuple(states), ages)

    def _mask_ious(
        self, current: npt.NDArray[np.int32], n: int, now: int
    ) -> npt.NDArray[np.float64]:
        """``float64[n, tracks]``: mask IoU with each track seen within the window, else 0."""
        tracks = self._tracks
        mious = np.zeros((n, len(tracks)))
        by_frame: dict[int, list[int]] = {}
        for j, t in enumerate(tracks):
            if now - t.last_frame <= self.window and t.last_frame in self._maps:
                by_frame.setdefault(t.last_frame, []).append(j)
        for frame, columns in by_frame.items():
            previous, m = self._maps[frame]
            if previous.shape != current.shape:  # the image size changed: no mask cue
                continue
            ious = label_map_iou(current, previous, n, m)
            mious[:, columns] = ious[:, [tracks[j].mask_label - 1 for j in columns]]
        return mious

    def _mask_map(self, prediction: FramePrediction) -> npt.NDArray[np.int32]:
        """The detections' masks on every ``mask_stride``-th pixel as one label map.

        Label ``i + 1`` is detection ``i``; where masks overlap the higher score wins (as in the
        panoptic merge), so each pixel counts once and IoUs come from one joint histogram.
        Only each mask's crop is read.
        """
        s = self.mask_stride or max(1, min(prediction.height, prediction.width) // 128)
        h, w = -(-prediction.height // s), -(-prediction.width // s)
        labels = np.zeros((h, w), np.int32)
        masks = prediction.masks
        # the grid points inside each region: rows/columns ceil(y0 / s) .. ceil(y1 / s) - 1
        first = -(-masks.regions // s)
        for i in np.argsort(prediction.scores, kind="stable").tolist():  # best painted last
            gx0, gy0, gx1, gy1 = first[i].tolist()
            if gx1 <= gx0 or gy1 <= gy0:
                continue
            x0, y0 = masks.regions[i, :2].tolist()
            crop = masks.crops[i][gy0 * s - y0 :: s, gx0 * s - x0 :: s]
            np.copyto(labels[gy0:gy1, gx0:gx1], i + 1, where=crop)
        return labels
