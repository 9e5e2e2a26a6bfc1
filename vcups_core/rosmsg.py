"""Our ROS message definitions (``msg/*.msg``) without ROS: a ``rosbags`` typestore.

``rosbags`` reads and writes rosbag2 files and CDR without any ROS installation. This module finds
the ``.msg`` files of the ``vcups_ros`` package and registers them, on top of the standard ROS 2
Jazzy types, in a typestore used by the bag readers/writers and by the tests.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

PACKAGE = "vcups_ros"
MESSAGE_NAMES: tuple[str, ...] = ("PanopticTrack", "PanopticTrackArray", "PanopticInfo")
"""Our message types, in dependency order."""


def msg_dir_candidates() -> list[Path]:
    """Where ``msg/*.msg`` may be: the source tree, a pip install, an ament (colcon) install."""
    candidates = [Path(__file__).resolve().parent.parent / "msg"]
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
