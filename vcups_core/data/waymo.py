"""Waymo Open Dataset panoramic video panoptic segmentation, as exported for CUPS: reader.

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
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from vcups_core.data.clip import Clip, ClipFrame, PanopticLabel
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
