"""`vcups pseudo-labels --oracle-labels`: a synthetic bag's ground truth as the store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pseudo_fakes import write_clips

from training.cli import main
from vcups_core.data.oracle import THING_CLASSES
from vcups_core.data.rosbag import GT_TOPICS, BagWriter, write_synthetic_bag
from vcups_core.data.synthetic import SyntheticWorld
from vcups_core.pseudo.store import read_manifest, read_store

TOPIC = "/camera/image_raw"


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "pl.yaml"
    path.write_text("height: 16\nwidth: 32\n")
    return path


def synthetic_bag(path: Path, *, ground_truth: bool = True) -> Path:
    world = SyntheticWorld(height=32, width=64, num_frames=3, seed=1)
    return write_synthetic_bag(world, path, ground_truth=ground_truth)


def test_oracle_labels_of_bags(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bags = [synthetic_bag(tmp_path / "a"), synthetic_bag(tmp_path / "b")]
    out = tmp_path / "store"
    argv = ["pseudo-labels", "--bag", *map(str, bags), "--topic", TOPIC, "--out", str(out)]
    assert main([*argv, "--config", str(config), "--oracle-labels"]) == 0
    assert "2 clips done, 0 failed, 6 frames labelled" in capsys.readouterr().out
    manifest = read_manifest(out)
    assert manifest["labels"] == "oracle-ground-truth"
    assert (manifest["height"], manifest["width"]) == (16, 32)  # the config's label size
    clips = read_store(out)
    assert [c.name for c in clips] == ["a", "b"]
    assert clips[0].thing_classes == THING_CLASSES
    assert clips[0].targets(0).has_instances
    # the same run again: nothing to do, same answer
    assert main([*argv, "--config", str(config), "--oracle-labels"]) == 0
    assert "2 clips done" in capsys.readouterr().out
    # real pseudo-labels into the oracle store: another config
    assert main([*argv, "--config", str(config)]) == 2
    assert "another config" in one_line_error(capsys)


def test_oracle_labels_shard(tmp_path: Path, config: Path) -> None:
    bags = [synthetic_bag(tmp_path / "a"), synthetic_bag(tmp_path / "b")]
    out = tmp_path / "store"
    argv = ["pseudo-labels", "--bag", *map(str, bags), "--topic", TOPIC, "--out", str(out)]
    assert main([*argv, "--config", str(config), "--oracle-labels", "--shard", "1/2"]) == 0
    summary = read_manifest(out)["summary"]
    assert (summary["done"], summary["pending"]) == (1, ["a"])


def test_oracle_labels_need_ground_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bag = synthetic_bag(tmp_path / "plain", ground_truth=False)
    out = tmp_path / "store"
    argv = ["pseudo-labels", "--bag", str(bag), "--topic", TOPIC, "--out", str(out)]
    assert main([*argv, "--oracle-labels"]) == 2
    line = one_line_error(capsys)
    assert f"{bag}: no ground-truth topic '/gt/instance'" in line
    assert not out.exists()


def test_oracle_labels_need_bags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dirs = write_clips(tmp_path / "in", clips=1)
    out = tmp_path / "store"
    argv = ["pseudo-labels", "--frames", str(dirs[0]), "--out", str(out), "--oracle-labels"]
    assert main(argv) == 2
    assert "--oracle-labels needs --bag" in one_line_error(capsys)
    assert not out.exists()


def test_a_failed_clip_exits_1(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = SyntheticWorld(height=32, width=64, num_frames=2, seed=1)
    broken = tmp_path / "broken"
    with BagWriter(broken) as writer:
        for frame in world.frames():
            stamp = frame.stamp_ns
            instance = frame.instance.astype(np.uint16)
            writer.write_rgb(TOPIC, frame.rgb, stamp, "camera")
            writer.write_array(GT_TOPICS["semantic"], frame.semantic, "mono8", stamp, "camera")
            # instance ground truth stamped 1 ns off: no frame has any
            writer.write_array(GT_TOPICS["instance"], instance, "16UC1", stamp + 1, "camera")
    good = synthetic_bag(tmp_path / "good")
    out = tmp_path / "store"
    argv = ["pseudo-labels", "--bag", str(broken), str(good), "--topic", TOPIC, "--out", str(out)]
    assert main([*argv, "--config", str(config), "--oracle-labels"]) == 1
    captured = capsys.readouterr()
    assert "1 clips done, 1 failed" in captured.out
    assert "some clips failed" in captured.err
    assert "/gt/instance has no message stamped" in read_manifest(out)["clips"]["broken"]["error"]
