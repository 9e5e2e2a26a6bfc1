"""Clip-consistent augmentation of training clips (method §4.3, video version).

The geometric part (horizontal flip, RandomResizedCrop with a fixed aspect ratio) is drawn **once
per clip** and applied identically to every frame's image, masks and semantic target; the
photometric part (Gaussian blur, ColorJitter, RandomGrayscale, in that order as in CUPS) is drawn
**per frame**. Resolution jitter is drawn **per batch** (:func:`draw_resolution`,
:func:`resize_clips`).

Order in the training loop (method §4.3): :meth:`ClipAugmentation.geometric` →
copy-paste (:mod:`vcups_core.train.copy_paste`) → :func:`resize_clips` →
:meth:`ClipAugmentation.photometric`; calling :class:`ClipAugmentation` directly runs the
geometric and then the photometric part (no copy-paste, no resolution jitter).

Randomness: every parameter is drawn from the ``torch.Generator`` passed in, in a fixed order
(documented on each function), never from the global torch, numpy or Python RNG, so the output
is a function of the input and the generator state (the training loop relies on it to resume
exactly). Kornia is used through its functional ops only (``kornia.filters``,
``kornia.enhance``, ``kornia.color``), so no kornia module draws parameters itself.

Resampling conventions: output pixel ``o`` of a window of ``length`` source pixels resized to
``out`` pixels samples the source at the continuous coordinate ``(o + 0.5) * length / out``
(pixel centres, i.e. ``align_corners=False``); images are interpolated bilinearly, masks and the
semantic target take the nearest source pixel (``floor`` of that coordinate, PyTorch's
``nearest-exact``). After every geometric step, instances with ``<= MIN_MASK_PIXELS`` pixels are
dropped (remaining instances keep their track ids) and boxes are recomputed from the masks
(:func:`boxes_from_masks`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
from kornia.color import rgb_to_grayscale
from kornia.enhance import (
    adjust_brightness_accumulative,
    adjust_contrast_with_mean_subtraction,
    adjust_hue,
    adjust_saturation_with_gray_subtraction,
)
from kornia.filters import gaussian_blur2d
from torch import Tensor

from vcups_core.configs.training import AugmentationSection
from vcups_core.train.sample import ClipSample, FrameTargets
from vcups_core.types import IGNORE_LABEL

MIN_MASK_PIXELS = 4
"""Instances whose mask has at most this many pixels after a transform are dropped (§4.3 step 5)."""

BLUR_KERNEL = 7
"""Gaussian blur kernel size (CUPS: 7 x 7)."""

JITTER_STRENGTH = (0.4, 0.4, 0.4, 0.1)
"""ColorJitter (brightness, contrast, saturation, hue) as in CUPS; hue in turns of the colour circle."""


def boxes_from_masks(masks: Tensor) -> Tensor:
    """Tight boxes of masks, :func:`vcups_core.pseudo.compose.mask_boxes` semantics in torch.

    Args:
        masks: ``bool[N, H, W]``.

    Returns:
        ``float32[N, 4]`` ``(x0, y0, x1, y1)`` with exclusive ``x1, y1``, on the masks' device;
        all zeros for an empty mask.
    """
    n, h, w = masks.shape
    rows = masks.any(dim=2)  # [N, H]
    cols = masks.any(dim=1)  # [N, W]
    ys = torch.arange(h, device=masks.device)
    xs = torch.arange(w, device=masks.device)
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.float32, device=masks.device)
    y0 = torch.where(rows, ys, h).amin(dim=1)
    y1 = torch.where(rows, ys + 1, 0).amax(dim=1)
    x0 = torch.where(cols, xs, w).amin(dim=1)
    x1 = torch.where(cols, xs + 1, 0).amax(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1).to(torch.float32)
    boxes[~rows.any(dim=1)] = 0.0
    return boxes


def mask_pixels(masks: Tensor) -> Tensor:
    """``int32[N]`` pixel count of each mask in ``bool[N, H, W]``."""
    return masks.view(torch.uint8).flatten(1).sum(dim=1, dtype=torch.int32)


def drop_small_instances(frame: FrameTargets, min_pixels: int = MIN_MASK_PIXELS) -> FrameTargets:
    """Drop instances with ``<= min_pixels`` mask pixels and recompute all boxes from the masks.

    Remaining instances keep their class and track id; the semantic target is unchanged.

    Args:
        frame: one frame's targets.
        min_pixels: masks with at most this many pixels are dropped.

    Returns:
        New :class:`FrameTargets` (tensors may be shared with ``frame`` where unchanged).
    """
    keep = mask_pixels(frame.masks) > min_pixels
    out = frame.select(keep)
    out.boxes = boxes_from_masks(out.masks)
    return out


def _source_index(start: int, length: int, out: int, size: int, device: torch.device) -> Tensor:
    """``int64[out]`` nearest source pixel of each output pixel, ``-1`` where outside ``[0, size)``.

    The window ``[start, start + length)`` of the source axis is resized to ``out`` pixels.
    """
    pos = (torch.arange(out, dtype=torch.float64, device=device) + 0.5) * (length / out)
    idx = start + torch.floor(pos).to(torch.int64)
    return torch.where((idx >= 0) & (idx < size), idx, -1)


def _resample_frame(frame: FrameTargets, iy: Tensor, ix: Tensor) -> FrameTargets:
    """Nearest-resample a frame's masks and semantic at source rows ``iy`` and columns ``ix``.

    ``iy``/``ix`` come from :func:`_source_index`; ``-1`` marks pixels outside the source, which
    become ``False`` in the masks and :data:`IGNORE_LABEL` in the semantic target. Small
    instances are dropped and boxes recomputed (:func:`drop_small_instances`).
    """
    valid = (iy >= 0)[:, None] & (ix >= 0)[None, :]  # [h, w]
    rows, cols = iy.clamp(min=0), ix.clamp(min=0)
    # two 1-D gathers (much faster than one 2-D advanced index on [N, H, W])
    masks = frame.masks.index_select(1, rows).index_select(2, cols)
    semantic = frame.semantic.index_select(0, rows).index_select(1, cols)
    if not bool(valid.all()):
        masks = masks & valid
        semantic = semantic.masked_fill(~valid, IGNORE_LABEL)
    resampled = FrameTargets(
        boxes=frame.boxes,
        classes=frame.classes,
        masks=masks,
        track_ids=frame.track_ids,
        semantic=semantic,
    )
    return drop_small_instances(resampled)


def _crop_resize_images(
    images: Tensor, x0: int, y0: int, width: int, height: int, size: tuple[int, int]
) -> Tensor:
    """Crop the window ``[x0, x0 + width) x [y0, y0 + height)`` and resize it bilinearly.

    Args:
        images: ``float32[T, 3, H, W]``.
        x0, y0: window origin (may be negative / the window may leave the image: zeros there).
        width, height: window size in source pixels.
        size: output ``(h, w)``.

    Returns:
        ``float32[T, 3, h, w]`` (a new tensor).
    """
    t, c, h, w = images.shape
    if x0 >= 0 and y0 >= 0 and x0 + width <= w and y0 + height <= h:
        crop = images[..., y0 : y0 + height, x0 : x0 + width]
    else:
        crop = images.new_zeros((t, c, height, width))
        sx0, sy0 = max(x0, 0), max(y0, 0)
        sx1, sy1 = min(x0 + width, w), min(y0 + height, h)
        if sx1 > sx0 and sy1 > sy0:
            crop[..., sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = images[..., sy0:sy1, sx0:sx1]
    if (height, width) == tuple(size):
        return crop.clone()
    return F.interpolate(crop, size=size, mode="bilinear", align_corners=False)


def _window_start(u: float, length: int, size: int) -> int:
    """Integer window origin, uniform over all positions where the window and the axis nest.

    For ``length <= size`` the window lies inside ``[0, size)``; for ``length > size`` it covers
    the whole axis (and leaves it on one or both sides).
    """
    d = size - length
    lo, hi = min(0, d), max(0, d)
    return lo + min(math.floor(u * (hi - lo + 1)), hi - lo)


def _rand(generator: torch.Generator, n: int) -> list[float]:
    """``n`` floats ``U[0, 1)`` from ``generator``."""
    values: list[float] = torch.rand(n, generator=generator, device=generator.device).tolist()
    return values


def _resize_clip(
    sample: ClipSample,
    box: tuple[int, int, int, int],
    size: tuple[int, int],
    flip: bool = False,
) -> ClipSample:
    """Flip (optionally), crop the window ``box = (x0, y0, width, height)`` and resize to ``size``.

    The flip is applied first (the window is given in flipped coordinates).
    """
    x0, y0, width, height = box
    h_src, w_src = sample.size
    images = sample.images.flip(-1) if flip else sample.images
    images = _crop_resize_images(images, x0, y0, width, height, size)
    device = sample.images.device
    iy = _source_index(y0, height, size[0], h_src, device)
    ix = _source_index(x0, width, size[1], w_src, device)
    if flip:
        ix = torch.where(ix >= 0, w_src - 1 - ix, -1)
    targets = [_resample_frame(frame, iy, ix) for frame in sample.targets]
    return dataclasses.replace(sample, images=images, targets=targets)


class ClipAugmentation:
    """Clip-consistent augmentation (method §4.3): one geometric draw per clip, photometric per frame.

    Geometric (:meth:`geometric`), the same for every frame of the clip:

    1. horizontal flip with probability ``flip_prob``;
    2. RandomResizedCrop to ``crop_size``: the crop covers ``s ~ U(crop_scale)`` of the source
       area, with the aspect ratio of ``crop_size``; its size is rounded to whole pixels and its
       origin is uniform over the whole-pixel positions (a crop larger than the source along an
       axis covers that axis completely). Images bilinear, masks and semantic nearest; pixels
       outside the source (only when the source aspect differs from the output aspect or
       ``s > 1``) get semantic :data:`IGNORE_LABEL` and no instance.

    Instances with ``<= MIN_MASK_PIXELS`` pixels are dropped, boxes recomputed.

    Photometric (:meth:`photometric`), drawn per frame, in CUPS's order:

    1. Gaussian blur, kernel 7, ``sigma ~ U(blur_sigma)``, always;
    2. ColorJitter(0.4, 0.4, 0.4, 0.1) with probability ``color_jitter_prob``: brightness,
       contrast and saturation factors ``~ U(0.6, 1.4)``, hue shift ``~ U(-0.1, 0.1)`` turns,
       applied in a random order with kornia's (torchvision's) formulas, input and output
       clamped to ``[0, 1]`` as kornia's ``ColorJitter``;
    3. grayscale (BT.601 luma in all three channels) with probability ``grayscale_prob``.
    """

    def __init__(
        self,
        *,
        crop_size: tuple[int, int] = (640, 1280),
        flip_prob: float = 0.5,
        crop_scale: tuple[float, float] = (0.7, 1.0),
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        color_jitter_prob: float = 0.5,
        grayscale_prob: float = 0.2,
    ) -> None:
        """Build the augmentation.

        Args:
            crop_size: output ``(height, width)`` of the crop.
            flip_prob: horizontal flip probability.
            crop_scale: range of the crop's area as a fraction of the source area.
            blur_sigma: range of the Gaussian blur sigma.
            color_jitter_prob: probability of ColorJitter, per frame.
            grayscale_prob: probability of grayscale, per frame.

        Raises:
            ValueError: on an empty range or a non-positive size.
        """
        if min(crop_size) <= 0:
            raise ValueError(f"crop_size must be positive, got {crop_size}")
        for name, (lo, hi) in (("crop_scale", crop_scale), ("blur_sigma", blur_sigma)):
            if not 0.0 < lo <= hi:
                raise ValueError(f"{name} must be 0 < low <= high, got {(lo, hi)}")
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.flip_prob = float(flip_prob)
        self.crop_scale = (float(crop_scale[0]), float(crop_scale[1]))
        self.blur_sigma = (float(blur_sigma[0]), float(blur_sigma[1]))
        self.color_jitter_prob = float(color_jitter_prob)
        self.grayscale_prob = float(grayscale_prob)

    @classmethod
    def from_config(cls, cfg: AugmentationSection) -> ClipAugmentation:
        """Build from the training config's ``augmentation`` section."""
        return cls(
            crop_size=(cfg.crop_height, cfg.crop_width),
            flip_prob=cfg.flip_prob,
            crop_scale=cfg.crop_scale,
            blur_sigma=cfg.blur_sigma,
            color_jitter_prob=cfg.color_jitter_prob,
            grayscale_prob=cfg.grayscale_prob,
        )

    def __call__(self, sample: ClipSample, generator: torch.Generator) -> ClipSample:
        """:meth:`geometric`, then :meth:`photometric` (draws in that order)."""
        return self.photometric(self.geometric(sample, generator), generator)

    def geometric(self, sample: ClipSample, generator: torch.Generator) -> ClipSample:
        """Flip and RandomResizedCrop, one draw for the whole clip.

        Draws 4 uniforms from ``generator``: flip, crop scale, crop x, crop y.

        Args:
            sample: the clip (``H x W`` frames); not modified.
            generator: the only source of randomness.

        Returns:
            A new clip of size ``crop_size`` with images ``float32[T, 3, h, w]``.
        """
        u_flip, u_scale, u_x, u_y = _rand(generator, 4)
        h_src, w_src = sample.size
        out_h, out_w = self.crop_size
        lo, hi = self.crop_scale
        area = (lo + u_scale * (hi - lo)) * h_src * w_src
        aspect = out_w / out_h
        width = max(1, round(math.sqrt(area * aspect)))
        height = max(1, round(math.sqrt(area / aspect)))
        x0 = _window_start(u_x, width, w_src)
        y0 = _window_start(u_y, height, h_src)
        return _resize_clip(
            sample, (x0, y0, width, height), self.crop_size, flip=u_flip < self.flip_prob
        )

    def photometric(self, sample: ClipSample, generator: torch.Generator) -> ClipSample:
        """Blur, ColorJitter and grayscale, drawn independently for each frame.

        Draws, per frame in order: 7 uniforms (sigma, jitter gate, brightness, contrast,
        saturation, hue, grayscale gate), then ``randperm(4)`` (jitter order). Every draw is
        made whether or not its step is applied.

        Args:
            sample: the clip; not modified. Targets are shared with the output.
            generator: the only source of randomness.

        Returns:
            A new clip with images ``float32[T, 3, H, W]`` in ``[0, 1]``.
        """
        images = sample.images
        draws = []
        for _ in range(len(sample)):
            values = _rand(generator, 7)
            order = torch.randperm(4, generator=generator, device=generator.device).tolist()
            draws.append((values, order))
        lo, hi = self.blur_sigma
        sigma = torch.tensor(
            [[lo + v[0] * (hi - lo)] * 2 for v, _ in draws],
            dtype=images.dtype,
            device=images.device,
        ).reshape(len(sample), 2)
        blurred = gaussian_blur2d(images, (BLUR_KERNEL, BLUR_KERNEL), sigma)
        frames = []
        for image, (values, order) in zip(blurred, draws, strict=True):
            out = image[None]
            if values[1] < self.color_jitter_prob:
                out = _color_jitter(out, values[2:6], order)
            if values[6] < self.grayscale_prob:
                out = rgb_to_grayscale(out).expand(-1, 3, -1, -1)
            frames.append(out[0])
        new_images = torch.stack(frames).clamp(0.0, 1.0).to(torch.float32).contiguous()
        return dataclasses.replace(sample, images=new_images)


def _color_jitter(image: Tensor, uniforms: Sequence[float], order: Sequence[int]) -> Tensor:
    """Kornia ``ColorJitter`` with given draws on ``float[1, 3, H, W]``.

    ``uniforms`` are ``U[0, 1)`` for brightness, contrast, saturation, hue; ``order`` is a
    permutation of ``0..3`` (brightness, contrast, saturation, hue).
    """
    b, c, s, h = JITTER_STRENGTH
    brightness = 1.0 - b + 2.0 * b * uniforms[0]
    contrast = 1.0 - c + 2.0 * c * uniforms[1]
    saturation = 1.0 - s + 2.0 * s * uniforms[2]
    hue = -h + 2.0 * h * uniforms[3]
    out = image.clamp(0.0, 1.0)
    for step in order:
        if step == 0:
            out = adjust_brightness_accumulative(out, brightness)
        elif step == 1:
            out = adjust_contrast_with_mean_subtraction(out, contrast)
        elif step == 2:
            out = adjust_saturation_with_gray_subtraction(out, saturation)
        else:
            out = adjust_hue(out, hue * 2.0 * math.pi)
    return out.clamp(0.0, 1.0)


def draw_resolution(
    resolutions: Sequence[tuple[int, int]], generator: torch.Generator
) -> tuple[int, int]:
    """One ``(height, width)`` of ``resolutions``, uniformly (one ``randint`` from ``generator``).

    Raises:
        ValueError: if ``resolutions`` is empty.
    """
    if not resolutions:
        raise ValueError("resolutions must not be empty")
    index = int(
        torch.randint(len(resolutions), (1,), generator=generator, device=generator.device).item()
    )
    height, width = resolutions[index]
    return int(height), int(width)


def resize_clips(clips: list[ClipSample], size: tuple[int, int]) -> list[ClipSample]:
    """Resolution jitter: resize every clip of a batch to ``size`` (method §4.3 step 5).

    Images bilinear (``align_corners=False``), masks and semantic nearest; instances with
    ``<= MIN_MASK_PIXELS`` pixels are dropped and boxes recomputed. Deterministic (no draws).

    Args:
        clips: the batch; not modified.
        size: output ``(height, width)``.

    Returns:
        New clips with images ``float32[T, 3, height, width]``.
    """
    out_size = (int(size[0]), int(size[1]))
    result = []
    for clip in clips:
        h, w = clip.size
        result.append(_resize_clip(clip, (0, 0, w, h), out_size))
    return result
