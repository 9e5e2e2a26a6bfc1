"""vcups evaluate on synthetic clips written in KITTI-STEP and Cityscapes-VPS format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.cli import main
from vcups_core.data import cityscapes_classes as cs
from vcups_core.data.clip import LabeledClip, PanopticLabel
from vcups_core.data.kitti_step import write_kitti_step
from vcups_core.data.synthetic import SyntheticWorld

# pseudo-classes: person <-> car swapped, stuff ids rotated by 3 (a permutation within each block)
PERMUTE = np.arange(256, dtype=np.uint8)
PERMUTE[cs.PERSON], PERMUTE[cs.CAR] = cs.CAR, cs.PERSON
PERMUTE[:11] = (np.arange(11) + 3) % 11


def clips(permute: bool, track_offset: int = 0) -> list[LabeledClip]:
    world = SyntheticWorld(height=40, width=80, num_frames=5, seed=6)
    images, labels = [], []
    for f in world.frames():
        sem = PERMUTE[f.semantic] if permute else f.semantic
        inst = np.where(f.instance > 0, f.instance + track_offset, 0).astype(np.int32)
        images.append(f.rgb)
        labels.append(PanopticLabel(sem, inst))
    return [LabeledClip("3", tuple(images), tuple(labels))]


def test_pseudo_classes_are_matched_back_and_score_perfectly(tmp_path: Path) -> None:
    write_kitti_step(clips(permute=False), tmp_path / "gt")
    write_kitti_step(clips(permute=True, track_offset=40), tmp_path / "pred")
    out = tmp_path / "report" / "kitti.json"
    assert (
        main(
            [
                "evaluate",
                "--dataset",
                "kitti-step",
                "--gt",
                str(tmp_path / "gt"),
                "--pred",
                str(tmp_path / "pred"),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["frames"] == 5 and report["sequences"] == 1
    assert report["STQ"] == pytest.approx(1.0) and report["VPQ"] == pytest.approx(1.0)
    # the mapping undoes the permutation: pseudo-class 13 (was person) -> person
    assert report["class_mapping"][str(cs.CAR)] == "person"
    assert report["class_mapping"][str((cs.ROAD + 3) % 11)] == "road"
    assert all(Path(p).stat().st_size > 0 for p in report["plots"])


def test_without_matching_a_permutation_scores_low(tmp_path: Path) -> None:
    write_kitti_step(clips(permute=False), tmp_path / "gt")
    write_kitti_step(clips(permute=True), tmp_path / "pred")
    out = tmp_path / "r.json"
    assert (
        main(
            [
                "evaluate",
                "--dataset",
                "kitti-step",
                "--gt",
                str(tmp_path / "gt"),
                "--pred",
                str(tmp_path / "pred"),
                "--match",
                "none",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["SQ"] < 0.5


def test_missing_predictions_are_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_kitti_step(clips(permute=False), tmp_path / "gt")
    other = clips(permute=False)
    write_kitti_step([LabeledClip("4", other[0].images, other[0].labels)], tmp_path / "pred")
    code = main(
        [
            "evaluate",
            "--dataset",
            "kitti-step",
            "--gt",
            str(tmp_path / "gt"),
            "--pred",
            str(tmp_path / "pred"),
            "--out",
            str(tmp_path / "r.json"),
            "--quiet",
        ]
    )
    assert code == 2
    assert "no predictions for clip '0003'" in capsys.readouterr().err


def test_thing_stuff_of_predictions_comes_from_the_descriptor(tmp_path: Path) -> None:
    # Persons predicted as rider (12): KITTI-STEP keeps instance ids only on person and car, so
    # the written prediction has no instance on 12 and "has instance pixels" would call it stuff
    # (matched to a stuff class). The descriptor's Cityscapes split makes 12 a thing -> person.
    rider = np.arange(256, dtype=np.uint8)
    rider[cs.PERSON] = cs.RIDER
    gt, pred = clips(permute=False), clips(permute=False)
    relabelled = [PanopticLabel(rider[lab.semantic], lab.instance) for lab in pred[0].labels]
    write_kitti_step(gt, tmp_path / "gt")
    write_kitti_step([LabeledClip("3", pred[0].images, tuple(relabelled))], tmp_path / "pred")
    out = tmp_path / "r.json"
    args = ["evaluate", "--dataset", "kitti-step", "--gt", str(tmp_path / "gt")]
    assert main([*args, "--pred", str(tmp_path / "pred"), "--out", str(out), "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert report["class_mapping"][str(cs.RIDER)] == "person"
    assert report["SQ"] == pytest.approx(1.0)


def test_evaluation_config_file_is_read(tmp_path: Path) -> None:
    import argparse

    from training.evaluate import evaluation_config, run_evaluate

    write_kitti_step(clips(permute=False), tmp_path / "gt")
    write_kitti_step(clips(permute=False), tmp_path / "pred")
    cfg_file = tmp_path / "evaluation.yaml"
    cfg_file.write_text("pred_void: false_negative\nvpq_window_sizes: [1, 2]\nmatch: none\n")
    ns = argparse.Namespace(
        config=str(cfg_file),
        dataset="kitti-step",
        match=None,  # not given on the command line: the file's value stands
        gt=str(tmp_path / "gt"),
        pred=str(tmp_path / "pred"),
        split=None,
        out=str(tmp_path / "r.json"),
        quiet=True,
    )
    cfg = evaluation_config(ns)
    assert (cfg.dataset, cfg.match, cfg.pred_void) == ("kitti-step", "none", "false_negative")
    assert run_evaluate(ns) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["protocol"]["pred_void"] == "false_negative"
    assert list(report["VPQ_per_window"]) == ["1", "2"]
    assert "class_mapping" not in report  # match: none
