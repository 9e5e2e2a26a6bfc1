"""Multi-level RoIAlign (torchvision's ``MultiScaleRoIAlign``) that uses every CPU core.

torchvision's CPU ``roi_align`` kernel and its backward run on one thread, and the cascade pools
~1000 RoIs three times per frame (plus the mask and track heads), so on a CPU the pooling
dominates the box heads, and in training its backward alone took ~18 % of an R50 step. On CPU
tensors this module splits each level's RoIs into ``torch.get_num_threads()`` chunks and runs them
on a small process-wide thread pool (the kernels release the GIL):

* inference (no autograd): the chunks' outputs are written into the result; bit-identical to
  ``MultiScaleRoIAlign``;
* training (autograd on, not under autocast): :class:`_ChunkedRoIAlign`, whose forward runs the
  chunks in parallel (bit-identical) and whose backward runs torchvision's
  ``_roi_align_backward`` per chunk in parallel and sums the chunks' feature gradients in chunk
  order: equal to torchvision's gradient up to float rounding (the order of the additions),
  and deterministic for a given thread count.

One thread, CUDA tensors, ONNX tracing, autocast and small RoI counts take the parent's path
unchanged (so the one-thread training runs of the resume tests are torchvision's to the bit).
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
        training = torch.is_grad_enabled()
        if (
            threads < 2
            or num_rois < 2 * MIN_ROIS_PER_THREAD
            or torchvision._is_tracing()
            or any(b.device.type != "cpu" for b in boxes)
            or (training and torch.is_autocast_enabled("cpu"))
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
        pool = _pool(threads, os.getpid())
        if training:
            for level, (feature, scale) in enumerate(zip(features, self.scales, strict=True)):
                index = torch.where(levels == level)[0]
                if index.numel():
                    pooled = _ChunkedRoIAlign.apply(
                        feature,
                        rois[index],
                        (float(scale), *self.output_size, int(self.sampling_ratio)),
                        chunks,
                        pool,
                    )
                    result[index] = pooled.to(result.dtype)
            return result
        jobs = []
        for level, (feature, scale) in enumerate(zip(features, self.scales, strict=True)):
            index = torch.where(levels == level)[0]
            for part in torch.tensor_split(index, chunks):
                if part.numel():
                    jobs.append((part, feature, scale))
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


class _ChunkedRoIAlign(torch.autograd.Function):
    """``roi_align`` of one level (``aligned=False``, as ``MultiScaleRoIAlign``), forward and
    backward split into RoI chunks run on a thread pool.

    ``feature``: ``float[N, C, H, W]``; ``rois``: ``float[R, 5]`` (batch index, x0, y0, x1, y1);
    ``params``: ``(spatial_scale, pooled_h, pooled_w, sampling_ratio)``. Output
    ``float[R, C, pooled_h, pooled_w]``. Gradient only for ``feature``.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        feature: Tensor,
        rois: Tensor,
        params: tuple[float, int, int, int],
        chunks: int,
        pool: ThreadPoolExecutor,
    ) -> Tensor:
        scale, ph, pw, sampling = params
        parts = torch.tensor_split(rois, chunks)
        op = torch.ops.torchvision.roi_align
        futures = [pool.submit(op, feature, p, scale, ph, pw, sampling, False) for p in parts]
        ctx.save_for_backward(rois)
        ctx.params, ctx.chunks, ctx.pool = params, chunks, pool  # type: ignore[attr-defined]
        ctx.feature_shape = tuple(feature.shape)  # type: ignore[attr-defined]
        return torch.cat([f.result() for f in futures])

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor | None, ...]:
        (rois,) = ctx.saved_tensors  # type: ignore[attr-defined]
        scale, ph, pw, sampling = ctx.params  # type: ignore[attr-defined]
        n, c, h, w = ctx.feature_shape  # type: ignore[attr-defined]
        chunks = ctx.chunks  # type: ignore[attr-defined]
        op = torch.ops.torchvision._roi_align_backward
        futures = [
            ctx.pool.submit(  # type: ignore[attr-defined]
                op, g.contiguous(), r, scale, ph, pw, n, c, h, w, sampling, False
            )
            # the same row split as the forward's (tensor_split of R rows into `chunks`)
            for g, r in zip(
                torch.tensor_split(grad, chunks), torch.tensor_split(rois, chunks), strict=True
            )
        ]
        total: Tensor = futures[0].result()
        for future in futures[1:]:
            total = total + future.result()
        return total, None, None, None, None
