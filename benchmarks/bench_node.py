"""End-to-end latency of perception_node with a zero-cost predictor (real rclpy, localhost DDS).

A publisher sends ``--frames`` camera images (default 1024x2048 bgr8) one at a time; the node
decodes each, runs a predictor that returns a precomputed prediction with ``--instances`` objects
(so the network costs nothing), tracks, smooths, composes and publishes a PanopticTrackArray with
the 16UC1 id map; a subscriber records when it arrives. Reported: publish -> receive latency, and
as the same-run baseline the DDS round trip of the bare image (publish -> receive of the same
image on a plain topic): the difference is the node's own overhead (issue target <= 25 ms).

    .venv/bin/python benchmarks/bench_node.py [--frames 30 --height 1024 --width 2048]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Any

import numpy as np
import rclpy
from bench_streaming import NUM_STUFF, NUM_THINGS, synthetic_predictions
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vcups_ros.msg import PanopticTrackArray

from vcups_core.types import CategoryTable, FramePrediction
from vcups_ros import conversions as conv
from vcups_ros.perception_node import PerceptionNode


class Precomputed:
    """A predictor that costs nothing: it cycles through precomputed predictions."""

    def __init__(self, predictions: list[FramePrediction]) -> None:
        self.categories = CategoryTable.default(NUM_THINGS, NUM_STUFF)
        self._predictions = predictions
        self._i = 0

    def predict(self, image: np.ndarray) -> FramePrediction:
        p = self._predictions[self._i % len(self._predictions)]
        self._i += 1
        return p


def measure(
    frames: int, height: int, width: int, instances: int
) -> tuple[list[float], list[float]]:
    predictions = synthetic_predictions(height, width, instances, 5)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = PerceptionNode(
        predictor_factory=lambda cfg: Precomputed(predictions),
        context=context,
        parameter_overrides=[
            Parameter("input.reliability", value="reliable"),
            Parameter("input.max_pixels", value=height * width),
            Parameter("output.publish_overlay", value=False),
        ],
    )
    peer = rclpy.create_node("bench_peer", context=context)
    qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
    arrivals: dict[int, float] = {}
    echo_arrivals: dict[int, float] = {}
    peer.create_subscription(
        PanopticTrackArray,
        "panoptic/tracks",
        lambda m: arrivals.setdefault(m.header.stamp.nanosec, time.perf_counter()),
        qos,
    )
    peer.create_subscription(
        Image,
        "bench/echo",
        lambda m: echo_arrivals.setdefault(m.header.stamp.nanosec, time.perf_counter()),
        qos,
    )
    images = peer.create_publisher(Image, "image", qos)
    echo = peer.create_publisher(Image, "bench/echo", qos)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(node)
    executor.add_node(peer)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    node.trigger_configure()
    node.trigger_activate()
    while images.get_subscription_count() == 0:
        time.sleep(0.01)
    types = conv.rclpy_types()
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    node_lat: list[float] = []
    dds_lat: list[float] = []
    for i in range(frames):
        msg = conv.rgb_to_image_msg(
            rgb, "bgr8", conv.make_header(1_000_000_000 + i * 1000, "cam", types), types
        )
        key = msg.header.stamp.nanosec
        t0 = time.perf_counter()
        echo.publish(msg)
        _wait(lambda key=key: key in echo_arrivals)
        dds_lat.append((echo_arrivals[key] - t0) * 1e3)
        t0 = time.perf_counter()
        images.publish(msg)
        _wait(lambda key=key: key in arrivals)
        node_lat.append((arrivals[key] - t0) * 1e3)
    executor.shutdown()
    node.destroy_node()
    peer.destroy_node()
    rclpy.shutdown(context=context)
    return node_lat[3:], dds_lat[3:]


def _wait(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("no answer within 30 s")
        time.sleep(0.0005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--instances", type=int, default=50)
    args = parser.parse_args()
    node_lat, dds_lat = measure(args.frames, args.height, args.width, args.instances)
    node_ms, dds_ms = statistics.median(node_lat), statistics.median(dds_lat)
    print(
        f"perception_node latency, {args.height}x{args.width}, {args.instances} instances, "
        f"zero-cost predictor, median of {len(node_lat)}"
    )
    print(f"{'measure':44s} {'ms':>8s}")
    print(f"{'image publish -> PanopticTrackArray received':44s} {node_ms:8.1f}")
    print(f"{'baseline: image publish -> image received':44s} {dds_ms:8.1f}")
    overhead = node_ms - dds_ms
    print(
        f"node overhead (difference): {overhead:.1f} ms -> target <= 25 ms: "
        f"{'meets' if overhead <= 25 else 'MISSES'}"
    )


if __name__ == "__main__":
    main()
