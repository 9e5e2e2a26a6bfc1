"""What the exported backends (onnxruntime, TensorRT) share: the ``vcups_*`` metadata that
travels with a graph or an engine, written at export and read back by the predictors."""

from __future__ import annotations

import json
from pathlib import Path

from vcups_core.jobs import file_sha256
from vcups_core.model.checkpoint import (
    categories_from_dict,
    categories_to_dict,
    weights_sha256,
)
from vcups_core.model.meta_arch import PanopticCascadeMaskTrack
from vcups_core.model.postprocess import OUTPUT_NAMES, MergeSettings
from vcups_core.types import CategoryTable


def predictor_metadata(model: PanopticCascadeMaskTrack) -> dict[str, str]:
    """String metadata that travels with exported graphs/engines (JSON values)."""
    return {
        "vcups_model_name": model.name,
        "vcups_categories": json.dumps(categories_to_dict(model.categories)),
        "vcups_merge": json.dumps(
            {
                "score_threshold": model.merge.score_threshold,
                "overlap_threshold": model.merge.overlap_threshold,
                "stuff_area_limit": model.merge.stuff_area_limit,
                "mask_threshold": model.merge.mask_threshold,
            }
        ),
        "vcups_weights_sha256": weights_sha256(model.state_dict()),
        "vcups_outputs": ",".join(OUTPUT_NAMES),
        "vcups_semantic_stride": str(model.semantic_head.common_stride),
    }


def _settings_from_metadata(meta: dict[str, str]) -> MergeSettings:
    data = json.loads(meta.get("vcups_merge", "{}"))
    return MergeSettings(
        score_threshold=float(data.get("score_threshold", 0.5)),
        overlap_threshold=float(data.get("overlap_threshold", 0.5)),
        stuff_area_limit=int(data.get("stuff_area_limit", 4096)),
        mask_threshold=float(data.get("mask_threshold", 0.5)),
    )


class ExportedPredictor:
    """What the ONNX and TensorRT predictors read from an exported graph's ``vcups_*`` metadata."""

    path: Path
    categories: CategoryTable
    settings: MergeSettings
    semantic_stride: int
    model_name: str
    checksum: str

    def _read_metadata(
        self, meta: dict[str, str], categories: CategoryTable | None, *, missing: str
    ) -> None:
        if categories is None:
            if "vcups_categories" not in meta:
                raise ValueError(f"{missing}: pass categories=")
            categories = categories_from_dict(json.loads(meta["vcups_categories"]))
        self.categories = categories
        self.settings = _settings_from_metadata(meta)
        # graphs exported before the semantic head kept its own grid output input resolution
        self.semantic_stride = int(meta.get("vcups_semantic_stride", "1"))
        self.model_name = meta.get("vcups_model_name", self.path.stem)
        self.checksum = meta.get("vcups_weights_sha256") or file_sha256(self.path)
