"""``vcups pseudo-labels``: raw video in, a pseudo-label store out (resumable, shardable).

For every clip of this process's shard that the store has not finished (see
:mod:`vcups_core.pseudo.store` for the resume rule):

1. frames are decoded lazily and resized to the processing size (``cfg.height`` x ``cfg.width``,
   native when both are 0; ``cv2.INTER_AREA``), with the intrinsics scaled to match (from the
   source's camera info; else ``cfg.camera.focal_px`` if > 0, else ``cfg.camera.hfov_deg``; a
   ``focal_px`` > 0 always sets the focal length);
2. the cue pipeline (:func:`vcups_core.cues.build.build_cue_pipeline`) turns them into one
   :class:`~vcups_core.cues.base.FrameCues` per frame, streaming;
3. the instance labeler (:class:`vcups_core.pseudo.instances.InstanceLabeler`) turns those into
   track-id maps, and each map is written as soon as it is final, so memory stays bounded
   however long the clip;
4. only with ``semantics.weights`` set (the semantic stage, :mod:`vcups_core.pseudo.semantic_stage`):
   each frame's cues also give a raw semantic map (clusters, CRF, temporal smoothing) kept in
   ``STORE/.tmp/<clip>/``; once the clip's instance maps are all written, the track classes are
   voted over the clip, the aligned maps written to ``STORE/<clip>/semantic/`` and the clip's
   thing/stuff statistic put into its record. The clip is ``done`` only when both its instance
   and semantic PNGs are complete. With ``semantics.weights`` empty the store is exactly what it
   is without the stage (no ``semantic/``, no ``.tmp``, no thing/stuff keys).

A clip with fewer than 2 frames, an unreadable frame, a damaged bag or any other exception
inside a clip marks that clip ``failed`` with a one-line reason and the run goes on; the exit
code is 1 if any clip of the shard failed. SIGTERM is handled like Ctrl-C: the clip being
labelled is recorded as ``interrupted``, the manifest is rebuilt, and :class:`KeyboardInterrupt`
propagates. Every file is written atomically, so a SIGKILL leaves nothing partial under a final
name, and a re-run redoes only the unfinished clips. Output does not depend on the sharding.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from vcups_core.configs.pseudo_labels import PseudoLabelConfig
from vcups_core.cues.base import FrameCues
from vcups_core.jobs import select_shard, terminate_as_interrupt
from vcups_core.pseudo.sources import (
    SourceClip,
    SourceSpec,
    assumed_intrinsics,
    open_source,
    processing_size,
    resize_image,
    scale_intrinsics,
)
from vcups_core.pseudo.store import ClipRecord, ClipStatus, StoreWriter
from vcups_core.types import VideoFrame

if TYPE_CHECKING:
    from vcups_core.pseudo.semantic_stage import SemanticStage

log = logging.getLogger(__name__)

MIN_FRAMES = 2
"""Shortest clip that can be labelled: a single frame has no optical flow."""

Labels = list[tuple[int, npt.NDArray[np.uint16]]]


class CuePipeline(Protocol):
    """What :func:`vcups_core.cues.build.build_cue_pipeline` returns."""

    @property
    def backends(self) -> dict[str, str]:
        """Backend of each cue (``{"flow": "dis:medium", ...}``), recorded in the manifest."""
        ...

    def run(
        self, frames: Iterable[VideoFrame], intrinsics: npt.NDArray[np.float64]
    ) -> Iterator[FrameCues]:
        """One :class:`FrameCues` per input frame, in order, streaming (one frame look-ahead)."""
        ...


class Labeler(Protocol):
    """What :class:`vcups_core.pseudo.instances.InstanceLabeler` provides (one per clip)."""

    def push(self, cues: FrameCues) -> Labels:
        """Add a frame's cues; return the ``(index, uint16[H, W] track ids)`` now final."""
        ...

    def finish(self) -> Labels:
        """Return the remaining frames' labels (every index comes out once, in order)."""
        ...


CueFactory = Callable[[PseudoLabelConfig, Any], CuePipeline]
LabelerFactory = Callable[[PseudoLabelConfig], Labeler]


def default_cue_factory(cfg: PseudoLabelConfig, oracle: Any) -> CuePipeline:
    """``build_cue_pipeline(cfg, oracle=oracle)`` of :mod:`vcups_core.cues.build`."""
    from vcups_core.cues.build import build_cue_pipeline

    pipeline: CuePipeline = build_cue_pipeline(cfg, oracle=oracle)
    return pipeline


def default_labeler_factory(cfg: PseudoLabelConfig) -> Labeler:
    """``InstanceLabeler(cfg)`` of :mod:`vcups_core.pseudo.instances`."""
    from vcups_core.pseudo.instances import InstanceLabeler

    labeler: Labeler = InstanceLabeler(cfg)
    return labeler


class ClipFailed(Exception):  # noqa: N818 - a reason, not a programming error
    """A clip cannot be labelled (too short, inconsistent frames); the message is the reason."""


def one_line(exc: BaseException) -> str:
    """``"<Type>: <message>"`` on one line (newlines of multi-line messages become ``"; "``)."""
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if isinstance(exc, ClipFailed):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_pseudo_labels(
    source_spec: SourceSpec,
    store: Path,
    cfg: PseudoLabelConfig,
    *,
    shard: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    oracle: Any = None,
    progress: bool = True,
    cue_factory: CueFactory | None = None,
    labeler_factory: LabelerFactory | None = None,
) -> int:
    """Label this shard's unfinished clips of ``source_spec`` into ``store``.

    Args:
        source_spec: what to read (bags, frame folders or a dataset).
        store: the store folder (created if missing).
        cfg: pseudo-label config (its hash tags the store).
        shard: ``(index, count)``: this process takes clips ``index, index + count, ...`` of the
            source's clip list.
        overwrite: replace a store made with another config.
        oracle: passed to the cue pipeline (synthetic ground truth for oracle cues).
        progress: show a tqdm bar (frames/s, ETA).
        cue_factory, labeler_factory: build the cue pipeline (once per process, only if there
            is work) and a labeler (once per clip); default: the library's.

    Returns:
        0 if every clip of the shard is done, 1 if any failed.

    Raises:
        FileNotFoundError, ValueError, BagReadError: the source cannot be opened (as
            :func:`~vcups_core.pseudo.sources.open_source`), an invalid shard, or the store
            cannot be written / was made with another config (:class:`StoreConfigError`).
        KeyboardInterrupt: Ctrl-C or SIGTERM (after recording the clip and the manifest).
    """
    clips = open_source(source_spec)
    mine = select_shard(clips, *shard)
    semantics = _semantic_stage(cfg)
    writer = StoreWriter(store, cfg, overwrite=overwrite)
    names = [c.name for c in clips]
    todo = [c for c in mine if not writer.is_finished(c.name)]
    failed = 0
    log.info(
        "%s: %d clips, %d in shard %d/%d, %d to do",
        store,
        len(clips),
        len(mine),
        shard[0],
        shard[1],
        len(todo),
    )
    backends: dict[str, str] = {}
    try:
        with terminate_as_interrupt():
            if todo:
                cues = (cue_factory or default_cue_factory)(cfg, oracle)
                backends = dict(cues.backends)
                make_labeler = labeler_factory or default_labeler_factory
                total = None if any(c.length is None for c in todo) else sum(len(c) for c in todo)
                bar = _progress_bar(total, enabled=progress)
                try:
                    for clip in todo:
                        bar.set_postfix_str(clip.name, refresh=False)
                        record = label_clip(
                            clip, writer, cfg, cues, make_labeler(cfg), bar.update, semantics
                        )
                        failed += record.status != "done"
                finally:
                    bar.close()
    finally:
        writer.write_manifest(backends=backends, expected_clips=names)
    return 1 if failed else 0


def _semantic_stage(cfg: PseudoLabelConfig) -> SemanticStage | None:
    """The semantic stage when ``semantics.weights`` is set (loaded before any work, so a bad
    clusters file is a usage error, not a failed clip)."""
    if not cfg.semantics.weights:
        return None
    from vcups_core.pseudo.semantic_stage import SemanticStage

    return SemanticStage.from_config(cfg)


def _progress_bar(total: int | None, *, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="pseudo-labels", unit="frame", disable=not enabled)


def label_clip(
    clip: SourceClip,
    writer: StoreWriter,
    cfg: PseudoLabelConfig,
    cues: CuePipeline,
    labeler: Labeler,
    on_frame: Callable[[int], object] = lambda n: None,
    semantics: SemanticStage | None = None,
) -> ClipRecord:
    """Label one clip from scratch into ``writer``'s store and record its status.

    ``semantics``: the semantic stage (None = instance labels only).

    Returns:
        The clip's record (``done``, or ``failed`` with the reason).

    Raises:
        KeyboardInterrupt: after recording the clip as ``interrupted``.
    """
    start = time.perf_counter()
    writer.begin_clip(clip.name, semantic=semantics is not None)
    stems: list[str] = []  # stems of the frames read so far (index = position)
    size: list[int] = []  # processing (height, width) once known
    written = 0
    status: ClipStatus = "done"
    error: str | None = None
    thing_stuff: dict[str, Any] | None = None
    sem_stream = None if semantics is None else semantics.clip(writer, clip.name, stems)
    try:
        stream = _processed(clip, cfg, stems, size)
        head = list(itertools.islice(stream, MIN_FRAMES))
        if len(head) < MIN_FRAMES:
            raise ClipFailed(
                f"clip has {len(head)} frame(s); at least {MIN_FRAMES} are needed (a single "
                "frame has no optical flow)"
            )
        intrinsics = processing_intrinsics(
            clip, cfg, (head[0].height, head[0].width), (size[0], size[1])
        )
        for frame_cues in cues.run(itertools.chain(head, stream), intrinsics):
            if sem_stream is not None:
                sem_stream.push(frame_cues)
            for index, labels in labeler.push(frame_cues):
                written = _write(writer, clip.name, stems, size, written, index, labels)
                on_frame(1)
        for index, labels in labeler.finish():
            written = _write(writer, clip.name, stems, size, written, index, labels)
            on_frame(1)
        if written != len(stems):
            raise ClipFailed(
                f"the labeler returned {written} of {len(stems)} frames (a bug in the labeler)"
            )
        if sem_stream is not None and semantics is not None:
            from vcups_core.pseudo.semantic_stage import finalize_clip

            if sem_stream.finish() != len(stems):
                raise ClipFailed(
                    f"the semantic stage wrote {sem_stream.written} of {len(stems)} frames"
                )
            thing_stuff = finalize_clip(writer, clip.name, stems, semantics.num_classes)
    except KeyboardInterrupt:
        if semantics is not None:
            writer.remove_scratch(clip.name)
        _record(writer, clip, cfg, cues, "interrupted", "interrupted", stems, size, start)
        raise
    except Exception as exc:
        status, error = "failed", one_line(exc)
        log.warning("clip %s failed: %s", clip.name, error)
    if semantics is not None:
        writer.remove_scratch(clip.name)
    return _record(
        writer, clip, cfg, cues, status, error, stems, size, start, thing_stuff=thing_stuff
    )


def _record(
    writer: StoreWriter,
    clip: SourceClip,
    cfg: PseudoLabelConfig,
    cues: CuePipeline,
    status: ClipStatus,
    error: str | None,
    stems: list[str],
    size: list[int],
    start: float,
    *,
    thing_stuff: dict[str, Any] | None = None,
) -> ClipRecord:
    record = ClipRecord(
        clip=clip.name,
        status=status,
        stems=tuple(stems),
        error=error,
        seconds=time.perf_counter() - start,
        height=size[0] if size else None,
        width=size[1] if size else None,
        config_hash=writer.config_hash,
        backends=dict(cues.backends),
        source=clip.source,
        thing_stuff=thing_stuff,
    )
    writer.finish_clip(record)
    return record


def _processed(
    clip: SourceClip, cfg: PseudoLabelConfig, stems: list[str], size: list[int]
) -> Iterator[VideoFrame]:
    """The clip's frames at the processing size, indexed by position; fills ``stems`` and
    ``size`` as frames are read."""
    seen: set[str] = set()
    native: tuple[int, int] | None = None
    for index, (stem, frame) in enumerate(clip.frames()):
        shape = (frame.height, frame.width)
        if native is None:
            native = shape
            size[:] = processing_size(native, cfg.height, cfg.width)
        elif shape != native:
            raise ClipFailed(
                f"frame {stem!r} is {shape[0]}x{shape[1]}, the clip's first frame "
                f"{native[0]}x{native[1]}"
            )
        if stem in seen:
            raise ClipFailed(f"two frames have the stem {stem!r} (e.g. equal stamps)")
        seen.add(stem)
        stems.append(stem)
        image = resize_image(frame.image, (size[0], size[1]))
        yield VideoFrame(image, frame.stamp_ns, frame.frame_id, index)


def processing_intrinsics(
    clip: SourceClip, cfg: PseudoLabelConfig, native: tuple[int, int], size: tuple[int, int]
) -> npt.NDArray[np.float64]:
    """K (``float64[3, 3]``) at the processing size ``size``: the source's intrinsics scaled from
    ``native``, or assumed from ``camera.hfov_deg``; ``camera.focal_px`` > 0 overrides the focal
    length (see the module docstring). Shared by the pipeline and DepthG training."""
    if clip.intrinsics is None:
        return assumed_intrinsics(size, focal_px=cfg.camera.focal_px, hfov_deg=cfg.camera.hfov_deg)
    k = scale_intrinsics(clip.intrinsics, clip.native_size or native, size)
    if cfg.camera.focal_px > 0:
        k[0, 0] = k[1, 1] = cfg.camera.focal_px
    return k


def _write(
    writer: StoreWriter,
    clip: str,
    stems: list[str],
    size: list[int],
    written: int,
    index: int,
    labels: npt.NDArray[np.uint16],
) -> int:
    """Write frame ``index``'s labels (it must be the next one); returns the new count."""
    if index != written or index >= len(stems):
        raise ClipFailed(
            f"the labeler returned frame {index}, expected frame {written} (a bug in the labeler)"
        )
    if tuple(np.shape(labels)) != (size[0], size[1]):
        raise ClipFailed(
            f"the labeler returned a {list(np.shape(labels))} map for frame {index}, expected "
            f"[{size[0]}, {size[1]}]"
        )
    writer.write_instance(clip, stems[index], labels)
    return written + 1
