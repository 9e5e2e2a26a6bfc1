"""The CPU recipe shared by ``vcups demo`` and ``benchmarks/train_synthetic.py``: pseudo-labels
with the weight-free default cues and the paper's hyperparameters, then the tiny model trained on
them, at a small processing size.

* :func:`pseudo_label_config`: :class:`PseudoLabelConfig` defaults (the paper's values, the
  weight-free cues) at ``size``, the semantic clusters file as ``semantics.weights``, the CRF off
  (for time) and a 3-frame semantic smoothing window (short drives).
* :func:`cpu_training_config`: :class:`TrainingConfig` defaults with batch 2 clips, no loader
  workers, crops at the drive size, a resolution jitter of +-32 rows around it, copy-paste
  sources down to 8 px and a checkpoint every quarter of the run (Video DropLoss and the
  self-enhanced video copy-paste on, as in the paper).
* :func:`with_startup_epochs`: the copy-paste pastes pseudo-label tracks for the first third of
  the steps and the model's own confident tracks after.
* :func:`moving_track_ids`: the ground-truth ids of a synthetic drive's moving objects (the
  moving/static split of the scores).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vcups_core.config import apply_overrides, config_to_dict, replace
from vcups_core.configs.pseudo_labels import PseudoLabelConfig
from vcups_core.configs.training import TrainingConfig

DEFAULT_LR = 2e-4
"""Learning rate of the tiny model's short CPU runs (the paper's 2e-5 is for 8 GPUs x days)."""


def pseudo_label_config(size: tuple[int, int], clusters: Path | str) -> PseudoLabelConfig:
    """Pseudo-label config at ``size`` = (height, width) with the clusters file ``clusters``."""
    cfg = PseudoLabelConfig()
    merged = config_to_dict(cfg)
    result: PseudoLabelConfig = replace(
        cfg,
        height=size[0],
        width=size[1],
        semantic_smoothing_window=3,
        semantics={**merged["semantics"], "weights": str(clusters), "crf_iterations": 0},
    )
    return result


def cpu_training_config(
    size: tuple[int, int],
    steps: int,
    *,
    lr: float = DEFAULT_LR,
    overrides: Sequence[str] = (),
) -> TrainingConfig:
    """Training config for ``steps`` steps at ``size`` = (height, width); ``overrides`` are
    ``KEY=VALUE`` strings applied last (e.g. ``video_drop_loss=false`` for an ablation).

    Raises:
        ConfigError: an invalid override or size.
    """
    h, w = size
    base = [
        "batch_size=2",
        "num_workers=0",
        f"checkpoint_every={max(steps // 4, 1)}",
        f"optimizer.learning_rate={lr}",
        f"augmentation.crop_height={h}",
        f"augmentation.crop_width={w}",
        f"augmentation.resolutions=[[{h},{w}],[{h + 32},{w + 64}],[{h - 32},{w - 64}]]",
        "copy_paste.min_box_size=8",
        "epochs=1000",
    ]
    cfg: TrainingConfig = apply_overrides(TrainingConfig(), [*base, *overrides], TrainingConfig)
    return cfg


def with_startup_epochs(cfg: TrainingConfig, steps: int, keys: int) -> TrainingConfig:
    """``cfg`` whose copy-paste switches to the model's own tracks after a third of ``steps``
    (``keys``: the training frames, i.e. ``keys / batch_size`` steps per epoch)."""
    per_epoch = max(1, keys // cfg.batch_size)
    epochs = max(1, round(steps / 3 / per_epoch))
    result: TrainingConfig = replace(
        cfg, copy_paste={**config_to_dict(cfg.copy_paste), "startup_epochs": epochs}
    )
    return result


def moving_track_ids(worlds: Mapping[str, Any]) -> dict[str, list[int]]:
    """Per drive name, the track ids of the moving objects of its
    :class:`~vcups_core.data.synthetic.SyntheticWorld` (``objects``: ``track_id``, ``moving``)."""
    return {name: _moving(world.objects) for name, world in worlds.items()}


def _moving(objects: Iterable[Any]) -> list[int]:
    return [int(o.track_id) for o in objects if o.moving]
