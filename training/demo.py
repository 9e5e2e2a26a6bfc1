"""``vcups demo``: the largest slice of the pipeline that works today, on a built-in clip.

No trained network ships with vcups (and none can be downloaded), so the demo runs the real
streaming path with the **oracle predictor** — the synthetic world's ground truth standing in for
the network — and everything around it for real:

1. every default config in ``config/`` is loaded and validated;
2. a clip of the synthetic driving world is recorded as a rosbag2 (MCAP) with camera, camera info
   and ground-truth topics (``vcups synth``);
3. ``vcups replay`` runs the streaming segmenter (causal tracker, semantic smoothing, panoptic
   composition) on the camera topic with the node's default parameters, writes
   ``vcups_ros/PanopticTrackArray`` messages into a second bag, an overlay video, and a report
   scored against the ground truth with the evaluation protocol (class matching, STQ, VPQ);
4. that bag is read back by an independent reader (``mcap_ros2``) and checked message by message;
5. the camera frames are extracted to PNG with an index (``vcups extract``).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import cv2

from training.replay import run_replay
from vcups_core.config import load_config
from vcups_core.configs import SCHEMAS
from vcups_core.data.extract import extract_frames
from vcups_core.data.rosbag import GT_TOPICS, BagFrameReader, write_synthetic_bag
from vcups_core.data.synthetic import SyntheticWorld
from vcups_core.rosmsg import msg_type, time_to_ns
from vcups_core.streaming.oracle import CATEGORIES
from vcups_core.viz.overlay import render_overlay
from vcups_ros import conversions as conv

REPO = Path(__file__).resolve().parent.parent
CAMERA = "/camera/image_raw"


def run_demo(out_dir: Path, *, frames: int = 20, height: int = 256, width: int = 512) -> int:
    """Run the demo into ``out_dir``; returns 0 when every check passed."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    print(
        "vcups demo: no trained network ships with vcups, so the oracle predictor (the synthetic "
        "world's ground truth) stands in for it; the rest is the real path: synthetic bag -> "
        "streaming segmenter -> PanopticTrackArray bag -> independent read-back -> scores."
    )
    for kind, (schema, rel) in SCHEMAS.items():
        load_config(REPO / "config" / rel, schema)
        print(f"  config {kind:14s} config/{rel}: valid")

    for name in ("camera_bag", "panoptic_bag", "frames", "report.json", "overlay.mp4"):
        target = out_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    camera_bag = out_dir / "camera_bag"
    world = SyntheticWorld(height=height, width=width, num_frames=frames, seed=0)
    write_synthetic_bag(world, camera_bag)
    print(
        f"  recorded {camera_bag}: {frames} frames {width}x{height} at {world.fps:.0f} Hz, "
        f"{len(world.objects)} objects ({sum(o.moving for o in world.objects)} moving)"
    )

    panoptic_bag = out_dir / "panoptic_bag"
    report_path = out_dir / "report.json"
    from training.cli import build_parser  # the replay command's own parser and defaults

    replay_args = build_parser().parse_args(
        [
            "replay",
            str(camera_bag),
            "--topic",
            CAMERA,
            "--oracle",
            "--config",
            str(REPO / "config" / "perception.yaml"),
            "--out",
            str(panoptic_bag),
            "--gt-topics",
            f"{GT_TOPICS['semantic']},{GT_TOPICS['instance']}",
            "--report",
            str(report_path),
            "--video",
            str(out_dir / "overlay.mp4"),
            "--fps",
            str(world.fps),
            "--stuff-area-limit",
            "64",
            "--quiet",
        ]
    )
    if run_replay(replay_args) != 0:
        return 1
    report = json.loads(report_path.read_text())
    metrics = report["metrics"]
    print(
        f"  scores against the ground truth: STQ {100 * metrics['STQ']:.1f}, AQ "
        f"{100 * metrics['AQ']:.1f}, SQ {100 * metrics['SQ']:.1f}, VPQ {100 * metrics['VPQ']:.1f}; "
        f"{report['tracks']} tracks, {report['ms_per_frame']['mean']:.1f} ms/frame (oracle + streaming)"
    )

    stamps = [f.stamp_ns for f in BagFrameReader(camera_bag, CAMERA).messages()]
    counts: Counter[str] = Counter()
    checked = problems = 0
    last = None
    with next(panoptic_bag.glob("*.mcap")).open("rb") as fh:
        reader = make_reader(fh, decoder_factories=[DecoderFactory()])
        for msg_schema, channel, _, ros_msg in reader.iter_decoded_messages():
            counts[channel.topic] += 1
            if msg_schema is not None and msg_schema.name == msg_type("PanopticTrackArray"):
                frame, _ = conv.msg_to_panoptic_frame(ros_msg)
                problems += time_to_ns(ros_msg.header.stamp) != stamps[checked]
                problems += int(frame.segment_ids.max(initial=0)) > len(ros_msg.tracks) + len(
                    CATEGORIES
                )
                checked += 1
                last = frame
    for topic, n in sorted(counts.items()):
        print(f"  read back with mcap_ros2: {topic:17s} {n} messages")
    problems += checked != len(stamps)

    extraction = extract_frames(camera_bag, CAMERA, out_dir / "frames", progress=False)
    print(
        f"  extracted {extraction.total} frames to {extraction.out_dir} (PNG per stamp, index.csv)"
    )
    if last is not None:
        image = next(
            f for f in BagFrameReader(camera_bag, CAMERA) if f.stamp_ns == last.stamp_ns
        ).image
        overlay_path = out_dir / "overlay_last_frame.png"
        cv2.imwrite(str(overlay_path), render_overlay(image, last, CATEGORIES)[:, :, ::-1])
        print(f"  overlay: {overlay_path} and {out_dir / 'overlay.mp4'}; report: {report_path}")
    if problems:
        print(f"vcups demo: FAILED, {problems} problems in the read-back")
        return 1
    print(f"vcups demo: ok, {checked} PanopticTrackArray messages read back with the input stamps")
    return 0
