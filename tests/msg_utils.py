"""Test helpers: compare ROS messages field by field, whatever library made them."""

from __future__ import annotations

import array
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def field_names(msg: Any) -> list[str]:
    """Field names of an rclpy, rosbags or mcap_ros2 message object (empty for non-messages)."""
    if hasattr(msg, "get_fields_and_field_types"):  # rclpy
        return list(msg.get_fields_and_field_types())
    if dataclasses.is_dataclass(msg):  # rosbags
        return [f.name for f in dataclasses.fields(msg) if not f.name.startswith("__")]
    slots = getattr(type(msg), "__slots__", None)  # mcap_ros2 dynamic messages
    if slots and not isinstance(msg, (np.generic, array.array)):
        return [s for s in slots if not s.startswith("_")]
    return []


def to_plain(msg: Any) -> Any:
    """Nested plain Python values (dicts, lists, ints, floats, str) of a message."""
    names = field_names(msg)
    if names:
        return {name: to_plain(getattr(msg, name)) for name in names}
    if isinstance(msg, (bytes, bytearray, memoryview)):
        return list(bytes(msg))
    if isinstance(msg, (np.ndarray, array.array)):
        return np.asarray(msg).tolist()
    if isinstance(msg, (list, tuple)):
        return [to_plain(v) for v in msg]
    if isinstance(msg, (np.generic,)):
        return msg.item()
    return msg


def read_with_mcap_ros2(path: Path) -> Iterator[tuple[str, int, Any]]:
    """``(topic, log_time_ns, message)`` of an MCAP file, decoded by mcap_ros2 (not rosbags)."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    with Path(path).open("rb") as fh:
        reader = make_reader(fh, decoder_factories=[DecoderFactory()])
        for _, channel, message, msg in reader.iter_decoded_messages():
            yield channel.topic, message.log_time, msg
