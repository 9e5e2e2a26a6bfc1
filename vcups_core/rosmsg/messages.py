"""Our ``msg/*.msg`` in a ``rosbags`` typestore, the message classes conversions build, time.

``rosbags`` reads and writes rosbag2 files and CDR without any ROS installation. This module finds
the ``.msg`` files of the ``vcups_ros`` package and registers them, on top of the standard ROS 2
Jazzy types, in a typestore used by the bag readers/writers and by the tests.

:class:`MessageTypes` names the message classes that message-building code uses, so the same code
builds ``rosbags`` objects in the bag writers and replay and rclpy objects in the node
(``vcups_ros.rclpy_types.rclpy_types()``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

NS_PER_S = 1_000_000_000
PACKAGE = "vcups_ros"
MESSAGE_NAMES: tuple[str, ...] = ("PanopticTrack", "PanopticTrackArray", "PanopticInfo")
"""Our message types, in dependency order."""


def msg_dir_candidates() -> list[Path]:
    """Where ``msg/*.msg`` may be: the source tree, a pip install, an ament (colcon) install."""
    candidates = [Path(__file__).resolve().parents[2] / "msg"]
    candidates.append(Path(sys.prefix) / "share" / PACKAGE / "msg")
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / PACKAGE / "msg")
    return candidates


def find_msg_dir() -> Path:
    """Return the first directory holding all of our ``.msg`` files.

    Raises:
        FileNotFoundError: naming every place that was searched.
    """
    candidates = msg_dir_candidates()
    for cand in candidates:
        if all((cand / f"{name}.msg").is_file() for name in MESSAGE_NAMES):
            return cand
    searched = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"vcups_ros .msg files ({', '.join(MESSAGE_NAMES)}) not found in: {searched}"
    )


@functools.cache
def typestore() -> Typestore:
    """ROS 2 Jazzy typestore with ``vcups_ros/msg/*`` registered (cached, treat as read-only)."""
    store = get_typestore(Stores.ROS2_JAZZY)
    msg_dir = find_msg_dir()
    types = {}
    for name in MESSAGE_NAMES:
        text = (msg_dir / f"{name}.msg").read_text(encoding="utf-8")
        types.update(get_types_from_msg(text, f"{PACKAGE}/msg/{name}"))
    store.register(types)
    return store


def msg_type(name: str) -> str:
    """Full type name of one of our messages, e.g. ``vcups_ros/msg/PanopticTrackArray``."""
    if name not in MESSAGE_NAMES:
        raise ValueError(f"unknown vcups_ros message {name!r}; expected one of {MESSAGE_NAMES}")
    return f"{PACKAGE}/msg/{name}"


@dataclasses.dataclass(frozen=True)
class MessageTypes:
    """The message classes that conversions build: from a ``rosbags`` typestore
    (:meth:`rosbags`) or from rclpy (``vcups_ros.rclpy_types.rclpy_types()``).

    Attributes:
        Time, Header, Image, CompressedImage, CameraInfo, RegionOfInterest, PanopticTrack,
        PanopticTrackArray, PanopticInfo: message classes taking every field as a keyword.
        array: turns a 1-D numpy array (``uint8`` or ``bool``) into what this world stores in a
            primitive-array field (``uint8[]``, ``bool[]``).
    """

    Time: Any
    Header: Any
    Image: Any
    CompressedImage: Any
    CameraInfo: Any
    RegionOfInterest: Any
    PanopticTrack: Any
    PanopticTrackArray: Any
    PanopticInfo: Any
    array: Callable[[npt.NDArray[Any]], Any]

    @classmethod
    def rosbags(cls, store: Any = None) -> MessageTypes:
        """Message classes of a ``rosbags`` typestore (default: :func:`typestore`)."""
        if store is None:
            store = typestore()
        t = store.types
        return cls(
            Time=t["builtin_interfaces/msg/Time"],
            Header=t["std_msgs/msg/Header"],
            Image=t["sensor_msgs/msg/Image"],
            CompressedImage=t["sensor_msgs/msg/CompressedImage"],
            CameraInfo=t["sensor_msgs/msg/CameraInfo"],
            RegionOfInterest=t["sensor_msgs/msg/RegionOfInterest"],
            PanopticTrack=t["vcups_ros/msg/PanopticTrack"],
            PanopticTrackArray=t["vcups_ros/msg/PanopticTrackArray"],
            PanopticInfo=t["vcups_ros/msg/PanopticInfo"],
            array=lambda a: np.ascontiguousarray(a).reshape(-1),
        )


def time_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds."""
    sec, nanosec = int(stamp.sec), int(stamp.nanosec)
    if not 0 <= nanosec < NS_PER_S:
        raise ValueError(f"Time.nanosec: expected 0..{NS_PER_S - 1}, got {nanosec}")
    return sec * NS_PER_S + nanosec


def ns_to_time(ns: int, types: MessageTypes) -> Any:
    """Integer nanoseconds (>= 0) -> ``builtin_interfaces/Time``."""
    if ns < 0:
        raise ValueError(f"timestamp: expected >= 0 ns, got {ns}")
    return types.Time(sec=ns // NS_PER_S, nanosec=ns % NS_PER_S)


def make_header(stamp_ns: int, frame_id: str, types: MessageTypes) -> Any:
    """``std_msgs/Header`` with the given stamp and frame id."""
    return types.Header(stamp=ns_to_time(stamp_ns, types), frame_id=frame_id)
