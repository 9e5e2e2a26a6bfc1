"""ROS messages without ROS: the one place for message code (no rclpy import anywhere in it).

* :mod:`.messages`: our ``msg/*.msg`` registered in a ``rosbags`` typestore (bags and CDR without
  ROS), :class:`MessageTypes` (the message classes conversions build, from ``rosbags`` or from
  rclpy), time and header helpers.
* :mod:`.image`: ``sensor_msgs/Image`` / ``CompressedImage`` <-> numpy (the one place that knows
  ROS image encodings).
* :mod:`.panoptic`: :class:`~vcups_core.types.PanopticFrame` <-> ``PanopticTrackArray``, the
  ``PanopticInfo`` builders (the node's and replay's one info message).

Everything works on rclpy, ``rosbags`` and ``mcap_ros2`` message objects alike; the node adds
only the rclpy classes (``vcups_ros.rclpy_types.rclpy_types()``). The names below are the public
interface; import them from here.
"""

from __future__ import annotations

from vcups_core.rosmsg.image import (
    COMPRESSED_CODECS,
    IMAGE_ENCODINGS,
    RGB_ENCODINGS,
    array_to_image_msg,
    compressed_msg_to_rgb,
    gray_to_rgb,
    image_msg_to_array,
    image_msg_to_rgb,
    is_compressed,
    msg_to_video_frame,
    parse_compressed_format,
    rgb_to_compressed_msg,
    rgb_to_image_msg,
)
from vcups_core.rosmsg.messages import (
    MESSAGE_NAMES,
    NS_PER_S,
    PACKAGE,
    MessageTypes,
    find_msg_dir,
    make_header,
    msg_dir_candidates,
    msg_type,
    ns_to_time,
    time_to_ns,
    typestore,
)
from vcups_core.rosmsg.panoptic import (
    SEGMENT_IDS_ENCODING,
    TrackArrayMeta,
    msg_to_panoptic_frame,
    panoptic_frame_to_msg,
    panoptic_info_msg,
    segmenter_info_msg,
    segments_from_msg,
)

__all__ = [
    "COMPRESSED_CODECS",
    "IMAGE_ENCODINGS",
    "MESSAGE_NAMES",
    "NS_PER_S",
    "PACKAGE",
    "RGB_ENCODINGS",
    "SEGMENT_IDS_ENCODING",
    "MessageTypes",
    "TrackArrayMeta",
    "array_to_image_msg",
    "compressed_msg_to_rgb",
    "find_msg_dir",
    "gray_to_rgb",
    "image_msg_to_array",
    "image_msg_to_rgb",
    "is_compressed",
    "make_header",
    "msg_dir_candidates",
    "msg_to_panoptic_frame",
    "msg_to_video_frame",
    "msg_type",
    "ns_to_time",
    "panoptic_frame_to_msg",
    "panoptic_info_msg",
    "parse_compressed_format",
    "rgb_to_compressed_msg",
    "rgb_to_image_msg",
    "segmenter_info_msg",
    "segments_from_msg",
    "time_to_ns",
    "typestore",
]
