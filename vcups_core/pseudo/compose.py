"""Composing panoptic pseudo-labels and their training targets (method §2.5).

The steps, in the order the pipeline runs them:

1. **Vote** each track's pseudo-class over its whole track, all frames of the clip
   (:class:`TrackVote` / :func:`track_classes`; streaming, so long clips never sit in memory).
2. **Align**: write each track's class over its mask in every frame (:func:`align_frame`), store
   the aligned semantic map, and count the thing/stuff statistic on it
   (:class:`vcups_core.pseudo.thingstuff.ThingStuffStats`).
3. Once every clip is done: the **thing/stuff split** from the summed statistic
   (:func:`vcups_core.pseudo.thingstuff.thing_stuff_split`).
4. **Compose**: drop the instances whose class is a stuff class and make their pixels void
   (:func:`compose_frame`; CUPS ``ignore_object_proposal_stuff_regions = True``). This needs
   the split, so it runs after step 3 (at load time, or in a second pass over the store).
5. **Training targets** in the CUPS/Detectron2 layout (:func:`training_targets`).

Label conventions (:mod:`vcups_core.types`): semantic maps are ``uint8[H, W]`` pseudo-classes
with :data:`~vcups_core.types.IGNORE_LABEL` (255) = void; instance maps are ``uint16[H, W]``
track ids with :data:`~vcups_core.types.NO_TRACK` (0) = no instance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from vcups_core.pseudo.thingstuff import DEFAULT_NUM_CLASSES, check_label_maps
from vcups_core.types import IGNORE_LABEL, NO_TRACK

# Semantic maps here are uint8 with 255 = void, so a pseudo-class id is < 255.
_MAX_CLASS = IGNORE_LABEL


class TrackVote:
    """Streaming majority vote of each track's pseudo-class over all frames of a clip.

    Every (non-void) pixel of a track's masks votes for its semantic pseudo-class; the track's
    class is the class with the most votes, ties going to the smallest class id.

    Class 0 (CUPS quirk, method §2.5 step 1):

    * ``exclude_class_zero=True`` (default, as the method document states it): class 0 does not
      vote; a track with no other votes (only class-0 or void pixels) gets class 0.
    * ``exclude_class_zero=False``: what CUPS' ``align_semantic_to_instance`` computes when read
      line by line. It relabels class 0 as 255 only so that it survives a multiplication with
      the one-hot instance masks, takes ``torch.mode`` (smallest value among ties) and maps 255
      back to 0. So class 0 does vote, but loses every tie. (CUPS would also count void pixels
      as class 0; here void never votes.)

    Void pixels (255) never vote. A track whose pixels are all void still gets a result (0).

    Args:
        num_classes: number of pseudo-classes ``C``.
        exclude_class_zero: see above.

    Example::

        vote = TrackVote(27)
        for semantic, instance in clip_frames():
            vote.update(semantic, instance)
        track_class = vote.result()           # {track id: pseudo-class}
    """

    def __init__(
        self, num_classes: int = DEFAULT_NUM_CLASSES, *, exclude_class_zero: bool = True
    ) -> None:
        if not 1 <= num_classes <= _MAX_CLASS:
            raise ValueError(f"num_classes must be in [1, {_MAX_CLASS}], got {num_classes}")
        self.num_classes = num_classes
        self.exclude_class_zero = exclude_class_zero
        self._counts: dict[int, npt.NDArray[np.int64]] = {}

    def __len__(self) -> int:
        """Number of tracks seen."""
        return len(self._counts)

    def counts(self, track_id: int) -> npt.NDArray[np.int64]:
        """``int64[C]`` votes of one track (a copy; all votes, class 0 included).

        Raises:
            KeyError: the track was not seen.
        """
        return self._counts[track_id].copy()

    def update(self, semantic: npt.NDArray[Any], instance: npt.NDArray[Any]) -> None:
        """Add one frame's votes.

        Args:
            semantic: ``uint8[H, W]`` pseudo-classes in ``[0, C)``, 255 = void.
            instance: ``uint16[H, W]`` track ids, 0 = no instance.

        Raises:
            ValueError: see :func:`vcups_core.pseudo.thingstuff.check_label_maps`.
        """
        sem, inst = check_label_maps(semantic, instance, self.num_classes)
        inside = inst != NO_TRACK
        ids, index = np.unique(inst[inside], return_inverse=True)
        if ids.size == 0:
            return
        sem_in = sem[inside]
        valid = sem_in != IGNORE_LABEL
        c = self.num_classes
        # One bincount for all tracks: key = track index * C + class.
        votes = np.bincount(
            index.reshape(-1)[valid] * c + sem_in[valid], minlength=ids.size * c
        ).reshape(ids.size, c)
        for track_id, row in zip(ids.tolist(), votes, strict=True):
            current = self._counts.get(track_id)
            if current is None:
                self._counts[track_id] = row.astype(np.int64)
            else:
                current += row

    def merge(self, other: TrackVote) -> TrackVote:
        """Add ``other``'s votes (e.g. another chunk of the same clip) in place; returns ``self``.

        Raises:
            ValueError: ``num_classes`` or ``exclude_class_zero`` differ.
        """
        if (other.num_classes, other.exclude_class_zero) != (
            self.num_classes,
            self.exclude_class_zero,
        ):
            raise ValueError("cannot merge track votes made with different settings")
        for track_id, row in other._counts.items():
            current = self._counts.get(track_id)
            if current is None:
                self._counts[track_id] = row.copy()
            else:
                current += row
        return self

    def result(self) -> dict[int, int]:
        """``{track id: pseudo-class}`` for every track seen, ordered by track id."""
        return {t: self._winner(self._counts[t]) for t in sorted(self._counts)}

    def _winner(self, votes: npt.NDArray[np.int64]) -> int:
        others = votes[1:]
        best = int(np.argmax(others)) + 1 if others.size else 0
        best_votes = int(others.max()) if others.size else 0
        if self.exclude_class_zero:
            return best if best_votes > 0 else 0
        # Class 0 wins only with strictly more votes than every other class.
        return 0 if int(votes[0]) > best_votes or best_votes == 0 else best


def track_classes(
    semantic_maps: Iterable[npt.NDArray[Any]],
    instance_maps: Iterable[npt.NDArray[Any]],
    num_classes: int = DEFAULT_NUM_CLASSES,
    *,
    exclude_class_zero: bool = True,
) -> dict[int, int]:
    """Each track's pseudo-class: the majority over its whole track (see :class:`TrackVote`).

    Args:
        semantic_maps: the clip's ``uint8[H, W]`` semantic maps, in any order (consumed lazily).
        instance_maps: the matching ``uint16[H, W]`` track-id maps, same count.
        num_classes: number of pseudo-classes.
        exclude_class_zero: class 0 does not vote (default; see :class:`TrackVote`).

    Returns:
        ``{track id: pseudo-class}`` ordered by track id (empty if the clip has no instance).

    Raises:
        ValueError: bad maps, or the two iterables differ in length.
    """
    vote = TrackVote(num_classes, exclude_class_zero=exclude_class_zero)
    for semantic, instance in zip(semantic_maps, instance_maps, strict=True):
        vote.update(semantic, instance)
    return vote.result()


def _class_of_pixels(
    instance: npt.NDArray[np.int64], track_class: Mapping[int, int]
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """``(inside, cls)``: the instance pixels and their track's class (``int64[inside.sum()]``)."""
    inside = instance != NO_TRACK
    tracks = instance[inside]
    ids = np.unique(tracks)
    missing = [int(t) for t in ids if int(t) not in track_class]
    if missing:
        raise ValueError(f"track ids {missing[:5]} have no class in track_class")
    classes = np.array([int(track_class[int(t)]) for t in ids], np.int64)
    if classes.size and (int(classes.min()) < 0 or int(classes.max()) >= _MAX_CLASS):
        raise ValueError(f"track classes must be pseudo-classes in [0, {_MAX_CLASS})")
    return inside, classes[np.searchsorted(ids, tracks)]


def align_frame(
    semantic: npt.NDArray[Any],
    instance: npt.NDArray[Any],
    track_class: Mapping[int, int],
) -> npt.NDArray[np.uint8]:
    """Write each track's class over its whole mask (void pixels inside a mask included).

    Args:
        semantic: ``uint8[H, W]`` pseudo-classes, 255 = void.
        instance: ``uint16[H, W]`` track ids, 0 = no instance.
        track_class: ``{track id: pseudo-class}`` (:func:`track_classes`), holding every track
            of the frame.

    Returns:
        ``uint8[H, W]`` aligned semantic map (a new array; pixels outside instances unchanged).

    Raises:
        ValueError: bad maps, or a track of the frame is missing from ``track_class``.
    """
    sem, inst = check_label_maps(semantic, instance, _MAX_CLASS)
    out = sem.astype(np.uint8)
    inside, cls = _class_of_pixels(inst, track_class)
    out[inside] = cls
    return out


def compose_frame(
    semantic: npt.NDArray[Any],
    instance: npt.NDArray[Any],
    track_class: Mapping[int, int],
    thing_classes: Collection[int],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint16]]:
    """Align a frame to its tracks' classes and drop the instances of stuff classes.

    * Each instance's mask gets its track's class (:func:`align_frame`).
    * An instance whose track class is not in ``thing_classes`` is removed (track id 0) and its
      pixels become void (255): CUPS ``ignore_object_proposal_stuff_regions = True``.
    * Pixels outside instances keep their class, thing classes included (CUPS
      ``IGNORE_UNKNOWN_THING_REGIONS: False``).

    Args:
        semantic: ``uint8[H, W]`` pseudo-classes, 255 = void.
        instance: ``uint16[H, W]`` track ids, 0 = no instance.
        track_class: ``{track id: pseudo-class}`` holding every track of the frame.
        thing_classes: the thing pseudo-classes (:func:`~vcups_core.pseudo.thingstuff.thing_stuff_split`).

    Returns:
        ``(semantic', instance')``: ``uint8[H, W]`` and ``uint16[H, W]``, new arrays.

    Raises:
        ValueError: bad maps, or a track of the frame is missing from ``track_class``.
    """
    sem, inst = check_label_maps(semantic, instance, _MAX_CLASS)
    sem_out = sem.astype(np.uint8)
    inst_out = inst.astype(np.uint16)
    inside, cls = _class_of_pixels(inst, track_class)
    is_thing = np.isin(cls, np.fromiter(thing_classes, np.int64))
    sem_out[inside] = np.where(is_thing, cls, IGNORE_LABEL)
    inst_out[inside] = np.where(is_thing, inst[inside], NO_TRACK)
    return sem_out, inst_out


@dataclasses.dataclass(frozen=True)
class TrainingTargets:
    """One frame's training targets in the CUPS/Detectron2 layout (method §1.2, §2.5 step 4).

    Attributes:
        sem_seg: ``uint8[H, W]`` semantic-head target: 0 = any thing class, ``1 + k`` = the k-th
            class of ``stuff_classes``, 255 = ignore (void, dropped stuff instances, classes in
            neither list).
        track_ids: ``int64[N]`` each instance's track id, ascending.
        classes: ``int64[N]`` each instance's class index within ``thing_classes``
            (detection, mask and track heads).
        masks: ``bool[N, H, W]`` instance masks.
        boxes: ``float32[N, 4]`` tight boxes ``(x0, y0, x1, y1)`` in pixels, Detectron2's
            ``BoxMode.XYXY_ABS`` as ``BitMasks.get_bounding_boxes`` makes them: the max side is
            exclusive (a mask covering columns 2..4 has ``x0 = 2, x1 = 5``), like
            :class:`vcups_core.types.Box`.
    """

    sem_seg: npt.NDArray[np.uint8]
    track_ids: npt.NDArray[np.int64]
    classes: npt.NDArray[np.int64]
    masks: npt.NDArray[np.bool_]
    boxes: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return int(self.track_ids.shape[0])

    @property
    def has_instances(self) -> bool:
        """True if the frame has at least one instance (CUPS trains only on such frames,
        ``only_use_non_empty_samples=True``)."""
        return len(self) > 0

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)``."""
        h, w = self.sem_seg.shape
        return int(h), int(w)


def mask_boxes(masks: npt.NDArray[np.bool_]) -> npt.NDArray[np.float32]:
    """Tight boxes of masks, Detectron2 ``BitMasks.get_bounding_boxes`` convention.

    Args:
        masks: ``bool[N, H, W]``.

    Returns:
        ``float32[N, 4]`` ``(x0, y0, x1, y1)`` with exclusive ``x1, y1``; all zeros for an
        empty mask (as Detectron2).
    """
    masks = np.asarray(masks, bool)
    n, h, w = masks.shape
    rows: npt.NDArray[np.bool_] = np.any(masks, axis=2)  # [N, H]
    cols: npt.NDArray[np.bool_] = np.any(masks, axis=1)  # [N, W]
    y0 = rows.argmax(axis=1)
    y1 = h - rows[:, ::-1].argmax(axis=1)
    x0 = cols.argmax(axis=1)
    x1 = w - cols[:, ::-1].argmax(axis=1)
    boxes = np.stack([x0, y0, x1, y1], axis=1).astype(np.float32).reshape(n, 4)
    boxes[~np.any(rows, axis=1)] = 0.0
    return boxes


def training_targets(
    semantic: npt.NDArray[Any],
    instance: npt.NDArray[Any],
    thing_classes: tuple[int, ...] | list[int],
    stuff_classes: tuple[int, ...] | list[int],
    *,
    ignore_unknown_thing_regions: bool = False,
) -> TrainingTargets:
    """A frame's training targets from its composed (or aligned) pseudo-labels.

    * Semantic: thing pseudo-classes → 0, stuff pseudo-class ``stuff_classes[k]`` → ``1 + k``,
      void and classes in neither list → 255.
    * Each instance's class is the majority non-void pseudo-class of its mask (the whole mask
      after :func:`align_frame`; ties to the smallest id). An instance whose class is not a thing
      class, or whose pixels are all void, is dropped and its pixels become 255 (as
      :func:`compose_frame`, so the result is the same for aligned and composed input). CUPS
      uses the mask's *maximum* class instead, which makes an instance with one void pixel
      (e.g. from an augmentation's border) look like a stuff instance; the majority avoids that.
    * Thing pixels outside instances stay 0, unless ``ignore_unknown_thing_regions`` (then 255;
      CUPS ``IGNORE_UNKNOWN_THING_REGIONS``, False in the CUPS training config).

    Args:
        semantic: ``uint8[H, W]`` pseudo-classes, 255 = void.
        instance: ``uint16[H, W]`` track ids, 0 = no instance.
        thing_classes: thing pseudo-classes in head order (:func:`~vcups_core.pseudo.thingstuff.thing_stuff_split`).
        stuff_classes: stuff pseudo-classes in semantic-channel order.
        ignore_unknown_thing_regions: void the thing pixels outside any instance.

    Returns:
        :class:`TrainingTargets` (instances ordered by track id).

    Raises:
        ValueError: bad maps, a class listed twice or in both lists, a class outside
            ``[0, 255)``, or 255 stuff classes.
    """
    things = [int(c) for c in thing_classes]
    stuff = [int(c) for c in stuff_classes]
    listed = things + stuff
    if len(set(listed)) != len(listed):
        raise ValueError("thing_classes and stuff_classes must be disjoint, without repeats")
    if any(not 0 <= c < _MAX_CLASS for c in listed):
        raise ValueError(f"pseudo-classes must be in [0, {_MAX_CLASS})")
    if len(stuff) >= IGNORE_LABEL:
        raise ValueError(f"at most {IGNORE_LABEL - 1} stuff classes (1 + k must stay below 255)")
    sem, inst = check_label_maps(semantic, instance, _MAX_CLASS)
    h, w = sem.shape

    lut = np.full(IGNORE_LABEL + 1, IGNORE_LABEL, np.uint8)
    lut[things] = 0
    lut[stuff] = np.arange(1, len(stuff) + 1, dtype=np.uint8)
    sem_seg = lut[sem]
    if ignore_unknown_thing_regions:
        sem_seg[(inst == NO_TRACK) & (sem_seg == 0)] = IGNORE_LABEL

    inside = inst != NO_TRACK
    ids, index = np.unique(inst[inside], return_inverse=True)
    index = index.reshape(-1)
    n = ids.size
    # Majority class per instance: one bincount over (instance index, class) pairs.
    sem_in = sem[inside]
    valid = sem_in != IGNORE_LABEL
    votes = np.bincount(
        index[valid] * _MAX_CLASS + sem_in[valid], minlength=n * _MAX_CLASS
    ).reshape(n, _MAX_CLASS)
    majority = votes.argmax(axis=1)
    thing_index = np.full(_MAX_CLASS, -1, np.int64)
    thing_index[things] = np.arange(len(things))
    keep = (votes.max(axis=1) > 0) & (thing_index[majority] >= 0)

    labels = np.full((h, w), -1, np.int64)  # instance index per pixel, -1 = none
    labels[inside] = index
    dropped = ~keep
    if dropped.any():
        sem_seg[inside & dropped[labels.clip(min=0)]] = IGNORE_LABEL

    kept = np.flatnonzero(keep)
    masks = labels[None, :, :] == kept[:, None, None]
    return TrainingTargets(
        sem_seg=sem_seg,
        track_ids=ids[kept].astype(np.int64),
        classes=thing_index[majority[kept]],
        masks=masks,
        boxes=mask_boxes(masks),
    )
