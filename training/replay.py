"""``vcups replay``: run the streaming path on a recorded bag, frame by frame, without ROS running.

The same :class:`~vcups_core.streaming.segmenter.StreamingSegmenter` as the node processes every
frame of the camera topic in order (deterministic, unlike ``ros2 bag play``); results are written
as ``vcups_ros/PanopticTrackArray`` (plus ``PanopticInfo``) into a rosbag2 (MCAP) that ``ros2 bag
play`` or ``mcap_ros2`` can read, with each frame's input header. Optionally: an overlay video,
and evaluation against ground-truth topics of the bag, written into a JSON report.

Ctrl-C stops after the current frame; the output bag is closed and valid up to that frame.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from vcups_core.config import config_from_dict, load_config
from vcups_core.configs.node import NodeConfig
from vcups_core.data.rosbag import BagFrameReader, BagWriter
from vcups_core.rosimage import image_msg_to_array
from vcups_core.streaming.oracle import OraclePredictor
from vcups_core.streaming.segmenter import Predictor, StreamingSegmenter
from vcups_core.types import PanopticFrame
from vcups_core.viz.overlay import render_overlay
from vcups_ros import conversions as conv


@dataclasses.dataclass(frozen=True)
class GroundTruthFrame:
    """A bag frame with its ground truth, in the shape :class:`OraclePredictor` takes."""

    rgb: npt.NDArray[np.uint8]
    semantic: npt.NDArray[np.uint8]
    instance: npt.NDArray[np.int32]
    index: int
    stamp_ns: int


def read_ground_truth(
    bag: Path, topic: str, semantic_topic: str, instance_topic: str
) -> list[GroundTruthFrame]:
    """Camera frames with the ground truth of the same header stamp (frames without are skipped)."""
    semantic = {
        m.stamp_ns: image_msg_to_array(m.msg)
        for m in BagFrameReader(bag, semantic_topic).messages()
    }
    instance = {
        m.stamp_ns: image_msg_to_array(m.msg)
        for m in BagFrameReader(bag, instance_topic).messages()
    }
    out = []
    for frame in BagFrameReader(bag, topic):
        if frame.stamp_ns in semantic and frame.stamp_ns in instance:
            out.append(
                GroundTruthFrame(
                    frame.image,
                    semantic[frame.stamp_ns].astype(np.uint8),
                    instance[frame.stamp_ns].astype(np.int32),
                    frame.index,
                    frame.stamp_ns,
                )
            )
    if not out:
        raise ValueError(
            f"{bag}: no frame of {topic} has ground truth on {semantic_topic} and {instance_topic}"
        )
    return out


def make_predictor(args: argparse.Namespace, gt: list[GroundTruthFrame] | None) -> Predictor:
    if args.oracle:
        if gt is None:
            raise ValueError("--oracle needs ground-truth topics (--gt-topics)")
        return OraclePredictor(gt)  # type: ignore[arg-type]
    if not args.checkpoint:
        raise ValueError("give --checkpoint (a model, .onnx or .engine) or --oracle (ground truth)")
    from vcups_core.model.predictor import load_predictor

    return load_predictor(args.checkpoint, backend=args.backend, device=args.device)


def run_replay(args: argparse.Namespace) -> int:
    """Replay; returns the exit code (130 when interrupted)."""
    from tqdm import tqdm

    bag = Path(args.bag)
    cfg = (
        load_config(Path(args.config), NodeConfig)
        if args.config
        else config_from_dict({}, NodeConfig)
    )
    gt_topics = args.gt_topics.split(",") if args.gt_topics else None
    if gt_topics is not None and len(gt_topics) != 2:
        raise ValueError(f"--gt-topics: expected SEMANTIC,INSTANCE topics, got {args.gt_topics!r}")
    gt = read_ground_truth(bag, args.topic, gt_topics[0], gt_topics[1]) if gt_topics else None
    predictor = make_predictor(args, gt)
    segmenter = StreamingSegmenter.from_config(
        predictor, cfg, stuff_area_limit=args.stuff_area_limit
    )
    reader = BagFrameReader(bag, args.topic)
    out = Path(args.out) if args.out else None
    writer = BagWriter(out, "mcap") if out else None
    video: Any = None
    results: list[PanopticFrame] = []
    latencies: list[float] = []
    interrupted = False
    types = conv.MessageTypes.rosbags()
    try:
        if writer is not None:
            writer.__enter__()
            writer.write("/panoptic/info", info_message(segmenter, predictor, cfg, types), 0)
        for frame in tqdm(
            reader, total=reader.count or None, desc="replay", unit="frame", disable=args.quiet
        ):
            t0 = time.perf_counter()
            result = segmenter.step(frame)
            latencies.append((time.perf_counter() - t0) * 1e3)
            if writer is not None:
                meta = conv.TrackArrayMeta(info_version=1, inference_ms=latencies[-1])
                writer.write(
                    "/panoptic/tracks",
                    conv.panoptic_frame_to_msg(result, types, meta),
                    frame.stamp_ns,
                )
            if args.video:
                rgb = render_overlay(frame.image, result, segmenter.categories)
                if video is None:
                    video = cv2.VideoWriter(
                        str(args.video),
                        cv2.VideoWriter.fourcc(*"mp4v"),
                        args.fps,
                        (frame.width, frame.height),
                    )
                video.write(rgb[:, :, ::-1])
            if args.report:
                results.append(result)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if writer is not None:
            writer.__exit__(None, None, None)
        if video is not None:
            video.release()
    done = len(latencies)
    print(
        f"replayed {done} frames of {bag} {args.topic}"
        + (f" -> {out}" if out else "")
        + (" (interrupted; output valid up to there)" if interrupted else "")
    )
    if args.report:
        report = {
            "bag": str(bag),
            "topic": args.topic,
            "frames": done,
            "interrupted": interrupted,
            "gaps": [dataclasses.asdict(g) for g in reader.gaps()],
            "ms_per_frame": {
                "mean": float(np.mean(latencies)) if latencies else 0.0,
                "max": float(np.max(latencies)) if latencies else 0.0,
            },
            "tracks": len({s.track_id for r in results for s in r.segments if s.is_thing}),
        }
        if gt is not None:
            report["metrics"] = evaluate_against(gt, results, segmenter)
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
        print(f"report: {args.report}")
    return 130 if interrupted else 0


def checksum_or_empty(predictor: Predictor) -> str:
    return str(getattr(predictor, "checksum", ""))


def info_message(
    segmenter: StreamingSegmenter, predictor: Predictor, cfg: NodeConfig, types: Any
) -> Any:
    cats = segmenter.categories
    return conv.panoptic_info_msg(
        types,
        version=1,
        category_names=list(cats.names),
        category_is_thing=list(cats.is_thing),
        model_name=str(getattr(predictor, "model_name", "")),
        model_checksum=checksum_or_empty(predictor),
        score_threshold=cfg.score_threshold,
    )


def evaluate_against(
    gt: list[GroundTruthFrame], results: list[PanopticFrame], segmenter: StreamingSegmenter
) -> dict[str, Any]:
    """STQ/VPQ of the replayed frames against the bag's ground truth (Cityscapes train ids).

    The predicted categories are matched to the 19 classes by the evaluation protocol's
    Hungarian + majority rule (:func:`vcups_core.metrics.evaluate.evaluate`); every ground-truth
    thing class is tracked.
    """
    from vcups_core.data.datasets import CITYSCAPES_VPS
    from vcups_core.metrics.evaluate import Frame, evaluate

    by_stamp = {r.stamp_ns: r for r in results}
    pairs = [(g, by_stamp[g.stamp_ns]) for g in gt if g.stamp_ns in by_stamp]

    def source() -> Iterator[Frame]:
        for g, r in pairs:
            yield "bag", g.semantic, g.instance, r.semantic, r.track_ids

    cats = segmenter.categories
    report = evaluate(
        source, CITYSCAPES_VPS, num_pred_classes=len(cats), pred_is_thing=list(cats.is_thing)
    )
    report.pop("classwise_table")
    return report
