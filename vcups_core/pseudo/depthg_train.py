"""``vcups semantic-train --backbone-weights FILE``: train the DepthG head and probe on the user's video.

The model is :mod:`vcups_core.cues.depthg`; the file written is what ``semantics.weights`` names
(:mod:`vcups_core.pseudo.semantic_stage`). Four phases, all in a work folder next to the output
(``OUT.work/``, kept afterwards: delete it when done):

1. **Frames.** The same sources and sampling as the clusters (:mod:`~.semantic_train`):
   ``frames_per_clip`` per clip, evenly spaced (bags: the first ones), at the config's processing
   size. Each frame's depth comes from the pseudo-label config's depth cue (parallax by
   default: the cue pipeline run on the frame and its next frame, the last frame of a clip with
   its previous one; ``depth.method: none`` = no depth term). Frame and depth are cached in
   ``OUT.work/frames/NNNNNN.npz``, rescaled so that a training crop of ``res`` pixels is
   ``crop_ratio`` of the frame's short side (STEGO/DepthG: five crops of half the short side,
   resized to 224; GUESS: random crops at that scale instead of the five fixed ones).
2. **kNN pairs.** Each frame's mean-pooled backbone feature (the frame resized to a short side of
   ``res``); its ``num_neighbors`` (7, STEGO) most cosine-similar other frames are its kNN partners.
3. **Training** (:func:`~vcups_core.cues.depthg.depthg_losses`): Adam (lr 5e-4, STEGO/DepthG) on
   the head only; each step draws ``batch_size`` frames, a random ``res`` crop of each (random
   horizontal flip) and a random crop of one of its kNN partners. Every ``checkpoint_every``
   steps the head, optimiser, step, kNN table and random-generator states are written atomically
   to ``OUT.work/state.pt``; the same command after a kill (or Ctrl-C, SIGTERM) continues from it
   and gives the same result as an uninterrupted run on the same device (CPU: bit-identical). A
   larger ``steps`` continues a finished run. A state made with other settings (backbone, frames,
   sizes, weights) is refused with the difference named. TensorBoard scalars of every loss term
   go to ``OUT.work/tensorboard/``.
4. **Probe.** Codes of non-overlapping ``res`` tiles of every cached frame, ``probe_samples``
   per frame, then a seeded spherical k-means (:func:`~vcups_core.cues.depthg.fit_centroids`)
   into ``semantics.num_classes`` centroids; the model file is written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch

from vcups_core.configs.pseudo_labels import PseudoLabelConfig
from vcups_core.cues.depthg import (
    DEFAULT_CODE_DIM,
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneKind,
    BackboneRecord,
    DepthGHead,
    DepthGModel,
    FrozenBackbone,
    LossWeights,
    depthg_losses,
    fit_centroids,
    load_backbone,
    normalised_inverse_depth,
)
from vcups_core.jobs import (
    atomic_write_stream,
    file_sha256,
    hold_folder,
    terminate_as_interrupt,
)
from vcups_core.pseudo.sources import SourceClip, SourceSpec, open_source, processing_size
from vcups_core.pseudo.sources import resize_image as _resize_image
from vcups_core.types import VideoFrame

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
STATE_FORMAT = "vcups-depthg-train-state"


@dataclasses.dataclass(frozen=True)
class DepthGTrainOptions:
    """Settings of :func:`train_depthg` (defaults: DepthG's Cityscapes ViT-B run).

    Attributes:
        steps: optimiser steps (DepthG/STEGO ``max_steps`` default 5000; GUESS for video).
        batch_size: frames per step (DepthG Cityscapes: 32).
        lr: Adam learning rate of the head (5e-4).
        res: crop side fed to the backbone (224; a multiple of the backbone's stride).
        crop_ratio: crop side as a fraction of the processing-size frame's short side (0.5).
        code_dim: code channels (:data:`~vcups_core.cues.depthg.DEFAULT_CODE_DIM`).
        num_neighbors: kNN partners per frame (7).
        checkpoint_every: steps between state files.
        log_every: steps between TensorBoard scalars.
        probe_samples: code vectors per frame for the probe's k-means.
        probe_max_samples: cap on all of them.
        seed: seed of the head's initialisation, the sampling and the k-means.
        weights: loss weights and shifts.
        tensorboard: write TensorBoard scalars.
    """

    steps: int = 5000
    batch_size: int = 32
    lr: float = 5e-4
    res: int = 224
    crop_ratio: float = 0.5
    code_dim: int = DEFAULT_CODE_DIM
    num_neighbors: int = 7
    checkpoint_every: int = 100
    log_every: int = 10
    probe_samples: int = 4096
    probe_max_samples: int = 200_000
    seed: int = 0
    weights: LossWeights = dataclasses.field(default_factory=LossWeights)
    tensorboard: bool = True

    def check(self) -> None:
        """Raises ValueError on a value out of range (the message names the option)."""
        bad = [
            f"{name} must be >= 1, got {getattr(self, name)}"
            for name in (
                "steps",
                "batch_size",
                "res",
                "code_dim",
                "num_neighbors",
                "checkpoint_every",
                "log_every",
                "probe_samples",
            )
            if getattr(self, name) < 1
        ]
        if not self.lr > 0:
            bad.append(f"lr must be > 0, got {self.lr}")
        if not 0 < self.crop_ratio <= 1:
            bad.append(f"crop_ratio must be in (0, 1], got {self.crop_ratio}")
        if bad:
            raise ValueError("; ".join(bad))


# ----------------------------------------------------------------------------------------------
# phase 1: frames and their depth


@dataclasses.dataclass(frozen=True)
class _Sample:
    """A training frame at the processing size, with the frame its depth cue pairs it with."""

    stem: str
    image: U8
    partner: U8 | None  # None: a clip of one frame (no flow, no depth)
    forward: bool  # the partner is the next frame (else the previous one)
    native: tuple[int, int]  # the source frame's (height, width)


def _training_frames(clip: SourceClip, cfg: PseudoLabelConfig, count: int) -> Iterator[_Sample]:
    """Up to ``count`` evenly spaced frames of ``clip`` (unknown length: the first ones), each
    with its next frame (the clip's last frame: its previous one), at the processing size."""
    wanted: set[int] | None = None
    if clip.length is not None:
        wanted = {int(i) for i in np.linspace(0, clip.length - 1, min(count, clip.length)).round()}

    def processed(image: U8) -> U8:
        size = processing_size((image.shape[0], image.shape[1]), cfg.height, cfg.width)
        return _resize_image(image, (size[0], size[1]))

    taken = 0
    pending: tuple[str, U8] | None = None  # a wanted frame waiting for its next frame
    before: U8 | None = None  # the raw frame before the latest one
    latest: U8 | None = None
    for index, (stem, frame) in enumerate(clip.frames()):
        native = (frame.height, frame.width)
        if pending is not None:
            yield _Sample(pending[0], processed(pending[1]), processed(frame.image), True, native)
            taken += 1
            pending = None
            if taken >= count:
                return
        if wanted is None or index in wanted:
            pending = (stem, frame.image)
        before, latest = latest, frame.image
    if pending is not None:  # the clip's last frame: depth along the flow to the previous one
        image = pending[1]
        partner = None if before is None else processed(before)
        yield _Sample(
            pending[0], processed(image), partner, False, (image.shape[0], image.shape[1])
        )


def _frame_depth(
    pipeline: Any,
    image: U8,
    partner: U8 | None,
    forward: bool,
    intrinsics: npt.NDArray[np.float64],
) -> F32 | None:
    """The depth cue of ``image`` (None without a partner frame or with ``depth.method: none``)."""
    if partner is None or partner.shape != image.shape:
        return None
    first, second = (image, partner) if forward else (partner, image)
    frames = [VideoFrame(first, 0, "", 0), VideoFrame(second, 1, "", 1)]
    cues = list(pipeline.run(frames, intrinsics))
    depth = cues[0 if forward else 1].depth
    return None if depth is None else np.asarray(depth, np.float32)


def cache_size(size: tuple[int, int], res: int, crop_ratio: float) -> tuple[int, int]:
    """The ``(height, width)`` a frame of ``size`` is cached at: a ``res`` crop is
    ``crop_ratio`` of the short side (both sides at least ``res``)."""
    h, w = size
    scale = res / (crop_ratio * min(h, w))
    return max(res, round(h * scale)), max(res, round(w * scale))


def _resize(image: U8, size: tuple[int, int]) -> U8:
    if image.shape[:2] == size:
        return image
    shrink = size[0] < image.shape[0]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(image, (size[1], size[0]), interpolation=interp))


def _resize_depth(depth: F32 | None, size: tuple[int, int]) -> F32:
    if depth is None:
        return np.full(size, np.nan, np.float32)
    if depth.shape == size:
        return depth
    out = cv2.resize(depth, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return np.asarray(out, np.float32)


def _frame_name(path: Path) -> str:
    with np.load(path, allow_pickle=False) as data:
        return str(data["name"])


def _is_cached(path: Path, name: str, size: tuple[int, int]) -> bool:
    """``path`` holds frame ``name`` cached at ``size`` (a resumed run skips it)."""
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            return str(data["name"]) == name and tuple(data["size"].tolist()) == size
    except (OSError, ValueError, KeyError):
        return False  # damaged: compute it again


def _read_frame(path: Path) -> tuple[str, U8, F32]:
    with np.load(path, allow_pickle=False) as data:
        return str(data["name"]), np.asarray(data["image"]), np.asarray(data["depth"])


def prepare_frames(
    spec: SourceSpec,
    cfg: PseudoLabelConfig,
    folder: Path,
    *,
    frames_per_clip: int,
    res: int,
    crop_ratio: float,
    cue_factory: Callable[[PseudoLabelConfig], Any] | None = None,
) -> tuple[list[Path], int]:
    """Phase 1 (module docstring): cache the training frames and their depth in ``folder``.

    A frame already cached under the same name is not computed again (resume).

    Returns:
        ``(files, clips)``: the cached frame files in order and the number of clips.
    """
    from vcups_core.pseudo.pipeline import processing_intrinsics

    clips = open_source(spec)
    folder.mkdir(parents=True, exist_ok=True)
    pipeline: Any = None
    files: list[Path] = []
    for clip in clips:
        for sample in _training_frames(clip, cfg, frames_per_clip):
            path = folder / f"{len(files):06d}.npz"
            name = f"{clip.name}/{sample.stem}"
            files.append(path)
            size = (sample.image.shape[0], sample.image.shape[1])
            target = cache_size(size, res, crop_ratio)
            if _is_cached(path, name, target):
                continue
            if pipeline is None:
                if cue_factory is not None:
                    pipeline = cue_factory(cfg)
                else:
                    from vcups_core.cues.build import build_cue_pipeline

                    pipeline = build_cue_pipeline(cfg)
            k = processing_intrinsics(clip, cfg, sample.native, size)
            depth = _frame_depth(pipeline, sample.image, sample.partner, sample.forward, k)
            arrays = {
                "name": np.array(name),
                "size": np.array(target),
                "image": _resize(sample.image, target),
                "depth": _resize_depth(depth, target),
            }
            atomic_write_stream(path, lambda fh, a=arrays: np.savez(fh, **a))  # type: ignore[misc]
    if not files:
        raise ValueError("semantic-train: the source has no frames")
    return files, len(clips)


# ----------------------------------------------------------------------------------------------
# phase 2: kNN partners


def _normalised(image: U8, device: torch.device) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
    return ((x - mean) / std).to(device)


def nearest_neighbours(
    files: list[Path], backbone: FrozenBackbone, res: int, k: int, device: torch.device
) -> torch.Tensor:
    """``int64[N, k']`` indices of each frame's most similar other frames (``k' = min(k, N - 1)``;
    a single frame is its own partner)."""
    descriptors = []
    for path in files:
        _, image, _ = _read_frame(path)
        h, w = image.shape[:2]
        s = res / min(h, w)
        stride = backbone.stride
        size = (
            max(stride, round(h * s / stride) * stride),
            max(stride, round(w * s / stride) * stride),
        )
        with torch.inference_mode():
            feats = backbone(_normalised(_resize(image, size), device)[None])
            descriptors.append(torch.nn.functional.normalize(feats.mean((2, 3)), dim=1).cpu())
    x = torch.cat(descriptors)
    n = len(x)
    if n == 1:
        return torch.zeros((1, 1), dtype=torch.int64)
    sim = x @ x.T
    sim.fill_diagonal_(-math.inf)
    return torch.topk(sim, min(k, n - 1), dim=1).indices


# ----------------------------------------------------------------------------------------------
# phase 3: training


@dataclasses.dataclass
class Batch:
    """One training batch: ``images``/``partners`` ``float[B, 3, res, res]`` (normalised) and
    ``depth`` ``float[B, 1, res, res]`` normalised inverse depth of ``images`` (NaN unknown), or
    None when no pixel of the batch has depth."""

    images: torch.Tensor
    partners: torch.Tensor
    depth: torch.Tensor | None


class FrameStore:
    """The cached frames, read on demand (a small cache keeps the latest ones)."""

    def __init__(self, files: list[Path], cache: int = 64) -> None:
        self.files = files
        self._cache: dict[int, tuple[U8, F32]] = {}
        self._limit = cache

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[U8, F32]:
        hit = self._cache.get(index)
        if hit is None:
            _, image, depth = _read_frame(self.files[index])
            hit = (image, depth)
            if len(self._cache) >= self._limit:
                self._cache.pop(next(iter(self._cache)))
            self._cache[index] = hit
        return hit


def _crop(image: U8, depth: F32, res: int, gen: torch.Generator) -> tuple[U8, F32]:
    h, w = image.shape[:2]
    y0 = int(torch.randint(0, h - res + 1, (1,), generator=gen))
    x0 = int(torch.randint(0, w - res + 1, (1,), generator=gen))
    flip = bool(torch.rand(1, generator=gen) < 0.5)
    img, d = image[y0 : y0 + res, x0 : x0 + res], depth[y0 : y0 + res, x0 : x0 + res]
    if flip:
        img, d = img[:, ::-1], d[:, ::-1]
    return img, d


def make_batch(
    frames: FrameStore,
    knn: torch.Tensor,
    batch_size: int,
    res: int,
    gen: torch.Generator,
    device: torch.device,
) -> Batch:
    """Draw a batch (module docstring, phase 3) with ``gen`` only (reproducible)."""
    images, partners, depths = [], [], []
    for i in torch.randint(0, len(frames), (batch_size,), generator=gen).tolist():
        j = int(knn[i, int(torch.randint(0, knn.shape[1], (1,), generator=gen))])
        img, d = _crop(*frames[i], res, gen)
        pos, _ = _crop(*frames[j], res, gen)
        images.append(_normalised(img, device))
        partners.append(_normalised(pos, device))
        depths.append(normalised_inverse_depth(d))
    depth = np.stack(depths)[:, None]
    return Batch(
        torch.stack(images),
        torch.stack(partners),
        torch.from_numpy(depth).to(device) if np.isfinite(depth).any() else None,
    )


def _fingerprint(
    record: BackboneRecord, files: list[Path], options: DepthGTrainOptions
) -> dict[str, Any]:
    names = "\n".join(_frame_name(p) for p in files)
    return {
        "backbone_sha256": record.sha256,
        "backbone": f"{record.kind}:{record.arch}",
        "frames": hashlib.sha256(names.encode()).hexdigest(),
        "code_dim": options.code_dim,
        "res": options.res,
        "crop_ratio": options.crop_ratio,
        "batch_size": options.batch_size,
        "lr": options.lr,
        "seed": options.seed,
        "num_neighbors": options.num_neighbors,
        "weights": json.dumps(dataclasses.asdict(options.weights), sort_keys=True),
    }


def _load_state(path: Path, fingerprint: dict[str, Any]) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"{path}: unreadable training state ({type(exc).__name__}); delete it to start over"
        ) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path}: not a semantic-train state file; delete it to start over")
    old = state.get("fingerprint", {})
    differ = sorted(k for k in fingerprint if old.get(k) != fingerprint[k])
    if differ:
        raise ValueError(
            f"{path.parent}: holds a semantic-train run with other settings ({', '.join(differ)} "
            "differ); use the same options, or delete the folder to start over"
        )
    return state


def _save_state(
    path: Path,
    *,
    step: int,
    fingerprint: dict[str, Any],
    head: DepthGHead,
    optimiser: torch.optim.Optimizer,
    gen: torch.Generator,
    knn: torch.Tensor,
    device: torch.device,
    losses: dict[str, float],
) -> None:
    state: dict[str, Any] = {
        "format": STATE_FORMAT,
        "step": step,
        "fingerprint": fingerprint,
        "head": {k: v.detach().cpu() for k, v in head.state_dict().items()},
        "optimiser": optimiser.state_dict(),
        "generator": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "knn": knn,
        "losses": losses,
    }
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    atomic_write_stream(path, lambda fh: torch.save(state, fh))


def _writer(folder: Path, purge_step: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(folder), purge_step=purge_step)


# ----------------------------------------------------------------------------------------------
# phase 4: probe


def _tiles(image: U8, res: int) -> list[U8]:
    h, w = image.shape[:2]
    return [
        image[y : y + res, x : x + res]
        for y in range(0, h - res + 1, res)
        for x in range(0, w - res + 1, res)
    ]


def probe_codes(
    frames: FrameStore,
    backbone: FrozenBackbone,
    head: DepthGHead,
    options: DepthGTrainOptions,
    device: torch.device,
) -> F32:
    """``float32[N, D]`` codes sampled from the ``res`` tiles of every cached frame (phase 4)."""
    rng = np.random.default_rng(options.seed)
    head.eval()
    picked: list[F32] = []
    for index in range(len(frames)):
        image, _ = frames[index]
        x = torch.stack([_normalised(t, device) for t in _tiles(image, options.res)])
        with torch.inference_mode():
            code = head(backbone(x))
        flat = code.permute(0, 2, 3, 1).reshape(-1, code.shape[1]).float().cpu().numpy()
        n = min(options.probe_samples, len(flat))
        picked.append(flat[np.sort(rng.choice(len(flat), n, replace=False))])
    codes = np.concatenate(picked)
    if len(codes) > options.probe_max_samples:
        codes = codes[np.sort(rng.choice(len(codes), options.probe_max_samples, replace=False))]
    return np.ascontiguousarray(codes, np.float32)


# ----------------------------------------------------------------------------------------------
# the job


def default_work_dir(out: Path) -> Path:
    """``OUT.work`` next to the model file."""
    return out.with_name(out.name + ".work")


def train_depthg(
    spec: SourceSpec,
    out: Path,
    cfg: PseudoLabelConfig,
    *,
    backbone_weights: Path,
    backbone: BackboneKind | None = None,
    arch: str | None = None,
    options: DepthGTrainOptions | None = None,
    frames_per_clip: int = 8,
    device: str | None = None,
    work_dir: Path | None = None,
    progress: bool = True,
    cue_factory: Callable[[PseudoLabelConfig], Any] | None = None,
    on_step: Callable[[int, dict[str, float]], object] | None = None,
) -> DepthGModel:
    """Train a DepthG head and probe on frames of ``spec`` and write the model file ``out``.

    Args:
        spec: the frames (as ``vcups pseudo-labels``).
        out: the model file (``.pt``) to write; its folder must exist.
        cfg: pseudo-label config: processing size, depth cue, ``semantics.num_classes``,
            ``cluster_temperature``, ``crop_size``, ``stride``, ``device`` (default device).
        backbone_weights: the frozen backbone's local checkpoint.
        backbone, arch: its kind and architecture (None: inferred from the file).
        options: training settings (:class:`DepthGTrainOptions`).
        frames_per_clip: frames sampled per clip.
        device: torch device (None: the config's ``device``).
        work_dir: the work folder (None: ``OUT.work``).
        progress: show a tqdm bar.
        cue_factory: builds the depth cue pipeline from the config (default: the library's).
        on_step: called after every step with the step count and the loss terms (tests).

    Returns:
        The trained model.

    Raises:
        FileNotFoundError: the output folder or the backbone file is missing.
        ValueError: bad options, an unusable backbone file, a work folder of another run, too
            few code samples for the classes, a non-finite loss.
        KeyboardInterrupt: Ctrl-C or SIGTERM (the last state file stays for the next run).
    """
    options = options or DepthGTrainOptions()
    options.check()
    if frames_per_clip < 1:
        raise ValueError(f"--frames-per-clip must be >= 1, got {frames_per_clip}")
    out = Path(out)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out.parent}: the output folder does not exist")
    from vcups_core.cues.build import cue_device

    dev = torch.device(device or cue_device(cfg))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {dev}: CUDA is not available on this machine")
    weights_path = Path(backbone_weights).resolve()
    frozen = load_backbone(weights_path, backbone, arch).to(dev)
    if options.res % frozen.stride:
        raise ValueError(
            f"res {options.res} is not a multiple of the backbone's stride {frozen.stride}"
        )
    record = BackboneRecord(frozen.kind, frozen.arch, str(weights_path), file_sha256(weights_path))
    work = work_dir or default_work_dir(out)
    with hold_folder(work, "semantic-train"), terminate_as_interrupt():
        files, clips = prepare_frames(
            spec,
            cfg,
            work / "frames",
            frames_per_clip=frames_per_clip,
            res=options.res,
            crop_ratio=options.crop_ratio,
            cue_factory=cue_factory,
        )
        log.info("%d training frames of %d clips in %s", len(files), clips, work)
        frames = FrameStore(files)
        fingerprint = _fingerprint(record, files, options)
        head, losses = _train(frames, frozen, fingerprint, options, dev, work, progress, on_step)
        codes = probe_codes(frames, frozen, head, options, dev)
        num_classes = cfg.semantics.num_classes
        if len(codes) < num_classes:
            raise ValueError(
                f"{len(codes)} code samples < semantics.num_classes={num_classes}: more frames "
                "or a smaller res are needed"
            )
        centroids = fit_centroids(codes, num_classes, seed=options.seed)
        info = {
            "steps": options.steps,
            "frames": len(files),
            "clips": clips,
            "res": options.res,
            "batch_size": options.batch_size,
            "losses": losses,
        }
        model = DepthGModel(
            frozen,
            head,
            centroids,
            record,
            temperature=cfg.semantics.cluster_temperature,
            crop=cfg.semantics.crop_size,
            stride=cfg.semantics.stride,
            device=str(dev),
            info=info,
        )
        model.save(out)
    return model


def _train(
    frames: FrameStore,
    backbone: FrozenBackbone,
    fingerprint: dict[str, Any],
    options: DepthGTrainOptions,
    device: torch.device,
    work: Path,
    progress: bool,
    on_step: Callable[[int, dict[str, float]], object] | None,
) -> tuple[DepthGHead, dict[str, float]]:
    """Phase 3: the head after ``options.steps`` steps (resumed from the state file) and the
    last step's loss terms."""
    from tqdm import tqdm

    torch.manual_seed(options.seed)
    head = DepthGHead(backbone.channels, options.code_dim).to(device)
    optimiser = torch.optim.Adam(head.parameters(), lr=options.lr)
    gen = torch.Generator().manual_seed(options.seed)
    state_path = work / "state.pt"
    losses: dict[str, float] = {}
    if state_path.is_file():
        state = _load_state(state_path, fingerprint)
        head.load_state_dict(state["head"])
        optimiser.load_state_dict(state["optimiser"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        knn, start = state["knn"], int(state["step"])
        losses = dict(state.get("losses", {}))
        log.info("resuming semantic-train at step %d of %d", start, options.steps)
    else:
        knn = nearest_neighbours(frames.files, backbone, options.res, options.num_neighbors, device)
        start = 0
    if start >= options.steps:
        return head, losses
    writer = _writer(work / "tensorboard", start, options.tensorboard)
    bar = tqdm(
        total=options.steps,
        initial=start,
        desc="semantic-train",
        unit="step",
        disable=not progress,
    )
    try:
        for step in range(start, options.steps):
            head.train()
            batch = make_batch(frames, knn, options.batch_size, options.res, gen, device)
            with torch.no_grad():
                feats = backbone(torch.cat([batch.images, batch.partners]))
            code = head(feats)
            b = options.batch_size
            terms = depthg_losses(
                feats[:b],
                feats[b:],
                code[:b],
                code[b:],
                batch.depth,
                options.weights,
                gen,
                step=step,
            )
            total = terms["total"]
            if not torch.isfinite(total):
                raise ValueError(f"semantic-train: non-finite loss at step {step + 1}")
            optimiser.zero_grad(set_to_none=True)
            total.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            losses = {k: float(v.detach()) for k, v in terms.items()}
            done = step + 1
            if writer is not None and (done % options.log_every == 0 or done == options.steps):
                for name, value in losses.items():
                    writer.add_scalar(f"loss/{name}", value, done)
                writer.add_scalar("cfg/depth_weight", options.weights.depth_at(step)[0], done)
            bar.update(1)
            bar.set_postfix(loss=f"{losses['total']:.4f}", refresh=False)
            if done % options.checkpoint_every == 0 or done == options.steps:
                _save_state(
                    state_path,
                    step=done,
                    fingerprint=fingerprint,
                    head=head,
                    optimiser=optimiser,
                    gen=gen,
                    knn=knn,
                    device=device,
                    losses=losses,
                )
            if on_step is not None:
                on_step(done, losses)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return head, losses
