"""Cost of everything after the network in the streaming path, and its scaling with pixels.

Measures, per frame, ``StreamingSegmenter.step`` with a zero-cost predictor (so: the tracker,
the semantic smoother and the panoptic composition) plus the conversion to a
``PanopticTrackArray`` message, on synthetic predictions with ``--instances`` moving objects
(default 50) at 1024x2048 and at half the pixels (the two sizes take turns in blocks of
frames, so both see the same states of this noisy machine). The same-run baseline is one
``np.bincount`` pass over the frame's pixels (the floor: every pixel must be touched once),
timed after every frame.
Targets (issue 6): <= 15 ms/frame at 1024x2048 on 2 cores; 2x pixels cost <= 2.2x time.

Separately, the predictors' own numpy post-processing of the same frames (mask pasting and the
placement of the instances, ``frame_prediction_from_raw``, which every backend runs on the CPU
before the segmenter sees the frame) is timed from raw network outputs, so the table also shows
everything the CPU does per frame after the network. The end-to-end node latency is measured by
``benchmarks/bench_node.py``.

    .venv/bin/python benchmarks/bench_streaming.py [--instances 50 --frames 60 --warmup 10
                                                    --rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator

import numpy as np

from vcups_core.model.postprocess import MergeSettings, RawOutputs, frame_prediction_from_raw
from vcups_core.rosmsg import MessageTypes, panoptic_frame_to_msg
from vcups_core.runtime import limit_blas_threads
from vcups_core.streaming.segmenter import StreamingSegmenter
from vcups_core.streaming.smoother import SemanticSmoother
from vcups_core.streaming.tracker import OnlineTracker
from vcups_core.types import CategoryTable, FramePrediction, MaskCrops, VideoFrame

NUM_STUFF = 22
NUM_THINGS = 5


def synthetic_predictions(
    height: int, width: int, instances: int, frames: int
) -> Iterator[FramePrediction]:
    """Rectangles drifting right with per-object embeddings; stuff in horizontal bands.

    Each mask is a crop of its rectangle, as the predictors' post-processing returns them.
    """
    rng = np.random.default_rng(0)
    sizes = rng.integers(height // 20, height // 6, size=(instances, 2))
    starts = np.stack(
        [rng.integers(0, height - sizes[:, 0]), rng.integers(0, width // 2, instances)], 1
    )
    emb = rng.standard_normal((instances, 256)).astype(np.float32)
    emb *= 4 / np.linalg.norm(emb, axis=1, keepdims=True)
    stride = 4  # the semantic head's output stride
    gh, gw = -(-height // stride), -(-width // stride)
    bands = (np.arange(gh) * NUM_STUFF // gh).astype(np.int64)
    base = np.full((NUM_STUFF + 1, gh, gw), 0.2 / NUM_STUFF, np.float32)
    base[1 + bands, np.arange(gh)] = 0.8
    for t in range(frames):
        boxes = np.zeros((instances, 4), np.float32)
        inst = np.zeros((height, width), np.int32)
        crops = []
        for k in range(instances):
            y, x = starts[k, 0], min(starts[k, 1] + 3 * t, width - sizes[k, 1])
            h, w = sizes[k]
            crops.append(np.ones((h, w), bool))
            boxes[k] = (x, y, x + w, y + h)
            inst[y : y + h, x : x + w] = k + 1
        yield FramePrediction(
            boxes,
            np.full(instances, 0.9, np.float32),
            np.arange(instances, dtype=np.int64) % NUM_THINGS,
            MaskCrops(boxes.astype(np.int64), crops, height, width),
            emb,
            base.copy(),  # a new map each frame, as a network would return
            inst,
            semantic_stride=stride,
        )


def raw_outputs(pred: FramePrediction) -> RawOutputs[np.ndarray]:
    """Network outputs that post-process to the frame's objects (full 28x28 masks on the boxes)."""
    n = len(pred)
    return RawOutputs(
        pred.boxes,
        pred.scores,
        pred.classes,
        np.ones((n, 28, 28), np.float32),
        pred.embeddings,
        pred.semantic_probs.copy(),  # a fresh map, as the network returns
    )


def post_process(raw: RawOutputs[np.ndarray], height: int, width: int) -> FramePrediction:
    """What every backend does on the CPU after its network (mask pasting, instance placement)."""
    return frame_prediction_from_raw(
        raw,
        image_size=(height, width),
        semantic_stride=4,
        settings=MergeSettings(),
    )


class SizeRun:
    """The benchmark at one image size: one segmenter fed frame by frame, with timings."""

    def __init__(self, height: int, width: int, instances: int, frames: int) -> None:
        categories = CategoryTable.default(NUM_THINGS, NUM_STUFF)

        class HandedOver:
            """A zero-cost predictor: returns the prediction handed to it for the next frame."""

            model_name = "handed-over"  # the Predictor contract
            checksum = ""

            def __init__(self) -> None:
                self.categories = categories
                self.next: FramePrediction | None = None

            def predict(self, image: np.ndarray) -> FramePrediction:
                assert self.next is not None
                return self.next

        self.height, self.width, self.instances = height, width, instances
        self.predictor = HandedOver()
        # same smoothing grid at both sizes: the scaling measures the algorithm, not the auto grid
        self.segmenter = StreamingSegmenter(
            self.predictor, tracker=OnlineTracker(), smoother=SemanticSmoother(grid_stride=8)
        )
        self.frames = synthetic_predictions(height, width, instances, frames)
        self.pixels = np.zeros(height * width, np.uint16)
        self.types = MessageTypes.rosbags()
        self.times: list[float] = []
        self.post: list[float] = []
        self.floor: list[float] = []

    def step(self, t: int) -> None:
        """Time frame ``t``: the streaming step + message, the floor, the post-processing."""
        pred = next(self.frames)
        self.predictor.next = pred
        image = np.zeros((1, 1, 3), np.uint8)  # the predictor ignores it
        t0 = time.perf_counter()
        frame = self.segmenter.step(VideoFrame(image, 1_000_000 + 100_000 * t, "cam", t))
        panoptic_frame_to_msg(frame, self.types)
        self.times.append(time.perf_counter() - t0)
        assert len([s for s in frame.segments if s.is_thing]) == self.instances
        t0 = time.perf_counter()
        np.bincount(self.pixels, minlength=NUM_STUFF + self.instances + 1)
        self.floor.append(time.perf_counter() - t0)
        raw = raw_outputs(pred)
        t0 = time.perf_counter()
        post_process(raw, self.height, self.width)
        self.post.append(time.perf_counter() - t0)

    def medians_ms(self, warmup: int) -> tuple[float, float, float]:
        """Median ms per frame after ``warmup`` frames: streaming, post-processing, floor."""
        ms = [1000 * statistics.median(x[warmup:]) for x in (self.times, self.post, self.floor)]
        return ms[0], ms[1], ms[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two sizes")
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="BLAS threads, as the node and replay set them (0: the library's default)",
    )
    args = parser.parse_args()
    if args.blas_threads:
        limit_blas_threads(args.blas_threads)
    runs = [
        SizeRun(1024, 2048, args.instances, args.warmup + args.frames),
        SizeRun(724, 1448, args.instances, args.warmup + args.frames),  # about half the pixels
    ]
    # the two sizes take turns in blocks of frames (full, half, half, full, ...), so both see
    # the same states of the machine; frame by frame they would evict each other from the cache
    for run in runs:
        for t in range(args.warmup):
            run.step(t)
    rounds = max(1, args.rounds)
    for b in range(2 * rounds):
        run = runs[(b + b // 2) % 2]
        for _ in range(args.frames // rounds + (b // 2 < args.frames % rounds)):
            run.step(len(run.times))
    full, half = (run.medians_ms(args.warmup) for run in runs)
    print(
        f"post-network work per frame, {args.instances} instances, median of {args.frames} "
        f"after {args.warmup} warm-up frames, the two sizes in {args.rounds} rounds of turns, "
        f"BLAS threads: {args.blas_threads or 'library default'}"
    )
    print(
        f"{'size':12s} {'ms/frame':>9s} {'bincount floor ms':>18s} {'x floor':>8s} "
        f"{'predictor post-processing ms':>29s} {'CPU total ms':>13s}"
    )
    for name, (ms, post, floor) in (("1024x2048", full), ("724x1448", half)):
        print(
            f"{name:12s} {ms:9.1f} {floor:18.2f} {ms / floor:8.1f} {post:29.1f} {ms + post:13.1f}"
        )
    ratio = full[0] / half[0]
    pixel_ratio = (1024 * 2048) / (724 * 1448)
    print(
        f"target <= 15 ms at 1024x2048 -> {'meets' if full[0] <= 15 else 'MISSES'} ({full[0]:.1f} ms)"
    )
    print(
        f"scaling: {pixel_ratio:.2f}x pixels -> {ratio:.2f}x time (target <= 2.2x for 2x pixels) -> "
        f"{'meets' if ratio <= 2.2 * pixel_ratio / 2 else 'MISSES'}"
    )


if __name__ == "__main__":
    main()
