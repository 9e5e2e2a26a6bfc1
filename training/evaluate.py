"""``vcups evaluate``: STQ/AQ/SQ and VPQ of a checkpoint (or the oracle) on a dataset folder, or of
stored predictions.

**Run form**: ``vcups evaluate (--checkpoint C | --oracle) --dataset NAME:ROOT [--split S]
--out DIR``. Every clip of the split goes through the node's streaming path (predictor, causal
tracker, smoothing, panoptic frame; :mod:`vcups_core.streaming.dataset_run`), a fresh tracker per
clip, the tracker seeing every frame between the labelled ones. Then, once every clip is done:

1. one class matching for the whole set (the protocol's Hungarian + majority rule on the
   pseudo-class x class confusion of every annotated frame; ``match: none`` takes the model's
   category ids as class ids);
2. the predictions, mapped to the dataset's class ids, written in the dataset's own format under
   ``DIR/predictions/`` (:mod:`vcups_core.data.predictions`);
3. the protocol's scores over the whole set in ``DIR/report.json`` (``STQ``, ``AQ``, ``SQ``,
   ``VPQ``, per class and sequence, ``class_mapping`` and ``category_mapping``) with plots next to
   it (``DIR/report_*.png``).

Class ids of the written predictions: the dataset's, not the model's pseudo-classes. The formats
hold nothing else (KITTI-STEP's R channel and Cityscapes-VPS's ``category_id`` are train ids
0..18, MOTS has car/pedestrian, Waymo its raw ids), and the official tools score class ids as they
are, so a submission must already be matched. The protocol's matching is one mapping made from
the whole set, so it is made after every clip is streamed and before any file is written; the
pseudo-class output stays in ``DIR/clips/`` and the mapping is in the report.

Resuming, shards and torchrun: the streamed output of each finished clip is one file,
``DIR/clips/<clip>.npz``, written atomically, so a killed run re-run skips the finished clips.
``--shard I/N`` (or torchrun's ``RANK``/``WORLD_SIZE``) takes clips ``I, I+N, ...``. The steps
1-3 run in the process that sees every clip finished: the unsharded run, the last shard to finish
(earlier ones exit 0 saying so), or under torchrun rank 0 after a barrier of all ranks. They
re-read every clip's file and compute the statistics in one pass over the whole set; nothing is
summed across processes, so the report is exact and the same however the clips were split. A
re-run with every clip done repeats only steps 1-3 (e.g. with another ``--config``).
``DIR/run.json`` records what ran (dataset, root, split, predictor, node settings): a re-run
with other ones is refused rather than mixed in.

A split without labels (a test split, ``--split test``) is exported, not scored: every frame is
streamed and the predictions of the frames the dataset's server takes
(:func:`~vcups_core.data.predictions.submission_frames`: every frame; Cityscapes-VPS the frames
its JSON lists) are written under ``DIR/predictions/``; no report. With no ground truth to match
on, the class mapping is an earlier run's: ``--class-mapping REPORT.json``, the report of a run of
the same checkpoint on a labelled split (e.g. ``--split val``), or ``--match none`` for a model
whose categories are the dataset's classes. (On a labelled split ``--class-mapping`` replaces the
matching on the split.)

The oracle (ground truth as the predictor, as in ``vcups replay``) checks this path: it must score
1.0. It knows only the annotated frames, so only those are streamed, with smoothing off (see
:func:`~vcups_core.streaming.dataset_run.oracle_segmenter`).

**Stored form**: ``vcups evaluate --dataset NAME --gt ROOT --pred ROOT --out REPORT.json`` scores
predictions stored in a dataset's own format. They carry the dataset's class ids (a dataset format
has no others), so a predicted class is a thing or stuff as the dataset descriptor says
(``DatasetDescriptor.thing_ids``; for KITTI-STEP and Waymo the Cityscapes 8 things), not by
whether its pixels carry instance ids (a reader keeps instance ids only on tracked classes).

Both forms take the protocol's settings from an
:class:`~vcups_core.configs.evaluation.EvaluationConfig` (``args.config``, a YAML file, when the
parser provides it; else the defaults of ``config/evaluation.yaml``); ``--dataset`` and
``--match`` override its ``dataset`` and ``match``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vcups_core.config import config_to_dict, load_config, replace
from vcups_core.configs.evaluation import EvaluationConfig
from vcups_core.configs.node import NodeConfig
from vcups_core.data.clip import Clip, PanopticLabel
from vcups_core.data.datasets import DatasetDescriptor, get_descriptor
from vcups_core.data.predictions import (
    PREDICTION_FORMATS,
    ClipPredictions,
    prediction_view,
    submission_frames,
    write_predictions,
)
from vcups_core.data.registry import READERS, open_dataset
from vcups_core.jobs import (
    StagedOutput,
    atomic_write_json,
    check_output_file,
    file_lock,
    file_sha256,
    make_output_folder,
    select_shard,
    terminate_as_interrupt,
)
from vcups_core.metrics.class_matching import ClassMatch
from vcups_core.metrics.evaluate import (
    Frame,
    descriptor_thing_flags,
    evaluate,
    match_pseudo_classes,
)
from vcups_core.runtime import rank_device
from vcups_core.streaming.dataset_run import ClipResult, result_path
from vcups_core.streaming.segmenter import StreamingSegmenter
from vcups_core.types import CategoryTable
from vcups_core.viz.plots import plot_report

RUN_FILE = "run.json"
"""What a run folder holds results of (checked when a run resumes)."""
REPORT_FILE = "report.json"
CLIPS_DIR = "clips"
PREDICTIONS_DIR = "predictions"
BARRIER_TIMEOUT = timedelta(hours=24)
"""How long torchrun ranks wait for each other at the end of the streaming."""


# ------------------------------------------------------------------------------------------------
# stored predictions


def frame_pairs(dataset: str, gt_root: Path, pred_root: Path, split: str | None) -> Iterator[Frame]:
    """Annotated ground-truth frames with the prediction of the same clip and position.

    ``pred_root`` needs only the labels: where it lacks the dataset's images, the ground truth's
    are linked in (:func:`~vcups_core.data.predictions.prediction_view`).

    Raises:
        ValueError: if a clip or an annotated frame has no prediction (names both).
    """
    with prediction_view(dataset, pred_root, gt_root, split) as view:
        yield from _frame_pairs(dataset, gt_root, pred_root, view, split)


def _frame_pairs(
    dataset: str, gt_root: Path, pred_root: Path, view: Path, split: str | None
) -> Iterator[Frame]:
    predictions = {clip.name: clip for clip in open_dataset(dataset, view, split)}
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
    and it is set) or the defaults, with ``--dataset`` (its name) and ``--match`` (when given)
    on top.

    Raises:
        ConfigError: if the file is invalid (names the file, key and allowed values).
    """
    path = getattr(args, "config", None)
    cfg = load_config(path, EvaluationConfig) if path else EvaluationConfig()
    changes: dict[str, Any] = {}
    dataset = getattr(args, "dataset", None)
    if dataset is not None:
        changes["dataset"] = dataset.partition(":")[0]
    match = getattr(args, "match", None)
    if match is not None:
        changes["match"] = match
    return replace(cfg, **changes) if changes else cfg


def run_evaluate(args: argparse.Namespace) -> int:
    """``vcups evaluate`` in either form; returns the exit code.

    Raises:
        ValueError: a mix of the two forms' options, or any one-line user error below.
    """
    if getattr(args, "checkpoint", None) or getattr(args, "oracle", False):
        return run_dataset_evaluation(args)
    for flag in ("shard", "class_mapping"):
        if getattr(args, flag, None):
            option = flag.replace("_", "-")
            raise ValueError(f"--{option} needs --checkpoint or --oracle (the run form)")
    if not getattr(args, "gt", None) or not getattr(args, "pred", None):
        raise ValueError(
            "give --checkpoint C or --oracle with --dataset NAME:ROOT (run a model on a "
            "dataset), or --gt ROOT and --pred ROOT (score stored predictions)"
        )
    dataset = getattr(args, "dataset", None)
    if dataset is not None and ":" in dataset:
        raise ValueError(
            f"--dataset {dataset}: with --gt/--pred give the dataset NAME only "
            "(NAME:ROOT is for --checkpoint/--oracle)"
        )
    if dataset is not None and dataset not in PREDICTION_FORMATS:
        raise ValueError(f"--dataset {dataset}: expected one of {', '.join(PREDICTION_FORMATS)}")
    return _score_stored(args)


def _score_stored(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    cfg = evaluation_config(args)
    descriptor = get_descriptor(cfg.dataset)
    gt, pred = Path(args.gt), Path(args.pred)
    total = sum(len(c.annotated) for c in open_dataset(cfg.dataset, gt, args.split))
    if not total:
        split = args.split or default_split(cfg.dataset)
        raise ValueError(
            f"--gt {gt}: {cfg.dataset} split {split} has no labelled frame; nothing to score"
        )
    out = check_output_file(Path(args.out), "--out")  # before the scoring

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
    report["plots"] = [str(p) for p in plot_report(report, out.with_suffix(""))]
    out.write_text(json.dumps(report, indent=2) + "\n")
    _print_scores(report)
    print(f"report: {out} (plots: {', '.join(report['plots'])})")
    return 0


def _print_scores(report: dict[str, Any]) -> None:
    print(
        f"{report['dataset']}: STQ {100 * report['STQ']:.1f}  AQ {100 * report['AQ']:.1f}  "
        f"SQ {100 * report['SQ']:.1f}  VPQ {100 * report['VPQ']:.1f}  "
        f"({report['frames']} frames, {report['sequences']} sequences)"
    )
    print(report["classwise_table"])


# ------------------------------------------------------------------------------------------------
# run form


def parse_dataset_spec(spec: str | None) -> tuple[str, Path]:
    """``NAME:ROOT`` of ``--dataset`` as ``(name, root)``.

    Raises:
        ValueError: a malformed spec or a dataset without a prediction writer.
    """
    name, sep, root = (spec or "").partition(":")
    if not sep or not name or not root:
        raise ValueError(
            f"--dataset: expected NAME:ROOT with --checkpoint/--oracle (e.g. "
            f"kitti-step:/data/kitti-step), got {spec!r}"
        )
    if name not in PREDICTION_FORMATS:
        raise ValueError(
            f"--dataset {name}: expected one of {', '.join(PREDICTION_FORMATS)} (the formats "
            "predictions can be written in)"
        )
    return name, Path(root)


def default_split(dataset: str) -> str:
    """The split a dataset's reader reads when none is given."""
    default = inspect.signature(READERS[dataset]).parameters["split"].default
    return str(default)


def run_dataset_evaluation(args: argparse.Namespace) -> int:
    """The run form (see the module docstring); returns the exit code (0 also when this shard
    is done but others are not)."""
    with terminate_as_interrupt():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from training.pseudo_labels import resolve_shard

    if getattr(args, "gt", None) or getattr(args, "pred", None):
        raise ValueError(
            "--gt/--pred score stored predictions; --checkpoint/--oracle run on --dataset"
        )
    name, root = parse_dataset_spec(getattr(args, "dataset", None))
    descriptor = get_descriptor(name)
    cfg = evaluation_config(args)
    split = args.split or default_split(name)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: is a file; the run form writes a folder")
    make_output_folder(out.parent, f"--out {out}")
    shard = resolve_shard(getattr(args, "shard", None))
    world = _torchrun_world()
    clips = list(open_dataset(name, root, split))
    if not any(clip.frames for clip in clips):
        raise ValueError(f"{root} ({name}, split {split}): no frame to run on")
    labelled = any(clip.annotated for clip in clips)
    oracle = bool(args.oracle)
    mapping_path = getattr(args, "class_mapping", None)
    if mapping_path and cfg.match != "hungarian":
        raise ValueError("--class-mapping maps pseudo-classes to classes; not with match: none")
    if not labelled and oracle:
        raise ValueError(f"--oracle: {root} ({name}, split {split}) has no labels to predict")
    if not labelled and not mapping_path and cfg.match == "hungarian":
        raise ValueError(
            f"{root} ({name}, split {split}) has no labels to match the pseudo-classes on: give "
            "--class-mapping REPORT.json (the report.json of a run of this checkpoint on a "
            "labelled split, e.g. --split val), or --match none if the model's categories are "
            f"{name} classes"
        )
    node_cfg = load_config(args.node_config, NodeConfig) if args.node_config else NodeConfig()
    quiet = bool(args.quiet) or (world > 1 and shard[0] != 0)  # torchrun: rank 0's bar only
    make_segmenter, categories, predictor_id = _segmenter_factory(args, descriptor, node_cfg)
    class_match = None
    if mapping_path:
        class_match = load_class_mapping(Path(mapping_path), descriptor, categories, predictor_id)
    identity = json.loads(
        json.dumps(
            {
                "dataset": name,
                "root": str(root.resolve()),
                "split": split,
                "predictor": predictor_id,
                "categories": _categories_dict(categories),
                "node_config": config_to_dict(node_cfg),
                "stuff_area_limit": None if oracle else args.stuff_area_limit,
            }
        )
    )
    _claim(out, identity)
    distributed = world > 1 and _start_group()
    try:
        from vcups_core.streaming.dataset_run import run_clips

        mine = select_shard(clips, *shard)
        summary = run_clips(
            mine,
            out / CLIPS_DIR,
            make_segmenter,
            annotated_only=oracle,
            progress=not quiet,
            kept=None if labelled else submission_frames,
        )
        where = f" (shard {shard[0]}/{shard[1]})" if shard[1] > 1 else ""
        print(
            f"streamed {summary.frames} frames of {summary.clips - summary.skipped} clips"
            f"{where} in {summary.seconds:.1f} s ({summary.frames_per_second:.1f} frames/s); "
            f"{summary.skipped} clips finished before"
        )
        if distributed:
            import torch.distributed as dist

            dist.barrier()
            if shard[0] != 0:
                return 0
        missing = [c.name for c in clips if not result_path(out / CLIPS_DIR, c.name).exists()]
        if missing:
            print(
                f"{len(clips) - len(missing)} of {len(clips)} clips finished; the report is "
                f"written by the run that finishes the last one (missing: "
                f"{', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})"
            )
            return 0
        with file_lock(out / ".finish.lock"):
            if not labelled:
                written = finish_export(out, clips, descriptor, split, class_match)
            else:
                report = finish_run(
                    out,
                    clips,
                    descriptor,
                    categories,
                    cfg,
                    split,
                    identity,
                    quiet=bool(args.quiet),
                    class_match=class_match,
                )
    finally:
        if distributed:
            import torch.distributed as dist

            dist.destroy_process_group()
    if not labelled:
        classes = f"classes mapped by {mapping_path}" if mapping_path else "category ids as classes"
        print(
            f"{name} split {split} has no labels: nothing scored, no report. predictions of "
            f"{written} frames of {len(clips)} clips ({classes}): {out / PREDICTIONS_DIR} "
            f"({name} format, for the dataset's evaluation server)"
        )
        return 0
    _print_scores(report)
    print(
        f"predictions: {out / PREDICTIONS_DIR} ({name} format, dataset class ids); "
        f"report: {out / REPORT_FILE}"
    )
    return 0


def _torchrun_world() -> int:
    """torchrun's ``WORLD_SIZE`` (1 without torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1") or 1)
    except ValueError:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer") from None


def _start_group() -> bool:
    """Start a gloo process group from torchrun's environment (only a barrier is needed, so
    gloo serves GPU runs too); True once started."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    return True


def _segmenter_factory(
    args: argparse.Namespace, descriptor: DatasetDescriptor, node_cfg: NodeConfig
) -> tuple[Callable[[Clip], StreamingSegmenter], CategoryTable, Any]:
    """``(clip -> fresh segmenter, the predictor's categories, the predictor's identity)``."""
    from vcups_core.data.oracle import CATEGORIES
    from vcups_core.streaming.dataset_run import oracle_segmenter

    if args.oracle:

        def oracle(clip: Clip) -> StreamingSegmenter:
            return oracle_segmenter(clip, descriptor, node_cfg.streaming)

        return oracle, CATEGORIES, "oracle"
    path = Path(args.checkpoint)
    from vcups_core.model.predictors import load_predictor

    # the node file's model section, --checkpoint/--backend/--device over it
    predictor = load_predictor(
        replace(
            node_cfg.model,
            checkpoint=str(path),
            backend=args.backend or node_cfg.model.backend,
            device=rank_device(args.device or node_cfg.model.device),
        ),
        names=("--checkpoint", "--device"),
    )
    streaming = node_cfg.streaming
    if args.stuff_area_limit is not None:
        streaming = replace(streaming, stuff_area_limit=args.stuff_area_limit)

    def model(clip: Clip) -> StreamingSegmenter:
        return StreamingSegmenter.from_config(predictor, streaming)

    identity = {"checkpoint": str(path.resolve()), "sha256": file_sha256(path)}
    return model, predictor.categories, identity


def _categories_dict(categories: CategoryTable) -> dict[str, Any]:
    return {
        "names": list(categories.names),
        "num_things": categories.num_things,
        "pseudo_class_ids": list(categories.pseudo_class_ids),
    }


def _claim(out: Path, identity: dict[str, Any]) -> None:
    """Record ``identity`` in ``out/run.json``, or check it against the one there.

    Raises:
        ValueError: ``out`` holds results of another run (names what differs).
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / RUN_FILE
    with file_lock(out / ".run.lock"):
        if not path.exists():
            atomic_write_json(path, identity)
            return
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(
                f"{path}: unreadable ({exc}); remove the folder to start over"
            ) from None
        differ = sorted(
            k for k in identity if not isinstance(old, dict) or old.get(k) != identity[k]
        )
        if differ:
            raise ValueError(
                f"--out {out}: holds results of a run with another {', '.join(differ)} "
                f"(see {RUN_FILE}); choose another --out or remove it"
            )


def finish_run(
    out: Path,
    clips: list[Clip],
    descriptor: DatasetDescriptor,
    categories: CategoryTable,
    cfg: EvaluationConfig,
    split: str,
    identity: dict[str, Any],
    *,
    quiet: bool = True,
    class_match: ClassMatch | None = None,
) -> dict[str, Any]:
    """Steps 1-3 of the module docstring on the finished clips; returns the report written.
    ``class_match``: a mapping to use instead of matching on the clips (``--class-mapping``).

    Raises:
        ValueError: a result file that does not fit its clip (names it; remove it to redo the
            clip), or a prediction the dataset's writer refuses.
    """
    from tqdm import tqdm

    results = out / CLIPS_DIR
    flags = list(categories.is_thing)

    def source() -> Iterator[Frame]:
        for clip, result in _results(clips, results):
            position = {index: k for k, index in enumerate(result.frames)}
            for frame in clip.annotated:
                label, k = frame.label(), position.get(frame.index)
                if label is None or k is None:
                    raise ValueError(
                        f"{result.path}: no result for annotated frame {frame.index}; remove it "
                        "to redo the clip"
                    )
                semantic, track = result.maps(k)
                if semantic.shape != label.shape:
                    raise ValueError(
                        f"{result.path}: frame {frame.index} is {semantic.shape}, its ground "
                        f"truth {label.shape}"
                    )
                yield clip.name, label.semantic, label.instance, semantic, track

    match = None
    if cfg.match == "hungarian":
        match = class_match or match_pseudo_classes(
            source, descriptor, len(categories), flags, cfg.adhere_thing_stuff
        )
    streamed, _ = _write_predictions(out, clips, descriptor, split, match)
    total = sum(len(c.annotated) for c in clips)

    def progress(it: Iterator[Frame]) -> Iterator[Frame]:
        return iter(tqdm(it, total=total, desc="score", unit="frame", disable=quiet))

    report = evaluate(
        source,
        descriptor,
        cfg,
        num_pred_classes=len(categories),
        pred_is_thing=flags,
        progress=progress,
        class_match=match,
    )
    report["predictor"] = identity["predictor"]
    report["split"] = split
    report["clips"] = len(clips)
    report["frames_streamed"] = streamed
    report["predictions"] = PREDICTIONS_DIR
    report["prediction_class_ids"] = (
        "dataset class ids (categories mapped by class_mapping before writing)"
        if match is not None
        else "the model's category ids taken as dataset class ids (match: none)"
    )
    if "class_mapping" in report:
        report["category_mapping"] = {
            categories.names[int(k)]: v for k, v in report["class_mapping"].items()
        }
    report["plots"] = [p.name for p in plot_report(report, out / Path(REPORT_FILE).stem)]
    atomic_write_json(out / REPORT_FILE, report)
    return report


def finish_export(
    out: Path,
    clips: list[Clip],
    descriptor: DatasetDescriptor,
    split: str,
    class_match: ClassMatch | None,
) -> int:
    """Step 2 of the module docstring alone, for a split without labels: the finished clips'
    predictions mapped by ``class_match`` (``None``: category ids taken as class ids) and
    written; returns the number of frames written.

    Raises:
        ValueError: as :func:`finish_run`.
    """
    return _write_predictions(out, clips, descriptor, split, class_match)[1]


def _write_predictions(
    out: Path,
    clips: list[Clip],
    descriptor: DatasetDescriptor,
    split: str,
    match: ClassMatch | None,
) -> tuple[int, int]:
    """Every clip's kept frames in dataset class ids (``match``; ``None``: as they are) written
    under ``out/predictions/``, replacing what is there; returns (frames streamed, written)."""
    streamed = written = 0

    def mapped() -> Iterator[ClipPredictions]:
        nonlocal streamed, written
        for clip, result in _results(clips, out / CLIPS_DIR):
            streamed += result.streamed
            written += len(result.frames)
            yield clip, _MappedLabels(result, match)

    with StagedOutput(out / PREDICTIONS_DIR, overwrite=True) as staged:
        write_predictions(descriptor.name, mapped(), staged.path, split)
    return streamed, written


def load_class_mapping(
    path: Path, descriptor: DatasetDescriptor, categories: CategoryTable, predictor: Any
) -> ClassMatch:
    """The class mapping of an earlier run's ``report.json`` (``--class-mapping``): its
    ``class_mapping`` (category id -> class name or ``"void"``) as a :class:`ClassMatch`.

    Args:
        path: the report of a run form (it records its predictor).
        descriptor: the dataset the mapping is applied to (its class names).
        categories: the predictor's categories (the mapping must cover exactly these).
        predictor: this run's predictor identity; the report's must be the same checkpoint
            (equal ``sha256``).

    Raises:
        ValueError: an unreadable file, one without a mapping, another predictor's, or a
            mapping to classes ``descriptor`` lacks (names the file).
    """
    where = f"--class-mapping {path}"
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{where}: unreadable ({exc})") from None
    mapping = report.get("class_mapping") if isinstance(report, dict) else None
    if not isinstance(mapping, dict):
        raise ValueError(
            f"{where}: has no class_mapping; give the report.json of a `vcups evaluate` run on a "
            "labelled split"
        )
    theirs = report.get("predictor")
    if _checkpoint_key(theirs) != _checkpoint_key(predictor):
        raise ValueError(
            f"{where}: the mapping of another predictor ({theirs!r:.120}); a mapping belongs to "
            "the checkpoint it was matched for"
        )
    keys = [str(k) for k in range(len(categories))]
    if sorted(mapping) != sorted(keys):
        raise ValueError(
            f"{where}: maps {len(mapping)} categories, the model has {len(categories)}"
        )
    ids = {name: c for c, name in enumerate(descriptor.class_names)}
    ids["void"] = descriptor.ignore_label
    unknown = sorted({str(v) for v in mapping.values()} - set(ids))
    if unknown:
        raise ValueError(f"{where}: {unknown[:5]} are not {descriptor.name} classes")
    lut = np.array([ids[str(mapping[k])] for k in keys], np.int64)
    n = descriptor.num_classes
    # a mapping made elsewhere: no confusion or Hungarian pairs of its own
    return ClassMatch(lut, np.zeros((n, n), np.int64), (), descriptor.ignore_label)


def _checkpoint_key(predictor: Any) -> Any:
    """What identifies a predictor across runs: a checkpoint's ``sha256`` (not its path)."""
    return predictor.get("sha256") if isinstance(predictor, dict) else predictor


def _results(clips: list[Clip], folder: Path) -> Iterator[tuple[Clip, ClipResult]]:
    """Each clip with its open result file (closed when the next one is reached)."""
    for clip in clips:
        with ClipResult(result_path(folder, clip.name)) as result:
            if result.name != clip.name:
                raise ValueError(f"{result.path}: holds clip {result.name!r}, not {clip.name!r}")
            yield clip, result


class _MappedLabels(Mapping[int, PanopticLabel]):
    """A clip's predicted labels in dataset class ids by frame index, decoded when asked for
    (the writers take one frame at a time)."""

    def __init__(self, result: ClipResult, match: ClassMatch | None) -> None:
        self._result, self._match = result, match
        self._position = {index: k for k, index in enumerate(result.frames)}

    def __getitem__(self, index: int) -> PanopticLabel:
        semantic, track = self._result.maps(self._position[index])
        return PanopticLabel(_to_classes(semantic, self._match), track)

    def __iter__(self) -> Iterator[int]:
        return iter(self._result.frames)

    def __len__(self) -> int:
        return len(self._result.frames)


def _to_classes(semantic: npt.NDArray[np.uint8], match: ClassMatch | None) -> npt.NDArray[np.uint8]:
    """Category ids -> dataset class ids (void stays void); ``None``: ids taken as they are."""
    if match is None:
        return semantic
    return np.asarray(match.apply(semantic)).astype(np.uint8)
