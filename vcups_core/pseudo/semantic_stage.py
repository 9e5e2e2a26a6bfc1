"""The semantic stage of ``vcups pseudo-labels`` (on when ``semantics.weights`` names a model file
from ``vcups semantic-train``; method §2.2 and §2.5).

``semantics.weights`` names one of two kinds of file (:func:`load_semantic_model` tells them apart
by their content, not their name):

* a clusters ``.npz`` (``vcups semantic-train`` without ``--backbone-weights``): the weight-free
  :class:`~vcups_core.cues.semantics.SemanticClusterer` on hand-made pixel features;
* a DepthG ``.pt`` (``vcups semantic-train --backbone-weights FILE``): the paper's frozen backbone,
  STEGO/DepthG head and cluster probe (:class:`~vcups_core.cues.depthg.DepthGModel`), run with
  depth-guided inference (``semantics.crop_size``/``stride`` windows, the global pass, fusion by
  the frame's depth cue) on the config's ``device``.

Per frame, streaming alongside the instance labeler (:class:`ClipSemantics`):

1. the model's log-probabilities at the processing size (``log_proba(image, depth)`` of every
   pixel with the frame's depth cue if the cue pipeline gives one, else none), softmax;
2. the dense CRF (:func:`vcups_core.pseudo.crf.dense_crf`) when ``semantics.crf_iterations > 0``,
   at ``semantics.crf_scale`` of the processing size;
3. temporal smoothing over three frames (:class:`vcups_core.pseudo.smoothing.TemporalSmoother`,
   with the cue pipeline's flows and the config's forward-backward tolerances) when
   ``semantic_smoothing_window`` is 3 (1 = off);
4. argmax → ``uint8`` raw map, written to the clip's scratch folder ``STORE/.tmp/<clip>/``.

Track classes need the whole clip, so once every frame of the clip has its instance map
(:func:`finalize_clip`): pass 1 votes each track's class over the clip's raw maps
(:class:`~vcups_core.pseudo.compose.TrackVote`), pass 2 aligns each frame
(:func:`~vcups_core.pseudo.compose.align_frame`), writes ``STORE/<clip>/semantic/<stem>.png``
and counts the thing/stuff statistic. Both passes read one frame at a time back from disk, so
memory stays bounded (two frames' probabilities in the smoother, one frame in the passes) however
long the clip. The scratch folder is removed when the clip ends (done or not) and by a restart.

The model file is loaded once per process; its class count must equal
``semantics.num_classes``, and the probe temperature is ``semantics.cluster_temperature``
(it only changes the CRF's unary, not the argmax). The store's config hash covers the file's
*path*, not its content: re-training into the same file needs ``--overwrite`` or another store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from vcups_core.configs.pseudo_labels import PseudoLabelConfig
from vcups_core.cues.base import FrameCues
from vcups_core.cues.semantics import SemanticClusterer
from vcups_core.jobs import atomic_write_png
from vcups_core.pseudo.smoothing import TemporalSmoother
from vcups_core.pseudo.store import PNG, StoreWriter

F32 = npt.NDArray[np.float32]


class SemanticModel(Protocol):
    """What the stage needs of a semantic model (clusters or DepthG)."""

    @property
    def num_classes(self) -> int: ...

    def log_proba(
        self, image: npt.NDArray[np.uint8], depth: F32 | None, *, focal_px: float | None = None
    ) -> F32:
        """``float32[K, H, W]`` log-probabilities of one ``uint8[H, W, 3]`` frame."""
        ...


def load_semantic_model(cfg: PseudoLabelConfig) -> SemanticModel:
    """The model that ``cfg.semantics.weights`` names, checked against the config: a clusters
    ``.npz`` or a DepthG ``.pt`` (told apart by the content; module docstring).

    Raises:
        FileNotFoundError: the file (or a DepthG model's backbone) is missing.
        ValueError: neither kind of file, or its class count differs from
            ``semantics.num_classes``.
    """
    sem = cfg.semantics
    path = Path(sem.weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"semantics.weights {str(path)!r}: no such file (make one with `vcups semantic-train "
            "... --out FILE`)"
        )
    from vcups_core.cues.depthg import is_model_file

    model: SemanticModel
    if is_model_file(path):
        from vcups_core.cues.build import cue_device
        from vcups_core.cues.depthg import DepthGModel

        try:
            model = DepthGModel.load(
                path,
                device=cue_device(cfg),
                temperature=sem.cluster_temperature,
                crop=sem.crop_size,
                stride=sem.stride,
            )
        except ValueError as exc:
            raise ValueError(f"semantics.weights {str(path)!r}: {exc}") from None
    else:
        try:
            clusterer = SemanticClusterer.load(path)
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(
                f"semantics.weights {str(path)!r}: neither a semantic clusters file (.npz) nor "
                f"a DepthG model (.pt) from `vcups semantic-train` ({type(exc).__name__}: {exc})"
            ) from None
        clusterer.temperature = float(sem.cluster_temperature)
        model = clusterer
    if model.num_classes != sem.num_classes:
        raise ValueError(
            f"semantics.weights {str(path)!r} has {model.num_classes} classes, the config's "
            f"semantics.num_classes is {sem.num_classes}; re-run vcups semantic-train "
            "with this config"
        )
    return model


class SemanticStage:
    """Per-frame semantic probabilities (steps 1-2 of the module docstring), one per process."""

    def __init__(self, cfg: PseudoLabelConfig, model: SemanticModel) -> None:
        self.cfg = cfg
        self.model = model
        self.num_classes = model.num_classes

    @classmethod
    def from_config(cls, cfg: PseudoLabelConfig) -> SemanticStage | None:
        """The stage, or None when ``semantics.weights`` is empty (instance labels only)."""
        if not cfg.semantics.weights:
            return None
        return cls(cfg, load_semantic_model(cfg))

    def probabilities(self, cues: FrameCues) -> F32:
        """``float32[C, H, W]`` class probabilities of one frame (after the CRF if on)."""
        image = cues.frame.image
        depth = cues.depth
        focal = float(cues.intrinsics[0, 0]) if cues.intrinsics is not None else None
        logp = self.model.log_proba(image, depth, focal_px=focal)
        unnormalised = np.exp(logp - logp.max(0, keepdims=True))
        probs: F32 = (unnormalised / unnormalised.sum(0, keepdims=True)).astype(np.float32)
        sem = self.cfg.semantics
        if sem.crf_iterations > 0:
            from vcups_core.pseudo.crf import dense_crf

            probs = dense_crf(
                np.ascontiguousarray(image),
                probs,
                iterations=sem.crf_iterations,
                scale=sem.crf_scale,
            )
        return probs

    def clip(self, writer: StoreWriter, clip: str, stems: list[str]) -> ClipSemantics:
        """A per-clip stream writing raw maps into ``writer``'s scratch folder of ``clip``."""
        return ClipSemantics(self, writer.scratch_dir(clip), stems)


class ClipSemantics:
    """One clip's raw semantic maps (steps 1-4), pushed frame by frame in order.

    ``stems`` is the pipeline's list of the clip's stems read so far (index = position); a
    frame's stem is known when its cues are pushed.
    """

    def __init__(self, stage: SemanticStage, folder: Path, stems: list[str]) -> None:
        self.stage = stage
        self.folder = folder
        self.stems = stems
        cfg = stage.cfg
        self.smoother = (
            TemporalSmoother(fb_abs=cfg.validity.fb_abs, fb_rel=cfg.validity.fb_rel)
            if cfg.semantic_smoothing_window == 3
            else None
        )
        self.written = 0
        self._prev_forward: npt.NDArray[np.float32] | None = None

    def push(self, cues: FrameCues) -> None:
        """Add the next frame's cues (frames in clip order)."""
        index = cues.frame.index
        if index != self.written + (self.smoother is not None and index > 0):
            raise ValueError(
                f"semantic stage: got frame {index}, expected frame {self.written} (frames must "
                "come in order)"
            )
        probs = self.stage.probabilities(cues)
        if self.smoother is None:
            self._write(probs)
            return
        flow_prev_to_this = self._prev_forward if index > 0 else None
        flow_to_prev = cues.flow_prev if index > 0 else None
        self._prev_forward = cues.flow if cues.flow_is_forward else None
        smoothed = self.smoother.push(probs, flow_to_prev, flow_prev_to_this)
        if smoothed is not None:
            self._write(smoothed)

    def finish(self) -> int:
        """Write the last frame (smoothing delays one frame); returns the frames written."""
        if self.smoother is not None:
            last = self.smoother.flush()
            if last is not None:
                self._write(last)
        self._prev_forward = None
        return self.written

    def _write(self, probs: F32) -> None:
        labels = np.argmax(probs, axis=0).astype(np.uint8)
        atomic_write_png(self.folder / f"{self.stems[self.written]}{PNG}", labels)
        self.written += 1


def _read(path: Path, dtype: type[np.generic]) -> npt.NDArray[Any]:
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None or array.dtype != dtype or array.ndim != 2:
        raise ValueError(f"{path}: missing or not a {np.dtype(dtype).name}[H, W] PNG")
    return array


def finalize_clip(
    writer: StoreWriter, clip: str, stems: list[str], num_classes: int
) -> dict[str, Any]:
    """Vote the track classes, write the aligned semantic maps, return the clip's thing/stuff
    statistic (:meth:`ThingStuffStats.to_dict`). Needs every frame's raw map (scratch folder)
    and instance map (store)."""
    from vcups_core.pseudo.compose import TrackVote, align_frame
    from vcups_core.pseudo.thingstuff import ThingStuffStats

    scratch = writer.scratch_dir(clip)

    def frames() -> Any:
        for stem in stems:
            yield (
                stem,
                _read(scratch / f"{stem}{PNG}", np.uint8),
                _read(writer.instance_path(clip, stem), np.uint16),
            )

    vote = TrackVote(num_classes)
    for _, sem, inst in frames():
        vote.update(sem, inst)
    track_class = vote.result()
    stats = ThingStuffStats(num_classes)
    for stem, sem, inst in frames():
        aligned = align_frame(sem, inst, track_class)
        writer.write_semantic(clip, stem, aligned)
        stats.update(aligned, inst)
    return stats.to_dict()
