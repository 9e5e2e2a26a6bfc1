"""DAVIS-2016: the real clips of shared/data (flat layout) and a tiny official-layout fixture."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATA

from vcups_core.data.davis import read_davis

DAVIS = SHARED_DATA / "davis2016"
FRAMES = {"car-roundabout": 75, "car-shadow": 40, "drift-straight": 50, "scooter-black": 43}


@pytest.mark.skipif(not DAVIS.is_dir(), reason=f"{DAVIS} is absent (real DAVIS-2016 clips)")
def test_real_clips() -> None:
    clips = list(read_davis(DAVIS))
    assert {c.name: len(c) for c in clips} == FRAMES
    for clip in clips:
        assert clip.dataset == "davis"
        assert all(f.annotated for f in clip.frames)
        assert [f.index for f in clip.frames] == list(range(len(clip)))
        assert clip.frames[1].stamp_ns == round(1e9 / 24)
        for frame in (clip.frames[0], clip.frames[-1]):
            image = frame.image().image
            assert image.shape == (480, 854, 3)
            label = frame.label()
            assert label is not None and label.shape == (480, 854)
            mask = cv2.imread(str(DAVIS / clip.name / "masks" / f"{frame.image_path.stem}.png"), 0)
            obj = mask > 127
            assert 0 < obj.sum() < obj.size
            np.testing.assert_array_equal(label.semantic, np.where(obj, 0, 255))
            np.testing.assert_array_equal(label.instance, obj.astype(np.int32))


def make_official(root: Path) -> None:
    """bear (train, 2 frames), blackswan (val, 3 frames; the last one without annotation)."""
    sets = root / "ImageSets" / "480p"
    sets.mkdir(parents=True)
    lines = {"train": [], "val": []}
    for seq, split, n in (("bear", "train", 2), ("blackswan", "val", 3)):
        images = root / "JPEGImages" / "480p" / seq
        masks = root / "Annotations" / "480p" / seq
        images.mkdir(parents=True)
        masks.mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(images / f"{i:05d}.jpg"), np.full((4, 6, 3), 100, np.uint8))
            if i < 2:
                mask = np.zeros((4, 6), np.uint8)
                mask[1:3, i : i + 2] = 255
                mask[0, 0] = 100  # <= 127: not the object
                cv2.imwrite(str(masks / f"{i:05d}.png"), mask)
            lines[split].append(
                f"/JPEGImages/480p/{seq}/{i:05d}.jpg /Annotations/480p/{seq}/{i:05d}.png"
            )
    for split, rows in lines.items():
        (sets / f"{split}.txt").write_text("\n".join(rows) + "\n")


def test_official_layout(tmp_path: Path) -> None:
    make_official(tmp_path)
    assert [c.name for c in read_davis(tmp_path)] == ["bear", "blackswan"]
    (clip,) = list(read_davis(tmp_path, "val"))
    assert clip.name == "blackswan"
    assert [f.annotated for f in clip.frames] == [True, True, False]
    assert [f.stamp_ns for f in clip.frames] == [0, round(1e9 / 24), round(2e9 / 24)]
    label = clip.frames[1].label()
    assert label is not None
    expected = np.full((4, 6), 255, np.uint8)
    expected[1:3, 1:3] = 0
    np.testing.assert_array_equal(label.semantic, expected)
    np.testing.assert_array_equal(label.instance, (expected == 0).astype(np.int32))
    assert [c.name for c in read_davis(tmp_path, "train")] == ["bear"]


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "JPEGImages" / "480p"))):
        read_davis(tmp_path)
    make_official(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"ImageSets/480p/test-dev\.txt"):
        read_davis(tmp_path, "test-dev")
    flat = tmp_path / "flat"
    (flat / "seq" / "images").mkdir(parents=True)
    with pytest.raises(ValueError, match="no splits"):
        read_davis(flat, "val")
