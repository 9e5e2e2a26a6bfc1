"""Shared helpers of the model tests: the tiny config and hand-made synthetic targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vcups_core.config import config_from_dict, config_to_dict
from vcups_core.configs.model import ModelConfig

REPO = Path(__file__).resolve().parents[3]
TINY_YAML = REPO / "config" / "model" / "tiny.yaml"


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) else value
    return out


def tiny_config(**changes: Any) -> ModelConfig:
    """``config/model/tiny.yaml`` with nested ``changes`` (e.g. ``inference={"score_threshold": 1.0}``)."""
    from vcups_core.config import load_config

    base = config_to_dict(load_config(TINY_YAML, ModelConfig))
    return config_from_dict(_merge(base, changes), ModelConfig)


def box_targets(
    height: int,
    width: int,
    boxes: list[tuple[int, int, int, int]],
    labels: list[int],
    *,
    track_ids: list[int] | None = None,
    pair: int = -1,
    stuff_label: int = 1,
) -> dict[str, Any]:
    """Targets with rectangular masks filling each box; stuff ``stuff_label`` elsewhere, thing 0
    under the masks, the bottom row ignored (255)."""
    n = len(boxes)
    masks = torch.zeros((n, height, width), dtype=torch.uint8)
    semantic = torch.full((height, width), stuff_label, dtype=torch.int64)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        masks[i, y0:y1, x0:x1] = 1
        semantic[y0:y1, x0:x1] = 0
    semantic[-1, :] = 255
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "masks": masks,
        "semantic": semantic,
        "track_ids": torch.tensor(track_ids if track_ids is not None else list(range(1, n + 1))),
        "pair": pair,
    }
