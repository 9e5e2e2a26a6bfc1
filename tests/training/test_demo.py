"""`vcups demo` in miniature: every step for real at tiny sizes, its cache, and SIGKILL safety."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import kill_utils
import pytest
from conftest import REPO

from training.demo import (
    SCORE_KEYS,
    Step,
    StepResult,
    StepRunner,
    options_from_args,
    record_from_bag,
    steps_of,
)
from vcups_core.jobs import is_complete_png

VCUPS = shutil.which("vcups", path=str(Path(sys.executable).parent))
MICRO_MODEL = """\
# config/model/tiny.yaml made smaller still, for the miniature demo of the tests
name: vcups_micro
min_size: 64
max_size: 128
backbone: {depth: 18, fpn_channels: 32}
rpn: {pre_nms_topk_train: 200, post_nms_topk_train: 100, pre_nms_topk_test: 100,
      post_nms_topk_test: 50, batch_size_per_image: 64}
cascade: {batch_size_per_image: 32, fc_dim: 64}
mask: {num_convs: 1}
semantic: {conv_dim: 16}
track: {embed_dim: 64}
"""
MINI = ["--frames", "6", "--size", "64x128", "--train-drives", "2", "--steps", "2"]
MINI += ["--node-frames", "2", "--quiet"]


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The miniature's options: tiny drives, 2 steps of an even smaller model."""
    path = tmp_path_factory.mktemp("model") / "micro.yaml"
    path.write_text(MICRO_MODEL)
    return [*MINI, "--model-config", str(path)]


STEPS = steps_of("synthetic")


def run_vcups(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    assert VCUPS, "the vcups console script is installed by `make setup`"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [VCUPS, *args], capture_output=True, text=True, timeout=300, check=False, cwd=REPO
    )
    return proc, time.perf_counter() - t0


def killed_at(tmp: Path, module: str, attr: str, n: int, argv: list[str]) -> int:
    """Run ``vcups ARGV`` until the ``n``-th call of ``module.attr`` (see kill_utils), SIGKILL it
    there; returns the exit code. A longer wait than kill_utils.Stalled's: a demo is slow."""
    ready = tmp / f"ready.{time.monotonic_ns()}"
    cmd = [sys.executable, kill_utils.__file__, module, attr, str(n), str(ready), "--", *argv]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 240
    while not ready.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"exited {proc.returncode} before the stop:\n{err}{out}")
        if time.monotonic() > deadline:  # pragma: no cover - a hung child
            proc.kill()
            proc.communicate()
            raise AssertionError(f"never reached {module}.{attr} call {n}")
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    return proc.returncode


def scores(out: Path) -> dict[str, Any]:
    report = json.loads((out / "report.json").read_text())
    return {k: report[k] for k in ("model", "pseudo_labels")}


def markers(out: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in (out / ".steps").glob("*.json")}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, mini: list[str]) -> Path:
    out = tmp_path_factory.mktemp("demo") / "out"
    proc, _ = run_vcups("demo", "--out", str(out), *mini)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for i, name in enumerate(STEPS, start=1):
        assert f"[{i}/{len(STEPS)}] {name}: done in" in proc.stdout
    return out


def test_miniature_demo_scores_the_model_next_to_its_pseudo_labels(finished: Path) -> None:
    report = json.loads((finished / "report.json").read_text())
    assert report["scored"] is True
    for who in ("model", "pseudo_labels"):
        assert set(report[who]) == set(SCORE_KEYS)
        for key in SCORE_KEYS:
            value = report[who][key]
            assert isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0
    # the two rows are two different things scored, not one number copied
    assert report["model"] != report["pseudo_labels"]
    assert report["setup"]["steps"] == 2 and report["setup"]["size"] == [64, 128]
    assert report["setup"]["model"] == "vcups_micro"
    assert report["setup"]["pseudo_label_frames"] == 12  # 2 training drives x 6 frames
    assert report["setup"]["train_drives"] == ["train_21", "train_22"]
    assert report["setup"]["heldout_drives"] == ["heldout_401"]
    assert report["timings"]["seconds_per_train_step"] > 0
    assert report["replay"]["frames"] == 6
    node = report["node"]
    if os.environ.get("VCUPS_SKIP_ROS_TESTS") != "1":
        assert node["outputs"] == node["frames"] == 2 and node["stamps_match"] is True
    # the model ran 2 steps on the pseudo-labels, one line per step
    lines = (finished / "train" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2]
    for name in ("training_curve.png", "classwise_iou.png", "replay/overlay_frames.png"):
        assert is_complete_png(finished / name), name
    assert (finished / "replay" / "overlay.mp4").stat().st_size > 0
    assert list((finished / "replay" / "panoptic_bag").glob("*.mcap"))
    md = (finished / "report.md").read_text()
    assert "| trained model |" in md and "| its pseudo-labels |" in md
    assert "not the paper's numbers" in md
    assert all(m["status"] == "done" for m in markers(finished).values())
    assert sorted(markers(finished)) == sorted(STEPS)


def test_second_run_skips_every_step(finished: Path, mini: list[str]) -> None:
    before = {p: p.stat().st_mtime_ns for p in finished.rglob("*") if p.is_file()}
    proc, seconds = run_vcups("demo", "--out", str(finished), *mini)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for i, name in enumerate(STEPS, start=1):
        assert re.search(rf"^\[{i}/{len(STEPS)}\] {name}: cached", proc.stdout, re.M), name
    assert "done in" not in proc.stdout
    assert "every step was cached" in proc.stdout
    assert seconds < 30, f"a cached demo took {seconds:.0f} s"
    after = {p: p.stat().st_mtime_ns for p in finished.rglob("*") if p.is_file()}
    assert after == before  # nothing rewritten


def test_sigkill_anywhere_then_rerun_gives_the_same_scores(
    finished: Path, mini: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    argv = ["demo", "--out", str(out), *mini]
    # killed in the pseudo-labels, as the second drive starts
    assert (
        killed_at(tmp_path, "vcups_core.pseudo.pipeline", "label_clip", 2, argv) == -signal.SIGKILL
    )
    assert markers(out)["pseudo-labels"]["status"] == "running"
    assert not (out / "report.json").exists()
    # killed again in the training, after step 2 was logged (state.pt holds step 1)
    assert killed_at(tmp_path, "vcups_core.train.loop", "_log_step", 2, argv) == -signal.SIGKILL
    assert markers(out)["train"]["status"] == "running"
    assert markers(out)["pseudo-labels"]["status"] == "done"
    proc, _ = run_vcups(*argv)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pseudo-labels: cached" in proc.stdout
    assert "train: the vcups_micro model, 2 steps" in proc.stdout
    assert "(resuming an unfinished run)" in proc.stdout
    assert f"resuming {out / 'train'} at step 1/2" in proc.stdout
    lines = (out / "train" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2]
    assert scores(out) == scores(finished)


# --------------------------------------------------------------------------------------------------
# The cache, in process


def fake_step(
    name: str,
    value: Any,
    deps: list[str],
    out: Path,
    calls: list[tuple[str, bool]],
    fail: bool = False,
) -> Step:
    path = out / f"{name}.txt"

    def run(resume: bool) -> StepResult:
        calls.append((name, resume))
        if fail:
            raise KeyboardInterrupt
        path.write_text(str(value))
        return StepResult(f"digest-{name}-{value}", {"value": value})

    return Step(name, f"fake {name}", {"value": value}, deps, [path], run)


def run_plan(out: Path, values: dict[str, Any], fail: str | None = None) -> list[tuple[str, bool]]:
    calls: list[tuple[str, bool]] = []
    runner = StepRunner(out, 3)
    runner.execute(fake_step("a", values["a"], [], out, calls, fail == "a"))
    runner.execute(fake_step("b", values["b"], ["a"], out, calls, fail == "b"))
    runner.execute(fake_step("c", values["c"], ["b"], out, calls, fail == "c"))
    return calls


def test_a_changed_input_redoes_that_step_and_those_after(tmp_path: Path) -> None:
    values = {"a": 1, "b": 1, "c": 1}
    assert run_plan(tmp_path, values) == [("a", False), ("b", False), ("c", False)]
    assert run_plan(tmp_path, values) == []
    assert run_plan(tmp_path, {**values, "b": 2}) == [("b", False), ("c", False)]
    assert run_plan(tmp_path, {**values, "b": 2}) == []
    # an output removed by hand: that step again; its digest is unchanged, so not those after
    (tmp_path / "a.txt").unlink()
    assert run_plan(tmp_path, {**values, "b": 2}) == [("a", False)]
    # back to the old value: redone (the cache keeps one result per step)
    assert run_plan(tmp_path, values) == [("b", False), ("c", False)]


def test_an_interrupted_step_resumes_and_a_changed_one_starts_afresh(tmp_path: Path) -> None:
    values = {"a": 1, "b": 1, "c": 1}
    with pytest.raises(KeyboardInterrupt):
        run_plan(tmp_path, values, fail="b")
    assert json.loads((tmp_path / ".steps" / "b.json").read_text())["status"] == "running"
    assert run_plan(tmp_path, values) == [("b", True), ("c", False)]
    with pytest.raises(KeyboardInterrupt):
        run_plan(tmp_path, {**values, "c": 2}, fail="c")
    (tmp_path / "c.txt").write_text("left by the killed run")
    # other inputs than the killed run's: its outputs are removed, the step starts afresh
    calls = []
    runner = StepRunner(tmp_path, 3)
    for name in ("a", "b"):
        runner.execute(fake_step(name, 1, [] if name == "a" else ["a"], tmp_path, calls))
    step = fake_step("c", 3, ["b"], tmp_path, calls, fail=True)
    with pytest.raises(KeyboardInterrupt):
        runner.execute(step)
    assert calls == [("c", False)]
    assert not (tmp_path / "c.txt").exists()


# --------------------------------------------------------------------------------------------------
# Options and the user's bag


def parse(*args: str) -> Any:
    from training.cli import build_parser

    return options_from_args(build_parser().parse_args(["demo", *args]))


def test_options_choose_the_source() -> None:
    assert parse().source == "synthetic"
    opts = parse("--bag", "b", "--topic", "/cam", "--steps", "7", "--size", "96x160")
    assert (opts.source, opts.steps, opts.size, opts.frame_limit) == ("bag", 7, (96, 160), 60)
    assert parse("--davis", "d").source == "davis"
    assert parse("--davis", "d").frame_limit == 0
    assert parse().frame_limit == 30
    for bad in (["--bag", "b"], ["--topic", "/t"], ["--bag", "b", "--topic", "/t", "--davis", "d"]):
        with pytest.raises(ValueError, match=r"--bag|--davis"):
            parse(*bad)
    with pytest.raises(ValueError, match="HEIGHTxWIDTH"):
        parse("--size", "128")
    assert "score" not in steps_of("bag") and "held-out-pseudo-labels" not in steps_of("bag")
    assert steps_of("davis") == STEPS


def test_a_wrong_topic_is_a_usage_error(tmp_path: Path) -> None:
    from vcups_core.data.rosbag import write_synthetic_bag
    from vcups_core.data.synthetic import SyntheticWorld

    bag = write_synthetic_bag(SyntheticWorld(height=32, width=48, num_frames=3), tmp_path / "b")
    proc, _ = run_vcups("demo", "--out", str(tmp_path / "o"), "--bag", str(bag), "--topic", "/x")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no topic '/x'" in proc.stderr


def test_the_users_bag_is_cut_and_resized_with_its_camera_info(tmp_path: Path) -> None:
    from vcups_core.data.rosbag import BagFrameReader, write_synthetic_bag
    from vcups_core.data.synthetic import SyntheticWorld
    from vcups_core.pseudo.sources import read_camera_info

    world = SyntheticWorld(height=64, width=160, num_frames=5, seed=3)
    bag = write_synthetic_bag(world, tmp_path / "drive", ground_truth=False)
    args = ["--bag", str(bag), "--topic", "/camera/image_raw", "--frames", "4", "--size", "32x64"]
    result = record_from_bag(parse(*args), tmp_path / "drives")
    assert result.info["train"] == ["bag_drive"] and result.info["heldout"] == []
    assert result.info["size"] == [32, 80]  # the height asked for, the bag's aspect ratio
    cut = tmp_path / "drives" / "bag_drive"
    frames = list(BagFrameReader(cut, "/camera/image_raw"))
    assert [f.stamp_ns for f in frames] == [f.stamp_ns for f in list(world.frames())[:4]]
    assert frames[0].image.shape == (32, 80, 3)
    camera = read_camera_info(cut, "/camera/image_raw")
    assert camera is not None and camera[1] == (32, 80)
    first = next(iter(world.frames()))
    assert camera[0][0, 0] == pytest.approx(first.intrinsics[0, 0] * 0.5)


def test_the_users_bag_end_to_end_without_scores(mini: list[str], tmp_path: Path) -> None:
    from vcups_core.data.rosbag import write_synthetic_bag
    from vcups_core.data.synthetic import SyntheticWorld

    world = SyntheticWorld(height=64, width=128, num_frames=6, seed=5)
    bag = write_synthetic_bag(world, tmp_path / "mine", ground_truth=False)
    out = tmp_path / "out"
    args = [*mini, "--bag", str(bag), "--topic", "/camera/image_raw", "--frames", "4"]
    args += ["--steps", "1", "--node-frames", "1"]
    proc, _ = run_vcups("demo", "--out", str(out), *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = steps_of("bag")
    for i, name in enumerate(names, start=1):
        assert f"[{i}/{len(names)}] {name}: done in" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["scored"] is False and "no ground truth" in report["scoring_note"]
    assert not set(SCORE_KEYS) & (set(report["model"]) | set(report["pseudo_labels"]))
    assert report["pseudo_labels"]["frames"] == 4 and report["replay"]["frames"] == 4
    assert report["setup"]["train_drives"] == ["bag_mine"]
    assert "No scores" in (out / "report.md").read_text()
    assert not (out / "classwise_iou.png").exists() and not (out / "scores.json").exists()
    assert is_complete_png(out / "training_curve.png")
    if os.environ.get("VCUPS_SKIP_ROS_TESTS") != "1":
        assert report["node"]["outputs"] == 1
