"""The semantic stage of `vcups pseudo-labels` and `vcups semantic-train`: a tiny end-to-end run,
sharding, resume, and a store without the stage that is exactly the instance-only store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pseudo_fakes import Factories, native_config, read_png

from training.cli import main
from vcups_core.configs.pseudo_labels import PseudoLabelConfig
from vcups_core.pseudo.compose import TrainingTargets
from vcups_core.pseudo.pipeline import run_pseudo_labels
from vcups_core.pseudo.semantic_train import train_semantic_clusters
from vcups_core.pseudo.sources import SourceSpec
from vcups_core.pseudo.store import read_manifest, read_store

H, W, FRAMES, CLASSES = 64, 128, 4, 6


def write_clip(folder: Path, seed: int) -> Path:
    """A 4-frame 64x128 clip: sky, vegetation and road bands and a red box moving right."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(FRAMES):
        img = np.zeros((H, W, 3), np.int64)
        img[: H // 3] = (120, 170, 230)
        img[H // 3 : 2 * H // 3] = (90, 140, 60)
        img[2 * H // 3 :] = (80, 80, 80)
        img += rng.integers(-8, 9, img.shape)
        x = 10 + 6 * i + 5 * seed
        img[30:50, x : x + 24] = (200, 30, 30)
        rgb = np.clip(img, 0, 255).astype(np.uint8)
        assert cv2.imwrite(str(folder / f"{i:05d}.png"), rgb[:, :, ::-1])
    return folder


@pytest.fixture
def clips(tmp_path: Path) -> list[Path]:
    return [write_clip(tmp_path / "in" / f"clip_{k}", k) for k in range(2)]


@pytest.fixture
def clusters(tmp_path: Path, clips: list[Path]) -> Path:
    out = tmp_path / "clusters.npz"
    train_semantic_clusters(SourceSpec.frames(clips), out, config(""))
    return out


def config(weights: str | Path, **changes: Any) -> PseudoLabelConfig:
    semantics = {"num_classes": CLASSES, "weights": str(weights), **changes.pop("semantics", {})}
    return native_config(semantics=semantics, **changes)


def run(clips: list[Path], store: Path, cfg: PseudoLabelConfig, **kwargs: Any) -> int:
    fakes = Factories()
    return run_pseudo_labels(
        SourceSpec.frames(clips),
        store,
        cfg,
        progress=False,
        cue_factory=fakes.cue_factory,
        labeler_factory=fakes.labeler_factory,
        **kwargs,
    )


def files(store: Path, folder: str) -> dict[str, bytes]:
    return {
        str(p.relative_to(store)): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file() and p.parent.name == folder
    }


def test_semantic_train_then_pseudo_labels_end_to_end(
    tmp_path: Path, clips: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    clusters = tmp_path / "c.npz"
    cfg_file = tmp_path / "pl.yaml"
    cfg_file.write_text(
        f"height: 0\nwidth: 0\nsemantics:\n  num_classes: {CLASSES}\n  weights: {clusters}\n"
    )
    frames = ["--frames", *map(str, clips)]
    assert main(["semantic-train", *frames, "--out", str(clusters), "--config", str(cfg_file)]) == 0
    assert clusters.is_file()
    store = tmp_path / "store"
    argv = ["pseudo-labels", *frames, "--out", str(store), "--config", str(cfg_file)]
    assert main([*argv, "--no-progress"]) == 0  # the real cue pipeline and labeler
    assert "2 clips done, 0 failed, 8 frames labelled" in capsys.readouterr().out
    for clip in ("clip_0", "clip_1"):
        for sub, dtype in (("instance", np.uint16), ("semantic", np.uint8)):
            names = sorted(p.name for p in (store / clip / sub).iterdir())
            assert names == [f"{i:05d}.png" for i in range(FRAMES)]
            assert read_png(store / clip / sub / "00000.png").dtype == dtype
    assert not (store / ".tmp").exists()
    manifest = read_manifest(store)
    things, stuff = manifest["thing_classes"], manifest["stuff_classes"]
    assert sorted(things + stuff) == list(range(CLASSES))
    assert manifest["thing_stuff"]["num_classes"] == CLASSES
    clip = read_store(store)[0]
    semantic = clip.semantic(1)
    assert semantic is not None
    assert semantic.shape == (H, W)
    assert semantic.max() < CLASSES
    targets = clip.targets(1)
    assert isinstance(targets, TrainingTargets)
    assert targets.sem_seg.shape == (H, W)
    assert clip.thing_classes == tuple(things)


def test_sharded_equals_unsharded(tmp_path: Path, clips: list[Path], clusters: Path) -> None:
    cfg = config(clusters)
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    assert run(clips, whole, cfg) == 0
    assert run(clips, sharded, cfg, shard=(1, 2)) == 0
    assert "thing_classes" in read_manifest(sharded)  # from the one clip done so far
    assert run(clips, sharded, cfg, shard=(0, 2)) == 0
    assert files(whole, "semantic") == files(sharded, "semantic")
    assert len(files(whole, "semantic")) == 2 * FRAMES
    a, b = read_manifest(whole), read_manifest(sharded)
    for key in ("thing_stuff", "thing_classes", "stuff_classes"):
        assert a[key] == b[key]


def test_without_weights_the_store_is_the_instance_only_store(
    tmp_path: Path, clips: list[Path], clusters: Path
) -> None:
    off, on = tmp_path / "off", tmp_path / "on"
    assert run(clips, off, native_config()) == 0
    assert run(clips, on, config(clusters)) == 0
    assert files(off, "instance") == files(on, "instance")
    assert sorted(p.relative_to(off).as_posix() for p in off.rglob("*")) == sorted(
        [".status", ".status/.lock", ".status/clip_0.json", ".status/clip_1.json"]
        + [f"clip_{k}" for k in range(2)]
        + [f"clip_{k}/instance" for k in range(2)]
        + [f"clip_{k}/instance/{i:05d}.png" for k in range(2) for i in range(FRAMES)]
        + ["manifest.json"]
    )
    manifest = read_manifest(off)
    assert not {"thing_stuff", "thing_classes", "stuff_classes"} & set(manifest)
    record = json.loads((off / ".status" / "clip_0.json").read_text())
    assert "thing_stuff" not in record
    clip = read_store(off)[0]
    assert clip.semantic(0) is None
    with pytest.raises(ValueError, match="no semantic pseudo-labels"):
        clip.targets(0)


def test_a_clip_missing_a_semantic_png_is_redone(
    tmp_path: Path, clips: list[Path], clusters: Path
) -> None:
    store = tmp_path / "store"
    cfg = config(clusters, semantics={"crf_iterations": 0}, semantic_smoothing_window=1)
    assert run(clips, store, cfg) == 0
    before = files(store, "semantic")
    (store / "clip_1" / "semantic" / "00002.png").unlink()
    fakes = Factories()
    assert (
        run_pseudo_labels(
            SourceSpec.frames(clips),
            store,
            cfg,
            progress=False,
            cue_factory=fakes.cue_factory,
            labeler_factory=fakes.labeler_factory,
        )
        == 0
    )
    assert fakes.frames_labelled == FRAMES  # only clip_1 again
    assert files(store, "semantic") == before


def test_semantic_config_and_file_errors_are_one_line(
    tmp_path: Path, clips: list[Path], clusters: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = ["--frames", *map(str, clips)]
    bad = tmp_path / "bad.yaml"
    bad.write_text("semantic_smoothing_window: 2\n")
    out = ["--out", str(tmp_path / "s")]
    assert main(["pseudo-labels", *frames, *out, "--config", str(bad)]) == 2
    assert "semantic_smoothing_window = 2" in capsys.readouterr().err
    missing = tmp_path / "missing.yaml"
    missing.write_text(f"semantics:\n  weights: {tmp_path / 'nope.npz'}\n")
    assert main(["pseudo-labels", *frames, *out, "--config", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file" in err[0]
    classes = tmp_path / "classes.yaml"
    classes.write_text(f"semantics:\n  num_classes: 9\n  weights: {clusters}\n")
    assert main(["pseudo-labels", *frames, *out, "--config", str(classes)]) == 2
    assert "has 6 classes" in capsys.readouterr().err
    assert main(["semantic-train", *frames, "--out", str(tmp_path / "no" / "c.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["semantic-train", "--frames", str(tmp_path / "nothing"), "--out", "x.npz"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_semantic_writes_are_checked_and_records_round_trip(tmp_path: Path) -> None:
    from vcups_core.pseudo.store import ClipRecord, StoreWriter

    writer = StoreWriter(tmp_path / "s", native_config())
    writer.begin_clip("a", semantic=True)
    assert (tmp_path / "s" / "a" / "semantic").is_dir()
    with pytest.raises(ValueError, match="uint8"):
        writer.write_semantic("a", "0", np.zeros((2, 3), np.uint16))
    assert writer.write_semantic("a", "0", np.zeros((2, 3), np.uint8)).is_file()
    stats = {"num_classes": 2, "n_in": [1, 0], "n_all": [3, 4]}
    record = ClipRecord("a", "done", ("0",), None, 0.0, 2, 3, "h", thing_stuff=stats)
    assert ClipRecord.from_json(record.to_json()) == record
    plain = ClipRecord("a", "done", ("0",), None, 0.0, 2, 3, "h")
    assert "thing_stuff" not in plain.to_json()
    assert ClipRecord.from_json(plain.to_json()) == plain


# ---------------------------------------------------------------------------------------------
# the DepthG model file (semantics.weights naming a .pt)


def test_a_depthg_model_file_labels_the_clips(tmp_path: Path, clips: list[Path]) -> None:
    from depthg_utils import one_torch_thread

    with one_torch_thread():
        _label_with_a_depthg_model(tmp_path, clips)


def _label_with_a_depthg_model(tmp_path: Path, clips: list[Path]) -> None:
    from depthg_utils import tiny_model_file

    model = tiny_model_file(tmp_path, CLASSES)
    store = tmp_path / "store"
    cfg = config(model, semantics={"crop_size": 64, "stride": 32, "crf_iterations": 2})
    assert run(clips, store, cfg) == 0
    semantic = files(store, "semantic")
    assert sorted(semantic) == [
        f"clip_{k}/semantic/{i:05d}.png" for k in range(2) for i in range(FRAMES)
    ]
    labels = read_png(store / "clip_0" / "semantic" / "00002.png")
    assert labels.shape == (H, W) and labels.dtype == np.uint8 and labels.max() < CLASSES
    assert read_manifest(store)["thing_stuff"]["num_classes"] == CLASSES


def test_semantic_train_with_backbone_weights_end_to_end(
    tmp_path: Path, clips: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from depthg_utils import one_torch_thread

    with one_torch_thread():
        _train_and_label_with_the_cli(tmp_path, clips, capsys)


def _train_and_label_with_the_cli(
    tmp_path: Path, clips: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from depthg_utils import write_tiny_vit

    vit = write_tiny_vit(tmp_path / "vit.pth")
    model = tmp_path / "depthg.pt"
    cfg_file = tmp_path / "pl.yaml"
    cfg_file.write_text(
        f"height: 0\nwidth: 0\nsemantics:\n  num_classes: {CLASSES}\n  weights: {model}\n"
        "  crop_size: 64\n  stride: 32\n  crf_iterations: 0\n"
    )
    frames = ["--frames", *map(str, clips)]
    train = ["semantic-train", *frames, "--out", str(model), "--config", str(cfg_file)]
    depthg = ["--backbone-weights", str(vit), "--steps", "2", "--batch-size", "2", "--no-progress"]
    assert main([*train, *depthg]) == 0
    assert "DepthG model (vit vit_tiny_patch16_224, 6 classes, 2 steps)" in capsys.readouterr().out
    assert (tmp_path / "depthg.pt.work" / "state.pt").is_file()
    store = tmp_path / "store"
    argv = ["pseudo-labels", *frames, "--out", str(store), "--config", str(cfg_file)]
    assert main([*argv, "--no-progress"]) == 0  # the real cue pipeline and labeler
    assert len(files(store, "semantic")) == 2 * FRAMES
    # DepthG-only options without a backbone, and a class count that does not fit: one line
    assert main([*train, "--steps", "3"]) == 2
    assert "--steps: only with --backbone-weights" in capsys.readouterr().err
    classes = tmp_path / "classes.yaml"
    classes.write_text(f"semantics:\n  num_classes: 9\n  weights: {model}\n")
    out = ["--out", str(tmp_path / "s9")]
    assert main(["pseudo-labels", *frames, *out, "--config", str(classes)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has 6 classes" in err[0]
    foreign = tmp_path / "foreign.pt"
    foreign.write_bytes(b"neither")
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"semantics:\n  weights: {foreign}\n")
    assert main(["pseudo-labels", *frames, *out, "--config", str(bad)]) == 2
    assert "neither a semantic clusters file (.npz) nor a DepthG model" in capsys.readouterr().err
