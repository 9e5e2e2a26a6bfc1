"""The MOTS txt and Waymo writers and :func:`write_predictions`: what is written reads back equal
through the dataset's reader, with the ground truth's frame numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vcups_core.data import cityscapes_classes as cs
from vcups_core.data.clip import LabeledClip, PanopticLabel
from vcups_core.data.kitti_step import write_kitti_step
from vcups_core.data.mots import read_mots, write_mots
from vcups_core.data.predictions import write_predictions
from vcups_core.data.registry import open_dataset
from vcups_core.data.synthetic import SyntheticWorld
from vcups_core.data.waymo import TRAIN_ID_TO_WAYMO, WAYMO_TO_TRAIN_ID, read_waymo, write_waymo

H, W = 6, 8
VOID = 255


def image(value: int = 0) -> np.ndarray:
    return np.full((H, W, 3), value, np.uint8)


def mots_label() -> PanopticLabel:
    """Background, persons 3 and 1000 (written as id 2000), a void strip, and a person pixel
    without an instance (written into the ignore region)."""
    sem = np.zeros((H, W), np.uint8)
    inst = np.zeros((H, W), np.int32)
    sem[:3, :2], inst[:3, :2] = 1, 3
    sem[3:, 5:], inst[3:, 5:] = 1, 1000
    sem[0, 6:] = VOID
    sem[5, 0] = 1  # person, instance 0
    return PanopticLabel(sem, inst)


def test_mots_round_trip_with_frame_numbers(tmp_path: Path) -> None:
    label = mots_label()
    clip = LabeledClip("MOTS20-02", (image(1), image(2), image(3)), (label, None, label))
    write_mots([clip], tmp_path, "train", frame_numbers={"MOTS20-02": [1, 2, 3]})
    assert (tmp_path / "train" / "images" / "MOTS20-02" / "000001.png").is_file()
    lines = (tmp_path / "train" / "instances_txt" / "MOTS20-02.txt").read_text().splitlines()
    assert [line.split()[:5] for line in lines] == [
        ["1", "2000", "2", str(H), str(W)],
        ["1", "2003", "2", str(H), str(W)],
        ["1", "10000", "10", str(H), str(W)],
        ["3", "2000", "2", str(H), str(W)],
        ["3", "2003", "2", str(H), str(W)],
        ["3", "10000", "10", str(H), str(W)],
    ]
    (read,) = read_mots(tmp_path, "train")
    assert read.name == "MOTS20-02" and len(read) == 3
    np.testing.assert_array_equal(read.frames[0].image().image, image(1))
    first, empty, last = (f.label() for f in read.frames)
    assert first is not None and empty is not None and last is not None
    expected_sem = label.semantic.copy()
    expected_sem[5, 0] = VOID  # a person without an instance reads back as void
    for got in (first, last):
        np.testing.assert_array_equal(got.semantic, expected_sem)
        np.testing.assert_array_equal(got.instance, np.where(expected_sem == 1, label.instance, 0))
    assert not empty.semantic.any() and not empty.instance.any()  # unlabelled: background


def test_mots_writer_refuses_what_it_cannot_encode(tmp_path: Path) -> None:
    label = mots_label()
    bad_class = PanopticLabel(np.where(label.semantic == 1, 2, 0).astype(np.uint8), label.instance)
    with pytest.raises(ValueError, match="class 2 is not a MOTS class"):
        write_mots([LabeledClip("a", (image(),), (bad_class,))], tmp_path)
    big = PanopticLabel(label.semantic, np.where(label.instance == 3, 1001, label.instance))
    with pytest.raises(ValueError, match=r"person instance ids must be in \[1, 1000\]"):
        write_mots([LabeledClip("a", (image(),), (big,))], tmp_path)
    with pytest.raises(ValueError, match="expected 1 distinct numbers"):
        write_mots([LabeledClip("a", (image(),), (label,))], tmp_path, frame_numbers={"a": []})
    with pytest.raises(ValueError, match="usable as a folder"):
        write_mots([LabeledClip("a/b", (image(),), (label,))], tmp_path)


def synthetic_labels(seed: int = 3, frames: int = 3) -> LabeledClip:
    world = SyntheticWorld(height=24, width=48, num_frames=frames, seed=seed)
    shots = list(world.frames())
    return LabeledClip(
        "scene",
        tuple(f.rgb for f in shots),
        tuple(PanopticLabel(f.semantic, f.instance) for f in shots),
    )


def test_waymo_round_trip(tmp_path: Path) -> None:
    clip = synthetic_labels()
    rider = PanopticLabel(
        np.where(clip.labels[0].semantic == cs.PERSON, cs.RIDER, clip.labels[0].semantic).astype(
            np.uint8
        ),
        clip.labels[0].instance,
    )
    labels = (rider, None, clip.labels[2])
    write_waymo(
        [LabeledClip("scene", clip.images, labels)], tmp_path, frame_numbers={"scene": [0, 5, 10]}
    )
    (read,) = read_waymo(tmp_path)
    assert [f.image_path.name for f in read.frames] == [
        "0_image.png",
        "5_image.png",
        "10_image.png",
    ]
    assert [f.annotated for f in read.frames] == [True, False, True]
    np.testing.assert_array_equal(read.frames[1].image().image, clip.images[1])
    no_waymo_id = np.isin(clip.labels[2].semantic, [cs.WALL, cs.FENCE, cs.TERRAIN])
    assert no_waymo_id.any()  # the synthetic world has terrain: written as undefined 0 -> void
    for frame, original in ((read.frames[0], rider), (read.frames[2], clip.labels[2])):
        got = frame.label()
        assert got is not None
        expected = np.where(
            np.isin(original.semantic, [cs.WALL, cs.FENCE, cs.TERRAIN]), VOID, original.semantic
        )
        np.testing.assert_array_equal(got.semantic, expected)
        thing = np.isin(expected, sorted(cs.THING_IDS))
        np.testing.assert_array_equal(got.instance, np.where(thing, original.instance, 0))
    assert (got.instance > 0).any() and (rider.semantic == cs.RIDER).any()


def test_waymo_ids_and_refusals(tmp_path: Path) -> None:
    assert TRAIN_ID_TO_WAYMO[cs.ROAD] == 20 and TRAIN_ID_TO_WAYMO[cs.RIDER] == 10
    assert all(WAYMO_TO_TRAIN_ID[w] == t for t, w in TRAIN_ID_TO_WAYMO.items())
    sem = np.full((H, W), 19, np.uint8)
    with pytest.raises(ValueError, match="class id 19 is not a train id"):
        write_waymo(
            [LabeledClip("s", (image(),), (PanopticLabel(sem, np.zeros((H, W), np.int32)),))],
            tmp_path,
        )
    car = PanopticLabel(np.full((H, W), cs.CAR, np.uint8), np.full((H, W), 70000, np.int32))
    with pytest.raises(ValueError, match=r"instance ids must be in \[0, 65535\]"):
        write_waymo([LabeledClip("s", (image(),), (car,))], tmp_path)


def test_predictions_take_the_ground_truths_frame_layout(tmp_path: Path) -> None:
    """KITTI-STEP: labels for some frames only; the prediction folder has every frame (black
    placeholders), labels where given, and reads back equal."""
    clip = synthetic_labels(frames=4)
    write_kitti_step([LabeledClip("7", clip.images, clip.labels)], tmp_path / "gt")
    (gt,) = open_dataset("kitti-step", tmp_path / "gt")
    labels = {1: clip.labels[1], 3: clip.labels[3]}
    assert all(label is not None for label in labels.values())
    write_predictions("kitti-step", [(gt, labels)], tmp_path / "pred", "val")
    (pred,) = open_dataset("kitti-step", tmp_path / "pred")
    assert pred.name == "0007" and len(pred) == 4
    assert [f.index for f in pred.annotated] == [1, 3]
    assert not pred.frames[0].image().image.any()  # a placeholder
    for frame in pred.annotated:
        got, want = frame.label(), labels[frame.index]
        assert got is not None and want is not None
        np.testing.assert_array_equal(got.semantic, want.semantic)
        tracked = np.isin(want.semantic, [cs.PERSON, cs.CAR])
        np.testing.assert_array_equal(got.instance, np.where(tracked, want.instance, 0))
    with pytest.raises(ValueError, match=r"frame\(s\) \[9\] it does not have"):
        write_predictions("kitti-step", [(gt, {9: labels[1]})], tmp_path / "x", "val")
    with pytest.raises(ValueError, match="no prediction writer for dataset 'davis'"):
        write_predictions("davis", [], tmp_path / "x", "val")
