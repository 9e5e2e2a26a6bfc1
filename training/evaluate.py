"""``vcups evaluate``: score predictions stored in a dataset's own format against its ground truth.

Predictions carry the dataset's own class ids (a dataset format has no others), so a predicted
class is a thing or stuff as the dataset descriptor says (``DatasetDescriptor.thing_ids``; for
KITTI-STEP and Waymo the Cityscapes 8 things), not by whether its pixels carry instance ids (a
reader keeps instance ids only on tracked classes). The protocol's settings come from an
:class:`~vcups_core.configs.evaluation.EvaluationConfig` (``args.config``, a YAML file, when the
parser provides it; else the defaults of ``config/evaluation.yaml``); ``--dataset`` and
``--match`` override its ``dataset`` and ``match``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vcups_core.config import load_config, replace
from vcups_core.configs.evaluation import EvaluationConfig
from vcups_core.data.datasets import get_descriptor
from vcups_core.data.registry import open_dataset
from vcups_core.metrics.evaluate import Frame, descriptor_thing_flags, evaluate
from vcups_core.viz.plots import plot_report


def frame_pairs(dataset: str, gt_root: Path, pred_root: Path, split: str | None) -> Iterator[Frame]:
    """Annotated ground-truth frames with the prediction of the same clip and position.

    Raises:
        ValueError: if a clip or an annotated frame has no prediction (names both).
    """
    predictions = {clip.name: clip for clip in open_dataset(dataset, pred_root, split)}
    for clip in open_dataset(dataset, gt_root, split):
        pred_clip = predictions.get(clip.name)
        if pred_clip is None:
            raise ValueError(f"{pred_root}: no predictions for clip {clip.name!r} of {gt_root}")
        by_index = {f.index: f for f in pred_clip.frames}
        for frame in clip.annotated:
            gt = frame.label()
            pred_frame = by_index.get(frame.index)
            pred = pred_frame.label() if pred_frame is not None else None
            if gt is None or pred is None:
                raise ValueError(
                    f"{pred_root}: clip {clip.name!r} frame {frame.index} has no predicted label"
                )
            if pred.shape != gt.shape:
                raise ValueError(
                    f"clip {clip.name!r} frame {frame.index}: prediction {pred.shape} != ground truth {gt.shape}"
                )
            yield clip.name, gt.semantic, gt.instance, pred.semantic, pred.instance


def evaluation_config(args: argparse.Namespace) -> EvaluationConfig:
    """The protocol settings of a ``vcups evaluate`` call: ``args.config`` (if the parser has it
    and it is set) or the defaults, with ``--dataset`` and ``--match`` (when given) on top.

    Raises:
        ConfigError: if the file is invalid (names the file, key and allowed values).
    """
    path = getattr(args, "config", None)
    cfg = load_config(path, EvaluationConfig) if path else EvaluationConfig()
    changes = {
        key: getattr(args, key)
        for key in ("dataset", "match")
        if getattr(args, key, None) is not None
    }
    return replace(cfg, **changes) if changes else cfg


def run_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    cfg = evaluation_config(args)
    descriptor = get_descriptor(cfg.dataset)
    gt, pred = Path(args.gt), Path(args.pred)
    total = sum(len(c.annotated) for c in open_dataset(cfg.dataset, gt, args.split))

    def source() -> Iterator[Frame]:
        return frame_pairs(cfg.dataset, gt, pred, args.split)

    def progress(it: Iterator[Frame]) -> Iterator[Frame]:
        return iter(tqdm(it, total=total, desc="evaluate", unit="frame", disable=args.quiet))

    flags = descriptor_thing_flags(descriptor)
    report: dict[str, Any] = evaluate(
        source,
        descriptor,
        cfg,
        num_pred_classes=len(flags),
        pred_is_thing=flags,
        progress=progress,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report["plots"] = [str(p) for p in plot_report(report, out.with_suffix(""))]
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{descriptor.name}: STQ {100 * report['STQ']:.1f}  AQ {100 * report['AQ']:.1f}  "
        f"SQ {100 * report['SQ']:.1f}  VPQ {100 * report['VPQ']:.1f}  "
        f"({report['frames']} frames, {report['sequences']} sequences)"
    )
    print(report["classwise_table"])
    print(f"report: {out} (plots: {', '.join(report['plots'])})")
    return 0
