"""`vcups pseudo-labels`: inputs, shards from torchrun's environment, exit codes and one-line
errors (the cue pipeline and labeler are stand-ins, see tests/pseudo_fakes.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from pseudo_fakes import Factories, frame_image, truncate, write_clips, write_davis

from training.cli import main
from vcups_core.data.rosbag import BagWriter
from vcups_core.pseudo import pipeline
from vcups_core.pseudo.store import read_manifest

VCUPS = shutil.which("vcups", path=str(Path(sys.executable).parent))


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Factories:
    fakes = Factories()
    monkeypatch.setattr(pipeline, "default_cue_factory", fakes.cue_factory)
    monkeypatch.setattr(pipeline, "default_labeler_factory", fakes.labeler_factory)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    return fakes


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "pl.yaml"
    path.write_text("height: 0\nwidth: 0\n")
    return path


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_frames_folders(
    tmp_path: Path, fakes: Factories, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dirs = write_clips(tmp_path / "in")
    out = tmp_path / "store"
    args = ["pseudo-labels", "--frames", *map(str, dirs), "--out", str(out)]
    assert main([*args, "--config", str(config), "--no-progress"]) == 0
    assert "3 clips done, 0 failed, 9 frames labelled" in capsys.readouterr().out
    assert (out / "clip_2" / "instance" / "00002.png").is_file()
    assert fakes.frames_labelled == 9


def test_dataset_with_a_damaged_frame_exits_1(
    tmp_path: Path, fakes: Factories, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_davis(tmp_path / "davis")
    truncate(root / "seq2" / "images" / "00000.jpg")
    out = tmp_path / "store"
    argv = ["pseudo-labels", "--dataset", f"davis:{root}", "--out", str(out)]
    assert main([*argv, "--config", str(config), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "2 clips done, 1 failed" in captured.out
    assert "some clips failed" in captured.err
    assert read_manifest(out)["clips"]["seq2"]["status"] == "failed"


def test_the_shard_comes_from_torchrun(
    tmp_path: Path, fakes: Factories, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dirs = write_clips(tmp_path / "in")
    out = tmp_path / "store"
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    argv = ["pseudo-labels", "--frames", *map(str, dirs), "--out", str(out)]
    assert main([*argv, "--config", str(config), "--no-progress"]) == 0
    assert list(read_manifest(out)["clips"]) == ["clip_1"]
    assert main([*argv, "--config", str(config), "--shard", "0/2", "--no-progress"]) == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--shard", "2/2"], "--shard '2/2': expected I/N"),
        (["--shard", "x"], "--shard 'x': expected I/N"),
        (["--topic", "/cam"], "--topic only applies to --bag"),
    ],
)
def test_usage_errors_are_one_line(
    tmp_path: Path,
    fakes: Factories,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    dirs = write_clips(tmp_path / "in", clips=1)
    argv = ["pseudo-labels", "--frames", str(dirs[0]), "--out", str(tmp_path / "s"), *extra]
    assert main(argv) == 2
    assert message in one_line_error(capsys)
    assert fakes.labelers == []


def test_store_and_config_errors_are_one_line(
    tmp_path: Path, fakes: Factories, capsys: pytest.CaptureFixture[str]
) -> None:
    dirs = write_clips(tmp_path / "in", clips=1)
    (tmp_path / "file").write_text("")
    base = ["pseudo-labels", "--frames", str(dirs[0])]
    assert main([*base, "--out", str(tmp_path / "file" / "store")]) == 2
    assert "cannot create or write the store" in one_line_error(capsys)
    bad = tmp_path / "bad.yaml"
    bad.write_text("height: -3\ntracking:\n  window: 9\n")
    assert main([*base, "--out", str(tmp_path / "s"), "--config", str(bad)]) == 2
    line = one_line_error(capsys)
    assert "height = -3: out of range" in line and "tracking.window = 9" in line
    assert main([*base, "--out", str(tmp_path / "s"), "--no-progress"]) == 0
    capsys.readouterr()
    good = tmp_path / "other.yaml"
    good.write_text("tracking:\n  iou_threshold: 0.9\n")
    assert main([*base, "--out", str(tmp_path / "s"), "--config", str(good)]) == 2
    assert "another config" in one_line_error(capsys)
    missing = ["pseudo-labels", "--frames", str(tmp_path / "no"), "--out", str(tmp_path / "t")]
    assert main(missing) == 2
    assert "no such folder" in one_line_error(capsys)


def test_bag_topic_errors(
    tmp_path: Path, fakes: Factories, capsys: pytest.CaptureFixture[str]
) -> None:
    bag = tmp_path / "bag"
    with BagWriter(bag, "mcap") as writer:
        for i in range(2):
            writer.write_rgb("/cam/image_raw", frame_image(0, i), 10 + i, "cam")
    out = ["--out", str(tmp_path / "s")]
    assert main(["pseudo-labels", "--bag", str(bag), *out]) == 2
    assert "--bag needs --topic" in one_line_error(capsys)
    assert main(["pseudo-labels", "--bag", str(bag), "--topic", "/nope", *out]) == 2
    assert "no topic '/nope'; topics in the bag: /cam/image_raw" in one_line_error(capsys)


def test_missing_topic_from_the_console_script(tmp_path: Path) -> None:
    assert VCUPS, "the vcups console script is installed by `make setup`"
    bag = tmp_path / "bag"
    with BagWriter(bag, "mcap") as writer:
        writer.write_rgb("/cam/image_raw", frame_image(0, 0), 10, "cam")
    proc = subprocess.run(
        [VCUPS, "pseudo-labels", "--bag", str(bag), "--topic", "/x", "--out", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"vcups pseudo-labels: error: {bag}: no topic '/x'; topics in the bag: "
        "/cam/image_raw (sensor_msgs/msg/Image, 1)"
    ]
    assert not (tmp_path / "s").exists()  # nothing created for a run that cannot start
