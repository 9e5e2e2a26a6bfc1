"""``vcups pseudo-labels``: raw video -> pseudo-label store (the work is in
:mod:`vcups_core.pseudo.pipeline`).

Input is one of ``--bag PATH [PATH ...] --topic T`` (rosbag2 folders or ``.mcap`` files, one clip
each), ``--frames DIR [DIR ...]`` (folders of images in name order, one clip each) or
``--dataset NAME:ROOT [--split S]`` (any registered reader). ``--shard I/N`` takes every N-th
clip starting at I; under ``torchrun`` the shard is the process's ``RANK``/``WORLD_SIZE``.

``--oracle-labels`` writes a synthetic bag's ground truth (its ``/gt/instance`` and
``/gt/semantic`` topics) as the labels instead, in the same store layout
(:mod:`vcups_core.pseudo.oracle_store`): for ablations, never a result. Only ``height``/``width``
of ``--config`` apply to it.

Exit codes: 0 every clip of the shard done; 1 a clip failed (reasons in the manifest and on
stderr) or a bag is damaged; 2 a usage error (one line on stderr); 130 interrupted (Ctrl-C or
SIGTERM; re-run to resume).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vcups_core.configs.pseudo_labels import PseudoLabelConfig
    from vcups_core.pseudo.sources import SourceSpec


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The input options shared by ``vcups pseudo-labels`` and ``vcups semantic-train``
    (read back by :func:`source_spec`)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--bag", nargs="+", metavar="PATH", help="rosbag2 folder(s) or .mcap file(s), one clip each"
    )
    source.add_argument(
        "--frames", nargs="+", metavar="DIR", help="folder(s) of .png/.jpg frames, one clip each"
    )
    source.add_argument(
        "--dataset", metavar="NAME:ROOT", help="a registered dataset, e.g. davis:data/davis2016"
    )
    parser.add_argument("--topic", help="image topic of --bag (raw or compressed)")
    parser.add_argument("--split", help="split of --dataset (default: the reader's)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``vcups pseudo-labels`` options to ``parser``."""
    add_source_arguments(parser)
    parser.add_argument("--out", required=True, help="store folder (created; resumable)")
    parser.add_argument("--config", help="pseudo-label config YAML (default: built-in defaults)")
    parser.add_argument(
        "--shard",
        metavar="I/N",
        help="process clips I, I+N, I+2N, ... (default 0/1; under torchrun RANK/WORLD_SIZE)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a store made with another config (its clips are removed)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--oracle-labels",
        action="store_true",
        help="write the synthetic bag's ground truth as the labels: for ablations, never a result "
        "(--bag only; of --config only height/width apply)",
    )


def resolve_shard(text: str | None) -> tuple[int, int]:
    """The shard from ``--shard`` or torchrun's environment.

    Raises:
        ValueError: a malformed ``--shard``, a bad environment, or both set differently.
    """
    from vcups_core.jobs import parse_shard, shard_from_env

    env = shard_from_env()
    try:
        given = None if text is None else parse_shard(text)
    except ValueError:
        raise ValueError(
            f"--shard {text!r}: expected I/N with 0 <= I < N (shard I of N), e.g. 0/4"
        ) from None
    if given is not None and env is not None and env[1] > 1 and given != env:
        raise ValueError(
            f"--shard {text} conflicts with torchrun's RANK/WORLD_SIZE ({env[0]}/{env[1]}); "
            "pass one of them"
        )
    return given or env or (0, 1)


def source_spec(args: argparse.Namespace) -> SourceSpec:
    """The :class:`~vcups_core.pseudo.sources.SourceSpec` the arguments name.

    Raises:
        ValueError: ``--topic`` missing for ``--bag`` or given without it; ``--split`` without
            ``--dataset``; a malformed ``--dataset``.
    """
    from vcups_core.pseudo.sources import SourceSpec

    if args.topic and not args.bag:
        raise ValueError("--topic only applies to --bag")
    if args.split and not args.dataset:
        raise ValueError("--split only applies to --dataset")
    if args.bag:
        if not args.topic:
            raise ValueError("--bag needs --topic (the image topic; `ros2 bag info` lists them)")
        return SourceSpec.bag([Path(p) for p in args.bag], args.topic)
    if args.frames:
        return SourceSpec.frames([Path(p) for p in args.frames])
    return SourceSpec.parse_dataset(args.dataset, args.split)


def load_pseudo_label_config(path: str | None) -> PseudoLabelConfig:
    """The pseudo-label config from ``path`` (None: the defaults).

    Raises:
        ValueError: the file has config problems (all of them on one line).
    """
    from vcups_core.config import ConfigError, config_from_dict, load_config
    from vcups_core.configs.pseudo_labels import PseudoLabelConfig

    try:
        if path:
            return load_config(path, PseudoLabelConfig)
        return config_from_dict({}, PseudoLabelConfig)
    except ConfigError as exc:
        problems = "; ".join(str(p) for p in exc.problems)
        raise ValueError(f"{exc.source}: config: {problems}") from None


def run_pseudo_labels_cli(args: argparse.Namespace) -> int:
    """Run ``vcups pseudo-labels``; user mistakes raise ``ValueError`` / ``FileNotFoundError``
    (printed as one line by :func:`training.cli.main`)."""
    from vcups_core.pseudo.pipeline import run_pseudo_labels
    from vcups_core.pseudo.store import read_manifest

    shard = resolve_shard(args.shard)
    spec = source_spec(args)
    cfg = load_pseudo_label_config(args.config)
    out = Path(args.out)
    if getattr(args, "oracle_labels", False):
        code = run_oracle_labels(spec, out, cfg, shard=shard, overwrite=args.overwrite)
    else:
        code = run_pseudo_labels(
            spec,
            out,
            cfg,
            shard=shard,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    summary = read_manifest(out)["summary"]
    print(
        f"{out}: {summary['done']} clips done, {summary['failed']} failed, "
        f"{summary['frames']} frames labelled"
        + (f", {len(summary['pending'])} clips pending" if summary["pending"] else "")
        + (f" (shard {shard[0]}/{shard[1]})" if shard[1] > 1 else "")
    )
    if code:
        print(
            f"vcups pseudo-labels: some clips failed; reasons in {out / 'manifest.json'}",
            file=sys.stderr,
        )
    return code


def run_oracle_labels(
    spec: SourceSpec,
    out: Path,
    cfg: PseudoLabelConfig,
    *,
    shard: tuple[int, int] = (0, 1),
    overwrite: bool = False,
) -> int:
    """``--oracle-labels``: the bags' ground truth as a store at ``cfg``'s label size.

    Returns:
        0 if every clip of the shard is done, 1 if any failed.

    Raises:
        ValueError: the source is not ``--bag``, or a bag has no ground-truth topics (as
            :func:`~vcups_core.pseudo.oracle_store.write_oracle_store`).
    """
    from vcups_core.jobs import select_shard
    from vcups_core.pseudo.oracle_store import OracleLabelConfig, write_oracle_store
    from vcups_core.pseudo.store import read_manifest

    if spec.kind != "bag" or spec.topic is None:
        raise ValueError(
            "--oracle-labels needs --bag: synthetic bags with ground truth (vcups synth), not "
            f"--{spec.kind}"
        )
    oracle_cfg = OracleLabelConfig(height=cfg.height, width=cfg.width)
    write_oracle_store(
        spec.paths, out, topic=spec.topic, cfg=oracle_cfg, shard=shard, overwrite=overwrite
    )
    mine = {str(p.resolve()) for p in select_shard(spec.paths, *shard)}
    clips = read_manifest(out)["clips"].values()
    failed = [c for c in clips if c["source"].get("path") in mine and c["status"] != "done"]
    return 1 if failed else 0
