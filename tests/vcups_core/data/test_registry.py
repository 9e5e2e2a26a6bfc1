"""The dataset registry: one reader per descriptor, clear errors for unknown names and layouts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from vcups_core.data.datasets import DESCRIPTORS
from vcups_core.data.registry import READERS, open_dataset


def test_every_descriptor_has_a_reader() -> None:
    assert set(READERS) == set(DESCRIPTORS)


def test_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'coco'.*cityscapes-vps.*kitti-step"):
        open_dataset("coco", tmp_path)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cityscapes-vps", "panoptic_gt_val_city_vps.json"),
        ("kitti-step", "images/val"),
        ("waymo", "validation"),
        ("mots", "train/images"),
        ("davis", "JPEGImages/480p"),
    ],
)
def test_missing_layout_is_reported_at_once(tmp_path: Path, name: str, expected: str) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / expected))):
        open_dataset(name, tmp_path)  # no next(): the error must not wait for the first clip


def test_split_is_passed_on(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "images" / "train"))):
        open_dataset("kitti-step", tmp_path, "train")
    (tmp_path / "training").mkdir()
    assert list(open_dataset("waymo", tmp_path, "training")) == []


@pytest.mark.skipif(
    not (SHARED_DATA / "davis2016").is_dir(),
    reason="shared/data/davis2016 is absent: the real DAVIS clips live beside the checkout, not in it",
)
def test_open_davis() -> None:
    names = [c.name for c in open_dataset("davis", SHARED_DATA / "davis2016")]
    assert names == ["car-roundabout", "car-shadow", "drift-straight", "scooter-black"]
