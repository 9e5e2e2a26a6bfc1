"""``vcups synth``: render a synthetic clip into a rosbag2 or a benchmark-format dataset folder.

A bag is written under a temporary name and renamed when finished: Ctrl-C, SIGTERM or SIGKILL
leave nothing at ``--out`` and the same command run again writes it from scratch. A dataset
folder that does not exist yet is staged the same way; into an existing one the clip's files are
written in place (replacing those of the same names, as the dataset writers do).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vcups_core.data.clip import LabeledClip, PanopticLabel
from vcups_core.data.synthetic import SyntheticWorld
from vcups_core.jobs import StagedOutput, terminate_as_interrupt


def make_world(args: argparse.Namespace) -> SyntheticWorld:
    return SyntheticWorld(
        height=args.height,
        width=args.width,
        num_frames=args.frames,
        fps=args.fps,
        seed=args.seed,
        num_moving=args.moving,
        num_static=args.static,
        object_speed=args.speed,
        ego_speed=args.ego_speed,
    )


def run_synth(args: argparse.Namespace) -> int:
    """Write the clip; returns the exit code (Ctrl-C and SIGTERM raise KeyboardInterrupt)."""
    with terminate_as_interrupt():
        return _synth(args)


def _synth(args: argparse.Namespace) -> int:
    world = make_world(args)
    out = Path(args.out)
    if args.format in ("mcap", "sqlite3"):
        from vcups_core.data.rosbag import write_synthetic_bag

        write_synthetic_bag(
            world,
            out,
            storage=args.format,
            encoding=args.encoding,
            ground_truth=not args.no_gt,
            progress=not args.quiet,
            overwrite=bool(getattr(args, "overwrite", False)),
        )
        print(
            f"wrote {out} ({args.format}): {args.frames} frames {args.width}x{args.height}, "
            f"topics /camera/image_raw, /camera/camera_info"
            + ("" if args.no_gt else ", /gt/semantic, /gt/instance, /gt/depth")
        )
        return 0
    clip = labeled_clip(world, every=5 if args.format == "cityscapes-vps" else 1)
    if args.format == "cityscapes-vps":
        from vcups_core.data.cityscapes_vps import write_cityscapes_vps as write
    else:
        from vcups_core.data.kitti_step import write_kitti_step as write
    if out.exists():
        write([clip], out, split="val")
    else:
        with StagedOutput(out) as staged:
            write([clip], staged.path, split="val")
    labeled = sum(label is not None for label in clip.labels)
    print(
        f"wrote {out} ({args.format}, split val): 1 clip of {args.frames} frames, {labeled} labeled"
    )
    return 0


def labeled_clip(world: SyntheticWorld, every: int) -> LabeledClip:
    """The world's frames with ground truth on every ``every``-th frame (positions every-1, ...)."""
    images, labels = [], []
    for frame in world.frames():
        images.append(frame.rgb)
        annotated = (frame.index + 1) % every == 0
        labels.append(PanopticLabel(frame.semantic, frame.instance) if annotated else None)
    return LabeledClip(name="1", images=tuple(images), labels=tuple(labels))
