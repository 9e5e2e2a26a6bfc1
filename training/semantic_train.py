"""``vcups semantic-train``: frames -> semantic clusters file for ``semantics.weights`` (the work
is in :mod:`vcups_core.pseudo.semantic_train`).

Input as ``vcups pseudo-labels``: ``--frames DIR [DIR ...]``, ``--bag PATH [PATH ...] --topic T``
or ``--dataset NAME:ROOT [--split S]``. Exit codes: 0 written; 2 a usage error (one line on
stderr).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``vcups semantic-train`` options to ``parser``."""
    from training.pseudo_labels import add_source_arguments

    add_source_arguments(parser)
    parser.add_argument(
        "--out", required=True, metavar="CLUSTERS.npz", help="clusters file to write (atomic)"
    )
    parser.add_argument(
        "--config",
        help="pseudo-label config YAML: processing size, semantics.num_classes and "
        "cluster_temperature (default: built-in defaults)",
    )
    parser.add_argument(
        "--frames-per-clip",
        type=int,
        default=8,
        metavar="N",
        help="frames sampled per clip, evenly spaced (default 8)",
    )


def run_semantic_train_cli(args: argparse.Namespace) -> int:
    """Run ``vcups semantic-train``; user mistakes raise ``ValueError`` / ``FileNotFoundError``
    (printed as one line by :func:`training.cli.main`)."""
    from training.pseudo_labels import load_pseudo_label_config, source_spec
    from vcups_core.pseudo.semantic_train import train_semantic_clusters

    spec = source_spec(args)
    cfg = load_pseudo_label_config(args.config)
    out = Path(args.out)
    clusterer = train_semantic_clusters(spec, out, cfg, frames_per_clip=args.frames_per_clip)
    print(
        f"{out}: {clusterer.num_classes} semantic classes; set semantics.weights: {out} in the "
        "pseudo-label config"
    )
    return 0
