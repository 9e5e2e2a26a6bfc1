"""Dense CRF refinement of semantic probabilities (method §2.2, the CUPS CRF).

CUPS refines the softmax of its fused semantic logits (upsampled to the image size) with the fully
connected CRF of Krähenbühl & Koltun (``pydensecrf`` mean field, ``cups/crf.py``):

* 10 mean-field iterations;
* Gaussian (smoothness) kernel ``exp(-|p_i - p_j|² / 2 sxy²)``, sxy = 1, Potts weight 3;
* bilateral (appearance) kernel ``exp(-|p_i - p_j|² / 2 sxy² - |I_i - I_j|² / 2 srgb²)``,
  sxy = 67, srgb = 3, Potts weight 4;
* unary ``-log(max(p, 1e-5))`` (``pydensecrf.utils.unary_from_softmax``).

The mean field that ``pydensecrf`` runs (``DenseCRF::inference`` with ``NORMALIZE_SYMMETRIC``
kernels and a Potts compatibility that *rewards* equal labels) is, per iteration,

    Q_i(l) ∝ exp(-U_i(l) + Σ_k w_k Σ_j K̃_k(i, j) Q_j(l)),   K̃_k = D_k^{-1/2} K_k D_k^{-1/2},

with ``K_k(i, i) = 1`` (the pixel itself counts), ``D_k = diag(K_k 1)`` and ``Q`` initialised to
the softmax of ``-U``. :func:`dense_crf_exact` computes exactly this with explicit N×N kernel
matrices (tiny images only); it is the reference the fast backends are checked against.

Backends of :func:`dense_crf`:

* ``"pydensecrf"``: ``pydensecrf2`` (the maintained continuation of the ``pydensecrf`` CUPS uses;
  pinned in ``requirements/base.txt``, it compiles with g++ at install time). Both kernels go
  through its permutohedral lattice. Single-threaded.
* ``"torch"``: the fallback. The Gaussian kernel is an exact separable convolution (truncated at
  4 sxy); the bilateral kernel is a permutohedral lattice written in torch (the same algorithm
  as ``pydensecrf``: splat, [1 2 1]/2 blur along the d+1 lattice directions, slice), so it
  approximates the Gaussian the same way.
* ``"auto"`` (default): ``pydensecrf`` when importable, else ``"torch"``.

``scale < 1`` is the cheap path: image and probabilities are resized by ``scale``, both kernel
``sxy`` are multiplied by ``scale`` (so the kernels cover the same part of the scene), the CRF runs
there, and ``Q`` is resized back bilinearly and renormalised. ``benchmarks/bench_crf.py``
measures each shortcut against the full CRF (pydensecrf, scale 1, 10 iterations) at 640x1280 with
27 labels (a DAVIS frame, k-means stand-in logits upsampled ×8; 2 shared CPU cores, one run each):

=========== ===== ==== ======== ============== =========
backend     scale iter time (s) argmax differs mean |Δp|
=========== ===== ==== ======== ============== =========
pydensecrf  1     10   17.5     (reference)    0
pydensecrf  1     5    9.5      7.2 %          1.6e-2
pydensecrf  0.5   10   7.1      6.2 %          5.2e-3
pydensecrf  0.5   5    3.2      9.0 %          1.7e-2
pydensecrf  0.25  10   1.2      11.5 %         9.9e-3
pydensecrf  0.25  5    1.0      12.1 %         1.8e-2
torch       1     10   47.8     0.12 %         1.0e-4
torch       0.5   10   10.5     5.7 %          4.9e-3
torch       0.25  10   3.6      11.5 %         9.9e-3
=========== ===== ==== ======== ============== =========

(The CRF itself changes the argmax of 20 % of the pixels of this input.) Against the exact mean
field (:func:`dense_crf_exact`, 24x32, 5 labels, 10 iterations) both backends are off by a mean
|Δp| of 0.028 (6 % of argmax labels), all of it from the lattice's approximate bilateral Gaussian;
the torch Gaussian term is exact (1e-7) and pydensecrf's lattice Gaussian adds 0.003.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)

Backend = Literal["auto", "pydensecrf", "torch", "exact"]

#: ``pydensecrf.utils.unary_from_softmax`` clips probabilities at this value before the log.
PROB_CLIP = 1e-5


def have_pydensecrf() -> bool:
    """Whether ``pydensecrf`` (installed by the ``pydensecrf2`` distribution) can be imported."""
    return importlib.util.find_spec("pydensecrf") is not None


def _check_inputs(image: npt.NDArray[np.uint8], probs: npt.NDArray[np.float32]) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8[H, W, 3], got {image.dtype}{list(image.shape)}")
    if probs.ndim != 3 or probs.shape[1:] != image.shape[:2]:
        raise ValueError(
            f"probs must be [C, H, W] with H, W of the image {image.shape[:2]}, got {probs.shape}"
        )


def unary_from_probs(probs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Unary energy ``-log(max(p, 1e-5))``, ``float32[C, H, W]`` (``unary_from_softmax``)."""
    return (-np.log(np.maximum(probs, PROB_CLIP))).astype(np.float32)


def dense_crf(
    image: npt.NDArray[np.uint8],
    probs: npt.NDArray[np.float32],
    *,
    iterations: int = 10,
    gaussian_sxy: float = 1.0,
    gaussian_compat: float = 3.0,
    bilateral_sxy: float = 67.0,
    bilateral_srgb: float = 3.0,
    bilateral_compat: float = 4.0,
    scale: float = 1.0,
    backend: Backend = "auto",
) -> npt.NDArray[np.float32]:
    """Refined probabilities ``float32[C, H, W]`` (each pixel sums to 1) of a dense CRF.

    ``image``: ``uint8[H, W, 3]`` (channel order does not matter: one ``srgb`` for all channels);
    ``probs``: ``float32[C, H, W]`` class probabilities at the image size (softmax of the logits
    upsampled to the image, as CUPS does). ``iterations = 0`` returns the normalised input
    (what the CRF starts from). ``scale`` in (0, 1] runs the CRF at that fraction of the
    resolution (see the module docstring). ``backend``: ``"auto"``, ``"pydensecrf"``,
    ``"torch"`` or ``"exact"`` (explicit N×N matrices; for tiny images and tests only).
    """
    _check_inputs(image, probs)
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    height, width = image.shape[:2]
    probs = np.asarray(probs, dtype=np.float32)
    if scale < 1.0:
        small_h = max(1, round(height * scale))
        small_w = max(1, round(width * scale))
        small_image = cv2.resize(image, (small_w, small_h), interpolation=cv2.INTER_AREA)
        small_probs = F.interpolate(
            torch.from_numpy(probs)[None], size=(small_h, small_w), mode="area"
        )[0].numpy()
        q_small = dense_crf(
            np.ascontiguousarray(small_image),
            small_probs,
            iterations=iterations,
            gaussian_sxy=gaussian_sxy * scale,
            gaussian_compat=gaussian_compat,
            bilateral_sxy=bilateral_sxy * scale,
            bilateral_srgb=bilateral_srgb,
            bilateral_compat=bilateral_compat,
            scale=1.0,
            backend=backend,
        )
        q = F.interpolate(
            torch.from_numpy(q_small)[None],
            size=(height, width),
            mode="bilinear",
            align_corners=False,
        )[0]
        q = q / q.sum(dim=0, keepdim=True).clamp_min(1e-12)
        return q.numpy().astype(np.float32)

    if backend == "auto":
        backend = "pydensecrf" if have_pydensecrf() else "torch"
    kwargs = {
        "gaussian_sxy": gaussian_sxy,
        "gaussian_compat": gaussian_compat,
        "bilateral_sxy": bilateral_sxy,
        "bilateral_srgb": bilateral_srgb,
        "bilateral_compat": bilateral_compat,
    }
    if backend == "pydensecrf":
        return _dense_crf_pydensecrf(image, probs, iterations=iterations, **kwargs)
    if backend == "torch":
        return _dense_crf_torch(image, probs, iterations=iterations, **kwargs)
    if backend == "exact":
        return dense_crf_exact(image, probs, iterations=iterations, **kwargs)
    raise ValueError(f"unknown backend {backend!r}")


def dense_crf_labels(
    image: npt.NDArray[np.uint8],
    probs: npt.NDArray[np.float32],
    **kwargs: object,
) -> npt.NDArray[np.int32]:
    """Label map ``int32[H, W]``: argmax over classes of :func:`dense_crf` (same keywords)."""
    q = dense_crf(image, probs, **kwargs)  # type: ignore[arg-type]
    labels: npt.NDArray[np.int32] = np.argmax(q, axis=0).astype(np.int32)
    return labels


# --- pydensecrf ----------------------------------------------------------------------------------


def _dense_crf_pydensecrf(
    image: npt.NDArray[np.uint8],
    probs: npt.NDArray[np.float32],
    *,
    iterations: int,
    gaussian_sxy: float,
    gaussian_compat: float,
    bilateral_sxy: float,
    bilateral_srgb: float,
    bilateral_compat: float,
) -> npt.NDArray[np.float32]:
    import pydensecrf.densecrf as dcrf

    n_labels, height, width = probs.shape
    crf = dcrf.DenseCRF2D(width, height, n_labels)
    # pydensecrf wants C-contiguous float32 [C, H*W] unaries and a C-contiguous uint8 image.
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_probs(probs).reshape(n_labels, -1)))
    crf.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_compat)
    crf.addPairwiseBilateral(
        sxy=bilateral_sxy,
        srgb=bilateral_srgb,
        rgbim=np.ascontiguousarray(image),
        compat=bilateral_compat,
    )
    q = np.asarray(crf.inference(iterations), dtype=np.float32)
    return q.reshape(n_labels, height, width)


# --- exact reference (explicit kernel matrices) -----------------------------------------------

#: :func:`dense_crf_exact` refuses images with more pixels than this (two N×N float64 matrices).
EXACT_MAX_PIXELS = 4096


def _symmetric_normalised(kernel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    inv_sqrt = 1.0 / np.sqrt(kernel.sum(axis=1))
    return kernel * inv_sqrt[:, None] * inv_sqrt[None, :]  # type: ignore[no-any-return]


def dense_crf_exact(
    image: npt.NDArray[np.uint8],
    probs: npt.NDArray[np.float32],
    *,
    iterations: int = 10,
    gaussian_sxy: float = 1.0,
    gaussian_compat: float = 3.0,
    bilateral_sxy: float = 67.0,
    bilateral_srgb: float = 3.0,
    bilateral_compat: float = 4.0,
) -> npt.NDArray[np.float32]:
    """The mean field of the dense CRF with exact Gaussian kernels, as N×N matrices (float64).

    This is what ``pydensecrf`` approximates with its permutohedral lattice; use it on tiny
    images (at most :data:`EXACT_MAX_PIXELS` pixels) to check the fast backends.
    """
    _check_inputs(image, probs)
    n_labels, height, width = probs.shape
    n = height * width
    if n > EXACT_MAX_PIXELS:
        raise ValueError(f"dense_crf_exact is for tiny images: {n} > {EXACT_MAX_PIXELS} pixels")
    ys, xs = np.mgrid[0:height, 0:width]
    pos = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    rgb = image.reshape(-1, 3).astype(np.float64)

    def sqdist(f: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return ((f[:, None, :] - f[None, :, :]) ** 2).sum(axis=-1)  # type: ignore[no-any-return]

    k_gauss = np.exp(-0.5 * sqdist(pos / gaussian_sxy))
    k_bilat = np.exp(-0.5 * sqdist(np.concatenate([pos / bilateral_sxy, rgb / bilateral_srgb], 1)))
    pairwise = gaussian_compat * _symmetric_normalised(k_gauss) + bilateral_compat * (
        _symmetric_normalised(k_bilat)
    )
    unary = unary_from_probs(probs).reshape(n_labels, n).astype(np.float64).T  # [N, C]

    def softmax(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]

    q = softmax(-unary)
    for _ in range(iterations):
        q = softmax(-unary + pairwise @ q)
    return q.T.reshape(n_labels, height, width).astype(np.float32)


# --- torch fallback ------------------------------------------------------------------------------


def _gaussian_filter_normalised(q: torch.Tensor, sxy: float) -> torch.Tensor:
    """``D^{-1/2} K D^{-1/2} q`` for the spatial Gaussian kernel, exactly (separable, 4 sxy)."""
    radius = max(1, math.ceil(4.0 * sxy))
    taps = torch.arange(-radius, radius + 1, dtype=q.dtype)
    g = torch.exp(-0.5 * (taps / sxy) ** 2)

    def blur(x: torch.Tensor) -> torch.Tensor:  # x: [C, H, W], zero outside the image
        c = x.shape[0]
        x = F.conv2d(
            x[None], g.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, radius), groups=c
        )
        x = F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(radius, 0), groups=c)
        return x[0]

    inv_sqrt = blur(torch.ones_like(q[:1])).rsqrt()
    return blur(q * inv_sqrt) * inv_sqrt


class PermutohedralLattice:
    """Gaussian filtering ``K v`` with ``K(i, j) ≈ exp(-|f_i - f_j|² / 2)`` on a permutohedral
    lattice (Adams et al. 2010), written like ``densecrf``'s ``Permutohedral`` (same feature
    scaling, the same [1 2 1]/2 blur along the d+1 directions and the same output factor), so
    it approximates the Gaussian the way ``pydensecrf`` does. Lattice keys are hashed by
    packing the d integer coordinates into one int64 and looked up with ``searchsorted``.
    """

    def __init__(self, features: torch.Tensor) -> None:
        """``features``: ``float[N, d]``, already divided by the kernel's standard deviations."""
        f = features.to(torch.float64)
        n, d = f.shape
        self.n, self.d = n, d
        scale = (
            math.sqrt(2.0 / 3.0)
            * (d + 1)
            / torch.sqrt(
                torch.arange(1, d + 1, dtype=torch.float64)
                * torch.arange(2, d + 2, dtype=torch.float64)
            )
        )
        cf = f * scale  # [N, d]
        # elevate onto the hyperplane x·1 = 0 in d+1 dimensions
        elevated = torch.zeros(n, d + 1, dtype=torch.float64)
        csum = torch.cumsum(cf.flip(1), dim=1).flip(1)  # csum[:, k] = sum_{m >= k} cf[:, m]
        j = torch.arange(1, d + 1, dtype=torch.float64)
        suffix = torch.zeros(n, d + 1, dtype=torch.float64)
        suffix[:, :d] = csum
        # elevated[j] = sum_{m >= j} cf[m] - j * cf[j-1] for j = 1..d; elevated[0] = sum cf
        elevated[:, 1:] = suffix[:, 1:] - j * cf
        elevated[:, 0] = suffix[:, 0]
        # closest remainder-0 lattice point
        down = elevated / (d + 1)
        up_v = torch.ceil(down) * (d + 1)
        down_v = torch.floor(down) * (d + 1)
        rem0 = torch.where(up_v - elevated < elevated - down_v, up_v, down_v)
        total = torch.round(rem0.sum(dim=1) / (d + 1)).to(torch.int64)
        # rank of each coordinate's residual (ties broken as densecrf does)
        diff = elevated - rem0
        di = diff[:, :, None]
        dj = diff[:, None, :]
        idx = torch.arange(d + 1)
        later = idx[None, :] > idx[:, None]  # j > i
        earlier = idx[None, :] < idx[:, None]  # j < i
        # densecrf, for i < j: rank[i] += 1 if d_i < d_j else rank[j] += 1
        rank = (((di < dj) & later).sum(dim=2) + ((dj >= di) & earlier).sum(dim=2)).to(torch.int64)
        rem0_i = rem0.to(torch.int64)
        tot = total[:, None]
        pos_mask = (tot > 0) & (rank >= d + 1 - tot)
        neg_mask = (tot < 0) & (rank < -tot)
        rem0_i = rem0_i - (d + 1) * pos_mask.to(torch.int64) + (d + 1) * neg_mask.to(torch.int64)
        rank = rank + tot + (d + 1) * (neg_mask.to(torch.int64) - pos_mask.to(torch.int64))
        # barycentric weights
        v = (elevated - rem0_i.to(torch.float64)) / (d + 1)
        bary = torch.zeros(n, d + 2, dtype=torch.float64)
        bary.scatter_add_(1, d - rank, v)
        bary.scatter_add_(1, d + 1 - rank, -v)
        bary[:, 0] += 1.0 + bary[:, d + 1]
        self.weights = bary[:, : d + 1].to(torch.float32)  # [N, d+1]
        # keys of the d+1 enclosing vertices (first d coordinates): rem0 + k, minus d+1 where
        # rank > d - k
        k = torch.arange(d + 1)
        keys = (
            rem0_i[:, None, :d]
            + k[None, :, None]
            - (d + 1) * (rank[:, None, :d] > (d - k)[None, :, None]).to(torch.int64)
        )  # [N, d+1, d]
        keys = keys.reshape(-1, d)
        lo = keys.min(dim=0).values - (d + 1)
        span = keys.max(dim=0).values + (d + 1) - lo + 1
        radix = torch.ones(d, dtype=torch.int64)
        for m in range(d - 2, -1, -1):
            radix[m] = radix[m + 1] * span[m + 1]
        if float(radix[0]) * float(span[0]) >= 2.0**62:
            raise ValueError("lattice key range too large to pack into int64 (features too spread)")
        self._lo, self._radix = lo, radix
        codes = ((keys - lo) * radix).sum(dim=1)
        self.codes, inverse = torch.unique(codes, sorted=True, return_inverse=True)
        self.m = int(self.codes.numel())
        self.offsets = inverse.view(n, d + 1) + 1  # +1: row 0 of the value table is "absent"
        # splat (table ← pixels) and slice (pixels ← table) as sparse CSR matrices: index_add_
        # is several times slower than a CSR product on the CPU
        weights = self.weights.reshape(-1)
        order = torch.argsort(self.offsets.reshape(-1), stable=True)
        counts = torch.bincount(self.offsets.reshape(-1), minlength=self.m + 1)
        crow = torch.zeros(self.m + 2, dtype=torch.int64)
        crow[1:] = torch.cumsum(counts, dim=0)
        pixel = torch.arange(n).repeat_interleave(d + 1)
        with warnings.catch_warnings():  # "sparse CSR support is in beta state"
            warnings.simplefilter("ignore", UserWarning)
            self._splat = torch.sparse_csr_tensor(
                crow, pixel[order], weights[order], size=(self.m + 1, n)
            )
            slice_order = torch.argsort(self.offsets, dim=1)
            self._slice = torch.sparse_csr_tensor(
                torch.arange(0, n * (d + 1) + 1, d + 1),
                torch.gather(self.offsets, 1, slice_order).reshape(-1),
                torch.gather(self.weights, 1, slice_order).reshape(-1),
                size=(n, self.m + 1),
            )
        # neighbours of every lattice point along each of the d+1 directions
        lattice_keys = self._decode(self.codes)  # [M, d]
        self.neighbours: list[tuple[torch.Tensor, torch.Tensor]] = []
        for direction in range(d + 1):
            shift = torch.full((d,), -1, dtype=torch.int64)
            if direction < d:
                shift[direction] = d
            self.neighbours.append(
                (self._find(lattice_keys + shift), self._find(lattice_keys - shift))
            )

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        out = []
        rest = codes
        for m in range(self.d):
            out.append(rest // self._radix[m])
            rest = rest % self._radix[m]
        return torch.stack(out, dim=1) + self._lo

    def _find(self, keys: torch.Tensor) -> torch.Tensor:
        """Row in the value table (``0`` when absent) of each key ``int64[M, d]``."""
        codes = ((keys - self._lo) * self._radix).sum(dim=1)
        pos = torch.searchsorted(self.codes, codes).clamp_max(self.m - 1)
        found = self.codes[pos] == codes
        return torch.where(found, pos + 1, torch.zeros_like(pos))

    def filter(self, values: torch.Tensor) -> torch.Tensor:
        """``K v`` for ``values: float32[N, C]`` (the pixel itself included)."""
        values = values.to(torch.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            table = self._splat @ values  # [M + 1, C]; row 0 (absent neighbours) stays 0
            for n1, n2 in self.neighbours:
                blurred = table.index_select(0, n1)
                blurred += table.index_select(0, n2)
                blurred *= 0.5
                blurred += table[1:]
                table = torch.cat([table[:1], blurred])
            out = self._slice @ table
        return out * (1.0 / (1.0 + 2.0 ** (-self.d)))


def _dense_crf_torch(
    image: npt.NDArray[np.uint8],
    probs: npt.NDArray[np.float32],
    *,
    iterations: int,
    gaussian_sxy: float,
    gaussian_compat: float,
    bilateral_sxy: float,
    bilateral_srgb: float,
    bilateral_compat: float,
) -> npt.NDArray[np.float32]:
    n_labels, height, width = probs.shape
    unary = torch.from_numpy(unary_from_probs(probs))  # [C, H, W]
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32),
        torch.arange(width, dtype=torch.float32),
        indexing="ij",
    )
    rgb = torch.from_numpy(np.ascontiguousarray(image)).to(torch.float32).reshape(-1, 3)
    features = torch.cat(
        [
            torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1) / bilateral_sxy,
            rgb / bilateral_srgb,
        ],
        dim=1,
    )
    lattice = PermutohedralLattice(features)
    bilat_inv_sqrt = (
        lattice.filter(torch.ones(height * width, 1)).clamp_min(1e-20).rsqrt()
    )  # [N, 1]

    q = torch.softmax(-unary, dim=0)
    for _ in range(iterations):
        energy = -unary + gaussian_compat * _gaussian_filter_normalised(q, gaussian_sxy)
        q_flat = q.reshape(n_labels, -1).T  # [N, C]
        bilat = lattice.filter(q_flat * bilat_inv_sqrt) * bilat_inv_sqrt
        energy = energy + bilateral_compat * bilat.T.reshape(n_labels, height, width)
        q = torch.softmax(energy, dim=0)
    return q.numpy().astype(np.float32)
