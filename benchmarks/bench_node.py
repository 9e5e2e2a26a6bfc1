"""End-to-end latency of perception_node with a zero-cost predictor (real rclpy, localhost DDS).

The node runs in its own process, spun by :func:`vcups_ros.perception_node.run` exactly as
``ros2 run`` would, with a predictor that returns precomputed predictions with ``--instances``
objects (so the network costs nothing). This process publishes ``--frames`` camera images
(default 1024x2048 bgr8) one at a time and records when each ``PanopticTrackArray`` (with its
16UC1 id map) comes back: publish -> receive.

Same-run baseline: a relay process (namespace ``relay``) that does nothing but answer each image
with a prebuilt ``PanopticTrackArray`` of the same size (the input header copied). Both pay the
same DDS transport of the image and of the answer, and frames go to the two in turn, so a slow
spell of the machine hits both alike; the difference is the node's own overhead: decoding,
tracking, smoothing, composing and building the message (issue target <= 25 ms). The node's own
stamps (receive -> publish) are printed as a cross-check.

    .venv/bin/python benchmarks/bench_node.py [--frames 60 --height 1024 --width 2048]
        [--post-process] [--blas-threads 1]

``--post-process`` also runs the predictors' numpy post-processing in the node (the network
still costs nothing): the CPU cost of a real backend besides its network. ``--blas-threads 0``
leaves BLAS at the library's default (two spinning threads here) to show why ``run`` limits it.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import signal
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import rclpy
from bench_streaming import (
    NUM_STUFF,
    NUM_THINGS,
    post_process,
    raw_outputs,
    synthetic_predictions,
)
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vcups_ros.msg import PanopticTrackArray

from vcups_core import rosmsg as conv
from vcups_core.streaming.segmenter import StreamingSegmenter
from vcups_core.streaming.smoother import SemanticSmoother
from vcups_core.streaming.tracker import OnlineTracker
from vcups_core.types import CategoryTable, FramePrediction
from vcups_ros.perception_node import PerceptionNode, run
from vcups_ros.rclpy_types import rclpy_types

QOS = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
WARMUP = 3


class Precomputed:
    """A predictor that costs nothing: it cycles through precomputed predictions."""

    model_name = "precomputed"  # the Predictor contract (PanopticInfo.model_name)
    checksum = ""

    def __init__(self, predictions: list[FramePrediction]) -> None:
        self.categories = CategoryTable.default(NUM_THINGS, NUM_STUFF)
        self._predictions = predictions
        self._i = 0

    def predict(self, image: np.ndarray) -> FramePrediction:
        p = self._predictions[self._i % len(self._predictions)]
        self._i += 1
        return p


class PostProcessed:
    """A predictor whose network costs nothing but whose numpy post-processing (mask pasting and
    the per-frame merge, as every backend runs it) is real."""

    model_name = "postprocessed"  # the Predictor contract (PanopticInfo.model_name)
    checksum = ""

    def __init__(self, predictions: list[FramePrediction]) -> None:
        self.categories = CategoryTable.default(NUM_THINGS, NUM_STUFF)
        self._raw = [(raw_outputs(p), (p.height, p.width)) for p in predictions]
        self._i = 0

    def predict(self, image: np.ndarray) -> FramePrediction:
        raw, (height, width) = self._raw[self._i % len(self._raw)]
        self._i += 1
        return post_process(raw, height, width)


def node_process(
    height: int, width: int, instances: int, post_process: bool, blas_threads: int
) -> None:
    """Child: the perception node as deployed (:func:`run`), stopped by SIGINT."""
    predictions = list(synthetic_predictions(height, width, instances, 5))
    predictor = PostProcessed(predictions) if post_process else Precomputed(predictions)
    rclpy.init()
    node = PerceptionNode(
        predictor_factory=lambda cfg: predictor,
        parameter_overrides=[
            Parameter("input.reliability", value="reliable"),
            Parameter("input.max_pixels", value=height * width),
            Parameter("output.publish_overlay", value=False),
        ],
    )
    run(node, blas_threads=blas_threads or None)


def relay_process(
    height: int, width: int, instances: int, post_process: bool, blas_threads: int
) -> None:
    """Child: answers every image at once with a prebuilt output of the node's size."""
    prediction = next(iter(synthetic_predictions(height, width, instances, 1)))
    segmenter = StreamingSegmenter(
        Precomputed([prediction]), tracker=OnlineTracker(), smoother=SemanticSmoother()
    )
    types = rclpy_types()
    answer = conv.panoptic_frame_to_msg(segmenter.compose(prediction, 1, 1, "cam"), types)
    rclpy.init()
    node = rclpy.create_node("bench_relay", namespace="relay")
    publisher = node.create_publisher(PanopticTrackArray, "panoptic/tracks", QOS)

    def relay(image: Any) -> None:
        answer.header = image.header
        publisher.publish(answer)

    node.create_subscription(Image, "image", relay, QOS)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    with contextlib.suppress(KeyboardInterrupt, ExternalShutdownException):
        executor.spin()


class Peer:
    """This process's side: publishes images one at a time and waits for each answer."""

    def __init__(self, namespaces: tuple[str, ...]) -> None:
        self.node = rclpy.create_node("bench_peer")
        self.returned: dict[int, tuple[float, Any]] = {}
        self.images = {}
        for ns in namespaces:
            self.node.create_subscription(
                PanopticTrackArray,
                f"{ns}/panoptic/tracks",
                lambda m: self.returned.setdefault(_key(m), (time.perf_counter(), m)),
                QOS,
            )
            self.images[ns] = self.node.create_publisher(Image, f"{ns}/image", QOS)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)

    def wait_for_subscribers(self) -> None:
        # a child process needs seconds to import and configure: wait until each subscribes
        for publisher in self.images.values():
            _spin_until(self.executor, lambda p=publisher: p.get_subscription_count() > 0, 120.0)
        time.sleep(0.5)  # and until discovery has settled

    def round_trip(self, ns: str, image: Any) -> float:
        """ms from publishing ``image`` in namespace ``ns`` until its answer arrives."""
        key = _key(image)
        t0 = time.perf_counter()
        self.images[ns].publish(image)
        _spin_until(self.executor, lambda: key in self.returned, 30.0)
        return 1e3 * (self.returned[key][0] - t0)


def _key(msg: Any) -> int:
    """Stamp of a message's header in ns (the images' stamps are unique)."""
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def _spin_until(executor: Any, predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no answer within {timeout:.0f} s")
        executor.spin_once(timeout_sec=0.0005)


def measure(
    frames: int,
    height: int,
    width: int,
    instances: int,
    *,
    post_process: bool = False,
    blas_threads: int = 1,
) -> dict[str, list[float]]:
    """Latencies in ms through the relay and through the node, first frames left out."""
    types = rclpy_types()
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    ctx = mp.get_context("spawn")  # rclpy must not be forked
    rclpy.init()
    children = [
        ctx.Process(
            target=target,
            args=(height, width, instances, post_process, blas_threads),
            daemon=True,
        )
        for target in (relay_process, node_process)
    ]
    out: dict[str, list[float]] = {"relay": [], "node": []}
    try:
        peer = Peer(("/relay", ""))
        for child in children:
            child.start()
        peer.wait_for_subscribers()
        start = time.time_ns()
        node_stamps = []
        for i in range(frames):
            # in turn, the order swapped every frame, so neither side always goes first
            order = (
                (("relay", "/relay"), ("node", ""))
                if i % 2
                else (("node", ""), ("relay", "/relay"))
            )
            for j, (name, ns) in enumerate(order):
                stamp = start + (2 * i + j) * 1000
                header = conv.make_header(stamp, "cam", types)
                ms = peer.round_trip(ns, conv.rgb_to_image_msg(rgb, "bgr8", header, types))
                if i >= WARMUP:
                    out[name].append(ms)
                    if name == "node":
                        node_stamps.append(stamp)
        out["in_node"] = [
            (conv.time_to_ns(m.publish_time) - conv.time_to_ns(m.receive_time)) / 1e6
            for m in (peer.returned[k][1] for k in node_stamps)
        ]
    finally:
        for child in children:
            if child.pid is not None and child.is_alive():
                os.kill(child.pid, signal.SIGINT)
                child.join(timeout=30)
                if child.is_alive():
                    child.kill()
        rclpy.shutdown()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument(
        "--post-process",
        action="store_true",
        help="the predictor runs the real numpy post-processing (the network still costs "
        "nothing); not part of the <= 25 ms target, which excludes the predictor",
    )
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="BLAS threads of the node process, as run() sets them (0: the library's default)",
    )
    args = parser.parse_args()
    lat = {
        k: statistics.median(v)
        for k, v in measure(
            args.frames,
            args.height,
            args.width,
            args.instances,
            post_process=args.post_process,
            blas_threads=args.blas_threads,
        ).items()
    }
    overhead = lat["node"] - lat["relay"]
    predictor = (
        "zero-cost network + real post-processing" if args.post_process else "zero-cost predictor"
    )
    print(
        f"perception_node latency, {args.height}x{args.width}, {args.instances} instances, "
        f"{predictor}, BLAS threads {args.blas_threads or 'library default'}, node in its own "
        f"process, medians of {args.frames - WARMUP}"
    )
    rows = [
        ("image publish -> PanopticTrackArray received", lat["node"]),
        ("baseline: the same through a do-nothing relay", lat["relay"]),
        ("node overhead = difference", overhead),
        ("  check: the node's stamps, receive -> publish", lat["in_node"]),
    ]
    print(f"{'measure':50s} {'ms':>8s}")
    for name, ms in rows:
        print(f"{name:50s} {ms:8.1f}")
    if args.post_process:
        print(f"node overhead with the post-processing: {overhead:.1f} ms (no target)")
    else:
        print(
            f"node overhead {overhead:.1f} ms -> target <= 25 ms: "
            f"{'meets' if overhead <= 25 else 'MISSES'}"
        )


if __name__ == "__main__":
    main()
