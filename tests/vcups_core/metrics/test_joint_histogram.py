"""Joint histogram: run-length and pixel paths against np.unique, validation errors, edge cases."""

from __future__ import annotations

import re

import numpy as np
import pytest

from vcups_core.metrics.histogram import HistogramBuilder, JointHistogram, joint_histogram

C = 5  # classes 0..4, void 255


def reference(gs, gi, ps, pi) -> dict[tuple[int, int, int, int], int]:
    stacked = np.stack([a.reshape(-1) for a in (gs, gi, ps, pi)]).astype(np.int64)
    keys, counts = np.unique(stacked, axis=1, return_counts=True)
    return {tuple(k): n for k, n in zip(keys.T.tolist(), counts.tolist(), strict=True)}


def as_dict(h: JointHistogram) -> dict[tuple[int, int, int, int], int]:
    rows = zip(h.gt_sem, h.gt_inst, h.pred_sem, h.pred_inst, h.count, strict=True)
    return {(int(a), int(b), int(c), int(d)): int(n) for a, b, c, d, n in rows}


def blocky(rng: np.random.Generator, shape=(16, 24), inst_max=4, inst_offset=0):
    """Piecewise-constant maps (4x4 blocks) with some void and instance ids."""

    def up(a):
        return np.kron(a, np.ones((4, 4), a.dtype))

    small = (shape[0] // 4, shape[1] // 4)
    gs = up(rng.choice([0, 1, 2, 3, 4, 255], small).astype(np.uint8))
    ps = up(rng.choice([0, 1, 2, 3, 4, 255], small).astype(np.uint8))
    gi = up(rng.integers(0, inst_max, small).astype(np.int32))
    pi = up(rng.integers(0, inst_max, small).astype(np.int32))
    pi[pi != 0] += inst_offset
    return gs, gi, ps, pi


@pytest.mark.parametrize("fraction", [0.0, 0.125, 1.0])
@pytest.mark.parametrize("offset", [0, 5000, 60000])
def test_matches_unique_on_both_paths(fraction: float, offset: int) -> None:
    rng = np.random.default_rng(offset + int(fraction * 8))
    builder = HistogramBuilder(C, max_run_fraction=fraction)
    for _ in range(5):
        frame = blocky(rng, inst_offset=offset)
        hist = builder(*frame)
        assert as_dict(hist) == reference(*frame)
        assert hist.num_pixels == frame[0].size == int(hist.count.sum())
        assert (hist.count > 0).all()


def test_noisy_frame_falls_back_to_pixels_and_agrees() -> None:
    rng = np.random.default_rng(3)
    frame = (
        rng.choice([0, 1, 255], (8, 8)).astype(np.uint8),
        rng.integers(0, 3, (8, 8)),
        rng.choice([0, 2, 4], (8, 8)).astype(np.int64),
        rng.integers(0, 3, (8, 8)).astype(np.uint16),
    )
    assert as_dict(HistogramBuilder(C)(*frame)) == reference(*frame)


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_mixed_dtypes_and_large_ids(fraction: float) -> None:
    rng = np.random.default_rng(5)
    gs, gi, ps, pi = blocky(rng, inst_offset=65000)
    frame = (
        gs.astype(np.uint16),
        (gi * 9000).astype(np.uint64),
        ps.astype(np.int64),
        pi.astype(np.uint32),
    )
    hist = HistogramBuilder(C, max_run_fraction=fraction)(*frame)
    assert as_dict(hist) == reference(*frame)


def test_empty_frame() -> None:
    empty = np.zeros((0, 4), np.int32)
    hist = joint_histogram(empty, empty, empty, empty, C)
    assert hist.num_pixels == 0 and hist.count.size == 0


def test_buffers_are_reused_across_sizes() -> None:
    rng = np.random.default_rng(4)
    builder = HistogramBuilder(C)
    for shape in [(16, 24), (8, 8), (32, 32)]:
        frame = blocky(rng, shape)
        assert as_dict(builder(*frame)) == reference(*frame)
    builder.release()
    frame = blocky(rng)
    assert as_dict(builder(*frame)) == reference(*frame)


@pytest.mark.parametrize("fraction", [0.0, 1.0])
@pytest.mark.parametrize(
    ("index", "value", "message"),
    [
        (0, 7, "gt_sem contains 7, expected a class id in [0, 5) or the ignore label 255"),
        (0, 254, "gt_sem contains 254"),
        (2, -1, "pred_sem contains -1, ids must be >= 0"),
        (1, -3, "gt_inst contains -3, ids must be >= 0"),
        (3, 1 << 16, "pred_inst contains 65536, instance ids must be < 2**16"),
    ],
)
def test_bad_values_are_named(fraction: float, index: int, value: int, message: str) -> None:
    arrays = [np.zeros((4, 4), np.int64) for _ in range(4)]
    arrays[index][2, 1] = value
    with pytest.raises(ValueError, match=re.escape(message)):
        HistogramBuilder(C, max_run_fraction=fraction)(*arrays)


def test_bad_dtype_and_shape() -> None:
    ok = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="pred_inst must be an integer array, got dtype float32"):
        joint_histogram(ok, ok, ok, ok.astype(np.float32), C)
    with pytest.raises(ValueError, match=r"gt_inst shape \(4, 5\) != gt_sem shape \(4, 4\)"):
        joint_histogram(ok, np.zeros((4, 5), np.int32), ok, ok, C)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 5, "ignore_label": 3}, "ignore_label"),
        ({"num_classes": 5, "label_bit_shift": 0}, "label_bit_shift"),
        ({"num_classes": 5, "max_run_fraction": 2.0}, "max_run_fraction"),
    ],
)
def test_constructor_checks(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HistogramBuilder(**kwargs)
