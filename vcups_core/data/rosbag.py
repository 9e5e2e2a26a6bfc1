"""rosbag2 I/O without ROS, through ``rosbags``: camera frames in, synthetic clips with ground truth out.

Reading (:class:`BagFrameReader`): any rosbag2 folder (sqlite3 or MCAP storage) or a bare ``.mcap``
file; one image topic (``sensor_msgs/Image`` or ``CompressedImage``); frames in log-time order with
their header stamps, optionally limited to a time range and thinned by a stride. Gaps (intervals
much longer than the typical frame period) and stamps that go backwards are recorded and reported.
A damaged file raises :class:`BagReadError` naming the file and the last good timestamp, after
every frame before the damage was delivered. An MCAP cut short (a recorder killed or crashed: no
summary, often no ``metadata.yaml``) is read as a stream: every complete chunk is delivered, the
reader logs a warning saying the bag is incomplete and records it in
:attr:`BagFrameReader.incomplete`.

Writing (:class:`BagWriter`, :func:`write_synthetic_bag`): rosbag2 in MCAP or sqlite3 storage with
``sensor_msgs/Image`` frames, ``sensor_msgs/CameraInfo`` and, for evaluation, ground truth on its own
topics (``/gt/semantic`` mono8, ``/gt/instance`` 16UC1, ``/gt/depth`` 32FC1). MCAP chunks carry a
CRC-32 of their content (rosbags' own writer leaves it 0), so damage inside a chunk is an error
instead of a silently different frame. ``metadata.yaml`` records in ``custom_data`` whether the
writing run finished (:data:`STATUS_KEY`); :func:`is_unfinished_bag` tells a re-run which
existing bag it may replace. :func:`write_synthetic_bag` writes under a temporary name and renames
(:class:`~vcups_core.jobs.StagedOutput`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import statistics
import struct
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import yaml
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Connection
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.storage_mcap import McapWriter

from vcups_core.jobs import StagedOutput
from vcups_core.rosmsg import (
    MessageTypes,
    array_to_image_msg,
    make_header,
    msg_to_video_frame,
    rgb_to_image_msg,
    time_to_ns,
    typestore,
)
from vcups_core.types import VideoFrame

log = logging.getLogger(__name__)

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
GT_TOPICS = {
    "semantic": "/gt/semantic",
    "instance": "/gt/instance",
    "depth": "/gt/depth",
}
"""Topics :func:`write_synthetic_bag` uses for the ground truth."""

STATUS_KEY = "vcups.status"
"""``custom_data`` key of ``metadata.yaml`` where :class:`BagWriter` records how the run ended:
``complete``, ``interrupted`` (Ctrl-C/SIGTERM; valid but ends early) or ``failed``."""


class BagReadError(RuntimeError):
    """A bag could not be read (to the end). ``last_good_stamp_ns`` is None if nothing was read."""

    def __init__(self, path: Path, reason: str, last_good_stamp_ns: int | None) -> None:
        self.path = path
        self.last_good_stamp_ns = last_good_stamp_ns
        where = (
            f"after the frame stamped {last_good_stamp_ns} ns"
            if last_good_stamp_ns is not None
            else "before any frame"
        )
        super().__init__(f"{path}: damaged or unreadable {where}: {reason}")


@dataclasses.dataclass(frozen=True)
class TopicInfo:
    """A topic of a bag: name, message type and message count."""

    name: str
    msgtype: str
    count: int


@dataclasses.dataclass(frozen=True)
class FrameGap:
    """Frames missing between two consecutive stamps (``missing`` is the estimate by period)."""

    after_ns: int
    before_ns: int
    missing: int


@dataclasses.dataclass(frozen=True)
class BagMessage:
    """One message of the chosen topic, deserialised but not decoded into pixels.

    Attributes:
        index: position among the topic's messages in the selected time range (before stride).
        stamp_ns: header stamp.
        log_time_ns: time the recorder stored it.
        msg: the ``Image`` / ``CompressedImage`` message object.
    """

    index: int
    stamp_ns: int
    log_time_ns: int
    msg: Any

    def frame(self, max_pixels: int | None = None) -> VideoFrame:
        """Decode to a :class:`VideoFrame` (RGB, header stamp and frame id)."""
        return msg_to_video_frame(self.msg, index=self.index, max_pixels=max_pixels)


def _bag_paths(path: Path) -> list[Path]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such bag (a rosbag2 folder or an .mcap file)")
    return [path]


def bag_info(path: Path) -> tuple[list[TopicInfo], tuple[int, int] | None]:
    """A bag's topics (types and message counts) and the ``(first, last)`` log time (ns) of its
    messages (None for an empty bag), from one opening of its index.

    Raises:
        FileNotFoundError: no such file or folder.
        BagReadError: the bag cannot be opened.
    """
    path = Path(path)
    paths = _bag_paths(path)
    try:
        with AnyReader(paths, default_typestore=typestore()) as reader:
            counts: dict[tuple[str, str], int] = {}
            for conn in reader.connections:
                key = (conn.topic, conn.msgtype)
                counts[key] = counts.get(key, 0) + conn.msgcount
            span = (
                (int(reader.start_time), int(reader.end_time) - 1)  # end_time: last + 1
                if any(counts.values())
                else None
            )
    except Exception as exc:  # also rosbags' FileNotFoundError for a missing metadata.yaml
        raise BagReadError(path, str(exc), None) from exc
    return [TopicInfo(t, m, n) for (t, m), n in sorted(counts.items())], span


def list_topics(path: Path) -> list[TopicInfo]:
    """Topics of a bag with their types and message counts (:func:`bag_info`)."""
    return bag_info(path)[0]


def _seconds(ns: int) -> str:
    return f"{ns / 1e9:.3f} s"


class BagFrameReader:
    """Iterate the frames of one image topic of a bag.

    Args:
        path: rosbag2 folder or ``.mcap`` file.
        topic: the image topic (``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage``).
        start_ns, stop_ns: keep messages with ``start_ns <= log time < stop_ns`` (None: open).
        stride: yield every ``stride``-th message of the range.
        max_pixels: reject larger images (``ValueError``).
        gap_factor: an interval longer than ``gap_factor`` times the median period is a gap.

    Raises (on construction):
        FileNotFoundError: no such bag.
        ValueError: the topic does not exist (the message lists the topics that do) or is not an
            image topic; ``stride < 1``; ``start_ns >= stop_ns``, or a range outside the bag's
            messages (the message gives their span).
        BagReadError: the bag cannot be opened at all.

    After iteration, :attr:`stamps` holds every stamp of the range and :meth:`gaps` /
    :attr:`backwards` describe missing frames and stamps that went back in time. :attr:`incomplete`
    is None, or says why the bag ends early: cut short (read as a stream up to the last complete
    chunk; known after iteration) or marked interrupted by the run that wrote it (known at once).
    Both are also logged as warnings.
    """

    def __init__(
        self,
        path: Path,
        topic: str,
        *,
        start_ns: int | None = None,
        stop_ns: int | None = None,
        stride: int = 1,
        max_pixels: int | None = None,
        gap_factor: float = 1.5,
    ) -> None:
        if stride < 1:
            raise ValueError(f"stride: expected >= 1, got {stride}")
        if start_ns is not None and stop_ns is not None and start_ns >= stop_ns:
            raise ValueError(
                f"start {_seconds(start_ns)} is not before end {_seconds(stop_ns)}: "
                "an empty time range"
            )
        self.path = Path(path)
        self.topic = topic
        self.start_ns, self.stop_ns, self.stride = start_ns, stop_ns, stride
        self.max_pixels = max_pixels
        self.gap_factor = gap_factor
        self.stamps: list[int] = []
        self.backwards = 0
        self.incomplete: str | None = None
        self._open_error: Exception | None = None
        span: tuple[int, int] | None = None
        try:
            topics, span = bag_info(self.path)
        except BagReadError as exc:
            if not self._is_mcap():
                raise
            # A truncated MCAP has no footer/index; it is still readable as a stream.
            self._open_error = exc
            topics = []
        if self._open_error is None:
            matches = [t for t in topics if t.name == topic]
            if not matches:
                listing = ", ".join(f"{t.name} ({t.msgtype}, {t.count})" for t in topics) or "none"
                raise ValueError(f"{self.path}: no topic {topic!r}; topics in the bag: {listing}")
            if matches[0].msgtype not in IMAGE_TYPES:
                raise ValueError(
                    f"{self.path}: topic {topic!r} has type {matches[0].msgtype}, expected one of "
                    f"{', '.join(IMAGE_TYPES)}"
                )
            self.count = matches[0].count
            self._check_time_range(span)
            if bag_status(self.path) == "interrupted":
                self.incomplete = "marked interrupted by the run that wrote it: it ends early"
                log.warning("%s: %s", self.path, self.incomplete)
        else:
            self.count = 0

    def _check_time_range(self, span: tuple[int, int] | None) -> None:
        """Refuse a ``start_ns``/``stop_ns`` range that lies outside the bag's messages
        (``span``: their first and last log time)."""
        if self.start_ns is None and self.stop_ns is None:
            return
        if span is None:
            return
        first, last = span
        after = self.start_ns is not None and self.start_ns > last
        before = self.stop_ns is not None and self.stop_ns <= first
        if after or before:
            asked = " and ".join(
                f"{name} {_seconds(ns)}"
                for name, ns in (("start", self.start_ns), ("end", self.stop_ns))
                if ns is not None
            )
            raise ValueError(
                f"{self.path}: {asked} lies outside the bag, whose messages are logged from "
                f"{_seconds(first)} to {_seconds(last)}"
            )

    def _is_mcap(self) -> bool:
        return self.path.suffix == ".mcap" or any(self.path.glob("*.mcap"))

    def __iter__(self) -> Iterator[VideoFrame]:
        for message in self.messages():
            yield message.frame(self.max_pixels)

    def messages(self) -> Iterator[BagMessage]:
        """Like iterating, but yields :class:`BagMessage` (pixels not decoded yet)."""
        self.stamps = []
        self.backwards = 0
        source = self._indexed() if self._open_error is None else self._streamed()
        index = 0
        for log_time, msg in source:
            if self.start_ns is not None and log_time < self.start_ns:
                continue
            if self.stop_ns is not None and log_time >= self.stop_ns:
                continue
            stamp = time_to_ns(msg.header.stamp)
            if self.stamps and stamp < self.stamps[-1]:
                self.backwards += 1
            self.stamps.append(stamp)
            if index % self.stride == 0:
                yield BagMessage(index, stamp, log_time, msg)
            index += 1
        self._report()

    def _last_stamp(self) -> int | None:
        return self.stamps[-1] if self.stamps else None

    def _indexed(self) -> Iterator[tuple[int, Any]]:
        try:
            with AnyReader(_bag_paths(self.path), default_typestore=typestore()) as reader:
                conns = [c for c in reader.connections if c.topic == self.topic]
                for conn, log_time, raw in reader.messages(
                    connections=conns, start=self.start_ns, stop=self.stop_ns
                ):
                    yield log_time, reader.deserialize(raw, conn.msgtype)
        except Exception as exc:
            raise BagReadError(
                self.path, f"{type(exc).__name__}: {exc}", self._last_stamp()
            ) from exc

    def _streamed(self) -> Iterator[tuple[int, Any]]:
        """Read an MCAP file front to back without its index (for bags cut short).

        Chunk CRCs are checked. The end of the file in the middle of a record is where the
        recording stopped: the complete chunks before it are delivered, then a warning.

        Raises:
            BagReadError: a damaged record (CRC mismatch, invalid record) or an unreadable file.
            ValueError: the readable part holds no message of the topic, or the topic is not an
                image topic.
        """
        from mcap.exceptions import EndOfFile
        from mcap.reader import NonSeekingReader

        files = [self.path] if self.path.suffix == ".mcap" else sorted(self.path.glob("*.mcap"))
        store = typestore()
        topics: dict[str, str] = {}
        cut: list[Path] = []
        for file in files:
            try:
                with file.open("rb") as fh:
                    reader = NonSeekingReader(fh, validate_crcs=True)
                    for schema, channel, message in reader.iter_messages(log_time_order=False):
                        if schema is None:
                            continue
                        topics.setdefault(channel.topic, schema.name)
                        if channel.topic != self.topic or schema.name not in IMAGE_TYPES:
                            continue
                        yield message.log_time, store.deserialize_cdr(message.data, schema.name)
            except EndOfFile:
                cut.append(file)
            except Exception as exc:
                reason = f"{type(exc).__name__} {exc}".strip()
                if self.topic not in topics and self._open_error is not None:
                    reason = f"{self._open_error}; reading it as a stream: {reason}"
                raise BagReadError(file, reason, self._last_stamp()) from exc
        state = "incomplete (cut short: no index)" if cut else "without a readable index"
        if self.topic not in topics:
            listing = ", ".join(f"{t} ({m})" for t, m in sorted(topics.items())) or "none"
            raise ValueError(
                f"{self.path}: no topic {self.topic!r} in this bag, which is {state}; "
                f"topics in its readable part: {listing}"
            )
        if topics[self.topic] not in IMAGE_TYPES:
            raise ValueError(
                f"{self.path}: topic {self.topic!r} has type {topics[self.topic]}, expected one "
                f"of {', '.join(IMAGE_TYPES)}"
            )
        if cut:
            last = self._last_stamp()
            self.incomplete = (
                f"cut short (no index or summary; e.g. the recorder was killed): recovered the "
                f"{len(self.stamps)} complete messages of {self.topic} it holds"
                + (f", up to the one stamped {last} ns" if last is not None else "")
            )
            log.warning("%s: incomplete bag, %s", ", ".join(map(str, cut)), self.incomplete)
        else:
            log.warning(
                "%s: index unreadable (%s) but every record was read as a stream",
                self.path,
                self._open_error,
            )

    def gaps(self) -> list[FrameGap]:
        """Intervals between consecutive stamps longer than ``gap_factor`` x the median period."""
        if len(self.stamps) < 3:
            return []
        diffs = np.diff(np.asarray(self.stamps, dtype=np.int64))
        positive = diffs[diffs > 0]
        if positive.size == 0:
            return []
        period = float(statistics.median(positive.tolist()))
        out = []
        for i, d in enumerate(diffs.tolist()):
            if d > self.gap_factor * period:
                out.append(FrameGap(self.stamps[i], self.stamps[i + 1], round(d / period) - 1))
        return out

    def _report(self) -> None:
        gaps = self.gaps()
        if gaps:
            missing = sum(g.missing for g in gaps)
            log.warning(
                "%s %s: %d gaps, about %d frames missing (first after %d ns)",
                self.path,
                self.topic,
                len(gaps),
                missing,
                gaps[0].after_ns,
            )
        if self.backwards:
            log.warning(
                "%s %s: header stamps went backwards %d times",
                self.path,
                self.topic,
                self.backwards,
            )


class _CrcMcapWriter(McapWriter):
    """rosbags' MCAP storage, with the CRC-32 of each chunk's records filled in (rosbags writes 0,
    which MCAP readers take as "no CRC")."""

    _CRC_OFFSET = 1 + 8 + 8 + 8 + 8  # opcode, record length, start time, end time, size

    def close_chunk(self) -> None:
        crc = zlib.crc32(self.chunk.bio.getbuffer())
        start = self.bio.tell()
        super().close_chunk()
        end = self.bio.tell()
        self.bio.seek(start + self._CRC_OFFSET)
        self.bio.write(struct.pack("<I", crc))
        self.bio.seek(end)


class _Writer(Writer):
    STORAGE_PLUGINS = MappingProxyType(
        {**Writer.STORAGE_PLUGINS, StoragePlugin.MCAP: _CrcMcapWriter}
    )


def bag_status(path: Path) -> str | None:
    """The :data:`STATUS_KEY` a :class:`BagWriter` recorded in a bag folder's ``metadata.yaml``.

    Returns:
        ``"complete"``, ``"interrupted"``, ``"failed"``, or None (not a folder, no or unreadable
        ``metadata.yaml``, or a bag not written by vcups).
    """
    meta = Path(path) / "metadata.yaml"
    try:
        with meta.open(encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
        status = doc["rosbag2_bagfile_information"]["custom_data"][STATUS_KEY]
    except (OSError, yaml.YAMLError, KeyError, TypeError, UnicodeDecodeError):
        return None
    return str(status)


_KILLED_WRITER_FILES = ("{}.db3", "{}.db3-journal", "{}.db3-wal", "{}.db3-shm")


def is_unfinished_bag(path: Path) -> bool:
    """True for a bag folder whose writing run did not finish, which a re-run may replace.

    That is a bag whose :func:`bag_status` is not ``complete``, or the folder a killed rosbags
    writer leaves: only ``<name>.mcap`` (written by rosbags) or ``<name>.db3`` (with its journal),
    and no ``metadata.yaml``. Any other file, folder or bag (another tool's recording) is False.
    """
    path = Path(path)
    if not path.is_dir() or path.is_symlink():
        return False
    status = bag_status(path)
    if status is not None:
        return status != "complete"
    try:
        names = sorted(os.listdir(path))
    except OSError:
        return False
    if names == [f"{path.name}.mcap"]:
        try:
            with (path / names[0]).open("rb") as fh:
                head = fh.read(64)
        except OSError:
            return False
        return head.startswith(b"\x89MCAP0\r\n") and b"rosbags-" in head
    allowed = {pattern.format(path.name) for pattern in _KILLED_WRITER_FILES}
    return f"{path.name}.db3" in names and set(names) <= allowed


class BagWriter:
    """Write a rosbag2 (MCAP or sqlite3) with our typestore; use as a context manager.

    MCAP chunks carry CRCs. On close, ``metadata.yaml`` records :data:`STATUS_KEY`: :attr:`status`
    if the caller set it (e.g. ``"interrupted"`` for a run stopped by Ctrl-C that keeps its
    frames), else ``complete`` after a normal exit, ``interrupted`` after a
    :class:`KeyboardInterrupt` and ``failed`` after another exception. The bag is written
    directly at ``path``; for a bag that appears only when finished, write it inside a
    :class:`~vcups_core.jobs.StagedOutput` (as :func:`write_synthetic_bag` does).

    Args:
        path: the bag folder to create (must not exist).
        storage: ``"mcap"`` or ``"sqlite3"``.
        custom_data: more ``metadata.yaml`` ``custom_data`` entries (strings).
    """

    def __init__(
        self,
        path: Path,
        storage: Literal["mcap", "sqlite3"] = "mcap",
        *,
        custom_data: Mapping[str, str] | None = None,
    ) -> None:
        if storage not in ("mcap", "sqlite3"):
            raise ValueError(f"storage: expected 'mcap' or 'sqlite3', got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path}: already exists; remove it or choose another path")
        self.store = typestore()
        self.types = MessageTypes.rosbags(self.store)
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = _Writer(self.path, version=9, storage_plugin=plugin)
        for key, value in (custom_data or {}).items():
            self._writer.set_custom_data(key, value)
        self._connections: dict[str, Connection] = {}
        self.status: str | None = None

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        status = self.status
        if status is None:
            if exc_type is None:
                status = "complete"
            elif issubclass(exc_type, KeyboardInterrupt):
                status = "interrupted"
            else:
                status = "failed"
        self._writer.set_custom_data(STATUS_KEY, status)
        self._writer.close()  # also on errors: everything written so far stays readable

    def write(self, topic: str, msg: Any, stamp_ns: int) -> None:
        """Serialise ``msg`` (a rosbags message object) on ``topic`` at log time ``stamp_ns``."""
        msgtype = msg.__msgtype__
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=self.store)
            self._connections[topic] = conn
        elif conn.msgtype != msgtype:
            raise ValueError(f"topic {topic}: expected {conn.msgtype}, got {msgtype}")
        self._writer.write(conn, stamp_ns, self.store.serialize_cdr(msg, msgtype))

    def write_rgb(
        self,
        topic: str,
        rgb: npt.NDArray[np.uint8],
        stamp_ns: int,
        frame_id: str,
        encoding: str = "rgb8",
    ) -> None:
        header = make_header(stamp_ns, frame_id, self.types)
        self.write(topic, rgb_to_image_msg(rgb, encoding, header, self.types), stamp_ns)

    def write_array(
        self, topic: str, array: npt.NDArray[Any], encoding: str, stamp_ns: int, frame_id: str
    ) -> None:
        header = make_header(stamp_ns, frame_id, self.types)
        self.write(topic, array_to_image_msg(array, encoding, header, self.types), stamp_ns)

    def write_camera_info(
        self,
        topic: str,
        intrinsics: npt.NDArray[np.float64],
        height: int,
        width: int,
        stamp_ns: int,
        frame_id: str,
    ) -> None:
        k = np.asarray(intrinsics, np.float64).reshape(3, 3)
        p = np.zeros((3, 4))
        p[:, :3] = k
        t = self.types
        roi = t.RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        msg = t.CameraInfo(
            header=make_header(stamp_ns, frame_id, t),
            height=height,
            width=width,
            distortion_model="plumb_bob",
            d=np.zeros(5),
            k=k.reshape(-1),
            r=np.eye(3).reshape(-1),
            p=p.reshape(-1),
            binning_x=0,
            binning_y=0,
            roi=roi,
        )
        self.write(topic, msg, stamp_ns)


def write_synthetic_bag(
    world: Any,
    path: Path,
    *,
    storage: Literal["mcap", "sqlite3"] = "mcap",
    encoding: Literal["rgb8", "bgr8"] = "rgb8",
    camera_topic: str = "/camera/image_raw",
    ground_truth: bool = True,
    frame_id: str = "camera",
    progress: bool = False,
    overwrite: bool = False,
) -> Path:
    """Render a :class:`~vcups_core.data.synthetic.SyntheticWorld` clip into a rosbag2.

    Topics: ``camera_topic`` (Image), ``<camera namespace>/camera_info`` (CameraInfo) and, with
    ``ground_truth``, :data:`GT_TOPICS` (semantic mono8, instance 16UC1, depth 32FC1 with ``inf``
    for sky). Every message of a frame carries the frame's stamp as header stamp and log time.

    The bag is written under a temporary name next to ``path`` and renamed when finished: an
    interrupted or killed run leaves nothing at ``path``, and the next run removes its leftovers.
    An existing bag at ``path`` is replaced if it is unfinished (:func:`is_unfinished_bag`) or
    ``overwrite`` is set, else refused.

    Returns:
        ``path``.

    Raises:
        FileExistsError: ``path`` exists (a finished bag or anything else) and not ``overwrite``.
        OutputPathError: ``path``'s folder cannot be written, or another run is writing ``path``.
    """
    from tqdm import tqdm

    info_topic = camera_topic.rsplit("/", 1)[0] + "/camera_info"
    staged = StagedOutput(path, overwrite=overwrite, replaceable=is_unfinished_bag)
    with staged, BagWriter(staged.path, storage) as bag:
        for frame in tqdm(
            world.frames(), total=len(world), desc="synth", disable=not progress, unit="frame"
        ):
            stamp = frame.stamp_ns
            bag.write_rgb(camera_topic, frame.rgb, stamp, frame_id, encoding)
            bag.write_camera_info(
                info_topic, frame.intrinsics, world.height, world.width, stamp, frame_id
            )
            if ground_truth:
                if frame.instance.max() > np.iinfo(np.uint16).max:
                    raise ValueError(
                        f"instance ids above 65535 do not fit 16UC1 (frame {frame.index})"
                    )
                bag.write_array(GT_TOPICS["semantic"], frame.semantic, "mono8", stamp, frame_id)
                bag.write_array(
                    GT_TOPICS["instance"],
                    frame.instance.astype(np.uint16),
                    "16UC1",
                    stamp,
                    frame_id,
                )
                bag.write_array(GT_TOPICS["depth"], frame.depth, "32FC1", stamp, frame_id)
    return path
