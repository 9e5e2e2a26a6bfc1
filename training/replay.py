"""``vcups replay``: run the streaming path on a recorded bag, frame by frame, without ROS running.

The same :class:`~vcups_core.streaming.segmenter.StreamingSegmenter` as the node processes every
frame of the camera topic in order (deterministic, unlike ``ros2 bag play``); results are written
as ``vcups_ros/PanopticTrackArray`` (plus ``PanopticInfo``) into a rosbag2 (MCAP) that ``ros2 bag
play`` or ``mcap_ros2`` can read, with each frame's input header. Optionally: an overlay video,
and evaluation (STQ/VPQ, written into a JSON report) against either ground-truth topics of the bag
or a clip of a dataset folder (``--gt-dataset NAME:ROOT``, any reader of
:mod:`vcups_core.data.registry`). Dataset frames are paired with bag frames by stamp when every
annotated frame's stamp is in the bag, else by position (the clip and the bag must then have the
same number of frames). With a dataset, pseudo-classes are matched to classes over the whole set
(its split), as the evaluation protocol does: the other clips are streamed from the dataset's
own frames through the same predictor and settings, and one matching of all clips scores the
bag's clip.

Configuration, the node's: ``--config`` is a node parameter file (``config/perception.yaml``);
its ``model`` section (a :class:`~vcups_core.configs.predictor.PredictorConfig`: backend,
device, half, model config, engine cache) opens the network through
:func:`~vcups_core.model.predictors.load_predictor`, with ``--checkpoint``, ``--backend`` and
``--device`` overriding it, and its ``streaming`` section (a
:class:`~vcups_core.configs.streaming.StreamingConfig`) sets up the segmenter. Frames whose stamp
is not after the previous one are skipped and the tracks reset, as in the node (the segmenter's
one policy); the report counts them.

Every output (bag, video, report) is written under a temporary name next to its target and renamed
into place at the end (:class:`~vcups_core.jobs.StagedOutput`): after SIGKILL the targets hold the
previous result or nothing, and the same command run again starts clean. Ctrl-C or SIGTERM stops
after the current frame; the outputs are then published valid up to that frame and marked
interrupted (``vcups.status: interrupted`` in the bag's ``metadata.yaml``, ``"interrupted": true``
in the report), exit code 130. An existing ``--out`` bag is replaced only if unfinished (marked
interrupted, or left by a killed writer) or with ``--overwrite``; video and report are replaced.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from vcups_core import rosmsg
from vcups_core.checks import check_frame_rate
from vcups_core.config import config_from_dict, config_to_dict, load_config
from vcups_core.configs.node import NodeConfig
from vcups_core.configs.predictor import PredictorConfig
from vcups_core.configs.streaming import StreamingConfig
from vcups_core.data.clip import Clip
from vcups_core.data.oracle import OraclePredictor
from vcups_core.data.rosbag import BagFrameReader, BagWriter, is_unfinished_bag
from vcups_core.jobs import (
    StagedOutput,
    check_output_file,
    signals_deferred,
    terminate_as_interrupt,
)
from vcups_core.metrics.evaluate import Frame, FrameSource
from vcups_core.model.predictors import Predictor, load_predictor
from vcups_core.runtime import limit_blas_threads
from vcups_core.streaming.segmenter import StampOrderError, StreamingSegmenter
from vcups_core.types import CategoryTable, PanopticFrame
from vcups_core.viz.overlay import render_overlay


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``vcups replay`` options to ``parser`` (the CLI's and the demo's)."""
    parser.add_argument("bag", help="rosbag2 folder or .mcap file")
    parser.add_argument("--topic", required=True, help="camera image topic (raw or compressed)")
    parser.add_argument(
        "--checkpoint",
        help="model checkpoint (.pt), .onnx or TensorRT .engine (overrides model.checkpoint of "
        "--config)",
    )
    parser.add_argument(
        "--backend",
        default=None,
        choices=["torch", "onnxruntime", "tensorrt"],
        help="overrides model.backend of --config (default torch)",
    )
    parser.add_argument(
        "--device", default=None, help="overrides model.device of --config (default cpu)"
    )
    parser.add_argument(
        "--oracle",
        action="store_true",
        help="use the bag's ground truth as the predictor (tests the rest of the path)",
    )
    parser.add_argument(
        "--config",
        help="node parameter file (config/perception.yaml): its model section (backend, device, "
        "half, model config, engine cache) and streaming section (score threshold, stuff area "
        "limit, max gap, tracker, smoothing); default: the built-in defaults",
    )
    parser.add_argument("--out", help="output bag (MCAP) with /panoptic/tracks and /panoptic/info")
    parser.add_argument(
        "--gt-topics", help="SEMANTIC,INSTANCE ground-truth topics, e.g. /gt/semantic,/gt/instance"
    )
    parser.add_argument(
        "--gt-dataset",
        metavar="NAME:ROOT",
        help="ground truth from a dataset folder instead, e.g. kitti-step:/data/kitti_step "
        "(paired by stamp, else by frame position); pseudo-classes are matched over every clip "
        "of the split, the other clips streamed from the dataset's frames",
    )
    parser.add_argument("--gt-split", help="split of --gt-dataset (default: the reader's)")
    parser.add_argument("--gt-clip", help="clip of --gt-dataset (needed when it has several)")
    parser.add_argument(
        "--report", help="JSON report (speed, tracks; metrics with --gt-topics or --gt-dataset)"
    )
    parser.add_argument("--video", help="overlay video (.mp4)")
    parser.add_argument("--fps", type=float, default=10.0, help="video frame rate")
    parser.add_argument(
        "--stuff-area-limit",
        type=int,
        default=None,
        help="stuff segments with fewer pixels become void (overrides "
        "streaming.stuff_area_limit of --config; default -1: the model's "
        "inference.stuff_area_limit)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished bag at --out")


@dataclasses.dataclass(frozen=True)
class ReplayOptions:
    """Everything ``vcups replay`` takes, typed: what :func:`run_replay` runs.

    The CLI builds it from its arguments (:meth:`from_args`); the demo builds it directly. Paths
    are strings as the user gave them; ``None`` means "not given" (the ``--config`` file's value
    or the built-in default applies).
    """

    bag: str
    topic: str
    checkpoint: str | None = None
    backend: str | None = None
    device: str | None = None
    oracle: bool = False
    config: str | None = None
    out: str | None = None
    gt_topics: str | None = None
    gt_dataset: str | None = None
    gt_split: str | None = None
    gt_clip: str | None = None
    report: str | None = None
    video: str | None = None
    fps: float = 10.0
    stuff_area_limit: int | None = None
    quiet: bool = False
    overwrite: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ReplayOptions:
        """The options of parsed ``vcups replay`` arguments (:func:`add_arguments`)."""
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


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
    """Camera frames with the ground truth of the same header stamp (frames without are skipped).

    Raises:
        ValueError: a topic is missing, or does not hold label maps of its kind (the semantic
            one ``mono8`` class ids, the instance one single-channel integer ids): the message
            names ``--gt-topics`` and says when the two look swapped.
    """
    semantic = _label_maps(bag, semantic_topic, "semantic", (np.uint8,), instance_topic)
    instance = _label_maps(bag, instance_topic, "instance", (np.uint8, np.uint16), semantic_topic)
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


def _label_maps(
    bag: Path, topic: str, kind: str, dtypes: tuple[type[np.generic], ...], other: str
) -> dict[int, npt.NDArray[Any]]:
    """``{stamp: label map}`` of one ground-truth topic, each map checked to be of ``kind``."""
    maps = {}
    for m in BagFrameReader(bag, topic).messages():
        array = rosmsg.image_msg_to_array(m.msg)
        if array.ndim != 2 or array.dtype.type not in dtypes:
            swapped = kind == "semantic" and array.ndim == 2 and array.dtype == np.uint16
            raise ValueError(
                f"--gt-topics: {topic} holds {m.msg.encoding} images, not {kind} label maps "
                f"({'mono8 class ids' if kind == 'semantic' else 'single-channel integer ids'})"
                + (f"; swapped with {other}? give SEMANTIC,INSTANCE" if swapped else "")
            )
        maps[m.stamp_ns] = array
    return maps


def read_dataset_clip(
    spec: str, split: str | None, clip_name: str | None
) -> tuple[str, Clip, list[Clip]]:
    """The clip ``--gt-dataset NAME:ROOT`` (``--gt-split``, ``--gt-clip``) names.

    Returns:
        ``(dataset name, the clip, every clip of the split)`` (the whole set, for the matching).

    Raises:
        ValueError: a malformed spec, an unknown dataset or clip, or several clips and no
            ``--gt-clip`` (the message lists the clips).
    """
    from vcups_core.data.registry import open_dataset

    name, sep, root = spec.partition(":")
    if not sep or not name or not root:
        raise ValueError(
            f"--gt-dataset: expected NAME:ROOT (e.g. kitti-step:/data/kitti), got {spec!r}"
        )
    every = list(open_dataset(name, Path(root), split))
    clips = {c.name: c for c in every}
    if clip_name is not None:
        if clip_name not in clips:
            raise ValueError(
                f"--gt-clip {clip_name!r} is not in {root} ({name}); "
                f"clips: {', '.join(sorted(clips))}"
            )
        return name, clips[clip_name], every
    if len(clips) != 1:
        raise ValueError(
            f"{root} ({name}) has {len(clips)} clips; choose one with --gt-clip: "
            f"{', '.join(sorted(clips)) or '(none)'}"
        )
    return name, next(iter(clips.values())), every


def dataset_ground_truth(
    clip: Clip, bag_stamps: list[int], *, with_images: bool
) -> list[GroundTruthFrame]:
    """The clip's annotated frames, stamped with the bag frame each one is paired with.

    Pairing: by stamp when every annotated frame's stamp occurs in ``bag_stamps`` (the camera
    topic's stamps in order), else by position (clip frame ``k`` <-> ``k``-th bag frame).
    ``with_images``: decode the frames' images too (only the oracle predictor needs them; without,
    ``rgb`` is an empty ``uint8[0, 0, 3]``).

    Raises:
        ValueError: if neither pairing works (the message gives both frame counts).
    """
    annotated = clip.annotated
    if not annotated:
        raise ValueError(f"clip {clip.name!r} ({clip.dataset}) has no annotated frame")
    in_bag = set(bag_stamps)
    by_stamp = all(f.stamp_ns in in_bag for f in annotated)
    if not by_stamp and len(clip.frames) != len(bag_stamps):
        raise ValueError(
            f"cannot pair clip {clip.name!r} ({clip.dataset}, {len(clip.frames)} frames) with the "
            f"bag ({len(bag_stamps)} frames): the stamps differ and so do the frame counts"
        )
    out = []
    for f in annotated:
        label = f.label()
        assert label is not None  # annotated
        out.append(
            GroundTruthFrame(
                f.image().image if with_images else np.zeros((0, 0, 3), np.uint8),
                label.semantic,
                label.instance,
                f.index,
                f.stamp_ns if by_stamp else bag_stamps[f.index],
            )
        )
    return out


def replay_configs(args: ReplayOptions) -> tuple[PredictorConfig, StreamingConfig]:
    """The network and the streaming settings of a replay: the ``model`` and ``streaming``
    sections of ``--config`` (a node parameter file; defaults without one), with
    ``--checkpoint``, ``--backend``, ``--device`` and ``--stuff-area-limit`` over them, every
    value validated by the schemas (as the node validates its parameters).

    Raises:
        ConfigError: an invalid file or option value (named).
    """
    node = (
        load_config(Path(args.config), NodeConfig)
        if args.config
        else config_from_dict({}, NodeConfig)
    )
    flags = {"checkpoint": args.checkpoint, "backend": args.backend, "device": args.device}
    model = _override(node.model, "--checkpoint/--backend/--device", flags)
    streaming = _override(
        node.streaming, "--stuff-area-limit", {"stuff_area_limit": args.stuff_area_limit}
    )
    return model, streaming


def _override(cfg: Any, source: str, changes: dict[str, Any]) -> Any:
    """``cfg`` with the given (non-None) values, validated by its schema."""
    given = {k: v for k, v in changes.items() if v is not None}
    if not given:
        return cfg
    return config_from_dict({**config_to_dict(cfg), **given}, type(cfg), source=source)


def make_predictor(
    args: ReplayOptions, model: PredictorConfig, gt: list[GroundTruthFrame] | None
) -> Predictor:
    """The oracle (``--oracle``: the ground truth's frames) or the network ``model`` names."""
    if args.oracle:
        if gt is None:
            raise ValueError("--oracle needs ground truth (--gt-topics or --gt-dataset)")
        return OraclePredictor(gt)  # type: ignore[arg-type]
    if not model.checkpoint:
        raise ValueError(
            "give --checkpoint (a model, .onnx or .engine), model.checkpoint in --config, or "
            "--oracle (ground truth)"
        )
    return load_predictor(model, names=("--checkpoint", "--device"))


def run_replay(args: ReplayOptions) -> int:
    """Replay; returns the exit code (130 when interrupted by Ctrl-C or SIGTERM)."""
    with terminate_as_interrupt(), contextlib.ExitStack() as stack:
        return _replay(args, stack)


def _staged(
    stack: contextlib.ExitStack,
    flag: str,
    target: str | None,
    *,
    bag: bool = False,
    overwrite: bool = False,
) -> StagedOutput | None:
    """Open a staged output for ``target`` (None: not requested), discarded unless committed.

    A bag replaces an unfinished bag (anything with ``overwrite``); a file (video, report)
    replaces a file, never a folder.
    """
    if not target:
        return None
    if bag:
        staged = StagedOutput(Path(target), overwrite=overwrite, replaceable=is_unfinished_bag)
    else:
        check_output_file(Path(target), flag)
        staged = StagedOutput(Path(target), replaceable=Path.is_file)
    staged.open()
    stack.callback(staged.discard)
    return staged


def _replay(args: ReplayOptions, stack: contextlib.ExitStack) -> int:
    from tqdm import tqdm

    limit_blas_threads()  # as the node does (see vcups_core.runtime)

    bag = Path(args.bag)
    check_frame_rate(args.fps)
    model_cfg, streaming = replay_configs(args)
    gt_topics = args.gt_topics.split(",") if args.gt_topics else None
    if gt_topics is not None and len(gt_topics) != 2:
        raise ValueError(f"--gt-topics: expected SEMANTIC,INSTANCE topics, got {args.gt_topics!r}")
    if gt_topics and args.gt_dataset:
        raise ValueError("give one ground truth: --gt-topics or --gt-dataset, not both")
    # the outputs are checked (and their leftovers from a killed run removed) before any work
    overwrite = args.overwrite
    bag_out = _staged(stack, "--out", args.out, bag=True, overwrite=overwrite)
    video_out = _staged(stack, "--video", args.video)
    report_out = _staged(stack, "--report", args.report)
    descriptor_name = "cityscapes-vps"  # the bag's ground-truth topics carry Cityscapes train ids
    gt = None
    other_clips: list[Clip] = []
    if gt_topics:
        gt = read_ground_truth(bag, args.topic, gt_topics[0], gt_topics[1])
    elif args.gt_dataset:
        descriptor_name, clip, every = read_dataset_clip(
            args.gt_dataset, args.gt_split, args.gt_clip
        )
        other_clips = [c for c in every if c.name != clip.name and c.annotated]
        gt = dataset_ground_truth(
            clip,
            [m.stamp_ns for m in BagFrameReader(bag, args.topic).messages()],
            with_images=args.oracle,
        )
    predictor = make_predictor(args, model_cfg, gt)
    segmenter = StreamingSegmenter.from_config(predictor, streaming)
    reader = BagFrameReader(bag, args.topic)
    writer = BagWriter(bag_out.path, "mcap") if bag_out else None
    video: Any = None
    results: list[PanopticFrame] = []
    latencies: list[float] = []
    interrupted = False
    skipped = 0
    types = rosmsg.MessageTypes.rosbags()
    try:
        if writer is not None:
            writer.__enter__()
            writer.write(
                "/panoptic/info", rosmsg.segmenter_info_msg(segmenter, types, version=1), 0
            )
        for frame in tqdm(
            reader, total=reader.count or None, desc="replay", unit="frame", disable=args.quiet
        ):
            t0 = time.perf_counter()
            try:
                result = segmenter.step(frame)
            except StampOrderError:  # the node's policy: skipped, tracks reset
                skipped += 1
                continue
            latencies.append((time.perf_counter() - t0) * 1e3)
            if writer is not None:
                meta = rosmsg.TrackArrayMeta(info_version=1, inference_ms=latencies[-1])
                writer.write(
                    "/panoptic/tracks",
                    rosmsg.panoptic_frame_to_msg(result, types, meta),
                    frame.stamp_ns,
                )
            if video_out is not None:
                rgb = render_overlay(frame.image, result, segmenter.categories)
                if video is None:
                    video = open_video(video_out.path, args.fps, frame.width, frame.height)
                video.write(rgb[:, :, ::-1])
            if report_out is not None:
                results.append(result)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        with signals_deferred():  # a second Ctrl-C must not cut the bag's or video's end
            if writer is not None:
                if interrupted:
                    writer.status = "interrupted"
                writer.__exit__(None, None, None)
            if video is not None:
                video.release()
    done = len(latencies)
    if report_out is not None:
        report: dict[str, Any] = {
            "bag": str(bag),
            "topic": args.topic,
            "frames": done,
            "interrupted": interrupted,
            "input_incomplete": reader.incomplete,
            "skipped_stamp_backwards": skipped,
            "gaps": [dataclasses.asdict(g) for g in reader.gaps()],
            "ms_per_frame": {
                "mean": float(np.mean(latencies)) if latencies else 0.0,
                "max": float(np.max(latencies)) if latencies else 0.0,
            },
            "tracks": len({s.track_id for r in results for s in r.segments if s.is_thing}),
        }
        if gt is not None:
            report["ground_truth"] = args.gt_dataset or ",".join(gt_topics or [])
            rest = _streamed_clips(
                other_clips, predictor, streaming, descriptor_name, args.oracle, args.quiet
            )
            report["metrics"] = evaluate_against(
                gt,
                results,
                segmenter.categories,
                descriptor_name,
                other_clips=rest if other_clips else None,
            )
            report["matching_clips"] = 1 + len(other_clips)
        report_out.path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    with signals_deferred():  # all outputs or none
        for staged in (bag_out, video_out, report_out):
            if staged is not None:
                staged.commit()
    print(
        f"replayed {done} frames of {bag} {args.topic}"
        + (f" -> {args.out}" if args.out else "")
        + (" (interrupted; output valid up to there, marked interrupted)" if interrupted else "")
        + (f"; {skipped} frames skipped (stamp not after the previous one)" if skipped else "")
    )
    if report_out is not None:
        print(f"report: {args.report}")
    return 130 if interrupted else 0


def open_video(path: Path, fps: float, width: int, height: int) -> Any:
    """An OpenCV ``mp4v`` writer for ``path``.

    Raises:
        ValueError: OpenCV cannot open a writer there (the message names the path).
    """
    video = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not video.isOpened():
        raise ValueError(
            f"--video {path.name}: OpenCV cannot write this video (mp4v, {width}x{height} at "
            f"{fps} fps); use an .mp4 name and a frame rate > 0"
        )
    return video


def evaluate_against(
    gt: list[GroundTruthFrame],
    results: list[PanopticFrame],
    categories: CategoryTable,
    dataset: str = "cityscapes-vps",
    *,
    other_clips: FrameSource | None = None,
) -> dict[str, Any]:
    """STQ/VPQ of the replayed frames against ground truth in ``dataset``'s class ids.

    The predicted categories (``categories``, the predictor's) are matched to the dataset's
    classes by the evaluation protocol's Hungarian + majority rule over the whole set: the
    replayed frames and ``other_clips`` (the other clips of the dataset, as
    :data:`~vcups_core.metrics.evaluate.Frame` tuples in the same category ids; None: the
    replayed frames alone, e.g. a bag's own ground-truth topics). One matching, then the scores
    of the replayed frames (:func:`vcups_core.metrics.evaluate.evaluate`). Frames are paired by
    stamp; a ground-truth frame whose image size differs from the replayed one is an error.
    """
    from vcups_core.data.datasets import get_descriptor
    from vcups_core.metrics.evaluate import evaluate, match_pseudo_classes

    by_stamp = {r.stamp_ns: r for r in results}
    pairs = [(g, by_stamp[g.stamp_ns]) for g in gt if g.stamp_ns in by_stamp]
    for g, r in pairs:
        if g.semantic.shape != r.segment_ids.shape:
            raise ValueError(
                f"ground-truth frame {g.index} is {g.semantic.shape[1]}x{g.semantic.shape[0]}, "
                f"the replayed image {r.width}x{r.height}"
            )

    def replayed() -> Iterator[Frame]:
        for g, r in pairs:
            yield "bag", g.semantic, g.instance, r.semantic, r.track_ids

    def whole_set() -> Iterator[Frame]:
        yield from replayed()
        if other_clips is not None:
            yield from other_clips()

    descriptor = get_descriptor(dataset)
    thing_flags = list(categories.is_thing)
    match = match_pseudo_classes(whole_set, descriptor, len(categories), thing_flags)
    report = evaluate(
        replayed,
        descriptor,
        num_pred_classes=len(categories),
        pred_is_thing=thing_flags,
        class_match=match,
    )
    report.pop("classwise_table")
    return report


def _streamed_clips(
    clips: list[Clip],
    predictor: Predictor,
    streaming: StreamingConfig,
    dataset: str,
    oracle: bool,
    quiet: bool,
) -> FrameSource:
    """The annotated frames of ``clips`` streamed from the dataset's own frames as
    :data:`~vcups_core.metrics.evaluate.Frame` tuples (for the whole set's class matching).

    Each clip gets a fresh segmenter with ``streaming`` and ``predictor``, exactly as
    ``vcups evaluate`` streams a clip (:mod:`vcups_core.streaming.dataset_run`); with the
    oracle, each clip's own ground truth predicts (its annotated frames only).
    """
    import tempfile

    from tqdm import tqdm

    from vcups_core.data.datasets import get_descriptor
    from vcups_core.streaming.dataset_run import (
        ClipResult,
        frames_to_stream,
        oracle_segmenter,
        stream_clip,
    )

    descriptor = get_descriptor(dataset)

    def source() -> Iterator[Frame]:
        with tempfile.TemporaryDirectory(prefix="vcups-replay-") as tmp:
            for clip in tqdm(clips, desc="matching clips", unit="clip", disable=quiet):
                if oracle:
                    segmenter = oracle_segmenter(clip, descriptor, streaming)
                else:
                    segmenter = StreamingSegmenter.from_config(predictor, streaming)
                frames = frames_to_stream(clip, annotated_only=oracle)
                path = Path(tmp) / "clip.npz"
                path.write_bytes(stream_clip(clip, segmenter, frames))
                with ClipResult(path) as result:
                    annotated = {f.index: f for f in clip.annotated}
                    for k, index in enumerate(result.frames):
                        label = annotated[index].label()
                        assert label is not None  # annotated
                        pred_sem, pred_inst = result.maps(k)
                        yield clip.name, label.semantic, label.instance, pred_sem, pred_inst

    return source
