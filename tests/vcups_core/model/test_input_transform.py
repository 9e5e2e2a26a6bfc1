"""Inference at the native resolution by default; resizing to min/max size only on request."""

from __future__ import annotations

import pytest
import torch
from model_fixtures import tiny_config

from vcups_core.configs.model import ModelConfig
from vcups_core.model.build import build_model


def test_schema_default_is_native_resolution() -> None:
    assert ModelConfig().inference.resize is False


@pytest.mark.parametrize(
    ("resize", "size"),
    [
        (False, (200, 400)),  # native: normalised and padded only
        # tiny min_size 128 / max_size 256: scale = min(128/200, 256/400) = 0.64 -> 128 x 256
        (True, (128, 256)),
    ],
)
def test_eval_transform_keeps_or_resizes(resize: bool, size: tuple[int, int]) -> None:
    model = build_model(tiny_config(inference={"resize": resize})).eval()
    images, _ = model.transform([torch.rand(3, 200, 400)])
    assert tuple(images.image_sizes[0]) == size


@pytest.mark.parametrize("resize", [False, True])
def test_training_keeps_the_data_pipeline_size(resize: bool) -> None:
    model = build_model(tiny_config(inference={"resize": resize})).train()
    images, _ = model.transform([torch.rand(3, 200, 400)])
    assert tuple(images.image_sizes[0]) == (200, 400)
