"""The `vcups` command: help, config and dataset subcommands (the demo: test_demo.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from training.cli import build_parser, main

VCUPS = shutil.which("vcups", path=str(Path(sys.executable).parent))


def run_vcups(*args: str) -> subprocess.CompletedProcess[str]:
    assert VCUPS, "the vcups console script is installed by `make setup`"
    return subprocess.run(
        [VCUPS, *args], capture_output=True, text=True, timeout=300, check=False, cwd=REPO
    )


def test_help_lists_exactly_the_working_subcommands() -> None:
    proc = run_vcups("--help")
    assert proc.returncode == 0
    assert "Unsupervised video panoptic segmentation" in proc.stdout
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sub.choices is not None
    assert sorted(sub.choices) == [
        "config",
        "demo",
        "evaluate",
        "export",
        "extract",
        "pseudo-labels",
        "replay",
        "semantic-train",
        "synth",
        "train",
    ]
    for name in sub.choices:
        assert name in proc.stdout


def test_config_check_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("streaming:\n  tracker:\n    max_age: 4\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("streaming:\n  tracker:\n    max_age: -4\n")
    assert main(["config", "check", "node", str(good)]) == 0
    assert main(["config", "check", "node", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: 1 config problem" in err
    assert "streaming.tracker.max_age = -4: out of range" in err


def test_config_show_merges_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("backbone:\n  depth: 18\n")
    assert main(["config", "show", "model", "--file", str(path)]) == 0
    out = capsys.readouterr().out
    assert "  depth: 18  # ResNet depth" in out
    assert "num_thing_classes: 5" in out


def test_write_defaults_reproduces_config_dir(tmp_path: Path) -> None:
    assert main(["config", "write-defaults", str(tmp_path)]) == 0
    for path in tmp_path.rglob("*.yaml"):
        assert path.read_text() == (REPO / "config" / path.relative_to(tmp_path)).read_text()


def test_synth_then_extract_as_in_the_readme(tmp_path: Path) -> None:
    bag = tmp_path / "demo_bag"
    proc = run_vcups(
        "synth",
        "--out",
        str(bag),
        "--format",
        "mcap",
        "--frames",
        "6",
        "--height",
        "32",
        "--width",
        "48",
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    assert "/gt/semantic" in proc.stdout
    out = tmp_path / "frames"
    proc = run_vcups(
        "extract", str(bag), "--topic", "/camera/image_raw", "--out", str(out), "--quiet"
    )
    assert proc.returncode == 0, proc.stderr
    assert "6 frames" in proc.stdout and "6 written" in proc.stdout
    assert len(list((out / "frames").glob("*.png"))) == 6
    # a wrong topic is a clear error listing the topics, exit code 2
    proc = run_vcups("extract", str(bag), "--topic", "/image", "--out", str(out), "--quiet")
    assert proc.returncode == 2
    assert "no topic '/image'; topics in the bag: /camera/camera_info" in proc.stderr
    proc = run_vcups("synth", "--out", str(bag), "--quiet")
    assert proc.returncode == 2 and "already exists" in proc.stderr


@pytest.mark.parametrize(
    ("fmt", "frames", "annotated"), [("cityscapes-vps", 10, 2), ("kitti-step", 3, 3)]
)
def test_synth_writes_benchmark_formats_the_readers_accept(
    tmp_path: Path, fmt: str, frames: int, annotated: int
) -> None:
    from vcups_core.data.registry import open_dataset

    root = tmp_path / fmt
    assert (
        main(
            [
                "synth",
                "--out",
                str(root),
                "--format",
                fmt,
                "--frames",
                str(frames),
                "--height",
                "24",
                "--width",
                "40",
                "--quiet",
            ]
        )
        == 0
    )
    (clip,) = list(open_dataset(fmt, root))
    assert len(clip.annotated) == annotated
    label = clip.annotated[0].label()
    assert label is not None and label.shape == (24, 40)
    assert (
        main(
            [
                "synth",
                "--out",
                str(tmp_path / "bad"),
                "--format",
                "cityscapes-vps",
                "--frames",
                "7",
                "--quiet",
            ]
        )
        == 2
    )
