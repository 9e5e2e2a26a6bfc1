"""The streaming segmenter takes ``inference.stuff_area_limit`` of the model config by default."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from vcups_core.config import replace
from vcups_core.configs.streaming import StreamingConfig
from vcups_core.model.postprocess import MergeSettings
from vcups_core.streaming.segmenter import StreamingSegmenter
from vcups_core.types import CategoryTable, FramePrediction


class _Predictor:
    categories = CategoryTable.default(1, 1)
    model_name, checksum = "fake", ""

    def __init__(self, settings: MergeSettings | None = None) -> None:
        if settings is not None:
            self.settings = settings

    def predict(self, image: npt.NDArray[np.uint8]) -> FramePrediction:
        raise AssertionError("not called")


def test_stuff_area_limit_follows_the_predictors_settings() -> None:
    with_settings = _Predictor(MergeSettings(stuff_area_limit=64))
    default = StreamingConfig()
    assert default.stuff_area_limit == -1  # "the model's"
    assert StreamingSegmenter.from_config(with_settings, default).stuff_area_limit == 64
    # a value in the config wins; a predictor without merge settings gets the paper's 4096
    explicit = replace(default, stuff_area_limit=7)
    assert StreamingSegmenter.from_config(with_settings, explicit).stuff_area_limit == 7
    assert StreamingSegmenter.from_config(_Predictor(), default).stuff_area_limit == 4096
