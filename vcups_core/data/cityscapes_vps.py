"""Cityscapes-VPS (Kim et al., CVPR 2020, github.com/mcahny/vps): reader and writer.

On-disk layout::

    <root>/panoptic_gt_<split>_city_vps.json          (test: panoptic_im_test_city_vps.json)
    <root>/<split>/img/<id>_newImg8bit.png            annotated frames only
    <root>/<split>/img/<id>_leftImg8bit.png           (the frame that has Cityscapes gtFine)
    <root>/<split>/img_all/<city>_<seq:06d>_<frame:06d>_leftImg8bit.png    every frame (val, test)
    <root>/<split>/panoptic_video/<id>_final_mask.png  (or <id>_gtFine_color.png)

The image id is ``<vid:04d>_<gid:04d>_<city>_<seq:06d>_<frame:06d>``: ``vid`` is the video
(0001..0500), ``gid`` a running count of annotated frames over the dataset, ``city``/``seq``/
``frame`` the raw Cityscapes sequence frame. Each video is a 30-frame snippet of which 6 frames are
annotated, every 5th one (snippet positions 4, 9, 14, 19, 24, 29; 19 is the gtFine frame).

JSON (COCO panoptic, without boxes)::

    images:      [{id, width, height, file_name}]                  file_name in img/
    annotations: [{image_id, file_name, segments_info: [{id, category_id, iscrowd, area}]}]
                                                                   file_name in panoptic_video/
    categories:  [{id, name, isthing, color}]                      id = Cityscapes train id 0..18

The test split has no ground truth: its frames are listed in ``panoptic_im_test_city_vps.json``
(same ``images``, no ``annotations``), read when ``panoptic_gt_<split>_city_vps.json`` is absent.

Pixel encoding of a panoptic PNG: RGB, segment id = ``R + 256 * G + 256**2 * B``, 0 = void.
Segment ids are consistent within a video, so a thing segment id is a track id.

Reading: one :class:`~vcups_core.data.clip.Clip` per video (named by its 4-digit video id), frames
in temporal order; a frame the JSON lists carries its image id (``ClipFrame.image_id``), labelled
or not. If ``img_all/`` exists, a video holds every ``img_all`` frame of its city and
sequence from 4 frames before its first annotated frame through its last annotated frame (snippet
positions 0..29); otherwise only its annotated frames. Annotated frames read their image from
``img/``. ``stamp_ns`` is the snippet position × 1e9 / 17 fps, also when only the annotated frames
are read, so the 5-frame spacing of the labels is kept. Labels: semantic = the segment's category
(train id), 255 on void; instance = a compact per-video number 1..n of the non-crowd thing segment
ids (ascending segment id order, the same number in every frame of the video); 0 on stuff, void and
``iscrowd = 1`` thing segments.

Writing uses its own segment-id scheme, unique within a video and never 0:
``(class + 1) * 1000`` for stuff and for thing pixels without a track (written ``iscrowd = 1``),
``(class + 1) * 1000 + k`` for a tracked thing, ``k`` = 1-based rank of its track id among the
clip's track ids (so at most 999 tracks per clip). Frames are named with the city ``vcups``,
sequence = video number, frame = position in the clip; or, for predictions of a split read from
disk, with that split's own names (:func:`clip_frame_names`: image ids, ``img/`` and ``img_all/``
file names), a label file being named from its image as the official tools do
(``_newImg8bit.png`` -> ``_final_mask.png``, ``_leftImg8bit.png`` -> ``_gtFine_color.png``). With ``submission=True`` the
split folder also gets the input of the official VPQ evaluation (github.com/mcahny/vps,
``tools/eval_vpq.py --submit_dir <root>/<split>``): ``pred.json`` (the annotations, in the order
written) and ``pan_pred/<image id>.png``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from vcups_core.data import cityscapes_classes as cs
from vcups_core.data.clip import Clip, ClipFrame, LabeledClip, PanopticLabel
from vcups_core.data.datasets import CITYSCAPES_VPS
from vcups_core.types import IGNORE_LABEL

WRITER_CITY = "vcups"
"""City name in the file names written by :func:`write_cityscapes_vps`."""

CLASS_STRIDE = 1000
"""Segment id of the writer's scheme: ``(class + 1) * CLASS_STRIDE + track rank``."""

_IMAGE_ID = re.compile(r"(\d+)_(\d+)_(.+)_(\d{6})_(\d{6})")
_RAW_NAME = re.compile(r"(.+)_(\d{6})_(\d{6})_leftImg8bit\.png")
_IMAGE_SUFFIXES = ("_newImg8bit.png", "_leftImg8bit.png")
_LABEL_SUFFIXES = ("_final_mask.png", "_gtFine_color.png")
_FIRST_ANNOTATED = CITYSCAPES_VPS.annotated_every - 1  # snippet position of the first label (4)


def _json_path(root: Path, split: str) -> Path:
    """Path of the ground-truth JSON of ``split``."""
    return Path(root) / f"panoptic_gt_{split}_city_vps.json"


def _find_json(root: Path, split: str) -> Path:
    """The ground-truth JSON of ``split``, else its image list (an unlabelled split's).

    Raises:
        FileNotFoundError: if neither exists (names both).
    """
    gt_json = _json_path(root, split)
    if gt_json.is_file():
        return gt_json
    image_list = Path(root) / f"panoptic_im_{split}_city_vps.json"
    if image_list.is_file():
        return image_list
    raise FileNotFoundError(
        f"{gt_json}: Cityscapes-VPS ground-truth JSON not found (nor {image_list.name}, the "
        "image list of a split without labels)"
    )


@dataclasses.dataclass(frozen=True)
class _Annotated:
    """One frame listed in the JSON, with where its files are."""

    image_id: str
    city: str
    seq: int
    frame: int
    image_path: Path
    label_path: Path | None
    segments: dict[int, tuple[int, bool]]  # segment id -> (category, iscrowd)


# ------------------------------------------------------------------------------------------------
# reading


def read_cityscapes_vps(root: Path, split: str = "val") -> Iterator[Clip]:
    """Read the videos of one split.

    Args:
        root: dataset root (holds ``panoptic_gt_<split>_city_vps.json`` and ``<split>/``).
        split: ``"train"``, ``"val"`` or ``"test"`` (any split with a ground-truth JSON, or
            with a ``panoptic_im_<split>_city_vps.json`` image list: then nothing is labelled).

    Returns:
        The clips in ascending video id; see the module docstring for frames, stamps and labels.

    Raises:
        FileNotFoundError: if both JSONs, ``<split>/img/`` or an image is missing (checked
            before the first clip is returned).
        ValueError: if the JSON is malformed; when a label is loaded, if its PNG holds a segment id
            that is not in its ``segments_info``.
    """
    root = Path(root)
    split_dir = root / split
    gt_json = _find_json(root, split)
    img_dir = split_dir / "img"
    if not img_dir.is_dir():
        raise FileNotFoundError(f"{img_dir}: Cityscapes-VPS image folder not found")
    videos = _parse_json(gt_json, split_dir)
    img_all = _index_img_all(split_dir / "img_all")
    return _iter_clips(videos, img_all)


def _iter_clips(
    videos: dict[str, list[_Annotated]], img_all: dict[tuple[str, int], dict[int, Path]]
) -> Iterator[Clip]:
    for video in sorted(videos):
        listed = videos[video]
        annotated = {(a.city, a.seq, a.frame): a for a in listed}
        instance_of = _instance_numbers(listed)
        keys = set(annotated)
        for city, seq in {(a.city, a.seq) for a in listed}:
            numbers = [a.frame for a in listed if (a.city, a.seq) == (city, seq)]
            first, last = min(numbers) - _FIRST_ANNOTATED, max(numbers)
            raw = img_all.get((city, seq), {})
            keys.update((city, seq, n) for n in raw if first <= n <= last)
        start = min(a.frame for a in listed) - _FIRST_ANNOTATED
        frames = []
        for index, key in enumerate(sorted(keys, key=lambda k: (k[2], k[0], k[1]))):
            stamp_ns = round((key[2] - start) * 1e9 / CITYSCAPES_VPS.fps)
            ann = annotated.get(key)
            if ann is None:
                frames.append(ClipFrame(index, stamp_ns, img_all[key[:2]][key[2]]))
                continue
            load = None
            if ann.label_path is not None:
                lut = {
                    sid: (cat, 0 if crowd else instance_of.get(sid, 0))
                    for sid, (cat, crowd) in ann.segments.items()
                }
                load = functools.partial(_load_label, ann.label_path, lut)
            frames.append(ClipFrame(index, stamp_ns, ann.image_path, load, ann.image_id))
        yield Clip(video, CITYSCAPES_VPS.name, tuple(frames))


def _instance_numbers(frames: list[_Annotated]) -> dict[int, int]:
    """Compact instance number 1..n of every non-crowd thing segment id of a video."""
    ids = {
        sid
        for a in frames
        for sid, (cat, crowd) in a.segments.items()
        if cat in CITYSCAPES_VPS.thing_ids and not crowd
    }
    return {sid: k + 1 for k, sid in enumerate(sorted(ids))}


def _parse_json(path: Path, split_dir: Path) -> dict[str, list[_Annotated]]:
    """Frames of the JSON grouped by video id."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{path}: expected a JSON object with an 'images' list")
    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        raise ValueError(f"{path}: 'annotations' must be a list, got {type(annotations).__name__}")
    by_image: dict[str, dict[str, Any]] = {}
    for ann in annotations:
        if not isinstance(ann, dict) or "image_id" not in ann:
            raise ValueError(f"{path}: every annotation needs an 'image_id', got {ann!r:.80}")
        by_image[str(ann["image_id"])] = ann
    videos: dict[str, list[_Annotated]] = {}
    seen: set[str] = set()
    for image in data["images"]:
        if not isinstance(image, dict) or "file_name" not in image:
            raise ValueError(f"{path}: every image needs a 'file_name', got {image!r:.80}")
        file_name = str(image["file_name"])
        image_id = str(image.get("id", file_name))
        match = _IMAGE_ID.match(image_id) or _IMAGE_ID.match(file_name)
        if match is None:
            raise ValueError(
                f"{path}: image {image_id!r}: expected an id like "
                f"'<vid>_<gid>_<city>_<seq:06d>_<frame:06d>'"
            )
        stem = match.group(0)
        seen.add(image_id)
        ann = by_image.get(image_id)
        label_path = None
        segments: dict[int, tuple[int, bool]] = {}
        if ann is not None:
            label_path = _find(
                split_dir / "panoptic_video", str(ann.get("file_name", "")), stem, _LABEL_SUFFIXES
            )
            segments = _parse_segments(path, image_id, ann)
        vid = match.group(1)
        videos.setdefault(vid, []).append(
            _Annotated(
                image_id=image_id,
                city=match.group(3),
                seq=int(match.group(4)),
                frame=int(match.group(5)),
                image_path=_find(split_dir / "img", file_name, stem, _IMAGE_SUFFIXES),
                label_path=label_path,
                segments=segments,
            )
        )
    orphans = sorted(set(by_image) - seen)
    if orphans:
        raise ValueError(f"{path}: annotations of unknown image ids {orphans[:5]}")
    return videos


def _parse_segments(path: Path, image_id: str, ann: dict[str, Any]) -> dict[int, tuple[int, bool]]:
    infos = ann.get("segments_info")
    if not isinstance(infos, list):
        raise ValueError(f"{path}: annotation of {image_id!r} has no 'segments_info' list")
    segments: dict[int, tuple[int, bool]] = {}
    for info in infos:
        try:
            sid, cat, crowd = (
                int(info["id"]),
                int(info["category_id"]),
                bool(info.get("iscrowd", 0)),
            )
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"{path}: image {image_id!r}: segment needs integer 'id' and 'category_id', "
                f"got {info!r:.80}"
            ) from None
        if not 0 <= cat < CITYSCAPES_VPS.num_classes:
            raise ValueError(
                f"{path}: image {image_id!r} segment {sid}: category_id expected in "
                f"[0, {CITYSCAPES_VPS.num_classes}), got {cat}"
            )
        if sid <= 0 or sid in segments:
            raise ValueError(
                f"{path}: image {image_id!r}: segment id {sid} is not positive or is duplicated"
            )
        segments[sid] = (cat, crowd)
    return segments


def _find(folder: Path, file_name: str, stem: str, suffixes: tuple[str, ...]) -> Path:
    """The JSON's file name if it exists, else ``<stem><suffix>`` for the known suffixes."""
    candidates = [folder / file_name] if file_name else []
    candidates += [folder / f"{stem}{s}" for s in suffixes]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{candidates[0]}: not found (also tried {', '.join(c.name for c in candidates[1:])})"
    )


def _index_img_all(folder: Path) -> dict[tuple[str, int], dict[int, Path]]:
    """``(city, seq) -> {frame: path}`` of the raw Cityscapes frames in ``img_all/`` (if any)."""
    index: dict[tuple[str, int], dict[int, Path]] = {}
    if folder.is_dir():
        for path in folder.iterdir():
            match = _RAW_NAME.fullmatch(path.name)
            if match is not None:
                key = (match.group(1), int(match.group(2)))
                index.setdefault(key, {})[int(match.group(3))] = path
    return index


def _load_label(path: Path, lut: dict[int, tuple[int, int]]) -> PanopticLabel:
    """Decode an RGB panoptic PNG with ``lut``: segment id -> (train id, instance)."""
    ids = _read_segment_ids(path)
    uniq, inverse = np.unique(ids, return_inverse=True)
    semantic = np.full(len(uniq), IGNORE_LABEL, np.uint8)
    instance = np.zeros(len(uniq), np.int32)
    for k, sid in enumerate(uniq.tolist()):
        if sid == 0:
            continue
        if sid not in lut:
            raise ValueError(
                f"{path}: segment id {sid} (R={sid % 256}, G={sid // 256 % 256}, B={sid // 65536}) "
                f"is not in the annotation's segments_info (ids {sorted(lut)[:20]})"
            )
        semantic[k], instance[k] = lut[sid]
    shape = ids.shape
    return PanopticLabel(semantic[inverse].reshape(shape), instance[inverse].reshape(shape))


def _read_segment_ids(path: Path) -> npt.NDArray[np.int32]:
    """``int32[H, W]`` segment ids ``R + 256 G + 256**2 B`` of an RGB PNG."""
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if bgr is None:
        raise FileNotFoundError(f"{path}: missing or not a readable PNG")
    if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] not in (3, 4):
        raise ValueError(
            f"{path}: expected an 8-bit RGB panoptic PNG, got {bgr.dtype}{list(bgr.shape)}"
        )
    b, g, r = (bgr[:, :, c].astype(np.int32) for c in range(3))
    ids: npt.NDArray[np.int32] = r + 256 * g + 65536 * b
    return ids


# ------------------------------------------------------------------------------------------------
# writing


@dataclasses.dataclass(frozen=True)
class FrameName:
    """The names of one frame in a Cityscapes-VPS split.

    Attributes:
        raw: its ``img_all/`` file name, ``<city>_<seq:06d>_<frame:06d>_leftImg8bit.png``.
        image_id: its JSON image id if the JSON lists the frame (labelled or not), else ``None``.
        image: its ``img/`` file name if listed (e.g. ``<image_id>_newImg8bit.png``), else
            ``None``.
    """

    raw: str
    image_id: str | None = None
    image: str | None = None

    def __post_init__(self) -> None:
        if _RAW_NAME.fullmatch(self.raw) is None:
            raise ValueError(
                f"img_all name {self.raw!r}: expected <city>_<seq:06d>_<frame:06d>_leftImg8bit.png"
            )
        if (self.image_id is None) != (self.image is None):
            raise ValueError(f"{self.raw}: a listed frame needs both an image id and an image name")


def clip_frame_names(clip: Clip) -> tuple[FrameName, ...]:
    """The names of a clip's frames as :func:`read_cityscapes_vps` read them (its image ids and
    file names), to write predictions of the clip under them
    (:func:`write_cityscapes_vps` ``frame_names``).

    Raises:
        ValueError: a frame not named as the reader names frames (not read by it).
    """
    names = []
    for frame in clip.frames:
        if frame.image_id is None:
            names.append(FrameName(frame.image_path.name))
            continue
        match = _IMAGE_ID.match(frame.image_id) or _IMAGE_ID.match(frame.image_path.name)
        if match is None:
            raise ValueError(
                f"clip {clip.name!r} frame {frame.index}: image id {frame.image_id!r} is not "
                "'<vid>_<gid>_<city>_<seq:06d>_<frame:06d>'"
            )
        raw = f"{match.group(3)}_{match.group(4)}_{match.group(5)}_leftImg8bit.png"
        names.append(FrameName(raw, frame.image_id, frame.image_path.name))
    return tuple(names)


def label_file_name(image_name: str) -> str:
    """The ``panoptic_video/`` file of a listed frame's label, named from its ``img/`` file as the
    official tools do: ``_newImg8bit.png`` -> ``_final_mask.png``, ``_leftImg8bit.png`` ->
    ``_gtFine_color.png`` (any other name: its stem + ``_final_mask.png``)."""
    for image_suffix, label_suffix in zip(_IMAGE_SUFFIXES, _LABEL_SUFFIXES, strict=True):
        if image_name.endswith(image_suffix):
            return image_name.removesuffix(image_suffix) + label_suffix
    return f"{Path(image_name).stem}{_LABEL_SUFFIXES[0]}"


def write_cityscapes_vps(
    clips: Iterable[LabeledClip],
    root: Path,
    split: str = "val",
    *,
    frame_names: Mapping[str, Sequence[FrameName]] | None = None,
    submission: bool = False,
) -> None:
    """Write clips as a Cityscapes-VPS split (``img/``, ``img_all/``, ``panoptic_video/``, JSON).

    Args:
        clips: each clip's name is its video number (``"1"`` .. ``"9999"``); labels must sit at
            positions 4, 9, 14, ... through the last frame (so the length is a multiple of 5)
            and nowhere else, as in the dataset. Not so for a clip named in ``frame_names``.
        root: dataset root; created if missing, existing files of the same names are replaced.
        split: split name.
        frame_names: by clip name, the names of its frames (one per frame, e.g.
            :func:`clip_frame_names` of the ground truth's clip), looked up when the clip is
            reached.
            Labels may sit on any frame the names list as the JSON's; its other frames get only
            an ``img_all/`` image.
        submission: also write ``<split>/pred.json`` and ``<split>/pan_pred/<image id>.png``
            (the module docstring).

    Raises:
        ValueError: on a non-numeric or repeated clip name (a repeated one also when named),
            labels at other positions (named clips: on a frame with no image id), a class id
            outside 0..18 (other than 255), image/label size mismatch, a names/frames count
            mismatch or more than 999 tracks.
        OSError: if a file cannot be written.
    """
    root = Path(root)
    split_dir = root / split
    for sub in ("img", "img_all", "panoptic_video", *(("pan_pred",) if submission else ())):
        (split_dir / sub).mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    seen: set[str] = set()
    videos: set[int] = set()
    gid = 0
    for clip in clips:
        if clip.name in seen:
            raise ValueError(f"clip name {clip.name!r}: written twice")
        seen.add(clip.name)
        names = None if frame_names is None else frame_names.get(clip.name)
        if names is None:
            vid = _video_number(clip.name)
            if vid in videos:
                raise ValueError(f"clip name {clip.name!r}: video {vid} written twice")
            videos.add(vid)
            _check_positions(clip)
            names = _writer_names(clip, vid, gid)
            gid += sum(name.image_id is not None for name in names)
        elif len(names) != len(clip.images):
            raise ValueError(
                f"clip {clip.name!r}: {len(names)} frame names for {len(clip.images)} frames"
            )
        tracks = _track_ids(clip)
        for pos, (image, label, name) in enumerate(
            zip(clip.images, clip.labels, names, strict=True)
        ):
            _check_image(clip.name, pos, image, label)
            _write_png(split_dir / "img_all" / name.raw, image[:, :, ::-1])
            if name.image_id is None or name.image is None:
                if label is not None:
                    raise ValueError(
                        f"clip {clip.name!r} frame {pos}: a label on a frame without an image id "
                        "(the JSON lists only frames with one)"
                    )
                continue
            _write_png(split_dir / "img" / name.image, image[:, :, ::-1])
            height, width = image.shape[:2]
            images.append(
                {"id": name.image_id, "width": width, "height": height, "file_name": name.image}
            )
            if label is None:
                continue
            label_name = label_file_name(name.image)
            ids = _segment_ids(clip.name, pos, label, tracks)
            _write_png(split_dir / "panoptic_video" / label_name, _ids_to_bgr(ids))
            annotations.append(
                {
                    "image_id": name.image_id,
                    "file_name": label_name,
                    "segments_info": _segments_info(ids),
                }
            )
            if submission:
                _link_or_copy(
                    split_dir / "panoptic_video" / label_name,
                    split_dir / "pan_pred" / f"{name.image_id}.png",
                )
    data = {"images": images, "annotations": annotations, "categories": _categories()}
    _json_path(root, split).write_text(json.dumps(data, indent=1))
    if submission:
        pred = [{**a, "file_name": f"{a['image_id']}.png"} for a in annotations]
        (split_dir / "pred.json").write_text(json.dumps({"annotations": pred}, indent=1))


def _writer_names(clip: LabeledClip, vid: int, gid: int) -> tuple[FrameName, ...]:
    """The writer's own names of a clip's frames (module docstring); ``gid``: annotated frames
    written before."""
    names = []
    for pos, label in enumerate(clip.labels):
        raw = f"{WRITER_CITY}_{vid:06d}_{pos:06d}_leftImg8bit.png"
        if label is None:
            names.append(FrameName(raw))
            continue
        gid += 1
        image_id = f"{vid:04d}_{gid:04d}_{WRITER_CITY}_{vid:06d}_{pos:06d}"
        names.append(FrameName(raw, image_id, f"{image_id}{_IMAGE_SUFFIXES[0]}"))
    return tuple(names)


def _segments_info(ids: npt.NDArray[np.int64]) -> list[dict[str, Any]]:
    """``segments_info`` of a frame's segment ids in the writer's scheme (0 = void)."""
    uniq, areas = np.unique(ids[ids > 0], return_counts=True)
    segments = []
    for sid, area in zip(uniq.tolist(), areas.tolist(), strict=True):
        cat = sid // CLASS_STRIDE - 1
        crowd = cat in CITYSCAPES_VPS.thing_ids and sid % CLASS_STRIDE == 0
        segments.append({"id": sid, "category_id": cat, "iscrowd": int(crowd), "area": area})
    return segments


def _categories() -> list[dict[str, Any]]:
    return [
        {
            "id": c,
            "name": name,
            "isthing": int(c in CITYSCAPES_VPS.thing_ids),
            "color": [int(v) for v in cs.COLORS[c]],
        }
        for c, name in enumerate(CITYSCAPES_VPS.class_names)
    ]


def _link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` as a hard link to ``src`` (a copy where links are not possible)."""
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _video_number(name: str) -> int:
    if not name.isdigit() or not 0 < int(name) <= 9999:
        raise ValueError(f"clip name {name!r}: expected a video number 1..9999")
    return int(name)


def _check_positions(clip: LabeledClip) -> None:
    every = CITYSCAPES_VPS.annotated_every
    expected = list(range(every - 1, len(clip.labels), every))
    actual = [i for i, label in enumerate(clip.labels) if label is not None]
    if len(clip.labels) % every:
        raise ValueError(
            f"clip {clip.name!r}: Cityscapes-VPS clips have a multiple of {every} frames "
            f"(every {every}th is labeled), got {len(clip.labels)}"
        )
    if actual != expected:
        raise ValueError(
            f"clip {clip.name!r} ({len(clip.labels)} frames): Cityscapes-VPS labels must be at "
            f"positions {expected}, got {actual}"
        )


def _check_image(
    name: str, pos: int, image: npt.NDArray[np.uint8], label: PanopticLabel | None
) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"clip {name!r} frame {pos}: image must be uint8[H, W, 3], got "
            f"{image.dtype}{list(image.shape)}"
        )
    if label is not None and label.shape != image.shape[:2]:
        raise ValueError(
            f"clip {name!r} frame {pos}: label {label.shape} != image {image.shape[:2]}"
        )


def _track_ids(clip: LabeledClip) -> npt.NDArray[np.int64]:
    """Sorted distinct track ids on the thing pixels of a clip's labels."""
    things = np.fromiter(CITYSCAPES_VPS.thing_ids, np.int64)
    found = [
        np.unique(label.instance[np.isin(label.semantic, things) & (label.instance > 0)])
        for label in clip.labels
        if label is not None
    ]
    tracks = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
    if len(tracks) >= CLASS_STRIDE:
        raise ValueError(
            f"clip {clip.name!r}: {len(tracks)} tracks, at most {CLASS_STRIDE - 1} fit the "
            f"segment-id scheme"
        )
    return tracks.astype(np.int64)


def _segment_ids(
    name: str, pos: int, label: PanopticLabel, tracks: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """``int64[H, W]`` segment ids of the writer's scheme (0 on void)."""
    sem = label.semantic.astype(np.int64)
    valid = sem != IGNORE_LABEL
    bad = valid & (sem >= CITYSCAPES_VPS.num_classes)
    if bad.any():
        raise ValueError(
            f"clip {name!r} frame {pos}: class id {int(sem[bad][0])} is not a Cityscapes train "
            f"id 0..18 or {IGNORE_LABEL}"
        )
    things = np.fromiter(CITYSCAPES_VPS.thing_ids, np.int64)
    tracked = valid & np.isin(sem, things) & (label.instance > 0)
    rank = np.searchsorted(tracks, label.instance) + 1
    ids: npt.NDArray[np.int64] = np.where(valid, (sem + 1) * CLASS_STRIDE, 0) + np.where(
        tracked, rank, 0
    )
    return ids


def _ids_to_bgr(ids: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    """BGR image whose RGB encodes ``ids`` as ``R + 256 G + 256**2 B``."""
    return np.stack([ids // 65536, ids // 256 % 256, ids % 256], axis=-1).astype(np.uint8)


def _write_png(path: Path, bgr: npt.NDArray[np.uint8]) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(bgr)):
        raise OSError(f"{path}: could not write the PNG")
