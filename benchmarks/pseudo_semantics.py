"""Quality and speed of the weight-free semantic pseudo-classes (:mod:`vcups_core.cues.semantics`).

Synthetic drives (:class:`~vcups_core.data.synthetic.SyntheticWorld`, ``--size`` 256x512,
``--frames`` 20 per clip). The clusterer (27 pseudo-classes, seeded) is fitted without labels
on pixels sampled from the frames of ``--fit-seeds`` (default 11 12 13: other drives, the
held-out protocol) or, with ``--fit same``, on the evaluation clips' own frames (transductive:
legitimate for an unsupervised method fitted on the user's own video); ``--fit both`` runs both.
It is evaluated on every pixel of every frame of ``--eval-seeds`` (default 201 202 203).

Methods:

* **rgb+row (baseline)**: k-means 27 on (R, G, B, image row), standardised, with the same
  sampling and k-means code (:class:`~vcups_core.cues.semantics.SemanticClusterer`), Euclidean
  (Lloyd) and cosine (spherical) k-means; the better of the two is the baseline the ratio
  divides by.
* **features**: :func:`~vcups_core.cues.semantics.pixel_features` (colour, texture, position,
  depth cues) clustered by the same clusterer, in the rows of ``FEATURE_ROWS``: the default
  weights (Lab + row), the cosine metric, Lab + row with the depth columns at weight 0.3, and
  every column at weight 1; for the depth variants ``oracle`` (the world's z-depth; sky =
  unknown), ``parallax`` (the default weight-free depth,
  :func:`~vcups_core.cues.build.build_cue_pipeline` of ``PseudoLabelConfig()`` run on the clip:
  DIS flow, essential-matrix camera, triangulation) and ``none``. The focal length passed to the
  features is the world's.

* **DepthG** (only with ``--backbone-weights FILE``, a local DINO checkpoint; none exists in this
  repository, so the row is skipped by default): ``vcups semantic-train --backbone-weights``'s
  model (:mod:`vcups_core.pseudo.depthg_train`, ``--depthg-steps`` steps on ``--device``) trained
  on the fit clips' frames (written to a temporary folder, parallax depth), evaluated with
  depth-guided inference with the parallax depth and without depth.

Metric: semantic mIoU after matching the 27 pseudo-classes to the GT classes
(:func:`vcups_core.metrics.match_classes` without the thing/stuff split, as CUPS computes mIoU,
``docs/method.md`` §6.1 item 5): the pixel confusion is accumulated over the whole evaluation set,
restricted to the GT classes present in it (the synthetic world has 10 of the 19), Hungarian
pairs one pseudo-class per GT class and every other pseudo-class goes to its majority class;
the mIoU is the mean IoU over the present GT classes (GT void excluded). Target: >= 2x the
baseline. *s/frame*: pixel features + probe at full resolution (stride 1), median over the
evaluation frames; the depth cue's own cost is printed separately (parallax: the whole cue
pipeline per frame, flow included, which the instance pseudo-labels share).

    .venv/bin/python benchmarks/pseudo_semantics.py [--fit other|same|both] [--fit-seeds 11 12 13]
        [--eval-seeds 201 202 203] [--frames 20] [--size 256x512] [--fit-stride 2] [--json OUT]
        [--backbone-weights FILE [--depthg-steps N] [--device cuda]]

About 2-3 minutes on 2 shared cores with the defaults.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from vcups_core.configs.pseudo_labels import PseudoLabelConfig
from vcups_core.cues.build import build_cue_pipeline
from vcups_core.cues.semantics import (
    DEFAULT_FEATURE_WEIGHTS,
    DEPTH_FEATURES,
    Metric,
    SemanticClusterer,
    pixel_features,
    rgb_row_features,
)
from vcups_core.data.synthetic import SyntheticWorld
from vcups_core.metrics import confusion_from, iou_from_confusion, match_classes
from vcups_core.metrics.tables import text_table
from vcups_core.types import IGNORE_LABEL, VideoFrame

NUM_GT = 19
NUM_PSEUDO = 27
TARGET_RATIO = 2.0
DEPTH_VARIANTS = ("oracle", "parallax", "none")
F32 = npt.NDArray[np.float32]
Features = Callable[[npt.NDArray[np.uint8], "F32 | None", int, float], F32]


@dataclass
class Clip:
    seed: int
    rgb: list[npt.NDArray[np.uint8]]
    semantic: list[npt.NDArray[np.uint8]]
    depth: dict[str, list[F32 | None]]
    focal: float
    depth_seconds: dict[str, float] = field(default_factory=dict)


def parse_size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def render_clip(seed: int, frames: int, size: tuple[int, int]) -> Clip:
    """RGB, GT semantics, oracle and parallax depth of one synthetic drive."""
    world = SyntheticWorld(height=size[0], width=size[1], num_frames=frames, seed=seed)
    rendered = [world.render(i) for i in range(frames)]
    oracle: list[F32 | None] = []
    for r in rendered:
        d = r.depth.astype(np.float32).copy()
        d[~np.isfinite(d)] = np.nan  # sky: unknown, as the parallax cue leaves it
        oracle.append(d)
    video = [VideoFrame(r.rgb, r.stamp_ns, "synthetic", r.index) for r in rendered]
    pipeline = build_cue_pipeline(PseudoLabelConfig())
    start = time.perf_counter()
    parallax: list[F32 | None] = [c.depth for c in pipeline.run(video, world.intrinsics)]
    parallax_s = (time.perf_counter() - start) / frames
    return Clip(
        seed,
        [r.rgb for r in rendered],
        [r.semantic for r in rendered],
        {"oracle": oracle, "parallax": parallax, "none": [None] * frames},
        float(world.intrinsics[0, 0]),
        {"oracle": 0.0, "parallax": parallax_s, "none": 0.0},
    )


def rgb_row_baseline_features(
    image: npt.NDArray[np.uint8], depth: F32 | None, stride: int, focal: float
) -> F32:
    """The RGB + row baseline features in this benchmark's feature-function shape."""
    del depth, focal
    return rgb_row_features(image, stride)


def full_features(
    image: npt.NDArray[np.uint8], depth: F32 | None, stride: int, focal: float
) -> F32:
    return pixel_features(image, depth, stride=stride, focal_px=focal)


def fit_clusterer(
    clips: Sequence[Clip],
    variant: str,
    features: Features,
    stride: int,
    metric: Metric,
    temperature: float,
    weights: Sequence[float] | None = None,
) -> tuple[SemanticClusterer, float]:
    start = time.perf_counter()
    feats = [
        features(rgb, d, stride, clip.focal)
        for clip in clips
        for rgb, d in zip(clip.rgb, clip.depth[variant], strict=True)
    ]
    clusterer = SemanticClusterer(
        NUM_PSEUDO, metric=metric, temperature=temperature, feature_weights=weights
    )
    clusterer.fit(feats)
    return clusterer, time.perf_counter() - start


def weights_with(depth: float = 0.0, others: float = 0.0) -> list[float]:
    """:data:`DEFAULT_FEATURE_WEIGHTS` with the depth columns at ``depth`` and the texture,
    coarse-colour and column features at ``others``."""
    w = list(DEFAULT_FEATURE_WEIGHTS)
    for i in range(len(w)):
        if DEPTH_FEATURES.start <= i < DEPTH_FEATURES.stop:
            w[i] = depth
        elif w[i] == 0:
            w[i] = others
    return w


# (row name, metric, feature weights, depth variants)
FEATURE_ROWS: tuple[tuple[str, Metric, list[float] | None, tuple[str, ...]], ...] = (
    ("features: Lab+row (default)", "euclidean", None, ("none",)),
    ("features: Lab+row, cosine", "cosine", None, ("none",)),
    (
        "features: Lab+row + depth x0.3",
        "euclidean",
        weights_with(depth=0.3),
        ("oracle", "parallax"),
    ),
    ("features: all x1", "euclidean", weights_with(1.0, 1.0), DEPTH_VARIANTS),
)


Predict = Callable[[npt.NDArray[np.uint8], "F32 | None", float, tuple[int, int]], Any]


def evaluate(
    clusterer: SemanticClusterer, clips: Sequence[Clip], variant: str, features: Features
) -> dict[str, Any]:
    """:func:`evaluate_predictions` of a clusterer on ``features``."""

    def predict(rgb: Any, d: F32 | None, focal: float, shape: tuple[int, int]) -> Any:
        return clusterer.predict(features(rgb, d, 1, focal), shape)

    return evaluate_predictions(predict, clips, variant)


def evaluate_predictions(predict: Predict, clips: Sequence[Clip], variant: str) -> dict[str, Any]:
    """mIoU after matching (module docstring) and the median seconds per frame of
    ``predict(rgb, depth, focal, shape) -> uint8 labels``."""
    confusion = np.zeros((NUM_PSEUDO, NUM_GT), np.int64)
    seconds = []
    for clip in clips:
        for rgb, gt, d in zip(clip.rgb, clip.semantic, clip.depth[variant], strict=True):
            start = time.perf_counter()
            pred = predict(rgb, d, clip.focal, gt.shape)
            seconds.append(time.perf_counter() - start)
            confusion += confusion_from(pred, gt, NUM_PSEUDO, NUM_GT, IGNORE_LABEL)
    present = np.flatnonzero(confusion.sum(0) > 0)
    sub = confusion[:, present]
    none = np.zeros(len(present), bool)
    match = match_classes(
        sub, np.zeros(NUM_PSEUDO, bool), none, adhere_thing_stuff=False, ignore_label=IGNORE_LABEL
    )
    c = len(present)
    padded = np.zeros((c + 1, c + 1), np.int64)
    padded[:c, :c] = match.matched_confusion.T  # rows GT, columns prediction
    iou, miou = iou_from_confusion(padded, c)
    return {
        "miou": miou,
        "iou": {int(k): float(v) for k, v in zip(present, iou, strict=True)},
        "s_per_frame": statistics.median(seconds),
        "clusters_used": int((confusion.sum(1) > 0).sum()),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    eval_clips = [render_clip(s, args.frames, args.size) for s in args.eval_seeds]
    modes = ["other", "same"] if args.fit == "both" else [args.fit]
    fit_clips = (
        [render_clip(s, args.frames, args.size) for s in args.fit_seeds] if "other" in modes else []
    )
    print(f"rendered + depth cues: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    results: dict[str, Any] = {"modes": {}}
    for mode in modes:
        train = fit_clips if mode == "other" else eval_clips
        rows: dict[str, Any] = {}
        for metric in ("euclidean", "cosine"):
            cl, fit_s = fit_clusterer(
                train, "none", rgb_row_baseline_features, args.fit_stride, metric, 2.0
            )
            rows[f"rgb+row k-means ({metric})"] = {
                "none": {
                    **evaluate(cl, eval_clips, "none", rgb_row_baseline_features),
                    "fit_s": fit_s,
                }
            }
        baseline = max(r["none"]["miou"] for r in rows.values())
        for name, metric, weights, variants in FEATURE_ROWS:
            rows[name] = {}
            for variant in variants:
                cl, fit_s = fit_clusterer(
                    train,
                    variant,
                    full_features,
                    args.fit_stride,
                    metric,
                    args.temperature,
                    weights,
                )
                rows[name][variant] = {
                    **evaluate(cl, eval_clips, variant, full_features),
                    "fit_s": fit_s,
                }
        if args.backbone_weights:
            rows["DepthG (head on the backbone)"] = depthg_rows(args, train, eval_clips)
        results["modes"][mode] = {"rows": rows, "baseline": baseline}
        print(f"fit={mode}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    results["depth_s_per_frame"] = {
        v: statistics.mean(c.depth_seconds[v] for c in eval_clips) for v in DEPTH_VARIANTS
    }
    results["total_s"] = time.perf_counter() - t0
    return results


def depthg_rows(
    args: argparse.Namespace, train: Sequence[Clip], eval_clips: Sequence[Clip]
) -> dict[str, Any]:
    """Train the DepthG model on ``train``'s frames and evaluate it (module docstring)."""
    import tempfile
    from pathlib import Path

    import cv2

    from vcups_core.config import config_from_dict
    from vcups_core.pseudo.depthg_train import DepthGTrainOptions, train_depthg
    from vcups_core.pseudo.sources import SourceSpec

    with tempfile.TemporaryDirectory(prefix="vcups-bench-depthg-") as tmp:
        folders = []
        for clip in train:
            folder = Path(tmp) / f"seed_{clip.seed}"
            folder.mkdir()
            for i, rgb in enumerate(clip.rgb):
                cv2.imwrite(str(folder / f"{i:05d}.png"), rgb[:, :, ::-1])
            folders.append(folder)
        cfg = config_from_dict(
            {"height": 0, "width": 0, "semantics": {"num_classes": NUM_PSEUDO}},
            PseudoLabelConfig,
        )
        start = time.perf_counter()
        model = train_depthg(
            SourceSpec.frames(folders),
            Path(tmp) / "depthg.pt",
            cfg,
            backbone_weights=Path(args.backbone_weights),
            options=DepthGTrainOptions(steps=args.depthg_steps),
            frames_per_clip=args.frames,
            device=args.device,
        )
        fit_s = time.perf_counter() - start

    def predict(rgb: Any, d: F32 | None, focal: float, shape: tuple[int, int]) -> Any:
        del focal, shape
        return model.log_proba(rgb, d).argmax(0).astype(np.uint8)

    return {
        variant: {**evaluate_predictions(predict, eval_clips, variant), "fit_s": fit_s}
        for variant in ("parallax", "none")
    }


def print_results(args: argparse.Namespace, results: dict[str, Any]) -> None:
    for mode, block in results["modes"].items():
        fit_desc = (
            f"fitted on seeds {args.fit_seeds}" if mode == "other" else "fitted on the eval clips"
        )
        print()
        print(
            f"Semantic mIoU (27 pseudo-classes, Hungarian + majority, no thing/stuff split), "
            f"eval seeds {args.eval_seeds}, {args.frames} frames at "
            f"{args.size[0]}x{args.size[1]}, {fit_desc}"
        )
        header = ["method", "depth", "mIoU", "x baseline", "target", "s/frame", "fit s"]
        lines = []
        baseline = block["baseline"]
        for name, variants in block["rows"].items():
            for variant, r in variants.items():
                ratio = r["miou"] / baseline if baseline > 0 else float("nan")
                is_base = name.startswith("rgb+row")
                verdict = "-" if is_base else ("PASS" if ratio >= TARGET_RATIO else "MISS")
                lines.append(
                    [
                        name,
                        variant,
                        f"{r['miou']:.3f}",
                        f"{ratio:.2f}",
                        "-" if is_base else f">= {TARGET_RATIO:.1f}x {verdict}",
                        f"{r['s_per_frame']:.3f}",
                        f"{r['fit_s']:.1f}",
                    ]
                )
        print(text_table(header, lines, left=2))
        print("per-class IoU (Cityscapes train id: IoU):")
        for name, variants in block["rows"].items():
            for variant, r in variants.items():
                ious = " ".join(f"{k}:{v:.2f}" for k, v in r["iou"].items())
                print(f"  {name:32s} {variant:8s} {ious}")
    dep = results["depth_s_per_frame"]
    print(
        f"\ndepth cue cost per frame: parallax {dep['parallax']:.3f} s (whole cue pipeline, "
        f"2 DIS flows included); total run {results['total_s']:.0f} s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fit", choices=("other", "same", "both"), default="other")
    parser.add_argument("--fit-seeds", type=int, nargs="+", default=[11, 12, 13])
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=[201, 202, 203])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--size", type=parse_size, default=(256, 512))
    parser.add_argument("--fit-stride", type=int, default=2, help="feature stride when fitting")
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--json", default="", help="write the results here")
    parser.add_argument(
        "--backbone-weights",
        default="",
        metavar="FILE",
        help="local DINO checkpoint: adds the DepthG row (skipped without it)",
    )
    parser.add_argument("--depthg-steps", type=int, default=1000, help="DepthG training steps")
    parser.add_argument("--device", default="cpu", help="torch device of the DepthG row")
    args = parser.parse_args(argv)
    results = run(args)
    print_results(args, results)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
