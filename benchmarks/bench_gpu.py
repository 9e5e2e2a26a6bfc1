"""GPU check of the predictor backends, and the per-frame latency of streaming on a CUDA device.

Not part of ``make test`` (CI has no GPU); run it on a machine with one. It exits with status 2
and says so where there is no CUDA device.

1. **Parity** (the tiny model of ``config/model/tiny.yaml``, random weights, three image sizes):
   ``TorchPredictor`` on the CPU against the same weights on CUDA in float32, with TF32
   convolutions off and then on (PyTorch's default for cuDNN); against onnxruntime's CUDA provider
   (TF32 off, then on as is its default) when it is installed, and a TensorRT engine when
   ``tensorrt`` is installed. A backend that is not installed is named as not checked, never
   counted as passed.
2. **Latency** at ``--size`` (default 1024x2048) with the paper model (ResNet-50, random weights,
   at most ``--detections`` detections): the network alone (float32 and float16),
   ``TorchPredictor.predict`` (network, copy to the host, numpy post-processing) and
   ``StreamingSegmenter.step`` (and the tracker, smoothing and composition): all a node spends
   per frame apart from message I/O. Same-run baseline: torchvision's ``maskrcnn_resnet50_fpn``
   (incl. its mask pasting) on the same GPU and input. Timings are medians of interleaved runs
   after one warm-up round (``bench_model.median_seconds``), each ending in
   ``torch.cuda.synchronize()``.
3. **First frames**: two fresh processes each time their first two frames, one without and one
   after ``warm_up`` (what the node runs while configuring, ``model.warmup``).

    python benchmarks/bench_gpu.py [--size 1024x2048 --detections 50 --repeats 20]
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from bench_model import build_pair, median_seconds

from vcups_core.config import config_from_dict, config_to_dict, load_config
from vcups_core.configs.model import ModelConfig
from vcups_core.export.onnx import compare_predictors
from vcups_core.model.build import build_model
from vcups_core.model.meta_arch import PanopticCascadeMaskTrack, raw_outputs_to_numpy
from vcups_core.model.postprocess import frame_prediction_from_raw, image_to_chw
from vcups_core.model.predictors.base import WARMUP_SIZE, warm_up
from vcups_core.model.predictors.onnx_predictor import OnnxPredictor
from vcups_core.model.predictors.torch_predictor import TorchPredictor, image_to_tensor
from vcups_core.runtime import limit_blas_threads
from vcups_core.streaming.segmenter import StreamingSegmenter
from vcups_core.streaming.smoother import SemanticSmoother
from vcups_core.streaming.tracker import OnlineTracker
from vcups_core.types import VideoFrame

TINY = Path(__file__).resolve().parents[1] / "config" / "model" / "tiny.yaml"


def tiny_model() -> PanopticCascadeMaskTrack:
    """The tiny model with random weights whose class scores are spread apart (clear detections)."""
    data = config_to_dict(load_config(TINY, ModelConfig))
    data["inference"]["score_threshold"] = 0.17
    torch.manual_seed(0)
    model = build_model(config_from_dict(data, ModelConfig)).eval()
    with torch.no_grad():
        for stage in model.roi_heads.stages:
            stage.cls_score.weight.normal_(0.0, 0.05)
    return model


def check_parity(tmp: Path) -> None:
    """Section 1: every installed backend on CUDA against torch on the CPU."""
    model = tiny_model()
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for h, w in ((96, 128), (120, 170), (150, 90))
    ]
    cpu = TorchPredictor(copy.deepcopy(model), device="cpu")
    for tf32 in (False, True):
        torch.backends.cudnn.allow_tf32 = tf32
        cuda = TorchPredictor(copy.deepcopy(model), device="cuda")
        name = f"torch CUDA fp32 (TF32 {tf32})"
        print(compare_predictors(model, cpu, cuda, images, names=("torch CPU", name)))
    torch.backends.cudnn.allow_tf32 = False
    half = TorchPredictor(copy.deepcopy(model), device="cuda", half=True)
    print("(fp16 rounding is expected to exceed these float32 tolerances; shown for its size)")
    print(compare_predictors(model, cpu, half, images, names=("torch CPU", "torch CUDA fp16")))

    import onnxruntime as ort

    from vcups_core.export.onnx import export_onnx

    onnx_path = export_onnx(model, tmp / "tiny.onnx", example_size=(96, 128))
    providers = ort.get_available_providers()
    if "CUDAExecutionProvider" in providers:
        for tf32 in ("0", "1"):  # onnxruntime's CUDA default is "1"
            onnx_cuda = OnnxPredictor(
                onnx_path, providers=[("CUDAExecutionProvider", {"use_tf32": tf32})]
            )
            name = f"onnxruntime CUDA (use_tf32 {tf32})"
            print(compare_predictors(model, cpu, onnx_cuda, images, names=("torch CPU", name)))
    else:
        print(f"onnxruntime CUDA provider: NOT CHECKED (installed providers: {providers})")

    try:
        from vcups_core.export.tensorrt import build_engine
        from vcups_core.export.trt_module import import_tensorrt
        from vcups_core.model.predictors.tensorrt_predictor import TensorRTPredictor

        trt = import_tensorrt()
    except ImportError as exc:
        print(f"TensorRT: NOT CHECKED ({str(exc).split('.')[0]})")
        return
    print(f"TensorRT {trt.__version__}: building an engine of the tiny graph")
    engine = build_engine(
        onnx_path,
        tmp / "tiny.engine",
        min_shape=(64, 64),
        opt_shape=(120, 170),
        max_shape=(256, 256),
    )
    trt_predictor = TensorRTPredictor(engine)
    print(compare_predictors(model, cpu, trt_predictor, images, names=("torch CPU", "TensorRT")))


def synced(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` followed by ``torch.cuda.synchronize()``, so a timer sees all its GPU work."""

    def run() -> object:
        out = fn()
        torch.cuda.synchronize()
        return out

    return run


def latency(height: int, width: int, detections: int, repeats: int) -> None:
    """Section 2: per-frame times on the GPU, torchvision's Mask R-CNN as the baseline."""
    torch.manual_seed(0)
    ours, theirs = build_pair(height, width, detections, score_threshold=0.05)
    ours, theirs = ours.cuda(), theirs.cuda()
    ours_half = copy.deepcopy(ours).half()
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    tensor = torch.from_numpy(image).permute(2, 0, 1).float().div(255.0).cuda()
    cuda = torch.device("cuda")
    predictor = TorchPredictor(ours, device=cuda)
    segmenter = StreamingSegmenter(predictor, tracker=OnlineTracker(), smoother=SemanticSmoother())
    frames = iter(range(1_000_000))

    def step() -> None:
        t = next(frames)
        segmenter.step(VideoFrame(image, 1_000_000_000 + 100_000_000 * t, "cam", t))

    def with_tf32(fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            torch.backends.cudnn.allow_tf32 = True
            try:
                return fn()
            finally:
                torch.backends.cudnn.allow_tf32 = False

        return run

    with torch.no_grad():
        raw = raw_outputs_to_numpy(ours.infer_raw([tensor])[0])
        size, stride = (height, width), ours.semantic_head.common_stride
        torch.backends.cudnn.allow_tf32 = False  # as in the parity check: CPU-equal results
        fns: dict[str, Callable[[], object]] = {
            "net32": lambda: ours.infer_raw([tensor]),
            "cpu_convert": lambda: ours.infer_raw([torch.from_numpy(image_to_chw(image)).cuda()]),
            "gpu_convert": lambda: ours.infer_raw([image_to_tensor(image, cuda)]),
            "net32_tf32": with_tf32(lambda: ours.infer_raw([tensor])),
            "net16": lambda: ours_half.infer_raw([tensor.half()]),
            "to_host": lambda: raw_outputs_to_numpy(ours.infer_raw([tensor])[0]),
            "post": lambda: frame_prediction_from_raw(
                raw, image_size=size, semantic_stride=stride, settings=ours.merge
            ),
            "predict": lambda: predictor.predict(image),
            "step": step,
            "tv": lambda: theirs([tensor]),
            "tv_tf32": with_tf32(lambda: theirs([tensor])),
        }
        torch.cuda.synchronize()
        medians = {
            name: seconds
            for name, (seconds, _) in median_seconds(
                {name: synced(fn) for name, fn in fns.items()}, repeats
            ).items()
        }
        dets = len(predictor.predict(image))
    ms = {name: 1000 * s for name, s in medians.items()}
    print(
        f"\nPer-frame latency, {height}x{width} random uint8 image, random weights, at most "
        f"{detections} detections ({dets} this frame), median of {repeats} interleaved runs; "
        "TF32 convolutions off unless the row says on"
    )
    rows = [
        ("vcups R50 network only, float32 (infer_raw)", ms["net32"]),
        ("network from the uint8 image, converted to float on the CPU", ms["cpu_convert"]),
        (
            "network from the uint8 image, converted on the GPU (what predict does)",
            ms["gpu_convert"],
        ),
        ("vcups R50 network only, float32, TF32 on (PyTorch's cuDNN default)", ms["net32_tf32"]),
        ("vcups R50 network only, float16", ms["net16"]),
        ("network + outputs copied to the host", ms["to_host"]),
        ("numpy post-processing alone (CPU: mask pasting, instance placement)", ms["post"]),
        ("TorchPredictor.predict: network + copy + post-processing", ms["predict"]),
        ("StreamingSegmenter.step: + tracker, smoothing, composition", ms["step"]),
        ("torchvision maskrcnn_resnet50_fpn (baseline, incl. mask pasting)", ms["tv"]),
        ("torchvision maskrcnn_resnet50_fpn, TF32 on", ms["tv_tf32"]),
    ]
    for name, value in rows:
        print(f"  {name:<72} {value:8.1f} ms")
    print(
        f"  streaming after predict: {ms['step'] - ms['predict']:.1f} ms; the whole step is "
        f"{ms['step'] / ms['tv']:.2f}x the baseline ({1000 / ms['step']:.1f} frames/s)"
    )


def first_frames(height: int, width: int, detections: int, warmup: str) -> None:
    """Child process of section 3: a fresh CUDA process times its first two frames."""
    ours, _ = build_pair(height, width, detections, score_threshold=0.05)
    predictor = TorchPredictor(ours, device="cuda")
    torch.cuda.synchronize()
    warm_s = 0.0
    if warmup != "none":
        h, w = (int(v) for v in warmup.split("x"))
        warm_s = warm_up(predictor, (h, w))
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        predictor.predict(image)
        times.append(time.perf_counter() - start)
    print(json.dumps({"warmup_s": warm_s, "frames_s": times}))


def first_frame_latency(height: int, width: int, detections: int) -> None:
    """Section 3: the first frames of a fresh process, without and with ``warm_up`` first."""
    print(f"\nFirst frames of a fresh process ({height}x{width}), as the node's model.warmup sees")
    for warmup in ("none", "x".join(str(v) for v in WARMUP_SIZE)):
        child = subprocess.run(  # noqa: S603 (this script, fixed arguments)
            [
                sys.executable,
                __file__,
                "--size",
                f"{height}x{width}",
                "--detections",
                str(detections),
                "--first-frames",
                warmup,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode:
            raise RuntimeError(f"the first-frame process failed:\n{child.stderr[-3000:]}")
        result = json.loads(child.stdout.strip().splitlines()[-1])
        first, second = (1000 * s for s in result["frames_s"])
        print(
            f"  warm-up {warmup:>8}: {result['warmup_s']:.2f} s; first frame {first:.0f} ms, "
            f"second {second:.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1024x2048", help="HxW of the latency input")
    parser.add_argument("--detections", type=int, default=50, help="detection cap of both models")
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds (>= 3)")
    parser.add_argument("--first-frames", help=argparse.SUPPRESS)  # section 3's child process
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_gpu.py needs a CUDA GPU; torch.cuda.is_available() is False")
        sys.exit(2)
    limit_blas_threads(1)  # as the node and replay do
    print(
        f"{torch.cuda.get_device_name()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
        f"numpy {np.__version__}, Python {sys.version.split()[0]}"
    )
    height, width = (int(v) for v in args.size.lower().split("x"))
    if args.first_frames:
        first_frames(height, width, args.detections, args.first_frames)
        return
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for name, section in (
            ("parity", lambda: check_parity(Path(tmp))),
            ("latency", lambda: latency(height, width, args.detections, max(3, args.repeats))),
            ("first frames", lambda: first_frame_latency(height, width, args.detections)),
        ):
            try:
                section()
            except Exception:  # report and go on: one GPU session should show every section
                failed = True
                print(f"{name}: FAILED")
                traceback.print_exc()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
