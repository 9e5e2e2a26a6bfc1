"""Label-efficient fine-tuning data: a dataset's annotated frames written as a pseudo-label store.

``vcups train --finetune-from CKPT --dataset NAME:ROOT [--split S]`` trains on ground-truth classes
instead of pseudo-classes. The training loop reads only pseudo-label stores
(:mod:`vcups_core.pseudo.store`), so :func:`finetune_store` writes the ground truth of a registered
dataset (:data:`vcups_core.data.registry.READERS`) as one, readable unchanged by
:func:`~vcups_core.pseudo.store.read_store` and
:meth:`~vcups_core.pseudo.store.StoreClip.targets`:

* one store clip per dataset clip that has at least one annotated frame, named like the dataset's
  clip; **only the annotated frames** are its frames (a Cityscapes-VPS video of 30 frames gives 6);
* the frames' images are copied, at the dataset's native size and losslessly as PNG, to
  ``<STORE>_frames/<clip>/<stem>.png`` (:func:`frames_root`: a sibling folder of the store named
  after it, e.g. ``OUT/gt_store`` -> ``OUT/gt_store_frames``), and the clip's ``source`` is that
  folder (``{kind: frames, path}``), so :meth:`StoreClip.frames` re-reads exactly the annotated
  frames, in order;
* ``<stem>`` is the frame's ``stamp_ns`` as 19 decimal digits: names sort in time order and
  :func:`~vcups_core.pseudo.sources.open_frames_clip` takes them as the stamps, so the spacing of
  the annotated frames (every 5th frame of Cityscapes-VPS) is kept;
* ``instance/<stem>.png``: ``uint16`` instance (track) ids of the **thing** pixels, 0 elsewhere
  (stuff, void, crowd regions). The dataset's ids are kept when they all lie in ``1..65535``; else
  a clip's ids are renumbered ``1..n`` in ascending order, the same number in every frame;
* ``semantic/<stem>.png``: ``uint8`` dataset class id (Cityscapes train id for the driving
  datasets) as the pseudo-class, 255 = void; classes the descriptor does not evaluate
  (``evaluated_ids``, e.g. Waymo's wall, fence, terrain) are void too;
* the manifest's ``thing_classes``/``stuff_classes`` are the descriptor's thing and stuff classes
  (ascending), through the config's ``fixed_split`` (:func:`vcups_core.pseudo.store.fixed_split`),
  so a class no frame shows is kept; the manifest says ``"labels": "ground-truth"`` and names the
  frames folder (``"frames"``); every cue backend is ``"ground-truth"``; each status record holds
  the ground truth's thing/stuff statistic.

Resume, overwrite and atomic writes are :class:`~vcups_core.pseudo.store.StoreWriter`'s: a clip
whose record is ``done`` under the same config (dataset, resolved root, split, split of classes),
with the same annotated stems, its label PNGs and its frame PNGs, is skipped; any other clip is
redone from scratch (its frames folder too); a store of another config is refused unless
``overwrite``. The whole call holds a lock (``<STORE>_frames/.lock``), so torchrun ranks that all
call it convert the dataset once: the first converts, the others then find every clip finished.
A clip that cannot be converted (a damaged image, a label of another size) is recorded ``failed``
with a one-line reason while the others go on.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vcups_core.config import option, section
from vcups_core.data.clip import Clip, ClipFrame, PanopticLabel
from vcups_core.data.datasets import DatasetDescriptor, get_descriptor
from vcups_core.data.registry import open_dataset
from vcups_core.jobs import atomic_write_png, file_lock, terminate_as_interrupt
from vcups_core.pseudo.oracle_store import FixedSplitSection
from vcups_core.pseudo.pipeline import ClipFailed, one_line
from vcups_core.pseudo.sources import IMAGE_SUFFIXES, SourceSpec, read_image
from vcups_core.pseudo.store import PNG, ClipRecord, ClipStatus, StoreWriter, check_name
from vcups_core.pseudo.thingstuff import ThingStuffStats
from vcups_core.types import IGNORE_LABEL, NO_TRACK

log = logging.getLogger(__name__)

GT_LABELS = "ground-truth"
"""Value of the manifest's top-level ``labels`` key (and of the config's ``labels``)."""
GT_BACKENDS: dict[str, str] = {"instances": GT_LABELS, "semantics": GT_LABELS}
"""The manifest's ``cue_backends``: every label comes from the dataset's annotation."""
FRAMES_SUFFIX = "_frames"
"""The frames folder of store ``S`` is ``S.parent / (S.name + FRAMES_SUFFIX)``."""
LOCK_FILE = ".lock"
MAX_TRACK_ID = 65535
STEM_DIGITS = 19


@dataclass(frozen=True)
class FinetuneLabelConfig:
    """What a ground-truth store is made with (its hash tags the store like a pseudo-label
    config: another dataset, root, split or class split is another store)."""

    labels: str = option(GT_LABELS, "what the labels are", choices=(GT_LABELS,))
    dataset: str = option("", "registered dataset name (vcups_core.data.registry.READERS)")
    root: str = option("", "the dataset's root folder (resolved)")
    split: str = option("", "the dataset split; empty = the reader's default")
    fixed_split: FixedSplitSection = section(  # noqa: RUF009 - a default_factory field
        FixedSplitSection, "the store's thing/stuff split (the dataset's classes)"
    )


def frames_root(store: Path) -> Path:
    """Where :func:`finetune_store` copies the frames of ``store``: ``<STORE>_frames``."""
    store = Path(store)
    return store.parent / f"{store.name}{FRAMES_SUFFIX}"


def frame_stem(frame: ClipFrame) -> str:
    """A frame's store stem: its ``stamp_ns`` as 19 decimal digits (see the module doc).

    Raises:
        ValueError: the stamp is negative or does not fit 19 digits.
    """
    if not 0 <= frame.stamp_ns < 10**STEM_DIGITS:
        raise ValueError(f"{frame.image_path}: stamp {frame.stamp_ns} ns does not fit a frame stem")
    return f"{frame.stamp_ns:0{STEM_DIGITS}d}"


def finetune_config(name: str, root: Path, split: str | None) -> FinetuneLabelConfig:
    """The config of the ground-truth store of dataset ``name`` at ``root`` (split ``split``).

    Raises:
        ValueError: unknown dataset (the message lists the known ones).
    """
    descriptor = get_descriptor(name)
    return FinetuneLabelConfig(
        dataset=name,
        root=str(Path(root).resolve()),
        split=split or "",
        fixed_split=FixedSplitSection(
            thing_classes=tuple(sorted(descriptor.thing_ids)),
            stuff_classes=tuple(sorted(descriptor.stuff_ids)),
        ),
    )


def finetune_store(
    dataset: str, split: str | None, store: Path, *, overwrite: bool = False
) -> Path:
    """Write the annotated frames of a dataset split as a pseudo-label store (see the module doc).

    Args:
        dataset: ``"NAME:ROOT"``, e.g. ``"kitti-step:/data/kitti-step"``.
        split: the split to read; None = the reader's default.
        store: the store folder (created if missing); the frames go to :func:`frames_root`.
        overwrite: replace a store made with another config.

    Returns:
        ``store``. Clips that failed are recorded ``failed`` (with the reason) in the manifest.

    Raises:
        ValueError: ``dataset`` is not ``NAME:ROOT``; an unknown dataset name (the message lists
            the known ones); a bad split; the split has no annotated frame.
        FileNotFoundError: the root is missing or lacks the dataset's layout.
        StoreConfigError: the store was made with another config and ``overwrite`` is False.
        KeyboardInterrupt: Ctrl-C or SIGTERM (after recording the clip and the manifest).
    """
    spec = SourceSpec.parse_dataset(dataset, split)
    name, root = str(spec.dataset), spec.paths[0]
    descriptor = get_descriptor(name)
    if not root.is_dir():
        what = "not a folder" if root.exists() else "no such folder"
        raise FileNotFoundError(f"{root}: {name} dataset root not found ({what})")
    cfg = finetune_config(name, root, split)
    clips = [c for c in open_dataset(name, root, split) if c.annotated]
    if not clips:
        raise ValueError(
            f"{root}: {name} split {split or '(default)'} has no annotated frame to fine-tune on"
        )
    names = [check_name(c.name) for c in clips]
    if len(set(names)) != len(names):
        raise ValueError(f"{root}: {name} has two clips of the same name")
    store = Path(store)
    frames = frames_root(store)
    frames.mkdir(parents=True, exist_ok=True)
    with file_lock(frames / LOCK_FILE):
        writer = StoreWriter(store, cfg, overwrite=overwrite)
        todo = [c for c in clips if not is_clip_finished(writer, frames, c)]
        log.info("%s: %d annotated %s clips, %d to do", store, len(clips), name, len(todo))
        try:
            with terminate_as_interrupt():
                for clip in todo:
                    write_ground_truth_clip(clip, writer, frames / clip.name, descriptor)
        finally:
            writer.write_manifest(
                backends=GT_BACKENDS,
                expected_clips=names,
                extra={"labels": GT_LABELS, "frames": str(frames.resolve())},
            )
        _remove_stale_frame_folders(frames, writer)
    return store


def annotated_stems(clip: Clip) -> tuple[str, ...]:
    """The store stems of the clip's annotated frames, in clip order."""
    return tuple(frame_stem(f) for f in clip.annotated)


def is_clip_finished(writer: StoreWriter, frames: Path, clip: Clip) -> bool:
    """True if the store holds the clip finished (:meth:`StoreWriter.is_finished`) with the
    clip's current annotated stems, and ``frames/<clip>`` holds exactly one PNG per stem."""
    if not writer.is_finished(clip.name):
        return False
    record = writer.record(clip.name)
    try:
        stems = annotated_stems(clip)
    except ValueError:
        return False
    if record is None or record.stems != stems:
        return False
    folder = frames / clip.name
    try:
        names = {
            p.name
            for p in folder.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        }
    except OSError:
        return False
    return names == {f"{s}{PNG}" for s in stems}


def write_ground_truth_clip(
    clip: Clip, writer: StoreWriter, folder: Path, descriptor: DatasetDescriptor
) -> ClipRecord:
    """Write one clip's annotated frames (images to ``folder``, labels to ``writer``'s store),
    from scratch, and record it.

    Returns:
        The clip's record (``done``, or ``failed`` with the reason).

    Raises:
        KeyboardInterrupt: after recording the clip as ``interrupted``.
    """
    start = time.perf_counter()
    writer.begin_clip(clip.name, semantic=True)
    if folder.is_dir():
        shutil.rmtree(folder)
    elif folder.exists():
        folder.unlink()
    folder.mkdir(parents=True)
    source = {"kind": "frames", "path": str(folder.resolve())}
    stats = ThingStuffStats(descriptor.num_classes)
    stems: list[str] = []
    size: tuple[int, int] | None = None
    status: ClipStatus = "done"
    error: str | None = None
    try:
        frames = clip.annotated
        wanted = annotated_stems(clip)
        if list(wanted) != sorted(set(wanted)):
            raise ClipFailed("the annotated frames' stamps do not increase")
        ids = clip_track_ids(frames, descriptor)
        for frame, stem in zip(frames, wanted, strict=True):
            label = frame.label()
            assert label is not None  # an annotated frame
            image = read_image(frame.image_path)
            if image.shape[:2] != label.shape:
                raise ClipFailed(
                    f"{frame.image_path}: image {list(image.shape[:2])} but label "
                    f"{list(label.shape)}"
                )
            if size is None:
                size = label.shape
            elif label.shape != size:
                raise ClipFailed(
                    f"{frame.image_path}: {list(label.shape)}, the clip's first frame {list(size)}"
                )
            semantic, instance = ground_truth_maps(label, descriptor, ids)
            stats.update(semantic, instance)
            atomic_write_png(folder / f"{stem}{PNG}", image)
            writer.write_semantic(clip.name, stem, semantic)
            writer.write_instance(clip.name, stem, instance)
            stems.append(stem)
    except KeyboardInterrupt:
        writer.remove_scratch(clip.name)
        _record(writer, clip, "interrupted", "interrupted", stems, size, start, source, None)
        raise
    except Exception as exc:
        status, error = "failed", one_line(exc)
        log.warning("clip %s failed: %s", clip.name, error)
    writer.remove_scratch(clip.name)
    thing_stuff = stats.to_dict() if status == "done" else None
    return _record(writer, clip, status, error, stems, size, start, source, thing_stuff)


def _record(
    writer: StoreWriter,
    clip: Clip,
    status: ClipStatus,
    error: str | None,
    stems: list[str],
    size: tuple[int, int] | None,
    start: float,
    source: dict[str, Any],
    thing_stuff: dict[str, Any] | None,
) -> ClipRecord:
    return writer.record_clip(
        clip.name,
        status,
        stems,
        error=error,
        seconds=time.perf_counter() - start,
        size=size,
        backends=GT_BACKENDS,
        source=source,
        thing_stuff=thing_stuff,
    )


def _thing_pixels(
    label: PanopticLabel, descriptor: DatasetDescriptor
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """The label's semantic map with non-evaluated classes void, and its thing instance pixels."""
    lut = np.full(256, IGNORE_LABEL, np.uint8)
    evaluated = sorted(descriptor.evaluated_ids)
    lut[evaluated] = evaluated
    semantic = lut[label.semantic]
    things = np.fromiter(sorted(descriptor.thing_ids), np.int64)
    return semantic, np.isin(semantic, things) & (label.instance != 0)


def clip_track_ids(
    frames: Sequence[ClipFrame], descriptor: DatasetDescriptor
) -> npt.NDArray[np.int64] | None:
    """The sorted instance ids on the thing pixels of the frames' labels if they must be
    renumbered (one lies outside ``1..65535``), else None (kept as they are).

    Raises:
        ClipFailed: more than 65535 instances.
    """
    found = []
    for frame in frames:
        label = frame.label()
        if label is None:
            continue
        _, inside = _thing_pixels(label, descriptor)
        found.append(np.unique(label.instance[inside]).astype(np.int64))
    ids = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
    if ids.size == 0 or (int(ids[0]) >= 1 and int(ids[-1]) <= MAX_TRACK_ID):
        return None
    if ids.size > MAX_TRACK_ID:
        raise ClipFailed(f"{ids.size} instances; at most {MAX_TRACK_ID} fit a 16-bit track id")
    return ids


def ground_truth_maps(
    label: PanopticLabel,
    descriptor: DatasetDescriptor,
    track_ids: npt.NDArray[np.int64] | None = None,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint16]]:
    """One frame's store labels from its ground truth.

    Args:
        label: the frame's ground truth in the dataset's class ids.
        descriptor: the dataset's descriptor (thing and evaluated classes).
        track_ids: the clip's sorted thing instance ids to renumber ``1..n``
            (:func:`clip_track_ids`), or None to keep the ids.

    Returns:
        ``(semantic, instance)``: ``uint8[H, W]`` class ids with void and non-evaluated classes
        255, and ``uint16[H, W]`` instance ids on thing pixels, 0 elsewhere.
    """
    semantic, inside = _thing_pixels(label, descriptor)
    ids = label.instance.astype(np.int64)
    if track_ids is not None:
        ids = np.searchsorted(track_ids, ids) + 1
    instance = np.where(inside, ids, NO_TRACK).astype(np.uint16)
    return np.ascontiguousarray(semantic), instance


def _remove_stale_frame_folders(frames: Path, writer: StoreWriter) -> None:
    """Remove the frame folders of clips the store holds no record of under its config (those
    ``overwrite`` removed)."""
    for path in frames.iterdir():
        if path.is_dir() and not path.name.startswith("."):
            record = writer.record(path.name)
            if record is None or record.config_hash != writer.config_hash:
                shutil.rmtree(path)
