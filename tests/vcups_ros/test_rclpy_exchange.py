"""A real rclpy publisher and a subscriber in another process exchange a PanopticTrackArray.

The subscriber runs in a child process, so the message crosses DDS on localhost (serialised by
the publisher's RMW, deserialised by the subscriber's); the child writes what it received, in
rclpy's own CDR serialisation, to a file that this test decodes and compares field by field.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from conftest import REPO, rclpy_or_skip
from msg_utils import to_plain

from vcups_core import rosmsg
from vcups_core.types import PanopticFrame
from vcups_ros.rclpy_types import rclpy_types

SUBSCRIBER = textwrap.dedent(
    """
    import sys, rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import serialize_message
    from vcups_ros.msg import PanopticTrackArray

    out = sys.argv[1]
    rclpy.init()
    node = rclpy.create_node("vcups_test_listener")
    got = []
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(PanopticTrackArray, "panoptic/tracks", got.append, qos)
    while not got:
        rclpy.spin_once(node, timeout_sec=0.1)
    with open(out + ".tmp", "wb") as f:
        f.write(serialize_message(got[0]))
    import os; os.replace(out + ".tmp", out)
    node.destroy_node()
    rclpy.shutdown()
    """
)


def test_track_array_crosses_dds_between_processes(
    tiny_frame: PanopticFrame, tmp_path: Path
) -> None:
    rclpy_or_skip()
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message
    from vcups_ros.msg import PanopticTrackArray

    types = rclpy_types()
    meta = rosmsg.TrackArrayMeta(
        frames_dropped=1, info_version=3, receive_time_ns=11, publish_time_ns=22, inference_ms=4.5
    )
    sent = rosmsg.panoptic_frame_to_msg(tiny_frame, types, meta)
    out = tmp_path / "received.cdr"
    child = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, str(out)], cwd=REPO)

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("vcups_test_talker", context=context)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        pub = node.create_publisher(PanopticTrackArray, "panoptic/tracks", qos)
        deadline = time.monotonic() + 30.0
        while not out.exists() and child.poll() is None and time.monotonic() < deadline:
            pub.publish(sent)
            time.sleep(0.05)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()

    assert out.exists(), (
        f"the subscriber process received nothing in 30 s (exit {child.returncode})"
    )
    got = deserialize_message(out.read_bytes(), PanopticTrackArray)
    assert got == sent  # rclpy compares every field
    assert to_plain(got) == to_plain(sent)
    frame, meta_back = rosmsg.msg_to_panoptic_frame(got)
    assert meta_back == meta
    assert frame.segments == tiny_frame.segments
    assert np.array_equal(frame.segment_ids, tiny_frame.segment_ids)
    assert frame.stamp_ns == tiny_frame.stamp_ns
    assert frame.frame_id == "cam_front"
