"""A trained model next to its pseudo-labels on held-out drives (what ``make demo`` and
``benchmarks/train_synthetic.py`` report).

* :func:`model_frames`: a checkpoint through the **node's streaming path** (predictor, causal
  tracker, semantic smoothing, panoptic composition: :class:`StreamingSegmenter` with the node's
  default parameters) on a bag's camera topic.
* :func:`pseudo_label_frames`: a pseudo-label store's composed frames
  (:func:`~vcups_core.pseudo.compose.compose_frame` with the store's thing/stuff split).
* :func:`score_frames`: either against the bag's ground truth with the evaluation protocol (one
  class matching over all held-out drives, STQ/AQ/SQ, VPQ, and the moving/static split of
  :mod:`vcups_core.metrics.motion_split`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vcups_core.configs.node import NodeConfig
from vcups_core.data.datasets import get_descriptor
from vcups_core.data.rosbag import BagFrameReader
from vcups_core.metrics.evaluate import Frame
from vcups_core.metrics.motion_split import evaluate_by_motion
from vcups_core.rosmsg import image_msg_to_array

U8 = npt.NDArray[np.uint8]
I32 = npt.NDArray[np.int32]


@dataclasses.dataclass(frozen=True)
class LabelledFrames:
    """One drive's frames as ``(stamp_ns, semantic, instance)`` label maps.

    Attributes:
        name: the sequence name (a bag's or clip's).
        stamps: ``int`` stamp per frame (ns).
        semantic: per frame, ``uint8[H, W]`` class or pseudo-class, 255 = void.
        instance: per frame, ``int32[H, W]`` track id, 0 = none.
    """

    name: str
    stamps: tuple[int, ...]
    semantic: tuple[U8, ...]
    instance: tuple[I32, ...]

    def __len__(self) -> int:
        return len(self.stamps)


@dataclasses.dataclass(frozen=True)
class Predictions:
    """Predicted drives plus how to read their classes.

    Attributes:
        drives: the predicted frames per drive.
        num_classes: number of predicted (pseudo-)classes.
        is_thing: per predicted class, whether it is a thing.
    """

    drives: tuple[LabelledFrames, ...]
    num_classes: int
    is_thing: tuple[bool, ...]


def bag_ground_truth(
    bag: Path, semantic_topic: str = "/gt/semantic", instance_topic: str = "/gt/instance"
) -> LabelledFrames:
    """A synthetic bag's ground truth (Cityscapes train ids, track ids), by stamp.

    Raises:
        ValueError: the bag has no such topics or they are empty (names the bag and topic).
    """
    sem = {
        m.stamp_ns: image_msg_to_array(m.msg)
        for m in BagFrameReader(bag, semantic_topic).messages()
    }
    inst = {
        m.stamp_ns: image_msg_to_array(m.msg)
        for m in BagFrameReader(bag, instance_topic).messages()
    }
    stamps = tuple(sorted(set(sem) & set(inst)))
    if not stamps:
        raise ValueError(f"{bag}: no frame has both {semantic_topic} and {instance_topic}")
    return LabelledFrames(
        name=Path(bag).name,
        stamps=stamps,
        semantic=tuple(sem[s].astype(np.uint8) for s in stamps),
        instance=tuple(inst[s].astype(np.int32) for s in stamps),
    )


def model_frames(
    checkpoint: Path,
    bags: Sequence[Path],
    topic: str = "/camera/image_raw",
    *,
    node: NodeConfig | None = None,
    device: str = "cpu",
    predictor: Any = None,
) -> Predictions:
    """Run ``checkpoint`` through the streaming path on every bag (a fresh tracker per bag).

    ``node``: the node's settings (default: its defaults): the network is opened from its
    ``model`` section with ``checkpoint`` and ``device`` over it, the segmenter set up by its
    ``streaming`` section, as the node does. ``predictor``: an already opened predictor to use
    instead (``checkpoint`` and ``device`` are then not read; e.g. to compare streaming settings
    on one network's outputs).

    Returns:
        :class:`Predictions` in the model's category ids (``semantic``) and track ids.
    """
    from vcups_core.config import replace
    from vcups_core.model.predictors import load_predictor
    from vcups_core.streaming.segmenter import StreamingSegmenter

    node = node if node is not None else NodeConfig()
    if predictor is None:
        predictor = load_predictor(replace(node.model, checkpoint=str(checkpoint), device=device))
    drives = []
    for bag in bags:
        segmenter = StreamingSegmenter.from_config(predictor, node.streaming)
        stamps, sems, insts = [], [], []
        for frame in BagFrameReader(Path(bag), topic):
            result = segmenter.step(frame)
            stamps.append(frame.stamp_ns)
            sems.append(result.semantic.astype(np.uint8))
            insts.append(result.track_ids.astype(np.int32))
        drives.append(LabelledFrames(Path(bag).name, tuple(stamps), tuple(sems), tuple(insts)))
    cats = predictor.categories
    return Predictions(tuple(drives), len(cats), tuple(bool(t) for t in cats.is_thing))


def pseudo_label_frames(store: Path) -> Predictions:
    """The composed pseudo-labels of every finished clip of ``store`` (stamps from the stems).

    Raises:
        ValueError: the store has no semantic pseudo-labels.
    """
    from vcups_core.pseudo.compose import compose_frame, track_classes
    from vcups_core.pseudo.store import read_manifest, read_store

    clips = read_store(Path(store))
    manifest = read_manifest(Path(store))
    things = manifest.get("thing_classes")
    if things is None:
        raise ValueError(f"{store}: no semantic pseudo-labels (thing_classes) to score")
    num = int(manifest["config"]["semantics"]["num_classes"])
    drives = []
    for clip in clips:
        semantic_maps = []
        for i in range(len(clip)):
            semantic = clip.semantic(i)
            if semantic is None:
                raise ValueError(f"{store}: clip {clip.name!r} has no semantic pseudo-labels")
            semantic_maps.append(semantic)
        instance_maps = [clip.instance(i) for i in range(len(clip))]
        # the stored maps are aligned (each track's class over its masks): the vote recovers it
        classes = track_classes(semantic_maps, instance_maps, num)
        sems, insts = [], []
        for semantic, instance in zip(semantic_maps, instance_maps, strict=True):
            sem, inst = compose_frame(semantic, instance, classes, things)
            sems.append(sem.astype(np.uint8))
            insts.append(inst.astype(np.int32))
        stamps = tuple(int(s) for s in clip.stems)
        drives.append(LabelledFrames(clip.name, stamps, tuple(sems), tuple(insts)))
    return Predictions(tuple(drives), num, tuple(c in things for c in range(num)))


def score_frames(
    predictions: Predictions,
    ground_truth: Sequence[LabelledFrames],
    moving_ids: Mapping[str, Sequence[int]],
    *,
    dataset: str = "synthetic-world",
) -> dict[str, Any]:
    """Score predicted drives against ground truth with the protocol, one class matching over
    all drives; frames are paired by stamp and drive name.

    Args:
        predictions: the predicted drives.
        ground_truth: the same drives' ground truth (by :attr:`LabelledFrames.name`).
        moving_ids: per drive name, the ground-truth instance ids of moving objects.
        dataset: the descriptor of the ground truth's class ids.

    Returns:
        The report of :func:`~vcups_core.metrics.motion_split.evaluate_by_motion` (``STQ``,
        ``AQ``, ``SQ``, ``VPQ``, ``*_moving``, ``*_static``, per-class IoU, ...).

    Raises:
        ValueError: a drive or frame without ground truth, or sizes that differ.
    """
    truth = {g.name: g for g in ground_truth}
    pairs: list[tuple[str, U8, I32, U8, I32]] = []
    for drive in predictions.drives:
        gt = truth.get(drive.name)
        if gt is None:
            raise ValueError(f"no ground truth for drive {drive.name!r}")
        by_stamp = dict(zip(gt.stamps, zip(gt.semantic, gt.instance, strict=True), strict=True))
        for stamp, sem, inst in zip(drive.stamps, drive.semantic, drive.instance, strict=True):
            if stamp not in by_stamp:
                raise ValueError(f"drive {drive.name!r}: no ground truth at stamp {stamp}")
            gs, gi = by_stamp[stamp]
            if gs.shape != sem.shape:
                raise ValueError(
                    f"drive {drive.name!r}: prediction {sem.shape} != ground truth {gs.shape}"
                )
            pairs.append((drive.name, gs, gi, sem, inst))

    def frames() -> Iterator[Frame]:
        yield from pairs

    report = evaluate_by_motion(
        frames,
        get_descriptor(dataset),
        {k: list(v) for k, v in moving_ids.items()},
        num_pred_classes=predictions.num_classes,
        pred_is_thing=list(predictions.is_thing),
    )
    report.pop("classwise_table", None)
    return report
