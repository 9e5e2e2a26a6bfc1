"""``vcups train``: a pseudo-label store -> a trained checkpoint (the loop is
:mod:`vcups_core.train.loop`).

One GPU or the CPU::

    vcups train --store STORE --out runs/r1 [--config config/training.yaml]
                [--model-config config/model/vcups_r50.yaml] [--set KEY=VALUE ...]

Several GPUs, one or more machines (PyTorch's own launcher; ``batch_size`` is the global batch)::

    torchrun --nproc-per-node 4 -m training.cli train --store STORE --out runs/r1
    torchrun --nnodes 2 --node-rank R --nproc-per-node 8 --rdzv-backend c10d \\
        --rdzv-endpoint HOST:29400 -m training.cli train --store STORE --out runs/r1

Killed at any moment, the same command resumes from ``OUT/state.pt``. Label-efficient
fine-tuning on annotated clips: ``--finetune-from CKPT --dataset NAME:ROOT`` (the store is then
made from the dataset's ground truth; see :func:`finetune_store`).

Exit codes: 0 finished; 1 training stopped (non-finite loss, a state of another run); 2 a usage
error (one line on stderr); 130 interrupted (state saved; re-run to resume).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``vcups train`` options to ``parser``."""
    parser.add_argument("--store", help="pseudo-label store (from vcups pseudo-labels)")
    parser.add_argument("--out", required=True, help="run folder (state, checkpoints, logs)")
    parser.add_argument(
        "--config", help="training config YAML (default: config/training.yaml's defaults)"
    )
    parser.add_argument(
        "--model-config",
        default=str(REPO / "config" / "model" / "vcups_r50.yaml"),
        help="model config YAML (default: config/model/vcups_r50.yaml; tiny.yaml for CPUs)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override training config keys, e.g. epochs=2 optimizer.learning_rate=1e-4",
    )
    parser.add_argument("--max-steps", type=int, help="stop after this many steps")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA if available)")
    parser.add_argument(
        "--overwrite", action="store_true", help="start afresh even if --out holds another run"
    )
    parser.add_argument(
        "--finetune-from", metavar="CKPT", help="initialise from a checkpoint's weights"
    )
    parser.add_argument(
        "--dataset",
        metavar="NAME:ROOT",
        help="with --finetune-from: train on the dataset's annotated clips (ground-truth classes)",
    )
    parser.add_argument("--split", help="split of --dataset (default: the reader's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_train_cli(args: argparse.Namespace) -> int:
    """Run ``vcups train``; returns the exit code."""
    from vcups_core.config import apply_overrides, load_config
    from vcups_core.configs.model import ModelConfig
    from vcups_core.configs.training import TrainingConfig
    from vcups_core.train.loop import TrainingError, TrainOptions, train

    cfg = load_config(args.config, TrainingConfig) if args.config else TrainingConfig()
    if args.overrides:
        cfg = apply_overrides(cfg, args.overrides, TrainingConfig)
    model_cfg = load_config(args.model_config, ModelConfig)
    if args.max_steps is not None and args.max_steps < 1:
        raise ValueError(f"--max-steps must be >= 1, got {args.max_steps}")
    if args.dataset and not args.finetune_from:
        raise ValueError("--dataset trains on ground truth: it needs --finetune-from CKPT")
    out = Path(args.out)
    if args.dataset:
        from vcups_core.train.finetune import finetune_store

        store = finetune_store(args.dataset, args.split, out / "gt_store", overwrite=args.overwrite)
    elif args.store:
        store = Path(args.store)
    else:
        raise ValueError("give --store STORE (or --finetune-from CKPT --dataset NAME:ROOT)")
    if args.finetune_from and not Path(args.finetune_from).is_file():
        raise FileNotFoundError(f"{args.finetune_from}: --finetune-from checkpoint not found")
    options = TrainOptions(
        store=store,
        out=out,
        model=model_cfg,
        training=cfg,
        max_steps=args.max_steps,
        device=args.device,
        overwrite=args.overwrite,
        finetune_from=Path(args.finetune_from) if args.finetune_from else None,
        progress=not args.no_progress,
    )
    try:
        result = train(options)
    except TrainingError as exc:
        print(f"vcups train: {exc}", file=sys.stderr)
        return 1
    if result.interrupted:
        return 130
    if result.checkpoint is not None:
        print(f"trained {result.steps} steps: {result.checkpoint}")
    return 0
