"""The pseudo-label pipeline with stand-in cues and labeler: output, resume after Ctrl-C, SIGTERM
and SIGKILL, sharding, damaged frames and short clips."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pseudo_fakes import (
    HEIGHT,
    WIDTH,
    Factories,
    FakeLabeler,
    expected_labels,
    frame_image,
    native_config,
    read_png,
    truncate,
    write_clips,
    write_davis,
    write_frames,
)

from vcups_core.configs.pseudo_labels import PseudoLabelConfig
from vcups_core.data.rosbag import BagWriter
from vcups_core.pseudo.pipeline import run_pseudo_labels
from vcups_core.pseudo.sources import SourceSpec, scale_intrinsics
from vcups_core.pseudo.store import StoreConfigError, read_manifest, read_store

FAKES_SCRIPT = Path(__file__).resolve().parents[2] / "pseudo_fakes.py"
K = np.array([[40.0, 0.0, 23.5], [0.0, 41.0, 15.5], [0.0, 0.0, 1.0]])


def run(
    spec: SourceSpec,
    store: Path,
    fakes: Factories | None = None,
    cfg: PseudoLabelConfig | None = None,
    **kwargs: Any,
) -> int:
    fakes = fakes or Factories()
    kwargs.setdefault("progress", False)
    return run_pseudo_labels(
        spec,
        store,
        cfg or native_config(),
        cue_factory=fakes.cue_factory,
        labeler_factory=fakes.labeler_factory,
        **kwargs,
    )


def label_files(store: Path) -> dict[str, bytes]:
    """Every file of the store but the manifest and status records (which hold timings)."""
    return {
        str(p.relative_to(store)): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file() and p.name != "manifest.json" and p.parent.name != ".status"
    }


def clip_records(store: Path) -> dict[str, Any]:
    """The manifest's per-clip records without their timings."""
    clips = read_manifest(store)["clips"]
    return {name: {k: v for k, v in rec.items() if k != "seconds"} for name, rec in clips.items()}


def assert_same_store(a: Path, b: Path) -> None:
    files_a, files_b = label_files(a), label_files(b)
    assert sorted(files_a) == sorted(files_b)
    assert files_a == files_b
    assert clip_records(a) == clip_records(b)
    assert sorted(p.name for p in (a / ".status").iterdir()) == sorted(
        p.name for p in (b / ".status").iterdir()
    )


@pytest.fixture
def clips(tmp_path: Path) -> list[Path]:
    return write_clips(tmp_path / "in", clips=3, frames=3)


@pytest.fixture
def reference(tmp_path: Path, clips: list[Path]) -> Path:
    store = tmp_path / "reference"
    assert run(SourceSpec.frames(clips), store) == 0
    return store


def test_every_frame_gets_its_labels(reference: Path, clips: list[Path]) -> None:
    for k, folder in enumerate(clips):
        for i in range(3):
            png = read_png(reference / folder.name / "instance" / f"{i:05d}.png")
            assert png.dtype == np.uint16
            assert np.array_equal(png, expected_labels(frame_image(k, i), i))
    manifest = read_manifest(reference)
    assert manifest["summary"]["done"] == 3 and manifest["summary"]["frames"] == 9
    assert manifest["cue_backends"] == {"depth": "none", "flow": "fake", "motion": "fake"}
    assert (manifest["height"], manifest["width"]) == (HEIGHT, WIDTH)
    assert [c.name for c in read_store(reference)] == ["clip_0", "clip_1", "clip_2"]


def test_resize_and_intrinsics_from_the_bag(tmp_path: Path) -> None:
    bag = tmp_path / "drive"
    stamps = [5_000_000_000 + i * 100_000_000 for i in range(3)]
    with BagWriter(bag, "mcap") as writer:
        for i, stamp in enumerate(stamps):
            writer.write_rgb("/cam/image_raw", frame_image(0, i), stamp, "cam")
            writer.write_camera_info("/cam/camera_info", K, HEIGHT, WIDTH, stamp, "cam")
    fakes = Factories()
    cfg = native_config(height=16, width=24)
    assert run(SourceSpec.bag(bag, "/cam/image_raw"), tmp_path / "s", fakes, cfg) == 0
    assert np.allclose(fakes.cues[0].intrinsics[0], scale_intrinsics(K, (32, 48), (16, 24)))
    (clip,) = read_store(tmp_path / "s")
    assert clip.name == "drive" and clip.stems == tuple(str(s) for s in stamps)
    for i in range(3):
        small = np.asarray(
            cv2.resize(frame_image(0, i), (24, 16), interpolation=cv2.INTER_AREA), np.uint8
        )
        assert np.array_equal(clip.instance(i), expected_labels(small, i))
    # a configured focal length wins over the camera info
    fakes = Factories()
    cfg = native_config(camera={"focal_px": 30.0})
    assert run(SourceSpec.bag(bag, "/cam/image_raw"), tmp_path / "s2", fakes, cfg) == 0
    k = fakes.cues[0].intrinsics[0]
    assert k[0, 0] == k[1, 1] == 30.0 and k[0, 2] == K[0, 2]


def test_without_camera_info_the_focal_comes_from_the_field_of_view(
    tmp_path: Path, clips: list[Path]
) -> None:
    fakes = Factories()
    cfg = native_config(camera={"hfov_deg": 90.0})
    assert run(SourceSpec.frames(clips[0]), tmp_path / "s", fakes, cfg) == 0
    assert np.allclose(
        fakes.cues[0].intrinsics[0], [[24.0, 0.0, 23.5], [0.0, 24.0, 15.5], [0.0, 0.0, 1.0]]
    )


def test_rerun_skips_finished_clips(tmp_path: Path, clips: list[Path], reference: Path) -> None:
    before = label_files(reference)
    fakes = Factories()
    assert run(SourceSpec.frames(clips), reference, fakes) == 0
    assert fakes.cues == [] and fakes.labelers == []  # nothing to do: no cue pipeline built
    (reference / "clip_1" / "instance" / "00002.png").unlink()
    assert run(SourceSpec.frames(clips), reference, fakes) == 0
    assert fakes.frames_labelled == 3  # only clip_1 again
    assert label_files(reference) == before


def test_sharded_runs_equal_an_unsharded_run(
    tmp_path: Path, clips: list[Path], reference: Path
) -> None:
    store = tmp_path / "sharded"
    spec = SourceSpec.frames(clips)
    assert run(spec, store, shard=(1, 2)) == 0
    assert read_manifest(store)["summary"]["pending"] == ["clip_0", "clip_2"]
    assert run(spec, store, shard=(0, 2)) == 0
    assert read_manifest(store)["summary"]["pending"] == []
    assert_same_store(store, reference)


def test_ctrl_c_then_resume(tmp_path: Path, clips: list[Path], reference: Path) -> None:
    store = tmp_path / "store"

    class Interrupting(Factories):
        def labeler_factory(self, cfg: PseudoLabelConfig) -> FakeLabeler:
            labeler = super().labeler_factory(cfg)
            if len(self.labelers) == 2:  # clip_1: Ctrl-C at its third frame
                push = labeler.push

                def interrupted(cues: Any) -> Any:
                    if cues.frame.index == 2:
                        raise KeyboardInterrupt
                    return push(cues)

                labeler.push = interrupted  # type: ignore[method-assign]
            return labeler

    with pytest.raises(KeyboardInterrupt):
        run(SourceSpec.frames(clips), store, Interrupting())
    manifest = read_manifest(store)
    assert manifest["clips"]["clip_0"]["status"] == "done"
    assert manifest["clips"]["clip_1"]["status"] == "interrupted"
    assert "clip_2" not in manifest["clips"]
    assert (store / "clip_1" / "instance" / "00000.png").is_file()  # written before Ctrl-C
    assert not [p for p in store.rglob("*.tmp")]
    assert run(SourceSpec.frames(clips), store) == 0
    assert_same_store(store, reference)


def test_sigterm_is_handled_like_ctrl_c(tmp_path: Path, clips: list[Path], reference: Path) -> None:
    store = tmp_path / "store"
    handler = signal.getsignal(signal.SIGTERM)

    class Terminated(Factories):
        def labeler_factory(self, cfg: PseudoLabelConfig) -> FakeLabeler:
            labeler = super().labeler_factory(cfg)
            if len(self.labelers) == 3:
                push = labeler.push

                def terminated(cues: Any) -> Any:
                    os.kill(os.getpid(), signal.SIGTERM)
                    return push(cues)

                labeler.push = terminated  # type: ignore[method-assign]
            return labeler

    with pytest.raises(KeyboardInterrupt):
        run(SourceSpec.frames(clips), store, Terminated())
    assert signal.getsignal(signal.SIGTERM) == handler
    assert read_manifest(store)["clips"]["clip_2"]["status"] == "interrupted"
    assert run(SourceSpec.frames(clips), store) == 0
    assert_same_store(store, reference)


def test_sigkill_then_resume_equals_an_uninterrupted_run(
    tmp_path: Path, clips: list[Path], reference: Path
) -> None:
    store = tmp_path / "killed"
    cmd = [sys.executable, str(FAKES_SCRIPT), *map(str, clips), "--out", str(store)]
    proc = subprocess.Popen([*cmd, "--delay", "0.3"])
    partial = store / "clip_1" / "instance"
    try:
        deadline = time.monotonic() + 60
        while not (partial.is_dir() and any(p.suffix == ".png" for p in partial.iterdir())):
            assert proc.poll() is None, "the labelling process ended before it was killed"
            assert time.monotonic() < deadline, "no label of clip_1 within 60 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    record = store / ".status" / "clip_1.json"
    assert not record.exists() or json.loads(record.read_text())["status"] != "done"
    assert json.loads((store / ".status" / "clip_0.json").read_text())["status"] == "done"
    fakes = Factories()
    assert run(SourceSpec.frames(clips), store, fakes) == 0
    assert fakes.frames_labelled == 6  # clip_0 was kept
    assert_same_store(store, reference)
    assert not [p for p in store.rglob("*.tmp")]


def test_a_damaged_frame_fails_only_its_clip(tmp_path: Path) -> None:
    root = write_davis(tmp_path / "davis", clips=3, frames=3)
    truncate(root / "seq1" / "images" / "00001.jpg")
    store = tmp_path / "s"
    spec = SourceSpec.parse_dataset(f"davis:{root}")
    assert run(spec, store) == 1
    manifest = read_manifest(store)
    assert {n: c["status"] for n, c in manifest["clips"].items()} == {
        "seq0": "done",
        "seq1": "failed",
        "seq2": "done",
    }
    error = manifest["clips"]["seq1"]["error"]
    assert "seq1/images/00001.jpg: truncated JPEG" in error and "\n" not in error
    assert [c.name for c in read_store(store)] == ["seq0", "seq2"]
    fakes = Factories()
    assert run(spec, store, fakes) == 1  # the failed clip is tried again, the others skipped
    assert len(fakes.labelers) == 1
    write_frames(root / "seq1" / "images", 1, 3, ".jpg")  # repaired
    assert run(spec, store) == 0
    assert read_manifest(store)["summary"]["done"] == 3


def test_a_clip_of_one_frame_fails_with_the_reason(tmp_path: Path, clips: list[Path]) -> None:
    single = write_frames(tmp_path / "single", 5, 1)
    assert run(SourceSpec.frames([clips[0], single]), tmp_path / "s") == 1
    record = read_manifest(tmp_path / "s")["clips"]["single"]
    assert record["status"] == "failed"
    assert "at least 2" in record["error"] and "1 frame" in record["error"]


def test_a_labeler_breaking_its_contract_fails_the_clip(tmp_path: Path, clips: list[Path]) -> None:
    class Skipping(Factories):
        def labeler_factory(self, cfg: PseudoLabelConfig) -> FakeLabeler:
            labeler = super().labeler_factory(cfg)
            labeler.finish = lambda: []  # type: ignore[method-assign]
            return labeler

    assert run(SourceSpec.frames(clips[0]), tmp_path / "s", Skipping()) == 1
    error = read_manifest(tmp_path / "s")["clips"]["clip_0"]["error"]
    assert "labeler returned 2 of 3 frames" in error


def test_another_config_needs_overwrite(tmp_path: Path, clips: list[Path], reference: Path) -> None:
    other = native_config(tracking={"iou_threshold": 0.9})
    with pytest.raises(StoreConfigError):
        run(SourceSpec.frames(clips), reference, cfg=other)
    assert run(SourceSpec.frames(clips), reference, cfg=other, overwrite=True) == 0
    assert read_manifest(reference)["config"]["tracking"]["iou_threshold"] == 0.9


def test_progress_bar(
    tmp_path: Path, clips: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(SourceSpec.frames(clips), tmp_path / "s", progress=True) == 0
    err = capsys.readouterr().err
    assert "pseudo-labels" in err and "9/9" in err and "frame/s" in err
