"""Predictions for a dataset's clips, written in that dataset's own format and frame layout.

A prediction folder reads back through the dataset's reader
(:func:`~vcups_core.data.registry.open_dataset`) with the ground truth's clips and frame
positions, and names its frames as the ground truth does wherever the format names them by
number. So ``vcups evaluate --gt ROOT --pred FOLDER`` pairs the frames, and the label files can go
to a dataset's official tools:

* ``kitti-step``: ``panoptic_maps/<split>/<seq>/<n:06d>.png`` with ``n`` the ground truth's frame
  number (its image name), in the ground truth's encoding.
* ``waymo``: ``<split>/<scene>/<n>_semantic.png`` and ``_instance.png`` with the ground truth's
  ``n`` (:func:`~vcups_core.data.waymo.write_waymo`).
* ``mots``: ``<split>/instances_txt/<seq>.txt`` whose ``time_frame`` is the ground truth's image
  number (:func:`~vcups_core.data.mots.write_mots`).
* ``cityscapes-vps``: the ground truth's image ids and file names (as its reader read them,
  :func:`~vcups_core.data.cityscapes_vps.clip_frame_names`): the JSON lists the ground truth's
  frames under their ids with their ``img/`` names, ``panoptic_video/`` holds the labels named as
  the official tools name them, and ``<split>/pred.json`` with ``<split>/pan_pred/<image id>.png``
  are the input of the official VPQ evaluation (``eval_vpq.py --submit_dir <root>/<split>``).

Images: the readers list a clip's frames by its image files, so a prediction folder holds one
image per ground-truth frame, as a black placeholder of the frame's size (a few hundred bytes of
PNG) rather than a copy of the input. Labels: only for the frames given (the scored ones, or in a
split without labels those of :func:`submission_frames`), taken from the given mapping one at a
time as they are written (it may decode them lazily).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import cast, overload

import numpy as np
import numpy.typing as npt

from vcups_core.data.cityscapes_vps import FrameName, clip_frame_names, write_cityscapes_vps
from vcups_core.data.clip import Clip, ClipFrame, LabeledClip, PanopticLabel
from vcups_core.data.datasets import CITYSCAPES_VPS
from vcups_core.data.kitti_step import write_kitti_step
from vcups_core.data.mots import write_mots
from vcups_core.data.waymo import write_waymo

PREDICTION_FORMATS = ("cityscapes-vps", "kitti-step", "mots", "waymo")
"""Datasets :func:`write_predictions` can write."""

ClipPredictions = tuple[Clip, Mapping[int, PanopticLabel]]
"""A ground-truth clip and its predicted labels (dataset class ids) by clip frame index."""


def write_predictions(
    dataset: str, predictions: Iterable[ClipPredictions], root: Path, split: str
) -> None:
    """Write predicted labels in ``dataset``'s format under ``root`` (see the module docstring).

    Args:
        dataset: one of :data:`PREDICTION_FORMATS`.
        predictions: per ground-truth clip, its predicted labels by frame index, in the dataset's
            class ids and encoding rules (e.g. MOTS: 0 background, 1 person, 255 void).
        root: the prediction folder (the dataset's root layout); created if missing.
        split: the split folder to write (the ground truth's split, so the same ``--split``
            reads both).

    Raises:
        ValueError: an unknown dataset, a label for a frame the clip does not have, a frame
            layout the format cannot hold, or a label the writer refuses (named by the writer).
        OSError: if a file cannot be written.
    """
    root = Path(root)
    if dataset == "cityscapes-vps":
        names: dict[str, tuple[FrameName, ...]] = {}

        def clips() -> Iterator[LabeledClip]:
            for clip, labels in predictions:
                # filled before the clip is yielded: the writer looks its names up then
                names[clip.name] = clip_frame_names(clip)
                yield _in_order(clip, labels)

        write_cityscapes_vps(clips(), root, split, frame_names=names, submission=True)
    elif dataset == "kitti-step":
        for clip, labels in predictions:
            write_kitti_step([_positional(clip, labels, _stem_number)], root, split)
    elif dataset == "waymo":
        for clip, labels in predictions:
            numbers = [_waymo_number(f) for f in clip.frames]
            write_waymo([_in_order(clip, labels)], root, split, frame_numbers={clip.name: numbers})
    elif dataset == "mots":
        for clip, labels in predictions:
            numbers = [_stem_number(f) for f in clip.frames]
            write_mots([_in_order(clip, labels)], root, split, frame_numbers={clip.name: numbers})
    else:
        raise ValueError(
            f"no prediction writer for dataset {dataset!r}; expected one of "
            f"{', '.join(PREDICTION_FORMATS)}"
        )


def _stem_number(frame: ClipFrame) -> int:
    """The frame number in the image's name (``000012.png`` -> 12)."""
    return int(frame.image_path.stem)


def _waymo_number(frame: ClipFrame) -> int:
    """The frame number of a Waymo export image (``12_image.png`` -> 12)."""
    return int(frame.image_path.name.removesuffix("_image.png"))


def submission_frames(clip: Clip) -> tuple[ClipFrame, ...]:
    """The frames of a clip without labels (a test split) that a prediction folder holds labels
    for, as the dataset's server takes them: Cityscapes-VPS the frames its JSON lists (those with
    an image id: 6 per 30-frame snippet), every frame elsewhere."""
    if clip.dataset == CITYSCAPES_VPS.name:
        return tuple(f for f in clip.frames if f.image_id is not None)
    return clip.frames


def _placeholder(clip: Clip, labels: Mapping[int, PanopticLabel]) -> npt.NDArray[np.uint8]:
    """A black ``uint8[H, W, 3]`` image of the clip's frame size."""
    for label in labels.values():
        return np.zeros((*label.shape, 3), np.uint8)
    if not clip.frames:
        return np.zeros((1, 1, 3), np.uint8)
    return np.zeros_like(clip.frames[0].image().image)


def _check_indices(clip: Clip, labels: Mapping[int, PanopticLabel]) -> None:
    extra = sorted(set(labels) - {f.index for f in clip.frames})
    if extra:
        raise ValueError(
            f"clip {clip.name!r}: predictions for frame(s) {extra[:5]} it does not have "
            f"({len(clip.frames)} frames)"
        )


class _LazyLabels(Sequence["PanopticLabel | None"]):
    """The labels of a written clip by position, each taken from ``labels`` when the writer
    reaches it, so a long clip is never held in memory at once (``labels`` may decode lazily)."""

    def __init__(
        self, length: int, index_at: Mapping[int, int], labels: Mapping[int, PanopticLabel]
    ) -> None:
        self._length, self._index_at, self._labels = length, index_at, labels

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, position: int) -> PanopticLabel | None: ...

    @overload
    def __getitem__(self, position: slice) -> Sequence[PanopticLabel | None]: ...

    def __getitem__(
        self, position: int | slice
    ) -> PanopticLabel | Sequence[PanopticLabel | None] | None:
        if isinstance(position, slice):
            return [self[p] for p in range(*position.indices(self._length))]
        if not -self._length <= position < self._length:
            raise IndexError(position)
        index = self._index_at.get(position % self._length)
        return None if index is None else self._labels[index]


def _labeled_clip(
    clip: Clip,
    labels: Mapping[int, PanopticLabel],
    length: int,
    position_of: Mapping[int, int],
) -> LabeledClip:
    """``length`` placeholder frames with frame ``i``'s label (if any) at ``position_of[i]``."""
    _check_indices(clip, labels)
    image = _placeholder(clip, labels)
    index_at = {position_of[i]: i for i in labels}
    lazy = _LazyLabels(length, index_at, labels)
    # the writers only take len() and iterate (tuple is LabeledClip's type for in-memory clips)
    return LabeledClip(
        clip.name,
        tuple(image for _ in range(length)),
        cast("tuple[PanopticLabel | None, ...]", lazy),
    )


def _in_order(clip: Clip, labels: Mapping[int, PanopticLabel]) -> LabeledClip:
    """One placeholder image per clip frame, in order, with the given labels."""
    return _labeled_clip(
        clip, labels, len(clip.frames), {f.index: k for k, f in enumerate(clip.frames)}
    )


def _positional(
    clip: Clip, labels: Mapping[int, PanopticLabel], position: Callable[[ClipFrame], int]
) -> LabeledClip:
    """A clip for a writer that names frames by position: frame ``f`` at ``position(f)``,
    placeholders from 0 through the last position."""
    where = {f.index: position(f) for f in clip.frames}
    if len(set(where.values())) != len(where) or any(p < 0 for p in where.values()):
        raise ValueError(f"clip {clip.name!r}: frames do not have distinct positions >= 0")
    length = max(where.values(), default=-1) + 1
    return _labeled_clip(clip, labels, length, where)


def _missing_images(dataset: str, gt_root: Path, pred_root: Path, split: str) -> list[Path]:
    """Paths (relative to the roots) of the ground truth's image folders or files that the
    prediction folder lacks; the readers list a clip's frames by them."""
    if dataset == "waymo":  # images sit beside the labels: <split>/<scene>/<n>_image.png
        split_dir = gt_root / split
        if not split_dir.is_dir():
            return []
        return [
            p.relative_to(gt_root)
            for p in sorted(split_dir.glob("*/*_image.png"))
            if not (pred_root / p.relative_to(gt_root)).exists()
        ]
    folders = {
        "kitti-step": [Path("images") / split],
        "mots": [Path(split) / "images"],
        "cityscapes-vps": [Path(split) / "img", Path(split) / "img_all"],
    }.get(dataset, [])
    return [f for f in folders if (gt_root / f).exists() and not (pred_root / f).exists()]


def _overlay(view: Path, pred: Path, gt: Path, missing: Sequence[Path]) -> None:
    """Fill ``view`` with links to ``pred``'s entries plus ``gt``'s ``missing`` paths; a folder
    that holds a missing path is made real in ``view`` and filled the same way."""
    here = {m.parts[0] for m in missing}
    for entry in pred.iterdir() if pred.is_dir() else ():
        if entry.name not in here:
            (view / entry.name).symlink_to(entry.resolve(), entry.is_dir())
    for name in sorted(here):
        deeper = [Path(*m.parts[1:]) for m in missing if m.parts[0] == name and len(m.parts) > 1]
        if not deeper:  # the missing path itself: link the ground truth's
            (view / name).symlink_to((gt / name).resolve(), (gt / name).is_dir())
            continue
        (view / name).mkdir()
        _overlay(view / name, pred / name, gt / name, deeper)


@contextlib.contextmanager
def prediction_view(
    dataset: str, pred_root: Path, gt_root: Path, split: str | None = None
) -> Iterator[Path]:
    """A folder the dataset's reader can read ``pred_root`` from, even without images.

    Prediction folders written by other tools (the official formats) often hold only labels,
    while the readers list a clip's frames by its image files. Where ``pred_root`` lacks the
    ground truth's images, this yields a temporary folder of links: ``pred_root``'s own files
    and the ground truth's *image* folders or files (never its labels); otherwise ``pred_root``
    itself. Nothing is copied or written under either root.

    Args:
        dataset: a registered reader's name.
        pred_root, gt_root: the prediction and ground-truth roots (the dataset's layout).
        split: the split read (``None``: the reader's default).
    """
    import inspect
    import tempfile

    from vcups_core.data.registry import READERS

    reader = READERS.get(dataset)
    if split is None and reader is not None:
        default = inspect.signature(reader).parameters.get("split")
        split = default.default if default is not None else None
    missing = _missing_images(dataset, gt_root, pred_root, split) if split else []
    if not missing:
        yield pred_root
        return
    with tempfile.TemporaryDirectory(prefix="vcups-pred-") as tmp:
        view = Path(tmp)
        _overlay(view, pred_root, gt_root, missing)
        yield view
