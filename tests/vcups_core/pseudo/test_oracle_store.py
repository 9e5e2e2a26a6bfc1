"""Oracle pseudo-labels: a synthetic bag's ground truth as a pseudo-label store."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from vcups_core.data.oracle import STUFF_CLASSES, THING_CLASSES
from vcups_core.data.rosbag import GT_TOPICS, BagWriter, write_synthetic_bag
from vcups_core.data.synthetic import SyntheticFrame, SyntheticWorld
from vcups_core.pseudo.oracle_store import (
    ORACLE_LABELS,
    OracleLabelConfig,
    write_oracle_store,
)
from vcups_core.pseudo.store import (
    StoreConfigError,
    StoreWriter,
    build_manifest,
    fixed_split,
    read_manifest,
    read_records,
    read_store,
)

TOPIC = "/camera/image_raw"


def world() -> SyntheticWorld:
    return SyntheticWorld(height=32, width=64, num_frames=4, seed=0)


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_bag(world(), tmp_path_factory.mktemp("bags") / "drive")


@pytest.fixture(scope="module")
def truth() -> list[SyntheticFrame]:
    return list(world().frames())


def thing_ids(frame: SyntheticFrame) -> list[int]:
    things = np.isin(frame.semantic, THING_CLASSES)
    return sorted(int(t) for t in np.unique(frame.instance[things]) if t)


def test_the_store_holds_the_ground_truth(
    bag: Path, truth: list[SyntheticFrame], tmp_path: Path
) -> None:
    store = write_oracle_store(bag, tmp_path / "store", topic=TOPIC)
    clips = read_store(store)
    assert [c.name for c in clips] == ["drive"]
    clip = clips[0]
    assert clip.stems == tuple(str(f.stamp_ns) for f in truth)
    assert (clip.height, clip.width) == (32, 64)
    assert clip.thing_classes == THING_CLASSES
    assert clip.stuff_classes == STUFF_CLASSES
    assert clip.source == {"kind": "bag", "path": str(bag.resolve()), "topic": TOPIC}
    frames = list(clip.frames())
    assert len(frames) == len(truth)
    seen_person = False
    for i, ((stem, frame), gt) in enumerate(zip(frames, truth, strict=True)):
        assert stem == str(gt.stamp_ns)
        np.testing.assert_array_equal(frame.image, gt.rgb)
        np.testing.assert_array_equal(clip.semantic(i), gt.semantic)
        targets = clip.targets(i)
        ids = thing_ids(gt)
        assert ids and targets.track_ids.tolist() == ids
        for k, track in enumerate(ids):
            mask = gt.instance == track
            np.testing.assert_array_equal(targets.masks[k], mask)
            category = int(gt.semantic[mask][0])
            assert targets.classes[k] == THING_CLASSES.index(category)
            seen_person |= category == THING_CLASSES[1]
        # stuff pixels keep their class; no pixel of the world is void
        assert int(targets.sem_seg.max()) <= len(STUFF_CLASSES)
    assert seen_person  # both thing classes are exercised


def test_the_manifest_says_oracle(bag: Path, tmp_path: Path) -> None:
    manifest = read_manifest(write_oracle_store([bag], tmp_path / "store", topic=TOPIC))
    assert manifest["labels"] == ORACLE_LABELS
    assert manifest["config"]["labels"] == ORACLE_LABELS
    assert set(manifest["cue_backends"].values()) == {"oracle"}
    assert manifest["thing_classes"] == list(THING_CLASSES)
    assert manifest["stuff_classes"] == list(STUFF_CLASSES)
    stats = manifest["thing_stuff"]
    for c in THING_CLASSES:  # every thing pixel lies inside an instance
        assert stats["n_in"][c] == stats["n_all"][c]
    assert not any(stats["n_in"][c] for c in STUFF_CLASSES)
    assert manifest["summary"]["done"] == 1 and manifest["summary"]["frames"] == 4
    assert not (tmp_path / "store" / ".tmp").exists()


def test_a_rerun_skips_the_finished_clip(bag: Path, tmp_path: Path) -> None:
    store = write_oracle_store(bag, tmp_path / "store", topic=TOPIC)
    files = [*sorted((store / "drive").rglob("*.png")), store / ".status" / "drive.json"]
    assert len(files) == 9
    before = {p: p.stat().st_mtime_ns for p in files}
    write_oracle_store(bag, store, topic=TOPIC)
    assert {p: p.stat().st_mtime_ns for p in files} == before
    assert read_manifest(store)["labels"] == ORACLE_LABELS
    # a missing label file makes the clip unfinished: it is redone from scratch
    os.unlink(files[0])
    write_oracle_store(bag, store, topic=TOPIC)
    assert files[0].is_file()
    assert read_manifest(store)["summary"]["done"] == 1


def test_labels_are_resized_like_the_pipeline(
    bag: Path, truth: list[SyntheticFrame], tmp_path: Path
) -> None:
    store = write_oracle_store(bag, tmp_path / "s", cfg=OracleLabelConfig(height=16, width=0))
    clip = read_store(store)[0]
    assert (clip.height, clip.width) == (16, 32)
    (_, frame), *_ = clip.frames()
    assert frame.image.shape == (16, 32, 3)
    np.testing.assert_array_equal(clip.semantic(0), truth[0].semantic[::2, ::2])
    targets = clip.targets(0)
    assert targets.masks.shape[1:] == (16, 32) and len(targets) > 0


def test_a_bag_without_ground_truth_is_refused(tmp_path: Path) -> None:
    bag = write_synthetic_bag(world(), tmp_path / "plain", ground_truth=False)
    with pytest.raises(ValueError, match=r"no ground-truth topic '/gt/instance'") as info:
        write_oracle_store(bag, tmp_path / "store", topic=TOPIC)
    assert str(bag) in str(info.value)
    assert not (tmp_path / "store").exists()


def test_a_frame_without_ground_truth_fails_its_clip(
    bag: Path, truth: list[SyntheticFrame], tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    with BagWriter(broken) as writer:
        for i, frame in enumerate(truth):
            stamp = frame.stamp_ns
            writer.write_rgb(TOPIC, frame.rgb, stamp, "camera")
            writer.write_array(GT_TOPICS["semantic"], frame.semantic, "mono8", stamp, "camera")
            if i != 2:  # frame 2 has no instance ground truth
                instance = frame.instance.astype(np.uint16)
                writer.write_array(GT_TOPICS["instance"], instance, "16UC1", stamp, "camera")
    store = write_oracle_store([bag, broken], tmp_path / "store", topic=TOPIC)
    manifest = read_manifest(store)
    entry = manifest["clips"]["broken"]
    assert entry["status"] == "failed"
    assert f"/gt/instance has no message stamped {truth[2].stamp_ns}" in entry["error"]
    assert manifest["clips"]["drive"]["status"] == "done"
    assert [c.name for c in read_store(store)] == ["drive"]


def test_a_store_of_another_config_is_refused(bag: Path, tmp_path: Path) -> None:
    store = write_oracle_store(bag, tmp_path / "store", topic=TOPIC)
    with pytest.raises(StoreConfigError, match="another config"):
        write_oracle_store(bag, store, topic=TOPIC, cfg=OracleLabelConfig(height=16, width=32))
    write_oracle_store(
        bag, store, topic=TOPIC, cfg=OracleLabelConfig(height=16, width=32), overwrite=True
    )
    assert read_store(store)[0].height == 16


def test_fixed_split_from_a_mapping_config(tmp_path: Path) -> None:
    cfg = {"fixed_split": {"thing_classes": [5, 1], "stuff_classes": [0, 2]}}
    assert fixed_split(cfg) == ((5, 1), (0, 2))
    assert fixed_split({"height": 3}) is None
    manifest = build_manifest(tmp_path, cfg)
    assert (manifest["thing_classes"], manifest["stuff_classes"]) == ([5, 1], [0, 2])
    assert "thing_stuff" not in manifest  # no record has a statistic
    with pytest.raises(ValueError, match="disjoint"):
        fixed_split({"fixed_split": {"thing_classes": [1], "stuff_classes": [1]}})
    with pytest.raises(ValueError, match="expected thing_classes and stuff_classes"):
        fixed_split({"fixed_split": {"thing_classes": [1]}})


def test_extra_manifest_keys_cannot_replace_owned_ones(tmp_path: Path) -> None:
    writer = StoreWriter(tmp_path, OracleLabelConfig())
    assert writer.write_manifest(extra={"note": "x"})["note"] == "x"
    assert writer.write_manifest()["note"] == "x"  # kept by a rebuild under the same config
    with pytest.raises(ValueError, match="owned by the store"):
        writer.write_manifest(extra={"clips": {}})
    assert read_records(tmp_path) == {}
