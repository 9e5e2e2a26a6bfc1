"""The training loop on a tiny oracle store: resume after SIGKILL, non-finite loss, torchrun with
gloo, and the ``vcups train`` command (checkpoint accepted by ``vcups replay``)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from training.cli import main as vcups
from vcups_core.config import apply_overrides, load_config
from vcups_core.configs.model import ModelConfig
from vcups_core.configs.training import TrainingConfig
from vcups_core.data.rosbag import write_synthetic_bag
from vcups_core.data.synthetic import SyntheticWorld
from vcups_core.model.checkpoint import read_checkpoint
from vcups_core.pseudo.oracle_store import write_oracle_store
from vcups_core.train.loop import METRICS_FILE, TrainingError, TrainOptions, train

REPO = Path(__file__).resolve().parents[3]
TINY = REPO / "config" / "model" / "tiny.yaml"
H, W = 48, 96
OVERRIDES = [
    "batch_size=2",
    "num_workers=0",
    "checkpoint_every=1",
    f"augmentation.crop_height={H}",
    f"augmentation.crop_width={W}",
    f"augmentation.resolutions=[[{H},{W}]]",
    "copy_paste.min_box_size=4",
    "copy_paste.startup_epochs=1",
    "optimizer.learning_rate=1e-3",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train")
    bag = root / "bag"
    write_synthetic_bag(SyntheticWorld(height=H, width=W, num_frames=4, seed=0), bag)
    return write_oracle_store([bag], root / "store")


def _config(*extra: str) -> TrainingConfig:
    return apply_overrides(TrainingConfig(), [*OVERRIDES, *extra], TrainingConfig)


def _options(store: Path, out: Path, steps: int, *extra: str) -> TrainOptions:
    return TrainOptions(
        store=store,
        out=out,
        model=load_config(TINY, ModelConfig),
        training=_config(*extra),
        max_steps=steps,
        device="cpu",
        progress=False,
    )


def _metrics(out: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (out / METRICS_FILE).read_text().splitlines()]


def _cli_args(store: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return [
        "train",
        "--store",
        str(store),
        "--out",
        str(out),
        "--model-config",
        str(TINY),
        "--max-steps",
        str(steps),
        "--device",
        "cpu",
        "--no-progress",
        "--set",
        *OVERRIDES,
        *extra,
    ]


def test_resume_after_sigkill_gives_the_losses_of_an_uninterrupted_run(
    store: Path, tmp_path: Path
) -> None:
    """Killed at a random moment after step 2 and re-run with the same command, the run ends
    with the same per-step losses (self-enhanced copy-paste included from step 2 on)."""
    steps = 4
    reference = train(_options(store, tmp_path / "ref", steps))
    assert reference.steps == steps and not reference.interrupted
    assert reference.checkpoint is not None and reference.checkpoint.name == "model_final.pt"

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "training.cli", *_cli_args(store, out, steps)]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / METRICS_FILE).exists() and len(_metrics(out)) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(_metrics(out))
    assert 2 <= done_before < steps

    rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming" in rerun.stdout
    resumed = _metrics(out)
    assert [m["step"] for m in resumed] == list(range(1, steps + 1))
    for got, want in zip(resumed, reference.losses, strict=True):
        for term, value in want.items():
            assert math.isclose(got[term], value, rel_tol=1e-4, abs_tol=1e-6), (got["step"], term)
    assert resumed[-1]["copy_paste_source"] == "model"  # the self-enhanced phase was resumed
    _, meta = read_checkpoint(out / "model_final.pt")
    assert meta["extra"]["step"] == steps


def test_a_finished_run_is_not_redone_and_can_be_extended(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = train(_options(store, out, 2))
    assert first.steps == 2
    again = train(_options(store, out, 2))  # same command: nothing left to do
    assert again.steps == 2 and again.losses == []
    longer = train(_options(store, out, 3, "checkpoint_every=5"))  # extended: one more step
    assert longer.steps == 3 and len(longer.losses) == 1
    assert [m["step"] for m in _metrics(out)] == [1, 2, 3]
    with pytest.raises(TrainingError, match="another config"):
        train(_options(store, out, 2, "seed=5"))


def test_ctrl_c_saves_the_state_of_the_last_finished_step(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vcups_core.train.loop as loop

    real = loop._log_step

    def interrupted_after_two(*args: object, **kwargs: object) -> None:
        real(*args, **kwargs)  # type: ignore[arg-type]
        if args[2] == 2:  # the step just logged
            raise KeyboardInterrupt  # what SIGTERM becomes inside the loop

    monkeypatch.setattr(loop, "_log_step", interrupted_after_two)
    out = tmp_path / "ctrl_c"
    result = train(_options(store, out, 4, "checkpoint_every=10", "copy_paste.enabled=false"))
    assert result.interrupted and result.steps == 2
    assert torch.load(out / "state.pt", weights_only=True)["step"] == 2
    assert not (out / "model_final.pt").exists()


def test_non_finite_loss_stops_naming_the_step_and_term(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vcups_core.model.semantic_head import SemanticHead

    real = SemanticHead.loss
    calls = []

    def exploding(self: SemanticHead, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        loss = real(self, logits, targets)
        return loss * float("nan") if len(calls) == 2 else loss

    monkeypatch.setattr(SemanticHead, "loss", exploding)
    out = tmp_path / "nan"
    with pytest.raises(
        TrainingError, match=r"step 2: non-finite loss \(loss_semantic=nan\)"
    ) as info:
        train(_options(store, out, 3, "copy_paste.enabled=false"))
    # step 1 was finite and checkpointed; the state still points at it
    assert "the last good checkpoint is" in str(info.value)
    assert (out / "checkpoints" / "step_0000001.pt").exists()
    assert not (out / "checkpoints" / "step_0000002.pt").exists()
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["step"] == 1


def test_diverged_weights_stop_with_a_message(store: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match=r"step \d+: (non-finite loss|the forward pass failed)"):
        train(_options(store, tmp_path / "div", 4, "optimizer.learning_rate=1e30"))


def test_video_drop_loss_off_changes_the_classification_loss(store: Path, tmp_path: Path) -> None:
    on = train(_options(store, tmp_path / "on", 1, "copy_paste.enabled=false"))
    off = train(
        _options(store, tmp_path / "off", 1, "copy_paste.enabled=false", "video_drop_loss=false")
    )
    # same data and init: only the proposals DropLoss ignores add to the loss without it
    assert off.losses[0]["loss_cls_stage0"] > on.losses[0]["loss_cls_stage0"]
    assert math.isclose(off.losses[0]["loss_semantic"], on.losses[0]["loss_semantic"], rel_tol=1e-6)


def test_two_gloo_processes_train_like_one_process_on_the_global_batch(
    store: Path, tmp_path: Path
) -> None:
    """torchrun with 2 CPU processes (gloo), micro_batch 1: the ranks end with identical weights
    (checked by the loop), equal to one process on the same global batch."""
    steps = 2
    extra = ["micro_batch=1", "copy_paste.enabled=false"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks below: the same summation order in every kernel
    try:
        single = train(_options(store, tmp_path / "single", steps, *extra))
    finally:
        torch.set_num_threads(threads)
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "training.cli",
        *_cli_args(store, out, steps, *extra),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    ddp = _metrics(out)
    for got, want in zip(ddp, single.losses, strict=True):
        assert math.isclose(got["loss"], want["loss"], rel_tol=1e-4), got["step"]
    a, _ = read_checkpoint(out / "model_final.pt")
    assert single.checkpoint is not None
    b, _ = read_checkpoint(single.checkpoint)
    init, _ = read_checkpoint(tmp_path / "single" / "checkpoints" / "step_0000001.pt")
    # with one thread in every process the update is the same to the last bit; AdamW turns any
    # difference of a near-zero gradient into about lr, so even 1e-7 would show a real mismatch
    params = [k for k in a if "running_" not in k and "num_batches_tracked" not in k]
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in params) <= 1e-7
    lr = 1e-3
    moved = torch.cat([(b[k].float() - init[k].float()).abs().reshape(-1) for k in params])
    assert float((moved > 0.5 * lr).float().mean()) > 0.3  # the weights did move: not vacuous


def test_vcups_train_writes_a_checkpoint_that_replay_accepts(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    assert vcups(_cli_args(store, out, 2)) == 0
    checkpoint = out / "model_final.pt"
    _, meta = read_checkpoint(checkpoint)
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))  # TensorBoard scalars
    assert [m["step"] for m in _metrics(out)] == [1, 2]
    assert meta["categories"]["num_things"] == 2  # the store's split: car, person
    bag = tmp_path / "held_out"
    write_synthetic_bag(SyntheticWorld(height=H, width=W, num_frames=3, seed=9), bag)
    code = vcups(
        [
            "replay",
            str(bag),
            "--topic",
            "/camera/image_raw",
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(tmp_path / "replayed"),
        ]
    )
    assert code == 0


def test_vcups_train_usage_errors_are_one_line(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert vcups(["train", "--out", str(tmp_path / "x")]) == 2
    assert "--store" in capsys.readouterr().err
    assert vcups(["train", "--store", str(tmp_path / "nope"), "--out", str(tmp_path / "y")]) == 2
    assert "no manifest" in capsys.readouterr().err
    assert vcups(_cli_args(store, tmp_path / "z", 1, "epochs=zero")) == 2
    assert "epochs" in capsys.readouterr().err


def test_finetune_from_a_checkpoint_on_a_datasets_ground_truth(store: Path, tmp_path: Path) -> None:
    """--finetune-from CKPT --dataset NAME:ROOT: the dataset's classes replace the pseudo-classes,
    the backbone comes from the checkpoint, the class-specific layers start afresh."""
    from training.synth import labeled_clip
    from vcups_core.data.datasets import KITTI_STEP
    from vcups_core.data.kitti_step import write_kitti_step

    pretrained = train(_options(store, tmp_path / "pre", 1, "copy_paste.enabled=false"))
    assert pretrained.checkpoint is not None
    root = tmp_path / "kitti"
    write_kitti_step(
        [labeled_clip(SyntheticWorld(height=H, width=W, num_frames=4, seed=3), every=1)],
        root,
        split="val",
    )
    out = tmp_path / "ft"
    args = _cli_args(store, out, 1, "copy_paste.enabled=false")
    args[args.index("--store") : args.index("--store") + 2] = [
        "--finetune-from",
        str(pretrained.checkpoint),
        "--dataset",
        f"kitti-step:{root}",
        "--split",
        "val",
    ]
    assert vcups(args) == 0
    tuned, meta = read_checkpoint(out / "model_final.pt")
    before, _ = read_checkpoint(pretrained.checkpoint)
    assert meta["categories"]["num_things"] == len(KITTI_STEP.thing_ids)
    assert meta["categories"]["pseudo_class_ids"][:8] == sorted(KITTI_STEP.thing_ids)
    stem = "backbone.body.layer4.1.conv2.weight"
    # one AdamW step away from the checkpoint's weights, not from a fresh initialisation
    assert float((tuned[stem] - before[stem]).abs().max()) < 2e-3
