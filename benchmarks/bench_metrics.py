"""Speed of STQ and VPQ updates on 1024x2048 frames against one np.bincount pass (the floor).

Targets: STQ update within 3x and VPQ update within 6x of the floor, measured in the same run.
The label maps are synthetic but shaped like driving scenes: a blocky stuff layout with a void
region, ~20 moving thing boxes (some crowd), and a prediction with shifted boundaries, jittered
boxes, class errors, 0.5% speckle noise, voids and tracker ids (unique per stream, so in the
thousands) with ID switches. Each clip is generated once, outside the timings, and reused by every
measurement.

    .venv/bin/python benchmarks/bench_metrics.py [--clips 50 --frames 6 --height 1024 --width 2048]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import numpy.typing as npt

from vcups_core.data.cityscapes_classes import THING_IDS
from vcups_core.metrics import HistogramBuilder, STQuality, VideoPanopticQuality
from vcups_core.types import IGNORE_LABEL

NUM_CLASSES = 19
STQ_TARGET = 3.0
VPQ_TARGET = 6.0

Frame = tuple[
    npt.NDArray[np.uint8], npt.NDArray[np.int32], npt.NDArray[np.uint8], npt.NDArray[np.int32]
]


def stuff_layout(rng: np.random.Generator, height: int, width: int) -> npt.NDArray[np.uint8]:
    """Blocky stuff classes (0..10): a coarse random grid upsampled to the frame."""
    coarse = rng.integers(0, 11, (8, 16)).astype(np.uint8)
    rows = np.minimum(np.arange(height) * 8 // height, 7)
    cols = np.minimum(np.arange(width) * 16 // width, 15)
    return coarse[rows[:, None], cols[None, :]]


def make_clip(
    rng: np.random.Generator, clip: int, frames: int, height: int, width: int, things: int = 20
) -> list[Frame]:
    """One clip of ``(gt_sem, gt_inst, pred_sem, pred_inst)`` frames."""
    gt_stuff = stuff_layout(rng, height, width)
    gt_stuff[: height // 8, : width // 4] = IGNORE_LABEL  # ego vehicle / unlabelled
    # The prediction's stuff boundaries are off by a few pixels, with one wrong block.
    pred_stuff = np.roll(gt_stuff, (3, -5), axis=(0, 1))
    pred_stuff[height // 2 : height // 2 + height // 16, : width // 3] = rng.integers(0, 11)
    boxes = []
    for j in range(things):
        h, w = int(rng.integers(16, height // 5)), int(rng.integers(16, width // 6))
        y, x = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
        cls = int(rng.choice(sorted(THING_IDS)))
        boxes.append((y, x, h, w, cls, int(rng.integers(-25, 25)), j + 1))
    track_ids = rng.permutation(things) + 1 + 97 * clip  # a tracker's ids keep growing
    out: list[Frame] = []
    for t in range(frames):
        gs, ps = gt_stuff.copy(), pred_stuff.copy()
        gi = np.zeros((height, width), np.int32)
        pi = np.zeros((height, width), np.int32)
        for y, x, h, w, cls, vx, iid in boxes:
            x = int(np.clip(x + vx * t, 0, width - w))
            gs[y : y + h, x : x + w] = cls
            gi[y : y + h, x : x + w] = 0 if iid % 7 == 0 else iid  # every 7th box is crowd
            dy, dx = (int(v) for v in rng.integers(-4, 5, 2))
            py, px = int(np.clip(y + dy, 0, height - h)), int(np.clip(x + dx, 0, width - w))
            pcls = cls if iid % 5 else 11 + (cls - 10) % 8  # every 5th box has the wrong class
            tid = track_ids[iid - 1] + (1000 if iid % 6 == 0 and t >= frames // 2 else 0)
            ps[py : py + h, px : px + w] = pcls
            pi[py : py + h, px : px + w] = tid  # every 6th track switches id mid-clip
        ps[height - height // 16 :, width // 2 : width // 2 + width // 8] = IGNORE_LABEL
        speckles = rng.integers(0, height * width, height * width // 200)  # 0.5% noisy pixels
        ps.reshape(-1)[speckles] = rng.integers(0, NUM_CLASSES, len(speckles))
        out.append((gs, gi, ps, pi))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=50)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    things = THING_IDS
    stq = STQuality(NUM_CLASSES, things)
    vpq = VideoPanopticQuality(NUM_CLASSES, things)
    shared_stq = STQuality(NUM_CLASSES, things)
    shared_vpq = VideoPanopticQuality(NUM_CLASSES, things)
    builder = HistogramBuilder(NUM_CLASSES)
    times: dict[str, list[float]] = {k: [] for k in ("floor", "stq", "vpq", "shared", "hist")}
    rows: list[int] = []
    gen_seconds = 0.0
    for clip in range(args.clips):
        t0 = time.perf_counter()
        frames = make_clip(rng, clip, args.frames, args.height, args.width)
        floor_input = [f[0].reshape(-1).astype(np.intp) for f in frames]
        gen_seconds += time.perf_counter() - t0
        for frame, flat in zip(frames, floor_input, strict=True):
            t0 = time.perf_counter()
            np.bincount(flat)
            t1 = time.perf_counter()
            stq.update(*frame, sequence_id=clip)
            t2 = time.perf_counter()
            vpq.update(*frame, sequence_id=clip)
            t3 = time.perf_counter()
            hist = builder(*frame)
            shared_stq.update_histogram(hist, clip)
            shared_vpq.update_histogram(hist, clip)
            t4 = time.perf_counter()
            builder(*frame)
            t5 = time.perf_counter()
            for key, seconds in zip(
                ("floor", "stq", "vpq", "shared", "hist"),
                (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4),
                strict=True,
            ):
                times[key].append(seconds)
            rows.append(len(hist.count))

    floor = statistics.median(times["floor"])
    names = {
        "floor": "floor: np.bincount, 1 pass",
        "hist": "joint histogram only",
        "stq": "STQ update",
        "vpq": "VPQ update (k = 1..4)",
        "shared": "STQ + VPQ, one histogram",
    }
    n = len(times["floor"])
    print(
        f"metrics, {args.clips} clips x {args.frames} frames at {args.height}x{args.width} "
        f"({n} frames, {NUM_CLASSES} classes, ~{statistics.mean(rows):.0f} histogram rows/frame; "
        f"data generation {gen_seconds:.1f} s, not timed)"
    )
    print(f"{'measure':30s} {'median ms':>10s} {'mean ms':>8s} {'x floor':>8s}")
    for key in ("floor", "hist", "stq", "vpq", "shared"):
        med, mean = statistics.median(times[key]), statistics.mean(times[key])
        print(f"{names[key]:30s} {med * 1e3:10.2f} {mean * 1e3:8.2f} {med / floor:8.2f}")
    stq_ratio = statistics.median(times["stq"]) / floor
    vpq_ratio = statistics.median(times["vpq"]) / floor
    for name, ratio, target in (("STQ", stq_ratio, STQ_TARGET), ("VPQ", vpq_ratio, VPQ_TARGET)):
        verdict = "meets" if ratio <= target else "MISSES"
        print(f"target: {name} within {target:.0f}x of the floor -> {verdict} ({ratio:.2f}x)")
    s, v = stq.result(), vpq.result()
    print(f"values: STQ {s['STQ']:.3f} (AQ {s['AQ']:.3f}, SQ {s['SQ']:.3f}), VPQ {v['VPQ']:.3f}")


if __name__ == "__main__":
    main()
