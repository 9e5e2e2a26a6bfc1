"""The predictor contract (:mod:`vcups_core.model.predictors.base`): ``warm_up``, and the one
direction of imports: the contract and the streaming path need no backend (nor torch), and the
TensorRT builder imports nothing of the predictors (the engine cache imports the builder)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from vcups_core.data.oracle import CATEGORIES, OraclePredictor
from vcups_core.model.predictors import WARMUP_SIZE, Predictor, warm_up
from vcups_core.types import FramePrediction


def test_warm_up_predicts_one_black_image_and_passes_errors_on() -> None:
    seen: list[np.ndarray] = []
    oracle = OraclePredictor([])  # answers an unknown image with an empty prediction

    class Recording:
        categories = CATEGORIES

        def predict(self, image: np.ndarray) -> FramePrediction:
            seen.append(image)
            return oracle.predict(image)

    class OutOfMemory:
        categories = CATEGORIES

        def predict(self, image: np.ndarray) -> FramePrediction:
            raise RuntimeError("CUDA out of memory")

    assert warm_up(Recording()) >= 0.0
    assert warm_up(Recording(), (7, 9)) >= 0.0
    assert [(im.shape, im.dtype.name, int(im.max())) for im in seen] == [
        ((256, 512, 3), "uint8", 0),
        ((7, 9, 3), "uint8", 0),
    ]
    assert WARMUP_SIZE == (256, 512)
    with pytest.raises(RuntimeError, match="CUDA out of memory"):  # unchanged, not swallowed
        warm_up(OutOfMemory())
    with pytest.raises(ValueError, match="size"):
        warm_up(Recording(), (0, 6))
    assert len(seen) == 2


def test_the_oracle_is_a_predictor() -> None:
    assert isinstance(OraclePredictor([]), Predictor)
    assert not isinstance(object(), Predictor)


def imported_after(statement: str) -> set[str]:
    """The ``vcups_core`` modules and ``torch`` loaded by ``statement`` in a fresh process."""
    code = (
        f"import sys; {statement}; "
        "print(','.join(m for m in sys.modules if m.startswith(('vcups_core', 'torch'))))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return set(proc.stdout.strip().split(","))


def test_contract_and_streaming_import_no_backend() -> None:
    loaded = imported_after(
        "import vcups_core.model.predictors, vcups_core.streaming.segmenter, "
        "vcups_core.configs.predictor"
    )
    assert "torch" not in loaded
    assert not {m for m in loaded if m.endswith(("_predictor", "engine_cache"))}


def test_tensorrt_builder_does_not_import_the_predictors() -> None:
    loaded = imported_after("import vcups_core.export.tensorrt")
    assert not {m for m in loaded if m.startswith("vcups_core.model.predictors")}
    cache = imported_after("import vcups_core.model.predictors.engine_cache")
    assert "vcups_core.export.tensorrt" in cache
