"""Frame extraction from bags: PNG per stamp, index, resumable, atomic."""

from __future__ import annotations

import csv
import json
import signal
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


def test_a_folder_of_another_source_is_refused(bag: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    extract_frames(bag, CAM, out, progress=False)
    source = json.loads((out / "source.json").read_text())
    assert source == {
        "bag": str(bag.resolve()),
        "topic": CAM,
        "start_ns": None,
        "stop_ns": None,
        "stride": 1,
    }
    other = tmp_path / "other"
    with BagWriter(other, "mcap") as writer:
        writer.write_rgb(CAM, frame_image(0), STAMPS[0], "cam")
        writer.write_rgb("/cam2", frame_image(1), STAMPS[0], "cam")
    with pytest.raises(ValueError, match=rf"{out}: holds frames of another source \(bag '"):
        extract_frames(other, CAM, out, progress=False)
    with pytest.raises(ValueError, match=r"stride 1 \(asked: 2\)"):
        extract_frames(bag, CAM, out, stride=2, progress=False)
    with pytest.raises(ValueError, match=rf"stop_ns None \(asked: {STAMPS[5]}\)"):
        extract_frames(bag, CAM, out, stop_ns=STAMPS[5], progress=False)
    assert len(read_index(out)) == 9 and {r["bag"] for r in read_index(out)} == {str(bag)}
    # a folder from before source.json: judged by its extraction.json
    (out / "source.json").unlink()
    with pytest.raises(ValueError, match="topic '/camera/image_raw' \\(asked: '/cam2'\\)"):
        extract_frames(other, "/cam2", out, progress=False)
    assert extract_frames(bag, CAM, out, progress=False).skipped == 9
    assert (out / "source.json").exists()
    # frames and no record at all: refused, not relabelled
    (out / "source.json").unlink()
    (out / "extraction.json").unlink()
    with pytest.raises(ValueError, match="holds frames of an unknown source"):
        extract_frames(bag, CAM, out, progress=False)


def test_empty_or_cut_pngs_are_written_again(bag: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    extract_frames(bag, CAM, out, progress=False)
    pngs = sorted((out / "frames").glob("*.png"))
    pngs[1].write_bytes(b"")
    data = pngs[4].read_bytes()
    pngs[4].write_bytes(data[: len(data) - 20])  # cut before IEND
    result = extract_frames(bag, CAM, out, progress=False)
    assert (result.written, result.skipped) == (2, 7)
    for png, i in zip(pngs, [0, 1, 2, 3, 4, 5, 7, 8, 9], strict=True):
        assert np.array_equal(cv2.imread(str(png))[:, :, ::-1], frame_image(i))


def test_a_second_run_on_the_same_folder_fails_at_once(bag: Path, tmp_path: Path) -> None:
    from vcups_core.jobs import OutputPathError, hold_folder

    out = tmp_path / "out"
    with (
        hold_folder(out, "vcups extract"),
        pytest.raises(OutputPathError, match=rf"{out}: another vcups extract is writing"),
    ):
        extract_frames(bag, CAM, out, progress=False)
    assert extract_frames(bag, CAM, out, progress=False).total == 9  # the lock is released


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_extract_then_the_same_command_gives_the_uninterrupted_result(
    bag: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    """A real process stopped before its 4th PNG and killed; the same command finishes the job."""
    from kill_utils import Stalled

    from training.cli import main

    ref = tmp_path / "ref"
    extract_frames(bag, CAM, ref, progress=False)
    out = tmp_path / "out"
    argv = ["extract", str(bag), "--topic", CAM, "--out", str(out), "--quiet"]
    code, err = Stalled(tmp_path, "vcups_core.data.extract", "_atomic_write_bytes", 4, argv).kill(
        sig
    )
    assert len(list((out / "frames").glob("*.png"))) == 3
    if sig == signal.SIGTERM:
        assert code == 130 and "Traceback" not in err
        assert len(read_index(out)) == 3  # the index lists what is on disk
    else:
        assert code == -signal.SIGKILL
        # what a kill inside a PNG write leaves: a hidden temporary, removed by the next run
        (out / "frames" / f".{STAMPS[3]:019d}.png.99999.abcd1234.tmp").write_bytes(b"half")
    assert main(argv) == 0
    assert not [p for p in out.rglob(".*")]  # no temporary left
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert names == sorted(p.relative_to(ref).as_posix() for p in ref.rglob("*"))
    for name in names:
        if name.startswith("frames/") and name.endswith(".png"):
            assert (out / name).read_bytes() == (ref / name).read_bytes()
    assert (out / "index.csv").read_text() == (ref / "index.csv").read_text()
    summary = json.loads((out / "extraction.json").read_text())
    assert (summary.pop("written"), summary.pop("skipped")) == (6, 3)
    expected = json.loads((ref / "extraction.json").read_text())
    del expected["written"], expected["skipped"]
    assert summary == expected
