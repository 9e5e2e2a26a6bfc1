"""KITTI-STEP (Weber et al., NeurIPS 2021 datasets track; deeplab2 layout): reader and writer.

On-disk layout::

    <root>/images/<split>/<seq:04d>/<frame:06d>.png          RGB frames, numbered from 000000
    <root>/panoptic_maps/<split>/<seq:04d>/<frame:06d>.png   one label per frame (train, val)

Pixel encoding of a panoptic map: 8-bit RGB with ``R`` = semantic Cityscapes train id (255 = void)
and instance id = ``G * 256 + B``. Only person (11) and car (13) carry instance ids, which are
track ids consistent over the sequence; instance 0 on a person or car pixel is a crowd region.

Reading: one :class:`~vcups_core.data.clip.Clip` per sequence (named by its folder, e.g.
``"0002"``), every frame in frame-number order; a frame is annotated if its panoptic map exists
(the test split has none). ``stamp_ns`` = frame number × 1e9 / 10 fps. Labels: semantic = ``R``;
instance = ``G * 256 + B`` on person and car pixels, 0 elsewhere.

Writing: the same layout from :class:`~vcups_core.data.clip.LabeledClip` s named by sequence number.
Instance ids of classes other than person and car are dropped (written as 0), because KITTI-STEP
tracks only those two; frames without a label get an image and no panoptic map.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from vcups_core.data.clip import Clip, ClipFrame, LabeledClip, PanopticLabel
from vcups_core.data.datasets import KITTI_STEP
from vcups_core.types import IGNORE_LABEL

_MAX_INSTANCE = 65535  # G * 256 + B


def read_kitti_step(root: Path, split: str = "val") -> Iterator[Clip]:
    """Read the sequences of one split.

    Args:
        root: dataset root (holds ``images/`` and ``panoptic_maps/``).
        split: ``"train"``, ``"val"`` or ``"test"``.

    Returns:
        The clips in ascending sequence name; see the module docstring for frames and labels.

    Raises:
        FileNotFoundError: if ``<root>/images/<split>`` is missing (checked at once).
        ValueError: when a label is loaded, if its PNG is not 8-bit RGB or holds a semantic value
            that is neither a train id 0..18 nor 255.
    """
    root = Path(root)
    image_dir = root / "images" / split
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{image_dir}: KITTI-STEP image folder not found")
    return _iter_clips(image_dir, root / "panoptic_maps" / split)


def _iter_clips(image_dir: Path, label_dir: Path) -> Iterator[Clip]:
    for seq_dir in sorted(p for p in image_dir.iterdir() if p.is_dir()):
        frames = []
        paths = sorted(
            (p for p in seq_dir.glob("*.png") if p.stem.isdigit()), key=lambda p: int(p.stem)
        )
        for index, path in enumerate(paths):
            label_path = label_dir / seq_dir.name / path.name
            load = functools.partial(_load_label, label_path) if label_path.is_file() else None
            stamp_ns = round(int(path.stem) * 1e9 / KITTI_STEP.fps)
            frames.append(ClipFrame(index, stamp_ns, path, load))
        yield Clip(seq_dir.name, KITTI_STEP.name, tuple(frames))


def _load_label(path: Path) -> PanopticLabel:
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if bgr is None:
        raise FileNotFoundError(f"{path}: missing or not a readable PNG")
    if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] not in (3, 4):
        raise ValueError(
            f"{path}: expected an 8-bit RGB panoptic map, got {bgr.dtype}{list(bgr.shape)}"
        )
    semantic = np.ascontiguousarray(bgr[:, :, 2], dtype=np.uint8)
    bad = (semantic >= KITTI_STEP.num_classes) & (semantic != IGNORE_LABEL)
    if bad.any():
        raise ValueError(
            f"{path}: semantic (R) value {int(semantic[bad][0])} is not a train id "
            f"0..{KITTI_STEP.num_classes - 1} or {IGNORE_LABEL}"
        )
    instance = bgr[:, :, 1].astype(np.int32) * 256 + bgr[:, :, 0].astype(np.int32)
    tracked = np.isin(semantic, np.fromiter(KITTI_STEP.tracked_ids, np.int64))
    return PanopticLabel(semantic, np.where(tracked, instance, 0).astype(np.int32))


def write_kitti_step(clips: Iterable[LabeledClip], root: Path, split: str = "val") -> None:
    """Write clips as a KITTI-STEP split (``images/<split>/``, ``panoptic_maps/<split>/``).

    Args:
        clips: each clip's name is its sequence number (``"0"`` .. ``"9999"``).
        root: dataset root; created if missing, existing files of the same names are replaced.
        split: split name.

    Raises:
        ValueError: on a non-numeric or repeated clip name, a class id outside 0..18 (other than
            255), an instance id above 65535, or an image/label size mismatch.
        OSError: if a file cannot be written.
    """
    root = Path(root)
    seen: set[int] = set()
    tracked = np.fromiter(KITTI_STEP.tracked_ids, np.int64)
    for clip in clips:
        if not clip.name.isdigit() or int(clip.name) > 9999:
            raise ValueError(f"clip name {clip.name!r}: expected a sequence number 0..9999")
        seq = int(clip.name)
        if seq in seen:
            raise ValueError(f"clip name {clip.name!r}: sequence {seq} written twice")
        seen.add(seq)
        image_dir = root / "images" / split / f"{seq:04d}"
        label_dir = root / "panoptic_maps" / split / f"{seq:04d}"
        image_dir.mkdir(parents=True, exist_ok=True)
        for pos, (image, label) in enumerate(zip(clip.images, clip.labels, strict=True)):
            where = f"clip {clip.name!r} frame {pos}"
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(
                    f"{where}: image must be uint8[H, W, 3], got {image.dtype}{list(image.shape)}"
                )
            _write_png(image_dir / f"{pos:06d}.png", image[:, :, ::-1])
            if label is None:
                continue
            if label.shape != image.shape[:2]:
                raise ValueError(f"{where}: label {label.shape} != image {image.shape[:2]}")
            label_dir.mkdir(parents=True, exist_ok=True)
            _write_png(label_dir / f"{pos:06d}.png", _encode(where, label, tracked))


def _encode(
    where: str, label: PanopticLabel, tracked: npt.NDArray[np.int64]
) -> npt.NDArray[np.uint8]:
    """BGR panoptic map of a label (``R`` = class, ``G * 256 + B`` = instance)."""
    sem = label.semantic
    bad = (sem >= KITTI_STEP.num_classes) & (sem != IGNORE_LABEL)
    if bad.any():
        raise ValueError(
            f"{where}: class id {int(sem[bad][0])} is not a train id "
            f"0..{KITTI_STEP.num_classes - 1} or {IGNORE_LABEL}"
        )
    inst = np.where(np.isin(sem, tracked), label.instance, 0)
    if inst.size and (int(inst.min()) < 0 or int(inst.max()) > _MAX_INSTANCE):
        raise ValueError(
            f"{where}: instance ids must be in [0, {_MAX_INSTANCE}], got "
            f"[{int(inst.min())}, {int(inst.max())}]"
        )
    return np.stack([inst % 256, inst // 256, sem], axis=-1).astype(np.uint8)


def _write_png(path: Path, bgr: npt.NDArray[np.uint8]) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(bgr)):
        raise OSError(f"{path}: could not write the PNG")
