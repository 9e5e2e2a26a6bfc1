"""``perception_node``: camera images in, tracked panoptic segmentation out (a lifecycle node).

Topics (relative to the node's namespace, one node per camera):

* subscribes ``image`` (``sensor_msgs/Image``) or ``image/compressed`` (``input.transport``),
  KEEP_LAST depth 1, BEST_EFFORT by default (``input.reliability``); the callback only keeps the
  newest message and a worker thread processes it, so the node always works on the latest frame
  and counts the ones it skipped;
* publishes ``panoptic/tracks`` (``vcups_ros/PanopticTrackArray``, the input header copied),
  ``panoptic/info`` (``vcups_ros/PanopticInfo``, TRANSIENT_LOCAL: late subscribers get it),
  ``panoptic/overlay`` (bgr8 image for RViz, only while someone subscribes), ``panoptic/markers``
  (track labels, optional) and ``/diagnostics`` (1 Hz: rates, latency, drops, rejects, backend).

Lifecycle: configure reads and validates the parameters and loads the model; activate subscribes;
deactivate unsubscribes; cleanup frees the model. With ``autostart`` (default) ``main`` configures
and activates at once, so ``ros2 launch`` needs no lifecycle manager; if that fails (no
``model.checkpoint``, a bad parameter, a model that cannot run) the reason is logged once and the
process exits with status 1, without a traceback.

Parameters: ``model.*`` is a :class:`~vcups_core.configs.predictor.PredictorConfig` (opened by
:func:`~vcups_core.model.predictors.load_predictor`), ``streaming.*`` a
:class:`~vcups_core.configs.streaming.StreamingConfig`; ``vcups replay`` reads the same file.
A live change is validated by the same schema as at start-up and applied to the running
segmenter by the same :meth:`~vcups_core.streaming.segmenter.StreamingSegmenter.configure`.

Robustness: a bad image (unknown encoding, size/step mismatch, empty, too large, stale, stamps
not after the previous frame's: the segmenter's one policy, shared with ``vcups replay``) is
counted by cause, logged at most once per cause every 10 s, and skipped; any other error while
processing a frame is logged and counted the same way. The node does not die on input.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import numpy as np
import rclpy
import rclpy.utilities
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from visualization_msgs.msg import Marker, MarkerArray

from vcups_core import rosmsg
from vcups_core.config import ConfigError
from vcups_core.configs.node import NodeConfig
from vcups_core.model.predictors import WARMUP_SIZE, Predictor, load_predictor, warm_up
from vcups_core.runtime import limit_blas_threads
from vcups_core.streaming.segmenter import StampOrderError, StreamingSegmenter
from vcups_core.types import PanopticFrame, VideoFrame
from vcups_core.viz.overlay import render_overlay
from vcups_ros.msg import PanopticInfo, PanopticTrackArray
from vcups_ros.params import check_update, config_from_parameters, default_parameters
from vcups_ros.rclpy_types import rclpy_types

RCLError = _rclpy.RCLError  # rclpy's error from the C layer (no public import path)

PredictorFactory = Callable[[NodeConfig], Predictor]
LOG_EVERY_S = 10.0


def default_predictor_factory(cfg: NodeConfig) -> Predictor:
    """Load the network named by ``model.*`` (checkpoint, ONNX file or TensorRT engine)."""
    return load_predictor(cfg.model)


class PerceptionNode(LifecycleNode):
    """The perception lifecycle node; ``predictor_factory`` lets tests inject a network."""

    def __init__(self, *, predictor_factory: PredictorFactory | None = None, **kwargs: Any) -> None:
        super().__init__("perception_node", **kwargs)
        for name, value in default_parameters().items():
            self.declare_parameter(name, value)
        self._factory = predictor_factory or default_predictor_factory
        self._cfg = NodeConfig()
        self._segmenter: StreamingSegmenter | None = None
        self._segmenter_lock = threading.Lock()  # a frame's step vs. a live settings change
        self._configured = False
        self._lock = threading.Condition()
        self._pending: tuple[Any, int] | None = None
        self._running = False
        self._worker: threading.Thread | None = None
        self._sub: Any = None
        self._pubs: dict[str, Any] = {}
        self._diag_timer: Any = None
        self._info_version = 0
        self.rejects: Counter[str] = Counter()
        self._last_log: dict[str, float] = {}
        self._received = 0
        self._published = 0
        self._dropped_total = 0
        self._dropped_since_output = 0
        self._latencies: deque[float] = deque(maxlen=200)
        self._window_counts = (0, 0, time.monotonic())
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # ------------------------------------------------------------------------------------------
    # lifecycle

    def parameters_config(self) -> NodeConfig:
        """The node's current ROS parameters, validated into a :class:`NodeConfig`.

        Raises:
            ConfigError: naming every invalid parameter.
        """
        return config_from_parameters(
            {name: self.get_parameter(name).value for name in default_parameters()}
        )

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._cfg = self.parameters_config()
        except ConfigError as exc:
            self.get_logger().error(str(exc))
            return TransitionCallbackReturn.FAILURE
        try:
            predictor = self._factory(self._cfg)
        except Exception as exc:
            self.get_logger().error(f"could not load the model: {exc}")
            return TransitionCallbackReturn.FAILURE
        warmup = ""
        if self._cfg.model.warmup:
            try:
                seconds = warm_up(predictor)
            except Exception as exc:
                self.get_logger().error(
                    f"the model failed its warm-up prediction (a black {WARMUP_SIZE[0]}x"
                    f"{WARMUP_SIZE[1]} image; model.warmup: false skips it): {exc}"
                )
                return TransitionCallbackReturn.FAILURE
            warmup = f", warm-up prediction {seconds:.2f} s"
        self._segmenter = StreamingSegmenter.from_config(predictor, self._cfg.streaming)
        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        self._pubs = {
            "tracks": self.create_lifecycle_publisher(
                PanopticTrackArray, "panoptic/tracks", reliable
            ),
            "overlay": self.create_lifecycle_publisher(Image, "panoptic/overlay", reliable),
            "markers": self.create_lifecycle_publisher(MarkerArray, "panoptic/markers", reliable),
            "info": self.create_publisher(PanopticInfo, "panoptic/info", latched),
            "diagnostics": self.create_publisher(DiagnosticArray, "/diagnostics", reliable),
        }
        self._configured = True
        self._publish_info()
        self.get_logger().info(
            f"configured: model {getattr(predictor, 'model_name', type(predictor).__name__)}, "
            f"backend {self._cfg.model.backend}, input {self._cfg.input.transport}{warmup}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        cfg = self._cfg.input
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=1,
            reliability=ReliabilityPolicy.BEST_EFFORT
            if cfg.reliability == "best_effort"
            else ReliabilityPolicy.RELIABLE,
        )
        if cfg.transport == "compressed":
            self._sub = self.create_subscription(
                CompressedImage, "image/compressed", self._on_image, qos
            )
        else:
            self._sub = self.create_subscription(Image, "image", self._on_image, qos)
        self._running = True
        worker = threading.Thread(target=self._work, name="vcups-worker", daemon=True)
        worker.start()
        self._worker = worker  # set only once running: other threads read it as "active"
        self._diag_timer = self.create_timer(
            self._cfg.diagnostics.period_s, self._publish_diagnostics
        )
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_worker()
        if self._sub is not None:
            self.destroy_subscription(self._sub)
            self._sub = None
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        for name, pub in self._pubs.items():
            if name in ("tracks", "overlay", "markers"):
                self.destroy_lifecycle_publisher(pub)
            else:
                self.destroy_publisher(pub)
        self._pubs = {}
        self._segmenter = None
        self._configured = False
        _free_gpu_memory()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_worker()
        return TransitionCallbackReturn.SUCCESS

    def stop_worker(self) -> None:
        """Stop the processing thread (the lifecycle transitions call this)."""
        with self._lock:
            self._running = False
            self._lock.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=10)
            self._worker = None

    # ------------------------------------------------------------------------------------------
    # parameters

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        changes = {p.name: p.value for p in params if p.name != "use_sim_time"}
        if not changes:
            return SetParametersResult(successful=True)
        cfg, reason = check_update(self._cfg, changes, configured=self._configured)
        if cfg is None:
            return SetParametersResult(successful=False, reason=reason)
        previous, self._cfg = self._cfg, cfg
        seg = self._segmenter
        if seg is not None and cfg.streaming != previous.streaming:
            # validated by the same schema as at start-up; applied by the same code
            with self._segmenter_lock:
                seg.configure(cfg.streaming)
            if cfg.streaming.score_threshold != previous.streaming.score_threshold:
                self._publish_info()  # PanopticInfo carries the threshold
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------------------------------
    # frames

    def _on_image(self, msg: Any) -> None:
        received = self.get_clock().now().nanoseconds
        with self._lock:
            self._received += 1
            if self._pending is not None:
                self._dropped_total += 1
                self._dropped_since_output += 1
            self._pending = (msg, received)
            self._lock.notify()

    def _work(self) -> None:
        while True:
            with self._lock:
                while self._running and self._pending is None:
                    self._lock.wait(timeout=0.5)
                if not self._running:
                    return
                assert self._pending is not None
                msg, received = self._pending
                self._pending = None
                dropped = self._dropped_since_output
                self._dropped_since_output = 0
            try:
                self._process(msg, received, dropped)
            except Exception as exc:
                self._reject("internal_error", f"{type(exc).__name__}: {exc}")

    def _process(self, msg: Any, received_ns: int, dropped: int) -> None:
        cfg = self._cfg
        seg = self._segmenter
        if seg is None:
            return
        try:
            frame = rosmsg.msg_to_video_frame(msg, max_pixels=cfg.input.max_pixels)
        except ValueError as exc:
            self._reject(_cause(str(exc)), str(exc))
            return
        now = self.get_clock().now().nanoseconds
        if cfg.input.max_image_age_s > 0 and now - frame.stamp_ns > cfg.input.max_image_age_s * 1e9:
            self._reject(
                "stale",
                f"image {(now - frame.stamp_ns) / 1e9:.2f} s old "
                f"(input.max_image_age_s {cfg.input.max_image_age_s})",
            )
            return
        t0 = time.perf_counter()
        try:
            with self._segmenter_lock:
                result = seg.step(frame, gap=dropped + 1 if self._published else None)
        except StampOrderError as exc:  # the segmenter's policy: skipped, tracks reset
            self._reject("stamp_backwards", str(exc))
            return
        inference_ms = (time.perf_counter() - t0) * 1e3
        self._publish(frame, result, received_ns, dropped, inference_ms)

    def _publish(
        self,
        frame: VideoFrame,
        result: PanopticFrame,
        received_ns: int,
        dropped: int,
        inference_ms: float,
    ) -> None:
        types = _types()
        cfg = self._cfg.output
        publish_ns = self.get_clock().now().nanoseconds
        meta = rosmsg.TrackArrayMeta(
            frames_dropped=dropped,
            info_version=self._info_version,
            receive_time_ns=received_ns,
            publish_time_ns=publish_ns,
            inference_ms=inference_ms,
        )
        self._pubs["tracks"].publish(
            rosmsg.panoptic_frame_to_msg(
                result, types, meta, embed_segment_ids=cfg.embed_segment_ids
            )
        )
        self._published += 1
        self._latencies.append((publish_ns - frame.stamp_ns) / 1e6)
        header = rosmsg.make_header(frame.stamp_ns, frame.frame_id, types)
        seg = self._segmenter
        assert seg is not None
        if cfg.publish_overlay and self._pubs["overlay"].get_subscription_count() > 0:
            rgb = render_overlay(frame.image, result, seg.categories, alpha=cfg.overlay_alpha)
            self._pubs["overlay"].publish(rosmsg.rgb_to_image_msg(rgb, "bgr8", header, types))
        if cfg.publish_markers and self._pubs["markers"].get_subscription_count() > 0:
            self._pubs["markers"].publish(self._markers(result, header))

    def _markers(self, result: PanopticFrame, header: Any) -> MarkerArray:
        names = self._segmenter.categories.names if self._segmenter else ()
        array = MarkerArray()
        clear = Marker(header=header, action=Marker.DELETEALL)
        array.markers.append(clear)
        for s in result.segments:
            if not s.is_thing:
                continue
            m = Marker(
                header=header,
                ns="vcups_tracks",
                id=int(s.track_id) % 2**31,
                type=Marker.TEXT_VIEW_FACING,
                action=Marker.ADD,
            )
            m.pose.position.x = float(s.box.x0 + s.box.x1) / 2
            m.pose.position.y = float(s.box.y0)
            m.scale.z = 12.0
            m.color.r = m.color.g = m.color.b = m.color.a = 1.0
            m.text = f"{names[s.category_id] if s.category_id < len(names) else '?'} #{s.track_id}"
            array.markers.append(m)
        return array

    def _publish_info(self) -> None:
        seg = self._segmenter
        if seg is None:
            return
        self._info_version += 1
        msg = rosmsg.segmenter_info_msg(
            seg, _types(), version=self._info_version, stamp_ns=self.get_clock().now().nanoseconds
        )
        self._pubs["info"].publish(msg)

    # ------------------------------------------------------------------------------------------
    # bookkeeping

    def _reject(self, cause: str, detail: str) -> None:
        self.rejects[cause] += 1
        now = time.monotonic()
        if now - self._last_log.get(cause, -1e9) >= LOG_EVERY_S:
            self._last_log[cause] = now
            self.get_logger().warning(
                f"skipped an image ({cause}, {self.rejects[cause]} so far): {detail}"
            )

    def stats(self) -> dict[str, Any]:
        """Counters, also published on /diagnostics."""
        lat = list(self._latencies)
        return {
            "received": self._received,
            "published": self._published,
            "dropped": self._dropped_total,
            "rejected": sum(self.rejects.values()),
            "rejects": dict(self.rejects),
            "mean_latency_ms": float(np.mean(lat)) if lat else 0.0,
            "max_latency_ms": float(np.max(lat)) if lat else 0.0,
        }

    def _publish_diagnostics(self) -> None:
        try:
            self._publish_diagnostics_once()
        except Exception as exc:
            self._reject("diagnostics_error", f"{type(exc).__name__}: {exc}")

    def _publish_diagnostics_once(self) -> None:
        stats = self.stats()
        received, published, since = self._window_counts
        now = time.monotonic()
        dt = max(now - since, 1e-6)
        in_rate = (stats["received"] - received) / dt
        out_rate = (stats["published"] - published) / dt
        self._window_counts = (stats["received"], stats["published"], now)
        drop_ratio = stats["dropped"] / stats["received"] if stats["received"] else 0.0
        d = self._cfg.diagnostics
        level, message = DiagnosticStatus.OK, "ok"
        if drop_ratio > d.warn_drop_ratio:
            level, message = DiagnosticStatus.WARN, f"dropping {drop_ratio:.0%} of the images"
        if stats["mean_latency_ms"] > d.warn_latency_ms:
            level, message = (
                DiagnosticStatus.WARN,
                f"mean latency {stats['mean_latency_ms']:.0f} ms",
            )
        values = {
            "input_rate_hz": f"{in_rate:.2f}",
            "output_rate_hz": f"{out_rate:.2f}",
            "mean_latency_ms": f"{stats['mean_latency_ms']:.1f}",
            "max_latency_ms": f"{stats['max_latency_ms']:.1f}",
            "received": str(stats["received"]),
            "published": str(stats["published"]),
            "dropped": str(stats["dropped"]),
            "drop_ratio": f"{drop_ratio:.3f}",
            "rejected": str(stats["rejected"]),
            "backend": self._cfg.model.backend,
            "resets": str(self._segmenter.resets if self._segmenter else 0),
        }
        values.update({f"rejected.{k}": str(v) for k, v in sorted(stats["rejects"].items())})
        status = DiagnosticStatus(
            level=level,
            name=f"vcups: {self.get_fully_qualified_name()}",
            message=message,
            hardware_id=self._cfg.model.device,
            values=[KeyValue(key=k, value=v) for k, v in values.items()],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._pubs["diagnostics"].publish(array)


def _cause(message: str) -> str:
    """Reject cause from a conversion error: the field it names (``Image.encoding`` ...)."""
    head = message.split(":", 1)[0].strip()
    return head.replace(" ", "_") if head and len(head) < 40 else "invalid_image"


@functools.cache
def _types() -> rosmsg.MessageTypes:
    """rclpy message classes (imported once, on first use)."""
    return rclpy_types()


def _free_gpu_memory() -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency, but the node does not need it
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run(node: PerceptionNode, *, blas_threads: int | None = 1) -> int:
    """Spin ``node`` until Ctrl-C (configured and activated first when ``autostart`` is set).

    One executor thread is enough: the subscription callback only stores the newest image, and
    the worker thread does the heavy work, so a second executor thread would only compete with
    the worker for the interpreter lock. BLAS is limited to ``blas_threads`` threads (one by
    default, for the same reason: :func:`~vcups_core.runtime.limit_blas_threads`; None leaves the
    process's setting alone).

    Returns:
        The process exit status: 0 after a shutdown (Ctrl-C); 1 when the parameters are invalid
        or the autostart's configure or activate transition fails (the reason is logged once,
        by the transition; nothing is raised).
    """
    if blas_threads is not None:  # before the worker starts (see vcups_core.runtime)
        limit_blas_threads(blas_threads)
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        try:
            autostart = node.parameters_config().autostart
        except ConfigError as exc:
            node.get_logger().error(str(exc))
            return 1
        if autostart and not _start(node):
            return 1 if node.context.ok() else 0  # a context gone down is a Ctrl-C
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        if node.context.ok():
            raise
        # Ctrl-C during the autostart transitions: the transition event had no context left
    finally:
        try:
            if node.context.ok():
                node.trigger_shutdown()
            else:  # Ctrl-C: rclpy's signal handler has already shut the context down
                node.stop_worker()
        except RCLError:  # the context went down during the transition (Ctrl-C meanwhile)
            node.stop_worker()
        executor.shutdown()
        node.destroy_node()
    return 0


def _start(node: PerceptionNode) -> bool:
    """Configure, then activate only if that worked (activating an unconfigured node is an
    rclpy error, not a message for the user)."""
    success = TransitionCallbackReturn.SUCCESS
    if node.trigger_configure() != success:
        return False
    return bool(node.trigger_activate() == success)


def main(args: list[str] | None = None) -> int:
    """``ros2 run vcups_ros perception_node`` / the ``perception_node`` console script; returns
    the exit status (see :func:`run`)."""
    rclpy.init(args=args)
    try:
        return run(PerceptionNode())
    finally:
        if rclpy.utilities.ok():
            rclpy.shutdown()
