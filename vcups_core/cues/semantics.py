"""Weight-free semantic pseudo-classes: hand-made per-pixel features clustered into pseudo-classes.

The paper's semantic cue is DepthG on DINO (``docs/method.md`` §2.2); without its weights this is
the default (``docs/cues.md``, "Semantics without a network"). Two parts:

* :func:`pixel_features` turns a frame (and its depth cue, if any) into a fixed list of per-pixel
  features (:data:`FEATURE_NAMES`): smoothed Lab colour at a fine and a coarse scale, texture
  energy (oriented gradient energy at two scales, a Laplacian-of-Gaussian energy), the image row
  and the distance from the centre column, and from the depth cue a known-depth flag, the log
  inverse depth relative to the frame's median and the surface normal. Filter sizes are given for
  a 512 px wide image and scale with the width.
* :class:`SemanticClusterer` standardises the features with statistics of the training pixels and
  clusters pixels sampled from many frames of the user's own clips with a seeded k-means (k = 27
  as the paper's DepthG probe). At inference, the soft assignment is a cluster probe like CUPS's
  ``log_softmax(temperature * cos(feature, centroid))`` (or its Euclidean form, the default).

Measured (``benchmarks/pseudo_semantics.py``): only colour and row carry weight by default
(:data:`DEFAULT_FEATURE_WEIGHTS`); the texture and depth columns are computed and can be
weighted in, but pixel-wise k-means did worse with them on the synthetic drives.

Depth is optional everywhere: the feature layout never changes, and unknown depth (``None``,
NaN, inf or <= 0) is the flag set and zeros, so one clusterer serves frames with and without a
depth estimate. Columns that are constant over the training pixels (all depth columns when the
clusterer is fitted without depth) get weight 0.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
Metric = Literal["cosine", "euclidean"]

FEATURE_NAMES: tuple[str, ...] = (
    "L",  # Lab lightness (0..100), Gaussian sigma 1
    "a",  # Lab a, sigma 1
    "b",  # Lab b, sigma 1
    "L_coarse",  # Lab at sigma 6 (context)
    "a_coarse",
    "b_coarse",
    "grad_x_fine",  # sqrt(local mean of (d/dx L)^2), derivative at sigma 1, pooled at sigma 4
    "grad_y_fine",
    "grad_x_coarse",  # the same with the derivative at sigma 3, pooled at sigma 8
    "grad_y_coarse",
    "log_energy",  # |Laplacian of Gaussian| of L at sigma 2, pooled at sigma 4
    "row",  # (y + 0.5) / H, 0 = top
    "column_offset",  # |(x + 0.5) / W - 0.5| * 2, 0 = centre column, 1 = left/right border
    "depth_unknown",  # 1 where the depth is unknown (None, NaN, inf, <= 0), else 0
    "log_inv_depth",  # log(1/depth) minus its median over the frame's known pixels; 0 if unknown
    "normal_x",  # unit surface normal in camera coordinates from the inverse-depth gradient
    "normal_y",  # (ground: ~(0, +-1, 0); side facades: ~(+-1, 0, 0); frontal: ~(0, 0, 1))
    "normal_z",  # 0 where unknown
)
"""Columns of :func:`pixel_features`, in order (D = 18)."""

NUM_FEATURES = len(FEATURE_NAMES)
DEPTH_FEATURES = slice(13, 18)
"""The columns derived from the depth cue."""

DEFAULT_FEATURE_WEIGHTS: tuple[float, ...] = (1, 1, 1) + (0,) * 8 + (1,) + (0,) * 6
"""Weights of the standardised features in :class:`SemanticClusterer` by default: Lab colour and
the image row only. Measured on the synthetic drives (``benchmarks/pseudo_semantics.py``), every
other column (coarse colour, texture, column, depth, normals) lowered the mIoU of pixel-wise
k-means at weight 1 and at 0.3: they add directions of variance that k-means spends clusters on
(facade orientation, texture of one class) instead of separating classes."""

_REFERENCE_WIDTH = 512.0  # filter sigmas below are in pixels of a 512 px wide image
_SIGMA_COLOUR = 0.0
_SIGMA_CONTEXT = 6.0
_SIGMA_DERIV = (1.0, 3.0)
_SIGMA_POOL = (4.0, 8.0)
_SIGMA_LOG = 2.0
_SIGMA_DEPTH = 2.0
_LOG_DEPTH_CLIP = 4.0
_FORMAT_VERSION = 1


def feature_grid_shape(height: int, width: int, stride: int) -> tuple[int, int]:
    """Rows and columns of the pixel grid :func:`pixel_features` samples (``N = rows * cols``).

    The grid holds the pixels ``(stride // 2 + i * stride, stride // 2 + j * stride)``.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    off = stride // 2
    return len(range(off, height, stride)), len(range(off, width, stride))


def _blur(x: F32, sigma: float) -> F32:
    if sigma <= 0:
        return np.asarray(x, np.float32)
    out = cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    return np.asarray(out, np.float32)


def _energy(response: F32, sigma: float) -> F32:
    """Local RMS of a filter response (texture energy)."""
    return np.sqrt(np.maximum(_blur(response * response, sigma), 0.0))


def _depth_features(depth: F32 | None, shape: tuple[int, int], scale: float, focal: float) -> F32:
    """``float32[5, H, W]``: unknown flag, relative log inverse depth, surface normal."""
    h, w = shape
    out = np.zeros((5, h, w), np.float32)
    if depth is None:
        out[0] = 1.0
        return out
    d = np.asarray(depth, np.float32)
    if d.shape != shape:
        raise ValueError(f"depth must be float32[{h}, {w}], got {list(d.shape)}")
    with np.errstate(invalid="ignore", divide="ignore"):
        known = np.isfinite(d) & (d > 0)
        rho = np.where(known, 1.0 / np.where(known, d, 1.0), 0.0).astype(np.float32)
    out[0] = ~known
    if not known.any():
        return out
    # Normalised convolution: smooth the inverse depth over known pixels only.
    m = known.astype(np.float32)
    sigma = _SIGMA_DEPTH * scale
    weight = _blur(m, sigma)
    support = weight > 0.05
    rho_s = np.where(support, _blur(rho, sigma) / np.maximum(weight, 1e-6), 0.0).astype(np.float32)
    log_rho = np.log(np.maximum(rho_s, 1e-12))
    median = float(np.median(log_rho[known & support])) if (known & support).any() else 0.0
    rel = np.clip(log_rho - median, -_LOG_DEPTH_CLIP, _LOG_DEPTH_CLIP)
    out[1] = np.where(known, rel, 0.0)
    # A plane n . X = c has inverse depth rho = n . K^-1 p / c, linear in the pixel p, so
    # (f * drho/dx, f * drho/dy, rho - f drho/dx rx - f drho/dy ry) is parallel to n (any scale).
    gx = np.asarray(cv2.Sobel(rho_s, cv2.CV_32F, 1, 0, ksize=3), np.float32) / 8.0
    gy = np.asarray(cv2.Sobel(rho_s, cv2.CV_32F, 0, 1, ksize=3), np.float32) / 8.0
    rx = ((np.arange(w, dtype=np.float32) + 0.5 - w / 2) / focal)[None, :]
    ry = ((np.arange(h, dtype=np.float32) + 0.5 - h / 2) / focal)[:, None]
    nx, ny = focal * gx, focal * gy
    nz = rho_s - nx * rx - ny * ry
    norm = np.sqrt(nx * nx + ny * ny + nz * nz)
    ok = known & (norm > 1e-12)
    safe = np.where(ok, norm, 1.0)
    for i, comp in enumerate((nx, ny, nz)):
        out[2 + i] = np.where(ok, comp / safe, 0.0)
    return out


def pixel_features(
    image: npt.NDArray[np.uint8],
    depth: F32 | None = None,
    *,
    stride: int = 1,
    focal_px: float | None = None,
) -> F32:
    """Per-pixel features of one frame that need no weights (columns: :data:`FEATURE_NAMES`).

    Every map is computed at the full size, then sampled on the grid of
    :func:`feature_grid_shape` (row-major). Filter sigmas are in pixels of a 512 px wide image
    and scale with the width, so a frame gives the same features at any processing size.

    Args:
        image: ``uint8[H, W, 3]`` RGB.
        depth: ``float32[H, W]`` depth of any scale (only ratios are used), NaN/inf/<= 0 where
            unknown; None = unknown everywhere.
        stride: sampling step of the output grid (1 = every pixel).
        focal_px: focal length in pixels at this size, for the surface normal (principal point
            at the image centre); None = the image width (a ~53 deg horizontal field of view).

    Returns:
        ``float32[N, 18]`` with ``N = rows * cols`` of ``feature_grid_shape(H, W, stride)``.

    Raises:
        ValueError: on a wrong image or depth shape/dtype or a stride < 1.
    """
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be uint8[H, W, 3], got {img.dtype}{list(img.shape)}")
    h, w = img.shape[:2]
    rows, cols = feature_grid_shape(h, w, stride)
    scale = w / _REFERENCE_WIDTH
    focal = float(focal_px) if focal_px else float(w)
    if not focal > 0:
        raise ValueError(f"focal_px must be > 0, got {focal_px}")

    lab = np.asarray(cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab), np.float32)
    maps: list[F32] = []
    fine = _blur(lab, _SIGMA_COLOUR * scale)
    coarse = _blur(lab, _SIGMA_CONTEXT * scale)
    maps.extend(fine[..., c] for c in range(3))
    maps.extend(coarse[..., c] for c in range(3))
    lum = np.ascontiguousarray(lab[..., 0])
    for s_d, s_p in zip(_SIGMA_DERIV, _SIGMA_POOL, strict=True):
        smooth = _blur(lum, s_d * scale)
        # Sobel / 8 is the central-difference derivative per pixel; * scale makes it per
        # reference pixel, so the energy does not change with the processing size.
        dx = np.asarray(cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3), np.float32) * (scale / 8)
        dy = np.asarray(cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3), np.float32) * (scale / 8)
        maps.append(_energy(dx, s_p * scale))
        maps.append(_energy(dy, s_p * scale))
    smooth = _blur(lum, _SIGMA_LOG * scale)
    lap = np.asarray(cv2.Laplacian(smooth, cv2.CV_32F, ksize=1), np.float32) * scale * scale
    maps.append(_energy(lap, _SIGMA_POOL[0] * scale))
    ys = (np.arange(h, dtype=np.float32) + 0.5) / h
    xs = np.abs((np.arange(w, dtype=np.float32) + 0.5) / w - 0.5) * 2
    maps.append(np.broadcast_to(ys[:, None], (h, w)))
    maps.append(np.broadcast_to(xs[None, :], (h, w)))
    maps.extend(_depth_features(depth, (h, w), scale, focal))

    off = stride // 2
    out = np.empty((rows, cols, NUM_FEATURES), np.float32)
    for i, m in enumerate(maps):
        out[..., i] = m[off::stride, off::stride]
    return out.reshape(rows * cols, NUM_FEATURES)


# --------------------------------------------------------------------------------------------------
# k-means


def _sqdist(x: F32, centroids: F32) -> F32:
    """``float32[N, K]`` squared Euclidean distances."""
    d = (x * x).sum(1, keepdims=True) - 2 * (x @ centroids.T) + (centroids * centroids).sum(1)
    return np.asarray(np.maximum(d, 0.0), np.float32)


def _normalise(x: F32) -> F32:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.maximum(norm, 1e-12), np.float32)


def _kmeans_pp(x: F32, k: int, rng: np.random.Generator) -> F32:
    """k-means++ seeding (D^2 sampling)."""
    n = len(x)
    centroids = np.empty((k, x.shape[1]), np.float32)
    centroids[0] = x[rng.integers(n)]
    closest = _sqdist(x, centroids[:1])[:, 0]
    for i in range(1, k):
        weights = closest.astype(np.float64)
        total = float(weights.sum())
        if total <= 0:  # fewer distinct points than clusters
            centroids[i] = x[rng.integers(n)]
        else:
            centroids[i] = x[rng.choice(n, p=weights / total)]
        closest = np.minimum(closest, _sqdist(x, centroids[i : i + 1])[:, 0])
    return centroids


def kmeans(
    x: F32,
    k: int,
    *,
    metric: Metric = "euclidean",
    iterations: int = 50,
    n_init: int = 2,
    seed: int = 0,
    tol: float = 1e-4,
) -> tuple[F32, float]:
    """Seeded Lloyd k-means (or spherical k-means) with k-means++ seeding; deterministic.

    Args:
        x: ``float32[N, D]`` samples (N >= k).
        k: clusters.
        metric: ``"euclidean"`` (Lloyd) or ``"cosine"`` (spherical: samples and centroids on the
            unit sphere, assignment by the largest cosine).
        iterations: most Lloyd iterations per run.
        n_init: runs from different seedings; the one with the lowest inertia is kept.
        seed: seed of the seedings.
        tol: stop when no centroid moves more than this (relative to the data's spread).

    Returns:
        ``(centroids float32[k, D], inertia)``; inertia is the sum of squared distances
        (euclidean) or of ``1 - cos`` (cosine).

    Raises:
        ValueError: if there are fewer samples than clusters.
    """
    data = np.ascontiguousarray(x, np.float32)
    if data.ndim != 2 or len(data) < k or k < 1:
        raise ValueError(f"kmeans needs float[N >= k, D] with k >= 1, got {data.shape}, k={k}")
    if metric == "cosine":
        data = _normalise(data)
    spread = float(data.std(0).sum()) or 1.0
    rng = np.random.default_rng(seed)
    best: tuple[F32, float] | None = None
    for _ in range(n_init):
        c = _kmeans_pp(data, k, rng)
        if metric == "cosine":
            c = _normalise(c)
        for _ in range(iterations):
            cost = 1.0 - data @ c.T if metric == "cosine" else _sqdist(data, c)
            labels = cost.argmin(1)
            counts = np.bincount(labels, minlength=k)
            sums = np.stack(
                [
                    np.bincount(labels, weights=data[:, j], minlength=k)
                    for j in range(data.shape[1])
                ],
                axis=1,
            )
            new = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
            empty = np.flatnonzero(counts == 0)
            if empty.size:  # re-seed empty clusters at the worst-fitted samples
                worst = np.argsort(-cost[np.arange(len(data)), labels], kind="stable")
                new[empty] = data[worst[: empty.size]]
            if metric == "cosine":
                new = _normalise(new)
            shift = float(np.abs(new - c).max())
            c = new.astype(np.float32)
            if shift <= tol * spread:
                break
        cost = 1.0 - data @ c.T if metric == "cosine" else _sqdist(data, c)
        inertia = float(cost.min(1).sum())
        if best is None or inertia < best[1]:
            best = (c, inertia)
    assert best is not None
    return best


# --------------------------------------------------------------------------------------------------
# Clusterer


class SemanticClusterer:
    """Pseudo-classes from per-pixel features: standardise, k-means, cluster probe.

    Fit on pixels sampled from many frames of the user's own clips (:meth:`fit`); then
    :meth:`predict_log_proba` gives the CUPS cluster-probe logits
    ``log_softmax(temperature * cos(z, centroid))`` of the standardised feature ``z``, which the
    dense CRF and the temporal smoothing take like DepthG's.

    Two metrics. ``"euclidean"`` (default, measured better): Lloyd k-means on the standardised
    features, probe ``log_softmax(-temperature * |z - c|^2 / D_used)`` (``D_used``: columns with a
    non-zero weight), so ``temperature`` acts on the mean squared standardised distance.
    ``"cosine"``: spherical k-means and the paper's probe ``log_softmax(temperature * cos)``.
    Either way the probe's argmax is exactly the k-means assignment and does not depend on
    ``temperature``; the paper's alpha = 2 (on DINO codes) only sets how peaked the unary of the
    dense CRF is (with the euclidean probe and alpha = 2, the typical max probability is
    0.3-0.6; raise it for a more confident unary).

    Args:
        num_classes: pseudo-classes (k).
        temperature: alpha of the probe.
        metric: ``"euclidean"`` or ``"cosine"`` (see above).
        feature_weights: ``float[D]`` multiplied into the standardised features; None =
            :data:`DEFAULT_FEATURE_WEIGHTS` for the 18 :func:`pixel_features` columns, else 1.
        samples_per_frame: pixels sampled from each frame in :meth:`fit`.
        max_samples: cap on all sampled pixels (a uniform subsample beyond it).
        iterations, n_init: k-means iterations and restarts.
        seed: seed of the sampling and the k-means seeding (fit is deterministic).
    """

    def __init__(
        self,
        num_classes: int = 27,
        *,
        temperature: float = 2.0,
        metric: Metric = "euclidean",
        feature_weights: Sequence[float] | npt.NDArray[np.floating] | None = None,
        samples_per_frame: int = 4096,
        max_samples: int = 200_000,
        iterations: int = 50,
        n_init: int = 2,
        seed: int = 0,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if metric not in ("cosine", "euclidean"):
            raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
        if samples_per_frame < 1 or max_samples < num_classes:
            raise ValueError(
                f"samples_per_frame >= 1 and max_samples >= num_classes expected, got "
                f"{samples_per_frame}, {max_samples}"
            )
        self.num_classes = int(num_classes)
        self.temperature = float(temperature)
        self.metric: Metric = metric
        self.feature_weights = (
            None if feature_weights is None else np.asarray(feature_weights, np.float32)
        )
        self.samples_per_frame = int(samples_per_frame)
        self.max_samples = int(max_samples)
        self.iterations = int(iterations)
        self.n_init = int(n_init)
        self.seed = int(seed)
        self.mean: F32 | None = None
        self.scale: F32 | None = None
        self.centroids: F32 | None = None

    @property
    def fitted(self) -> bool:
        return self.centroids is not None

    def fit(self, frames: Iterable[F32]) -> SemanticClusterer:
        """Fit the standardisation and the centroids on pixels sampled from ``frames``.

        Args:
            frames: per-frame feature arrays ``float32[N_i, D]`` (e.g. :func:`pixel_features`
                at a stride of 2-4); ``samples_per_frame`` rows of each are drawn at random.

        Returns:
            ``self``.

        Raises:
            ValueError: on inconsistent D, non-finite features, or fewer samples than classes.
        """
        rng = np.random.default_rng(self.seed)
        picked: list[F32] = []
        dim: int | None = None
        for feats in frames:
            f = np.asarray(feats, np.float32)
            if f.ndim != 2 or (dim is not None and f.shape[1] != dim):
                raise ValueError(f"every frame must be float32[N, {dim or 'D'}], got {f.shape}")
            dim = f.shape[1]
            n = min(self.samples_per_frame, len(f))
            picked.append(f[np.sort(rng.choice(len(f), n, replace=False))])
        if dim is None:
            raise ValueError("fit needs at least one frame")
        x = np.concatenate(picked)
        if len(x) > self.max_samples:
            x = x[np.sort(rng.choice(len(x), self.max_samples, replace=False))]
        if len(x) < self.num_classes:
            raise ValueError(f"{len(x)} sampled pixels < num_classes={self.num_classes}")
        if not np.isfinite(x).all():
            raise ValueError("features must be finite")
        if self.feature_weights is not None and self.feature_weights.shape != (dim,):
            raise ValueError(
                f"feature_weights must have length {dim}, got {self.feature_weights.shape}"
            )
        mean = x.mean(0)
        std = x.std(0)
        if self.feature_weights is not None:
            weights = self.feature_weights
        elif dim == NUM_FEATURES:
            weights = np.asarray(DEFAULT_FEATURE_WEIGHTS, np.float32)
        else:
            weights = np.ones(dim, np.float32)
        # constant columns (e.g. the depth columns without depth) carry nothing: weight 0
        self.scale = np.where(std > 1e-6, weights / np.maximum(std, 1e-6), 0.0).astype(np.float32)
        self.mean = mean.astype(np.float32)
        z = self._standardise(x)
        self.centroids, _ = kmeans(
            z,
            self.num_classes,
            metric=self.metric,
            iterations=self.iterations,
            n_init=self.n_init,
            seed=self.seed,
        )
        return self

    def _standardise(self, x: F32) -> F32:
        assert self.mean is not None
        assert self.scale is not None
        return ((np.asarray(x, np.float32) - self.mean) * self.scale).astype(np.float32)

    def _logits(self, features: F32) -> F32:
        """``float32[N, K]`` probe logits before the softmax."""
        if self.centroids is None:
            raise RuntimeError("SemanticClusterer is not fitted: call fit() or load() first")
        f = np.asarray(features, np.float32)
        if f.ndim != 2 or f.shape[1] != self.centroids.shape[1]:
            raise ValueError(
                f"features must be float32[N, {self.centroids.shape[1]}], got {f.shape}"
            )
        z = self._standardise(f)
        if self.metric == "cosine":
            return (self.temperature * (_normalise(z) @ self.centroids.T)).astype(np.float32)
        used = max(int(np.count_nonzero(self.scale)), 1) if self.scale is not None else z.shape[1]
        return (-self.temperature / used * _sqdist(z, self.centroids)).astype(np.float32)

    def predict_log_proba(self, features: F32, shape: tuple[int, int]) -> F32:
        """Cluster-probe log-probabilities of every pixel (the CUPS semantic logits L).

        Args:
            features: ``float32[N, D]`` (:func:`pixel_features`), row-major over ``shape``.
            shape: ``(rows, cols)`` of the feature grid, ``rows * cols == N``.

        Returns:
            ``float32[K, rows, cols]`` log_softmax over the K pseudo-classes (exp sums to 1).
        """
        rows, cols = shape
        if rows * cols != len(features):
            raise ValueError(f"shape {shape} does not hold {len(features)} feature rows")
        out = np.empty((len(features), self.num_classes), np.float32)
        chunk = 1 << 18
        for start in range(0, len(features), chunk):
            logits = self._logits(features[start : start + chunk])
            logits -= logits.max(1, keepdims=True)
            logits -= np.log(np.exp(logits).sum(1, keepdims=True))
            out[start : start + chunk] = logits
        return np.ascontiguousarray(out.T.reshape(self.num_classes, rows, cols))

    def predict(self, features: F32, shape: tuple[int, int]) -> npt.NDArray[np.uint8]:
        """Hard pseudo-class map ``uint8[rows, cols]`` (the probe's argmax = k-means assignment)."""
        rows, cols = shape
        if rows * cols != len(features):
            raise ValueError(f"shape {shape} does not hold {len(features)} feature rows")
        labels = np.empty(len(features), np.uint8)
        chunk = 1 << 18
        for start in range(0, len(features), chunk):
            labels[start : start + chunk] = self._logits(features[start : start + chunk]).argmax(1)
        return labels.reshape(rows, cols)

    def predict_image(
        self,
        image: npt.NDArray[np.uint8],
        depth: F32 | None = None,
        *,
        stride: int = 1,
        focal_px: float | None = None,
    ) -> F32:
        """:func:`pixel_features` + :meth:`predict_log_proba`, upsampled to the image size.

        Returns:
            ``float32[K, H, W]`` log-probabilities (bilinear upsampling of the logits when
            ``stride > 1``, renormalised).
        """
        h, w = image.shape[:2]
        grid = feature_grid_shape(h, w, stride)
        logp = self.predict_log_proba(
            pixel_features(image, depth, stride=stride, focal_px=focal_px), grid
        )
        if grid == (h, w):
            return logp
        up = cv2.resize(np.moveaxis(logp, 0, -1), (w, h), interpolation=cv2.INTER_LINEAR)
        up = np.moveaxis(np.asarray(up, np.float32).reshape(h, w, -1), -1, 0)
        up -= up.max(0, keepdims=True)
        up -= np.log(np.exp(up).sum(0, keepdims=True))
        return np.ascontiguousarray(up, np.float32)

    def log_proba(
        self,
        image: npt.NDArray[np.uint8],
        depth: F32 | None = None,
        *,
        focal_px: float | None = None,
    ) -> F32:
        """:meth:`predict_image` of every pixel (stride 1): ``float32[K, H, W]`` log-probabilities
        (the semantic stage's model interface, shared with the DepthG model)."""
        return self.predict_image(image, depth, focal_px=focal_px)

    # ----------------------------------------------------------------------------------------------
    # persistence (npz with a JSON header; no pickle)

    def save(self, path: str | Path) -> None:
        """Write the fitted clusterer to ``path`` (``.npz``, loadable without pickle)."""
        if self.centroids is None or self.mean is None or self.scale is None:
            raise RuntimeError("cannot save an unfitted SemanticClusterer")
        header = {
            "format_version": _FORMAT_VERSION,
            "num_classes": self.num_classes,
            "temperature": self.temperature,
            "metric": self.metric,
            "samples_per_frame": self.samples_per_frame,
            "max_samples": self.max_samples,
            "iterations": self.iterations,
            "n_init": self.n_init,
            "seed": self.seed,
            "feature_names": list(FEATURE_NAMES) if len(self.mean) == NUM_FEATURES else [],
        }
        arrays: dict[str, npt.NDArray[np.generic]] = {
            "header": np.frombuffer(json.dumps(header).encode(), np.uint8),
            "mean": self.mean,
            "scale": self.scale,
            "centroids": self.centroids,
        }
        if self.feature_weights is not None:
            arrays["feature_weights"] = self.feature_weights
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str | Path) -> SemanticClusterer:
        """Read a clusterer written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(bytes(data["header"]).decode())
            if header.get("format_version") != _FORMAT_VERSION:
                raise ValueError(
                    f"{path}: unsupported format_version {header.get('format_version')}"
                )
            weights = data["feature_weights"] if "feature_weights" in data.files else None
            obj = cls(
                header["num_classes"],
                temperature=header["temperature"],
                metric=header["metric"],
                feature_weights=weights,
                samples_per_frame=header["samples_per_frame"],
                max_samples=header["max_samples"],
                iterations=header["iterations"],
                n_init=header["n_init"],
                seed=header["seed"],
            )
            obj.mean = np.asarray(data["mean"], np.float32)
            obj.scale = np.asarray(data["scale"], np.float32)
            obj.centroids = np.asarray(data["centroids"], np.float32)
        if (
            obj.centroids.shape != (obj.num_classes, len(obj.mean))
            or obj.scale.shape != obj.mean.shape
        ):
            raise ValueError(f"{path}: inconsistent array shapes")
        return obj


def rgb_row_features(image: npt.NDArray[np.uint8], stride: int = 1) -> npt.NDArray[np.float32]:
    """The baseline every semantic cue is measured against: ``float32[N, 4]`` R, G, B (0..1)
    and the image row (0..1), on the grid of :func:`feature_grid_shape` (k-means on these is the
    "RGB + row" baseline of the semantic benchmarks)."""
    h, w = image.shape[:2]
    off = stride // 2
    rgb = image[off::stride, off::stride].astype(np.float32) / 255.0
    rows, cols = feature_grid_shape(h, w, stride)
    row = np.broadcast_to(
        ((np.arange(h, dtype=np.float32) + 0.5) / h)[off::stride, None], (rows, cols)
    )
    out: npt.NDArray[np.float32] = np.concatenate([rgb, row[..., None]], axis=-1).reshape(
        rows * cols, 4
    )
    return out
