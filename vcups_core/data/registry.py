"""Dataset readers by descriptor name, so a config can name its evaluation data."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from vcups_core.data.cityscapes_vps import read_cityscapes_vps
from vcups_core.data.clip import Clip
from vcups_core.data.davis import read_davis
from vcups_core.data.kitti_step import read_kitti_step
from vcups_core.data.mots import read_mots
from vcups_core.data.waymo import read_waymo

READERS: dict[str, Callable[..., Iterator[Clip]]] = {
    "cityscapes-vps": read_cityscapes_vps,
    "kitti-step": read_kitti_step,
    "waymo": read_waymo,
    "mots": read_mots,
    "davis": read_davis,
}
"""Reader of each dataset, keyed by :data:`~vcups_core.data.datasets.DESCRIPTORS` name. Each is
called as ``reader(root)`` or ``reader(root, split)``."""


def open_dataset(name: str, root: Path, split: str | None = None) -> Iterator[Clip]:
    """Clips of dataset ``name`` stored under ``root``.

    Args:
        name: a key of :data:`READERS` (e.g. ``"kitti-step"``).
        root: the dataset's root folder, in the layout its reader's module documents.
        split: the split to read; ``None`` uses the reader's default (``"val"`` for
            Cityscapes-VPS and KITTI-STEP, ``"validation"`` for Waymo, ``"train"`` for MOTS, every
            sequence for DAVIS).

    Raises:
        ValueError: if ``name`` is unknown (the message lists the known names).
        FileNotFoundError: if ``root`` lacks the layout (the message names the expected folder or
            file); raised here, before the first clip is requested.
    """
    try:
        reader = READERS[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; expected one of {', '.join(sorted(READERS))}"
        ) from None
    root = Path(root)
    return reader(root) if split is None else reader(root, split)
