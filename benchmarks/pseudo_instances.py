"""Quality and speed of the instance pseudo-labels (``vcups pseudo-labels``), real and synthetic.

Three parts, each printed as a table with a target column and PASS/MISS:

1. **DAVIS-2016** (real video; default: the four clips of ``../shared/data/davis2016``). The real
   pipeline (:func:`~vcups_core.pseudo.pipeline.run_pseudo_labels` on the ``davis`` dataset
   source, into a throw-away store under ``--work``) at the native size (config ``height`` =
   ``width`` = 0, i.e. 480x854: DAVIS frames are not 2:1, so the 640x1280 default would stretch
   them); the store is read back with :func:`~vcups_core.pseudo.store.read_store`. Per clip:

   * *union J*: IoU of all pseudo-instances together (track id != 0) with the annotated object,
     averaged over the clip's frames (the standard unsupervised video object segmentation score;
     a frame where both are empty counts 1);
   * *best-track J*: for every track id, the mean over **all** frames of IoU(that id's mask, the
     object) (a frame without the id counts 0 when the object is there); the best id. It is high
     only when one id finds the object and keeps it over the clip;
   * *#ids cov.*: distinct track ids that cover at least 10 % of the object's pixels in at least one
     frame (1 = the object was tracked as one id); *#ids*: all track ids of the clip.

   Same-run baseline (the issue's "30-line baseline"): DIS flow (medium) to the next frame (the last
   frame: to the previous one), a RANSAC homography (1 px) fitted to the flow correspondences on an
   8 px grid, the magnitude of the residual flow thresholded by Otsu's method (the residual scaled
   to 0..255 at its 99.5th percentile), and the largest 8-connected blob of that as the
   object. Its union J is printed beside ours.

2. **Synthetic world** (:class:`~vcups_core.data.synthetic.SyntheticWorld` clips with ego-motion,
   moving and parked objects and occlusions; ``--seeds``, ``--frames``, ``--size``). Class-agnostic
   quality of the pseudo-instances against the world's ground-truth track ids, for three cue
   variants: (a) oracle flow + depth + motion, (b) the default (estimated) cues, (c) the default
   cues without depth (``depth.method: none``). The cue pipeline and the labeler run in-process
   (:func:`~vcups_core.cues.build.build_cue_pipeline` +
   :class:`~vcups_core.pseudo.instances.InstanceLabeler`, fed exactly as
   :func:`~vcups_core.pseudo.pipeline.label_clip` feeds them, at the world's size, with the
   world's intrinsics), which gives the same labels as ``run_pseudo_labels`` and lets the oracle
   cues see the world.

   * *AQ*: the official STQ association quality (:class:`vcups_core.metrics.STQuality`, pooled over
     clips) on class-agnostic labels: ground truth = one thing class on pixels with a GT track id,
     stuff elsewhere; prediction = the thing class with the pseudo track id where id != 0, stuff
     elsewhere. *AQ mov*: only tracks of moving objects (``SceneObject.moving``) are GT tracks, the
     parked/standing objects' pixels are crowd (ignored in GT and prediction); *AQ stat* the other
     way round; *AQ all*: every object.
   * *IoU matched*: per clip, GT tracks of moving objects and all pseudo tracks are matched one to
     one by the Hungarian algorithm on track-level IoU (pixels summed over the whole clip); the mean
     IoU over the pairs with IoU > 0, and how many moving GT tracks got such a pair (n/N).
   * *IDsw*: per GT track, over the frames where it is visible, the pseudo id with the highest IoU
     *covers* it if that IoU >= 0.5; an id switch is a change of the covering id between
     consecutive covered frames (uncovered frames are skipped). Summed over tracks and clips.

   Target: with oracle cues, AQ mov >= 0.9.

3. **Speed** on one synthetic 640x1280 clip (``--speed-frames`` frames, rendered beforehand): one
   DIS flow (the config's preset, a fresh estimator, the median over the frame pairs) is the unit,
   timed on the same frames in the same run. Then the whole weight-free path (cue pipeline +
   labeler, as ``label_clip`` drives them, without file I/O) with each stage timed by wrapping
   its function: flow (two per frame), validity, camera motion, depth, motion score, region
   growing (``detect_instances``), tracking. A 2-frame warm-up run comes first; then
   ``--speed-repeats`` rounds of [DIS unit, whole path], and the fastest of each is reported (the
   cores are shared; OpenCV's DIS uses every core, so the ratio moves with the other load).
   Target: whole path <= 4x one DIS flow per frame.

    .venv/bin/python benchmarks/pseudo_instances.py [--davis ROOT] [--config FILE]
        [--seeds 101 102 103] [--frames 30] [--size 256x512] [--speed-frames 6] [--speed-repeats 3]
        [--skip-davis] [--skip-synthetic] [--skip-speed] [--json OUT] [--work DIR]
        [--davis-split val]  (official DAVIS layout only)

``--config`` sets the pseudo-label config of every part (default: the schema defaults, i.e. the
weight-free default cues); each part overrides only the size (and the cue methods of the
synthetic variants). The exit code is 1 if a DAVIS clip failed. The whole default run takes
about 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import cv2
import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from vcups_core.config import config_to_dict, load_config, replace
from vcups_core.configs.pseudo_labels import PseudoLabelConfig
from vcups_core.cues.build import with_oracle_cues
from vcups_core.metrics import STQuality
from vcups_core.metrics.tables import text_table, verdict
from vcups_core.pseudo.region_growing import scaled_min_area
from vcups_core.types import IGNORE_LABEL, VideoFrame

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DAVIS = REPO.parent / "shared" / "data" / "davis2016"

UNION_J_TARGET = 0.75
BEST_TRACK_J_TARGET = 0.65
ORACLE_AQ_MOVING_TARGET = 0.9
SPEED_TARGET = 4.0
COVER_FRACTION = 0.10  # an id "covers" the DAVIS object if it holds >= 10 % of it in some frame
SWITCH_IOU = 0.5  # an id covers a GT track in a frame if their IoU is >= 0.5

BASELINE_GRID = 8
BASELINE_RANSAC_PX = 1.0
BASELINE_SCALE_PERCENTILE = 99.5  # the residual is scaled to 0..255 at this percentile for Otsu

Mask = npt.NDArray[np.bool_]
Labels = npt.NDArray[np.integer[Any]]
Clock = defaultdict[str, float]


# --------------------------------------------------------------------------------------------------
# Tables


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    print()
    print(title)
    print(text_table(header, rows))


# --------------------------------------------------------------------------------------------------
# Config


def load_base_config(path: str | None) -> PseudoLabelConfig:
    """``--config`` FILE, else the schema defaults (the weight-free default cues)."""
    return load_config(path, PseudoLabelConfig) if path else PseudoLabelConfig()


def with_changes(cfg: PseudoLabelConfig, **sections: dict[str, Any] | int) -> PseudoLabelConfig:
    """``cfg`` with top-level keys replaced and section keys merged (validated)."""
    merged = config_to_dict(cfg)
    changes: dict[str, Any] = {}
    for key, value in sections.items():
        changes[key] = {**merged[key], **value} if isinstance(value, dict) else value
    return replace(cfg, **changes)


def native_size(cfg: PseudoLabelConfig) -> PseudoLabelConfig:
    return with_changes(cfg, height=0, width=0)


# --------------------------------------------------------------------------------------------------
# DAVIS-2016


def iou(a: Mask, b: Mask) -> float:
    union = int(np.count_nonzero(a | b))
    return 1.0 if union == 0 else int(np.count_nonzero(a & b)) / union


def davis_scores(labels: Sequence[Labels], gts: Sequence[Mask]) -> dict[str, Any]:
    """Union J, best-track J, #ids covering and #ids of one clip (see the module docstring)."""
    n = len(gts)
    union_j = [iou(lab > 0, gt) for lab, gt in zip(labels, gts, strict=True)]
    j_sum: Counter[int] = Counter()  # per id: sum of IoU(id mask, object) over frames with the id
    on_empty: Counter[int] = Counter()  # per id: frames without the object that hold the id
    covering: set[int] = set()
    all_ids: set[int] = set()
    empty_frames = 0
    for lab, gt in zip(labels, gts, strict=True):
        ids, area = np.unique(lab[lab > 0], return_counts=True)
        inside, inter = np.unique(lab[gt & (lab > 0)], return_counts=True)
        gt_area = int(np.count_nonzero(gt))
        all_ids.update(ids.tolist())
        empty_frames += gt_area == 0
        inter_of = dict(zip(inside.tolist(), inter.tolist(), strict=True))
        for i, a in zip(ids.tolist(), area.tolist(), strict=True):
            tp = inter_of.get(i, 0)
            j_sum[i] += tp / (a + gt_area - tp)
            on_empty[i] += gt_area == 0
            if gt_area and tp >= COVER_FRACTION * gt_area:
                covering.add(i)
    # a frame without the id scores 0 if the object is there, 1 if both are absent
    best_id, best_j = 0, 0.0
    for i in sorted(all_ids):
        j = (j_sum[i] + empty_frames - on_empty[i]) / n
        if j > best_j:
            best_id, best_j = i, j
    return {
        "frames": n,
        "union_j": float(np.mean(union_j)) if n else 0.0,
        "best_track_j": best_j,
        "best_track_id": best_id,
        "ids_covering": len(covering),
        "ids": len(all_ids),
    }


def baseline_masks(images: Sequence[npt.NDArray[np.uint8]]) -> Iterator[Mask]:
    """The issue's 30-line baseline: DIS flow, RANSAC homography, Otsu on the residual, largest
    blob (one mask per frame)."""
    dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grays = [cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in images]
    h, w = grays[0].shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    g = BASELINE_GRID
    for t, gray in enumerate(grays):
        partner = grays[t + 1] if t + 1 < len(grays) else grays[t - 1]
        flow = dis.calc(gray, partner, None)  # type: ignore[call-overload]
        p0 = np.stack([xs[g // 2 :: g, g // 2 :: g], ys[g // 2 :: g, g // 2 :: g]], -1)
        p1 = p0 + flow[g // 2 :: g, g // 2 :: g]
        hom, _ = cv2.findHomography(
            p0.reshape(-1, 2), p1.reshape(-1, 2), cv2.RANSAC, BASELINE_RANSAC_PX
        )
        if hom is None:
            hom = np.eye(3)
        den = hom[2, 0] * xs + hom[2, 1] * ys + hom[2, 2]
        ego_x = (hom[0, 0] * xs + hom[0, 1] * ys + hom[0, 2]) / den - xs
        ego_y = (hom[1, 0] * xs + hom[1, 1] * ys + hom[1, 2]) / den - ys
        residual = np.hypot(flow[..., 0] - ego_x, flow[..., 1] - ego_y)
        scale = 255.0 / max(float(np.percentile(residual, BASELINE_SCALE_PERCENTILE)), 1e-6)
        scaled = np.clip(residual * scale, 0, 255).astype(np.uint8)
        _, moving = cv2.threshold(scaled, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        count, blobs, stats, _ = cv2.connectedComponentsWithStats(moving, connectivity=8)
        if count <= 1:
            yield np.zeros((h, w), bool)
            continue
        yield blobs == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def run_davis(root: Path, split: str | None, cfg: PseudoLabelConfig, work: Path) -> dict[str, Any]:
    """The real pipeline on every clip of ``root``, scored against the masks; plus the baseline."""
    from vcups_core.data.davis import read_davis
    from vcups_core.pseudo.pipeline import run_pseudo_labels
    from vcups_core.pseudo.sources import SourceSpec, read_image
    from vcups_core.pseudo.store import read_manifest, read_store

    cfg = native_size(cfg)
    store = work / "davis_store"
    t0 = time.perf_counter()
    rc = run_pseudo_labels(
        SourceSpec.from_dataset("davis", root, split), store, cfg, overwrite=True, progress=False
    )
    pipeline_seconds = time.perf_counter() - t0
    manifest = read_manifest(store)
    stored = {c.name: c for c in read_store(store, include_failed=True)}
    clips = []
    for clip in read_davis(root, split):
        entry = manifest["clips"].get(clip.name, {})
        frames = [f for f in clip.frames if f.load_label is not None]
        gts = [f.load_label().instance > 0 for f in frames]  # type: ignore[misc]
        images = [read_image(f.image_path) for f in clip.frames]
        t1 = time.perf_counter()
        base_all = list(baseline_masks(images))
        base_seconds = time.perf_counter() - t1
        annotated = {f.index for f in frames}
        base = [m for i, m in enumerate(base_all) if i in annotated]
        row: dict[str, Any] = {
            "clip": clip.name,
            "status": entry.get("status", "missing"),
            "error": entry.get("error"),
            "seconds_per_frame": entry.get("seconds", 0.0) / max(len(clip.frames), 1),
            "baseline_union_j": float(
                np.mean([iou(m, gt) for m, gt in zip(base, gts, strict=True)])
            ),
            "baseline_seconds_per_frame": base_seconds / max(len(images), 1),
        }
        sc = stored.get(clip.name)
        if sc is not None and row["status"] == "done":
            index_of = {stem: i for i, stem in enumerate(sc.stems)}
            labels = [sc.instance(index_of[f.image_path.stem]) for f in frames]
            row.update(davis_scores(labels, gts))
        else:
            row.update(frames=len(frames), union_j=0.0, best_track_j=0.0, ids_covering=0, ids=0)
        clips.append(row)
    mean = {
        key: float(np.mean([c[key] for c in clips])) if clips else 0.0
        for key in ("union_j", "best_track_j", "ids_covering", "baseline_union_j")
    }
    return {
        "root": str(root),
        "exit_code": rc,
        "config": config_to_dict(cfg),
        "backends": manifest.get("cue_backends", {}),
        "pipeline_seconds": pipeline_seconds,
        "clips": clips,
        "mean": mean,
        "targets": {"union_j": UNION_J_TARGET, "best_track_j": BEST_TRACK_J_TARGET},
        "pass": {
            "union_j": mean["union_j"] >= UNION_J_TARGET,
            "best_track_j": mean["best_track_j"] >= BEST_TRACK_J_TARGET,
        },
    }


def print_davis(result: dict[str, Any]) -> None:
    rows: list[list[Any]] = []
    for c in result["clips"]:
        status = "" if c["status"] == "done" else f" ({c['status']})"
        rows.append(
            [
                c["clip"] + status,
                c["frames"],
                c["union_j"],
                c["best_track_j"],
                c["ids_covering"],
                c["ids"],
                c["baseline_union_j"],
                f"{c['seconds_per_frame']:.2f}",
                "",
                "",
            ]
        )
    m, ok = result["mean"], result["pass"]
    rows.append(
        [
            "mean",
            "",
            m["union_j"],
            m["best_track_j"],
            f"{m['ids_covering']:.2f}",
            "",
            m["baseline_union_j"],
            "",
            f"J>={UNION_J_TARGET:.2f}, best>={BEST_TRACK_J_TARGET:.2f}",
            f"{verdict(ok['union_j'])} / {verdict(ok['best_track_j'])}",
        ]
    )
    backends = ", ".join(f"{k}={v}" for k, v in result["backends"].items())
    print_table(
        f"DAVIS-2016 ({result['root']}), native size, cues: {backends}; "
        f"baseline = DIS + RANSAC homography + Otsu on the residual + largest blob (same run)",
        [
            "clip",
            "frames",
            "union J",
            "best-track J",
            "#ids cov.",
            "#ids",
            "baseline J",
            "s/frame",
            "target",
            "verdict",
        ],
        rows,
    )
    for c in result["clips"]:
        if c.get("error"):
            print(f"  {c['clip']}: {c['status']}: {c['error']}")


# --------------------------------------------------------------------------------------------------
# Synthetic world


class TrackStats:
    """Track-level intersections, sizes and covering ids of one clip (class-agnostic)."""

    def __init__(self) -> None:
        self.gt_area: Counter[int] = Counter()
        self.pred_area: Counter[int] = Counter()
        self.inter: Counter[tuple[int, int]] = Counter()
        self.covering: dict[int, list[int]] = {}

    def add(self, gt: Labels, pred: Labels) -> None:
        g_ids, g_area = np.unique(gt[gt > 0], return_counts=True)
        p_ids, p_area = np.unique(pred[pred > 0], return_counts=True)
        both = (gt > 0) & (pred > 0)
        codes, counts = np.unique(
            gt[both].astype(np.int64) * 65536 + pred[both].astype(np.int64), return_counts=True
        )
        p_area_of = dict(zip(p_ids.tolist(), p_area.tolist(), strict=True))
        g_area_of = dict(zip(g_ids.tolist(), g_area.tolist(), strict=True))
        self.gt_area.update(g_area_of)
        self.pred_area.update(p_area_of)
        best: dict[int, tuple[float, int]] = {}
        for code, n in zip(codes.tolist(), counts.tolist(), strict=True):
            g, p = divmod(code, 65536)
            self.inter[g, p] += n
            frame_iou = n / (g_area_of[g] + p_area_of[p] - n)
            if frame_iou > best.get(g, (0.0, 0))[0]:
                best[g] = (frame_iou, p)
        for g in g_area_of:
            value, p = best.get(g, (0.0, 0))
            if value >= SWITCH_IOU:
                self.covering.setdefault(g, []).append(p)

    def id_switches(self, tracks: set[int]) -> int:
        return sum(
            sum(a != b for a, b in itertools.pairwise(ids))
            for g, ids in self.covering.items()
            if g in tracks
        )

    def matched_ious(self, tracks: set[int]) -> tuple[list[float], int]:
        """Hungarian on track-level IoU between the GT ``tracks`` present and all pseudo tracks:
        IoUs of the pairs with IoU > 0, and the number of GT tracks present."""
        rows = sorted(g for g in self.gt_area if g in tracks)
        cols = sorted(self.pred_area)
        if not rows or not cols:
            return [], len(rows)
        col_of = {p: j for j, p in enumerate(cols)}
        row_of = {g: i for i, g in enumerate(rows)}
        m = np.zeros((len(rows), len(cols)))
        for (g, p), n in self.inter.items():
            if g in row_of:
                m[row_of[g], col_of[p]] = n / (self.gt_area[g] + self.pred_area[p] - n)
        r, c = linear_sum_assignment(m, maximize=True)
        return [float(m[i, j]) for i, j in zip(r, c, strict=True) if m[i, j] > 0], len(rows)


def class_agnostic(gt: Labels, keep: npt.NDArray[np.bool_]) -> tuple[Labels, Labels]:
    """GT ``(semantic, instance)`` for AQ: thing class 1 on object pixels, stuff 0 elsewhere;
    objects not in ``keep`` (a lookup by track id) become crowd (instance 0)."""
    sem = (gt > 0).astype(np.uint8)
    inst = np.where(keep[gt], gt, 0).astype(np.int32)
    return sem, inst


def label_synthetic(
    world: Any, frames: Sequence[VideoFrame], cfg: PseudoLabelConfig, oracle: bool
) -> list[npt.NDArray[np.uint16]]:
    """Track maps of a synthetic clip (cue pipeline + labeler, driven as ``label_clip`` does)."""
    from vcups_core.cues.build import build_cue_pipeline
    from vcups_core.pseudo.instances import InstanceLabeler

    cues = build_cue_pipeline(cfg, oracle=world if oracle else None)
    labeler = InstanceLabeler(cfg)
    out: list[tuple[int, npt.NDArray[np.uint16]]] = []
    for frame_cues in cues.run(frames, world.intrinsics):
        out.extend(labeler.push(frame_cues))
    out.extend(labeler.finish())
    if [i for i, _ in out] != list(range(len(frames))):
        raise RuntimeError(f"the labeler returned frames {[i for i, _ in out]}")
    return [labels for _, labels in out]


SYNTHETIC_VARIANTS: tuple[tuple[str, str], ...] = (
    ("a", "oracle flow+depth+motion"),
    ("b", "default cues"),
    ("c", "default, no depth"),
)


def variant_config(cfg: PseudoLabelConfig, key: str) -> PseudoLabelConfig:
    cfg = native_size(cfg)
    if key == "a":
        return with_oracle_cues(cfg)
    if key == "c":
        return with_changes(cfg, depth={"method": "none"})
    return cfg


def run_synthetic(
    cfg: PseudoLabelConfig, seeds: Sequence[int], num_frames: int, size: tuple[int, int]
) -> dict[str, Any]:
    from vcups_core.data.synthetic import SyntheticWorld

    configs = {key: variant_config(cfg, key) for key, _ in SYNTHETIC_VARIANTS}
    subsets = ("all", "moving", "static", "moving_visible")
    stq = {
        (key, sub): STQuality(2, [1], IGNORE_LABEL)
        for key, _ in SYNTHETIC_VARIANTS
        for sub in subsets
    }
    matched: dict[str, list[float]] = {key: [] for key, _ in SYNTHETIC_VARIANTS}
    moving_tracks = 0
    static_tracks = 0
    switches: dict[str, Counter[str]] = {key: Counter() for key, _ in SYNTHETIC_VARIANTS}
    pseudo_tracks: Counter[str] = Counter()
    seconds: defaultdict[str, float] = defaultdict(float)
    for seed in seeds:
        world = SyntheticWorld(height=size[0], width=size[1], num_frames=num_frames, seed=seed)
        rendered = [world.render(i) for i in range(num_frames)]
        frames = [VideoFrame(r.rgb, r.stamp_ns, "synthetic", r.index) for r in rendered]
        gts = [r.instance for r in rendered]
        del rendered
        top = max([o.track_id for o in world.objects] + [int(g.max()) for g in gts])
        moving_ids = {o.track_id for o in world.objects if o.moving}
        keep = {
            "all": np.ones(top + 1, bool),
            "moving": np.isin(np.arange(top + 1), sorted(moving_ids)),
        }
        keep["static"] = ~keep["moving"]
        keep["static"][0] = False
        # Waymo-style size rule (method.md §6.4): GT tracks whose mean visible area is below the
        # pseudo-labels' own minimum instance size cannot be found by construction; as crowd.
        areas = np.zeros(top + 1)
        present_frames = np.zeros(top + 1)
        for gt in gts:
            counts = np.bincount(gt.ravel(), minlength=top + 1)[: top + 1]
            areas += counts
            present_frames += counts > 0
        mean_area = areas / np.maximum(present_frames, 1)
        min_px = scaled_min_area(cfg.region_growing.min_area, size[0], size[1])
        keep["moving_visible"] = keep["moving"] & (mean_area >= min_px)
        for key, _ in SYNTHETIC_VARIANTS:
            t0 = time.perf_counter()
            labels = label_synthetic(world, frames, configs[key], oracle=key == "a")
            seconds[key] += time.perf_counter() - t0
            stats = TrackStats()
            for gt, pred in zip(gts, labels, strict=True):
                pred_sem = (pred > 0).astype(np.uint8)
                pred_inst = pred.astype(np.int32)
                for sub in subsets:
                    gt_sem, gt_inst = class_agnostic(gt, keep[sub])
                    stq[key, sub].update(gt_sem, gt_inst, pred_sem, pred_inst, sequence_id=seed)
                stats.add(gt, pred)
            present = set(stats.gt_area)
            moving = present & moving_ids
            ious, _ = stats.matched_ious(moving)
            matched[key].extend(ious)
            switches[key]["moving"] += stats.id_switches(moving)
            switches[key]["static"] += stats.id_switches(present - moving_ids)
            pseudo_tracks[key] += len(stats.pred_area)
            if key == "a":
                moving_tracks += len(moving)
                static_tracks += len(present - moving_ids)
    variants = []
    for key, name in SYNTHETIC_VARIANTS:
        aq = {sub: stq[key, sub].result()["AQ"] for sub in subsets}
        row = {
            "variant": key,
            "name": name,
            "backends": {
                "flow": configs[key].flow.method,
                "depth": configs[key].depth.method,
                "motion": configs[key].motion.method,
            },
            "aq_all": aq["all"],
            "aq_moving": aq["moving"],
            "aq_moving_visible": aq["moving_visible"],
            "aq_static": aq["static"],
            "matched_iou_moving": float(np.mean(matched[key])) if matched[key] else 0.0,
            "matched_moving": len(matched[key]),
            "moving_tracks": moving_tracks,
            "id_switches_moving": switches[key]["moving"],
            "id_switches_static": switches[key]["static"],
            "pseudo_tracks": pseudo_tracks[key],
            "seconds_per_frame": seconds[key] / max(len(seeds) * num_frames, 1),
        }
        if key == "a":
            row["target_aq_moving"] = ORACLE_AQ_MOVING_TARGET
            row["pass"] = aq["moving_visible"] >= ORACLE_AQ_MOVING_TARGET
        variants.append(row)
    return {
        "seeds": list(seeds),
        "frames": num_frames,
        "size": list(size),
        "moving_tracks": moving_tracks,
        "static_tracks": static_tracks,
        "variants": variants,
    }


def print_synthetic(result: dict[str, Any]) -> None:
    rows = []
    for v in result["variants"]:
        target = f"AQ mov>=min >={ORACLE_AQ_MOVING_TARGET:.2f}" if "pass" in v else ""
        rows.append(
            [
                f"({v['variant']}) {v['name']}",
                v["aq_all"],
                v["aq_moving"],
                v["aq_moving_visible"],
                v["aq_static"],
                v["matched_iou_moving"],
                f"{v['matched_moving']}/{v['moving_tracks']}",
                v["id_switches_moving"],
                v["id_switches_static"],
                v["pseudo_tracks"],
                f"{v['seconds_per_frame']:.2f}",
                target,
                verdict(v["pass"]) if "pass" in v else "",
            ]
        )
    h, w = result["size"]
    print_table(
        f"Synthetic world, class-agnostic: seeds {result['seeds']}, {result['frames']} frames at "
        f"{h}x{w}; GT tracks: {result['moving_tracks']} moving, {result['static_tracks']} static",
        [
            "variant",
            "AQ all",
            "AQ mov",
            "AQ mov>=min",
            "AQ stat",
            "IoU matched",
            "n/N mov",
            "IDsw mov",
            "IDsw stat",
            "#pseudo",
            "s/frame",
            "target",
            "verdict",
        ],
        rows,
    )


# --------------------------------------------------------------------------------------------------
# Speed


class Timed:
    """A callable that adds its run time to ``clock[key]``; keeps the wrapped backend's name."""

    def __init__(self, fn: Callable[..., Any], clock: Clock, key: str) -> None:
        self.fn, self.clock, self.key = fn, clock, key
        self.name = getattr(fn, "name", key)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.clock[self.key] += time.perf_counter() - t0


class TimedTracker:
    """The labeler's tracker with ``push`` and ``finish`` timed."""

    def __init__(self, tracker: Any, clock: Clock) -> None:
        self.push = Timed(tracker.push, clock, "tracking")
        self.finish = Timed(tracker.finish, clock, "tracking")


def dis_unit(frames: Sequence[VideoFrame], preset: str) -> list[float]:
    """Seconds of one DIS flow (a fresh estimator, warmed up) for each consecutive pair."""
    from vcups_core.cues.flow import DISFlow

    dis = DISFlow(preset)
    dis(frames[0], frames[1])
    out = []
    for a, b in itertools.pairwise(frames):
        t0 = time.perf_counter()
        dis(a, b)
        out.append(time.perf_counter() - t0)
    return out


@contextlib.contextmanager
def timed_stages(clock: Clock) -> Iterator[None]:
    """Time validity, camera motion and region growing where the pipeline calls them."""
    import vcups_core.cues.geometry as geometry
    import vcups_core.pseudo.instances as instances
    from vcups_core.cues.validity import validity_mask

    with (
        mock.patch("vcups_core.cues.build.validity_mask", Timed(validity_mask, clock, "validity")),
        mock.patch.object(
            geometry,
            "estimate_camera_motion",
            Timed(geometry.estimate_camera_motion, clock, "camera motion"),
        ),
        mock.patch.object(
            instances,
            "detect_instances",
            Timed(instances.detect_instances, clock, "region growing"),
        ),
    ):
        yield


def timed_run(
    frames: Sequence[VideoFrame], intrinsics: npt.NDArray[np.float64], cfg: PseudoLabelConfig
) -> tuple[float, Clock]:
    """Whole path (cue pipeline + labeler) in seconds, and the seconds of each stage."""
    from vcups_core.cues.build import build_cue_pipeline
    from vcups_core.pseudo.instances import InstanceLabeler

    clock: Clock = defaultdict(float)
    cues = build_cue_pipeline(cfg)
    cues.flow = Timed(cues.flow, clock, "flow (2 per frame)")
    cues.depth = Timed(cues.depth, clock, "depth")
    cues.motion = Timed(cues.motion, clock, "motion score")
    labeler = InstanceLabeler(cfg)
    labeler.tracker = TimedTracker(labeler.tracker, clock)  # type: ignore[assignment]
    with timed_stages(clock):
        t0 = time.perf_counter()
        done = 0
        for frame_cues in cues.run(frames, intrinsics):
            done += len(labeler.push(frame_cues))
        done += len(labeler.finish())
        whole = time.perf_counter() - t0
    if done != len(frames):
        raise RuntimeError(f"the labeler returned {done} of {len(frames)} frames")
    return whole, clock


SPEED_STAGES = (
    "flow (2 per frame)",
    "validity",
    "camera motion",
    "depth",
    "motion score",
    "region growing",
    "tracking",
)
"""Stage names as printed; "region growing" is ``detect_instances`` (with any refinement)."""


def run_speed(
    cfg: PseudoLabelConfig, num_frames: int, size: tuple[int, int], repeats: int
) -> dict[str, Any]:
    """Best of ``repeats`` rounds of [DIS unit on every pair, the whole path] (the machine is
    shared: the fastest round is the least disturbed one)."""
    from vcups_core.data.synthetic import SyntheticWorld

    if num_frames < 2:
        raise SystemExit("--speed-frames: at least 2 frames are needed")
    cfg = native_size(cfg)
    world = SyntheticWorld(height=size[0], width=size[1], num_frames=num_frames, seed=0)
    frames = [
        VideoFrame(r.rgb, r.stamp_ns, "synthetic", r.index)
        for r in (world.render(i) for i in range(num_frames))
    ]
    preset = cfg.flow.dis_preset
    timed_run(frames[:2], world.intrinsics, cfg)  # warm-up (imports, first-call costs)
    unit_rounds: list[float] = []
    runs: list[tuple[float, Clock]] = []
    for _ in range(max(repeats, 1)):
        unit_rounds.append(statistics.median(dis_unit(frames, preset)))
        runs.append(timed_run(frames, world.intrinsics, cfg))
    unit = min(unit_rounds)
    whole, clock = min(runs, key=lambda run: run[0])
    n = len(frames)
    stages = {key: clock[key] / n for key in SPEED_STAGES}
    stages["other (pipeline glue)"] = max(whole / n - sum(stages.values()), 0.0)
    ratio = whole / n / unit
    return {
        "size": list(size),
        "frames": n,
        "backends": {
            "flow": cfg.flow.method,
            "depth": cfg.depth.method,
            "motion": cfg.motion.method,
        },
        "dis_preset": preset,
        "dis_seconds": unit,
        "repeats": len(runs),
        "dis_seconds_per_round": unit_rounds,
        "whole_seconds_per_frame_per_round": [run[0] / n for run in runs],
        "stage_seconds_per_frame": stages,
        "whole_seconds_per_frame": whole / n,
        "whole_ratio": ratio,
        "target_ratio": SPEED_TARGET,
        "pass": ratio <= SPEED_TARGET,
    }


def print_speed(result: dict[str, Any]) -> None:
    unit = result["dis_seconds"]
    rows: list[list[Any]] = [
        [f"unit: one DIS flow ({result['dis_preset']})", f"{unit * 1e3:.1f}", "1.00", "", ""]
    ]
    for key, value in result["stage_seconds_per_frame"].items():
        rows.append([key, f"{value * 1e3:.1f}", f"{value / unit:.2f}", "", ""])
    rows.append(
        [
            "whole path",
            f"{result['whole_seconds_per_frame'] * 1e3:.1f}",
            f"{result['whole_ratio']:.2f}",
            f"<= {SPEED_TARGET:.1f}x",
            verdict(result["pass"]),
        ]
    )
    h, w = result["size"]
    backends = ", ".join(f"{k}={v}" for k, v in result["backends"].items())
    print_table(
        f"Speed per frame at {h}x{w}, {result['frames']} frames ({backends}), best of "
        f"{result['repeats']} rounds, ratio to one DIS flow on the same frames",
        ["stage", "ms/frame", "x DIS", "target", "verdict"],
        rows,
    )


# --------------------------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 256x512, got {text!r}") from None
    if h < 8 or w < 8:
        raise argparse.ArgumentTypeError(f"size must be at least 8x8, got {text!r}")
    return h, w


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--davis", type=Path, default=DEFAULT_DAVIS, help="DAVIS-2016 root (flat or official)"
    )
    parser.add_argument("--davis-split", default=None, help="official layout only: train / val")
    parser.add_argument("--config", default=None, help="pseudo-label config YAML (default: schema)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103])
    parser.add_argument("--frames", type=int, default=30, help="frames per synthetic clip")
    parser.add_argument("--size", type=parse_size, default=(256, 512), help="synthetic HxW")
    parser.add_argument("--speed-frames", type=int, default=6)
    parser.add_argument("--speed-size", type=parse_size, default=(640, 1280))
    parser.add_argument("--speed-repeats", type=int, default=3, help="speed: best of N rounds")
    parser.add_argument("--skip-davis", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="write every number here")
    parser.add_argument(
        "--work", type=Path, default=None, help="keep the DAVIS store here (default: a temp dir)"
    )
    args = parser.parse_args(argv)

    cfg = load_base_config(args.config)
    out: dict[str, Any] = {"config_file": args.config, "config": config_to_dict(cfg)}
    failed = False
    with contextlib.ExitStack() as stack:
        if args.work is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pseudo_bench_")))
        else:
            work = args.work
            work.mkdir(parents=True, exist_ok=True)
        if not args.skip_davis:
            if not args.davis.exists():
                print(f"DAVIS: {args.davis} not found; skipped", file=sys.stderr)
            else:
                out["davis"] = run_davis(args.davis, args.davis_split, cfg, work)
                print_davis(out["davis"])
                failed |= out["davis"]["exit_code"] != 0
        if not args.skip_synthetic:
            out["synthetic"] = run_synthetic(cfg, args.seeds, args.frames, args.size)
            print_synthetic(out["synthetic"])
        if not args.skip_speed:
            out["speed"] = run_speed(cfg, args.speed_frames, args.speed_size, args.speed_repeats)
            print_speed(out["speed"])
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=float) + "\n")
        print(f"\nwrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
