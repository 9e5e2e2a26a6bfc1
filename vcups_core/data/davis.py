"""DAVIS-2016 (Perazzi et al., CVPR 2016) single-object video segmentation: reader.

Two on-disk layouts are accepted. The official one::

    <root>/JPEGImages/480p/<seq>/<frame:05d>.jpg
    <root>/Annotations/480p/<seq>/<frame:05d>.png
    <root>/ImageSets/480p/<split>.txt    optional; lines "/JPEGImages/480p/<seq>/<frame>.jpg
                                         /Annotations/480p/<seq>/<frame>.png"

and the flat one of ``shared/data/davis2016``::

    <root>/<seq>/images/<frame:05d>.jpg
    <root>/<seq>/masks/<frame:05d>.png

Pixel encoding of a mask: 8-bit single channel, 255 (> 127) on the one annotated object, 0
elsewhere.

Reading: one :class:`~vcups_core.data.clip.Clip` per sequence (ascending name), frames in
frame-number order; a frame is annotated if its mask exists (in DAVIS-2016 every frame is).
``stamp_ns`` = frame number × 1e9 / 24 fps. Labels in the ``"davis"`` descriptor: mask > 127 →
class 0 "object" with instance 1; every other pixel void (255), because the background is
unlabeled rather than a stuff class.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from vcups_core.data.clip import Clip, ClipFrame, PanopticLabel
from vcups_core.data.datasets import DAVIS
from vcups_core.types import IGNORE_LABEL

_OBJECT = 0
_RESOLUTION = "480p"


def read_davis(root: Path, split: str | None = None) -> Iterator[Clip]:
    """Read DAVIS-2016 sequences.

    Args:
        root: dataset root in the official or the flat layout (see the module docstring).
        split: official layout only: ``"train"`` or ``"val"`` selects the sequences listed in
            ``ImageSets/480p/<split>.txt``; ``None`` reads every sequence.

    Returns:
        The clips in ascending sequence name.

    Raises:
        FileNotFoundError: if ``root`` has neither layout, or ``split`` is given and its ImageSets
            file is missing (checked at once).
        ValueError: if ``split`` is given for the flat layout (which has no splits); when a label
            is loaded, if the mask is not single-channel 8-bit.
    """
    root = Path(root)
    official = root / "JPEGImages" / _RESOLUTION
    if official.is_dir():
        names = sorted(p.name for p in official.iterdir() if p.is_dir())
        if split is not None:
            names = _split_sequences(root / "ImageSets" / _RESOLUTION / f"{split}.txt")
        sequences = [(n, official / n, root / "Annotations" / _RESOLUTION / n) for n in names]
    else:
        flat = sorted(p for p in root.glob("*/images") if p.is_dir()) if root.is_dir() else []
        if not flat:
            raise FileNotFoundError(
                f"{official}: DAVIS folder not found, and {root} holds no flat-layout "
                f"<seq>/images/ folders"
            )
        if split is not None:
            raise ValueError(
                f"{root}: the flat DAVIS layout has no splits; pass split=None, got {split!r}"
            )
        sequences = [(p.parent.name, p, p.parent / "masks") for p in flat]
    return _iter_clips(sequences)


def _split_sequences(path: Path) -> list[str]:
    """Sequence names listed in an ImageSets file (ascending, unique)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: DAVIS ImageSets file of the split not found")
    names: set[str] = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = Path(line.split()[0].lstrip("/")).parts
        if len(parts) < 2:
            raise ValueError(f"{path}:{number}: expected '/JPEGImages/480p/<seq>/<frame>.jpg ...'")
        names.add(parts[-2])
    return sorted(names)


def _iter_clips(sequences: list[tuple[str, Path, Path]]) -> Iterator[Clip]:
    for name, image_dir, mask_dir in sequences:
        if not image_dir.is_dir():
            raise FileNotFoundError(
                f"{image_dir}: DAVIS image folder of sequence {name!r} not found"
            )
        paths = sorted(
            (p for p in image_dir.glob("*.jpg") if p.stem.isdigit()), key=lambda p: int(p.stem)
        )
        frames = []
        for index, path in enumerate(paths):
            mask = mask_dir / f"{path.stem}.png"
            load = functools.partial(_load_label, mask) if mask.is_file() else None
            frames.append(ClipFrame(index, round(int(path.stem) * 1e9 / DAVIS.fps), path, load))
        yield Clip(name, DAVIS.name, tuple(frames))


def _load_label(path: Path) -> PanopticLabel:
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise FileNotFoundError(f"{path}: missing or not a readable PNG")
    if mask.dtype != np.uint8 or mask.ndim != 2:
        raise ValueError(
            f"{path}: expected a single-channel 8-bit mask, got {mask.dtype}{list(mask.shape)}"
        )
    obj = mask > 127
    semantic = np.where(obj, _OBJECT, IGNORE_LABEL).astype(np.uint8)
    return PanopticLabel(semantic, obj.astype(np.int32))
