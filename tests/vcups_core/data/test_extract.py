"""Frame extraction from bags: PNG per stamp, index, resumable, atomic."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vcups_core.data import extract as extract_mod
from vcups_core.data.extract import extract_frames
from vcups_core.data.rosbag import BagWriter

CAM = "/camera/image_raw"
STAMPS = [5_000_000_000 + i * 100_000_000 for i in range(10)]


@pytest.fixture
def bag(tmp_path: Path) -> Path:
    path = tmp_path / "bag"
    with BagWriter(path, "mcap") as writer:
        for i, stamp in enumerate(STAMPS):
            if i == 6:
                continue  # one dropped frame
            writer.write_rgb(CAM, frame_image(i), stamp, "cam", "bgr8")
    return path


def frame_image(i: int) -> np.ndarray:
    img = np.zeros((6, 8, 3), np.uint8)
    img[..., 0] = i
    img[..., 2] = 255 - i
    return img


def read_index(out: Path) -> list[dict[str, str]]:
    with (out / "index.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_frames_named_by_stamp_with_index(bag: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = extract_frames(bag, CAM, out, progress=False)
    kept = [i for i in range(10) if i != 6]
    assert (result.total, result.written, result.skipped) == (9, 9, 0)
    rows = read_index(out)
    assert [int(r["stamp_ns"]) for r in rows] == [STAMPS[i] for i in kept]
    assert [int(r["frame_index"]) for r in rows] == list(range(9))
    for row, i in zip(rows, kept, strict=True):
        assert row["file"] == f"frames/{STAMPS[i]:019d}.png"
        assert row["topic"] == CAM and row["bag"] == str(bag)
        png = cv2.imread(str(out / row["file"]), cv2.IMREAD_COLOR)[:, :, ::-1]
        assert np.array_equal(png, frame_image(i))  # lossless, RGB order kept
    summary = json.loads((out / "extraction.json").read_text())
    assert summary["frames"] == 9
    assert summary["gaps"] == [{"after_ns": STAMPS[5], "before_ns": STAMPS[7], "missing": 1}]


def test_rerun_skips_finished_frames_and_restores_missing_ones(bag: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    extract_frames(bag, CAM, out, progress=False)
    first = sorted((out / "frames").iterdir())
    first[2].unlink()
    (out / "index.csv").unlink()
    result = extract_frames(bag, CAM, out, progress=False)
    assert (result.written, result.skipped) == (1, 8)
    assert len(read_index(out)) == 9
    assert not list(out.rglob("*.tmp"))


def test_an_interrupted_run_leaves_only_complete_files(
    bag: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    calls = {"n": 0}
    real = extract_mod._atomic_write_bytes

    def flaky(path: Path, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(extract_mod, "_atomic_write_bytes", flaky)
    with pytest.raises(KeyboardInterrupt):
        extract_frames(bag, CAM, out, progress=False)
    assert len(list((out / "frames").glob("*.png"))) == 3
    assert not list(out.rglob("*.tmp"))
    assert len(read_index(out)) == 3  # the index lists exactly what is on disk
    monkeypatch.setattr(extract_mod, "_atomic_write_bytes", real)
    result = extract_frames(bag, CAM, out, progress=False)
    assert (result.written, result.skipped, len(read_index(out))) == (6, 3, 9)


def test_range_and_stride(bag: Path, tmp_path: Path) -> None:
    result = extract_frames(
        bag, CAM, tmp_path / "o", start_ns=STAMPS[2], stop_ns=STAMPS[9], stride=2, progress=False
    )
    # frames 2,3,4,5,7,8 are in range (6 was dropped); every 2nd: 2, 4, 7
    assert [int(r["stamp_ns"]) for r in read_index(tmp_path / "o")] == [
        STAMPS[2],
        STAMPS[4],
        STAMPS[7],
    ]
    assert result.total == 3
