"""Render speed of the synthetic world (issue target: a 30-frame 512x1024 clip well under 1 s/frame).

Prints one table: seconds per frame for full renders (RGB + semantic + instances + depth + both
flows + motion mask), and, as the same-run baseline, the time to merely fill and copy output
arrays of the same size once (the memory floor any renderer pays).

    .venv/bin/python benchmarks/bench_synthetic.py [--height 512 --width 1024 --frames 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from vcups_core.data.synthetic import SyntheticWorld

TARGET_S = 1.0


def floor_seconds(height: int, width: int, repeats: int = 5) -> float:
    """Fill + copy of the output arrays of one frame (rgb, semantic, instance, depth, 2 flows)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        arrays = [
            np.full((height, width, 3), 1, np.uint8),
            np.full((height, width), 1, np.uint8),
            np.full((height, width), 1, np.int32),
            np.full((height, width), 1, np.float32),
            np.full((height, width, 2), 1, np.float32),
            np.full((height, width, 2), 1, np.float32),
        ]
        _ = [a.copy() for a in arrays]
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--frames", type=int, default=30)
    args = parser.parse_args()

    world = SyntheticWorld(height=args.height, width=args.width, num_frames=args.frames, seed=0)
    times = []
    for frame_index in range(args.frames):
        t0 = time.perf_counter()
        world.render(frame_index)
        times.append(time.perf_counter() - t0)
    floor = floor_seconds(args.height, args.width)
    mean = statistics.fmean(times)
    rows = [
        ("render, mean", mean),
        ("render, median", statistics.median(times)),
        ("render, max", max(times)),
        ("baseline: fill+copy outputs", floor),
    ]
    print(
        f"synthetic world, {args.frames} frames at {args.height}x{args.width}, "
        f"{len(world.objects)} objects"
    )
    print(f"{'measure':32s} {'s/frame':>9s} {'x baseline':>11s}")
    for name, value in rows:
        print(f"{name:32s} {value:9.3f} {value / floor:11.1f}")
    verdict = "meets" if mean < TARGET_S else "MISSES"
    print(
        f"target: mean < {TARGET_S:.1f} s/frame -> {verdict} ({mean:.3f} s, {args.frames / sum(times):.1f} fps)"
    )


if __name__ == "__main__":
    main()
