"""Eval speed of the vcups model vs torchvision's Mask R-CNN, and onnxruntime vs torch (CPU).

Target (issue 5): our Panoptic Cascade MaskTrack R-CNN (ResNet-50, paper config) at most 1.4x
the eval forward time of ``torchvision.models.detection.maskrcnn_resnet50_fpn`` on the same
input. Both get the same random image, random weights (nothing is downloaded), the same thread
count, no resizing (``min_size``/``max_size`` = the input's short/long side), the same score
threshold and the same cap on detections: random weights score many boxes, and an uncapped
count would make the mask work arbitrary. Timings are the median of ``--repeats`` interleaved
runs after one warm-up, all in one process.

    .venv/bin/python benchmarks/bench_model.py [--size 512x1024] [--threads 2] [--skip-onnx]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import maskrcnn_resnet50_fpn

from vcups_core.config import config_from_dict, config_to_dict
from vcups_core.configs.model import ModelConfig
from vcups_core.model.build import build_model
from vcups_core.model.meta_arch import PanopticCascadeMaskTrack
from vcups_core.model.predictors.torch_predictor import TorchPredictor

TARGET_RATIO = 1.4


def median_seconds(
    fns: dict[str, Callable[[], object]], repeats: int
) -> dict[str, tuple[float, object]]:
    """Median wall time of each function over ``repeats`` rounds after one warm-up round.

    The functions run interleaved (a, b, c, a, b, c, ...), so a load change on a shared machine
    hits all of them alike. Returns ``name -> (median seconds, last result)``.
    """
    results = {name: fn() for name, fn in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
    MINIMA.update({name: min(t) for name, t in times.items()})
    return {name: (statistics.median(times[name]), results[name]) for name in fns}


MINIMA: dict[str, float] = {}
"""Fastest run of each timed function (printed next to the median: robust to load spikes)."""


def build_pair(
    height: int, width: int, detections: int, score_threshold: float
) -> tuple[PanopticCascadeMaskTrack, nn.Module]:
    """The vcups paper model and torchvision's Mask R-CNN, set up alike for timing (eval mode).

    Random weights (nothing is downloaded); no resizing (``min_size``/``max_size`` = the
    input's short/long side); the same score threshold and detection cap.
    """
    cfg_dict = config_to_dict(ModelConfig())  # the paper model: ResNet-50, 5 things, 22 stuff
    cfg_dict.update(min_size=min(height, width), max_size=max(height, width))
    cfg_dict["inference"].update(detections_per_image=detections, score_threshold=score_threshold)
    # Random RPN weights make the proposal count after NMS arbitrary (from ~100 to 1000). Both
    # models get RPN NMS off and zero box deltas (proposals = the top-scored anchors), so both
    # RoI heads see exactly post_nms_topk_test = 1000 proposals, as trained RPNs give here.
    cfg_dict["rpn"]["nms_threshold"] = 1.0
    cfg = config_from_dict(cfg_dict, ModelConfig)
    ours = build_model(cfg).eval()
    theirs = maskrcnn_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=cfg.num_thing_classes + 1,
        min_size=min(height, width),
        max_size=max(height, width),
        box_score_thresh=score_threshold,
        box_detections_per_img=detections,
        rpn_nms_thresh=1.0,
        rpn_pre_nms_top_n_test=cfg.rpn.pre_nms_topk_test,
        rpn_post_nms_top_n_test=cfg.rpn.post_nms_topk_test,
    ).eval()

    with torch.no_grad():
        for model in (ours, theirs):
            model.rpn.head.bbox_pred.weight.zero_()
            model.rpn.head.bbox_pred.bias.zero_()

    return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="512x1024", help="HxW of the input (default 512x1024)")
    parser.add_argument("--threads", type=int, default=2, help="torch/onnxruntime threads")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (>= 3)")
    parser.add_argument("--detections", type=int, default=20, help="detection cap of both")
    parser.add_argument("--score-threshold", type=float, default=0.05, help="of both models")
    parser.add_argument("--skip-onnx", action="store_true", help="skip the onnxruntime rows")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.lower().split("x"))
    repeats = max(3, args.repeats)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    ours, theirs = build_pair(height, width, args.detections, args.score_threshold)

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
    load_before = os.getloadavg()[0]
    with torch.no_grad():
        proposals = {}
        for name, model in (("ours", ours), ("tv", theirs)):
            image_list, _ = model.transform([tensor])
            boxes, _ = model.rpn(image_list, model.backbone(image_list.tensors))
            proposals[name] = int(boxes[0].shape[0])

    with torch.no_grad():
        timed = median_seconds(
            {
                "ours": lambda: ours.predict([tensor]),
                "net": lambda: ours.infer_raw([tensor]),
                "tv": lambda: theirs([tensor]),
            },
            repeats,
        )
    (t_ours, ours_out), (t_net, _), (t_tv, tv_out) = timed["ours"], timed["net"], timed["tv"]
    n_ours = len(ours_out[0])  # type: ignore[index]
    n_tv = len(tv_out[0]["boxes"])  # type: ignore[index]
    ratio = t_ours / t_tv

    rows = [
        (
            "vcups Panoptic Cascade MaskTrack R-CNN R50, full predict",
            t_ours,
            MINIMA["ours"],
            n_ours,
        ),
        (
            "  of which the network (infer_raw, no numpy post-processing)",
            t_net,
            MINIMA["net"],
            n_ours,
        ),
        ("torchvision maskrcnn_resnet50_fpn (incl. mask pasting)", t_tv, MINIMA["tv"], n_tv),
    ]
    min_ratio = MINIMA["ours"] / MINIMA["tv"]
    onnx_rows: list[tuple[str, float, float, int]] = []
    export_s = 0.0
    if not args.skip_onnx:
        from vcups_core.export.onnx import export_onnx
        from vcups_core.model.predictors.onnx_predictor import OnnxPredictor

        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            path = export_onnx(ours, Path(tmp) / "vcups_r50.onnx", example_size=(height, width))
            export_s = time.perf_counter() - t0
            onnx_predictor = OnnxPredictor(
                path, ours.categories, providers=["CPUExecutionProvider"], threads=args.threads
            )
            torch_predictor = TorchPredictor(ours)
            timed = median_seconds(
                {
                    "torch": lambda: torch_predictor.predict(image),
                    "ort": lambda: onnx_predictor.predict(image),
                },
                repeats,
            )
            (t_tp, tp_out), (t_ort, ort_out) = timed["torch"], timed["ort"]
            onnx_rows = [
                (
                    "vcups R50 TorchPredictor.predict(uint8 image)",
                    t_tp,
                    MINIMA["torch"],
                    len(tp_out),  # type: ignore[arg-type]
                ),
                (
                    "vcups R50 OnnxPredictor.predict (onnxruntime CPU)",
                    t_ort,
                    MINIMA["ort"],
                    len(ort_out),  # type: ignore[arg-type]
                ),
            ]
    load_after = os.getloadavg()[0]

    print(
        f"Eval time, {height}x{width} random uint8 image, random weights, "
        f"{args.threads} threads, median of {repeats} interleaved runs after 1 warm-up (CPU)"
    )
    print(
        f"Both detectors: no resize (min/max size {min(height, width)}/{max(height, width)}), "
        f"score threshold {args.score_threshold}, at most {args.detections} detections "
        "(random weights otherwise score hundreds of boxes)."
    )
    print(
        f"RPN NMS off and zero RPN box deltas in both: {proposals['ours']} (vcups) and "
        f"{proposals['tv']} (torchvision) proposals per frame."
    )
    print(f"{'model':<64} {'median s':>8} {'min s':>8} {'dets':>5}")
    for name, seconds, fastest, dets in rows + onnx_rows:
        print(f"{name:<64} {seconds:8.3f} {fastest:8.3f} {dets:>5}")
    verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
    print(
        f"ratio vcups / torchvision Mask R-CNN: {ratio:.2f}x on medians ({verdict} the "
        f"{TARGET_RATIO}x target), {min_ratio:.2f}x on the fastest runs"
    )
    if onnx_rows:
        t_tp, t_ort = onnx_rows[0][1], onnx_rows[1][1]  # medians
        print(
            f"onnxruntime / torch for the vcups model: {t_ort / t_tp:.2f}x "
            f"(ONNX export took {export_s:.0f} s, not timed above)"
        )
    print(
        f"1-min load average before/after: {load_before:.2f}/{load_after:.2f} (other processes skew timings)"
    )


if __name__ == "__main__":
    main()
