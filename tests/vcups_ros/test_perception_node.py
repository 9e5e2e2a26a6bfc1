"""perception_node with real rclpy on localhost: outputs, drops, lifecycle, parameters, fuzzing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from conftest import rclpy_or_skip

from vcups_core.data.synthetic import SyntheticFrame, SyntheticWorld

rclpy_or_skip()

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from vcups_ros.msg import PanopticInfo, PanopticTrackArray  # noqa: E402

from vcups_core import rosmsg  # noqa: E402
from vcups_core.data.oracle import OraclePredictor  # noqa: E402
from vcups_ros.perception_node import PerceptionNode, run  # noqa: E402
from vcups_ros.rclpy_types import rclpy_types  # noqa: E402


@pytest.fixture(scope="module")
def world_frames() -> list[SyntheticFrame]:
    return list(SyntheticWorld(height=48, width=96, num_frames=12, seed=2).frames())


class Harness:
    """A perception node plus a test node, spun by one executor thread in a private context."""

    def __init__(self, predictor: Any, overrides: list[Parameter] | None = None) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = PerceptionNode(
            predictor_factory=lambda cfg: predictor,
            context=self.context,
            parameter_overrides=overrides or [],
        )
        self.peer = rclpy.create_node("vcups_test_peer", context=self.context)
        self.outputs: list[Any] = []
        self.diagnostics: list[Any] = []
        self.peer.create_subscription(
            PanopticTrackArray,
            "panoptic/tracks",
            self.outputs.append,
            QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE),
        )
        self.peer.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        self.images = self.peer.create_publisher(
            Image, "image", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        )
        self.executor = MultiThreadedExecutor(num_threads=4, context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def start(self) -> None:
        assert self.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert self.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        self.wait_for(lambda: self.images.get_subscription_count() > 0, "node subscribed")

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for: {what}")
            time.sleep(0.01)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.peer.destroy_node()
        rclpy.shutdown(context=self.context)
        self.thread.join(timeout=5)


@pytest.fixture
def harness_factory() -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(predictor: Any, overrides: list[Parameter] | None = None) -> Harness:
        h = Harness(predictor, overrides)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def image_msg(frame: SyntheticFrame, frame_id: str = "cam_front") -> Any:
    types = rclpy_types()
    return rosmsg.rgb_to_image_msg(
        frame.rgb, "bgr8", rosmsg.make_header(frame.stamp_ns, frame_id, types), types
    )


def test_images_in_tracks_out_with_the_input_header(
    harness_factory: Callable[..., Harness], world_frames: list[SyntheticFrame]
) -> None:
    h = harness_factory(OraclePredictor(world_frames))
    h.start()
    for i, f in enumerate(world_frames[:4]):
        h.images.publish(image_msg(f))
        h.wait_for(lambda i=i: len(h.outputs) > i, "an output per input")
    assert [rosmsg.time_to_ns(m.header.stamp) for m in h.outputs] == [
        f.stamp_ns for f in world_frames[:4]
    ]
    assert all(m.header.frame_id == "cam_front" for m in h.outputs)
    frame, meta = rosmsg.msg_to_panoptic_frame(h.outputs[-1])
    things = [s for s in frame.segments if s.is_thing]
    assert things and all(s.track_id > 0 for s in things)
    assert frame.segment_ids.shape == (48, 96) and meta.info_version == 1
    first_ids = {
        s.track_id for s in rosmsg.msg_to_panoptic_frame(h.outputs[0])[0].segments if s.is_thing
    }
    assert first_ids & {s.track_id for s in things}  # ids carried over frames


def test_newest_frame_policy_counts_drops(
    harness_factory: Callable[..., Harness], world_frames: list[SyntheticFrame]
) -> None:
    """While the worker is busy, each new image replaces the one waiting: only the newest is
    processed next, and the replaced ones are counted as dropped (in the stats and in the next
    output's ``frames_dropped``). The predictor is held on a gate, so the count is exact."""
    oracle = OraclePredictor(world_frames)
    gate, entered = threading.Event(), threading.Event()
    gate.set()  # open for the warm-up prediction in configure

    class Gated:
        categories, model_name, checksum = oracle.categories, "gated", ""

        def predict(self, image: np.ndarray) -> Any:
            entered.set()
            gate.wait(timeout=30)
            return oracle.predict(image)

    h = harness_factory(Gated(), [Parameter("input.reliability", value="reliable")])
    h.start()
    gate.clear()
    entered.clear()
    h.images.publish(image_msg(world_frames[0]))
    h.wait_for(entered.is_set, "the worker busy with the first image")
    for i, f in enumerate(world_frames[1:], start=2):
        h.images.publish(image_msg(f))
        h.wait_for(lambda i=i: h.node.stats()["received"] == i, f"image {i} received")
    gate.set()
    h.wait_for(lambda: len(h.outputs) == 2, "the first image and the newest processed")
    time.sleep(0.3)  # nothing else may follow
    stats = h.node.stats()
    n = len(world_frames)
    assert [rosmsg.time_to_ns(m.header.stamp) for m in h.outputs] == [
        world_frames[0].stamp_ns,
        world_frames[-1].stamp_ns,
    ]
    assert stats["received"] == n and stats["published"] == 2
    assert stats["dropped"] == n - 2  # images 2 .. n-1 were replaced while waiting
    assert [m.frames_dropped for m in h.outputs] == [0, n - 2]


def test_lifecycle_and_late_info_subscriber(
    harness_factory: Callable[..., Harness], world_frames: list[SyntheticFrame]
) -> None:
    h = harness_factory(OraclePredictor(world_frames))
    assert h.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    infos: list[Any] = []
    latched = QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
    )
    h.peer.create_subscription(PanopticInfo, "panoptic/info", infos.append, latched)
    h.wait_for(lambda: bool(infos), "latched PanopticInfo for a late subscriber")
    assert list(infos[0].category_names) == list(OraclePredictor.categories.names)
    assert list(infos[0].category_is_thing)[:2] == [True, True]
    # inactive: no subscription yet
    assert h.images.get_subscription_count() == 0
    assert h.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    h.wait_for(lambda: h.images.get_subscription_count() == 1, "subscribed after activate")
    assert h.node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    h.wait_for(lambda: h.images.get_subscription_count() == 0, "unsubscribed after deactivate")
    assert h.node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS


def test_configure_fails_cleanly_when_the_model_cannot_load(
    harness_factory: Callable[..., Harness],
) -> None:
    class Broken:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError("never used")

    h = harness_factory(Broken())
    h.node._factory = lambda cfg: (_ for _ in ()).throw(FileNotFoundError("weights.pt: missing"))
    assert h.node.trigger_configure() == TransitionCallbackReturn.FAILURE


class Recording:
    """Wraps a predictor and records the shape of every image it is asked about."""

    def __init__(self, inner: Any, fail: bool = False) -> None:
        self.inner, self.fail = inner, fail
        self.categories, self.model_name, self.checksum = inner.categories, "recording", ""
        self.shapes: list[tuple[int, ...]] = []

    def predict(self, image: Any) -> Any:
        self.shapes.append(image.shape)
        if self.fail:
            raise RuntimeError("CUDA error: out of memory")
        return self.inner.predict(image)


def test_configure_warms_the_model_up_before_the_first_frame(
    harness_factory: Callable[..., Harness], world_frames: list[SyntheticFrame]
) -> None:
    """One black 256x512 prediction while configuring (none when model.warmup is false); a
    model that fails it fails the configure transition instead of the first camera frame."""
    warmed = Recording(OraclePredictor(world_frames))
    h = harness_factory(warmed)
    h.start()
    assert warmed.shapes == [(256, 512, 3)]
    h.images.publish(image_msg(world_frames[0]))
    h.wait_for(lambda: len(h.outputs) == 1, "the first output")
    assert warmed.shapes == [(256, 512, 3), (48, 96, 3)]
    cold = Recording(OraclePredictor(world_frames))
    harness_factory(cold, [Parameter("model.warmup", value=False)]).start()
    assert cold.shapes == []
    broken = Recording(OraclePredictor(world_frames), fail=True)
    h = harness_factory(broken)
    assert h.node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert broken.shapes == [(256, 512, 3)]


def test_parameters_are_validated_and_applied_live(
    harness_factory: Callable[..., Harness], world_frames: list[SyntheticFrame]
) -> None:
    """A live change is checked by the start-up schema and applied by the segmenter's one
    ``configure``: every streaming setting reaches the running objects (tracker, smoother,
    segmenter), and PanopticInfo is published again with the new threshold."""
    h = harness_factory(OraclePredictor(world_frames))
    h.start()
    bad = h.node.set_parameters([Parameter("streaming.score_threshold", value=2.0)])[0]
    assert not bad.successful and "streaming.score_threshold = 2.0: out of range" in bad.reason
    zero = h.node.set_parameters([Parameter("streaming.tracker.window", value=0)])[0]
    assert not zero.successful and "streaming.tracker.window = 0: out of range" in zero.reason
    changes = [
        Parameter("streaming.score_threshold", value=0.95),
        Parameter("streaming.tracker.assignment", value="greedy"),
        Parameter("streaming.tracker.mask_iou_weight", value=0.5),
        Parameter("streaming.smoothing.window", value=5),
        Parameter("streaming.max_gap_s", value=0.5),
    ]
    assert all(r.successful for r in h.node.set_parameters(changes))
    seg = h.node._segmenter
    assert seg is not None and seg.score_threshold == 0.95
    assert (seg.tracker.assignment, seg.tracker.mask_coeff) == ("greedy", 0.5)
    assert seg.smoother.window == 5 and seg.max_gap_ns == 500_000_000
    infos: list[Any] = []
    latched = QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
    )
    h.peer.create_subscription(PanopticInfo, "panoptic/info", infos.append, latched)
    h.wait_for(lambda: any(abs(i.score_threshold - 0.95) < 1e-6 for i in infos), "new info")
    model = h.node.set_parameters([Parameter("model.backend", value="onnxruntime")])[0]
    assert (
        not model.successful
        and "model.backend takes effect only through the lifecycle" in model.reason
    )
    # with every detection below the threshold now, outputs carry no things
    h.images.publish(image_msg(world_frames[0]))
    h.wait_for(lambda: bool(h.outputs), "an output")
    assert not any(t.is_thing for t in h.outputs[-1].tracks)


def test_fuzzed_images_never_kill_the_node(
    harness_factory: Callable[..., Harness], world_frames: list[SyntheticFrame]
) -> None:
    h = harness_factory(
        OraclePredictor(world_frames),
        [
            Parameter("input.reliability", value="reliable"),
            Parameter("input.max_pixels", value=10_000),
            Parameter("diagnostics.period_s", value=0.2),
        ],
    )
    h.start()
    rng = np.random.default_rng(0)
    encodings = [
        "rgb8",
        "bgr8",
        "mono8",
        "16UC1",
        "rgba8",
        "yuv422",
        "",
        "32FC1",
        "bayer_rggb8",
        "jpeg",
    ]
    n = 1000
    for i in range(n):
        msg = Image()
        msg.header.stamp.sec = 1 + i
        msg.height = int(rng.choice([0, 1, 3, 17, 64, 5000]))
        msg.width = int(rng.choice([0, 1, 2, 33, 64, 9000]))
        msg.encoding = str(rng.choice(encodings))
        msg.step = int(rng.integers(0, 300))
        msg.is_bigendian = int(rng.integers(0, 3))
        msg.data = rng.integers(
            0, 256, int(rng.choice([0, 1, 7, 100, 3000])), dtype=np.uint8
        ).tobytes()
        # one at a time: the subscription keeps only the newest message (depth 1), so a burst
        # would be thinned out by DDS before the node saw it
        h.images.publish(msg)
        h.wait_for(lambda i=i: h.node.stats()["received"] == i + 1, f"fuzzed image {i} received")
    last = h.node.stats()["received"]
    assert last == n
    # afterwards a good image still gets an answer (its stamp is later than all fuzzed ones)
    good = world_frames[0]
    msg = image_msg(good)
    msg.header.stamp.sec = 5000
    before = len(h.outputs)
    h.images.publish(msg)
    h.wait_for(lambda: len(h.outputs) > before and h.outputs[-1].header.stamp.sec == 5000, "answer")
    stats = h.node.stats()
    # every image that reached the node was rejected, replaced by a newer one, or answered
    assert (
        stats["rejected"] + stats["dropped"] + stats["published"] == stats["received"] == last + 1
    )
    assert stats["rejected"] > 0.5 * n
    assert {"Image.encoding", "Image.height/width", "Image.data"} <= set(stats["rejects"])
    h.wait_for(
        lambda: any(int(_value(d, "rejected")) == stats["rejected"] for d in h.diagnostics),
        "diagnostics reporting the rejects",
    )


def _value(diag: Any, key: str) -> str:
    for status in diag.status:
        for kv in status.values:
            if kv.key == key:
                return str(kv.value)
    return "-1"


def test_run_autostarts_and_stops_cleanly_when_the_context_shuts_down(
    world_frames: list[SyntheticFrame],
) -> None:
    """``run`` (what ``main`` does): active without a lifecycle manager; a shutdown (Ctrl-C)
    ends the spin, stops the worker thread and destroys the node without an error."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = PerceptionNode(
        predictor_factory=lambda cfg: OraclePredictor(world_frames), context=context
    )
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run(node)
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while node._worker is None and time.monotonic() < deadline:
            time.sleep(0.01)
        worker = node._worker
        assert worker is not None and worker.is_alive(), "autostart activated the node"
    finally:  # even on a failure: a spinning context left at exit aborts the interpreter
        rclpy.shutdown(context=context)
        thread.join(timeout=20)
    assert not thread.is_alive() and not errors
    assert not worker.is_alive()


def test_run_returns_cleanly_when_ctrl_c_comes_during_autostart(
    world_frames: list[SyntheticFrame],
) -> None:
    """The context goes down inside the configure transition (as on a Ctrl-C while the model
    loads): the transition cannot publish its event, and ``run`` still returns without an error
    and without a worker thread."""
    context = rclpy.Context()
    rclpy.init(context=context)

    def factory(cfg: object) -> OraclePredictor:
        rclpy.shutdown(context=context)
        return OraclePredictor(world_frames)

    node = PerceptionNode(predictor_factory=factory, context=context)
    run(node)
    assert not context.ok() and node._worker is None


def test_first_run_without_a_checkpoint_exits_with_one_message() -> None:
    """``perception_node`` as a user first starts it (``ros2 run``, no parameters): the
    autostart's configure fails for want of ``model.checkpoint``; the process exits with
    status 1 and one clear message, without activating (rclpy's "Transition is not registered")
    and without a traceback."""
    import subprocess
    import sys

    from conftest import REPO

    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "perception_node")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert output.count("model.checkpoint is empty") == 1, output
    assert "Traceback" not in output and "Transition is not registered" not in output, output
