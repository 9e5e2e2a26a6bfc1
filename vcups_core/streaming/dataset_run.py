"""Stream every clip of a dataset through the node's path, one result file per finished clip.

Each clip gets a fresh :class:`~vcups_core.streaming.segmenter.StreamingSegmenter` (fresh tracker
and smoother, track ids from 1) and is fed its frames in order with the known frame gaps; the
tracker sees every frame from the clip's first through its last annotated one, labelled or not
(Cityscapes-VPS: the whole 30-frame snippet, labels on every 5th frame). What is kept is the
panoptic output of the annotated frames (or of other frames chosen by the caller: in a split
without labels, those a submission needs): category ids (the predictor's
:class:`~vcups_core.types.CategoryTable`, before any class matching) and track ids, stored as
``<folder>/<clip>.npz`` (:class:`ClipResultWriter`, read back frame by frame with
:class:`ClipResult`, so memory stays one frame plus a clip's compressed maps).

Resuming: a result file is written atomically (:func:`~vcups_core.jobs.atomic_write_bytes`) once
its clip is finished, so it doubles as the clip's done marker: :func:`run_clips` skips clips whose
file exists and removes what a killed run left of its own clips' files. Clips are independent, so
any split of the clips over processes (``--shard``, torchrun ranks) gives byte-identical files.

The ground-truth oracle (:func:`oracle_segmenter`) is the check of this path: it knows only the
annotated frames, so it is fed only those, with smoothing off, no stuff area limit and a
full-resolution stuff grid, so a correct path reproduces the ground truth.
"""

from __future__ import annotations

import dataclasses
import io
import time
import zipfile
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import cast

import numpy as np
import numpy.typing as npt

from vcups_core.configs.streaming import StreamingConfig
from vcups_core.data import cityscapes_classes as cs
from vcups_core.data.clip import Clip, ClipFrame
from vcups_core.data.datasets import DatasetDescriptor
from vcups_core.data.oracle import THING_CLASSES, OraclePredictor
from vcups_core.data.synthetic import SyntheticFrame
from vcups_core.jobs import StagedOutput, atomic_write_bytes
from vcups_core.streaming.segmenter import StreamingSegmenter
from vcups_core.types import IGNORE_LABEL

RESULT_SUFFIX = ".npz"
"""Suffix of a clip's result file (``<clip name>.npz``)."""


class ClipResultWriter:
    """Builds a clip's result file in memory, one annotated frame at a time.

    Each frame's maps are deflated as they arrive (``.npz`` members), so a long clip costs its
    compressed size, not ``frames x H x W x 5`` bytes. Track ids are renumbered ``1..n`` over the
    clip in order of first appearance (row-major within a frame); 0 stays 0.

    Args:
        name: the clip's name.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._buffer = io.BytesIO()
        self._zip = zipfile.ZipFile(self._buffer, "w", zipfile.ZIP_DEFLATED)
        self._frames: list[int] = []
        self._numbers: dict[int, int] = {}

    def add(
        self, index: int, semantic: npt.NDArray[np.uint8], track: npt.NDArray[np.integer]
    ) -> None:
        """Add annotated frame ``index``: ``uint8[H, W]`` category ids, ``int[H, W]`` track ids."""
        k = len(self._frames)
        self._member(f"semantic_{k}", np.asarray(semantic, np.uint8))
        self._member(f"track_{k}", self._renumber(track))
        self._frames.append(index)

    def to_bytes(self, streamed: int) -> bytes:
        """The finished file's bytes (``streamed``: frames given to the segmenter)."""
        self._member("name", np.array(self.name))
        self._member("frames", np.asarray(self._frames, np.int64))
        self._member("streamed", np.array(streamed, np.int64))
        self._zip.close()
        return self._buffer.getvalue()

    def _member(self, key: str, array: npt.NDArray[np.generic]) -> None:
        # a fixed date: equal results give equal bytes, however the clips were split
        info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with self._zip.open(info, "w", force_zip64=True) as f:
            np.lib.format.write_array(f, array, allow_pickle=False)

    def _renumber(self, track: npt.NDArray[np.integer]) -> npt.NDArray[np.int32]:
        values, first, inverse = np.unique(track, return_index=True, return_inverse=True)
        for k in np.argsort(first, kind="stable").tolist():
            value = int(values[k])
            if value != 0 and value not in self._numbers:
                self._numbers[value] = len(self._numbers) + 1
        lut = np.array([self._numbers.get(int(v), 0) for v in values.tolist()], np.int32)
        renumbered: npt.NDArray[np.int32] = lut[inverse].reshape(track.shape)
        return renumbered


class ClipResult:
    """A clip's result file (from :class:`ClipResultWriter`), read lazily: the small fields at
    once, the maps frame by frame. Use it as a context manager (it holds the file open).

    Attributes:
        path: the file.
        name: the clip's name.
        frames: clip frame index (:attr:`ClipFrame.index`) of each kept (annotated) frame, in
            order.
        streamed: frames given to the segmenter (annotated or not).

    Raises:
        ValueError: the file is not such a result (names the file).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._data = np.load(self.path, allow_pickle=False)
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{self.path}: not a readable clip result ({exc})") from None
        try:
            self.name = str(self._data["name"])
            self.frames = tuple(int(i) for i in self._data["frames"])
            self.streamed = int(self._data["streamed"])
        except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as exc:
            self._data.close()
            raise ValueError(f"{self.path}: not a readable clip result ({exc})") from None

    def maps(self, k: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32]]:
        """``(semantic, track)`` of the ``k``-th annotated frame: ``uint8[H, W]`` category ids
        (:data:`~vcups_core.types.IGNORE_LABEL` = void) and ``int32[H, W]`` track ids (0 on
        stuff and void).

        Raises:
            ValueError: ``k`` out of range, or a damaged file.
        """
        if not 0 <= k < len(self.frames):
            raise ValueError(f"{self.path}: frame {k} of {len(self.frames)} requested")
        try:
            semantic = self._data[f"semantic_{k}"].astype(np.uint8, copy=False)
            track = self._data[f"track_{k}"].astype(np.int32, copy=False)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{self.path}: frame {k} unreadable ({exc})") from None
        return semantic, track

    def close(self) -> None:
        self._data.close()

    def __enter__(self) -> ClipResult:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def result_path(folder: Path, clip_name: str) -> Path:
    """``<folder>/<clip_name>.npz``.

    Raises:
        ValueError: a clip name that cannot be a file name.
    """
    if not clip_name or clip_name.startswith(".") or "/" in clip_name or "\\" in clip_name:
        raise ValueError(f"clip name {clip_name!r} cannot name a result file")
    return Path(folder) / f"{clip_name}{RESULT_SUFFIX}"


def frames_to_stream(
    clip: Clip, *, annotated_only: bool = False, kept: Sequence[ClipFrame] | None = None
) -> tuple[ClipFrame, ...]:
    """The frames a clip is streamed with: every frame through the last kept one (later frames
    cannot change a causal result), or only the kept ones (``annotated_only``). ``kept``: the
    frames whose output is kept (default: the annotated ones)."""
    kept = clip.annotated if kept is None else tuple(kept)
    if annotated_only:
        return kept
    indices = {f.index for f in kept}
    last = max((i for i, f in enumerate(clip.frames) if f.index in indices), default=-1)
    return clip.frames[: last + 1]


def stream_clip(
    clip: Clip,
    segmenter: StreamingSegmenter,
    frames: Sequence[ClipFrame],
    on_frame: Callable[[], None] | None = None,
    keep: Collection[int] | None = None,
) -> bytes:
    """Run ``frames`` of ``clip`` (in order) through ``segmenter``; return the result file's
    bytes with the kept frames' output (:class:`ClipResult`).

    The gap passed with each frame is the difference of clip frame indices, so frames left out
    (the oracle's unlabelled ones) count as skipped frames for the tracker and the smoother.

    Args:
        clip: the clip (names the result).
        segmenter: a fresh segmenter (its tracker starts empty).
        frames: frames of ``clip`` in order.
        on_frame: called after each frame (progress).
        keep: clip frame indices whose output is kept (default: the annotated frames).
    """
    writer = ClipResultWriter(clip.name)
    previous: int | None = None
    for frame in frames:
        gap = None if previous is None else frame.index - previous
        result = segmenter.step(frame.image(), gap=gap)
        previous = frame.index
        if frame.annotated if keep is None else frame.index in keep:
            writer.add(frame.index, result.semantic, result.track_ids)
        if on_frame is not None:
            on_frame()
    return writer.to_bytes(len(frames))


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """What :func:`run_clips` did.

    Attributes:
        clips: clips given.
        skipped: of those, finished before (result file present).
        frames: frames streamed now.
        seconds: wall time of the streaming.
    """

    clips: int
    skipped: int
    frames: int
    seconds: float

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def run_clips(
    clips: Sequence[Clip],
    folder: Path,
    make_segmenter: Callable[[Clip], StreamingSegmenter],
    *,
    annotated_only: bool = False,
    progress: bool = True,
    kept: Callable[[Clip], Sequence[ClipFrame]] | None = None,
) -> RunSummary:
    """Stream every unfinished clip of ``clips`` and write its :class:`ClipResult`.

    Args:
        clips: this process's clips (e.g. one shard).
        folder: where the result files go (created if missing).
        make_segmenter: a fresh segmenter for a clip (called once per unfinished clip).
        annotated_only: stream only the kept frames (the oracle).
        progress: show a ``tqdm`` bar of frames (with frames/s) and finished clips.
        kept: a clip's frames whose output is kept (default: its annotated frames).

    Raises:
        ValueError: a clip name that cannot name a file.
        KeyboardInterrupt: Ctrl-C (or SIGTERM under
            :func:`~vcups_core.jobs.terminate_as_interrupt`); finished clips stay finished.
    """
    from tqdm import tqdm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    todo = []
    for clip in clips:
        path = result_path(folder, clip.name)
        StagedOutput(path).remove_leftovers()  # a killed run's temporary files of this clip
        if not path.exists():
            todo.append(clip)

    def to_stream(clip: Clip) -> tuple[ClipFrame, ...]:
        chosen = None if kept is None else kept(clip)
        return frames_to_stream(clip, annotated_only=annotated_only, kept=chosen)

    total = sum(len(to_stream(c)) for c in todo)
    streamed = 0
    start = time.perf_counter()
    with tqdm(total=total, desc="evaluate", unit="frame", disable=not progress) as bar:
        for done, clip in enumerate(todo, start=1):
            frames = to_stream(clip)
            keep = None if kept is None else {f.index for f in kept(clip)}
            data = stream_clip(clip, make_segmenter(clip), frames, lambda: bar.update(1), keep)
            atomic_write_bytes(result_path(folder, clip.name), data)
            streamed += len(frames)
            bar.set_postfix_str(f"clips {done}/{len(todo)}")
    return RunSummary(len(clips), len(clips) - len(todo), streamed, time.perf_counter() - start)


@dataclasses.dataclass(frozen=True)
class _OracleFrame:
    """An annotated frame in the shape :class:`OraclePredictor` reads (image, labels, index)."""

    rgb: npt.NDArray[np.uint8]
    semantic: npt.NDArray[np.uint8]
    instance: npt.NDArray[np.int32]
    index: int


ORACLE_DATASETS = ("cityscapes-vps", "kitti-step", "mots", "waymo")
"""Datasets whose ground truth :func:`oracle_segmenter` can turn into predictions."""


def oracle_labels(
    semantic: npt.NDArray[np.uint8], instance: npt.NDArray[np.int32], descriptor: DatasetDescriptor
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32]]:
    """Ground truth in the oracle's classes (Cityscapes train ids of its categories).

    Cityscapes-class datasets keep their ids; MOTS person becomes person and background road.
    Instances stay only on the oracle's things (car, person); other things and stuff classes
    the oracle lacks end up void in its prediction.

    Raises:
        ValueError: a dataset whose classes the oracle cannot express.
    """
    if descriptor.name == "mots":
        person = semantic == 1
        sem = np.where(person, cs.PERSON, np.where(semantic == IGNORE_LABEL, IGNORE_LABEL, cs.ROAD))
        return sem.astype(np.uint8), np.where(person, instance, 0).astype(np.int32)
    if descriptor.class_names != cs.CLASS_NAMES:
        raise ValueError(
            f"--oracle: no oracle for {descriptor.name!r}; expected one of "
            f"{', '.join(ORACLE_DATASETS)}"
        )
    things = np.isin(semantic, np.asarray(THING_CLASSES))
    return semantic, np.where(things, instance, 0).astype(np.int32)


def oracle_segmenter(
    clip: Clip, descriptor: DatasetDescriptor, cfg: StreamingConfig
) -> StreamingSegmenter:
    """A segmenter whose predictor is ``clip``'s ground truth (annotated frames only).

    The streaming settings of ``cfg`` apply (tracker, score threshold, time) but for three:
    smoothing is off, no stuff segment is too small (``stuff_area_limit: 0``) and the stuff
    grid is at full resolution, so on the oracle's classes (car, person and
    the synthetic world's stuff, :data:`~vcups_core.data.oracle.CATEGORIES`) the output
    equals the ground truth wherever the tracker keeps ids right. Every object of one pixel or
    more is detected. The clip's annotated images are held in memory (the oracle looks frames up
    by their content).
    """
    frames = []
    for frame in clip.annotated:
        label = frame.label()
        if label is None:  # pragma: no cover - annotated frames have labels
            continue
        sem, inst = oracle_labels(label.semantic, label.instance, descriptor)
        frames.append(_OracleFrame(frame.image().image, sem, inst, frame.index))
    # OraclePredictor reads only rgb, semantic, instance and index of a SyntheticFrame
    predictor = OraclePredictor(cast(list[SyntheticFrame], frames), min_area=1)
    exact = dataclasses.replace(
        cfg, stuff_area_limit=0, smoothing=dataclasses.replace(cfg.smoothing, enabled=False)
    )
    segmenter = StreamingSegmenter.from_config(predictor, exact)
    segmenter.smoother.grid_stride = 1
    return segmenter
