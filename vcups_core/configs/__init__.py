"""Config schemas, one module per component; loaded and validated by :mod:`vcups_core.config`.

``SCHEMAS`` maps the kind name used by ``vcups config`` to its schema and its default file in
``config/``. :class:`PredictorConfig` and :class:`StreamingConfig` are sections of the node's
file (``model``, ``streaming``) that ``vcups replay`` and ``vcups evaluate`` read too.
"""

from __future__ import annotations

from vcups_core.configs.evaluation import EvaluationConfig
from vcups_core.configs.model import ModelConfig
from vcups_core.configs.node import NodeConfig
from vcups_core.configs.predictor import PredictorConfig
from vcups_core.configs.pseudo_labels import PseudoLabelConfig
from vcups_core.configs.streaming import StreamingConfig
from vcups_core.configs.training import TrainingConfig

SCHEMAS: dict[str, tuple[type, str]] = {
    "node": (NodeConfig, "perception.yaml"),
    "model": (ModelConfig, "model/vcups_r50.yaml"),
    "pseudo_labels": (PseudoLabelConfig, "pseudo_labels.yaml"),
    "training": (TrainingConfig, "training.yaml"),
    "evaluation": (EvaluationConfig, "evaluation.yaml"),
}
"""kind -> (schema, default file relative to the ``config/`` directory)."""

__all__ = [
    "SCHEMAS",
    "EvaluationConfig",
    "ModelConfig",
    "NodeConfig",
    "PredictorConfig",
    "PseudoLabelConfig",
    "StreamingConfig",
    "TrainingConfig",
]
