"""benchmarks/streaming_settings.py: its settings are valid node overrides, and the class-agnostic
DAVIS scoring of predicted drives."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from vcups_core.config import apply_overrides
from vcups_core.configs.node import NodeConfig
from vcups_core.train.heldout import LabelledFrames, Predictions

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    path = REPO / "benchmarks" / "streaming_settings.py"
    spec = importlib.util.spec_from_file_location("streaming_settings", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["streaming_settings"] = module  # its dataclass looks itself up there
    saved = list(sys.path)
    try:
        spec.loader.exec_module(module)  # puts the repo and benchmarks/ on sys.path
    finally:
        sys.path[:] = saved
    return module


def test_every_setting_is_a_valid_node_override(bench: ModuleType) -> None:
    got = {
        name: apply_overrides(NodeConfig(), overrides, NodeConfig).streaming
        for name, overrides in bench.VARIANTS.items()
    }
    masktrack = got["masktrack"].tracker
    assert masktrack.mask_iou_weight == 0
    assert not masktrack.propagation_bonus
    assert masktrack.assignment == "greedy"
    assert masktrack.max_age == 10000
    assert got["defaults"] == NodeConfig().streaming
    assert not got["defaults, no smoothing"].smoothing.enabled


def _drive(name: str, inst: list[np.ndarray], sem: list[np.ndarray]) -> LabelledFrames:
    return LabelledFrames(
        name,
        tuple(range(len(inst))),
        tuple(s.astype(np.uint8) for s in sem),
        tuple(i.astype(np.int32) for i in inst),
    )


def test_class_agnostic_scores(bench: ModuleType) -> None:
    obj = np.zeros((4, 6), bool)
    obj[1:3, 1:4] = True
    masks = {t: obj for t in range(4)}
    clips = [
        bench.DavisClip("davis_a", Path("a"), masks),
        bench.DavisClip("davis_b", Path("b"), masks),
    ]
    # categories: 0 stuff, 1 thing, 2 thing
    thing_sem = np.where(obj, 1, 0)
    # clip a: one track on the object in every frame -> perfect
    perfect = [np.where(obj, 5, 0)] * 4
    # clip b: the object's id switches half way (7 then 8), and a stuff category with a track id
    # elsewhere must not count as a thing
    switched = [np.where(obj, 7 if t < 2 else 8, 0) for t in range(4)]
    stuff_track = np.zeros((4, 6), int)
    stuff_track[0, 5] = 9  # category 0 (stuff) with a track id: not a thing instance
    switched = [s + stuff_track for s in switched]
    preds = Predictions(
        (
            _drive("davis_a", perfect, [thing_sem] * 4),
            _drive("davis_b", switched, [thing_sem] * 4),
        ),
        3,
        (False, True, True),
    )
    pooled, per_clip = bench.class_agnostic(preds, clips)
    assert per_clip["davis_a"]["AQ"] == pytest.approx(1.0)
    assert per_clip["davis_a"]["union_j"] == pytest.approx(1.0)
    assert per_clip["davis_a"]["best_track_j"] == pytest.approx(1.0)
    assert per_clip["davis_a"]["ids"] == 1
    # two tubes of half the object each: sum over p of (TPA/|g|) * IoU = 2 * 0.5 * 0.5
    assert per_clip["davis_b"]["AQ"] == pytest.approx(0.5)
    assert per_clip["davis_b"]["union_j"] == pytest.approx(1.0)
    assert per_clip["davis_b"]["best_track_j"] == pytest.approx(0.5)
    assert per_clip["davis_b"]["ids"] == 2
    assert per_clip["davis_b"]["ids_covering"] == 2
    assert pooled["AQ"] == pytest.approx(0.75)
    assert pooled["union_j"] == pytest.approx(1.0)
