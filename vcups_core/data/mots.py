"""MOTS (MOTSChallenge and KITTI-MOTS, Voigtlaender et al., CVPR 2019): reader and txt writer.

On-disk layout::

    <root>/<split>/images/<seq>/<frame:06d>.jpg      MOTSChallenge (KITTI-MOTS: .png)
    <root>/instances_txt/<seq>.txt                   txt annotations (also looked up in
                                                     <root>/<split>/instances_txt/)
    <root>/<split>/instances/<seq>/<frame:06d>.png   PNG annotations

Encoding of the txt files: one object mask per line, six space-separated fields
``time_frame id class_id img_height img_width rle``, with ``id = class_id * 1000 + instance``,
``class_id`` 1 = car, 2 = pedestrian, 10 = ignore region (``id`` 10000), and ``rle`` a COCO
compressed RLE string (``pycocotools.mask.decode({"size": [h, w], "counts": rle})``).
``time_frame`` is the number in the image's file name: MOTSChallenge counts from 1, KITTI-MOTS from
0. Frame numbers are matched to the image file stems; if they do not all match but all match when
shifted by -1 or +1, that shift is used (a txt counted from 1 next to images counted from 0, or the
reverse).
Encoding of the PNGs: one 16-bit channel holding the object ``id`` per pixel, 0 = background.

Reading: one :class:`~vcups_core.data.clip.Clip` per sequence folder of ``images/``, every frame in
frame-number order and every frame annotated (a frame without objects is all background).
``stamp_ns`` = frame number × 1e9 / 30 fps. Labels in the ``"mots"`` descriptor's classes:
pedestrian → class 1 "person" with instance ``id % 1000`` (1000 when that is 0); car → class 0
"background" (MOTS is scored on persons only); ignore regions → void 255. (CUPS maps ignore regions
to background; we make them void so that they count neither as person nor as background.)
Everything else is background 0 with instance 0.

Writing (:func:`write_mots`): the txt form from :class:`~vcups_core.data.clip.LabeledClip` s in
the ``"mots"`` descriptor's classes, laid out as ``<root>/<split>/images/<seq>/<frame:06d>.png``
(lossless PNG) and ``<root>/<split>/instances_txt/<seq>.txt``, so that :func:`read_mots` reads the
labels back equal. A person of instance ``k`` (1..1000) is object ``2000 + k % 1000`` (class 2),
one line per frame it is in; void is one ignore region per frame (id 10000, class 10); the
background is not written. Person pixels without an instance (MOTS has no crowd) are written
into the ignore region, so they read back as void. MOTS annotates every frame: a frame written
without a label reads back as all background.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt
from pycocotools import mask as mask_utils

from vcups_core.data.clip import Clip, ClipFrame, LabeledClip, PanopticLabel
from vcups_core.data.datasets import MOTS
from vcups_core.types import IGNORE_LABEL

CAR_CLASS = 1
PEDESTRIAN_CLASS = 2
IGNORE_CLASS = 10
_PERSON = 1  # class id of the "mots" descriptor
_MAX_INSTANCE = 1000  # object id 2000 + k % 1000 reads back as k for k in 1..1000
_IMAGE_SUFFIXES = (".jpg", ".png")


@dataclasses.dataclass(frozen=True)
class _Object:
    """One txt line."""

    object_id: int
    class_id: int
    height: int
    width: int
    rle: str


def read_mots(
    root: Path, split: str = "train", *, source: Literal["txt", "png"] = "txt"
) -> Iterator[Clip]:
    """Read the sequences of one split.

    Args:
        root: dataset root (see the module docstring).
        split: folder under ``root`` holding ``images/`` (and ``instances/``).
        source: annotations from the ``instances_txt`` files or the ``instances`` PNGs.

    Returns:
        The clips in ascending sequence name.

    Raises:
        FileNotFoundError: if ``<root>/<split>/images`` is missing (at once), or a sequence's
            annotation file or folder is missing (when its clip is reached).
        ValueError: on a malformed txt line (naming file and line number) or txt frames that match
            no image; when a PNG label is loaded, on an object id that is not a MOTS id.
    """
    root = Path(root)
    if source not in ("txt", "png"):
        raise ValueError(f"source: expected 'txt' or 'png', got {source!r}")
    image_dir = root / split / "images"
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{image_dir}: MOTS image folder not found")
    return _iter_clips(root, split, image_dir, source)


def _iter_clips(root: Path, split: str, image_dir: Path, source: str) -> Iterator[Clip]:
    for seq_dir in sorted(p for p in image_dir.iterdir() if p.is_dir()):
        images = {
            int(p.stem): p
            for p in seq_dir.iterdir()
            if p.suffix.lower() in _IMAGE_SUFFIXES and p.stem.isdigit()
        }
        numbers = sorted(images)
        if source == "txt":
            loaders = _txt_loaders(_txt_path(root, split, seq_dir.name), images)
        else:
            label_dir = root / split / "instances" / seq_dir.name
            if not label_dir.is_dir():
                raise FileNotFoundError(f"{label_dir}: MOTS instance PNG folder not found")
            loaders = {
                n: functools.partial(_load_png, label_dir / f"{images[n].stem}.png")
                for n in numbers
            }
        frames = tuple(
            ClipFrame(i, round(n * 1e9 / MOTS.fps), images[n], loaders[n])
            for i, n in enumerate(numbers)
        )
        yield Clip(seq_dir.name, MOTS.name, frames)


def _txt_path(root: Path, split: str, seq: str) -> Path:
    names = [seq] + ([f"{int(seq):04d}"] if seq.isdigit() else [])
    candidates = [
        d / f"{n}.txt"
        for d in (root / "instances_txt", root / split / "instances_txt")
        for n in names
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{candidates[0]}: MOTS txt annotation of sequence {seq!r} not found (also tried "
        f"{', '.join(str(c) for c in candidates[1:])})"
    )


def _parse_txt(path: Path) -> dict[int, list[_Object]]:
    """Objects of a MOTS txt file by ``time_frame``.

    Raises:
        ValueError: naming the file and line number on a wrong field count, a non-integer field,
            an unknown class id, an id whose thousands are not its class, or a non-positive size.
    """
    objects: dict[int, list[_Object]] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 6:
            raise ValueError(
                f"{path}:{number}: expected 6 fields 'time_frame id class_id img_height "
                f"img_width rle', got {len(fields)}"
            )
        try:
            frame, object_id, class_id, height, width = (int(f) for f in fields[:5])
        except ValueError:
            raise ValueError(
                f"{path}:{number}: the first five fields must be integers, got {fields[:5]}"
            ) from None
        if class_id not in (CAR_CLASS, PEDESTRIAN_CLASS, IGNORE_CLASS):
            raise ValueError(
                f"{path}:{number}: class_id expected {CAR_CLASS}, {PEDESTRIAN_CLASS} or "
                f"{IGNORE_CLASS}, got {class_id}"
            )
        if object_id // 1000 != class_id:
            raise ValueError(
                f"{path}:{number}: id {object_id} is not class_id * 1000 + instance for "
                f"class_id {class_id}"
            )
        if height <= 0 or width <= 0:
            raise ValueError(f"{path}:{number}: image size must be positive, got {height}x{width}")
        objects.setdefault(frame, []).append(_Object(object_id, class_id, height, width, fields[5]))
    return objects


def _txt_loaders(
    path: Path, images: dict[int, Path]
) -> dict[int, functools.partial[PanopticLabel]]:
    objects = _parse_txt(path)
    offset = _frame_offset(path, set(objects), set(images))
    sizes = {(o.height, o.width) for objs in objects.values() for o in objs}
    if len(sizes) > 1:
        raise ValueError(f"{path}: lines disagree on the image size: {sorted(sizes)}")
    size = next(iter(sizes)) if sizes else None
    return {
        n: functools.partial(_load_txt, path, n - offset, objects.get(n - offset, []), size, p)
        for n, p in images.items()
    }


def _frame_offset(path: Path, txt_frames: set[int], image_frames: set[int]) -> int:
    """Shift from txt ``time_frame`` to image number: 0 if they match, else -1 or +1."""
    for offset in (0, -1, 1):
        if {f + offset for f in txt_frames} <= image_frames:
            return offset
    missing = sorted(txt_frames - image_frames)
    span = f"{min(image_frames)}..{max(image_frames)}" if image_frames else "none"
    raise ValueError(
        f"{path}: time_frame(s) {missing[:10]} match no image (image numbers {span}), also not "
        f"when shifted by -1 or +1"
    )


def _load_txt(
    path: Path,
    frame: int,
    objects: list[_Object],
    size: tuple[int, int] | None,
    image_path: Path,
) -> PanopticLabel:
    if size is None:
        image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise FileNotFoundError(f"{image_path}: missing or not a readable image")
        size = (int(image.shape[0]), int(image.shape[1]))
    height, width = size
    semantic = np.zeros(size, np.uint8)
    instance = np.zeros(size, np.int32)
    # ignore regions first, so that an object mask overlapping one keeps its pixels
    for obj in sorted(objects, key=lambda o: o.class_id != IGNORE_CLASS):
        try:
            mask = _decode_rle(obj.rle, height, width)
        except Exception as exc:
            raise ValueError(
                f"{path}: time_frame {frame} id {obj.object_id}: RLE does not decode ({exc})"
            ) from None
        if mask.shape != size:
            raise ValueError(
                f"{path}: time_frame {frame} id {obj.object_id}: mask {mask.shape} != {size}"
            )
        _paint(semantic, instance, mask, obj.object_id)
    return PanopticLabel(semantic, instance)


def _decode_rle(counts: str, height: int, width: int) -> npt.NDArray[np.bool_]:
    """``bool[height, width]`` mask of a COCO compressed RLE string."""
    with warnings.catch_warnings():
        # pycocotools' own RLE object lacks numpy 2's `copy` keyword in __array__
        warnings.filterwarnings(
            "ignore", message="__array__ implementation doesn't accept", category=DeprecationWarning
        )
        decoded = mask_utils.decode({"size": [height, width], "counts": counts.encode()})
    return np.asarray(decoded, dtype=bool)


def _load_png(path: Path) -> PanopticLabel:
    ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if ids is None:
        raise FileNotFoundError(f"{path}: missing or not a readable PNG")
    if ids.ndim != 2 or ids.dtype not in (np.uint8, np.uint16):
        raise ValueError(
            f"{path}: expected a single-channel 16-bit PNG, got {ids.dtype}{list(ids.shape)}"
        )
    semantic = np.zeros(ids.shape, np.uint8)
    instance = np.zeros(ids.shape, np.int32)
    for object_id in np.unique(ids).tolist():
        if object_id == 0:
            continue
        if object_id // 1000 not in (CAR_CLASS, PEDESTRIAN_CLASS, IGNORE_CLASS):
            raise ValueError(
                f"{path}: object id {object_id} is not class * 1000 + instance with class "
                f"{CAR_CLASS}, {PEDESTRIAN_CLASS} or {IGNORE_CLASS}"
            )
        _paint(semantic, instance, ids == object_id, object_id)
    return PanopticLabel(semantic, instance)


def _paint(
    semantic: npt.NDArray[np.uint8],
    instance: npt.NDArray[np.int32],
    mask: npt.NDArray[np.bool_],
    object_id: int,
) -> None:
    """Write one MOTS object into the label maps (see the module docstring)."""
    class_id = object_id // 1000
    if class_id == PEDESTRIAN_CLASS:
        semantic[mask] = _PERSON
        instance[mask] = object_id % 1000 or 1000
    elif class_id == IGNORE_CLASS:
        semantic[mask] = IGNORE_LABEL
        instance[mask] = 0
    else:  # car: background
        semantic[mask] = 0
        instance[mask] = 0


def write_mots(
    clips: Iterable[LabeledClip],
    root: Path,
    split: str = "train",
    *,
    frame_numbers: Mapping[str, Sequence[int]] | None = None,
) -> None:
    """Write clips as a MOTS split in the txt form (see the module docstring for the layout).

    Args:
        clips: each clip's name is its sequence (folder and txt name); labels in the ``"mots"``
            descriptor's classes: 0 background, 1 person (instance 1..1000), 255 void.
        root: dataset root; created if missing, existing files of the same names are replaced.
        split: split folder.
        frame_numbers: per clip name, the number of each frame: its image name and txt
            ``time_frame`` (MOTSChallenge counts from 1, KITTI-MOTS from 0); default 0, 1, 2, ...

    Raises:
        ValueError: on an unusable or repeated clip name, frame numbers that are not one
            distinct non-negative number per frame, a class other than 0, 1 or 255, a person
            instance outside 1..1000, or an image/label size mismatch.
        OSError: if a file cannot be written.
    """
    root = Path(root)
    seen: set[str] = set()
    for clip in clips:
        name = clip.name
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"clip name {name!r}: expected a sequence name usable as a folder")
        if name in seen:
            raise ValueError(f"clip name {name!r}: sequence written twice")
        seen.add(name)
        numbers = _numbers(name, len(clip.images), frame_numbers)
        image_dir = root / split / "images" / name
        image_dir.mkdir(parents=True, exist_ok=True)
        lines: list[str] = []
        for pos, (image, label) in enumerate(zip(clip.images, clip.labels, strict=True)):
            where = f"clip {name!r} frame {pos}"
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(
                    f"{where}: image must be uint8[H, W, 3], got {image.dtype}{list(image.shape)}"
                )
            _write_png(image_dir / f"{numbers[pos]:06d}.png", image[:, :, ::-1])
            if label is None:
                continue
            if label.shape != image.shape[:2]:
                raise ValueError(f"{where}: label {label.shape} != image {image.shape[:2]}")
            lines += _object_lines(where, numbers[pos], label)
        txt_dir = root / split / "instances_txt"
        txt_dir.mkdir(parents=True, exist_ok=True)
        (txt_dir / f"{name}.txt").write_text("".join(lines))


def _numbers(name: str, count: int, frame_numbers: Mapping[str, Sequence[int]] | None) -> list[int]:
    """The frame numbers of clip ``name`` (default ``0..count-1``), checked."""
    if frame_numbers is None or name not in frame_numbers:
        return list(range(count))
    numbers = [int(n) for n in frame_numbers[name]]
    if len(numbers) != count or len(set(numbers)) != count or any(n < 0 for n in numbers):
        raise ValueError(
            f"frame_numbers[{name!r}]: expected {count} distinct numbers >= 0, got {numbers[:10]}"
        )
    return numbers


def _object_lines(where: str, number: int, label: PanopticLabel) -> list[str]:
    """The txt lines of one frame: persons by object id, then the ignore region (if any)."""
    sem, inst = label.semantic, label.instance
    bad = (sem != 0) & (sem != _PERSON) & (sem != IGNORE_LABEL)
    if bad.any():
        raise ValueError(
            f"{where}: class {int(sem[bad][0])} is not a MOTS class (0 background, "
            f"{_PERSON} person, {IGNORE_LABEL} void)"
        )
    person = sem == _PERSON
    ids = inst[person & (inst != 0)]
    if ids.size and (int(ids.min()) < 1 or int(ids.max()) > _MAX_INSTANCE):
        raise ValueError(
            f"{where}: person instance ids must be in [1, {_MAX_INSTANCE}], got "
            f"[{int(ids.min())}, {int(ids.max())}]"
        )
    height, width = label.shape
    lines = []
    for k in sorted(np.unique(ids).tolist(), key=lambda k: k % 1000):  # by object id
        object_id = PEDESTRIAN_CLASS * 1000 + k % 1000
        rle = _encode_rle(person & (inst == k))
        lines.append(f"{number} {object_id} {PEDESTRIAN_CLASS} {height} {width} {rle}\n")
    ignore = (sem == IGNORE_LABEL) | (person & (inst == 0))
    if ignore.any():
        rle = _encode_rle(ignore)
        lines.append(f"{number} {IGNORE_CLASS * 1000} {IGNORE_CLASS} {height} {width} {rle}\n")
    return lines


def _encode_rle(mask: npt.NDArray[np.bool_]) -> str:
    """COCO compressed RLE string of a ``bool[H, W]`` mask."""
    encoded = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    counts = encoded["counts"]
    return counts.decode("ascii") if isinstance(counts, bytes) else str(counts)


def _write_png(path: Path, bgr: npt.NDArray[np.uint8]) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(bgr)):
        raise OSError(f"{path}: could not write the PNG")
