"""``vcups semantic-train``: fit the weight-free semantic clusters on the user's own frames.

(With ``--backbone-weights`` the command trains the paper's DepthG model instead:
:mod:`vcups_core.pseudo.depthg_train`.)

The clusters file it writes is what ``semantics.weights`` of the pseudo-label config names
(:mod:`vcups_core.pseudo.semantic_stage`). Frames come from the same sources as
``vcups pseudo-labels`` (:func:`vcups_core.pseudo.sources.open_source`), resized to the config's
processing size like the pipeline does, ``frames_per_clip`` of them per clip, evenly spaced
(clips of unknown length, i.e. bags: the first ``frames_per_clip``).

Features are :func:`~vcups_core.cues.semantics.pixel_features` *without depth* (depth None): the
depth cue needs the flow and camera motion of the whole cue pipeline, and the default feature
weights give the depth columns weight 0 anyway (fitted without depth they are constant, so the
clusterer gives them weight 0 whatever the weights). At labelling time the frame's depth cue is
passed but does not change the result. Features are sampled on a grid of stride
:data:`FIT_STRIDE`; the fit is seeded, so equal inputs give an equal file. The file is written
atomically (:func:`vcups_core.jobs.atomic_write_bytes`).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vcups_core.configs.pseudo_labels import PseudoLabelConfig
from vcups_core.cues.semantics import SemanticClusterer, pixel_features
from vcups_core.jobs import atomic_write_bytes
from vcups_core.pseudo.sources import (
    SourceClip,
    SourceSpec,
    open_source,
    processing_size,
    resize_image,
)

log = logging.getLogger(__name__)

FIT_STRIDE = 2
"""Sampling step of the feature grid for fitting (the clusterer samples pixels from it)."""


def _sampled_frames(
    clip: SourceClip, cfg: PseudoLabelConfig, count: int
) -> Iterator[npt.NDArray[np.uint8]]:
    """Up to ``count`` frames of ``clip``, evenly spaced, at the processing size."""
    wanted: set[int] | None = None
    if clip.length is not None:
        wanted = {int(i) for i in np.linspace(0, clip.length - 1, min(count, clip.length)).round()}
    taken = 0
    for index, (_, frame) in enumerate(clip.frames()):
        if wanted is not None and index not in wanted:
            continue
        size = processing_size((frame.height, frame.width), cfg.height, cfg.width)
        yield resize_image(frame.image, (size[0], size[1]))
        taken += 1
        if taken >= count:
            return


def train_semantic_clusters(
    spec: SourceSpec,
    out: Path,
    cfg: PseudoLabelConfig,
    *,
    frames_per_clip: int = 8,
) -> SemanticClusterer:
    """Fit a :class:`SemanticClusterer` (``semantics.num_classes`` classes, probe temperature
    ``semantics.cluster_temperature``) on frames of ``spec`` and save it to ``out``.

    Raises:
        FileNotFoundError, ValueError, BagReadError: the source cannot be opened (as
            :func:`open_source`), ``frames_per_clip < 1``, the folder of ``out`` is missing, or
            too few pixels for the classes.
    """
    if frames_per_clip < 1:
        raise ValueError(f"--frames-per-clip must be >= 1, got {frames_per_clip}")
    out = Path(out)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out.parent}: the output folder does not exist")
    clips = open_source(spec)
    frames = 0

    def features() -> Iterator[npt.NDArray[np.float32]]:
        nonlocal frames
        for clip in clips:
            for image in _sampled_frames(clip, cfg, frames_per_clip):
                frames += 1
                yield pixel_features(image, None, stride=FIT_STRIDE)

    clusterer = SemanticClusterer(
        cfg.semantics.num_classes, temperature=cfg.semantics.cluster_temperature
    )
    clusterer.fit(features())
    log.info(
        "fitted %d classes on %d frames of %d clips", clusterer.num_classes, frames, len(clips)
    )
    with tempfile.TemporaryDirectory(prefix="vcups-clusters-") as tmp:
        staged = Path(tmp) / "clusters.npz"
        clusterer.save(staged)
        atomic_write_bytes(out, staged.read_bytes())
    return clusterer
