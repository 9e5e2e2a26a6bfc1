"""MOTS: txt (COCO RLE) and PNG annotations, class mapping, frame numbering, malformed lines."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from vcups_core.data.mots import read_mots

H, W = 4, 6


def box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((H, W), np.int64)
    mask[y0:y1, x0:x1] = 1
    return mask


PEDESTRIAN = box(0, 3, 0, 2)  # id 2005
CAR = box(0, 2, 3, 6)  # id 1003
IGNORE = box(3, 4, 2, 6)  # id 10000
PEDESTRIAN_0 = box(2, 3, 4, 6)  # id 2000: instance 0 -> 1000


def rle(mask: np.ndarray) -> str:
    counts = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"]
    return counts.decode()


def txt_lines(first: int) -> str:
    """Frame ``first``: no objects; frame ``first + 1``: pedestrian 2005 + car 1003;
    frame ``first + 2``: pedestrian 2005 + ignore region + pedestrian 2000."""
    lines = [
        (first + 1, 2005, 2, PEDESTRIAN),
        (first + 1, 1003, 1, CAR),
        (first + 2, 2005, 2, PEDESTRIAN),
        (first + 2, 10000, 10, IGNORE),
        (first + 2, 2000, 2, PEDESTRIAN_0),
    ]
    return "".join(f"{t} {i} {c} {H} {W} {rle(m)}\n" for t, i, c, m in lines)


def make(root: Path, *, image_first: int, txt_first: int, ext: str, seq: str = "0002") -> None:
    images = root / "train" / "images" / seq
    images.mkdir(parents=True)
    for n in range(image_first, image_first + 3):
        cv2.imwrite(str(images / f"{n:06d}{ext}"), np.full((H, W, 3), 10 * n, np.uint8))
    (root / "instances_txt").mkdir(exist_ok=True)
    (root / "instances_txt" / f"{seq}.txt").write_text(txt_lines(txt_first))


def check_labels(labels: list) -> None:
    empty, first, second = labels
    assert (empty.semantic == 0).all() and (empty.instance == 0).all()
    expected_sem = np.zeros((H, W), np.uint8)
    expected_sem[PEDESTRIAN == 1] = 1  # car pixels stay background 0
    np.testing.assert_array_equal(first.semantic, expected_sem)
    np.testing.assert_array_equal(first.instance, np.where(PEDESTRIAN == 1, 5, 0))
    expected_sem = np.zeros((H, W), np.uint8)
    expected_sem[IGNORE == 1] = 255
    expected_sem[PEDESTRIAN == 1] = 1
    expected_sem[PEDESTRIAN_0 == 1] = 1
    np.testing.assert_array_equal(second.semantic, expected_sem)
    expected_inst = np.where(PEDESTRIAN == 1, 5, 0) + np.where(PEDESTRIAN_0 == 1, 1000, 0)
    np.testing.assert_array_equal(second.instance, expected_inst)


@pytest.mark.parametrize(
    ("image_first", "txt_first", "ext"),
    [
        (1, 1, ".jpg"),  # MOTSChallenge: images and txt from 1
        (0, 0, ".png"),  # KITTI-MOTS: images and txt from 0
        (0, 1, ".png"),  # txt from 1 next to images from 0 (frame 3 has no image): shift -1
    ],
)
def test_txt(tmp_path: Path, image_first: int, txt_first: int, ext: str) -> None:
    make(tmp_path, image_first=image_first, txt_first=txt_first, ext=ext)
    (clip,) = list(read_mots(tmp_path))
    assert clip.name == "0002" and clip.dataset == "mots"
    assert [f.image_path.name for f in clip.frames] == [
        f"{n:06d}{ext}" for n in range(image_first, image_first + 3)
    ]
    assert [f.stamp_ns for f in clip.frames] == [
        round(n * 1e9 / 30) for n in range(image_first, image_first + 3)
    ]
    assert all(f.annotated for f in clip.frames)
    check_labels([f.label() for f in clip.frames])


def test_png(tmp_path: Path) -> None:
    make(tmp_path, image_first=0, txt_first=0, ext=".png")
    instances = tmp_path / "train" / "instances" / "0002"
    instances.mkdir(parents=True)
    frames = [
        np.zeros((H, W), np.int64),
        PEDESTRIAN * 2005 + CAR * 1003,
        PEDESTRIAN * 2005 + IGNORE * 10000 + PEDESTRIAN_0 * 2000,
    ]
    for n, ids in enumerate(frames):
        assert cv2.imwrite(str(instances / f"{n:06d}.png"), ids.astype(np.uint16))
    (clip,) = list(read_mots(tmp_path, source="png"))
    check_labels([f.label() for f in clip.frames])


def test_malformed_lines(tmp_path: Path) -> None:
    make(tmp_path, image_first=1, txt_first=1, ext=".jpg")
    path = tmp_path / "instances_txt" / "0002.txt"
    good = txt_lines(1).splitlines()
    path.write_text("\n".join([good[0], "2 2005 2 4 6"]) + "\n")
    with pytest.raises(ValueError, match=r"0002\.txt:2: expected 6 fields"):
        list(read_mots(tmp_path))
    path.write_text("\n".join([good[0], good[1], good[2].replace(" 2005 2 ", " 3005 3 ")]) + "\n")
    with pytest.raises(ValueError, match=r"0002\.txt:3: class_id expected"):
        list(read_mots(tmp_path))
    path.write_text(good[0].replace(" 2005 2 ", " 1005 2 ") + "\n")
    with pytest.raises(ValueError, match=r"0002\.txt:1: id 1005"):
        list(read_mots(tmp_path))
    path.write_text(good[0].replace("2 2005", "9 2005", 1) + "\n")
    with pytest.raises(ValueError, match=r"time_frame\(s\) \[9\] match no image"):
        list(read_mots(tmp_path))


def test_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "train" / "images"))):
        read_mots(tmp_path)
    (tmp_path / "train" / "images" / "0001").mkdir(parents=True)
    with pytest.raises(
        FileNotFoundError, match=re.escape(str(tmp_path / "instances_txt" / "0001.txt"))
    ):
        list(read_mots(tmp_path))
    with pytest.raises(
        FileNotFoundError, match=re.escape(str(tmp_path / "train" / "instances" / "0001"))
    ):
        list(read_mots(tmp_path, source="png"))


def test_png_unknown_object_id(tmp_path: Path) -> None:
    make(tmp_path, image_first=0, txt_first=0, ext=".png")
    instances = tmp_path / "train" / "instances" / "0002"
    instances.mkdir(parents=True)
    for n in range(3):
        cv2.imwrite(str(instances / f"{n:06d}.png"), (CAR * 3001).astype(np.uint16))
    (clip,) = list(read_mots(tmp_path, source="png"))
    with pytest.raises(ValueError, match=r"000001\.png: object id 3001"):
        clip.frames[1].label()
