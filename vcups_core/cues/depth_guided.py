"""Depth-guided semantic inference (method §2.2 step 1, CUPS' ``depth_guided_sliding_window``).

A semantic network is run twice per frame and the two predictions are blended per pixel by depth:

* **sliding window** :func:`sliding_window_logits`: ``crop × crop`` windows (320) every ``stride``
  pixels (160) over the full-resolution input; overlapping windows are averaged. High resolution,
  little context: good for small, distant structure.
* **global** :func:`global_logits`: the whole input downsampled ×0.5, run once as it is and once
  flipped horizontally (the flipped result is flipped back), the two averaged and bilinearly
  upsampled to full size. Low resolution, whole-image context: good for large, near surfaces.
* **fusion** :func:`fuse`: ``L = w · L_g + (1 - w) · L_sw`` with ``w = 1 / (1 + D)``
  (:func:`fusion_weights`), so near pixels follow the global and far pixels the sliding window.

Everything is model-agnostic: the network is a callable on numpy arrays, ``infer(x: float32[3, h,
w]) -> float32[C, h, w]`` (ImageNet-normalised image in, logits at the input's size out). To
follow CUPS exactly, pass the network as an *encoder* plus a *probe* (``probe=``): CUPS averages
the DepthG **code** of the image and of its flipped copy, upsamples the code and only then applies
the cluster probe ``log_softmax(α · cos(code, centroids))``. With a single logits callable the
*logits* are averaged and upsampled instead; the probe is non-linear, so the two differ slightly
(only in the global branch; in the sliding window CUPS upsamples the code of each crop to the crop
size before the probe, which :func:`encode_then_probe` reproduces).

Depth scale (method §8 Q10). ``w = 1 / (1 + D)`` is not scale-invariant: CUPS uses metric stereo
depth (metres, ``D = f·B / disparity``), so ``w = 0.5`` at 1 m and ``w ≈ 0.06`` at 15 m. The
depth here is relative (:class:`~vcups_core.cues.depth.ParallaxDepth`: units of the camera's
unit-norm translation between the frame and its flow partner; a monocular network: up to scale),
so it must be brought to metres first. :func:`median_depth_scale` gives the factor that maps the
median of the frame's valid depth to a configured metric median (default
:data:`DEFAULT_METRIC_MEDIAN_M` = 15 m, a rough street-scene value, *not measured* on Cityscapes;
calibrate it if stereo or LiDAR statistics are available); ``depth_scale="median"`` in
:func:`depth_guided_logits` does this per frame. Metric depth (stereo, a metric network) is passed
with ``depth_scale=1``.

Unknown depth (NaN). Parallax depth is NaN where the flow is invalid or occluded, near the focus
of expansion, on independently moving objects, and on whole frames without camera translation.
Nothing is known about such a pixel, so it gets the weight of a *typical* pixel: the depth used
is ``fallback_depth`` (with ``depth_scale="median"`` the configured metric median), or, when that
is None, the median of the frame's valid depth. This keeps an unknown pixel close to the
sliding-window prediction, as most of a street scene is, without pretending to know it is near
(``w = 1``) or infinitely far (``w = 0``, what CUPS' ``f·B / (|disp| + 1e-10)`` would give a zero
disparity). A frame without any valid depth and no ``fallback_depth`` is an error, never a guess.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)

from vcups_core.cues.base import FloatMap

FloatArray = npt.NDArray[np.float32]
Infer = Callable[[FloatArray], npt.NDArray[np.floating[Any]]]
"""A network on numpy arrays: ``float32[D_in, h, w]`` → ``float[D_out, h', w']``."""

DEFAULT_METRIC_MEDIAN_M = 15.0
"""Median metric depth (m) a relative depth map is scaled to (rough street-scene guess)."""

PadMode = Literal["constant", "edge"]


# ----------------------------------------------------------------------------------------------
# helpers


def _as_chw(x: npt.NDArray[Any], what: str) -> FloatArray:
    arr = np.asarray(x)
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise ValueError(f"{what} must be [C, H, W] with every size >= 1, got {list(arr.shape)}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def resize_bilinear(x: npt.NDArray[Any], size: tuple[int, int]) -> FloatArray:
    """Bilinear resize of ``[C, h, w]`` to ``[C, *size]`` (PyTorch ``align_corners=False``, no
    antialiasing: exactly CUPS' ``F.interpolate``); a no-op copy when the size is unchanged."""
    arr = _as_chw(x, "resize input")
    if arr.shape[1:] == tuple(size):
        return arr.copy()
    with torch.inference_mode():
        out = F.interpolate(
            torch.from_numpy(arr)[None], size=size, mode="bilinear", align_corners=False
        )
        result: FloatArray = np.ascontiguousarray(out[0].numpy(), dtype=np.float32)
    return result


def encode_then_probe(encode: Infer, probe: Infer) -> Infer:
    """CUPS' per-crop path as one callable: ``probe(upsample(encode(x), x's size))``.

    Args:
        encode: ``float32[3, h, w]`` → code ``float[D, h', w']`` (any resolution, e.g. DINO's
            1/8 patch grid).
        probe: code ``float32[D, h, w]`` → logits ``float[C, h, w]`` (per pixel, e.g. the DepthG
            cluster probe ``log_softmax(2 · cos(code, centroids))``).

    Returns:
        ``infer(x) -> float32[C, h, w]`` for :func:`sliding_window_logits`.
    """

    def infer(x: FloatArray) -> FloatArray:
        code = resize_bilinear(encode(x), (x.shape[1], x.shape[2]))
        return _as_chw(probe(code), "probe output")

    return infer


# ----------------------------------------------------------------------------------------------
# sliding window


def padded_size(size: int, crop: int, stride: int) -> int:
    """The padded length along one axis: the smallest ``crop + k · stride >= size`` (``k >= 0``).

    With ``crop`` a multiple of ``stride`` (320 / 160) this is the next multiple of ``stride``
    that is at least ``crop``; 640 and 1280 need no padding.
    """
    if size < 1 or crop < 1 or not 1 <= stride <= crop:
        raise ValueError(
            f"need size >= 1, crop >= 1 and 1 <= stride <= crop (else windows leave gaps), "
            f"got size {size}, crop {crop}, stride {stride}"
        )
    return crop + max(0, math.ceil((size - crop) / stride)) * stride


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Start offsets of the windows along one axis of the padded input (``0, stride, ...``)."""
    return list(range(0, padded_size(size, crop, stride) - crop + 1, stride))


def window_counts(height: int, width: int, crop: int = 320, stride: int = 160) -> FloatArray:
    """How many windows of :func:`sliding_window_logits` cover each pixel.

    Returns:
        ``float32[height, width]``, every entry ``>= 1`` (the divisor of the window average).
    """
    rows = np.zeros(padded_size(height, crop, stride), np.float32)
    cols = np.zeros(padded_size(width, crop, stride), np.float32)
    for y in window_starts(height, crop, stride):
        rows[y : y + crop] += 1
    for x in window_starts(width, crop, stride):
        cols[x : x + crop] += 1
    counts: FloatArray = np.outer(rows[:height], cols[:width])
    return counts


def sliding_window_logits(
    image_or_features: npt.NDArray[Any],
    infer: Infer,
    crop: int = 320,
    stride: int = 160,
    *,
    pad_mode: PadMode = "constant",
) -> FloatArray:
    """Logits from overlapping ``crop × crop`` windows, averaged where they overlap.

    The input is padded at the bottom and right to :func:`padded_size` (a multiple of ``stride``
    for the default 320 / 160, at least ``crop``), windows start every ``stride`` pixels, each
    window's logits are summed into the padded grid and divided by the number of windows that
    cover the pixel (:func:`window_counts`), and the result is cropped back to ``H × W``.

    Padding: ``pad_mode="constant"`` pads zeros (CUPS pads with zeros too, via ``F.unfold``; on
    an ImageNet-normalised image zero is the mean colour); ``"edge"`` replicates the last row and
    column. At CUPS' 640×1280 nothing is padded, so the mode does not matter there. (CUPS pads
    ``stride - H % stride`` on *both* sides; bottom/right padding keeps the windows aligned with
    the image's top-left corner and never pads more than needed.)

    Args:
        image_or_features: ``float32[D, H, W]`` (an ImageNet-normalised image, D = 3, or features).
        infer: ``float32[D, crop, crop]`` → logits ``float[C, crop, crop]``.
        crop: window side (pixels).
        stride: offset between windows (pixels), ``1 <= stride <= crop``.
        pad_mode: ``"constant"`` (zeros) or ``"edge"``.

    Returns:
        ``float32[C, H, W]`` averaged logits.

    Raises:
        ValueError: for bad sizes, an unknown ``pad_mode``, or ``infer`` output of the wrong shape
            or with a varying number of channels.
    """
    x = _as_chw(image_or_features, "image_or_features")
    _, h, w = x.shape
    ph, pw = padded_size(h, crop, stride), padded_size(w, crop, stride)
    if pad_mode not in ("constant", "edge"):
        raise ValueError(f"pad_mode must be 'constant' or 'edge', got {pad_mode!r}")
    if (ph, pw) != (h, w):
        x = np.pad(x, ((0, 0), (0, ph - h), (0, pw - w)), mode=pad_mode)
    total: FloatArray | None = None
    for y0 in window_starts(h, crop, stride):
        for x0 in window_starts(w, crop, stride):
            window = np.ascontiguousarray(x[:, y0 : y0 + crop, x0 : x0 + crop])
            logits = np.asarray(infer(window))
            if logits.ndim != 3 or logits.shape[1:] != (crop, crop):
                raise ValueError(
                    f"infer must return [C, {crop}, {crop}] for a {crop}x{crop} crop, "
                    f"got {list(logits.shape)}"
                )
            if total is None:
                total = np.zeros((logits.shape[0], ph, pw), np.float32)
            elif logits.shape[0] != total.shape[0]:
                raise ValueError(
                    f"infer returned {logits.shape[0]} channels after {total.shape[0]}"
                )
            total[:, y0 : y0 + crop, x0 : x0 + crop] += logits
    assert total is not None  # at least one window per axis
    out: FloatArray = np.ascontiguousarray(total[:, :h, :w])
    out /= window_counts(h, w, crop, stride)[None]
    return out


# ----------------------------------------------------------------------------------------------
# global pass


def global_logits(
    image: npt.NDArray[Any],
    infer: Infer,
    scale: float = 0.5,
    flip: bool = True,
    *,
    probe: Infer | None = None,
) -> FloatArray:
    """Whole-image logits at reduced resolution, averaged with the horizontally flipped pass.

    ``image`` is resized bilinearly to ``(floor(H · scale), floor(W · scale))`` (CUPS:
    ``H // 2, W // 2``), ``out = infer(small)``; with ``flip`` the average
    ``(out + flip(infer(flip(small)))) / 2`` is taken; the result is upsampled bilinearly to
    ``H × W`` (``align_corners=False`` both ways).

    Without ``probe``, ``infer`` returns logits and the *logits* are averaged and upsampled. With
    ``probe`` (the CUPS order), ``infer`` is the encoder returning a code, the *code* is averaged
    and upsampled, and ``probe`` turns the full-resolution code into logits (see the module
    docstring for why the two differ).

    Args:
        image: ``float32[3, H, W]`` ImageNet-normalised image.
        infer: logits network, or the encoder when ``probe`` is given
            (``float32[3, h, w]`` → ``float[C or D, h', w']``, any output resolution).
        scale: resize factor of the global pass, ``0 < scale <= 1``.
        flip: average with the horizontally flipped pass.
        probe: optional per-pixel head, code ``float32[D, H, W]`` → logits ``float[C, H, W]``.

    Returns:
        ``float32[C, H, W]``.

    Raises:
        ValueError: for a bad ``scale`` or output shapes that do not match.
    """
    x = _as_chw(image, "image")
    _, h, w = x.shape
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    size = (max(1, math.floor(h * scale)), max(1, math.floor(w * scale)))
    small = resize_bilinear(x, size)
    out = _as_chw(infer(small), "infer output")
    if flip:
        mirrored = _as_chw(infer(np.ascontiguousarray(small[:, :, ::-1])), "infer output")
        if mirrored.shape != out.shape:
            raise ValueError(
                f"infer output of the flipped image {list(mirrored.shape)} differs from "
                f"{list(out.shape)}"
            )
        out = (out + mirrored[:, :, ::-1]) * np.float32(0.5)  # fresh: infer may reuse arrays
    out = resize_bilinear(out, (h, w))
    if probe is not None:
        out = _as_chw(probe(out), "probe output")
        if out.shape[1:] != (h, w):
            raise ValueError(f"probe must keep the size {h}x{w}, got {list(out.shape)}")
    return out


# ----------------------------------------------------------------------------------------------
# fusion


def median_depth_scale(
    depth: npt.NDArray[Any], target_median: float = DEFAULT_METRIC_MEDIAN_M
) -> float | None:
    """The factor ``s`` with ``median(s · D) = target_median`` over the frame's valid depth.

    Valid = finite and ``> 0``. This is how relative depth (parallax, monocular) is brought to the
    metric scale that ``w = 1 / (1 + D)`` assumes (module docstring, method §8 Q10).

    Args:
        depth: ``float32[H, W]``, NaN = unknown.
        target_median: metric median depth (m) to map to, ``> 0``.

    Returns:
        ``s``, or None when the frame has no valid depth (nothing to scale; the caller's
        ``fallback_depth`` then decides every pixel).

    Raises:
        ValueError: if ``target_median <= 0``.
    """
    if not target_median > 0:
        raise ValueError(f"target_median must be > 0, got {target_median}")
    d = np.asarray(depth, dtype=np.float32)
    valid = d[np.isfinite(d) & (d > 0)]
    if valid.size == 0:
        return None
    return float(target_median / float(np.median(valid)))


def fusion_weights(
    depth: npt.NDArray[Any],
    *,
    depth_scale: float = 1.0,
    fallback_depth: float | None = None,
) -> FloatMap:
    """Per-pixel weight of the global logits, ``w = 1 / (1 + depth_scale · D)``.

    ``D = 0`` gives 1 (global only), ``D = 1`` 0.5, ``D = 3`` 0.25, ``D = inf`` 0 (sliding window
    only). A NaN depth is replaced by ``fallback_depth`` (already in scaled units, i.e. metres)
    or, when that is None, by the median of the frame's valid scaled depth (module docstring).

    Args:
        depth: ``float32[H, W]`` depth ``>= 0`` (``+inf`` allowed), NaN = unknown.
        depth_scale: factor to metric depth, ``> 0`` (see :func:`median_depth_scale`).
        fallback_depth: scaled depth used for NaN pixels, ``>= 0``, or None for the frame's
            median.

    Returns:
        ``float32[H, W]`` in ``[0, 1]``.

    Raises:
        ValueError: if ``depth`` is not 2-D or has negative values, ``depth_scale <= 0``,
            ``fallback_depth < 0``, or a NaN pixel needs the median of a frame without valid
            depth (pass ``fallback_depth``).
    """
    d = np.array(depth, dtype=np.float32)  # a copy, filled below
    if d.ndim != 2:
        raise ValueError(f"depth must be [H, W], got {list(d.shape)}")
    if not (depth_scale > 0 and math.isfinite(depth_scale)):
        raise ValueError(f"depth_scale must be finite and > 0, got {depth_scale}")
    if fallback_depth is not None and not fallback_depth >= 0:
        raise ValueError(f"fallback_depth must be >= 0, got {fallback_depth}")
    unknown = np.isnan(d)
    if np.any(d[~unknown] < 0):
        raise ValueError("depth must be >= 0 (NaN marks unknown pixels)")
    d *= np.float32(depth_scale)
    if unknown.any():
        if fallback_depth is None:
            known = d[~unknown]
            if known.size == 0:
                raise ValueError(
                    "depth is NaN everywhere and no fallback_depth was given: pass the depth to "
                    "use for unknown pixels (e.g. the metric median the depth is scaled to)"
                )
            fallback_depth = float(np.median(known))
        d[unknown] = fallback_depth
    d += 1.0
    weights: FloatMap = np.reciprocal(d, out=d)
    return weights


def fuse(
    global_logits: npt.NDArray[Any],
    sliding_logits: npt.NDArray[Any],
    depth: npt.NDArray[Any],
    *,
    depth_scale: float = 1.0,
    fallback_depth: float | None = None,
) -> FloatArray:
    """``L = w · L_g + (1 - w) · L_sw`` per pixel with ``w`` = :func:`fusion_weights`.

    Args:
        global_logits: ``float32[C, H, W]`` (:func:`global_logits`).
        sliding_logits: ``float32[C, H, W]`` (:func:`sliding_window_logits`).
        depth: ``float32[H, W]``, NaN = unknown.
        depth_scale, fallback_depth: as for :func:`fusion_weights`.

    Returns:
        ``float32[C, H, W]`` fused logits.

    Raises:
        ValueError: if the shapes do not match (or as :func:`fusion_weights`).
    """
    g = _as_chw(global_logits, "global_logits")
    s = _as_chw(sliding_logits, "sliding_logits")
    if g.shape != s.shape or np.shape(depth) != g.shape[1:]:
        raise ValueError(
            f"global {list(g.shape)}, sliding {list(s.shape)} and depth "
            f"{list(np.shape(depth))} must share [C, H, W] / [H, W]"
        )
    w = fusion_weights(depth, depth_scale=depth_scale, fallback_depth=fallback_depth)[None]
    out: FloatArray = w * g
    out += (1 - w) * s
    return out


def depth_guided_logits(
    image: npt.NDArray[Any],
    depth: npt.NDArray[Any],
    infer: Infer,
    *,
    probe: Infer | None = None,
    crop: int = 320,
    stride: int = 160,
    scale: float = 0.5,
    flip: bool = True,
    pad_mode: PadMode = "constant",
    depth_scale: float | Literal["median"] = 1.0,
    target_median: float = DEFAULT_METRIC_MEDIAN_M,
    fallback_depth: float | None = None,
) -> FloatArray:
    """Method §2.2 step 1 in one call: sliding window, global pass, depth-weighted fusion.

    Args:
        image: ``float32[3, H, W]`` ImageNet-normalised image (CUPS: 640×1280).
        depth: ``float32[H, W]`` depth, NaN = unknown.
        infer: logits network, or the encoder when ``probe`` is given (then both branches follow
            CUPS: the sliding window probes each crop's upsampled code, :func:`encode_then_probe`;
            the global pass probes the averaged, upsampled code).
        probe: optional per-pixel head (see :func:`global_logits`).
        crop, stride, pad_mode: the sliding window (:func:`sliding_window_logits`).
        scale, flip: the global pass (:func:`global_logits`).
        depth_scale: factor to metric depth, or ``"median"``: the per-frame
            :func:`median_depth_scale` to ``target_median`` (relative depth: parallax, monocular
            networks). Metric depth (stereo, as in CUPS): 1.
        target_median: metric median (m) for ``depth_scale="median"``.
        fallback_depth: metric depth of NaN pixels; None = ``target_median`` with
            ``depth_scale="median"``, else the frame's median (:func:`fusion_weights`).

    Returns:
        ``float32[C, H, W]`` fused logits (input of the dense CRF, method §2.2 step 2).
    """
    if depth_scale == "median":
        scale_factor = median_depth_scale(depth, target_median)
        if fallback_depth is None:
            fallback_depth = target_median
        resolved_scale = 1.0 if scale_factor is None else scale_factor  # None: every pixel NaN
    else:
        resolved_scale = float(depth_scale)
    window_infer = infer if probe is None else encode_then_probe(infer, probe)
    sliding = sliding_window_logits(image, window_infer, crop, stride, pad_mode=pad_mode)
    whole = global_logits(image, infer, scale, flip, probe=probe)
    return fuse(whole, sliding, depth, depth_scale=resolved_scale, fallback_depth=fallback_depth)
