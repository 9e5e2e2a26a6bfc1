"""Every field of the evaluation, model and training schemas is read by the code it configures.

A field is "read" when ``.<name>`` appears in a module outside ``vcups_core/configs`` (attribute
access on the loaded config). Every schema of ``config/`` is checked: evaluation, model, training,
pseudo-labels and the node's parameters (model, streaming, input, output, diagnostics).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from vcups_core.configs import EvaluationConfig, ModelConfig, TrainingConfig
from vcups_core.configs.node import NodeConfig
from vcups_core.configs.pseudo_labels import PseudoLabelConfig

REPO = Path(__file__).resolve().parents[2]
SOURCES = [
    p
    for folder in ("vcups_core", "training", "vcups_ros")
    for p in (REPO / folder).rglob("*.py")
    if "configs" not in p.relative_to(REPO).parts
]


def leaf_fields(schema: type, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(schema):
        if isinstance(f.type, type) and dataclasses.is_dataclass(f.type):
            out.extend(leaf_fields(f.type, f"{prefix}{f.name}."))
        elif dataclasses.is_dataclass(f.default_factory if callable(f.default_factory) else None):
            out.extend(leaf_fields(f.default_factory, f"{prefix}{f.name}."))  # type: ignore[arg-type]
        else:
            out.append(prefix + f.name)
    return out


TEXT = "\n".join(p.read_text() for p in SOURCES)


@pytest.mark.parametrize(
    "key",
    [
        *leaf_fields(EvaluationConfig),
        *(f"model.{k}" for k in leaf_fields(ModelConfig)),
        *(f"training.{k}" for k in leaf_fields(TrainingConfig)),
        *(f"pseudo_labels.{k}" for k in leaf_fields(PseudoLabelConfig)),
        *(f"node.{k}" for k in leaf_fields(NodeConfig)),
    ],
)
def test_field_is_read(key: str) -> None:
    name = key.rsplit(".", 1)[-1]
    assert re.search(rf"\.{re.escape(name)}\b", TEXT), f"{key} is read nowhere"
