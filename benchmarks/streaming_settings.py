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

With ``--davis ROOT`` (DAVIS-2016, flat or official layout; ``--davis-clips`` to choose
sequences, default all) a second table scores the same settings **class-agnostically** on the
DAVIS clips, for a checkpoint trained on DAVIS pseudo-labels (``make demo DAVIS=...``). DAVIS
masks carry no classes and one annotated object per clip, so:

* the clips are written as bags (camera topic only) at ``--davis-height`` rows, width keeping the
  aspect ratio (even), resized as ``vcups demo --davis`` does (default 128: the demo's size, so
  the model sees what it trained on), and run through the same streaming path;
* *AQ*: the project's :class:`~vcups_core.metrics.STQuality` with two classes: ground truth =
  the thing class with track id 1 on the object mask, stuff elsewhere; prediction = every pixel
  of a predicted thing instance (a thing category with a track id) as the thing class with its
  track id, stuff elsewhere. One GT tube per clip, so the pooled AQ is the mean of the clips';
* *union J*, *best-track J*, *#ids cov.*, *#ids*: as ``benchmarks/pseudo_instances.py`` defines
  them (its :func:`davis_scores`), on the predicted track ids of thing pixels;
* the network runs once per frame and every setting gets copies of its output (the settings
  change only what comes after it; ``--davis-rerun-network`` runs it again for each);
* the clips the model did not train on are marked: ``--davis-heldout`` names one; by default
  the demo's ``report.json`` next to the checkpoint (``<out>/train/model_final.pt`` ->
  ``<out>/report.json``) tells (its held-out clip, or every clip if it trained on another
  source), else the shortest clip is assumed held out (the demo's rule).

    .venv/bin/python benchmarks/streaming_settings.py --checkpoint CKPT [--eval-seeds 401 402 403]
        [--frames 24] [--size 128x256] [--json OUT] [--work DIR]
        [--davis ROOT [--davis-clips A B] [--davis-height 128] [--davis-heldout NAME]
         [--skip-synthetic]]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "benchmarks"))  # pseudo_instances.davis_scores

from pseudo_instances import davis_scores  # noqa: E402  (benchmarks/pseudo_instances.py)

from vcups_core.config import apply_overrides  # noqa: E402
from vcups_core.configs.node import NodeConfig  # noqa: E402
from vcups_core.data.rosbag import write_synthetic_bag  # noqa: E402
from vcups_core.data.synthetic import SyntheticWorld  # noqa: E402
from vcups_core.metrics import STQuality  # noqa: E402
from vcups_core.metrics.tables import text_table  # noqa: E402
from vcups_core.train.heldout import bag_ground_truth, model_frames, score_frames  # noqa: E402

KEYS = ("STQ", "AQ", "SQ", "AQ_moving", "AQ_static")
MASKTRACK = [
    "streaming.tracker.mask_iou_weight=0",
    "streaming.tracker.propagation_bonus=false",
    "streaming.tracker.assignment=greedy",
    "streaming.tracker.max_age=10000",
]
VARIANTS: dict[str, list[str]] = {
    "masktrack": MASKTRACK,
    "+mask_iou": [*MASKTRACK[1:]],
    "+bonus": [*MASKTRACK[2:]],
    "+hungarian": [MASKTRACK[3]],
    "defaults": [],
    "defaults, no smoothing": ["streaming.smoothing.enabled=false"],
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


# --------------------------------------------------------------------------------------------------
# DAVIS-2016, class-agnostic

DAVIS_KEYS = ("AQ", "union_j", "best_track_j", "ids_covering", "ids")
CAMERA = "/camera/image_raw"


@dataclasses.dataclass(frozen=True)
class DavisClip:
    """One DAVIS sequence as a bag at the processing size, with its object masks by stamp."""

    name: str  # the bag's name: davis_<sequence>, as the demo names it
    bag: Path
    masks: dict[int, npt.NDArray[np.bool_]]


def fit_size(native: tuple[int, int], height: int) -> tuple[int, int]:
    """``height`` rows and the even width that keeps ``native``'s aspect (``vcups demo``'s)."""
    return height, max(2, 2 * round(height * native[1] / native[0] / 2))


def davis_bags(root: Path, names: Sequence[str] | None, height: int, work: Path) -> list[DavisClip]:
    """The chosen sequences of ``root`` as camera bags under ``work`` (kept and reused)."""
    import cv2

    from vcups_core.data.davis import read_davis
    from vcups_core.data.rosbag import BagWriter
    from vcups_core.jobs import StagedOutput
    from vcups_core.pseudo.sources import resize_image

    clips = list(read_davis(root))
    known = [c.name for c in clips]
    if names:
        missing = [n for n in names if n not in known]
        if missing:
            raise SystemExit(f"--davis-clips {missing}: not in {root} ({', '.join(known)})")
        clips = [c for c in clips if c.name in names]
    out = []
    for clip in clips:
        size = fit_size(clip.frames[0].image().image.shape[:2], height)
        bag = work / f"davis_{size[0]}x{size[1]}" / f"davis_{clip.name}"
        if not bag.exists():
            with StagedOutput(bag) as staged, BagWriter(staged.path) as writer:
                for frame in clip.frames:
                    rgb = resize_image(frame.image().image, size)
                    writer.write_rgb(CAMERA, rgb, frame.stamp_ns, "camera")
        masks = {}
        for frame in clip.frames:
            label = frame.label()
            if label is not None:
                obj = (label.instance > 0).astype(np.uint8)
                small = cv2.resize(obj, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
                masks[frame.stamp_ns] = small.astype(bool)
        out.append(DavisClip(f"davis_{clip.name}", bag, masks))
    return out


def demo_heldout(checkpoint: Path) -> tuple[str, list[str]] | None:
    """The source and held-out bags named by the demo's ``report.json`` next to ``checkpoint``
    (``<out>/train/model_final.pt`` -> ``<out>/report.json``), if there is one."""
    report = Path(checkpoint).resolve().parent.parent / "report.json"
    if not report.is_file():
        return None
    setup = json.loads(report.read_text()).get("setup", {})
    return str(setup.get("source")), [str(h) for h in setup.get("heldout_drives", [])]


def class_agnostic(
    predictions: Any, clips: Sequence[DavisClip]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Pooled AQ and, per clip, AQ, union J, best-track J and track counts (module docstring)."""

    is_thing = np.zeros(256, bool)
    is_thing[: len(predictions.is_thing)] = predictions.is_thing
    stq = STQuality(2, {1})
    by_name = {c.name: c for c in clips}
    per_clip: dict[str, dict[str, Any]] = {}
    for drive in predictions.drives:
        clip = by_name[drive.name]
        labels, gts = [], []
        for stamp, sem, inst in zip(drive.stamps, drive.semantic, drive.instance, strict=True):
            gt = clip.masks.get(stamp)
            if gt is None:
                continue  # an unannotated frame (every DAVIS-2016 frame is annotated)
            if gt.shape != sem.shape:
                raise ValueError(f"{drive.name}: prediction {sem.shape} != mask {gt.shape}")
            thing = is_thing[sem] & (inst > 0)
            pred_inst = np.where(thing, inst, 0).astype(np.int32)
            stq.update(
                gt.astype(np.uint8),
                gt.astype(np.int32),
                thing.astype(np.uint8),
                pred_inst,
                sequence_id=drive.name,
            )
            labels.append(pred_inst)
            gts.append(gt)
        per_clip[drive.name] = davis_scores(labels, gts)
    result = stq.result()
    for name, row in per_clip.items():
        row["AQ"] = float(result["AQ_per_seq"][name])
    pooled = {"AQ": float(result["AQ"])}
    for key in DAVIS_KEYS[1:]:
        pooled[key] = float(np.mean([r[key] for r in per_clip.values()]))
    return pooled, per_clip


class CachedPredictor:
    """A predictor that runs the network once per distinct image and hands out deep copies (a
    predictor's arrays belong to the receiver). The network's output does not depend on the
    tracker or smoothing settings, so every setting sees the same predictions, computed once."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._cache: dict[tuple[bytes, tuple[int, ...]], Any] = {}

    def predict(self, image: npt.NDArray[np.uint8]) -> Any:
        data = np.ascontiguousarray(image)
        key = (hashlib.blake2b(data.tobytes(), digest_size=16).digest(), data.shape)
        if key not in self._cache:
            self._cache[key] = self._inner.predict(image)
        return copy.deepcopy(self._cache[key])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def run_davis(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    clips = davis_bags(Path(args.davis), args.davis_clips, args.davis_height, work)
    demo = demo_heldout(Path(args.checkpoint))
    if args.davis_heldout:
        held, how = [f"davis_{args.davis_heldout}"], "--davis-heldout"
    elif demo is not None and demo[0] == "davis":
        held, how = demo[1], "the demo's report.json"
    elif demo is not None:  # trained on another source: no DAVIS clip was seen in training
        held, how = [c.name for c in clips], f"the demo's report.json: trained on {demo[0]}"
    else:
        held = [min(clips, key=lambda c: (len(c.masks), c.name)).name]
        how = "assumed: the shortest clip, the demo's rule"
    out: dict[str, Any] = {
        "size": list(next(iter(clips[0].masks.values())).shape),
        "heldout": held,
        "heldout_from": how,
        "network": "per setting" if args.davis_rerun_network else "once, shared",
        "frames": {c.name: len(c.masks) for c in clips},
        "settings": {},
    }
    shared = None
    if not args.davis_rerun_network:
        from vcups_core.config import replace
        from vcups_core.model.predictors import load_predictor

        model = replace(NodeConfig().model, checkpoint=str(args.checkpoint), device="cpu")
        shared = CachedPredictor(load_predictor(model))
    for name, overrides in VARIANTS.items():
        out["settings"][name] = davis_setting(args, clips, name, overrides, shared)
    return out


def davis_setting(
    args: argparse.Namespace,
    clips: Sequence[DavisClip],
    name: str,
    overrides: list[str],
    predictor: CachedPredictor | None = None,
) -> dict[str, Any]:
    """One setting through the streaming path on every clip, scored class-agnostically
    (``predictor``: the shared network, else the checkpoint is opened again)."""
    node = apply_overrides(NodeConfig(), overrides, NodeConfig)
    t0 = time.perf_counter()
    preds = model_frames(
        Path(args.checkpoint), [c.bag for c in clips], node=node, predictor=predictor
    )
    seconds = time.perf_counter() - t0
    pooled, per_clip = class_agnostic(preds, clips)
    print(
        f"  DAVIS {name}: AQ {pooled['AQ']:.3f} union J {pooled['union_j']:.3f} best-track J "
        f"{pooled['best_track_j']:.3f} ({seconds:.0f} s)",
        flush=True,
    )
    return {"mean": pooled, "clips": per_clip, "seconds": seconds}


def print_davis(res: dict[str, Any]) -> None:
    header = ["clip", "setting", "AQ", "union J", "best-track J", "#ids cov.", "#ids"]
    rows: list[list[str]] = []
    for clip, frames in res["frames"].items():
        mark = " (not trained on)" if clip in res["heldout"] else " (trained on)"
        for name, r in res["settings"].items():
            c = r["clips"][clip]
            rows.append(
                [
                    f"{clip}{mark}, {frames} fr.",
                    name,
                    *(f"{c[k]:.3f}" for k in ("AQ", "union_j", "best_track_j")),
                    str(c["ids_covering"]),
                    str(c["ids"]),
                ]
            )
    for name, r in res["settings"].items():
        m = r["mean"]
        rows.append(
            [
                f"mean of {len(res['frames'])} clips",
                name,
                *(f"{m[k]:.3f}" for k in ("AQ", "union_j", "best_track_j")),
                f"{m['ids_covering']:.2f}",
                f"{m['ids']:.2f}",
            ]
        )
    h, w = res["size"]
    print(
        f"\nDAVIS-2016, class-agnostic (one thing class; the annotated object vs every predicted "
        f"thing instance), {h}x{w}; not trained on: {', '.join(res['heldout'])} "
        f"({res['heldout_from']})"
    )
    print(text_table(header, rows))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--eval-seeds", type=int, nargs="+", default=[401, 402, 403])
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--size", type=parse_size, default=(128, 256))
    p.add_argument("--json")
    p.add_argument("--work", help="folder for the held-out bags (default: temporary)")
    p.add_argument("--davis", help="also score the settings on DAVIS-2016 clips of this root")
    p.add_argument("--davis-clips", nargs="+", help="DAVIS sequences to score (default: all)")
    p.add_argument(
        "--davis-height",
        type=int,
        default=128,
        help="DAVIS rows, width keeping the aspect (default 128, the demo's)",
    )
    p.add_argument(
        "--davis-heldout",
        help="the DAVIS sequence not trained on (default: from the demo's report.json, else the "
        "shortest)",
    )
    p.add_argument(
        "--davis-rerun-network",
        action="store_true",
        help="DAVIS: run the network again for every setting (default: once, shared)",
    )
    p.add_argument("--skip-synthetic", action="store_true", help="only the DAVIS table")
    args = p.parse_args(argv)
    if args.skip_synthetic and not args.davis:
        p.error("--skip-synthetic needs --davis")
    res: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        if args.work:
            work = Path(args.work)
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vcups_streaming_")))
        if not args.skip_synthetic:
            res["synthetic"] = run(args, work)
            print(
                text_table(
                    ["setting", *KEYS],
                    [[n] + [f"{r[k]:.3f}" for k in KEYS] for n, r in res["synthetic"].items()],
                )
            )
        if args.davis:
            res["davis"] = run_davis(args, work)
            print_davis(res["davis"])
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
