"""vcups synth: the bag appears only when finished; a killed run is replaced by the same command."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import pytest
from kill_utils import Stalled

from training.cli import main
from vcups_core.data.rosbag import BagFrameReader, bag_status
from vcups_core.data.synthetic import SyntheticWorld

CAM = "/camera/image_raw"
SIZE = ["--height", "96", "--width", "192", "--frames", "12", "--seed", "3"]


def synth(out: Path, *extra: str) -> list[str]:
    return ["synth", "--out", str(out), "--quiet", *SIZE, *extra]


def files(bag: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(bag.iterdir())}


def test_sigkill_leaves_nothing_and_the_rerun_equals_an_uninterrupted_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """~330 kB a frame: rosbags has flushed two 1 MiB chunks when the process is killed in frame 8.
    The killed run's bag (only under its hidden temporary name) is readable up to the last
    complete chunk, with a warning that it is incomplete."""
    (tmp_path / "ref").mkdir()
    assert main(synth(tmp_path / "ref" / "clip")) == 0
    run = tmp_path / "run"
    run.mkdir()
    argv = synth(run / "clip")
    stalled = Stalled(tmp_path, "vcups_core.data.rosbag", "BagWriter.write_rgb", 8, argv)
    assert stalled.kill(signal.SIGKILL)[0] == -signal.SIGKILL
    (staging,) = run.iterdir()
    assert staging.name.startswith(".clip.") and staging.name.endswith(".tmp")
    crashed = staging / "clip"
    assert sorted(p.name for p in crashed.iterdir()) == ["clip.mcap"]  # no metadata.yaml

    reader = BagFrameReader(crashed, CAM)
    with caplog.at_level(logging.WARNING):
        got = list(reader)
    world = SyntheticWorld(height=96, width=192, num_frames=12, seed=3)
    assert 3 <= len(got) < 8
    for frame, expected in zip(got, world.frames(), strict=False):
        assert frame.stamp_ns == expected.stamp_ns and (frame.image == expected.rgb).all()
    assert reader.incomplete is not None and "cut short" in reader.incomplete
    assert "incomplete bag" in caplog.text

    assert main(argv) == 0  # the same command: leftovers removed, bag written from scratch
    assert [p.name for p in run.iterdir()] == ["clip"]
    assert files(run / "clip") == files(tmp_path / "ref" / "clip")  # byte for byte
    assert bag_status(run / "clip") == "complete"


def test_sigterm_leaves_nothing_at_all(tmp_path: Path) -> None:
    stalled = Stalled(
        tmp_path, "vcups_core.data.rosbag", "BagWriter.write_rgb", 3, synth(tmp_path / "b")
    )
    code, err = stalled.kill(signal.SIGTERM)
    assert code == 130 and "interrupted" in err and "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("ready.")] == []


def test_a_finished_bag_is_refused_and_an_unfinished_one_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "b"
    small = ["--height", "16", "--width", "24", "--frames", "2"]
    assert main(["synth", "--out", str(out), "--quiet", *small]) == 0
    assert main(["synth", "--out", str(out), "--quiet", *small]) == 2
    assert f"{out}: already exists; remove it or choose another path" in capsys.readouterr().err
    # what a killed writer of an older vcups left under the final name: replaced
    (out / "metadata.yaml").unlink()
    assert main(["synth", "--out", str(out), "--quiet", *small]) == 0
    assert bag_status(out) == "complete"
    # a folder that is not an unfinished bag is never removed
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["synth", "--out", str(other), "--quiet", *small]) == 2
    assert (other / "notes.txt").read_text() == "mine"


def test_a_new_dataset_folder_is_staged(tmp_path: Path) -> None:
    out = tmp_path / "kitti"
    args = ["synth", "--out", str(out), "--quiet", "--format", "kitti-step", "--frames", "2"]
    assert main([*args, "--height", "16", "--width", "24"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["kitti"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))[:2] == [
        "images/val/0001/000000.png",
        "images/val/0001/000001.png",
    ]
