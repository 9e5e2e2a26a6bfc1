"""Waymo (CUPS export): numeric frame order, raw id → train id mapping, instance zeroing."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from vcups_core.data import cityscapes_classes as cs
from vcups_core.data.waymo import WAYMO_TO_TRAIN_ID, read_waymo

RAW = np.array([[0, 2, 9], [20, 25, 29]], np.uint16)  # undefined, car, pedestrian, road, sky, ?
INSTANCE = np.array([[7, 3, 4], [5, 6, 8]], np.uint16)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    scene = tmp_path / "validation" / "scene_b"
    scene.mkdir(parents=True)
    for n in (0, 1, 10):
        cv2.imwrite(str(scene / f"{n}_image.png"), np.full((2, 3, 3), n, np.uint8))
        if n != 1:  # frame 1 has no label
            # frame 10 has id 329 where frame 0 has 29 (both void; 329 needs 16 bits)
            raw = np.where(RAW == 29, 329, RAW).astype(np.uint16) if n == 10 else RAW
            assert cv2.imwrite(str(scene / f"{n}_semantic.png"), raw)
            assert cv2.imwrite(str(scene / f"{n}_instance.png"), INSTANCE)
    assert cv2.imread(str(scene / "10_semantic.png"), cv2.IMREAD_UNCHANGED).max() == 329
    (tmp_path / "validation" / "scene_a").mkdir()
    return tmp_path


def test_frames_and_mapping(root: Path) -> None:
    clips = list(read_waymo(root))
    assert [c.name for c in clips] == ["scene_a", "scene_b"]
    assert len(clips[0]) == 0
    clip = clips[1]
    assert clip.dataset == "waymo"
    assert [f.image_path.name for f in clip.frames] == [
        "0_image.png",
        "1_image.png",
        "10_image.png",
    ]
    assert [f.index for f in clip.frames] == [0, 1, 2]
    assert [f.stamp_ns for f in clip.frames] == [0, 100_000_000, 1_000_000_000]
    assert [f.annotated for f in clip.frames] == [True, False, True]
    assert int(clip.frames[2].image().image[0, 0, 0]) == 10
    for frame in (clip.frames[0], clip.frames[2]):  # 29 and 329 are both void
        label = frame.label()
        assert label is not None
        np.testing.assert_array_equal(
            label.semantic, [[255, cs.CAR, cs.PERSON], [cs.ROAD, cs.SKY, 255]]
        )
        # instance kept on car and pedestrian only; zeroed on void, road and sky
        np.testing.assert_array_equal(label.instance, [[0, 3, 4], [0, 0, 0]])
        assert label.instance.dtype == np.int32


def test_mapping_table() -> None:
    assert WAYMO_TO_TRAIN_ID[10] == WAYMO_TO_TRAIN_ID[11] == cs.RIDER
    assert {WAYMO_TO_TRAIN_ID[i] for i in (20, 21, 22)} == {cs.ROAD}
    void = (0, 1, 8, 12, 13, 14, 16, 26, 27, 28)
    assert not set(void) & set(WAYMO_TO_TRAIN_ID)
    assert not {cs.WALL, cs.FENCE, cs.TERRAIN} & set(WAYMO_TO_TRAIN_ID.values())


def test_bad_input(root: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / "training"))):
        read_waymo(root, "training")
    (root / "validation" / "scene_b" / "10_instance.png").unlink()
    clip = list(read_waymo(root))[1]
    with pytest.raises(FileNotFoundError, match=r"10_instance\.png"):
        clip.frames[2].label()
