"""Weight-free semantic pseudo-classes: feature layout, k-means, probe, persistence, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vcups_core.cues.semantics import (
    DEPTH_FEATURES,
    FEATURE_NAMES,
    NUM_FEATURES,
    Metric,
    SemanticClusterer,
    feature_grid_shape,
    kmeans,
    pixel_features,
)

COLOURS = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200]], np.uint8)


def blobs_image(h: int = 24, w: int = 36) -> tuple[np.ndarray, np.ndarray]:
    """Three vertical bands of well-separated colours (+ small noise) and their label map."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), w // 3)[None, :].repeat(h, 0)
    image = COLOURS[labels].astype(np.int16) + rng.integers(-5, 6, (h, w, 3))
    return np.clip(image, 0, 255).astype(np.uint8), labels


def colour_features(image: np.ndarray) -> np.ndarray:
    return image.reshape(-1, 3).astype(np.float32) / 255.0


def test_feature_shape_dtype_and_grid() -> None:
    image = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    f = pixel_features(image)
    assert f.shape == (600, NUM_FEATURES) == (600, len(FEATURE_NAMES))
    assert f.dtype == np.float32
    assert np.isfinite(f).all()
    rows, cols = feature_grid_shape(20, 30, 4)
    assert (rows, cols) == (5, 7)  # pixels 2, 6, ..., 18 and 2, 6, ..., 26
    f4 = pixel_features(image, stride=4)
    assert f4.shape == (rows * cols, NUM_FEATURES)
    # the strided grid is a subsample of the full one
    np.testing.assert_array_equal(f4, f.reshape(20, 30, -1)[2::4, 2::4].reshape(-1, NUM_FEATURES))


def test_position_and_depth_columns() -> None:
    h, w = 8, 16
    image = np.full((h, w, 3), 128, np.uint8)
    f = pixel_features(image).reshape(h, w, -1)
    row, col = FEATURE_NAMES.index("row"), FEATURE_NAMES.index("column_offset")
    np.testing.assert_allclose(f[:, 0, row], (np.arange(h) + 0.5) / h, atol=1e-6)
    assert f[0, 0, col] == pytest.approx(1 - 1 / w) and f[0, w // 2, col] == pytest.approx(1 / w)
    # without depth: flag 1, the other depth columns 0
    assert (f[..., DEPTH_FEATURES.start] == 1).all()
    assert (f[..., DEPTH_FEATURES.start + 1 :] == 0).all()
    # NaN depth counts as unknown, like None
    depth = np.full((h, w), np.nan, np.float32)
    np.testing.assert_array_equal(pixel_features(image, depth), pixel_features(image, None))


def test_frontal_plane_normal_points_along_the_axis() -> None:
    h, w = 12, 16
    image = np.full((h, w, 3), 100, np.uint8)
    f = pixel_features(image, np.full((h, w), 5.0, np.float32), focal_px=20.0).reshape(h, w, -1)
    nz = FEATURE_NAMES.index("normal_z")
    assert (f[..., DEPTH_FEATURES.start] == 0).all()
    np.testing.assert_allclose(f[..., nz], 1.0, atol=1e-5)
    # relative log inverse depth of a constant depth is 0, and it does not depend on the scale
    f2 = pixel_features(image, np.full((h, w), 50.0, np.float32), focal_px=20.0)
    np.testing.assert_allclose(f.reshape(h * w, -1), f2, atol=1e-5)


def test_ground_plane_normal_is_vertical() -> None:
    # z-depth of a ground plane Y = 1.5 below a camera with f = 20: Z = 1.5 f / (y + 0.5 - cy)
    h, w, f = 16, 16, 20.0
    ys = np.arange(h, dtype=np.float32)[:, None] + 0.5 - h / 2
    depth = np.where(ys > 0, 1.5 * f / np.maximum(ys, 1e-3), np.nan) * np.ones((1, w), np.float32)
    feats = pixel_features(np.zeros((h, w, 3), np.uint8), depth.astype(np.float32), focal_px=f)
    feats = feats.reshape(h, w, -1)
    ny = FEATURE_NAMES.index("normal_y")
    # away from the horizon and from the smoothing's edge effects, n = (0, 1, 0)
    np.testing.assert_allclose(np.abs(feats[12:14, 4:12, ny]), 1.0, atol=0.05)


def test_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="uint8"):
        pixel_features(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="depth"):
        pixel_features(np.zeros((4, 4, 3), np.uint8), np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="stride"):
        pixel_features(np.zeros((4, 4, 3), np.uint8), stride=0)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_kmeans_recovers_three_colour_blobs(metric: Metric) -> None:
    image, labels = blobs_image()
    x = colour_features(image)
    centroids, _ = kmeans(x, 3, metric=metric, seed=0)
    assign = (((x[:, None] - centroids[None]) ** 2).sum(-1)).argmin(1).reshape(labels.shape)
    if metric == "cosine":
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        assign = (xn @ centroids.T).argmax(1).reshape(labels.shape)
    # one cluster per blob: the partition is the same up to renaming
    pairs = {(int(a), int(b)) for a, b in zip(assign.ravel(), labels.ravel(), strict=True)}
    assert len(pairs) == 3 and len({a for a, _ in pairs}) == 3


def fitted(metric: Metric = "cosine", seed: int = 0) -> tuple[SemanticClusterer, np.ndarray]:
    image, _ = blobs_image()
    feats = pixel_features(image)
    clusterer = SemanticClusterer(
        4,
        metric=metric,
        seed=seed,
        samples_per_frame=500,
    )
    return clusterer.fit([feats, feats[::-1]]), feats


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_log_proba_is_normalised_and_argmax_is_predict(metric: Metric) -> None:
    clusterer, feats = fitted(metric)
    logp = clusterer.predict_log_proba(feats, (24, 36))
    assert logp.shape == (4, 24, 36) and logp.dtype == np.float32
    np.testing.assert_allclose(np.exp(logp).sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(logp.argmax(0), clusterer.predict(feats, (24, 36)))


def test_clusterer_separates_colour_blobs() -> None:
    image, labels = blobs_image()
    clusterer = SemanticClusterer(3, seed=0, samples_per_frame=10_000)
    clusterer.fit([colour_features(image)])
    pred = clusterer.predict(colour_features(image), labels.shape)
    pairs = {(int(a), int(b)) for a, b in zip(pred.ravel(), labels.ravel(), strict=True)}
    assert len(pairs) == 3 and len({a for a, _ in pairs}) == 3


def test_save_load_round_trip(tmp_path: Path) -> None:
    clusterer, feats = fitted()
    path = tmp_path / "clusters.npz"
    clusterer.save(path)
    loaded = SemanticClusterer.load(path)
    assert loaded.num_classes == 4 and loaded.metric == "cosine"
    np.testing.assert_array_equal(
        loaded.predict_log_proba(feats, (24, 36)), clusterer.predict_log_proba(feats, (24, 36))
    )
    # no pickle inside: loadable with allow_pickle=False (load() uses it)
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) >= {"header", "mean", "scale", "centroids"}


def test_fit_is_deterministic_with_a_fixed_seed() -> None:
    a, _ = fitted(seed=3)
    b, _ = fitted(seed=3)
    assert a.centroids is not None and b.centroids is not None
    np.testing.assert_array_equal(a.centroids, b.centroids)
    np.testing.assert_array_equal(a.mean, b.mean)


def test_constant_columns_get_no_weight() -> None:
    clusterer, _ = fitted()
    assert clusterer.scale is not None
    # fitted without depth: every depth column is constant over the training pixels
    assert (clusterer.scale[DEPTH_FEATURES] == 0).all()


def test_predict_image_upsamples_to_the_image_size() -> None:
    clusterer, _ = fitted()
    image, _ = blobs_image()
    logp = clusterer.predict_image(image, stride=3)
    assert logp.shape == (4, 24, 36)
    np.testing.assert_allclose(np.exp(logp).sum(0), 1.0, atol=1e-5)


def test_unfitted_and_mismatched_inputs_raise() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        SemanticClusterer(3).predict(np.zeros((4, 18), np.float32), (2, 2))
    clusterer, _ = fitted()
    with pytest.raises(ValueError, match="float32"):
        clusterer.predict(np.zeros((4, 5), np.float32), (2, 2))
    with pytest.raises(ValueError, match="does not hold"):
        clusterer.predict_log_proba(np.zeros((4, NUM_FEATURES), np.float32), (3, 2))


def test_rgb_row_features_of_the_baseline() -> None:
    from vcups_core.cues.semantics import rgb_row_features

    image = np.zeros((4, 6, 3), np.uint8)
    image[..., 0] = 255
    feats = rgb_row_features(image, stride=2)  # pixels (1, 1), (1, 3), ... of a 2x3 grid
    assert feats.shape == (6, 4) and feats.dtype == np.float32
    np.testing.assert_allclose(feats[:, :3], [[1.0, 0.0, 0.0]] * 6)
    np.testing.assert_allclose(feats[:, 3], [1.5 / 4] * 3 + [3.5 / 4] * 3)
