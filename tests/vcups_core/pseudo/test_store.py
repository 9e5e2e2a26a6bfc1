"""The pseudo-label store: layout, status records, resume rule, manifest and reader."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pseudo_fakes import frame_image, native_config, read_png, write_frames

from vcups_core.config import config_to_dict
from vcups_core.pseudo.sources import open_frames_clip
from vcups_core.pseudo.store import (
    ClipRecord,
    StoreConfigError,
    StoreWriter,
    config_hash,
    read_manifest,
    read_records,
    read_store,
    write_manifest,
)

STEMS = ("00000", "00001", "00002")


def labels(i: int) -> np.ndarray:
    out = np.zeros((4, 6), np.uint16)
    out[1:3, 1:4] = 1000 + i  # > 255: must survive as 16 bit
    return out


def write_clip(
    writer: StoreWriter,
    name: str,
    stems: tuple[str, ...] = STEMS,
    status: str = "done",
    source: dict[str, object] | None = None,
) -> ClipRecord:
    writer.begin_clip(name)
    for i, stem in enumerate(stems):
        writer.write_instance(name, stem, labels(i))
    record = ClipRecord(
        clip=name,
        status=status,  # type: ignore[arg-type]
        stems=stems,
        error=None if status == "done" else "ValueError: broken",
        seconds=0.25,
        height=4,
        width=6,
        config_hash=writer.config_hash,
        backends={"flow": "fake"},
        source=source or {"kind": "frames", "path": f"/data/{name}"},
    )
    writer.finish_clip(record)
    return record


def test_layout_and_finished_clips(tmp_path: Path) -> None:
    store = tmp_path / "store"
    writer = StoreWriter(store, native_config())
    assert not writer.is_finished("a")
    write_clip(writer, "a")
    assert sorted(p.name for p in (store / "a" / "instance").iterdir()) == [
        f"{s}.png" for s in STEMS
    ]
    png = read_png(store / "a" / "instance" / "00001.png")
    assert png.dtype == np.uint16 and np.array_equal(png, labels(1))
    record = json.loads((store / ".status" / "a.json").read_text())
    assert record["status"] == "done" and record["frames"] == 3 and record["stems"] == list(STEMS)
    assert writer.is_finished("a")
    # a PNG missing, or one too many: not finished
    (store / "a" / "instance" / "00002.png").unlink()
    assert not writer.is_finished("a")
    write_clip(writer, "a")
    (store / "a" / "instance" / "extra.png").write_bytes(b"")
    assert not writer.is_finished("a")
    write_clip(writer, "b", status="failed")
    assert not writer.is_finished("b")


def test_begin_clip_removes_stale_files(tmp_path: Path) -> None:
    writer = StoreWriter(tmp_path / "s", native_config())
    write_clip(writer, "a")
    semantic = tmp_path / "s" / "a" / "semantic"
    semantic.mkdir()
    (semantic / "00000.png").write_bytes(b"old")
    (tmp_path / "s" / "a" / "instance" / ".00001.png.99.dead.tmp").write_bytes(b"")
    (tmp_path / "s" / ".status" / ".a.json.99.dead.tmp").write_bytes(b"")
    writer.begin_clip("a")
    assert [p.name for p in (tmp_path / "s" / "a").iterdir()] == ["instance"]
    assert not list((tmp_path / "s" / "a" / "instance").iterdir())
    assert writer.record("a") is None
    assert not [p for p in (tmp_path / "s" / ".status").iterdir() if p.name != ".lock"]


def test_bad_names_and_labels_are_rejected(tmp_path: Path) -> None:
    writer = StoreWriter(tmp_path / "s", native_config())
    for name in ("", "../x", "a/b", ".status", "manifest.json"):
        with pytest.raises(ValueError, match="plain file name"):
            writer.begin_clip(name)
    writer.begin_clip("a")
    with pytest.raises(ValueError, match="uint16"):
        writer.write_instance("a", "00000", np.zeros((4, 6), np.uint8))


def test_unwritable_store_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="cannot create or write the store"):
        StoreWriter(tmp_path / "file" / "store", native_config())


def test_manifest(tmp_path: Path) -> None:
    store = tmp_path / "s"
    cfg = native_config()
    writer = StoreWriter(store, cfg)
    write_clip(writer, "b")
    write_clip(writer, "a", status="failed")
    manifest = writer.write_manifest(backends={"depth": "none"}, expected_clips=["a", "b", "c"])
    assert manifest == read_manifest(store)
    assert manifest["format"] == "vcups-pseudo-labels"
    assert manifest["config"] == config_to_dict(cfg)
    assert manifest["config_hash"] == config_hash(cfg) == writer.config_hash
    assert len(manifest["config_hash"]) == 64
    assert set(manifest["versions"]) == {"vcups", "numpy", "opencv", "torch", "python"}
    assert manifest["cue_backends"] == {"depth": "none", "flow": "fake"}
    assert (manifest["height"], manifest["width"]) == (4, 6)
    assert list(manifest["clips"]) == ["a", "b"]
    assert manifest["clips"]["b"] == {
        "status": "done",
        "frames": 3,
        "error": None,
        "seconds": 0.25,
        "height": 4,
        "width": 6,
        "source": {"kind": "frames", "path": "/data/b"},
        "stems": list(STEMS),
    }
    assert manifest["clips"]["a"]["error"] == "ValueError: broken"
    assert manifest["summary"] == {
        "clips": 2,
        "done": 1,
        "failed": 1,
        "interrupted": 0,
        "frames": 3,
        "pending": ["c"],
    }
    assert not [p for p in store.iterdir() if p.name.endswith(".tmp")]


def test_manifest_keeps_keys_of_later_stages_and_merges_processes(tmp_path: Path) -> None:
    store = tmp_path / "s"
    cfg = native_config()
    first, second = StoreWriter(store, cfg), StoreWriter(store, cfg)  # two shards
    write_clip(first, "a")
    first.write_manifest()
    manifest = read_manifest(store)
    manifest["later_stage"] = {"x": [3, 5]}
    manifest["thing_classes"] = [3, 5]  # owned by the store: recomputed from the records
    (store / "manifest.json").write_text(json.dumps(manifest))
    write_clip(second, "b")
    rebuilt = second.write_manifest()
    assert list(rebuilt["clips"]) == ["a", "b"]
    assert rebuilt["later_stage"] == {"x": [3, 5]}
    assert "thing_classes" not in rebuilt  # no semantic stage


def test_another_config_is_refused_unless_overwrite(tmp_path: Path) -> None:
    store = tmp_path / "s"
    old = StoreWriter(store, native_config())
    write_clip(old, "a")
    old.write_manifest()
    other = native_config(tracking={"iou_threshold": 0.5})
    with pytest.raises(StoreConfigError, match=r"another config.*--overwrite"):
        StoreWriter(store, other)
    # also without a manifest (a first run killed before writing one)
    (store / "manifest.json").unlink()
    with pytest.raises(StoreConfigError):
        StoreWriter(store, other)
    new = StoreWriter(store, other, overwrite=True)
    assert not (store / "a").exists() and read_records(store) == {}
    write_clip(new, "b")
    assert list(new.write_manifest()["clips"]) == ["b"]
    StoreWriter(store, other)  # same config again: fine


def test_read_store_with_and_without_semantic(tmp_path: Path) -> None:
    store = tmp_path / "s"
    writer = StoreWriter(store, native_config())
    write_clip(writer, "a")
    write_clip(writer, "b")
    write_clip(writer, "c", status="failed", stems=("00000",))
    sem = store / "b" / "semantic"
    sem.mkdir()
    for i, stem in enumerate(STEMS):
        cv2.imwrite(str(sem / f"{stem}.png"), np.full((4, 6), 255 if i else 7, np.uint8))
    writer.write_manifest()
    clips = read_store(store)
    assert [c.name for c in clips] == ["a", "b"]
    a, b = clips
    assert len(a) == 3 and a.stems == STEMS
    assert a.instance_paths[2] == store / "a" / "instance" / "00002.png"
    inst = a.instance(2)
    assert inst.dtype == np.uint16 and np.array_equal(inst, labels(2))
    assert a.semantic(0) is None and a.semantic_paths is None
    sem0 = b.semantic(0)
    assert sem0 is not None and sem0.dtype == np.uint8 and int(sem0[0, 0]) == 7
    assert b.source == {"kind": "frames", "path": "/data/b"}
    everything = read_store(store, include_failed=True)
    assert [(c.name, c.status) for c in everything] == [
        ("a", "done"),
        ("b", "done"),
        ("c", "failed"),
    ]
    (store / "a" / "instance" / "00001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"00001\.png: missing although clip 'a' is done"):
        read_store(store)


def test_read_store_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no manifest"):
        read_store(tmp_path)
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match="not a vcups pseudo-label manifest"):
        read_store(tmp_path)


def test_store_clip_gives_its_frames_back_at_label_size(tmp_path: Path) -> None:
    folder = write_frames(tmp_path / "walk", 0, 3)
    source = open_frames_clip(folder)
    store = tmp_path / "s"
    writer = StoreWriter(store, native_config())
    write_clip(writer, "walk", source=source.source)
    write_manifest(store, native_config())
    (clip,) = read_store(store)
    frames = list(clip.frames())
    assert [s for s, _ in frames] == list(STEMS)
    expected = cv2.resize(frame_image(0, 1), (6, 4), interpolation=cv2.INTER_AREA)
    assert np.array_equal(frames[1][1].image, expected)
    assert frames[1][1].index == 1
