"""``vcups synth``: render a synthetic clip into a rosbag2 or a benchmark-format dataset folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from vcups_core.data.synthetic import SyntheticWorld


def make_world(args: argparse.Namespace) -> SyntheticWorld:
    return SyntheticWorld(
        height=args.height,
        width=args.width,
        num_frames=args.frames,
        fps=args.fps,
        seed=args.seed,
        num_moving=args.moving,
        num_static=args.static,
    )


def run_synth(args: argparse.Namespace) -> int:
    """Write the clip; returns the exit code."""
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
        )
        print(
            f"wrote {out} ({args.format}): {args.frames} frames {args.width}x{args.height}, "
            f"topics /camera/image_raw, /camera/camera_info"
            + ("" if args.no_gt else ", /gt/semantic, /gt/instance, /gt/depth")
        )
        return 0
    raise ValueError(f"--format {args.format}: not supported")
