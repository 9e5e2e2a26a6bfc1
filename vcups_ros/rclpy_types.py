"""The rclpy message classes for :mod:`vcups_core.rosmsg`'s conversions (the ROS side of them).

Every conversion lives in :mod:`vcups_core.rosmsg` and builds messages through a
:class:`~vcups_core.rosmsg.messages.MessageTypes`; this module only names the rclpy classes, so
the node's messages come from the same code as replay's ``rosbags`` ones. The message modules are
imported when :func:`rclpy_types` is called, not at import.
"""

from __future__ import annotations

import array
from typing import Any

import numpy as np
import numpy.typing as npt

from vcups_core.rosmsg.messages import MessageTypes


def rclpy_types() -> MessageTypes:
    """Message classes of a ROS 2 environment (imports the message modules lazily)."""
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest
    from std_msgs.msg import Header

    from vcups_ros.msg import PanopticInfo, PanopticTrack, PanopticTrackArray

    return MessageTypes(
        Time=Time,
        Header=Header,
        Image=Image,
        CompressedImage=CompressedImage,
        CameraInfo=CameraInfo,
        RegionOfInterest=RegionOfInterest,
        PanopticTrack=PanopticTrack,
        PanopticTrackArray=PanopticTrackArray,
        PanopticInfo=PanopticInfo,
        array=_rclpy_array,
    )


def _rclpy_array(values: npt.NDArray[Any]) -> Any:
    """rclpy's storage for primitive arrays: ``array('B')`` for uint8 (skips per-element checks,
    which cost seconds on a camera image), a list of ``bool`` for bool."""
    if values.dtype == np.uint8:
        out = array.array("B")
        out.frombytes(np.ascontiguousarray(values).data)  # one copy (tobytes() would add another)
        return out
    if values.dtype == np.bool_:
        return [bool(v) for v in values.reshape(-1)]
    raise TypeError(f"no rclpy array conversion for dtype {values.dtype}")
