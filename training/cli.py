"""The ``vcups`` command. Each subcommand parses its arguments and calls the library.

Subcommands are listed only once they do something; see ``vcups --help``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from vcups_core import __version__
from vcups_core.config import ConfigError, config_from_dict, load_config, render_yaml
from vcups_core.configs import SCHEMAS
from vcups_core.data.rosbag import BagReadError
from vcups_core.jobs import atomic_write_text, make_output_folder

REPO_CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
_TITLES = {
    "node": "Parameters of perception_node (ROS 2 parameter file; `/**` matches any node name).",
    "model": "Panoptic Cascade MaskTrack R-CNN as in the paper (ResNet-50, 5 thing + 22 stuff).",
    "pseudo_labels": "Pseudo-label generation from raw monocular video.",
    "training": "Training on pseudo-labels (AdamW, Video DropLoss, video copy-paste).",
    "evaluation": "Evaluation protocol: class matching and STQ/VPQ.",
}


def render_default(kind: str, cfg: object | None = None) -> str:
    """Commented YAML of a config kind as stored in ``config/`` (defaults if ``cfg`` is None)."""
    schema, _ = SCHEMAS[kind]
    cfg = schema() if cfg is None else cfg
    title = (
        f"{_TITLES[kind]}\nGenerated from vcups_core/configs by `vcups config write-defaults`; "
        "every key is optional\n(missing keys keep these defaults)."
    )
    return render_yaml(cfg, title=title, ros_node="/**" if kind == "node" else None)


def _cmd_config_show(args: argparse.Namespace) -> int:
    schema, _ = SCHEMAS[args.kind]
    cfg: object = load_config(args.file, schema) if args.file else config_from_dict({}, schema)
    sys.stdout.write(render_default(args.kind, cfg))
    return 0


def _cmd_config_check(args: argparse.Namespace) -> int:
    schema, _ = SCHEMAS[args.kind]
    failed = 0
    for path in args.files:
        try:
            load_config(path, schema)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            failed += 1
        else:
            print(f"{path}: ok ({args.kind})")
    return 2 if failed else 0


def _cmd_config_write_defaults(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    for kind, (_, rel) in SCHEMAS.items():
        path = out / rel
        make_output_folder(path.parent)
        atomic_write_text(path, render_default(kind))
        print(f"wrote {path}")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from training.synth import run_synth

    return run_synth(args)


def _seconds_to_ns(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1e9)


def _cmd_extract(args: argparse.Namespace) -> int:
    from vcups_core.data.extract import extract_frames

    result = extract_frames(
        Path(args.bag),
        args.topic,
        Path(args.out),
        start_ns=_seconds_to_ns(args.start),
        stop_ns=_seconds_to_ns(args.end),
        stride=args.stride,
        progress=not args.quiet,
    )
    print(
        f"{result.total} frames in {result.out_dir} ({result.written} written, "
        f"{result.skipped} already there); index: {result.out_dir / 'index.csv'}"
    )
    for gap in result.gaps:
        print(f"gap: ~{gap.missing} frames missing between {gap.after_ns} and {gap.before_ns} ns")
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from training.replay import ReplayOptions, run_replay

    return run_replay(ReplayOptions.from_args(args))


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import run_evaluate

    return run_evaluate(args)


def _cmd_export(args: argparse.Namespace) -> int:
    from training.export import run_export

    return run_export(args)


def _cmd_pseudo_labels(args: argparse.Namespace) -> int:
    from training.pseudo_labels import run_pseudo_labels_cli

    return run_pseudo_labels_cli(args)


def _cmd_semantic_train(args: argparse.Namespace) -> int:
    from training.semantic_train import run_semantic_train_cli

    return run_semantic_train_cli(args)


def _cmd_train(args: argparse.Namespace) -> int:
    from training.train import run_train_cli

    return run_train_cli(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from training.demo import run_demo_cli

    return run_demo_cli(args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vcups`` (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="vcups",
        description="Unsupervised video panoptic segmentation for robots (VideoCUPS).",
    )
    parser.add_argument("--version", action="version", version=f"vcups {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cfg = sub.add_parser("config", help="show, check or regenerate configuration files")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = cfg_sub.add_parser("show", help="print a config (defaults, or a file merged over them)")
    show.add_argument("kind", choices=sorted(SCHEMAS))
    show.add_argument("--file", help="YAML file to merge over the defaults")
    show.set_defaults(func=_cmd_config_show)
    check = cfg_sub.add_parser("check", help="validate config files; exit 2 if any is invalid")
    check.add_argument("kind", choices=sorted(SCHEMAS))
    check.add_argument("files", nargs="+")
    check.set_defaults(func=_cmd_config_check)
    write = cfg_sub.add_parser("write-defaults", help="write the default config files into DIR")
    write.add_argument("dir", nargs="?", default=str(REPO_CONFIG_DIR))
    write.set_defaults(func=_cmd_config_write_defaults)

    synth = sub.add_parser(
        "synth", help="render a synthetic driving clip with exact ground truth (bag or dataset)"
    )
    synth.add_argument("--out", required=True, help="bag folder or dataset root to create")
    synth.add_argument(
        "--format", default="mcap", choices=["mcap", "sqlite3", "cityscapes-vps", "kitti-step"]
    )
    synth.add_argument("--frames", type=int, default=30, help="clip length (default 30)")
    synth.add_argument("--height", type=int, default=256)
    synth.add_argument("--width", type=int, default=512)
    synth.add_argument("--fps", type=float, default=10.0)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--moving", type=int, default=5, help="independently moving objects")
    synth.add_argument("--static", type=int, default=4, help="parked cars / standing persons")
    synth.add_argument("--speed", type=float, default=10.0, help="typical car speed, m/s")
    synth.add_argument("--ego-speed", type=float, default=8.0, help="camera speed, m/s")
    synth.add_argument(
        "--encoding", default="rgb8", choices=["rgb8", "bgr8"], help="image encoding in bags"
    )
    synth.add_argument("--no-gt", action="store_true", help="bags: omit the /gt/* topics")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.add_argument("--overwrite", action="store_true", help="replace a finished bag at --out")
    synth.set_defaults(func=_cmd_synth)

    extract = sub.add_parser("extract", help="write a bag's camera frames as PNGs plus an index")
    extract.add_argument("bag", help="rosbag2 folder or .mcap file")
    extract.add_argument("--topic", required=True, help="image topic (raw or compressed)")
    extract.add_argument("--out", required=True, help="output folder (resumable)")
    extract.add_argument("--start", type=float, help="start time, seconds (bag log time)")
    extract.add_argument("--end", type=float, help="end time, seconds (exclusive)")
    extract.add_argument("--stride", type=int, default=1, help="keep every N-th frame")
    extract.add_argument("--quiet", action="store_true", help="no progress bar")
    extract.set_defaults(func=_cmd_extract)

    replay = sub.add_parser(
        "replay", help="run the streaming segmenter on a bag: PanopticTrackArray bag, video, report"
    )
    from training.replay import add_arguments as add_replay_arguments

    add_replay_arguments(replay)
    replay.set_defaults(func=_cmd_replay)

    ev = sub.add_parser(
        "evaluate",
        help="STQ/AQ/SQ and VPQ of a checkpoint (or the oracle) on a dataset folder, or of "
        "predictions stored in a dataset's format",
        description="Run form: --checkpoint C | --oracle, --dataset NAME:ROOT, --out DIR "
        "(predictions in the dataset's format under DIR/predictions, DIR/report.json; resumable "
        "per clip, --shard I/N or torchrun; a split without labels, e.g. --split test, is "
        "exported with --class-mapping, not scored). Stored form: --dataset NAME --gt ROOT "
        "--pred ROOT --out REPORT.json.",
    )
    predictor = ev.add_mutually_exclusive_group()
    predictor.add_argument(
        "--checkpoint", help="run this model (.pt; .onnx or .engine with --backend)"
    )
    predictor.add_argument(
        "--oracle",
        action="store_true",
        help="run the ground truth as the predictor (checks the path: it must score 1.0)",
    )
    ev.add_argument(
        "--dataset",
        metavar="NAME[:ROOT]",
        help="NAME:ROOT to run on (with --checkpoint/--oracle), or the NAME of --gt/--pred "
        "(default: the config's dataset); NAME is one of cityscapes-vps, kitti-step, mots, waymo",
    )
    ev.add_argument("--config", help="evaluation config YAML (default: config/evaluation.yaml's)")
    ev.add_argument("--gt", help="stored form: ground-truth root (the dataset's layout)")
    ev.add_argument("--pred", help="stored form: predictions root, same layout and encoding")
    ev.add_argument("--split", help="split (default: the reader's, e.g. val)")
    ev.add_argument(
        "--match",
        default=None,
        choices=["hungarian", "none"],
        help="map pseudo-classes to classes (hungarian), or take them as class ids",
    )
    ev.add_argument(
        "--class-mapping",
        metavar="REPORT",
        help="run form: map categories to classes as in this report.json of a run of the same "
        "checkpoint on a labelled split (needed for a split without labels, e.g. --split test, "
        "which is exported, not scored; on a labelled split it replaces the matching)",
    )
    ev.add_argument(
        "--out",
        required=True,
        help="run form: output folder (resumable); stored form: JSON report, PNG plots next to it",
    )
    ev.add_argument(
        "--shard",
        metavar="I/N",
        help="run form: stream clips I, I+N, ... (default 0/1; under torchrun RANK/WORLD_SIZE); "
        "the run finishing the last clip writes predictions and report",
    )
    ev.add_argument(
        "--node-config",
        help="run form: node parameters YAML (config/perception.yaml): its streaming section "
        "(score threshold, stuff area limit, tracker, smoothing) and model section (backend, "
        "device, half, model config, engine cache); default: the built-in defaults",
    )
    ev.add_argument(
        "--stuff-area-limit",
        type=int,
        default=None,
        help="run form: stuff segments with fewer pixels become void (overrides "
        "streaming.stuff_area_limit of --node-config; default -1: the model's "
        "inference.stuff_area_limit)",
    )
    ev.add_argument(
        "--backend",
        default=None,
        choices=["torch", "onnxruntime", "tensorrt"],
        help="run form: inference backend of --checkpoint (default: model.backend of "
        "--node-config, torch)",
    )
    ev.add_argument(
        "--device",
        default=None,
        help="run form: cpu, cuda or cuda:<i> (cuda: one GPU per torchrun rank; default: "
        "model.device of --node-config, cpu)",
    )
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=_cmd_evaluate)

    from training.export import add_arguments as add_export_arguments

    export = sub.add_parser(
        "export", help="checkpoint -> ONNX with an onnxruntime parity check (+ TensorRT engine)"
    )
    add_export_arguments(export)
    export.set_defaults(func=_cmd_export)

    from training.pseudo_labels import add_arguments as add_pseudo_label_arguments

    pseudo = sub.add_parser(
        "pseudo-labels",
        help="bags, frame folders or a dataset -> pseudo-label store (resumable, --shard I/N)",
    )
    add_pseudo_label_arguments(pseudo)
    pseudo.set_defaults(func=_cmd_pseudo_labels)

    from training.semantic_train import add_arguments as add_semantic_train_arguments

    semantic = sub.add_parser(
        "semantic-train",
        help="frames -> semantic clusters file (semantics.weights of vcups pseudo-labels)",
    )
    add_semantic_train_arguments(semantic)
    semantic.set_defaults(func=_cmd_semantic_train)

    from training.train import add_arguments as add_train_arguments

    train = sub.add_parser(
        "train",
        help="pseudo-label store -> trained checkpoint (resumable; torchrun for several GPUs)",
    )
    add_train_arguments(train)
    train.set_defaults(func=_cmd_train)

    from training.demo import add_arguments as add_demo_arguments

    demo = sub.add_parser(
        "demo",
        help="raw video -> pseudo-labels -> trained model -> replay, perception_node, scores "
        "(cached steps; synthetic drives, --bag or --davis)",
    )
    add_demo_arguments(demo)
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vcups`` console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"vcups: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError, ImportError) as exc:
        # a missing or unwritable path, a bad value, an optional package missing (TensorRT,
        # onnxruntime: the message says what to install)
        print(f"vcups {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BagReadError as exc:
        print(f"vcups {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vcups: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
