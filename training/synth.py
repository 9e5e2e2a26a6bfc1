"""``vcups synth``: render a synthetic clip into a rosbag2 or a benchmark-format dataset folder.

A bag is written under a temporary name and renamed when finished: Ctrl-C, SIGTERM or SIGKILL
leave nothing at ``--out`` and the same command run again writes it from scratch. A dataset
folder that does not exist yet is staged the same way; into an existing one the clip's files are
written in place (replacing those of the same names, as the dataset writers do).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vcups_core.checks import check_fits_in_memory
from vcups_core.data.clip import LabeledClip, PanopticLabel
from vcups_core.data.synthetic import SyntheticWorld, world_bytes
from vcups_core.jobs import OutputPathError, StagedOutput, terminate_as_interrupt


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
    # a dataset is written from the whole clip in memory: RGB, semantic and instance per frame
    held = args.frames * args.height * args.width * (3 + 1 + 4)
    check_fits_in_memory(
        held + world_bytes(args.height, args.width, args.frames, args.fps, args.ego_speed),
        f"--format {args.format} --frames {args.frames} at {args.width}x{args.height}",
    )
    every = 5 if args.format == "cityscapes-vps" else 1
    from vcups_core.data.cityscapes_vps import write_cityscapes_vps
    from vcups_core.data.kitti_step import write_kitti_step

    def write(clips: list[LabeledClip], root: Path, split: str) -> None:
        if args.format == "cityscapes-vps":
            write_cityscapes_vps(clips, root, split)
        else:
            write_kitti_step(clips, root, split)

    if out.exists():
        if not out.is_dir():
            raise OutputPathError(f"--out {out}: is a file; a dataset is written into a folder")
        clip = labeled_clip(world, every)
        write([clip], out, split="val")
    else:
        with StagedOutput(out) as staged:  # the folder is checked before the frames are drawn
            clip = labeled_clip(world, every)
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
