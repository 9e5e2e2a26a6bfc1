"""Waymo Open Dataset panoramic video panoptic segmentation, as exported for CUPS: reader, writer.

On-disk layout (frame numbers are not zero-padded, so they are sorted numerically)::

    <root>/<split>/<scene>/<frame>_image.png      RGB
    <root>/<split>/<scene>/<frame>_semantic.png   uint16, raw Waymo semantic ids 0..28
    <root>/<split>/<scene>/<frame>_instance.png   uint16 instance ids, consistent over the scene

Raw Waymo ids are mapped to Cityscapes train ids (:data:`WAYMO_TO_TRAIN_ID`): car 2 → 13,
truck 3 → 14, bus 4 → 15, other large vehicle 5 → 16 (train), bicycle 6 → 18, motorcycle 7 → 17,
pedestrian 9 → 11, cyclist 10 and motorcyclist 11 → 12 (rider), pole 15 → 5, sign 17 → 7,
traffic light 18 → 6, building 19 → 2, road 20, lane marker 21 and road marker 22 → 0 (road),
sidewalk 23 → 1, vegetation 24 → 8, sky 25 → 10; every other id (undefined 0, ego vehicle 1,
trailer 8, bird 12, ground animal 13, construction cone 14, pedestrian object 16, ground 26,
dynamic 27, static 28, and anything above 28) → void 255. The ``"waymo"`` descriptor scores no
wall, fence or terrain, which have no Waymo counterpart.

Reading: one :class:`~vcups_core.data.clip.Clip` per scene folder, frames in numeric order; a frame
is annotated if its ``_semantic.png`` exists. ``stamp_ns`` = frame number × 1e9 / 10 fps.
Labels: semantic = mapped train id; instance = the PNG's instance id on thing pixels (train ids
11..18), 0 on stuff and void. Small tracks are kept (removing tracks under 400 pixels is the
metric's business).

Writing (:func:`write_waymo`): the same layout from :class:`~vcups_core.data.clip.LabeledClip` s
in train ids, with each train id written as its raw Waymo id (:data:`TRAIN_ID_TO_WAYMO`: road as
20, rider as cyclist 10, the others as the one id that maps to them) and void as undefined 0.
Wall, fence and terrain have no Waymo id and are written as 0 too, so they read back as void
(the ``"waymo"`` descriptor does not score them); everything else reads back equal. Instance ids
(0..65535) are written on thing pixels only; frames without a label get only an image.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from vcups_core.data.clip import Clip, ClipFrame, LabeledClip, PanopticLabel
from vcups_core.data.datasets import WAYMO
from vcups_core.types import IGNORE_LABEL

WAYMO_TO_TRAIN_ID: dict[int, int] = {
    2: 13,
    3: 14,
    4: 15,
    5: 16,
    6: 18,
    7: 17,
    9: 11,
    10: 12,
    11: 12,
    15: 5,
    17: 7,
    18: 6,
    19: 2,
    20: 0,
    21: 0,
    22: 0,
    23: 1,
    24: 8,
    25: 10,
}
"""Raw Waymo semantic id → Cityscapes train id; ids not listed are void."""

TRAIN_ID_TO_WAYMO: dict[int, int] = {
    train_id: min(w for w, t in WAYMO_TO_TRAIN_ID.items() if t == train_id)
    for train_id in sorted(set(WAYMO_TO_TRAIN_ID.values()))
}
"""Cityscapes train id → the raw Waymo id :func:`write_waymo` writes (the smallest that maps to
it: road as 20, not lane marker 21; rider as cyclist 10); train ids not listed (wall, fence, terrain) and void are written as undefined 0."""

_UNDEFINED = 0
_MAX_INSTANCE = 65535


def _lookup_table() -> npt.NDArray[np.uint8]:
    lut = np.full(1 << 16, IGNORE_LABEL, np.uint8)
    for waymo_id, train_id in WAYMO_TO_TRAIN_ID.items():
        lut[waymo_id] = train_id
    return lut


_LUT = _lookup_table()
_IS_THING = np.isin(np.arange(256), np.fromiter(WAYMO.thing_ids, np.int64))


def read_waymo(root: Path, split: str = "validation") -> Iterator[Clip]:
    """Read the scenes of one split of the CUPS export.

    Args:
        root: export root (holds one folder per split).
        split: ``"training"`` or ``"validation"`` (any folder name under ``root``).

    Returns:
        The clips in ascending scene name; see the module docstring for frames and labels.

    Raises:
        FileNotFoundError: if ``<root>/<split>`` is missing (at once), or when a label is loaded,
            its ``_instance.png``.
        ValueError: when a label is loaded, if a PNG is not single-channel or the two sizes differ.
    """
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise FileNotFoundError(f"{split_dir}: Waymo (CUPS export) split folder not found")
    return _iter_clips(split_dir)


def _iter_clips(split_dir: Path) -> Iterator[Clip]:
    for scene in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        numbers = sorted(
            int(stem)
            for p in scene.glob("*_image.png")
            if (stem := p.name.removesuffix("_image.png")).isdigit()
        )
        frames = []
        for index, number in enumerate(numbers):
            semantic_path = scene / f"{number}_semantic.png"
            load = None
            if semantic_path.is_file():
                load = functools.partial(
                    _load_label, semantic_path, scene / f"{number}_instance.png"
                )
            stamp_ns = round(number * 1e9 / WAYMO.fps)
            frames.append(ClipFrame(index, stamp_ns, scene / f"{number}_image.png", load))
        yield Clip(scene.name, WAYMO.name, tuple(frames))


def _read_channel(path: Path) -> npt.NDArray[np.int32]:
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise FileNotFoundError(f"{path}: missing or not a readable PNG")
    if data.ndim != 2 or data.dtype not in (np.uint8, np.uint16):
        raise ValueError(
            f"{path}: expected a single-channel 16-bit PNG, got {data.dtype}{list(data.shape)}"
        )
    return data.astype(np.int32)


def _load_label(semantic_path: Path, instance_path: Path) -> PanopticLabel:
    raw = _read_channel(semantic_path)
    instance = _read_channel(instance_path)
    if raw.shape != instance.shape:
        raise ValueError(
            f"{instance_path}: size {instance.shape} differs from {semantic_path.name} {raw.shape}"
        )
    semantic = _LUT[raw]
    instance[~_IS_THING[semantic]] = 0
    return PanopticLabel(semantic, instance)


def _inverse_table() -> npt.NDArray[np.uint16]:
    lut = np.full(256, _UNDEFINED, np.uint16)
    for train_id, waymo_id in TRAIN_ID_TO_WAYMO.items():
        lut[train_id] = waymo_id
    return lut


_INVERSE = _inverse_table()


def write_waymo(
    clips: Iterable[LabeledClip],
    root: Path,
    split: str = "validation",
    *,
    frame_numbers: Mapping[str, Sequence[int]] | None = None,
) -> None:
    """Write clips as a split of the CUPS export (see the module docstring for the encoding).

    Args:
        clips: each clip's name is its scene folder; labels in Cityscapes train ids.
        root: export root; created if missing, existing files of the same names are replaced.
        split: split folder.
        frame_numbers: per clip name, the number in each frame's file names; default 0, 1, 2, ...

    Raises:
        ValueError: on an unusable or repeated clip name, frame numbers that are not one
            distinct non-negative number per frame, a class id outside 0..18 (other than 255),
            an instance id outside 0..65535 on a thing, or an image/label size mismatch.
        OSError: if a file cannot be written.
    """
    root = Path(root)
    seen: set[str] = set()
    for clip in clips:
        name = clip.name
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"clip name {name!r}: expected a scene name usable as a folder")
        if name in seen:
            raise ValueError(f"clip name {name!r}: scene written twice")
        seen.add(name)
        numbers = list(range(len(clip.images)))
        if frame_numbers is not None and name in frame_numbers:
            numbers = [int(n) for n in frame_numbers[name]]
        if (
            len(numbers) != len(clip.images)
            or len(set(numbers)) != len(numbers)
            or any(n < 0 for n in numbers)
        ):
            raise ValueError(
                f"frame_numbers[{name!r}]: expected {len(clip.images)} distinct numbers >= 0, "
                f"got {numbers[:10]}"
            )
        scene = root / split / name
        scene.mkdir(parents=True, exist_ok=True)
        for pos, (image, label) in enumerate(zip(clip.images, clip.labels, strict=True)):
            where = f"clip {name!r} frame {pos}"
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(
                    f"{where}: image must be uint8[H, W, 3], got {image.dtype}{list(image.shape)}"
                )
            number = numbers[pos]
            _write_png(scene / f"{number}_image.png", image[:, :, ::-1])
            if label is None:
                continue
            if label.shape != image.shape[:2]:
                raise ValueError(f"{where}: label {label.shape} != image {image.shape[:2]}")
            semantic, instance = _encode(where, label)
            _write_png(scene / f"{number}_semantic.png", semantic)
            _write_png(scene / f"{number}_instance.png", instance)


def _encode(
    where: str, label: PanopticLabel
) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint16]]:
    """Raw Waymo semantic ids and instance ids (things only) of a label, both ``uint16``."""
    sem = label.semantic
    bad = (sem >= WAYMO.num_classes) & (sem != IGNORE_LABEL)
    if bad.any():
        raise ValueError(
            f"{where}: class id {int(sem[bad][0])} is not a train id "
            f"0..{WAYMO.num_classes - 1} or {IGNORE_LABEL}"
        )
    inst = np.where(_IS_THING[sem], label.instance, 0)
    if inst.size and (int(inst.min()) < 0 or int(inst.max()) > _MAX_INSTANCE):
        raise ValueError(
            f"{where}: instance ids must be in [0, {_MAX_INSTANCE}], got "
            f"[{int(inst.min())}, {int(inst.max())}]"
        )
    return _INVERSE[sem], inst.astype(np.uint16)


def _write_png(path: Path, array: npt.NDArray[np.uint8] | npt.NDArray[np.uint16]) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(array)):
        raise OSError(f"{path}: could not write the PNG")
