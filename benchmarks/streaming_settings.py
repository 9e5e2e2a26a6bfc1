"""Tracker and semantic smoothing of the streaming path, decided on a trained model's predictions
(issue "End to end": MaskTrack alone vs the additions, smoothing on vs off).

A checkpoint (from ``benchmarks/train_synthetic.py`` or ``vcups train``) runs through the node's
streaming path (:func:`vcups_core.train.heldout.model_frames`) on held-out synthetic drives with
each tracker setting, scored with the protocol (STQ/AQ/SQ; AQ on moving and static objects):

* ``masktrack``: method §3.3 alone: embedding similarity, log score, box IoU, same class, greedy
  matching by detection score, tracks kept for the whole drive (``max_age`` 10000), no mask IoU;
* ``+mask_iou``: plus the mask-IoU term with recently seen tracks (``mask_iou_weight`` 2);
* ``+bonus``: plus the propagation bonus (mask IoU >= 0.4 adds the same-class weight);
* ``+hungarian``: plus the optimal one-to-one assignment;
* ``defaults``: plus ``max_age`` 30 (the node's defaults);
* ``defaults, no smoothing``: the node's defaults with semantic smoothing off.

    .venv/bin/python benchmarks/streaming_settings.py --checkpoint CKPT [--eval-seeds 401 402 403]
        [--frames 24] [--size 128x256] [--json OUT]

DAVIS is not scored here: its masks carry no classes and a model trained on synthetic drives
does not transfer to it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vcups_core.config import apply_overrides  # noqa: E402
from vcups_core.configs.node import NodeConfig  # noqa: E402
from vcups_core.data.rosbag import write_synthetic_bag  # noqa: E402
from vcups_core.data.synthetic import SyntheticWorld  # noqa: E402
from vcups_core.metrics.tables import text_table  # noqa: E402
from vcups_core.train.heldout import bag_ground_truth, model_frames, score_frames  # noqa: E402

KEYS = ("STQ", "AQ", "SQ", "AQ_moving", "AQ_static")
MASKTRACK = [
    "tracker.mask_iou_weight=0",
    "tracker.propagation_bonus=false",
    "tracker.assignment=greedy",
    "tracker.max_age=10000",
]
VARIANTS: dict[str, list[str]] = {
    "masktrack": MASKTRACK,
    "+mask_iou": [*MASKTRACK[1:]],
    "+bonus": [*MASKTRACK[2:]],
    "+hungarian": [MASKTRACK[3]],
    "defaults": [],
    "defaults, no smoothing": ["smoothing.enabled=false"],
}


def parse_size(text: str) -> tuple[int, int]:
    h, _, w = text.partition("x")
    return int(h), int(w)


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    bags, moving = [], {}
    for seed in args.eval_seeds:
        world = SyntheticWorld(
            height=args.size[0], width=args.size[1], num_frames=args.frames, seed=seed
        )
        bag = work / f"eval_{seed}"
        if not bag.exists():
            write_synthetic_bag(world, bag, progress=False)
        bags.append(bag)
        moving[bag.name] = [o.track_id for o in world.objects if o.moving]
    truth = [bag_ground_truth(b) for b in bags]
    out: dict[str, Any] = {}
    for name, overrides in VARIANTS.items():
        node = apply_overrides(NodeConfig(), overrides, NodeConfig)
        report = score_frames(model_frames(Path(args.checkpoint), bags, node=node), truth, moving)
        out[name] = {k: float(report[k]) for k in KEYS}
        print(f"  {name}: STQ {out[name]['STQ']:.3f} AQ {out[name]['AQ']:.3f}", flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--eval-seeds", type=int, nargs="+", default=[401, 402, 403])
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--size", type=parse_size, default=(128, 256))
    p.add_argument("--json")
    p.add_argument("--work", help="folder for the held-out bags (default: temporary)")
    args = p.parse_args(argv)
    if args.work:
        Path(args.work).mkdir(parents=True, exist_ok=True)
        res = run(args, Path(args.work))
    else:
        with tempfile.TemporaryDirectory(prefix="vcups_streaming_") as tmp:
            res = run(args, Path(tmp))
    print(
        text_table(
            ["setting", *KEYS], [[n] + [f"{r[k]:.3f}" for k in KEYS] for n, r in res.items()]
        )
    )
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
