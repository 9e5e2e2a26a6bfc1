"""``vcups demo``: raw video in, a trained model out, run on the robot's path and scored.

Nothing in the main job uses ground truth except the final scoring. The steps, each cached:

1. ``record``: synthetic drives as rosbag2 (MCAP) with camera, camera info and ground-truth
   topics (``--train-drives`` training drives of ``--frames`` frames, one held-out drive; the
   default); or the first ``--frames`` frames of the user's bag (``--bag``/``--topic``, resized to
   the processing size, camera info kept); or DAVIS-2016 sequences (``--davis``) converted to
   bags with their masks as ground truth, the shortest sequence held out.
2. ``clusters``: the weight-free semantic clusters fitted on the training frames
   (``vcups semantic-train``).
3. ``pseudo-labels``: video pseudo-labels of the training drives with the weight-free default
   cues and the paper's hyperparameters (instances from flow, parallax and motion; semantics;
   thing/stuff split) (``vcups pseudo-labels``; resumable).
4. ``held-out pseudo-labels``: the same on the held-out drive, only to be scored next to the model.
5. ``train``: the tiny model (``config/model/tiny.yaml``) on the pseudo-labels with Video
   DropLoss and the self-enhanced video copy-paste (``vcups train``; resumable).
6. ``replay``: the held-out drive through the streaming path (``vcups replay``) with that
   checkpoint: a ``PanopticTrackArray`` bag, read back with ``mcap_ros2`` and checked message by
   message, an overlay video and overlay frames (PNG).
7. ``node``: the same checkpoint in ``perception_node`` with real rclpy on a few frames: images
   published, ``PanopticTrackArray`` messages received with the input stamps.
8. ``score``: model and pseudo-labels on the held-out drive with the evaluation protocol (one class
   matching, STQ/AQ/SQ, VPQ, moving vs static objects).
9. ``report``: ``report.json``, ``report.md``, the training curve and per-class IoU as PNG.

Caching: each step has a key, the hash of its inputs (config values, and the digests of the
outputs of the steps it reads), kept with the step's state in ``OUT/.steps/<step>.json``. A step
whose marker has the same key, is done and whose outputs exist is skipped ("cached"); a changed
input redoes the step, and a changed output of it redoes the steps after. A step killed (Ctrl-C,
SIGTERM, SIGKILL) is found ``running`` with the same key next time: the resumable ones
(pseudo-labels, training) go on where they stopped, the others start again; every output is
written atomically, so a second run finishes with the same result.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import itertools
import json
import math
import os
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vcups_core import __version__
from vcups_core.jobs import (
    StagedOutput,
    atomic_write_json,
    atomic_write_png,
    atomic_write_text,
    file_sha256,
    hold_folder,
    terminate_as_interrupt,
)
from vcups_core.pseudo.store import canonical_json

REPO = Path(__file__).resolve().parent.parent
CAMERA = "/camera/image_raw"
CAMERA_INFO = "/camera/camera_info"
STEPS_DIR = ".steps"
MARKER_FORMAT = "vcups-demo-step"
TRAIN_SEED = 21
"""Seed of the first synthetic training drive (then 22, 23, ...), as the training benchmark."""
HELDOUT_SEED = 401
"""Seed of the synthetic held-out drive (the training benchmark's first)."""
SCORE_KEYS = ("STQ", "AQ", "SQ", "VPQ", "AQ_moving", "AQ_static", "STQ_moving", "STQ_static")
DEFAULT_FRAMES = {"synthetic": 30, "bag": 60, "davis": 0}
"""``--frames`` by source: frames per synthetic drive, frames taken from the start of a bag, or
of each DAVIS sequence (0: all)."""

Source = Literal["synthetic", "bag", "davis"]


class DemoError(RuntimeError):
    """A step failed; the message says which and why (exit code 1)."""


@dataclasses.dataclass(frozen=True)
class DemoOptions:
    """What ``vcups demo`` runs (its command line)."""

    out: Path
    source: Source = "synthetic"
    bag: Path | None = None
    topic: str | None = None
    davis: Path | None = None
    frames: int | None = None
    train_drives: int = 4
    size: tuple[int, int] = (128, 256)
    steps: int = 300
    lr: float = 2e-4
    node_frames: int = 5
    heldout: str | None = None
    model_config: Path = REPO / "config" / "model" / "tiny.yaml"
    progress: bool = True

    @property
    def frame_limit(self) -> int:
        return DEFAULT_FRAMES[self.source] if self.frames is None else self.frames


# --------------------------------------------------------------------------------------------------
# Steps and their cache


@dataclasses.dataclass(frozen=True)
class StepResult:
    """What a step hands to the steps after it: a digest of its outputs and facts about them."""

    digest: str
    info: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Step:
    """One cached step.

    Attributes:
        name: marker name (``OUT/.steps/<name>.json``).
        title: what it does, printed.
        inputs: the config values it depends on (JSON-serialisable).
        deps: the steps whose outputs it reads (their digests join the key).
        outputs: what it writes; all must exist for the step to count as done, and they are
            removed before it starts afresh.
        run: does the work; its argument says whether a killed run of the same key is resumed.
    """

    name: str
    title: str
    inputs: Mapping[str, Any]
    deps: Sequence[str]
    outputs: Sequence[Path]
    run: Callable[[bool], StepResult]


def sha256_tree(root: Path) -> str:
    """Digest of the names and contents of the files under ``root`` (hidden ones skipped)."""
    root = Path(root)
    if root.is_file():
        return file_sha256(root)
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            h.update(f"{rel.as_posix()}\0{file_sha256(path)}\n".encode())
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


class StepRunner:
    """Runs :class:`Step` s in order with the cache of the module docstring."""

    def __init__(self, out: Path, total: int) -> None:
        self.dir = Path(out) / STEPS_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.total = total
        self.count = 0
        self.done: dict[str, dict[str, Any]] = {}
        self.ran: list[str] = []
        self.cached: list[str] = []

    def marker_path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def read_marker(self, name: str) -> dict[str, Any] | None:
        try:
            marker = json.loads(self.marker_path(name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(marker, dict) or marker.get("format") != MARKER_FORMAT:
            return None
        return marker

    def key(self, step: Step) -> str:
        return sha256_json(
            {
                "step": step.name,
                "vcups": __version__,
                "inputs": step.inputs,
                "deps": {d: self.done[d]["digest"] for d in step.deps},
            }
        )

    def execute(self, step: Step) -> StepResult:
        self.count += 1
        key = self.key(step)
        marker = self.read_marker(step.name)
        head = f"[{self.count}/{self.total}] {step.name}"
        if (
            marker is not None
            and marker.get("key") == key
            and marker.get("status") == "done"
            and all(os.path.lexists(p) for p in step.outputs)
        ):
            print(f"{head}: cached ({step.title}; took {marker['seconds']:.0f} s)", flush=True)
            self.done[step.name] = marker
            self.cached.append(step.name)
            return StepResult(marker["digest"], marker["info"])
        resume = (
            marker is not None and marker.get("key") == key and marker.get("status") == "running"
        )
        print(
            f"{head}: {step.title}{' (resuming an unfinished run)' if resume else ''}", flush=True
        )
        if not resume:
            for path in step.outputs:
                remove_path(path)
        base = {"format": MARKER_FORMAT, "step": step.name, "key": key, "vcups": __version__}
        atomic_write_json(self.marker_path(step.name), {**base, "status": "running"})
        t0 = time.perf_counter()
        result = step.run(resume)
        seconds = time.perf_counter() - t0
        done = {
            **base,
            "status": "done",
            "digest": result.digest,
            "info": result.info,
            "seconds": round(seconds, 2),
            "resumed": resume,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        atomic_write_json(self.marker_path(step.name), done)
        print(f"{head}: done in {seconds:.1f} s", flush=True)
        self.done[step.name] = done
        self.ran.append(step.name)
        return result


# --------------------------------------------------------------------------------------------------
# Sources


def fit_size(native: tuple[int, int], height: int) -> tuple[int, int]:
    """``height`` rows and the width that keeps ``native``'s aspect ratio (even)."""
    return height, max(2, 2 * round(height * native[1] / native[0] / 2))


def drive_facts(bag: Path) -> dict[str, Any]:
    """Frames, size and frame rate of a bag's camera topic."""
    from vcups_core.data.rosbag import BagFrameReader

    stamps: list[int] = []
    shape: tuple[int, ...] = ()
    for frame in BagFrameReader(bag, CAMERA):
        stamps.append(frame.stamp_ns)
        shape = frame.image.shape
    if len(stamps) < 2:
        raise DemoError(f"{bag}: {len(stamps)} camera frames; the demo needs at least 2")
    span = (stamps[-1] - stamps[0]) / 1e9
    fps = (len(stamps) - 1) / span if span > 0 else 10.0
    return {"frames": len(stamps), "size": [shape[0], shape[1]], "fps": round(fps, 3)}


def record_synthetic(opts: DemoOptions, drives: Path) -> StepResult:
    from vcups_core.data.rosbag import write_synthetic_bag

    drives.mkdir(parents=True, exist_ok=True)
    h, w = opts.size
    names = synthetic_drives(opts)
    for name, seed in names.items():
        bag = drives / name
        if not bag.exists():  # a finished bag (written atomically) of a killed run is kept
            world = synthetic_world(opts, seed)
            write_synthetic_bag(world, bag, progress=opts.progress)
            moving = sum(o.moving for o in world.objects)
            print(
                f"    {bag}: {len(world)} frames of {h}x{w} (HxW) at {world.fps:.0f} Hz, "
                f"{len(world.objects)} objects ({moving} moving)",
                flush=True,
            )
    heldout = [n for n in names if n.startswith("heldout_")]
    return drives_result(drives, [n for n in names if n not in heldout], heldout, opts.size)


def synthetic_drives(opts: DemoOptions) -> dict[str, int]:
    """Bag name -> seed of the synthetic drives."""
    names = {f"train_{TRAIN_SEED + i}": TRAIN_SEED + i for i in range(opts.train_drives)}
    names[f"heldout_{HELDOUT_SEED}"] = HELDOUT_SEED
    return names


def synthetic_world(opts: DemoOptions, seed: int) -> Any:
    from vcups_core.data.synthetic import SyntheticWorld

    h, w = opts.size
    return SyntheticWorld(height=h, width=w, num_frames=opts.frame_limit, seed=seed)


def drives_result(
    drives: Path, train: Sequence[str], heldout: Sequence[str], size: tuple[int, int]
) -> StepResult:
    facts = {name: drive_facts(drives / name) for name in [*train, *heldout]}
    digest = sha256_json({name: sha256_tree(drives / name) for name in facts})
    info = {"train": list(train), "heldout": list(heldout), "size": list(size), "drives": facts}
    return StepResult(digest, info)


def bag_identity(path: Path) -> list[Any]:
    """Names, sizes and modification times of a bag's files (its identity for the cache)."""
    path = Path(path).resolve()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def record_from_bag(opts: DemoOptions, drives: Path) -> StepResult:
    """The first ``--frames`` frames of the user's bag (all with 0), resized to the processing
    size, as one drive with its camera info (intrinsics scaled)."""
    from tqdm import tqdm

    from vcups_core.data.rosbag import BagFrameReader, BagWriter, is_unfinished_bag
    from vcups_core.pseudo.sources import read_camera_info, resize_image, scale_intrinsics

    assert opts.bag is not None
    assert opts.topic is not None
    drives.mkdir(parents=True, exist_ok=True)
    name = "bag_" + (opts.bag.resolve().stem if opts.bag.is_file() else opts.bag.resolve().name)
    target = drives / name
    reader = BagFrameReader(opts.bag, opts.topic)
    camera = read_camera_info(opts.bag, opts.topic)
    limit = opts.frame_limit or None
    size: tuple[int, int] | None = None
    known = [x for x in (reader.count, limit) if x]
    total = min(known) if known else None
    with (
        StagedOutput(target, overwrite=True, replaceable=is_unfinished_bag) as staged,
        BagWriter(staged.path) as bag,
    ):
        frames = itertools.islice(reader, limit)
        for frame in tqdm(frames, total=total, desc="bag", unit="frame", disable=not opts.progress):
            native = (frame.height, frame.width)
            size = size or fit_size(native, opts.size[0])
            rgb = resize_image(frame.image, size)
            bag.write_rgb(CAMERA, rgb, frame.stamp_ns, frame.frame_id or "camera")
            if camera is not None:
                k = scale_intrinsics(camera[0], camera[1], size)
                bag.write_camera_info(
                    CAMERA_INFO, k, size[0], size[1], frame.stamp_ns, frame.frame_id or "camera"
                )
    if size is None:
        raise DemoError(f"{opts.bag}: no frames on {opts.topic}")
    print(
        f"    {target}: frames of {opts.bag} {opts.topic} at {size[0]}x{size[1]} (HxW)"
        f"{'' if camera else ' (no camera info: the pseudo-labels assume a field of view)'}",
        flush=True,
    )
    return drives_result(drives, [name], [], size)


def davis_clips(root: Path) -> list[Any]:
    from vcups_core.data.registry import open_dataset

    clips = list(open_dataset("davis", root))
    if len(clips) < 2:
        raise DemoError(f"{root}: {len(clips)} DAVIS sequences; the demo needs 2 (train, held-out)")
    return clips


def davis_heldout(clips: Sequence[Any], wanted: str | None) -> str:
    """The held-out sequence: ``wanted``, else the shortest (first by name on ties)."""
    names = [c.name for c in clips]
    if wanted is not None:
        if wanted not in names:
            raise DemoError(f"--heldout {wanted!r}: not a sequence here ({', '.join(names)})")
        return wanted
    shortest = min(clips, key=lambda c: (len(c.frames), c.name))
    return str(shortest.name)


def record_davis(opts: DemoOptions, drives: Path) -> StepResult:
    """DAVIS sequences as bags at the processing size: camera frames, and the masks as ground
    truth (``/gt/semantic``: 0 on the object, 255 void elsewhere; ``/gt/instance``: 1 on it)."""
    import cv2
    from tqdm import tqdm

    from vcups_core.data.rosbag import GT_TOPICS, BagWriter, is_unfinished_bag
    from vcups_core.pseudo.sources import resize_image

    assert opts.davis is not None
    drives.mkdir(parents=True, exist_ok=True)
    clips = davis_clips(opts.davis)
    heldout = davis_heldout(clips, opts.heldout)
    size: tuple[int, int] | None = None
    for clip in clips:
        target = drives / f"davis_{clip.name}"
        frames = clip.frames[: opts.frame_limit or None]
        first = frames[0].image().image
        size = fit_size(first.shape[:2], opts.size[0])
        if target.exists():
            continue
        with (
            StagedOutput(target, overwrite=True, replaceable=is_unfinished_bag) as staged,
            BagWriter(staged.path) as bag,
        ):
            for cf in tqdm(frames, desc=clip.name, unit="frame", disable=not opts.progress):
                rgb = resize_image(cf.image().image, size)
                bag.write_rgb(CAMERA, rgb, cf.stamp_ns, "camera")
                label = cf.label()
                if label is None:
                    continue
                dsize = (size[1], size[0])
                sem = cv2.resize(label.semantic, dsize, interpolation=cv2.INTER_NEAREST)
                inst = cv2.resize(
                    label.instance.astype(np.uint16), dsize, interpolation=cv2.INTER_NEAREST
                )
                bag.write_array(GT_TOPICS["semantic"], sem, "mono8", cf.stamp_ns, "camera")
                bag.write_array(GT_TOPICS["instance"], inst, "16UC1", cf.stamp_ns, "camera")
    assert size is not None
    names = [f"davis_{c.name}" for c in clips]
    held = f"davis_{heldout}"
    return drives_result(drives, [n for n in names if n != held], [held], size)


def davis_identity(root: Path) -> list[Any]:
    root = Path(root).resolve()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return [[str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


# --------------------------------------------------------------------------------------------------
# The pseudo-labels and the training


def run_pseudo(
    bags: Sequence[Path], store: Path, cfg: Any, progress: bool, what: str
) -> StepResult:
    from vcups_core.pseudo.pipeline import run_pseudo_labels
    from vcups_core.pseudo.sources import SourceSpec
    from vcups_core.pseudo.store import read_manifest

    t0 = time.perf_counter()
    code = run_pseudo_labels(SourceSpec.bag(list(bags), CAMERA), store, cfg, progress=progress)
    manifest = read_manifest(store)
    summary = manifest.get("summary", {})
    if code != 0:
        raise DemoError(
            f"{what}: {summary.get('failed')} of {summary.get('clips')} clips failed; see "
            f"{store / '.status'} (re-run to retry)"
        )
    frames = int(summary.get("frames", 0))
    seconds = time.perf_counter() - t0
    print(
        f"    {store}: {frames} frames, {len(manifest.get('thing_classes', []))} thing and "
        f"{len(manifest.get('stuff_classes', []))} stuff pseudo-classes "
        f"({seconds:.0f} s in this run)",
        flush=True,
    )
    return StepResult(
        sha256_tree(store),
        {
            "frames": frames,
            "clips": int(summary.get("clips", 0)),
            "thing_classes": manifest.get("thing_classes"),
            "stuff_classes": manifest.get("stuff_classes"),
            "cue_backends": manifest.get("cue_backends"),
        },
    )


def train_model(
    store: Path, out: Path, model_cfg: Any, train_cfg: Any, steps: int, progress: bool
) -> StepResult:
    from vcups_core.train.loop import FINAL_CHECKPOINT, TrainingError, TrainOptions, train

    t0 = time.perf_counter()
    try:
        result = train(
            TrainOptions(
                store=store,
                out=out,
                model=model_cfg,
                training=train_cfg,
                max_steps=steps,
                device="cpu",
                progress=progress,
            )
        )
    except TrainingError as exc:
        raise DemoError(f"training stopped: {exc}") from None
    if result.interrupted:
        raise KeyboardInterrupt
    final = out / FINAL_CHECKPOINT
    if not final.exists():
        raise DemoError(f"training ended at step {result.steps} without {final}")
    seconds = time.perf_counter() - t0
    here = len(result.losses)
    per_step = step_seconds(out / "metrics.jsonl", train_cfg)
    print(
        f"    {final}: {result.steps} steps ({here} in this run, {seconds:.0f} s); "
        f"{per_step:.2f} s per step (median)",
        flush=True,
    )
    curve = read_metrics(out / "metrics.jsonl")
    tail = [m["loss"] for m in curve[-max(1, len(curve) // 5) :]]
    return StepResult(
        file_sha256(final),
        {
            "steps": result.steps,
            "seconds_per_step": round(per_step, 3),
            "final_loss": round(statistics.fmean(tail), 4) if tail else None,
            "first_loss": round(curve[0]["loss"], 4) if curve else None,
        },
    )


def read_metrics(path: Path) -> list[dict[str, Any]]:
    lines = []
    with contextlib.suppress(FileNotFoundError):
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
    return lines


def step_seconds(metrics: Path, train_cfg: Any) -> float:
    """Median seconds per training step from ``metrics.jsonl``'s images per second."""
    images = train_cfg.batch_size * train_cfg.clip.length
    rates = [m["images_per_s"] for m in read_metrics(metrics) if m.get("images_per_s", 0) > 0]
    return statistics.median(images / r for r in rates) if rates else float("nan")


# --------------------------------------------------------------------------------------------------
# Replay, node, scores


def replay(checkpoint: Path, bag: Path, fps: float, out: Path, progress: bool) -> StepResult:
    """``vcups replay`` of ``bag`` with the checkpoint, then the output bag read back with
    ``mcap_ros2`` (one message per input frame, same stamps) and overlay frames as PNG."""
    from training.replay import ReplayOptions, run_replay

    panoptic = out / "panoptic_bag"
    video = out / "overlay.mp4"
    report = out / "replay.json"
    options = ReplayOptions(
        bag=str(bag),
        topic=CAMERA,
        checkpoint=str(checkpoint),
        out=str(panoptic),
        video=str(video),
        report=str(report),
        fps=fps,
        overwrite=True,
        quiet=not progress,
    )
    code = run_replay(options)
    if code == 130:
        raise KeyboardInterrupt
    if code != 0:
        raise DemoError(f"vcups replay exited with {code}")
    stats = json.loads(report.read_text())
    frames, checked = read_back(panoptic, bag)
    grid = overlay_grid(checkpoint, bag, frames)
    atomic_write_png(out / "overlay_frames.png", grid)
    print(
        f"    {panoptic}: {checked} PanopticTrackArray messages read back with mcap_ros2, input "
        f"stamps; {stats['tracks']} tracks, {stats['ms_per_frame']['mean']:.0f} ms/frame",
        flush=True,
    )
    return StepResult(
        sha256_tree(panoptic),
        {
            "frames": checked,
            "tracks": stats["tracks"],
            "ms_per_frame": stats["ms_per_frame"]["mean"],
            "bag": str(bag),
        },
    )


def read_back(panoptic: Path, camera_bag: Path) -> tuple[dict[int, Any], int]:
    """Decode every ``PanopticTrackArray`` of the replay's bag with ``mcap_ros2``; checks one per
    camera frame, with its stamp, and labels that fit the frame.

    Returns:
        The decoded panoptic frames by stamp and how many messages were checked.
    """
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    from vcups_core.data.rosbag import BagFrameReader
    from vcups_core.rosmsg import msg_to_panoptic_frame, msg_type, time_to_ns
    from vcups_core.types import VOID_SEGMENT

    stamps = [m.stamp_ns for m in BagFrameReader(camera_bag, CAMERA).messages()]
    frames: dict[int, Any] = {}
    problems = []
    order = []
    for path in sorted(panoptic.glob("*.mcap")):
        with path.open("rb") as fh:
            reader = make_reader(fh, decoder_factories=[DecoderFactory()])
            for schema, _channel, _, ros_msg in reader.iter_decoded_messages():
                if schema is None or schema.name != msg_type("PanopticTrackArray"):
                    continue
                frame, _ = msg_to_panoptic_frame(ros_msg)
                stamp = time_to_ns(ros_msg.header.stamp)
                order.append(stamp)
                frames[stamp] = frame
                ids, areas = np.unique(frame.segment_ids, return_counts=True)
                present = {int(i): int(a) for i, a in zip(ids, areas, strict=True)}
                present.pop(VOID_SEGMENT, None)
                if present != {s.segment_id: s.area for s in frame.segments}:
                    problems.append(f"stamp {stamp}: the segment table does not fit the id map")
    if order != stamps:
        problems.append(f"{len(order)} messages for {len(stamps)} frames, or other stamps")
    if problems:
        raise DemoError(f"{panoptic}: read-back found problems: {'; '.join(problems[:3])}")
    return frames, len(order)


def overlay_grid(checkpoint: Path, bag: Path, frames: Mapping[int, Any], count: int = 4) -> Any:
    """Overlays of ``count`` evenly spaced frames, 2 per row (RGB)."""
    from vcups_core.configs.predictor import PredictorConfig
    from vcups_core.data.rosbag import BagFrameReader
    from vcups_core.model.predictors import load_predictor
    from vcups_core.viz.overlay import render_overlay

    categories = load_predictor(PredictorConfig(checkpoint=str(checkpoint))).categories
    stamps = sorted(frames)
    picks = {stamps[int(i)] for i in np.linspace(0, len(stamps) - 1, min(count, len(stamps)))}
    tiles = [
        render_overlay(f.image, frames[f.stamp_ns], categories)
        for f in BagFrameReader(bag, CAMERA)
        if f.stamp_ns in picks
    ]
    while len(tiles) % 2:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i : i + 2], axis=1) for i in range(0, len(tiles), 2)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0))


def node_check(checkpoint: Path, bag: Path, count: int, progress: bool) -> dict[str, Any]:
    """Run ``perception_node`` with real rclpy (own context, a private namespace, localhost
    discovery) on the checkpoint; publish ``count`` frames of ``bag`` one by one and collect the
    ``PanopticTrackArray`` messages.

    Returns:
        What went through, or ``{"skipped": reason}`` when rclpy or the messages are missing.
    """
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    try:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.lifecycle import TransitionCallbackReturn
        from rclpy.parameter import Parameter
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from vcups_ros.msg import PanopticTrackArray

        from vcups_ros.perception_node import PerceptionNode
        from vcups_ros.rclpy_types import rclpy_types
    except ImportError as exc:
        return {"skipped": f"rclpy or the vcups_ros messages cannot be imported ({exc})"}
    from tqdm import tqdm

    from vcups_core import rosmsg
    from vcups_core.data.rosbag import BagFrameReader

    inputs = list(itertools.islice(BagFrameReader(bag, CAMERA), count))
    namespace = f"/vcups_demo_{os.getpid()}"
    context = rclpy.Context()  # type: ignore[attr-defined]  # not re-exported in rclpy's stub
    rclpy.init(context=context)
    outputs: list[Any] = []
    received = threading.Condition()

    def on_tracks(msg: Any) -> None:
        with received:
            outputs.append((time.perf_counter(), msg))
            received.notify_all()

    node = peer = executor = thread = None
    try:
        node = PerceptionNode(
            context=context,
            namespace=namespace,
            parameter_overrides=[
                Parameter("model.checkpoint", value=str(checkpoint)),
                Parameter("model.device", value="cpu"),
                Parameter("input.reliability", value="reliable"),
            ],
        )
        peer = rclpy.create_node("vcups_demo_camera", namespace=namespace, context=context)
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        peer.create_subscription(PanopticTrackArray, "panoptic/tracks", on_tracks, reliable)
        images = peer.create_publisher(
            Image, "image", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        )
        executor = MultiThreadedExecutor(num_threads=4, context=context)
        executor.add_node(node)
        executor.add_node(peer)
        thread = threading.Thread(target=executor.spin, daemon=True)
        thread.start()
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise DemoError(f"perception_node could not be configured with {checkpoint}")
        if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            raise DemoError("perception_node could not be activated")
        topic = f"{namespace}/panoptic/tracks"
        wait_until(lambda: images.get_subscription_count() > 0, "the node subscribed", 30)
        wait_until(lambda: peer.count_publishers(topic) > 0, "the node publishes tracks", 30)
        types = rclpy_types()
        latencies = []
        for i, frame in enumerate(tqdm(inputs, desc="node", unit="frame", disable=not progress)):
            header = rosmsg.make_header(frame.stamp_ns, "camera", types)
            sent = time.perf_counter()
            images.publish(rosmsg.rgb_to_image_msg(frame.image, "rgb8", header, types))
            with received:
                if not received.wait_for(functools.partial(more_than, outputs, i), timeout=60):
                    raise DemoError(f"perception_node: no output for frame {i} within 60 s")
            latencies.append(1000 * (outputs[i][0] - sent))
        stats = node.stats()
    finally:
        if executor is not None:
            executor.shutdown()
        for n in (node, peer):
            if n is not None:
                n.destroy_node()
        rclpy.shutdown(context=context)
        if thread is not None:
            thread.join(timeout=5)
    got = [rosmsg.time_to_ns(m.header.stamp) for _, m in outputs]
    want = [f.stamp_ns for f in inputs]
    tracks = set()
    for _, msg in outputs:
        frame, _ = rosmsg.msg_to_panoptic_frame(msg)
        if frame.segment_ids.shape != inputs[0].image.shape[:2]:
            raise DemoError(f"perception_node: output {frame.segment_ids.shape} for another size")
        tracks |= {s.track_id for s in frame.segments if s.is_thing}
    if got != want:
        raise DemoError(f"perception_node: output stamps {got} for input stamps {want}")
    return {
        "frames": len(inputs),
        "outputs": len(outputs),
        "stamps_match": True,
        "tracks": len(tracks),
        "latency_ms": round(statistics.median(latencies), 1),
        "dropped": int(stats.get("dropped", 0)),
        "namespace": namespace,
    }


def more_than(items: Sequence[Any], count: int) -> bool:
    return len(items) > count


def wait_until(predicate: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise DemoError(f"perception_node: timed out waiting until {what}")
        time.sleep(0.02)


def finite(value: Any) -> Any:
    """JSON-safe: non-finite floats become None (recursively)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def score(
    checkpoint: Path,
    heldout: Sequence[Path],
    store: Path,
    moving: Mapping[str, Sequence[int]],
    dataset: str,
) -> dict[str, Any]:
    """Model and pseudo-labels on the held-out drives, each with its own class matching."""
    from vcups_core.train.heldout import (
        bag_ground_truth,
        model_frames,
        pseudo_label_frames,
        score_frames,
    )

    truth = [bag_ground_truth(b) for b in heldout]
    out = {}
    for name, predictions in (
        ("model", lambda: model_frames(checkpoint, heldout, CAMERA)),
        ("pseudo_labels", lambda: pseudo_label_frames(store)),
    ):
        report = score_frames(predictions(), truth, moving, dataset=dataset)
        values: dict[str, float | None] = {k: float(report[k]) for k in SCORE_KEYS}
        if dataset == "davis":  # one annotated object per sequence, and it moves
            values.update(AQ_static=None, STQ_static=None)
        out[name] = finite(
            {**values, "IoU_per_class": report["IoU_per_class"], "frames": report["frames"]}
        )
    return out


# --------------------------------------------------------------------------------------------------
# Report


CAVEATS = (
    "These are not the paper's numbers and not comparable to them: the drives are from vcups' "
    "synthetic world (not Cityscapes or KITTI), the model is {model} (ResNet-{depth}, "
    "{fpn}-channel FPN) instead of the paper's ResNet-50, it trained {steps} steps on {threads} CPU threads instead of "
    "days on 8 GPUs, on {frames} pseudo-labelled frames, and the pseudo-labels come from the "
    "weight-free default cues (DIS flow, parallax depth, geometric motion, colour/texture "
    "clusters) instead of SMURF, DINO and DepthG. One held-out drive makes the scores noisy."
)


def pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def report_markdown(report: dict[str, Any]) -> str:
    setup = report["setup"]
    lines = ["# vcups demo report", ""]
    lines.append(
        f"Source: **{setup['source']}**; training drives {', '.join(setup['train_drives'])}"
        + (f"; held-out {', '.join(setup['heldout_drives'])}" if setup["heldout_drives"] else "")
        + f"; {setup['size'][0]}x{setup['size'][1]} pixels (HxW); {setup['steps']} training steps "
        f"({report['timings']['seconds_per_train_step']:.2f} s per step on the CPU)."
    )
    lines.append("")
    if report["scored"]:
        cols = SCORE_KEYS
        lines.append("| on the held-out drive | " + " | ".join(cols) + " |")
        lines.append("|---|" + "---:|" * len(cols))
        for name, label in (("model", "trained model"), ("pseudo_labels", "its pseudo-labels")):
            lines.append(
                f"| {label} | " + " | ".join(pct(report[name].get(k)) for k in cols) + " |"
            )
        lines.append("")
        lines.append(
            "Scores in % with the evaluation protocol (one Hungarian class matching per row, "
            f"{report['dataset']} classes; STQ = sqrt(AQ x SQ); VPQ over windows 1-4; "
            "*_moving / *_static: only the ground-truth objects that move / stand still)."
        )
        lines.append("")
        lines.append(CAVEATS.format(**report["caveat_values"]))
    else:
        lines.append(f"**No scores:** {report['scoring_note']}")
    lines.append("")
    replay_info, node = report["replay"], report["node"]
    lines.append(
        f"Streaming path (`vcups replay`): {replay_info['frames']} frames, "
        f"{replay_info['tracks']} tracks, {replay_info['ms_per_frame']:.0f} ms per frame."
    )
    if "skipped" in node:
        lines.append(f"perception_node with rclpy: **skipped**, {node['skipped']}.")
    else:
        lines.append(
            f"perception_node with real rclpy: {node['outputs']}/{node['frames']} frames answered "
            f"with `PanopticTrackArray` messages carrying the input stamps, median latency "
            f"{node['latency_ms']:.0f} ms, {node['tracks']} tracks."
        )
    lines.append("")
    lines.append("| step | seconds (run that did it) |")
    lines.append("|---|---:|")
    for name, seconds in report["timings"]["steps"].items():
        lines.append(f"| {name} | {seconds:.1f} |")
    lines.append("")
    lines.append("Files:")
    lines.append("")
    for what, path in report["files"].items():
        lines.append(f"- {what}: `{path}`")
    lines.append("")
    return "\n".join(lines)


def plot_training_curve(metrics: list[dict[str, Any]], path: Path, model: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [m["step"] for m in metrics]
    loss = [m["loss"] for m in metrics]
    k = max(1, len(loss) // 20)
    smooth = [statistics.fmean(loss[max(0, i - k) : i + 1]) for i in range(len(loss))]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, loss, color="#bbbbbb", linewidth=0.8, label="loss per step")
    ax.plot(steps, smooth, color="#4477aa", linewidth=2, label="running mean")
    ax.set_xlabel("step")
    ax.set_ylabel("total loss")
    ax.set_title(f"vcups demo: {model} trained on pseudo-labels (CPU)")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def plot_classwise(scores: Mapping[str, Mapping[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(scores["model"]["IoU_per_class"])
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(names)), 3.8))
    x = np.arange(len(names))
    for offset, (key, label, colour) in zip(
        (-0.2, 0.2),
        (("model", "trained model", "#4477aa"), ("pseudo_labels", "pseudo-labels", "#ccbb44")),
        strict=True,
    ):
        values = [100 * (scores[key]["IoU_per_class"].get(n) or 0.0) for n in names]
        ax.bar(x + offset, values, width=0.4, color=colour, label=label)
    ax.set_xticks(x, names, rotation=60, ha="right")
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.set_title("per-class IoU on the held-out drive (after class matching)")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def save_figure(fig: Any, path: Path) -> None:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    from vcups_core.jobs import atomic_write_bytes

    atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------------------------------
# The demo


def steps_of(source: Source) -> list[str]:
    names = ["record", "clusters", "pseudo-labels", "held-out-pseudo-labels", "train", "replay"]
    names += ["node", "score", "report"]
    if source == "bag":
        names = [n for n in names if n not in ("held-out-pseudo-labels", "score")]
    return names


def run_demo(opts: DemoOptions) -> int:
    """Run (or finish, or skip) every step of the demo into ``opts.out``; 0 when all passed."""
    if opts.steps < 1 or opts.train_drives < 1 or opts.node_frames < 1:
        raise ValueError("--steps, --train-drives and --node-frames must be >= 1")
    if opts.frame_limit < 0 or (opts.source == "synthetic" and opts.frame_limit < 2):
        raise ValueError(f"--frames {opts.frame_limit}: too few")
    out = Path(opts.out)
    t_start = time.perf_counter()
    with hold_folder(out, "vcups demo"), terminate_as_interrupt():
        try:
            code = _run(opts, out.resolve())
        except DemoError as exc:
            print(f"vcups demo: FAILED: {exc}", file=sys.stderr)
            return 1
    print(f"vcups demo: finished in {time.perf_counter() - t_start:.0f} s", flush=True)
    return code


def _run(opts: DemoOptions, out: Path) -> int:
    from vcups_core.config import config_to_dict, load_config
    from vcups_core.configs.model import ModelConfig
    from vcups_core.train.recipe import (
        cpu_training_config,
        moving_track_ids,
        pseudo_label_config,
        with_startup_epochs,
    )

    names = steps_of(opts.source)
    runner = StepRunner(out, len(names))
    drives_dir = out / "drives"
    pseudo_dir = out / "pseudo"
    clusters = pseudo_dir / "clusters.npz"
    train_store = pseudo_dir / "train_store"
    heldout_store = pseudo_dir / "heldout_store"
    train_dir = out / "train"
    replay_dir = out / "replay"
    node_json = out / "node.json"
    scores_json = out / "scores.json"
    files = {
        "report": out / "report.md",
        "report_json": out / "report.json",
        "training_curve": out / "training_curve.png",
        "classwise_iou": out / "classwise_iou.png",
    }
    # what a run with another source left: steps this source does not have
    for name, paths in (
        ("held-out-pseudo-labels", [heldout_store]),
        ("score", [scores_json, files["classwise_iou"]]),
    ):
        if name not in names:
            runner.marker_path(name).unlink(missing_ok=True)
            for path in paths:
                remove_path(path)
    print(
        f"vcups demo: {opts.source} source into {out} (steps are cached in {out / STEPS_DIR}; "
        "Ctrl-C at any time, the same command goes on)",
        flush=True,
    )

    # 1. record
    if opts.source == "synthetic":
        rec_inputs: dict[str, Any] = {
            "source": "synthetic",
            "drives": synthetic_drives(opts),
            "frames": opts.frame_limit,
            "size": list(opts.size),
        }
        title = f"{opts.train_drives} synthetic training drives and 1 held-out drive as rosbag2"
        record: Callable[[bool], StepResult] = lambda _r: record_synthetic(opts, drives_dir)  # noqa: E731
    elif opts.source == "bag":
        assert opts.bag is not None
        rec_inputs = {
            "source": "bag",
            "bag": bag_identity(opts.bag),
            "topic": opts.topic,
            "frames": opts.frame_limit,
            "height": opts.size[0],
        }
        title = f"frames of {opts.bag} ({opts.topic})"
        record = lambda _r: record_from_bag(opts, drives_dir)  # noqa: E731
    else:
        assert opts.davis is not None
        rec_inputs = {
            "source": "davis",
            "root": davis_identity(opts.davis),
            "frames": opts.frame_limit,
            "height": opts.size[0],
            "heldout": opts.heldout,
        }
        title = f"DAVIS-2016 sequences of {opts.davis} as rosbag2"
        record = lambda _r: record_davis(opts, drives_dir)  # noqa: E731
    rec = runner.execute(Step("record", title, rec_inputs, [], [drives_dir], record)).info
    size = (int(rec["size"][0]), int(rec["size"][1]))
    train_bags = [drives_dir / n for n in rec["train"]]
    heldout_bags = [drives_dir / n for n in rec["heldout"]]
    scored = opts.source != "bag"

    # 2. clusters
    from vcups_core.pseudo.semantic_train import train_semantic_clusters
    from vcups_core.pseudo.sources import SourceSpec

    pcfg = pseudo_label_config(size, clusters)
    pcfg_inputs = config_to_dict(pcfg)
    pcfg_inputs["semantics"]["weights"] = "<clusters step>"

    def fit_clusters(_resume: bool) -> StepResult:
        pseudo_dir.mkdir(parents=True, exist_ok=True)
        fitted = train_semantic_clusters(SourceSpec.bag(train_bags, CAMERA), clusters, pcfg)
        print(f"    {clusters}: {fitted.num_classes} classes", flush=True)
        return StepResult(file_sha256(clusters), {"classes": fitted.num_classes})

    runner.execute(
        Step(
            "clusters",
            "weight-free semantic clusters fitted on the training frames",
            {"config": pcfg_inputs, "frames_per_clip": 8},
            ["record"],
            [clusters],
            fit_clusters,
        )
    )

    # 3./4. pseudo-labels
    pinfo = runner.execute(
        Step(
            "pseudo-labels",
            "video pseudo-labels of the training drives (weight-free cues, paper's "
            "hyperparameters)",
            {"config": pcfg_inputs},
            ["record", "clusters"],
            [train_store],
            lambda _r: run_pseudo(train_bags, train_store, pcfg, opts.progress, "pseudo-labels"),
        )
    ).info
    if scored:
        runner.execute(
            Step(
                "held-out-pseudo-labels",
                "the same pseudo-labels of the held-out drive (only to score them)",
                {"config": pcfg_inputs},
                ["record", "clusters"],
                [heldout_store],
                lambda _r: run_pseudo(
                    heldout_bags, heldout_store, pcfg, opts.progress, "held-out pseudo-labels"
                ),
            )
        )

    # 5. train
    model_cfg = load_config(opts.model_config, ModelConfig)
    tcfg = with_startup_epochs(
        cpu_training_config(size, opts.steps, lr=opts.lr), opts.steps, int(pinfo["frames"])
    )
    tinfo = runner.execute(
        Step(
            "train",
            f"the {model_cfg.name} model, {opts.steps} steps on the pseudo-labels (Video DropLoss, video "
            "copy-paste)",
            {
                "training": config_to_dict(tcfg),
                "model": config_to_dict(model_cfg),
                "steps": opts.steps,
            },
            ["pseudo-labels"],
            [train_dir],
            lambda _r: train_model(
                train_store, train_dir, model_cfg, tcfg, opts.steps, opts.progress
            ),
        )
    ).info
    checkpoint = train_dir / "model_final.pt"

    # 6. replay
    replay_bag = heldout_bags[0] if heldout_bags else train_bags[0]
    fps = float(rec["drives"][replay_bag.name]["fps"])
    rinfo = runner.execute(
        Step(
            "replay",
            f"{replay_bag.name} through the streaming path (vcups replay) with the checkpoint",
            {"bag": replay_bag.name, "fps": fps, "grid": 4},
            ["record", "train"],
            [replay_dir],
            lambda _r: replay(checkpoint, replay_bag, fps, replay_dir, opts.progress),
        )
    ).info

    # 7. node
    def node_step(_resume: bool) -> StepResult:
        result = node_check(checkpoint, replay_bag, opts.node_frames, opts.progress)
        if "skipped" in result:
            print(f"    perception_node: SKIPPED, {result['skipped']}", flush=True)
        else:
            print(
                f"    perception_node (rclpy, {result['namespace']}): {result['outputs']}/"
                f"{result['frames']} PanopticTrackArray answers with the input stamps, median "
                f"latency {result['latency_ms']:.0f} ms",
                flush=True,
            )
        atomic_write_json(node_json, result)
        return StepResult(sha256_json(result), result)

    ninfo = runner.execute(
        Step(
            "node",
            f"perception_node with real rclpy and the checkpoint on {opts.node_frames} frames",
            {"bag": replay_bag.name, "frames": opts.node_frames},
            ["record", "train"],
            [node_json],
            node_step,
        )
    ).info

    # 8. score
    dataset = "davis" if opts.source == "davis" else "synthetic-world"
    if scored:
        if opts.source == "synthetic":
            seeds = synthetic_drives(opts)
            moving = moving_track_ids(
                {b.name: synthetic_world(opts, seeds[b.name]) for b in heldout_bags}
            )
        else:  # DAVIS: the annotated object is the moving one
            moving = {b.name: [1] for b in heldout_bags}

        def score_step(_resume: bool) -> StepResult:
            result = score(checkpoint, heldout_bags, heldout_store, moving, dataset)
            atomic_write_json(scores_json, result)
            m, p = result["model"], result["pseudo_labels"]
            print(
                f"    STQ model {pct(m['STQ'])} vs pseudo-labels {pct(p['STQ'])}; AQ "
                f"{pct(m['AQ'])} vs {pct(p['AQ'])} (scores.json)",
                flush=True,
            )
            return StepResult(sha256_json(result), result)

        scores: dict[str, Any] | None = runner.execute(
            Step(
                "score",
                "model and pseudo-labels on the held-out drive (class matching, STQ/AQ/SQ, VPQ, "
                "moving vs static)",
                {"dataset": dataset, "moving": moving, "keys": list(SCORE_KEYS)},
                ["record", "train", "held-out-pseudo-labels"],
                [scores_json],
                score_step,
            )
        ).info
    else:
        scores = None

    # 9. report
    def report_step(_resume: bool) -> StepResult:
        import torch

        metrics = read_metrics(train_dir / "metrics.jsonl")
        plot_training_curve(metrics, files["training_curve"], model_cfg.name)
        report: dict[str, Any] = {}
        if scores is not None:
            keep = ("model", "pseudo_labels")
            report.update({k: {s: scores[k][s] for s in SCORE_KEYS} for k in keep})
            plot_classwise(scores, files["classwise_iou"])
            note = (
                f"on the held-out drive {', '.join(b.name for b in heldout_bags)}"
                if opts.source == "synthetic"
                else f"on the held-out DAVIS sequence {heldout_bags[0].name}: only the one "
                "annotated object is scored (every other pixel is void in DAVIS, so stuff, "
                "SQ of the background and static objects are not measured)"
            )
        else:
            report["model"] = {"tracks": rinfo["tracks"], "ms_per_frame": rinfo["ms_per_frame"]}
            report["pseudo_labels"] = {"frames": pinfo["frames"], "clips": pinfo["clips"]}
            note = (
                "the bag has no ground truth, so neither the model nor its pseudo-labels are "
                "scored; the replay runs on the training frames themselves."
            )
            files["classwise_iou"].unlink(missing_ok=True)
        step_times = {n: runner.done[n]["seconds"] for n in names if n in runner.done}
        report.update(
            {
                "scored": scores is not None,
                "scoring_note": note,
                "dataset": dataset,
                "setup": {
                    "source": opts.source,
                    "input": str(opts.bag or opts.davis or "synthetic world"),
                    "train_drives": rec["train"],
                    "heldout_drives": rec["heldout"],
                    "frames": {n: rec["drives"][n]["frames"] for n in rec["drives"]},
                    "size": list(size),
                    "steps": opts.steps,
                    "learning_rate": opts.lr,
                    "model": model_cfg.name,
                    "model_config": str(opts.model_config),
                    "pseudo_label_frames": pinfo["frames"],
                    "cue_backends": pinfo["cue_backends"],
                    "device": "cpu",
                    "torch_threads": torch.get_num_threads(),
                    "vcups": __version__,
                },
                "timings": {
                    "steps": step_times,
                    "seconds_per_train_step": tinfo["seconds_per_step"],
                },
                "training": {"first_loss": tinfo["first_loss"], "final_loss": tinfo["final_loss"]},
                "replay": rinfo,
                "node": ninfo,
                "caveat_values": {
                    "steps": opts.steps,
                    "threads": torch.get_num_threads(),
                    "frames": pinfo["frames"],
                    "model": model_cfg.name,
                    "depth": model_cfg.backbone.depth,
                    "fpn": model_cfg.backbone.fpn_channels,
                },
                "files": {
                    "report": str(files["report"]),
                    "model": str(checkpoint),
                    "training_curve": str(files["training_curve"]),
                    **(
                        {"classwise_iou": str(files["classwise_iou"])} if scores is not None else {}
                    ),
                    "overlay_frames": str(replay_dir / "overlay_frames.png"),
                    "overlay_video": str(replay_dir / "overlay.mp4"),
                    "output_bag": str(replay_dir / "panoptic_bag"),
                    "pseudo_labels": str(train_store),
                    "tensorboard": str(train_dir / "tensorboard"),
                    "drives": str(drives_dir),
                },
            }
        )
        report = finite(report)
        atomic_write_text(files["report"], report_markdown(report))
        atomic_write_json(files["report_json"], report)
        return StepResult(sha256_json(report), {})

    report_outputs = [files["report"], files["report_json"], files["training_curve"]]
    if scored:
        report_outputs.append(files["classwise_iou"])
    runner.execute(
        Step(
            "report",
            "report.md, report.json and plots",
            {"version": 1},
            [n for n in names if n != "report"],
            report_outputs,
            report_step,
        )
    )
    print_summary(json.loads(files["report_json"].read_text()), runner)
    return 0


def print_summary(report: dict[str, Any], runner: StepRunner) -> None:
    print("")
    if report["scored"]:
        print(f"Scores (%, {report['scoring_note']}):")
        print(f"  {'':22s}" + "".join(f"{k:>11s}" for k in SCORE_KEYS))
        for name, label in (("model", "trained model"), ("pseudo_labels", "its pseudo-labels")):
            print(f"  {label:22s}" + "".join(f"{pct(report[name][k]):>11s}" for k in SCORE_KEYS))
    else:
        print(f"No scores: {report['scoring_note']}.")
    node = report["node"]
    if "skipped" in node:
        print(f"perception_node: SKIPPED ({node['skipped']})")
    else:
        print(
            f"perception_node with rclpy: {node['outputs']}/{node['frames']} frames answered "
            "with the input stamps"
        )
    print(
        f"training: {report['setup']['steps']} steps, "
        f"{report['timings']['seconds_per_train_step']:.2f} s per step"
    )
    print("Where everything is:")
    for what, path in report["files"].items():
        print(f"  {what:15s} {path}")
    if runner.cached and not runner.ran:
        print("(every step was cached; remove the folder or change an option to redo them)")


def options_from_args(args: argparse.Namespace) -> DemoOptions:
    """The ``vcups demo`` command line as :class:`DemoOptions`.

    Raises:
        ValueError: inconsistent options (one line, the CLI's exit code 2).
    """
    if args.bag and args.davis:
        raise ValueError("--bag and --davis exclude each other")
    if bool(args.bag) != bool(args.topic):
        raise ValueError("--bag needs --topic (the camera image topic), and --topic needs --bag")
    source: Source = "bag" if args.bag else "davis" if args.davis else "synthetic"
    h, sep, w = str(args.size).partition("x")
    if not sep or not h.isdigit() or not w.isdigit() or int(h) < 32 or int(w) < 32:
        raise ValueError(f"--size {args.size!r}: expected HEIGHTxWIDTH, e.g. 128x256, >= 32")
    return DemoOptions(
        out=Path(args.out),
        source=source,
        bag=Path(args.bag) if args.bag else None,
        topic=args.topic,
        davis=Path(args.davis) if args.davis else None,
        frames=args.frames,
        train_drives=args.train_drives,
        size=(int(h), int(w)),
        steps=args.steps,
        lr=args.lr,
        node_frames=args.node_frames,
        heldout=args.heldout,
        model_config=Path(args.model_config),
        progress=not args.quiet,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``vcups demo`` options."""
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    parser.add_argument("--bag", help="learn from your own rosbag2 (folder or .mcap) instead")
    parser.add_argument("--topic", help="camera image topic of --bag (raw or compressed)")
    parser.add_argument(
        "--davis", help="learn from DAVIS-2016 sequences in this folder instead (flat or official)"
    )
    parser.add_argument(
        "--frames",
        type=int,
        help="frames per synthetic drive (default 30), taken from the start of --bag (default "
        "60) or of each --davis sequence (default all); 0 = all",
    )
    parser.add_argument(
        "--train-drives", type=int, default=4, help="synthetic training drives (default 4)"
    )
    parser.add_argument(
        "--size",
        default="128x256",
        help="processing size HEIGHTxWIDTH (default 128x256; "
        "--bag/--davis keep their aspect ratio at this height)",
    )
    parser.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    parser.add_argument("--lr", type=float, default=2e-4, help="learning rate (default 2e-4)")
    parser.add_argument(
        "--node-frames", type=int, default=5, help="frames sent through perception_node (5)"
    )
    parser.add_argument("--heldout", help="--davis: the held-out sequence (default: shortest)")
    parser.add_argument(
        "--model-config",
        default=str(REPO / "config" / "model" / "tiny.yaml"),
        help="model config YAML (default: config/model/tiny.yaml, the CPU-sized model)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run_demo_cli(args: argparse.Namespace) -> int:
    return run_demo(options_from_args(args))
