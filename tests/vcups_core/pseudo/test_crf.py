"""Dense CRF (method §2.2): denoising, normalisation, agreement with the exact mean field."""

from __future__ import annotations

import numpy as np
import pytest

from vcups_core.pseudo.crf import (
    dense_crf,
    dense_crf_exact,
    dense_crf_labels,
    have_pydensecrf,
)

BACKENDS = ["torch", "pydensecrf"]
"""pydensecrf2 is pinned in requirements/base.txt: both backends are tested everywhere."""


def two_regions(height: int, width: int, flip: float, seed: int = 0):
    """Left half red (label 0), right half blue (label 1); unaries 60/40 for the true label,
    with a fraction ``flip`` of the pixels given the wrong one."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (200, 30, 30)
    image[:, width // 2 :] = (30, 30, 200)
    truth = np.zeros((height, width), np.int64)
    truth[:, width // 2 :] = 1
    noisy = np.where(rng.random((height, width)) < flip, 1 - truth, truth)
    probs = np.where(noisy[None] == np.arange(2)[:, None, None], 0.6, 0.4).astype(np.float32)
    return image, probs, truth


@pytest.mark.parametrize("backend", BACKENDS)
def test_crf_removes_label_noise(backend: str) -> None:
    image, probs, truth = two_regions(48, 64, flip=0.3)
    before = (probs.argmax(0) != truth).mean()
    labels = dense_crf_labels(image, probs, backend=backend)
    after = (labels != truth).mean()
    assert before > 0.25
    assert after < 0.02, f"{backend}: error {before:.3f} -> {after:.3f}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_probabilities_stay_normalised(backend: str) -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    probs = rng.dirichlet(np.ones(6), size=(20, 30)).transpose(2, 0, 1).astype(np.float32)
    for scale in (1.0, 0.5):
        q = dense_crf(image, probs, iterations=3, backend=backend, scale=scale)  # type: ignore[arg-type]
        assert q.shape == probs.shape and q.dtype == np.float32
        assert np.all(q >= 0)
        np.testing.assert_allclose(q.sum(0), 1.0, atol=1e-5)


def tiny_case():
    """24x32 image: two noisy colour regions; 5 labels with random logits."""
    rng = np.random.default_rng(0)
    height, width, n_labels = 24, 32, 5
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (200, 40, 40)
    image[:, width // 2 :] = (40, 40, 200)
    image = np.clip(image + rng.integers(-20, 21, image.shape), 0, 255).astype(np.uint8)
    logits = rng.normal(size=(n_labels, height, width)) * 1.5
    probs = np.exp(logits)
    probs /= probs.sum(0, keepdims=True)
    return image, probs.astype(np.float32)


# Mean |Δp| against the exact mean field after 10 iterations on ``tiny_case``: both backends
# filter the bilateral kernel on the same permutohedral lattice (0.028 measured for each; the
# lattice's Gaussian is only approximate); pydensecrf also puts the sxy = 1 Gaussian on it.
EXACT_TOLERANCE = 0.04


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_exact_dense_crf(backend: str) -> None:
    image, probs = tiny_case()
    exact = dense_crf_exact(image, probs, iterations=10)
    q = dense_crf(image, probs, iterations=10, backend=backend)  # type: ignore[arg-type]
    assert np.abs(q - exact).mean() < EXACT_TOLERANCE
    assert (q.argmax(0) != exact.argmax(0)).mean() < 0.1
    # zero iterations: both are the normalised input
    q0 = dense_crf(image, probs, iterations=0, backend=backend)  # type: ignore[arg-type]
    np.testing.assert_allclose(q0, probs, atol=1e-5)


def test_torch_gaussian_kernel_is_exact() -> None:
    # with the bilateral term off, the torch fallback (separable convolution) is the exact CRF
    image, probs = tiny_case()
    exact = dense_crf_exact(image, probs, iterations=10, bilateral_compat=0.0)
    q = dense_crf(image, probs, iterations=10, bilateral_compat=0.0, backend="torch")
    np.testing.assert_allclose(q, exact, atol=1e-4)


def test_torch_lattice_reproduces_pydensecrf() -> None:
    # with the Gaussian term off, both run the same lattice algorithm: equal up to float rounding
    image, probs = tiny_case()
    q_ref = dense_crf(image, probs, gaussian_compat=0.0, backend="pydensecrf")
    q = dense_crf(image, probs, gaussian_compat=0.0, backend="torch")
    np.testing.assert_allclose(q, q_ref, atol=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_scaled_path_shape_and_denoising(backend: str) -> None:
    image, probs, truth = two_regions(48, 64, flip=0.3)
    q = dense_crf(image, probs, scale=0.5, backend=backend)  # type: ignore[arg-type]
    assert q.shape == probs.shape
    assert (q.argmax(0) != truth).mean() < 0.05
    q = dense_crf(image[:47, :63], probs[:, :47, :63], scale=0.25, backend=backend)  # type: ignore[arg-type]
    assert q.shape == (2, 47, 63)


def test_rejects_bad_input() -> None:
    image, probs, _ = two_regions(8, 8, flip=0.0)
    with pytest.raises(ValueError, match="scale"):
        dense_crf(image, probs, scale=0.0)
    with pytest.raises(ValueError, match="probs"):
        dense_crf(image, probs[:, :4])
    with pytest.raises(ValueError, match="tiny"):
        dense_crf_exact(np.zeros((100, 100, 3), np.uint8), np.ones((2, 100, 100), np.float32) / 2)


def test_pydensecrf2_is_installed_as_required() -> None:
    assert have_pydensecrf(), "pydensecrf2 (requirements/base.txt) is missing: run make setup"
