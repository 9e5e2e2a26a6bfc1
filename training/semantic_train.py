"""``vcups semantic-train``: frames -> the semantic model file for ``semantics.weights`` (the work is
in :mod:`vcups_core.pseudo.semantic_train` and :mod:`vcups_core.pseudo.depthg_train`).

Input as ``vcups pseudo-labels``: ``--frames DIR [DIR ...]``, ``--bag PATH [PATH ...] --topic T``
or ``--dataset NAME:ROOT [--split S]``.

* Without ``--backbone-weights``: the weight-free semantic clusters (``.npz``), as before.
* With ``--backbone-weights FILE`` (a local DINO ViT or ResNet checkpoint; kind and architecture
  are read from it unless ``--backbone``/``--backbone-arch`` say otherwise): trains the DepthG head
  and probe on the frames with the config's depth cue and writes a ``.pt``. Resumable: the same
  command after a kill continues from ``OUT.work/state.pt``; TensorBoard scalars go to
  ``OUT.work/tensorboard``.

Exit codes: 0 written; 2 a usage error (one line on stderr); 130 interrupted.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vcups_core.configs.pseudo_labels import PseudoLabelConfig
    from vcups_core.pseudo.sources import SourceSpec

_DEPTHG_ONLY = (
    "backbone",
    "backbone_arch",
    "steps",
    "batch_size",
    "device",
    "work",
    "checkpoint_every",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``vcups semantic-train`` options to ``parser``."""
    from training.pseudo_labels import add_source_arguments

    add_source_arguments(parser)
    parser.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="model file to write (atomic): clusters .npz, or with --backbone-weights a DepthG .pt",
    )
    parser.add_argument(
        "--config",
        help="pseudo-label config YAML: processing size, depth cue, device and the semantics "
        "section (default: built-in defaults)",
    )
    parser.add_argument(
        "--frames-per-clip",
        type=int,
        default=8,
        metavar="N",
        help="frames sampled per clip, evenly spaced (default 8)",
    )
    group = parser.add_argument_group("DepthG model (the paper's semantic cue)")
    group.add_argument(
        "--backbone-weights",
        metavar="FILE",
        help="local checkpoint of a frozen self-supervised backbone (DINO ViT-B/8 as the paper, "
        "any timm ViT or torchvision ResNet); trains a DepthG head instead of the clusters",
    )
    group.add_argument(
        "--backbone",
        choices=("vit", "resnet"),
        help="backbone kind (default: read from the checkpoint's keys)",
    )
    group.add_argument(
        "--backbone-arch",
        metavar="NAME",
        help="timm ViT name (e.g. vit_base_patch8_224) or torchvision resnet18/34/50/101 "
        "(default: read from the checkpoint's shapes)",
    )
    group.add_argument(
        "--steps", type=int, metavar="N", help="training steps (default 5000; more continue a run)"
    )
    group.add_argument(
        "--batch-size", type=int, metavar="N", help="frames per step (default 32, as DepthG)"
    )
    group.add_argument(
        "--device", metavar="DEV", help="torch device: cpu, cuda, cuda:1 (default: config device)"
    )
    group.add_argument(
        "--work",
        metavar="DIR",
        help="work folder: cached frames and depth, resume state, TensorBoard logs "
        "(default: OUT.work)",
    )
    group.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="N",
        help="steps between resume states (default 100)",
    )
    group.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_semantic_train_cli(args: argparse.Namespace) -> int:
    """Run ``vcups semantic-train``; user mistakes raise ``ValueError`` / ``FileNotFoundError``
    (printed as one line by :func:`training.cli.main`)."""
    from training.pseudo_labels import load_pseudo_label_config, source_spec

    out = Path(args.out)
    if not args.backbone_weights:
        given = [f"--{name.replace('_', '-')}" for name in _DEPTHG_ONLY if getattr(args, name)]
        if given:
            raise ValueError(f"{', '.join(given)}: only with --backbone-weights (a DepthG model)")
    spec = source_spec(args)
    cfg = load_pseudo_label_config(args.config)
    if args.backbone_weights:
        return _run_depthg(args, spec, cfg, out)
    from vcups_core.pseudo.semantic_train import train_semantic_clusters

    clusterer = train_semantic_clusters(spec, out, cfg, frames_per_clip=args.frames_per_clip)
    print(
        f"{out}: {clusterer.num_classes} semantic classes; set semantics.weights: {out} in the "
        "pseudo-label config"
    )
    return 0


def _run_depthg(
    args: argparse.Namespace, spec: SourceSpec, cfg: PseudoLabelConfig, out: Path
) -> int:
    import dataclasses

    from vcups_core.pseudo.depthg_train import DepthGTrainOptions, train_depthg

    changes = {
        name: value
        for name, value in (
            ("steps", args.steps),
            ("batch_size", args.batch_size),
            ("checkpoint_every", args.checkpoint_every),
        )
        if value is not None
    }
    options = dataclasses.replace(DepthGTrainOptions(), **changes)
    model = train_depthg(
        spec,
        out,
        cfg,
        backbone_weights=Path(args.backbone_weights),
        backbone=args.backbone,
        arch=args.backbone_arch,
        options=options,
        frames_per_clip=args.frames_per_clip,
        device=args.device,
        work_dir=Path(args.work) if args.work else None,
        progress=not args.no_progress,
    )
    print(
        f"{out}: DepthG model ({model.record.kind} {model.record.arch}, {model.num_classes} "
        f"classes, {options.steps} steps); set semantics.weights: {out} in the pseudo-label config"
    )
    return 0
