"""Where pseudo-labelling reads its video from: bags, folders of frames, or a registered dataset.

:func:`open_source` turns a :class:`SourceSpec` (what ``vcups pseudo-labels`` was given) into
:class:`SourceClip`\\ s, each a sequence of frames decoded lazily in order with the stem its
label file is named after:

* ``bag``: one clip per rosbag2 (folder or ``.mcap`` file) and image topic. Clip name = the bag
  folder's name or the ``.mcap`` file's stem; frame stem = the header stamp in ns (decimal). The
  intrinsics come from a ``sensor_msgs/CameraInfo`` topic next to the image topic
  (``/cam/image_raw`` -> ``/cam/camera_info``; ``/cam/image_raw/compressed`` -> also
  ``/cam/camera_info``), or the bag's only CameraInfo topic; else None.
* ``frames``: one clip per folder of ``.png``/``.jpg``/``.jpeg`` files, in file-name order. Clip
  name = the folder's name; frame stem = the file's stem. If every stem is 19 decimal digits (the
  ``<stamp_ns>.png`` names ``vcups extract`` writes) it is the frame's stamp, else frames are
  stamped ``index x 100 ms``.
* ``dataset``: one clip per :class:`~vcups_core.data.clip.Clip` of
  :func:`~vcups_core.data.registry.open_dataset`; frame stem = the image file's stem (DAVIS:
  ``00000``), stamps as the reader gives them.

Errors that concern the whole source (missing path, missing topic, an empty folder, an unknown
dataset) are raised by :func:`open_source`. Errors of single frames (a truncated JPEG, a damaged
bag) are raised while a clip's frames are iterated, so the caller can fail that clip only.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from vcups_core.types import VideoFrame

log = logging.getLogger(__name__)

SourceKind = Literal["bag", "frames", "dataset"]
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
"""File types a frames folder may hold (case-insensitive); other files are ignored."""
FOLDER_FRAME_PERIOD_NS = 100_000_000
"""Stamp spacing of frames-folder frames whose names are not stamps (10 fps)."""
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"

FrameStream = Iterator[tuple[str, VideoFrame]]


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """What to read, as given on the command line.

    Attributes:
        kind: ``"bag"``, ``"frames"`` or ``"dataset"``.
        paths: the bags (``bag``), the frame folders (``frames``) or the dataset root
            (``dataset``, exactly one). Each bag or folder is one clip.
        topic: the image topic (``bag`` only).
        dataset: the registered dataset name (``dataset`` only), e.g. ``"davis"``.
        split: the dataset split (``dataset`` only; None = the reader's default).
    """

    kind: SourceKind
    paths: tuple[Path, ...]
    topic: str | None = None
    dataset: str | None = None
    split: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("bag", "frames", "dataset"):
            raise ValueError(f"source kind {self.kind!r}: expected 'bag', 'frames' or 'dataset'")
        if not self.paths:
            raise ValueError(f"{self.kind} source: no path given")
        if self.kind == "bag" and not self.topic:
            raise ValueError("a bag source needs an image topic (--topic)")
        if self.kind == "dataset" and (not self.dataset or len(self.paths) != 1):
            raise ValueError("a dataset source needs a dataset name and exactly one root folder")

    @classmethod
    def bag(cls, paths: Path | Sequence[Path], topic: str) -> SourceSpec:
        """Bags (rosbag2 folders or ``.mcap`` files), one clip each, read on ``topic``."""
        return cls("bag", _paths(paths), topic=topic)

    @classmethod
    def frames(cls, paths: Path | Sequence[Path]) -> SourceSpec:
        """Folders of image files, one clip each."""
        return cls("frames", _paths(paths))

    @classmethod
    def from_dataset(cls, name: str, root: Path, split: str | None = None) -> SourceSpec:
        """A registered dataset (:data:`~vcups_core.data.registry.READERS`)."""
        return cls("dataset", (Path(root),), dataset=name, split=split)

    @classmethod
    def parse_dataset(cls, text: str, split: str | None = None) -> SourceSpec:
        """``"NAME:ROOT"`` (e.g. ``"davis:../shared/data/davis2016"``) as a dataset source.

        Raises:
            ValueError: not of the form ``NAME:ROOT``.
        """
        name, sep, root = text.partition(":")
        if not sep or not name or not root:
            raise ValueError(f"dataset {text!r}: expected NAME:ROOT, e.g. davis:/data/davis2016")
        return cls.from_dataset(name, Path(root), split)


def _paths(paths: Path | Sequence[Path]) -> tuple[Path, ...]:
    if isinstance(paths, (str, Path)):
        return (Path(paths),)
    return tuple(Path(p) for p in paths)


@dataclasses.dataclass(frozen=True, eq=False)
class SourceClip:
    """One clip of a source: its name, frame count, camera and a lazy stream of its frames.

    Attributes:
        name: the clip (sequence) name; the store folder of its labels.
        length: number of frames if known without decoding them (a bag's index, a folder's
            files), else None (a bag whose index is damaged).
        intrinsics: ``float64[3, 3]`` K at :attr:`native_size`, or None if the source has none.
        native_size: ``(height, width)`` the intrinsics refer to (a CameraInfo's size), or None
            if unknown before decoding (then the frames' own size is the native size).
        source: how to find the clip again (JSON-able; what :func:`reopen_clip` takes):
            ``kind``, ``path`` and ``topic`` (bag) / ``dataset``, ``split`` and ``clip``
            (dataset).
    """

    name: str
    length: int | None
    intrinsics: npt.NDArray[np.float64] | None
    native_size: tuple[int, int] | None
    source: dict[str, Any]
    _read: Callable[[], FrameStream] = dataclasses.field(repr=False, compare=False)
    _stems: tuple[str, ...] | None = dataclasses.field(default=None, repr=False, compare=False)

    def frames(self) -> FrameStream:
        """Decode the frames in order, lazily: ``(stem, frame)`` pairs.

        ``frame.image`` is ``uint8[H, W, 3]`` RGB at the native size; ``frame.index`` is as the
        source numbers it (use the position in the stream as the clip index).

        Raises (while iterating):
            ValueError, FileNotFoundError: a frame file is missing, truncated or not an image
                (the message names the file).
            BagReadError: the bag is damaged (the message names the bag and the last good stamp).
        """
        return self._read()

    @functools.cached_property
    def stems(self) -> tuple[str, ...]:
        """The frame stems in order (for a bag this reads every message header once)."""
        if self._stems is not None:
            return self._stems
        return tuple(stem for stem, _ in self.frames())

    def __len__(self) -> int:
        return self.length if self.length is not None else len(self.stems)


def read_image(path: Path) -> npt.NDArray[np.uint8]:
    """Read an image file as ``uint8[H, W, 3]`` RGB, rejecting damaged files.

    Unlike ``cv2.imread``, a truncated JPEG (one without its end-of-image marker, which libjpeg
    would decode with grey filler and only a warning) is an error.

    Raises:
        FileNotFoundError: the file is missing or unreadable.
        ValueError: the file is empty, a truncated JPEG, or not a decodable image.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FileNotFoundError(f"{path}: cannot read the image ({exc.strerror})") from None
    if not data:
        raise ValueError(f"{path}: empty image file")
    if path.suffix.lower() in (".jpg", ".jpeg") and not data.rstrip(b"\0\r\n\t ").endswith(
        b"\xff\xd9"
    ):
        raise ValueError(f"{path}: truncated JPEG (no end-of-image marker)")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: damaged or not a readable image")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def open_source(spec: SourceSpec) -> list[SourceClip]:
    """The clips of ``spec``, in a fixed order (bags and folders as given, datasets as read).

    Raises:
        FileNotFoundError: a bag, folder or dataset root is missing, or a folder holds no image.
        ValueError: the topic is not in a bag (the message lists the bag's topics) or is not an
            image topic; an unknown dataset; two clips with the same name.
        BagReadError: a bag cannot be opened at all.
    """
    if spec.kind == "bag":
        assert spec.topic is not None  # checked by SourceSpec
        clips = [open_bag_clip(p, spec.topic) for p in spec.paths]
    elif spec.kind == "frames":
        clips = [open_frames_clip(p) for p in spec.paths]
    else:
        assert spec.dataset is not None
        clips = open_dataset_clips(spec.dataset, spec.paths[0], spec.split)
    seen: dict[str, dict[str, Any]] = {}
    for clip in clips:
        if clip.name in seen:
            raise ValueError(
                f"two clips are named {clip.name!r} ({seen[clip.name].get('path')} and "
                f"{clip.source.get('path')}); clip names must be unique in a store"
            )
        seen[clip.name] = clip.source
    return clips


def reopen_clip(source: dict[str, Any]) -> SourceClip:
    """The clip a :attr:`SourceClip.source` description (as stored in a manifest) names.

    Raises:
        ValueError: an unknown description, or the dataset no longer has the clip.
        FileNotFoundError: the bag, folder or dataset root is gone.
    """
    kind = source.get("kind")
    path = Path(str(source.get("path")))
    if kind == "bag":
        return open_bag_clip(path, str(source["topic"]))
    if kind == "frames":
        return open_frames_clip(path)
    if kind == "dataset":
        name = str(source["clip"])
        for clip in open_dataset_clips(str(source["dataset"]), path, source.get("split")):
            if clip.name == name:
                return clip
        raise ValueError(f"{path}: dataset {source['dataset']!r} has no clip {name!r}")
    raise ValueError(f"unknown source description {source!r}")


# --------------------------------------------------------------------------------------------------
# Bags


def open_bag_clip(path: Path, topic: str) -> SourceClip:
    """One bag's image topic as a clip (see the module docstring).

    Raises:
        FileNotFoundError, ValueError, BagReadError: as
            :class:`~vcups_core.data.rosbag.BagFrameReader` (missing bag, missing or non-image
            topic with the list of topics, unopenable bag).
    """
    from vcups_core.data.rosbag import BagFrameReader

    path = Path(path)
    reader = BagFrameReader(path, topic)  # checks the bag and the topic now
    camera = read_camera_info(path, topic)
    name = path.resolve().stem if path.is_file() else path.resolve().name

    def read() -> FrameStream:
        for message in BagFrameReader(path, topic).messages():
            yield str(message.stamp_ns), message.frame()

    return SourceClip(
        name=name,
        length=reader.count or None,
        intrinsics=None if camera is None else camera[0],
        native_size=None if camera is None else camera[1],
        source={"kind": "bag", "path": str(path.resolve()), "topic": topic},
        _read=read,
    )


def camera_info_topic(topics: Sequence[tuple[str, str]], image_topic: str) -> str | None:
    """The CameraInfo topic that belongs to ``image_topic`` among ``(name, msgtype)`` pairs.

    Tried in order: ``<parent of image_topic>/camera_info``; for ``.../compressed`` (and the
    other image_transport suffixes) one level higher; the only CameraInfo topic of the bag.
    """
    infos = [name for name, msgtype in topics if msgtype == CAMERA_INFO_TYPE]
    parent = image_topic.rstrip("/").rsplit("/", 1)[0]
    candidates = [f"{parent}/camera_info"]
    if image_topic.rstrip("/").rsplit("/", 1)[-1] in ("compressed", "compressedDepth", "theora"):
        candidates.append(f"{parent.rsplit('/', 1)[0]}/camera_info")
    for candidate in candidates:
        if candidate in infos:
            return candidate
    return infos[0] if len(infos) == 1 else None


def read_camera_info(
    path: Path, image_topic: str
) -> tuple[npt.NDArray[np.float64], tuple[int, int]] | None:
    """K (``float64[3, 3]``) and ``(height, width)`` of the first CameraInfo of ``image_topic``.

    Returns None when the bag has no matching CameraInfo topic, its K is all zeros (an
    uncalibrated camera), or it cannot be read (logged as a warning: the frames may still be
    readable).
    """
    from rosbags.highlevel import AnyReader

    from vcups_core.data.rosbag import list_topics
    from vcups_core.rosmsg import typestore

    try:
        topics = [(t.name, t.msgtype) for t in list_topics(path)]
        info_topic = camera_info_topic(topics, image_topic)
        if info_topic is None:
            return None
        with AnyReader([Path(path)], default_typestore=typestore()) as reader:
            conns = [c for c in reader.connections if c.topic == info_topic]
            for conn, _, raw in reader.messages(connections=conns):
                msg: Any = reader.deserialize(raw, conn.msgtype)
                k = np.asarray(msg.k, np.float64).reshape(3, 3)
                size = (int(msg.height), int(msg.width))
                break
            else:
                return None
    except Exception as exc:  # a damaged bag: the frame reader reports what it can read
        log.warning("%s: camera info of %s not readable: %s", path, image_topic, exc)
        return None
    if not np.any(k) or k[0, 0] <= 0 or k[1, 1] <= 0 or min(size) <= 0:
        return None
    return k, size


# --------------------------------------------------------------------------------------------------
# Frame folders


def open_frames_clip(folder: Path) -> SourceClip:
    """A folder of image files as a clip (see the module docstring).

    Raises:
        FileNotFoundError: the folder is missing, is not a folder, or holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "not a folder" if folder.exists() else "no such folder"
        raise FileNotFoundError(f"{folder}: {what} (expected a folder of image files)")
    files = sorted(
        (
            p
            for p in folder.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
        ),
        key=lambda p: p.name,
    )
    if not files:
        raise FileNotFoundError(
            f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the folder"
        )
    stems = tuple(p.stem for p in files)
    if all(len(s) == 19 and s.isdigit() for s in stems):
        stamps = [int(s) for s in stems]
    else:
        stamps = [i * FOLDER_FRAME_PERIOD_NS for i in range(len(files))]

    def read() -> FrameStream:
        for index, (path, stamp) in enumerate(zip(files, stamps, strict=True)):
            yield path.stem, VideoFrame(read_image(path), stamp_ns=stamp, index=index)

    return SourceClip(
        name=folder.resolve().name,
        length=len(files),
        intrinsics=None,
        native_size=None,
        source={"kind": "frames", "path": str(folder.resolve())},
        _read=read,
        _stems=stems,
    )


# --------------------------------------------------------------------------------------------------
# Datasets


def open_dataset_clips(name: str, root: Path, split: str | None = None) -> list[SourceClip]:
    """Every clip of a registered dataset (see the module docstring).

    Raises:
        ValueError: unknown dataset (the message lists the known ones), a bad split.
        FileNotFoundError: the root lacks the dataset's layout.
    """
    from vcups_core.data.clip import ClipFrame
    from vcups_core.data.registry import open_dataset

    root = Path(root)
    out = []
    for clip in open_dataset(name, root, split):
        frames = clip.frames

        def read(frames: tuple[ClipFrame, ...] = frames) -> FrameStream:
            for f in frames:
                image = read_image(f.image_path)
                yield f.image_path.stem, VideoFrame(image, stamp_ns=f.stamp_ns, index=f.index)

        out.append(
            SourceClip(
                name=clip.name,
                length=len(frames),
                intrinsics=None,
                native_size=None,
                source={
                    "kind": "dataset",
                    "dataset": name,
                    "path": str(root.resolve()),
                    "split": split,
                    "clip": clip.name,
                },
                _read=read,
                _stems=tuple(f.image_path.stem for f in frames),
            )
        )
    return out


# --------------------------------------------------------------------------------------------------
# Processing size


def processing_size(native: tuple[int, int], height: int, width: int) -> tuple[int, int]:
    """The ``(height, width)`` frames are processed (and labelled) at.

    Args:
        native: ``(height, width)`` of the source frames.
        height, width: the configured size; both 0 = the native size; one of them 0 = the other
            one with the native aspect ratio kept.
    """
    h0, w0 = native
    if height == 0 and width == 0:
        return h0, w0
    if height == 0:
        return max(1, round(h0 * width / w0)), width
    if width == 0:
        return height, max(1, round(w0 * height / h0))
    return height, width


def resize_image(image: npt.NDArray[np.uint8], size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """``uint8[H, W, 3]`` -> ``uint8[size[0], size[1], 3]`` with ``cv2.INTER_AREA`` (unchanged if
    the size already fits)."""
    if image.shape[:2] == tuple(size):
        return image
    out = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(out, dtype=np.uint8)


def scale_intrinsics(
    k: npt.NDArray[np.float64], native: tuple[int, int], size: tuple[int, int]
) -> npt.NDArray[np.float64]:
    """K (``float64[3, 3]``, pixel centres at integer coordinates as in ROS CameraInfo) of an
    image of ``native`` ``(height, width)`` resized to ``size``."""
    sy, sx = size[0] / native[0], size[1] / native[1]
    out = np.array(k, dtype=np.float64, copy=True).reshape(3, 3)
    out[0, 0] *= sx
    out[0, 1] *= sx
    out[1, 1] *= sy
    out[0, 2] = (out[0, 2] + 0.5) * sx - 0.5
    out[1, 2] = (out[1, 2] + 0.5) * sy - 0.5
    return out


def assumed_intrinsics(
    size: tuple[int, int], *, focal_px: float = 0.0, hfov_deg: float = 60.0
) -> npt.NDArray[np.float64]:
    """K (``float64[3, 3]``) of a pinhole camera of ``size`` ``(height, width)`` without camera
    info: focal ``focal_px`` if > 0, else from the horizontal field of view; square pixels; the
    principal point at the image centre."""
    h, w = size
    f = focal_px if focal_px > 0 else (w / 2.0) / float(np.tan(np.radians(hfov_deg) / 2.0))
    return np.array([[f, 0.0, (w - 1) / 2.0], [0.0, f, (h - 1) / 2.0], [0.0, 0.0, 1.0]])
