"""vcups replay: bag in, PanopticTrackArray bag out (read back by mcap_ros2), interruption safe."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from kill_utils import Stalled
from msg_utils import read_with_mcap_ros2, to_plain

from training.cli import main
from vcups_core.data.rosbag import bag_status, write_synthetic_bag
from vcups_core.data.synthetic import SyntheticWorld
from vcups_core.rosmsg import time_to_ns
from vcups_core.streaming.segmenter import StreamingSegmenter

GT = "/gt/semantic,/gt/instance"


def oracle_replay(bag: Path, *extra: str) -> list[str]:
    """``vcups replay`` arguments: the bag's camera topic, the oracle predictor, no progress bar."""
    return ["replay", str(bag), "--topic", "/camera/image_raw", "--oracle", "--quiet", *extra]


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    world = SyntheticWorld(height=48, width=96, num_frames=8, seed=4)
    path = write_synthetic_bag(world, tmp_path_factory.mktemp("replay") / "in")
    return path, [world.stamp_ns(i) for i in range(8)]


def tracks_of(out: Path) -> list[object]:
    return [
        m
        for topic, _, m in read_with_mcap_ros2(next(out.glob("*.mcap")))
        if topic == "/panoptic/tracks"
    ]


def test_one_output_per_frame_with_the_input_stamps(
    bag: tuple[Path, list[int]], tmp_path: Path
) -> None:
    path, stamps = bag
    out = tmp_path / "out"
    video = tmp_path / "overlay.mp4"
    args = ["--gt-topics", GT, "--out", str(out), "--video", str(video)]
    assert main(oracle_replay(path, *args, "--stuff-area-limit", "10")) == 0
    msgs = tracks_of(out)
    assert [time_to_ns(m.header.stamp) for m in msgs] == stamps
    assert all(m.header.frame_id == "camera" for m in msgs)
    things = [t for m in msgs for t in m.tracks if t.is_thing]
    assert things and all(t.track_id > 0 for t in things)
    assert video.stat().st_size > 0
    infos = [
        m
        for topic, _, m in read_with_mcap_ros2(next(out.glob("*.mcap")))
        if topic == "/panoptic/info"
    ]
    assert len(infos) == 1 and "car" in list(infos[0].category_names)


def test_interrupted_replay_leaves_a_valid_bag(
    bag: tuple[Path, list[int]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, stamps = bag
    real_step = StreamingSegmenter.step
    calls = {"n": 0}

    def step(self: StreamingSegmenter, *args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(StreamingSegmenter, "step", step)
    out = tmp_path / "out"
    code = main(
        oracle_replay(path, "--gt-topics", GT, "--out", str(out), "--stuff-area-limit", "10")
    )
    assert code == 130
    assert [time_to_ns(m.header.stamp) for m in tracks_of(out)] == stamps[:5]
    assert bag_status(out) == "interrupted"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary left
    # the same command again replaces the interrupted bag (not refused because it exists)
    monkeypatch.setattr(StreamingSegmenter, "step", real_step)
    args = oracle_replay(path, "--gt-topics", GT, "--out", str(out), "--stuff-area-limit", "10")
    assert main(args) == 0
    assert [time_to_ns(m.header.stamp) for m in tracks_of(out)] == stamps
    assert bag_status(out) == "complete"


def test_a_finished_bag_is_not_overwritten(
    bag: tuple[Path, list[int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = oracle_replay(bag[0], "--gt-topics", GT, "--out", str(out))
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    report = tmp_path / "r.json"
    assert main([*args, "--report", str(report)]) == 2
    assert f"{out}: already exists" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not report.exists()  # refused before any work
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # a folder where a file is expected is refused too, and left alone
    assert main(oracle_replay(bag[0], "--gt-topics", GT, "--report", str(out))) == 2
    assert f"--report {out}: is a folder" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def comparable(out: Path) -> list[Any]:
    """The bag's messages without the wall-clock fields (time taken, receive/publish time)."""
    msgs = []
    for topic, log_time, msg in read_with_mcap_ros2(next(out.glob("*.mcap"))):
        plain = to_plain(msg)
        for key in ("inference_ms", "receive_time", "publish_time"):
            plain.pop(key, None)
        msgs.append((topic, log_time, plain))
    return msgs


def comparable_report(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    data.pop("ms_per_frame")
    return data


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_replay_then_the_same_command_gives_the_uninterrupted_result(
    bag: tuple[Path, list[int]], tmp_path: Path, sig: signal.Signals
) -> None:
    """A real process stopped in frame 4 and killed: SIGKILL leaves nothing under the final names
    (only hidden temporaries); SIGTERM publishes valid outputs marked interrupted (3 frames). The
    same command run again replaces either and equals an uninterrupted run."""
    path, stamps = bag
    ref = tmp_path / "ref"
    ref.mkdir()
    extra = ["--gt-topics", GT, "--stuff-area-limit", "10"]

    def outputs(folder: Path) -> list[str]:
        return [
            *extra,
            *("--out", str(folder / "out"), "--video", str(folder / "o.mp4")),
            *("--report", str(folder / "r.json")),
        ]

    assert main(oracle_replay(path, *outputs(ref))) == 0
    run = tmp_path / "run"
    run.mkdir()
    argv = oracle_replay(path, *outputs(run))
    stalled = Stalled(
        tmp_path, "vcups_core.streaming.segmenter", "StreamingSegmenter.step", 4, argv
    )
    code, err = stalled.kill(sig)
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL
        assert [p.name for p in run.iterdir() if not p.name.startswith(".")] == []
        assert len(list(run.iterdir())) == 3  # one staging folder per output
    else:
        assert code == 130 and "Traceback" not in err
        assert sorted(p.name for p in run.iterdir()) == ["o.mp4", "out", "r.json"]
        assert bag_status(run / "out") == "interrupted"
        assert [time_to_ns(m.header.stamp) for m in tracks_of(run / "out")] == stamps[:3]
        report = json.loads((run / "r.json").read_text())
        assert report["interrupted"] is True and report["frames"] == 3
    assert main(argv) == 0
    assert sorted(p.name for p in run.iterdir()) == ["o.mp4", "out", "r.json"]
    assert bag_status(run / "out") == "complete"
    assert comparable(run / "out") == comparable(ref / "out")
    assert comparable_report(run / "r.json") == comparable_report(ref / "r.json")
    assert (run / "o.mp4").stat().st_size == (ref / "o.mp4").stat().st_size


def test_predictor_must_be_named(
    bag: tuple[Path, list[int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = bag
    assert main(["replay", str(path), "--topic", "/camera/image_raw", "--quiet"]) == 2
    assert "give --checkpoint" in capsys.readouterr().err
    assert main(oracle_replay(path)) == 2
    assert "--oracle needs ground truth" in capsys.readouterr().err


def test_report_scores_the_oracle_against_the_bag_ground_truth(
    bag: tuple[Path, list[int]], tmp_path: Path
) -> None:
    import json

    report = tmp_path / "report.json"
    args = ["--gt-topics", GT, "--report", str(report), "--stuff-area-limit", "0"]
    assert main(oracle_replay(bag[0], *args)) == 0
    data = json.loads(report.read_text())
    assert data["frames"] == 8 and data["tracks"] > 0
    # the oracle predicts the ground truth (stuff smoothed over 3 frames; objects under 4 px not
    # detected, which costs AQ at this tiny size), so the scores are high but not perfect
    assert data["metrics"]["AQ"] > 0.8
    # SQ as deeplab2 counts it: the oracle's void (undetected small objects) adds a void bin with
    # IoU 0 to the 10 classes' mean (0.81 with void as false negatives only, x 10/11 = 0.73)
    assert data["metrics"]["SQ"] > 0.7
    assert data["metrics"]["class_mapping"]["0"] == "car"


def test_report_scores_against_a_dataset_folder(
    bag: tuple[Path, list[int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bag's clip written as KITTI-STEP: its frames have other stamps, so they are paired by
    position; a wrong pairing would ruin the scores. A clip of another length is refused."""
    import json

    from training.synth import labeled_clip
    from vcups_core.data.kitti_step import write_kitti_step

    world = SyntheticWorld(height=48, width=96, num_frames=8, seed=4)  # the bag's world
    write_kitti_step([labeled_clip(world, every=1)], tmp_path / "kitti", split="val")
    report = tmp_path / "report.json"
    args = oracle_replay(bag[0], "--report", str(report), "--stuff-area-limit", "0")
    assert main([*args, "--gt-dataset", f"kitti-step:{tmp_path / 'kitti'}"]) == 0
    data = json.loads(report.read_text())
    assert data["ground_truth"] == f"kitti-step:{tmp_path / 'kitti'}"
    assert data["metrics"]["AQ"] > 0.8 and data["metrics"]["SQ"] > 0.7  # void bin, as above
    assert data["metrics"]["class_mapping"]["0"] == "car"

    short = SyntheticWorld(height=48, width=96, num_frames=5, seed=4)
    write_kitti_step([labeled_clip(short, every=1)], tmp_path / "short", split="val")
    assert main([*args, "--gt-dataset", f"kitti-step:{tmp_path / 'short'}"]) == 2
    assert "5 frames" in capsys.readouterr().err
    assert main([*args, "--gt-dataset", "kitti-step"]) == 2
    assert "expected NAME:ROOT" in capsys.readouterr().err
    assert main([*args, "--gt-dataset", f"kitti-step:{tmp_path / 'kitti'}", "--gt-topics", GT]) == 2
    assert "not both" in capsys.readouterr().err


def test_dataset_with_several_clips_needs_gt_clip(
    bag: tuple[Path, list[int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import dataclasses

    from training.synth import labeled_clip
    from vcups_core.data.kitti_step import write_kitti_step

    clip = labeled_clip(SyntheticWorld(height=48, width=96, num_frames=8, seed=4), every=1)
    write_kitti_step([clip, dataclasses.replace(clip, name="2")], tmp_path / "kitti", split="val")
    kitti = f"kitti-step:{tmp_path / 'kitti'}"
    args = oracle_replay(bag[0], "--report", str(tmp_path / "r.json"), "--gt-dataset", kitti)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "has 2 clips; choose one with --gt-clip" in err
    assert main([*args, "--gt-clip", "7"]) == 2
    assert "--gt-clip '7' is not in" in capsys.readouterr().err
    assert main([*args, "--gt-clip", "0002"]) == 0  # the writer pads sequence names


def test_dataset_ground_truth_pairs_by_position_and_skips_images_unless_asked(
    tmp_path: Path,
) -> None:
    from training.replay import dataset_ground_truth
    from training.synth import labeled_clip
    from vcups_core.data.kitti_step import write_kitti_step
    from vcups_core.data.registry import open_dataset

    write_kitti_step(
        [labeled_clip(SyntheticWorld(height=48, width=96, num_frames=3, seed=1), every=1)],
        tmp_path,
        split="val",
    )
    (clip,) = open_dataset("kitti-step", tmp_path)
    bag_stamps = [7, 8, 9]  # none of the clip's own stamps: paired by position
    gt = dataset_ground_truth(clip, bag_stamps, with_images=False)
    assert [g.stamp_ns for g in gt] == bag_stamps
    assert all(g.rgb.size == 0 for g in gt)
    assert dataset_ground_truth(clip, bag_stamps, with_images=True)[0].rgb.shape == (48, 96, 3)


def test_dataset_scores_match_classes_over_the_whole_set() -> None:
    """One clip alone would map category 1 to road (its only class); over the whole set the other
    clip's many sky pixels take category 1 and road goes to category 0 (Hungarian), so the
    replayed clip, all road predicted as category 1, scores SQ 0 instead of 1."""
    from types import SimpleNamespace

    import numpy as np

    from training.replay import GroundTruthFrame, evaluate_against
    from vcups_core.data import cityscapes_classes as cs
    from vcups_core.types import CategoryTable

    road = np.full((4, 4), cs.ROAD, np.uint8)
    gt = [GroundTruthFrame(np.zeros((4, 4, 3), np.uint8), road, np.zeros((4, 4), np.int32), 0, 7)]
    ones = np.ones((4, 4), np.int32)
    replayed = SimpleNamespace(
        stamp_ns=7, segment_ids=ones, semantic=ones, track_ids=np.zeros((4, 4), np.int32)
    )
    categories = CategoryTable.default(0, 2)

    def other_clips() -> Any:
        sky = np.zeros((8, 8), np.int32)
        sky[:, 4:] = cs.SKY
        pred = np.zeros((8, 8), np.int32)
        pred[:, 4:] = 1
        yield "other", sky, np.zeros((8, 8), np.int32), pred, np.zeros((8, 8), np.int32)

    alone = evaluate_against(gt, [replayed], categories, "cityscapes-vps")  # type: ignore[list-item]
    whole = evaluate_against(
        gt,
        [replayed],  # type: ignore[list-item]
        categories,
        "cityscapes-vps",
        other_clips=other_clips,
    )
    assert alone["class_mapping"]["1"] == "road" and alone["SQ"] == pytest.approx(1.0)
    assert whole["class_mapping"] == {"0": "road", "1": "sky"}
    assert whole["SQ"] == pytest.approx(0.0)


def test_replay_options_are_exactly_the_cli_arguments() -> None:
    """The typed options the demo builds and the CLI's arguments cannot drift apart."""
    import argparse
    import dataclasses

    from training.replay import ReplayOptions, add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    dests = {a.dest for a in parser._actions if a.dest != "help"}
    assert dests == {f.name for f in dataclasses.fields(ReplayOptions)}
    args = parser.parse_args(["b", "--topic", "/t", "--fps", "5", "--stuff-area-limit", "3"])
    assert ReplayOptions.from_args(args) == ReplayOptions(
        bag="b", topic="/t", fps=5.0, stuff_area_limit=3
    )
