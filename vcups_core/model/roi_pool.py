"""Multi-level RoIAlign (torchvision's ``MultiScaleRoIAlign``) that uses every CPU core at inference.

torchvision's CPU ``roi_align`` kernel runs on one thread, and the cascade pools ~1000 RoIs
three times per frame, so on a CPU the pooling dominates the box heads. In inference on CPU
(no autograd, not tracing) this module splits each level's RoIs into ``torch.get_num_threads()``
chunks and runs them on a small process-wide thread pool (the kernel releases the GIL). The
result is bit-identical to ``MultiScaleRoIAlign``; training, CUDA tensors, ONNX tracing and
small RoI counts take the parent's path unchanged.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch
import torchvision
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign, roi_align

MIN_ROIS_PER_THREAD = 128
"""Below this many RoIs per thread the pooling runs on the calling thread."""


@functools.cache
def _pool(workers: int, pid: int) -> ThreadPoolExecutor:
    """One pool per process (keyed by pid: a forked child must not reuse the parent's)."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vcups-roialign")


class ParallelMultiScaleRoIAlign(MultiScaleRoIAlign):  # type: ignore[misc]  # torchvision is untyped
    """Drop-in ``MultiScaleRoIAlign`` (same arguments, same output ``float[R, C, P, P]``)."""

    scales: list[float] | None
    map_levels: Callable[[list[Tensor]], Tensor] | None

    def forward(
        self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> Tensor:
        threads = torch.get_num_threads()
        num_rois = sum(int(b.shape[0]) for b in boxes)
        if (
            threads < 2
            or num_rois < 2 * MIN_ROIS_PER_THREAD
            or torch.is_grad_enabled()
            or torchvision._is_tracing()
            or any(b.device.type != "cpu" for b in boxes)
            or self.scales is None  # the parent infers (and caches) the level scales
            or self.map_levels is None
        ):
            out: Tensor = super().forward(x, boxes, image_shapes)
            return out
        features = [x[name] for name in self.featmap_names]
        rois = torch.cat(
            [torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)]
        )
        levels = (
            self.map_levels(boxes)
            if len(features) > 1
            else torch.zeros(num_rois, dtype=torch.int64)
        )
        # Every RoI maps to exactly one level, so every row is written below.
        result = features[0].new_empty((num_rois, features[0].shape[1], *self.output_size))
        chunks = max(1, min(threads, num_rois // MIN_ROIS_PER_THREAD))
        jobs = []
        for level, (feature, scale) in enumerate(zip(features, self.scales, strict=True)):
            index = torch.where(levels == level)[0]
            for part in torch.tensor_split(index, chunks):
                if part.numel():
                    jobs.append((part, feature, scale))
        pool = _pool(threads, os.getpid())
        futures = [
            pool.submit(
                roi_align,
                feature,
                rois[part],
                output_size=self.output_size,
                spatial_scale=scale,
                sampling_ratio=self.sampling_ratio,
            )
            for part, feature, scale in jobs
        ]
        for (part, _, _), future in zip(jobs, futures, strict=True):
            result[part] = future.result().to(result.dtype)
        return result
