"""Oracle pseudo-labels: a synthetic bag's ground truth written as a pseudo-label store.

For ablations only, never a result: training can be developed against perfect labels, and the
benchmark can compare "trained on oracle labels" with "trained on real pseudo-labels". The store
has exactly the layout of one made by ``vcups pseudo-labels`` (:mod:`vcups_core.pseudo.store`), so
:func:`~vcups_core.pseudo.store.read_store` and
:meth:`~vcups_core.pseudo.store.StoreClip.targets` read it unchanged:

* one clip per bag, named and sourced as the real pipeline does
  (:func:`~vcups_core.pseudo.sources.open_source`: the bag's name; ``source = {kind: bag, path,
  topic}``, so :meth:`StoreClip.frames` re-reads the camera frames); frame stems are the camera
  messages' header stamps in ns;
* ``instance/<stem>.png``: ``uint16`` track ids of the **thing** instances of ``/gt/instance``
  (0 elsewhere). The ground-truth ids are stable over the clip and kept as they are (the bag
  stores them as 16-bit images, so they already fit);
* ``semantic/<stem>.png``: ``uint8`` ground-truth category of ``/gt/semantic`` (Cityscapes train
  ids, 255 = void) as the pseudo-class;
* each clip's status record holds the ground truth's thing/stuff statistic, like the semantic
  stage's records;
* the manifest's ``thing_classes``/``stuff_classes`` are exactly the synthetic world's categories
  (:data:`vcups_core.data.oracle.THING_CLASSES`, ``STUFF_CLASSES``, the oracle predictor's
  :data:`~vcups_core.data.oracle.CATEGORIES`): the config's ``fixed_split`` (see
  :func:`vcups_core.pseudo.store.fixed_split`), not a split of the statistics, which would drop a
  thing class that no clip shows. It says what it is: ``"labels": "oracle-ground-truth"`` at its
  top level, every cue backend ``"oracle"``, and :class:`OracleLabelConfig` as its config.

The ground truth of a frame is the ``/gt/instance`` and ``/gt/semantic`` messages with the camera
message's header stamp (:func:`~vcups_core.data.rosbag.write_synthetic_bag` stamps them alike).
Labels are resized to the processing size like the real pipeline's (``height``/``width`` of the
config, native when both are 0) with nearest-neighbour interpolation.

Resume, overwrite and atomic writes are :class:`~vcups_core.pseudo.store.StoreWriter`'s: a
finished clip is skipped, a store of another config is refused unless ``overwrite``, and an
error inside a clip (a damaged bag, a frame without ground truth) marks that clip ``failed`` with a
one-line reason while the others go on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from vcups_core.config import option, section
from vcups_core.data.oracle import STUFF_CLASSES, THING_CLASSES
from vcups_core.data.rosbag import GT_TOPICS, BagFrameReader, BagMessage, list_topics
from vcups_core.jobs import select_shard, terminate_as_interrupt
from vcups_core.pseudo.pipeline import ClipFailed, one_line
from vcups_core.pseudo.sources import SourceClip, SourceSpec, open_source, processing_size
from vcups_core.pseudo.store import ClipRecord, ClipStatus, StoreWriter
from vcups_core.pseudo.thingstuff import ThingStuffStats
from vcups_core.rosmsg import image_msg_to_array
from vcups_core.types import NO_TRACK

log = logging.getLogger(__name__)

ORACLE_LABELS = "oracle-ground-truth"
"""Value of the manifest's top-level ``labels`` key (and of the config's ``labels``)."""
ORACLE_BACKENDS: dict[str, str] = {
    "depth": "oracle",
    "flow": "oracle",
    "instances": "oracle",
    "motion": "oracle",
    "semantics": "oracle",
}
"""The manifest's ``cue_backends``: every label comes from the ground truth."""


@dataclass(frozen=True)
class FixedSplitSection:
    thing_classes: tuple[int, ...] = option(
        THING_CLASSES, "thing pseudo-classes, in detection-head order", ge=0, lt=255
    )
    stuff_classes: tuple[int, ...] = option(
        STUFF_CLASSES, "stuff pseudo-classes, in semantic-channel order", ge=0, lt=255
    )


@dataclass(frozen=True)
class OracleLabelConfig:
    """What an oracle store is made with (its hash tags the store like a pseudo-label config)."""

    labels: str = option(ORACLE_LABELS, "what the labels are", choices=(ORACLE_LABELS,))
    height: int = option(0, "label height (pixels); 0 with width 0 = native size", ge=0)
    width: int = option(0, "label width (pixels); 0 with height 0 = native size", ge=0)
    num_classes: int = option(
        19, "class count of the thing/stuff statistic (Cityscapes train ids)", ge=1, le=255
    )
    instance_topic: str = option(GT_TOPICS["instance"], "ground-truth track ids (16UC1)")
    semantic_topic: str = option(GT_TOPICS["semantic"], "ground-truth train ids (mono8)")
    fixed_split: FixedSplitSection = section(  # noqa: RUF009 - a default_factory field
        FixedSplitSection, "the store's thing/stuff split (the synthetic world's categories)"
    )


def write_oracle_store(
    bags: Path | Sequence[Path],
    store: Path,
    *,
    topic: str = "/camera/image_raw",
    cfg: OracleLabelConfig | None = None,
    shard: tuple[int, int] = (0, 1),
    overwrite: bool = False,
) -> Path:
    """Write the ground truth of synthetic bags as a pseudo-label store (see the module doc).

    Args:
        bags: rosbag2 folders or ``.mcap`` files written by
            :func:`~vcups_core.data.rosbag.write_synthetic_bag` (with ground truth), one clip each.
        store: the store folder (created if missing).
        topic: the camera image topic (frame stems, and what ``StoreClip.frames()`` re-reads).
        cfg: label size, ground-truth topics and split (default :class:`OracleLabelConfig`).
        shard: ``(index, count)``: this process takes bags ``index, index + count, ...``.
        overwrite: replace a store made with another config.

    Returns:
        ``store``. Clips that failed are recorded ``failed`` (with the reason) in the manifest.

    Raises:
        FileNotFoundError: a bag is missing.
        ValueError: ``topic`` is not an image topic of a bag; a bag has no ground-truth topic
            (the message names the bag and the topic); two bags share a name; an invalid
            shard.
        StoreConfigError: the store was made with another config and ``overwrite`` is False.
        KeyboardInterrupt: Ctrl-C or SIGTERM (after recording the clip and the manifest).
    """
    cfg = cfg or OracleLabelConfig()
    spec = SourceSpec.bag(bags, topic)
    clips = open_source(spec)
    for path in spec.paths:
        _check_ground_truth(path, cfg)
    names = [c.name for c in clips]
    mine = select_shard(clips, *shard)
    writer = StoreWriter(store, cfg, overwrite=overwrite)
    todo = [c for c in mine if not writer.is_finished(c.name)]
    log.info(
        "%s: %d oracle clips, %d in this shard, %d to do", store, len(clips), len(mine), len(todo)
    )
    try:
        with terminate_as_interrupt():
            for clip in todo:
                write_oracle_clip(clip, writer, cfg)
    finally:
        writer.write_manifest(
            backends=ORACLE_BACKENDS, expected_clips=names, extra={"labels": ORACLE_LABELS}
        )
    return Path(store)


def _check_ground_truth(bag: Path, cfg: OracleLabelConfig) -> None:
    """Raise ``ValueError`` naming the bag and the topic if a ground-truth topic is missing."""
    topics = list_topics(bag)
    present = {t.name for t in topics}
    for gt_topic in (cfg.instance_topic, cfg.semantic_topic):
        if gt_topic not in present:
            listing = ", ".join(t.name for t in topics) or "none"
            raise ValueError(
                f"{bag}: no ground-truth topic {gt_topic!r}; oracle labels need a synthetic bag "
                f"written with ground truth (vcups synth); topics in the bag: {listing}"
            )


def write_oracle_clip(clip: SourceClip, writer: StoreWriter, cfg: OracleLabelConfig) -> ClipRecord:
    """Write one bag's ground truth as a clip of ``writer``'s store (from scratch) and record it.

    ``clip`` must be a bag clip (:func:`~vcups_core.pseudo.sources.open_bag_clip`).

    Returns:
        The clip's record (``done``, or ``failed`` with the reason).

    Raises:
        KeyboardInterrupt: after recording the clip as ``interrupted``.
    """
    start = time.perf_counter()
    writer.begin_clip(clip.name, semantic=True)
    things = np.asarray(cfg.fixed_split.thing_classes, np.int64)
    stats = ThingStuffStats(cfg.num_classes)
    stems: list[str] = []
    seen: set[str] = set()
    size: tuple[int, int] | None = None
    status: ClipStatus = "done"
    error: str | None = None
    try:
        for stem, semantic, instance in ground_truth_frames(clip, cfg):
            if stem in seen:
                raise ClipFailed(f"two frames have the stem {stem!r} (equal stamps)")
            if size is None:
                size = processing_size(
                    (semantic.shape[0], semantic.shape[1]), cfg.height, cfg.width
                )
            seen.add(stem)
            stems.append(stem)
            semantic, instance = oracle_labels(semantic, instance, things, size)
            stats.update(semantic, instance)
            writer.write_semantic(clip.name, stem, semantic)
            writer.write_instance(clip.name, stem, instance)
        if not stems:
            raise ClipFailed(f"no frames on {clip.source['topic']}")
    except KeyboardInterrupt:
        writer.remove_scratch(clip.name)
        _record(writer, clip, "interrupted", "interrupted", stems, size, start, None)
        raise
    except Exception as exc:
        status, error = "failed", one_line(exc)
        log.warning("clip %s failed: %s", clip.name, error)
    writer.remove_scratch(clip.name)
    thing_stuff = stats.to_dict() if status == "done" else None
    return _record(writer, clip, status, error, stems, size, start, thing_stuff)


def _record(
    writer: StoreWriter,
    clip: SourceClip,
    status: ClipStatus,
    error: str | None,
    stems: list[str],
    size: tuple[int, int] | None,
    start: float,
    thing_stuff: dict[str, Any] | None,
) -> ClipRecord:
    return writer.record_clip(
        clip.name,
        status,
        stems,
        error=error,
        seconds=time.perf_counter() - start,
        size=size,
        backends=ORACLE_BACKENDS,
        source=clip.source,
        thing_stuff=thing_stuff,
    )


def oracle_labels(
    semantic: npt.NDArray[np.uint8],
    instance: npt.NDArray[Any],
    thing_classes: npt.NDArray[np.int64],
    size: tuple[int, int],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint16]]:
    """One frame's store labels from its ground truth.

    Args:
        semantic: ``uint8[H, W]`` ground-truth category ids, 255 = void.
        instance: ``uint8/uint16[H, W]`` ground-truth track ids, 0 = none.
        thing_classes: ``int64[K]`` the thing category ids.
        size: ``(height, width)`` of the labels (nearest-neighbour resize if it differs).

    Returns:
        ``(semantic, instance)``: ``uint8[h, w]`` category ids (255 = void) and ``uint16[h, w]``
        track ids of thing pixels only (0 elsewhere).
    """
    sem: npt.NDArray[Any] = np.asarray(semantic, np.uint8)
    inst: npt.NDArray[Any] = np.asarray(instance).astype(np.uint16, copy=False)
    if sem.shape != tuple(size):
        dsize = (size[1], size[0])
        sem = cv2.resize(sem, dsize, interpolation=cv2.INTER_NEAREST)
        inst = cv2.resize(inst, dsize, interpolation=cv2.INTER_NEAREST)
    tracks = np.where(np.isin(sem, thing_classes), inst, NO_TRACK).astype(np.uint16)
    return np.ascontiguousarray(sem, np.uint8), tracks


def ground_truth_frames(
    clip: SourceClip, cfg: OracleLabelConfig
) -> Iterator[tuple[str, npt.NDArray[np.uint8], npt.NDArray[Any]]]:
    """The bag clip's frames as ``(stem, semantic, instance)``, in camera order.

    ``stem`` is the camera message's header stamp in ns (as :func:`~vcups_core.pseudo.sources.open_bag_clip` names frames);
    ``semantic`` is ``uint8[H, W]`` and ``instance`` ``uint8/uint16[H, W]``, both at the camera
    frame's native size. Camera pixels are not decoded.

    Raises (while iterating):
        ClipFailed: a frame has no ground truth with its stamp, or ground truth of another size or
            encoding.
        BagReadError: the bag is damaged.
    """
    path = Path(str(clip.source["path"]))
    camera = BagFrameReader(path, str(clip.source["topic"])).messages()
    semantic = _StampedStream(path, cfg.semantic_topic)
    instance = _StampedStream(path, cfg.instance_topic)
    try:
        for message in camera:
            stamp = message.stamp_ns
            shape = (int(message.msg.height), int(message.msg.width))
            sem = semantic.take(stamp, shape)
            inst = instance.take(stamp, shape)
            if sem.dtype != np.uint8:
                raise ClipFailed(
                    f"{cfg.semantic_topic}: expected mono8 category ids, got {sem.dtype}"
                )
            if inst.dtype not in (np.uint8, np.uint16):
                raise ClipFailed(
                    f"{cfg.instance_topic}: expected 16UC1 track ids, got {inst.dtype}"
                )
            yield str(stamp), sem, inst
    finally:  # close the bag readers now, also when the caller stops early
        _close(camera)
        semantic.close()
        instance.close()


class _StampedStream:
    """Messages of one ground-truth topic looked up by header stamp, in increasing stamp order
    (bounded memory: messages with smaller stamps than the one asked for are skipped)."""

    def __init__(self, bag: Path, topic: str) -> None:
        self._messages = BagFrameReader(bag, topic).messages()
        self._head: BagMessage | None = None
        self.topic = topic

    def close(self) -> None:
        """Close the bag reader."""
        _close(self._messages)

    def take(self, stamp_ns: int, shape: tuple[int, int]) -> npt.NDArray[Any]:
        """The ``[H, W]`` array of the message stamped ``stamp_ns`` (of size ``shape``)."""
        while self._head is None or self._head.stamp_ns < stamp_ns:
            self._head = next(self._messages, None)
            if self._head is None:
                raise ClipFailed(f"{self.topic} has no message stamped {stamp_ns} (it ended)")
        if self._head.stamp_ns != stamp_ns:
            raise ClipFailed(
                f"{self.topic} has no message stamped {stamp_ns} (next: {self._head.stamp_ns})"
            )
        array = image_msg_to_array(self._head.msg)
        if array.shape != shape:
            raise ClipFailed(
                f"{self.topic} at {stamp_ns} is {list(array.shape)}, the camera frame {list(shape)}"
            )
        return array


def _close(messages: Iterator[Any]) -> None:
    """Close a generator (its bag reader) that may not have run to its end."""
    close = getattr(messages, "close", None)
    if close is not None:
        close()
