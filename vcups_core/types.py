"""Data types shared by every part of vcups, and the one definition of the label encoding.

Conventions (used everywhere in the library, never repeated inline):

* Images are ``uint8[H, W, 3]`` RGB.
* Semantic ids are the model's pseudo-classes (or a dataset's train ids in evaluation code);
  :data:`IGNORE_LABEL` (255) marks void pixels.
* Track ids are unique within a stream and never reused; :data:`NO_TRACK` (0) means "no track"
  (stuff, void, or a thing not associated with a track).
* Segment ids index the per-segment table of a :class:`PanopticFrame`; :data:`VOID_SEGMENT` (0)
  marks pixels that belong to no segment. They fit ``uint16`` so that the id map travels as a
  lossless ``16UC1`` image.
* Timestamps are integer nanoseconds, copied unchanged from the input to every output.
* Panoptic ids for metrics are ``(semantic << label_bit_shift) + instance``; use
  :func:`encode_panoptic` / :func:`decode_panoptic` instead of writing the formula.
* A score threshold keeps a detection whose score is at least the threshold (``score >=
  threshold``): every threshold on detection scores (the cascade's test threshold, the
  panoptic merge, the streaming path) goes through :func:`passes_score_threshold`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
from scipy import ndimage

IGNORE_LABEL: int = 255
"""Semantic value of void / ignored pixels."""

NO_TRACK: int = 0
"""Track id of pixels that belong to no track."""

VOID_SEGMENT: int = 0
"""Segment id of pixels that belong to no segment."""

MAX_SEGMENTS: int = int(np.iinfo(np.uint16).max)
"""Largest segment id (segment-id maps are ``uint16``)."""

DEFAULT_LABEL_BIT_SHIFT: int = 16
"""Bit shift of the panoptic encoding ``(semantic << shift) + instance`` (deeplab2's default)."""

_Kept = TypeVar("_Kept", covariant=True)


class _ComparableScores(Protocol[_Kept]):
    def __ge__(self, other: float, /) -> _Kept: ...


def passes_score_threshold(scores: _ComparableScores[_Kept], threshold: float) -> _Kept:
    """The one score-threshold rule: a detection is kept when ``score >= threshold``.

    A score equal to the threshold passes, so threshold 0 keeps everything and threshold 1
    keeps only scores of exactly 1.

    Args:
        scores: ``float[N]`` detection scores, a numpy array or a torch tensor (or one float).
        threshold: the threshold.

    Returns:
        ``bool[N]`` of the same kind as ``scores`` (numpy array, tensor, or bool).
    """
    return scores >= threshold


def encode_panoptic(
    semantic: npt.NDArray[np.integer],
    instance: npt.NDArray[np.integer],
    label_bit_shift: int = DEFAULT_LABEL_BIT_SHIFT,
) -> npt.NDArray[np.int64]:
    """Pack semantic and instance ids into one panoptic id per pixel.

    Args:
        semantic: ``int[...]`` semantic ids, non-negative.
        instance: ``int[...]`` instance (track) ids, same shape, ``0 <= id < 2**label_bit_shift``.
        label_bit_shift: number of low bits reserved for the instance id.

    Returns:
        ``int64[...]`` panoptic ids ``(semantic << label_bit_shift) + instance``.

    Raises:
        ValueError: if the shapes differ, an id is negative, or an instance id does not fit.
    """
    sem = np.asarray(semantic)
    inst = np.asarray(instance)
    if sem.shape != inst.shape:
        raise ValueError(f"semantic shape {sem.shape} != instance shape {inst.shape}")
    if sem.size and int(sem.min()) < 0:
        raise ValueError(f"semantic ids must be >= 0, got {int(sem.min())}")
    if inst.size:
        lo, hi = int(inst.min()), int(inst.max())
        if lo < 0 or hi >= (1 << label_bit_shift):
            bad = lo if lo < 0 else hi
            raise ValueError(f"instance ids must be in [0, 2**{label_bit_shift}), got {bad}")
    # Parenthesised on purpose: `+` binds tighter than `<<` in Python.
    return (sem.astype(np.int64) << label_bit_shift) + inst.astype(np.int64)


def decode_panoptic(
    panoptic: npt.NDArray[np.integer], label_bit_shift: int = DEFAULT_LABEL_BIT_SHIFT
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Inverse of :func:`encode_panoptic`: returns ``(semantic, instance)`` as ``int64`` arrays."""
    pan = np.asarray(panoptic).astype(np.int64)
    return pan >> label_bit_shift, pan & ((1 << label_bit_shift) - 1)


class TrackState(enum.IntEnum):
    """Life-cycle state of a track; values equal ``PanopticTrack.STATE_*`` in ``msg/``."""

    NONE = 0
    TENTATIVE = 1
    CONFIRMED = 2
    COASTING = 3


@dataclass(frozen=True)
class Box:
    """Axis-aligned pixel box, ``x0 <= x < x1`` and ``y0 <= y < y1`` (exclusive end)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


@dataclass(frozen=True)
class Segment:
    """One row of a :class:`PanopticFrame`'s segment table.

    Attributes:
        segment_id: value of this segment's pixels in ``PanopticFrame.segment_ids`` (1..65535).
        category_id: semantic (pseudo-)class id.
        is_thing: thing (countable object) or stuff.
        track_id: stable id across frames; :data:`NO_TRACK` for stuff.
        score: confidence in [0, 1].
        area: number of pixels of the segment.
        box: tight box of the segment's pixels.
        track_state: life-cycle state of the track (:class:`TrackState`).
        track_age: frames since the track was born (0 for stuff).
    """

    segment_id: int
    category_id: int
    is_thing: bool
    track_id: int
    score: float
    area: int
    box: Box
    track_state: TrackState = TrackState.NONE
    track_age: int = 0


@dataclass
class VideoFrame:
    """One input frame of a stream or clip.

    Attributes:
        image: ``uint8[H, W, 3]`` RGB.
        stamp_ns: capture time in nanoseconds (the ROS header stamp for ROS input).
        frame_id: coordinate frame of the camera (the ROS header ``frame_id``), may be empty.
        index: position in its stream or clip (0-based), -1 if unknown.
    """

    image: npt.NDArray[np.uint8]
    stamp_ns: int
    frame_id: str = ""
    index: int = -1

    def __post_init__(self) -> None:
        img = self.image
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(
                f"VideoFrame.image must be uint8[H, W, 3], got {img.dtype}{list(img.shape)}"
            )
        if self.stamp_ns < 0:
            raise ValueError(f"VideoFrame.stamp_ns must be >= 0, got {self.stamp_ns}")

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass
class PanopticFrame:
    """Panoptic segmentation of one frame: a segment-id map plus its segment table.

    The semantic map and the track-id map are derived from the two (:attr:`semantic`,
    :attr:`track_ids`), so they can never disagree with the table.

    Attributes:
        segment_ids: ``uint16[H, W]``; pixel = ``Segment.segment_id``, :data:`VOID_SEGMENT` = void.
        segments: the segment table, one entry per segment id present in ``segment_ids``, sorted by
            ``segment_id``.
        stamp_ns: timestamp copied from the input :class:`VideoFrame`.
        frame_id: camera frame copied from the input.
        frame_index: number of frames processed before this one in the stream.
    """

    segment_ids: npt.NDArray[np.uint16]
    segments: list[Segment] = field(default_factory=list)
    stamp_ns: int = 0
    frame_id: str = ""
    frame_index: int = 0

    def __post_init__(self) -> None:
        ids = self.segment_ids
        if ids.dtype != np.uint16 or ids.ndim != 2:
            raise ValueError(
                f"PanopticFrame.segment_ids must be uint16[H, W], got {ids.dtype}{list(ids.shape)}"
            )
        seen: set[int] = set()
        for seg in self.segments:
            if not 1 <= seg.segment_id <= MAX_SEGMENTS:
                raise ValueError(f"segment_id must be in [1, {MAX_SEGMENTS}], got {seg.segment_id}")
            if seg.segment_id in seen:
                raise ValueError(f"duplicate segment_id {seg.segment_id} in the segment table")
            seen.add(seg.segment_id)
        self.segments = sorted(self.segments, key=lambda s: s.segment_id)

    def __len__(self) -> int:
        return len(self.segments)

    @property
    def height(self) -> int:
        return int(self.segment_ids.shape[0])

    @property
    def width(self) -> int:
        return int(self.segment_ids.shape[1])

    def _lookup(
        self, values: list[int], fill: int, dtype: type[np.integer[Any]]
    ) -> npt.NDArray[Any]:
        lut = np.full(MAX_SEGMENTS + 1, fill, dtype=dtype)
        for seg, value in zip(self.segments, values, strict=True):
            lut[seg.segment_id] = value
        return lut[self.segment_ids]

    @property
    def semantic(self) -> npt.NDArray[np.uint8]:
        """``uint8[H, W]`` category id per pixel, :data:`IGNORE_LABEL` on void.

        Raises:
            ValueError: if a category id does not fit ``uint8`` below :data:`IGNORE_LABEL`.
        """
        cats = [s.category_id for s in self.segments]
        if cats and not 0 <= max(cats) < IGNORE_LABEL:
            raise ValueError(f"category ids must be in [0, {IGNORE_LABEL}), got {max(cats)}")
        return self._lookup(cats, IGNORE_LABEL, np.uint8)

    @property
    def track_ids(self) -> npt.NDArray[np.int64]:
        """``int64[H, W]`` track id per pixel, :data:`NO_TRACK` for stuff and void."""
        return self._lookup([s.track_id for s in self.segments], NO_TRACK, np.int64)

    @classmethod
    def from_maps(
        cls,
        semantic: npt.NDArray[np.integer],
        track_ids: npt.NDArray[np.integer],
        thing_classes: frozenset[int] | set[int],
        *,
        scores: dict[int, float] | None = None,
        stamp_ns: int = 0,
        frame_id: str = "",
        frame_index: int = 0,
    ) -> PanopticFrame:
        """Build a frame from a semantic map and a track-id map.

        Every distinct ``(category, track)`` pair of non-void thing pixels, and every stuff category,
        becomes one segment; segment ids are assigned in ascending ``(category, track)`` order
        starting at 1. Track ids on stuff pixels are ignored.

        Args:
            semantic: ``int[H, W]`` category ids, :data:`IGNORE_LABEL` = void.
            track_ids: ``int[H, W]`` track ids, :data:`NO_TRACK` where no track.
            thing_classes: category ids that are things.
            scores: optional score per track id (things) or per category id (stuff, keyed by the
                category); missing entries score 1.0.
            stamp_ns, frame_id, frame_index: copied into the frame.

        Raises:
            ValueError: on shape mismatch, negative ids, or more than 65535 segments.
        """
        sem = np.asarray(semantic)
        trk = np.asarray(track_ids)
        if sem.shape != trk.shape or sem.ndim != 2:
            raise ValueError(f"semantic {sem.shape} and track_ids {trk.shape} must be equal [H, W]")
        if sem.size and (int(sem.min()) < 0 or int(trk.min()) < 0):
            raise ValueError("semantic and track ids must be >= 0")
        valid = sem != IGNORE_LABEL
        # Stuff is one segment per class: track ids on stuff pixels are ignored.
        tracked = valid & np.isin(sem, np.fromiter(thing_classes, dtype=np.int64))
        pan = encode_panoptic(
            np.where(valid, sem, 0), np.where(tracked, trk, 0), label_bit_shift=32
        )
        keys, inverse = np.unique(pan[valid], return_inverse=True)
        if len(keys) > MAX_SEGMENTS:
            raise ValueError(f"{len(keys)} segments exceed the maximum of {MAX_SEGMENTS}")
        segment_ids = np.zeros(sem.shape, dtype=np.uint16)
        segment_ids[valid] = (inverse + 1).astype(np.uint16)
        areas = np.bincount(inverse, minlength=len(keys))
        boxes = boxes_of(segment_ids, len(keys))
        cats, trks = decode_panoptic(keys, label_bit_shift=32)
        score_of = scores or {}
        segments = []
        for i in range(len(keys)):
            cat, tid = int(cats[i]), int(trks[i])
            thing = cat in thing_classes
            segments.append(
                Segment(
                    segment_id=i + 1,
                    category_id=cat,
                    is_thing=thing,
                    track_id=tid if thing else NO_TRACK,
                    score=float(score_of.get(tid if thing else cat, 1.0)),
                    area=int(areas[i]),
                    box=boxes[i],
                )
            )
        return cls(
            segment_ids, segments, stamp_ns=stamp_ns, frame_id=frame_id, frame_index=frame_index
        )


def boxes_of(segment_ids: npt.NDArray[np.uint16], num: int) -> list[Box]:
    """Tight boxes of segments ``1..num`` of a segment-id map; absent segments get an empty box."""
    boxes = []
    for sl in ndimage.find_objects(segment_ids, max_label=num):
        if sl is None:
            boxes.append(Box(0, 0, 0, 0))
        else:
            boxes.append(Box(sl[1].start, sl[0].start, sl[1].stop, sl[0].stop))
    return boxes


@dataclass(frozen=True)
class CategoryTable:
    """The model's categories in one contiguous id space: things ``0..T-1``, then stuff ``T..T+S-1``.

    This is the id space of :func:`vcups_core.model.panoptic.semantic_map`, of
    ``Segment.category_id`` in the streaming path and of ``PanopticInfo.category_names``.
    ``pseudo_class_ids`` records which pseudo-class (e.g. DepthG cluster 0..26) each category
    came from.

    Attributes:
        names: name per category id.
        num_things: ``T``; ids below it are things.
        pseudo_class_ids: pseudo-class id per category (same length as ``names``).
    """

    names: tuple[str, ...]
    num_things: int
    pseudo_class_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.pseudo_class_ids) != len(self.names):
            raise ValueError(
                f"pseudo_class_ids: expected {len(self.names)} entries, got {len(self.pseudo_class_ids)}"
            )
        if not 0 <= self.num_things <= len(self.names):
            raise ValueError(f"num_things: expected 0..{len(self.names)}, got {self.num_things}")
        if len(self.names) >= IGNORE_LABEL:
            raise ValueError(
                f"at most {IGNORE_LABEL - 1} categories fit uint8 maps, got {len(self.names)}"
            )

    def __len__(self) -> int:
        return len(self.names)

    @property
    def num_stuff(self) -> int:
        return len(self.names) - self.num_things

    @property
    def is_thing(self) -> tuple[bool, ...]:
        return tuple(i < self.num_things for i in range(len(self.names)))

    @classmethod
    def default(cls, num_things: int, num_stuff: int) -> CategoryTable:
        """Generic names ``thing_i`` / ``stuff_j`` with pseudo-class ids equal to the category ids."""
        names = tuple(f"thing_{i}" for i in range(num_things)) + tuple(
            f"stuff_{j}" for j in range(num_stuff)
        )
        return cls(names, num_things, tuple(range(len(names))))


class MaskCrops:
    """``N`` instance masks of an ``H x W`` image, each stored as a crop of its region.

    Mask ``i`` is ``crops[i]`` placed at ``regions[i] = (x0, y0, x1, y1)`` and ``False`` elsewhere,
    so a frame's masks cost their regions' pixels, not ``N * H * W`` bytes (100 MB at 1024x2048
    with 50 detections). Indexing with a boolean or integer array selects masks, like numpy.

    Args:
        regions: ``int[N, 4]`` pixel regions inside the image.
        crops: ``N`` arrays ``bool[y1 - y0, x1 - x0]``.
        height, width: the image size.

    Raises:
        ValueError: if a region leaves the image or a crop does not have its region's shape.
    """

    def __init__(
        self,
        regions: npt.NDArray[np.integer[Any]],
        crops: Sequence[npt.NDArray[np.bool_]],
        height: int,
        width: int,
    ) -> None:
        r = np.asarray(regions, np.int64).reshape(-1, 4)
        if len(crops) != r.shape[0]:
            raise ValueError(f"MaskCrops: {r.shape[0]} regions but {len(crops)} crops")
        bad = (r[:, 0] < 0) | (r[:, 1] < 0) | (r[:, 2] > width) | (r[:, 3] > height)
        bad |= (r[:, 2] < r[:, 0]) | (r[:, 3] < r[:, 1])
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"MaskCrops: region {i} {r[i].tolist()} is not inside the {height}x{width} image"
            )
        for i, (crop, (x0, y0, x1, y1)) in enumerate(zip(crops, r.tolist(), strict=True)):
            if crop.dtype != np.bool_ or crop.shape != (y1 - y0, x1 - x0):
                raise ValueError(
                    f"MaskCrops: crop {i}: expected bool[{y1 - y0}, {x1 - x0}], got "
                    f"{crop.dtype}{list(crop.shape)}"
                )
        self.regions = r
        self.crops = tuple(crops)
        self.height, self.width = int(height), int(width)

    @classmethod
    def from_dense(
        cls,
        masks: npt.NDArray[np.bool_],
        regions: npt.NDArray[np.integer[Any]] | None = None,
    ) -> MaskCrops:
        """Crop ``bool[N, H, W]`` masks to ``regions`` (pixels outside are dropped), or to each
        mask's tight box when ``regions`` is None (an empty mask gets an empty region)."""
        m = np.asarray(masks, bool)
        if m.ndim != 3:
            raise ValueError(f"masks: expected bool[N, H, W], got shape {m.shape}")
        n, h, w = m.shape
        if regions is None:
            boxes = []
            for mask in m:
                ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
                boxes.append((xs[0], ys[0], xs[-1] + 1, ys[-1] + 1) if len(xs) else (0, 0, 0, 0))
            regions = np.asarray(boxes, np.int64).reshape(n, 4)
        r = np.asarray(regions, np.int64).reshape(-1, 4)
        crops = [m[i, y0:y1, x0:x1].copy() for i, (x0, y0, x1, y1) in enumerate(r.tolist())]
        return cls(r, crops, h, w)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(N, H, W)``, the shape of the dense masks."""
        return (len(self.crops), self.height, self.width)

    def __len__(self) -> int:
        return len(self.crops)

    def __repr__(self) -> str:
        return f"MaskCrops({len(self)} masks of a {self.height}x{self.width} image)"

    def __getitem__(self, index: npt.NDArray[Any] | Sequence[int]) -> MaskCrops:
        index = np.asarray(index)
        if index.ndim != 1:
            raise TypeError(
                "MaskCrops selects masks with a 1-D bool or integer array; use dense(i) or "
                f"crops[i] for one mask, got index of shape {index.shape}"
            )
        picked = np.arange(len(self))[index]
        return MaskCrops(
            self.regions[picked], [self.crops[i] for i in picked], self.height, self.width
        )

    def dense(self, i: int) -> npt.NDArray[np.bool_]:
        """``bool[H, W]`` mask ``i``."""
        out = np.zeros((self.height, self.width), bool)
        x0, y0, x1, y1 = self.regions[i].tolist()
        out[y0:y1, x0:x1] = self.crops[i]
        return out

    def to_dense(self) -> npt.NDArray[np.bool_]:
        """``bool[N, H, W]`` (for tests and small images)."""
        out = np.zeros(self.shape, bool)
        for i, (x0, y0, x1, y1) in enumerate(self.regions.tolist()):
            out[i, y0:y1, x0:x1] = self.crops[i]
        return out


@dataclass
class FramePrediction:
    """What the network predicts for one ``H x W`` input frame, its instances placed.

    Instances are per-frame detections (no track ids yet: the streaming tracker assigns those).
    Masks are crops of their regions and semantics stay on the head's grid; only the instance
    map is at full resolution (the per-frame category map, which the streaming path does not
    need, is :func:`vcups_core.model.panoptic.semantic_map` of these fields, on demand). The
    arrays belong to the receiver: a predictor returns fresh arrays for every frame.

    Attributes:
        boxes: ``float32[N, 4]`` ``(x0, y0, x1, y1)`` in input pixels.
        scores: ``float32[N]`` detection scores in [0, 1].
        classes: ``int64[N]`` thing category ids ``0..T-1``.
        masks: the ``N`` instance masks, each as a crop of its region (:class:`MaskCrops`).
        embeddings: ``float32[N, D]`` MaskTrack association embeddings.
        semantic_probs: ``float32[S + 1, ceil(H / s), ceil(W / s)]`` softmax of the semantic head
            sampled every ``s = semantic_stride`` pixels (the head predicts at 1/4 resolution;
            keeping it there saves 16x memory and bandwidth; :meth:`full_semantic_probs` gives
            ``[S + 1, H, W]``). Channel 0 is the merged "thing" class, channel ``1 + j`` is stuff
            category ``T + j``.
        panoptic_instance: ``int32[H, W]`` 1-based index into the detections (``0`` = stuff/void);
            detection ``k``'s pixels lie inside ``masks.regions[k]``.
        semantic_stride: ``s`` above (1 = input resolution).
    """

    boxes: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    classes: npt.NDArray[np.int64]
    masks: MaskCrops
    embeddings: npt.NDArray[np.float32]
    semantic_probs: npt.NDArray[np.float32]
    panoptic_instance: npt.NDArray[np.int32]
    semantic_stride: int = 1

    def __post_init__(self) -> None:
        n = self.boxes.shape[0]
        h, w = self.panoptic_instance.shape
        s = self.semantic_stride
        if s < 1:
            raise ValueError(f"FramePrediction.semantic_stride: expected >= 1, got {s}")
        if not isinstance(self.masks, MaskCrops):
            raise TypeError(
                f"FramePrediction.masks: expected MaskCrops, got {type(self.masks).__name__} "
                "(MaskCrops.from_dense converts bool[N, H, W] masks)"
            )
        checks = {
            "boxes": (self.boxes.shape, (n, 4)),
            "scores": (self.scores.shape, (n,)),
            "classes": (self.classes.shape, (n,)),
            "masks": (self.masks.shape, (n, h, w)),
            "embeddings": (self.embeddings.shape[:1], (n,)),
            "semantic_probs": (self.semantic_probs.shape[1:], (-(-h // s), -(-w // s))),
            "panoptic_instance": (self.panoptic_instance.shape, (h, w)),
        }
        for name, (got, want) in checks.items():
            if tuple(got) != want:
                raise ValueError(f"FramePrediction.{name}: expected shape {want}, got {tuple(got)}")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def full_semantic_probs(self) -> npt.NDArray[np.float32]:
        """``float32[S + 1, H, W]`` (nearest upsampling of the strided probabilities)."""
        s = self.semantic_stride
        p = self.semantic_probs
        if s == 1:
            return p
        up = np.repeat(np.repeat(p, s, axis=1), s, axis=2)
        return np.ascontiguousarray(up[:, : self.height, : self.width])

    @property
    def height(self) -> int:
        return int(self.panoptic_instance.shape[0])

    @property
    def width(self) -> int:
        return int(self.panoptic_instance.shape[1])
