"""KITTI-STEP: a synthetic round trip, the R / G*256+B encoding by hand, and bad input."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from vcups_core.data import cityscapes_classes as cs
from vcups_core.data.clip import LabeledClip, PanopticLabel
from vcups_core.data.kitti_step import read_kitti_step, write_kitti_step
from vcups_core.data.synthetic import SyntheticWorld


@pytest.fixture(scope="module")
def source() -> LabeledClip:
    frames = list(SyntheticWorld(height=32, width=64, num_frames=10, seed=4).frames())
    return LabeledClip(
        "3",
        tuple(f.rgb for f in frames),
        tuple(PanopticLabel(f.semantic, f.instance) for f in frames),
    )


def test_round_trip(source: LabeledClip, tmp_path: Path) -> None:
    write_kitti_step([source, LabeledClip("12", source.images[:2], source.labels[:2])], tmp_path)
    assert (tmp_path / "images" / "val" / "0003" / "000009.png").is_file()
    assert (tmp_path / "panoptic_maps" / "val" / "0003" / "000000.png").is_file()
    clips = list(read_kitti_step(tmp_path, "val"))
    assert [c.name for c in clips] == ["0003", "0012"]
    assert [len(c) for c in clips] == [10, 2]
    clip = clips[0]
    assert clip.dataset == "kitti-step"
    assert [f.index for f in clip.annotated] == list(range(10))
    assert [f.stamp_ns for f in clip.frames] == [i * 100_000_000 for i in range(10)]
    pairs: set[tuple[int, int]] = set()
    for frame, image, original in zip(clip.frames, source.images, source.labels, strict=True):
        assert original is not None
        np.testing.assert_array_equal(frame.image().image, image)
        label = frame.label()
        assert label is not None
        np.testing.assert_array_equal(label.semantic, original.semantic)
        thing = np.isin(original.semantic, [cs.PERSON, cs.CAR])
        assert (label.instance[~thing] == 0).all()
        tracked = thing & (original.instance > 0)
        pairs |= set(
            zip(original.instance[tracked].tolist(), label.instance[tracked].tolist(), strict=True)
        )
    assert len(pairs) > 1
    assert len({p[0] for p in pairs}) == len(pairs) == len({p[1] for p in pairs})


def test_encoding_by_hand(tmp_path: Path) -> None:
    seq = tmp_path / "panoptic_maps" / "train" / "0000"
    seq.mkdir(parents=True)
    (tmp_path / "images" / "train" / "0000").mkdir(parents=True)
    cv2.imwrite(
        str(tmp_path / "images" / "train" / "0000" / "000000.png"), np.zeros((2, 3, 3), np.uint8)
    )
    rgb = np.array(
        [
            [(13, 1, 2), (11, 0, 5), (2, 0, 7)],  # car 258, person 5, building (id dropped)
            [(255, 0, 0), (13, 0, 0), (0, 0, 0)],  # void, crowd car, road
        ],
        np.uint8,
    )
    cv2.imwrite(str(seq / "000000.png"), rgb[:, :, ::-1])
    (clip,) = list(read_kitti_step(tmp_path, "train"))
    label = clip.frames[0].label()
    assert label is not None
    np.testing.assert_array_equal(
        label.semantic, [[cs.CAR, cs.PERSON, cs.BUILDING], [255, cs.CAR, cs.ROAD]]
    )
    np.testing.assert_array_equal(label.instance, [[258, 5, 0], [0, 0, 0]])


def test_writer_encoding_drops_other_instances(tmp_path: Path) -> None:
    semantic = np.array([[cs.CAR, cs.TRUCK, cs.PERSON], [255, cs.SKY, cs.CAR]], np.uint8)
    instance = np.array([[300, 3, 2], [4, 5, 0]], np.int32)
    image = np.zeros((2, 3, 3), np.uint8)
    write_kitti_step(
        [LabeledClip("5", (image, image), (PanopticLabel(semantic, instance), None))],
        tmp_path,
        "train",
    )
    rgb = cv2.imread(str(tmp_path / "panoptic_maps" / "train" / "0005" / "000000.png"))[:, :, ::-1]
    assert rgb[0, 0].tolist() == [cs.CAR, 1, 44]  # 300 = 1 * 256 + 44
    assert rgb[0, 1].tolist() == [cs.TRUCK, 0, 0]  # truck is not tracked in KITTI-STEP
    assert rgb[0, 2].tolist() == [cs.PERSON, 0, 2]
    assert rgb[1].tolist() == [[255, 0, 0], [cs.SKY, 0, 0], [cs.CAR, 0, 0]]
    (clip,) = list(read_kitti_step(tmp_path, "train"))
    assert [f.annotated for f in clip.frames] == [True, False]  # no map for the unlabeled frame


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "images" / "val"))):
        read_kitti_step(tmp_path)
    seq = tmp_path / "panoptic_maps" / "val" / "0001"
    seq.mkdir(parents=True)
    (tmp_path / "images" / "val" / "0001").mkdir(parents=True)
    cv2.imwrite(
        str(tmp_path / "images" / "val" / "0001" / "000000.png"), np.zeros((2, 3, 3), np.uint8)
    )
    cv2.imwrite(str(seq / "000000.png"), np.full((2, 3, 3), 40, np.uint8))
    (clip,) = list(read_kitti_step(tmp_path))
    with pytest.raises(ValueError, match=r"000000\.png.*value 40"):
        clip.frames[0].label()
    with pytest.raises(ValueError, match="sequence number"):
        write_kitti_step([LabeledClip("seq", (), ())], tmp_path)
    big = PanopticLabel(np.full((1, 1), cs.CAR, np.uint8), np.full((1, 1), 70000, np.int32))
    with pytest.raises(ValueError, match="70000"):
        write_kitti_step([LabeledClip("1", (np.zeros((1, 1, 3), np.uint8),), (big,))], tmp_path)
