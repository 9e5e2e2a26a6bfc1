"""The training loop: a pseudo-label store in, a trained checkpoint out (method §4).

``train(options)`` is what ``vcups train`` and ``torchrun ... train`` run:

* **Model**: :func:`~vcups_core.model.build.build_model` with the store's thing/stuff split as
  its categories (``T`` = ``len(thing_classes)``, ``S`` = ``len(stuff_classes)``) and the Video
  DropLoss ``tau`` of ``TrainingConfig.drop_loss_iou``; or, with ``finetune_from``, the weights of
  a checkpoint (heads whose shape no longer fits are re-initialised and listed).
* **Optimiser**: AdamW with weight decay on the non-normalisation parameters only
  (torchvision's ``split_normalization_params``, as CUPS), constant learning rate, gradient-norm
  clipping; bf16 autocast on CUDA when ``precision: bf16``, fp32 on the CPU.
* **Data**: :mod:`vcups_core.train.data` (fixed order from the seed), the clip-consistent
  augmentation, one resolution per batch, the self-enhanced video copy-paste (pseudo-label
  tracks of the batch during ``copy_paste.startup_epochs`` epochs, then the model's own confident
  tracks on the previous step's un-augmented clips that overlap no pseudo-label).
* **Determinism**: every random draw of step ``s`` comes from generators seeded by
  ``(seed, s, ...)``, including torch's global generator (proposal sampling) which is re-seeded
  at every step. So a run resumed at step ``s`` computes exactly the losses of an uninterrupted
  run (on the same device and thread count).
* **Resume**: ``OUT/state.pt`` (model and optimiser state, step; ``torch.load(weights_only=True)``)
  is written atomically every ``checkpoint_every`` steps, at the end and on Ctrl-C/SIGTERM, next
  to a deployable checkpoint ``OUT/checkpoints/step_<s>.pt`` (``save_checkpoint``). The same
  command after SIGKILL continues from the last state. A state made under another config or
  store is refused (``--overwrite`` starts afresh).
* **Distributed**: under torchrun each rank trains its ``batch_size / W`` share of every global
  batch in a :class:`~torch.nn.parallel.DistributedDataParallel`; only rank 0 writes.
  ``micro_batch`` splits a rank's share into forward passes whose gradients are accumulated; with
  ``micro_batch: 1`` W ranks compute exactly (up to float summation order) the update of one
  process on the whole batch.
* **Logs**: TensorBoard scalars in ``OUT/tensorboard`` (each loss term, total, learning rate,
  images/s), ``OUT/metrics.jsonl`` (one line per step), a tqdm bar with it/s and ETA.
* A non-finite loss stops the run with :class:`TrainingError` naming the step and the loss
  terms; the last good state and checkpoint stay as they were.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from vcups_core import __version__
from vcups_core.config import config_to_dict
from vcups_core.configs.model import ModelConfig
from vcups_core.configs.training import TrainingConfig
from vcups_core.jobs import (
    atomic_write_json,
    atomic_write_stream,
    atomic_write_text,
    terminate_as_interrupt,
)
from vcups_core.model.build import build_model
from vcups_core.model.checkpoint import read_checkpoint, save_checkpoint, weights_sha256
from vcups_core.model.meta_arch import PanopticCascadeMaskTrack
from vcups_core.pseudo.store import canonical_json, config_hash, read_manifest
from vcups_core.train.augment import ClipAugmentation, draw_resolution, resize_clips
from vcups_core.train.copy_paste import novel_objects, paste_objects, video_objects
from vcups_core.train.data import (
    ClipDataset,
    FrameCache,
    Schedule,
    StoreIndex,
    WorkItem,
    collate,
    describe,
    generator,
    mix_seed,
)
from vcups_core.train.distributed import DistContext, init_distributed, shutdown
from vcups_core.train.sample import ClipSample, model_inputs
from vcups_core.train.self_enhance import predicted_clips
from vcups_core.types import CategoryTable

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
STATE_FORMAT = "vcups-train-state"
METRICS_FILE = "metrics.jsonl"
RUN_FILE = "run.json"
FINAL_CHECKPOINT = "model_final.pt"
CHECKPOINT_DIR = "checkpoints"


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, a state from another run, bad input)."""


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """One run of :func:`train` (the command line, translated once by ``training/train.py``).

    Attributes:
        store: the pseudo-label store.
        out: the run folder (state, checkpoints, logs, frame cache).
        model: the model config (class counts are replaced by the store's split).
        training: the training config.
        max_steps: stop after this many global steps (None: ``epochs`` passes).
        device: ``cpu``/``cuda``/``cuda:i`` (None: CUDA if available).
        overwrite: start afresh even if ``out`` holds another run's state.
        finetune_from: initialise from this checkpoint's weights.
        progress: show the tqdm bar (rank 0).
        micro_batch: clips per forward pass on a rank (None: ``training.micro_batch``).
    """

    store: Path
    out: Path
    model: ModelConfig
    training: TrainingConfig
    max_steps: int | None = None
    device: str | None = None
    overwrite: bool = False
    finetune_from: Path | None = None
    progress: bool = True
    micro_batch: int | None = None


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a finished (or interrupted) run leaves.

    Attributes:
        steps: global steps done in total (including those before a resume).
        checkpoint: the final checkpoint (or the last one written when interrupted).
        interrupted: stopped by Ctrl-C/SIGTERM before the end.
        losses: per step done in this process, the loss terms (rank 0; for tests and logs).
        rank_weights: every rank's parameters' SHA-256 at the end (all equal, or the run
            fails; BatchNorm running statistics are buffers and follow each rank's batches).
    """

    steps: int
    checkpoint: Path | None
    interrupted: bool
    losses: list[dict[str, float]]
    rank_weights: list[str]


# --------------------------------------------------------------------------------------------------
# Pieces


def store_categories(index: StoreIndex) -> CategoryTable:
    """The category table of a model trained on the store: pseudo-thing then pseudo-stuff."""
    things, stuff = index.thing_classes, index.stuff_classes
    names = tuple(f"pseudo_{c}" for c in things) + tuple(f"pseudo_{c}" for c in stuff)
    return CategoryTable(names, len(things), tuple(things) + tuple(stuff))


def model_config_for(cfg: ModelConfig, index: StoreIndex) -> ModelConfig:
    """``cfg`` with the class counts of the store's split."""
    return dataclasses.replace(
        cfg, num_thing_classes=len(index.thing_classes), num_stuff_classes=len(index.stuff_classes)
    )


def optimizer_for(model: nn.Module, cfg: TrainingConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on non-normalisation parameters only (method §4.2)."""
    from torchvision.ops._utils import split_normalization_params

    norm, other = split_normalization_params(model)
    groups = [
        {
            "params": [p for p in other if p.requires_grad],
            "weight_decay": cfg.optimizer.weight_decay,
        },
        {"params": [p for p in norm if p.requires_grad], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        [g for g in groups if g["params"]],
        lr=cfg.optimizer.learning_rate,
        betas=cfg.optimizer.betas,
    )


def load_finetune_weights(model: PanopticCascadeMaskTrack, path: Path) -> list[str]:
    """Copy the checkpoint's weights whose names and shapes fit; returns the names left as
    initialised (e.g. class-specific layers when the class counts differ)."""
    state, _meta = read_checkpoint(path)
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fitting, strict=False)
    return sorted(set(own) - set(fitting))


def run_signature(options: TrainOptions, index: StoreIndex, world_size: int) -> dict[str, Any]:
    """What must match for a state to be resumed: the config (except ``epochs``,
    ``num_workers``, ``checkpoint_every``), the store, the world size, the initial weights."""
    manifest = read_manifest(options.store)
    # what does not change the data order or the updates may differ: a run can be extended
    # (more epochs or --max-steps) or resumed with other checkpointing or workers
    training = config_to_dict(options.training)
    for key in ("epochs", "num_workers", "checkpoint_every"):
        training.pop(key)
    return {
        "training": config_hash(training),
        "model": config_hash(options.model),
        "store": manifest.get("config_hash"),
        "store_data": config_hash({"keys": [list(k) for k in index.keys]}),
        "world_size": world_size,
        "micro_batch": options.micro_batch,
        "finetune_from": str(options.finetune_from) if options.finetune_from else None,
    }


def _save_state(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, step: int, signature: Any
) -> None:
    payload = {
        "format": STATE_FORMAT,
        "step": step,
        "signature": canonical_json(signature),
        "model": {k: v.detach().to("cpu") for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
    }
    atomic_write_stream(path, lambda f: torch.save(payload, f))


def _load_state(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainingError(
            f"{path}: unreadable training state ({type(exc).__name__}); remove it or use "
            "--overwrite to start afresh"
        ) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise TrainingError(f"{path}: not a vcups training state")
    return state


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep the lines of the steps up to ``step`` (the state's step; a killed run may have
    logged steps after it, which the resumed run logs again)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            if int(json.loads(line)["step"]) <= step:
                kept.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))


def _batches(items: Sequence[WorkItem], local_batch: int) -> list[list[WorkItem]]:
    return [list(items[i : i + local_batch]) for i in range(0, len(items), local_batch)]


def _chunks(clips: list[ClipSample], size: int) -> Iterator[list[ClipSample]]:
    for i in range(0, len(clips), size):
        yield clips[i : i + size]


def _copy_paste(
    step: int,
    schedule: Schedule,
    cfg: TrainingConfig,
    clips: list[ClipSample],
    prev_raw: list[ClipSample] | None,
    model: nn.Module,
    device: torch.device,
    g: torch.Generator,
) -> tuple[list[ClipSample], int, str]:
    """Paste video objects into every clip; returns (clips, objects available, source)."""
    cp = cfg.copy_paste
    startup = step < cp.startup_epochs * schedule.steps_per_epoch
    if startup:
        source = "pseudo"
        objects = [o for clip in clips for o in video_objects(clip, cp.min_box_size)]
    else:
        source = "model"
        objects = []
        if prev_raw:
            predicted = predicted_clips(model, prev_raw, confidence=cp.confidence, device=device)
            for pred, raw in zip(predicted, prev_raw, strict=True):
                objects += novel_objects(video_objects(pred, cp.min_box_size), raw, iou=0.5)
    if not objects:
        return clips, 0, source
    return [paste_objects(clip, objects, cp, g) for clip in clips], len(objects), source


def _forward(
    net: nn.Module,
    images: list[Tensor],
    targets: list[dict[str, Any]],
    step: int,
    checkpoint: Path | None,
) -> dict[str, Tensor]:
    """``net(images, targets)``; a failure (e.g. no proposal left once the weights diverged)
    becomes a :class:`TrainingError` naming the step (traceback in the debug log)."""
    try:
        terms: dict[str, Tensor] = net(images, targets)
    except (RuntimeError, ValueError) as exc:
        log.debug("forward pass of step %d failed", step, exc_info=True)
        largest = max(float(p.detach().abs().max()) for p in net.parameters() if p.numel())
        state = "not finite" if not math.isfinite(largest) else f"largest |w| {largest:.3g}"
        where = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint yet"
        raise TrainingError(
            f"step {step}: the forward pass failed ({type(exc).__name__}: {exc}; weights: "
            f"{state}); training stopped, {where} (diverged? lower optimizer.learning_rate or "
            "check the labels)"
        ) from None
    return terms


def _finite_or_raise(step: int, terms: Mapping[str, Tensor], checkpoint: Path | None) -> None:
    bad = {k: float(v) for k, v in terms.items() if not math.isfinite(float(v))}
    if bad:
        where = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint yet"
        raise TrainingError(
            f"step {step}: non-finite loss ({', '.join(f'{k}={v}' for k, v in bad.items())}); "
            f"training stopped, {where} (lower optimizer.learning_rate or check the labels)"
        )


# --------------------------------------------------------------------------------------------------
# The loop


def train(options: TrainOptions) -> TrainResult:
    """Train (or resume) the run ``options`` describes; see the module docstring.

    Raises:
        TrainingError: non-finite loss, a state of another run in ``out``, bad batch size.
        FileNotFoundError, ValueError: the store is missing, damaged or has no semantic labels.
    """
    cfg = options.training
    ctx = init_distributed(cfg.backend, options.device)
    try:
        return _train(options, ctx)
    finally:
        shutdown(ctx)


def _train(options: TrainOptions, ctx: DistContext) -> TrainResult:
    cfg = options.training
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / CHECKPOINT_DIR).mkdir(exist_ok=True)
    device = ctx.device

    cache = FrameCache(out / "cache")
    if ctx.is_main:
        index = StoreIndex.build(
            options.store, cache.root, only_with_instances=cfg.only_with_instances
        )
    ctx.barrier()
    if not ctx.is_main:
        index = StoreIndex.build(
            options.store, cache.root, only_with_instances=cfg.only_with_instances
        )
    if ctx.is_main:
        _fill_cache(cache, index, options.progress)
    ctx.barrier()

    model_cfg = model_config_for(options.model, index)
    torch.manual_seed(mix_seed(cfg.seed, -5))  # the same initial weights on every rank and run
    model = build_model(
        model_cfg,
        store_categories(index),
        drop_loss_iou=cfg.drop_loss_iou,
        video_drop_loss=cfg.video_drop_loss,
    )
    if options.finetune_from is not None:
        fresh = load_finetune_weights(model, options.finetune_from)
        if ctx.is_main and fresh:
            log.info(
                "fine-tuning from %s: %d tensors re-initialised", options.finetune_from, len(fresh)
            )
    model.to(device).train()
    optimizer = optimizer_for(model, cfg)
    micro = options.micro_batch if options.micro_batch is not None else cfg.micro_batch

    schedule = Schedule(
        num_keys=len(index),
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        seed=cfg.seed,
        world_size=ctx.world_size,
        max_steps=options.max_steps,
    )
    signature = run_signature(options, index, ctx.world_size)
    state_path = out / STATE_FILE
    start = 0
    last_checkpoint: Path | None = None
    if state_path.exists() and not options.overwrite:
        state = _load_state(state_path)
        if state.get("signature") != canonical_json(signature):
            raise TrainingError(
                f"{out}: holds a run with another config, store or number of processes; use "
                "another --out, or --overwrite to start afresh"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        candidate = out / CHECKPOINT_DIR / f"step_{start:07d}.pt"
        last_checkpoint = candidate if candidate.exists() else None
        if ctx.is_main:
            print(f"resuming {out} at step {start}/{schedule.total_steps}", flush=True)
    elif ctx.is_main and options.overwrite:
        state_path.unlink(missing_ok=True)
        (out / METRICS_FILE).unlink(missing_ok=True)
    ctx.barrier()

    if ctx.is_main:
        _truncate_metrics(out / METRICS_FILE, start)
        atomic_write_json(
            out / RUN_FILE,
            {
                "vcups": __version__,
                "store": str(Path(options.store).resolve()),
                "data": describe(index),
                "steps": schedule.total_steps,
                "steps_per_epoch": schedule.steps_per_epoch,
                "world_size": ctx.world_size,
                "device": str(device),
                "training": config_to_dict(cfg),
                "model": config_to_dict(model_cfg),
            },
        )

    net: nn.Module = model
    if ctx.distributed:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    local_batch = cfg.batch_size // ctx.world_size
    micro = local_batch if micro <= 0 else min(micro, local_batch)
    augment = ClipAugmentation.from_config(cfg.augmentation)
    items = schedule.items(index, ctx.rank, start)
    dataset = ClipDataset(
        index,
        cache,
        items,
        clip_length=cfg.clip.length,
        max_reference_offset=cfg.clip.max_reference_offset,
        augment=augment.geometric,
        seed=cfg.seed,
        ignore_unknown_thing_regions=cfg.ignore_unknown_thing_regions,
    )
    loader = DataLoader(
        dataset,
        batch_size=local_batch,
        shuffle=False,
        num_workers=cfg.num_workers,
        collate_fn=collate,
        persistent_workers=False,
    )
    prev_raw: list[ClipSample] | None = None
    if (
        start > 0
        and cfg.copy_paste.enabled
        and start >= cfg.copy_paste.startup_epochs * schedule.steps_per_epoch
    ):
        # the self-enhanced paste of step `start` predicts on step start-1's raw clips
        prev_items = schedule.items(index, ctx.rank, start - 1)[:local_batch]
        prev_raw = [dataset.load(it, generator(cfg.seed, it.step, it.slot)) for it in prev_items]

    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda" and cfg.precision == "bf16"
        else contextlib.nullcontext()
    )
    writer = _summary_writer(out, start) if ctx.is_main else None
    bar = _progress(schedule.total_steps, start, options.progress and ctx.is_main)
    losses_log: list[dict[str, float]] = []
    step = start
    interrupted = False
    t_last = time.perf_counter()
    try:
        with terminate_as_interrupt():
            for batch in loader:
                clips = [aug for aug, _raw in batch]
                raws = [raw for _aug, raw in batch]
                size = draw_resolution(cfg.augmentation.resolutions, generator(cfg.seed, step, -1))
                cp_info = (0, "off")
                if cfg.copy_paste.enabled:
                    g = generator(cfg.seed, step, -2, ctx.rank)
                    clips, n_obj, src = _copy_paste(
                        step, schedule, cfg, clips, prev_raw, net, device, g
                    )
                    cp_info = (n_obj, src)
                clips = resize_clips(clips, size)
                first_slot = ctx.rank * local_batch
                clips = [
                    augment.photometric(clip, generator(cfg.seed, step, -4, first_slot + i))
                    for i, clip in enumerate(clips)
                ]
                optimizer.zero_grad(set_to_none=True)
                chunks = list(_chunks(clips, micro))
                terms_sum: dict[str, Tensor] = {}
                for n, chunk in enumerate(chunks):
                    # torch's own draws (proposal sampling) seeded by the chunk's first global
                    # slot: the same for W ranks as for one process with the same micro-batches
                    torch.manual_seed(mix_seed(cfg.seed, step, -3, first_slot + n * micro))
                    images, targets = model_inputs(chunk, device)
                    sync = n == len(chunks) - 1 or not ctx.distributed
                    no_sync = getattr(net, "no_sync", None)
                    with contextlib.nullcontext() if sync or no_sync is None else no_sync():
                        with autocast:
                            terms = _forward(net, images, targets, step + 1, last_checkpoint)
                        loss = torch.stack(list(terms.values())).sum() / len(chunks)
                        loss.backward()  # type: ignore[no-untyped-call]  # torch stub
                    for k, v in terms.items():
                        terms_sum[k] = terms_sum.get(
                            k, torch.zeros((), device=device)
                        ) + v.detach().float() / len(chunks)
                finite = all(math.isfinite(float(v)) for v in terms_sum.values())
                if not ctx.all_true(finite):
                    _finite_or_raise(step + 1, terms_sum, last_checkpoint)
                    raise TrainingError(
                        f"step {step + 1}: another rank had a non-finite loss; training stopped, "
                        f"the last good checkpoint is {last_checkpoint}"
                    )
                if cfg.optimizer.grad_clip_norm > 0:
                    grad_norm = float(
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.optimizer.grad_clip_norm)
                    )
                else:
                    grad_norm = float("nan")
                optimizer.step()
                prev_raw = raws
                step += 1
                now = time.perf_counter()
                images_per_s = sum(len(c) for c in clips) * ctx.world_size / max(now - t_last, 1e-9)
                t_last = now
                names = sorted(terms_sum)
                means = ctx.mean(torch.stack([terms_sum[k] for k in names]))  # the global batch
                record = {k: float(v) for k, v in zip(names, means.tolist(), strict=True)}
                record["loss"] = sum(record.values())
                if ctx.is_main:
                    losses_log.append(record)
                    _log_step(
                        out,
                        writer,
                        step,
                        schedule,
                        optimizer,
                        record,
                        grad_norm,
                        images_per_s,
                        cp_info,
                        size,
                    )
                    if bar is not None:
                        bar.set_postfix(loss=f"{record['loss']:.3f}", refresh=False)
                        bar.update(1)
                if step % cfg.checkpoint_every == 0 or step == schedule.total_steps:
                    if ctx.is_main:
                        last_checkpoint = _checkpoint(
                            out, model, optimizer, step, schedule, signature
                        )
                    ctx.barrier()
    except KeyboardInterrupt:
        interrupted = True
        if ctx.is_main and step > start:
            last_checkpoint = _checkpoint(out, model, optimizer, step, schedule, signature)
            print(f"\ninterrupted at step {step}: state saved, re-run the same command to resume")
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
    # parameters only: BatchNorm running statistics follow each rank's own batches
    own = weights_sha256(dict(model.named_parameters()))
    digests = [own] if interrupted else ctx.gather(own)
    if len(set(digests)) > 1:
        raise TrainingError(
            f"the ranks' weights differ after step {step} ({', '.join(d[:12] for d in digests)}): "
            "a rank trained on other data or the process group is broken"
        )
    final = out / FINAL_CHECKPOINT
    if not interrupted and ctx.is_main and step >= schedule.total_steps:
        save_checkpoint(
            model, final, extra={"step": step, "epochs": cfg.epochs, "store": str(options.store)}
        )
        last_checkpoint = final
    ctx.barrier()
    return TrainResult(step, last_checkpoint, interrupted, losses_log, digests)


def _fill_cache(cache: FrameCache, index: StoreIndex, progress: bool) -> None:
    todo = [c for c in index.clips if not cache.is_complete(c)]
    if not todo:
        return
    from tqdm import tqdm

    with tqdm(
        total=sum(len(c) for c in todo), desc="frame cache", unit="frame", disable=not progress
    ) as bar:
        for clip in todo:
            cache.ensure(clip, progress=bar.update)


def _summary_writer(out: Path, start: int) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out / "tensorboard"), purge_step=start if start else None)


def _progress(total: int, start: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc="train", unit="it", dynamic_ncols=True)


def _log_step(
    out: Path,
    writer: Any,
    step: int,
    schedule: Schedule,
    optimizer: torch.optim.Optimizer,
    record: dict[str, float],
    grad_norm: float,
    images_per_s: float,
    cp_info: tuple[int, str],
    size: tuple[int, int],
) -> None:
    lr = float(optimizer.param_groups[0]["lr"])
    line = {
        "step": step,
        "epoch": schedule.epoch_of(step - 1),
        "lr": lr,
        "grad_norm": grad_norm,
        "images_per_s": images_per_s,
        "copy_paste_objects": cp_info[0],
        "copy_paste_source": cp_info[1],
        "resolution": list(size),
        **record,
    }
    with (out / METRICS_FILE).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")
    if writer is not None:
        for k, v in record.items():
            writer.add_scalar(f"loss/{k}", v, step)
        writer.add_scalar("train/lr", lr, step)
        writer.add_scalar("train/images_per_s", images_per_s, step)
        if math.isfinite(grad_norm):
            writer.add_scalar("train/grad_norm", grad_norm, step)


def _checkpoint(
    out: Path,
    model: PanopticCascadeMaskTrack,
    optimizer: torch.optim.Optimizer,
    step: int,
    schedule: Schedule,
    signature: Any,
) -> Path:
    """Deployable checkpoint first, then the state that points past it (both atomic)."""
    path = save_checkpoint(
        model,
        out / CHECKPOINT_DIR / f"step_{step:07d}.pt",
        extra={"step": step, "epoch": schedule.epoch_of(max(step - 1, 0))},
    )
    _save_state(out / STATE_FILE, model, optimizer, step, signature)
    return path
