"""Ground-truth stores for label-efficient fine-tuning (tiny synthetic KITTI-STEP, Cityscapes-VPS)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from training.synth import labeled_clip
from vcups_core.data.cityscapes_vps import write_cityscapes_vps
from vcups_core.data.clip import ClipFrame, PanopticLabel, read_rgb
from vcups_core.data.datasets import KITTI_STEP, WAYMO, get_descriptor
from vcups_core.data.kitti_step import write_kitti_step
from vcups_core.data.registry import open_dataset
from vcups_core.data.synthetic import SyntheticWorld
from vcups_core.pseudo.store import (
    StoreConfigError,
    read_manifest,
    read_records,
    read_store,
)
from vcups_core.train.data import StoreIndex
from vcups_core.train.finetune import (
    GT_LABELS,
    clip_track_ids,
    finetune_store,
    frames_root,
    ground_truth_maps,
)
from vcups_core.types import IGNORE_LABEL


@pytest.fixture(scope="module")
def kitti(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kitti-step")
    world = SyntheticWorld(height=32, width=64, num_frames=4, seed=0)
    write_kitti_step([labeled_clip(world, every=1)], root, split="val")
    return root


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The Cityscapes-VPS writer wants labels on every 5th frame (positions 4, 9): 2 of 10 frames.
    root = tmp_path_factory.mktemp("cityscapes-vps")
    world = SyntheticWorld(height=32, width=64, num_frames=10, seed=0)
    write_cityscapes_vps([labeled_clip(world, every=5)], root, split="val")
    return root


@pytest.fixture
def roots(kitti: Path, cityscapes: Path) -> dict[str, Path]:
    return {"kitti-step": kitti, "cityscapes-vps": cityscapes}


def expected_sem_seg(
    semantic: npt.NDArray[np.uint8], things: tuple[int, ...], stuff: tuple[int, ...]
) -> npt.NDArray[np.uint8]:
    lut = np.full(256, IGNORE_LABEL, np.uint8)
    lut[list(things)] = 0
    lut[list(stuff)] = np.arange(1, len(stuff) + 1)
    return lut[semantic]


@pytest.mark.parametrize("name", ["kitti-step", "cityscapes-vps"])
def test_the_store_holds_the_annotated_frames_ground_truth(
    name: str, roots: dict[str, Path], tmp_path: Path
) -> None:
    root = roots[name]
    descriptor = get_descriptor(name)
    store = finetune_store(f"{name}:{root}", "val", tmp_path / "gt_store")
    assert store == tmp_path / "gt_store"
    dataset = list(open_dataset(name, root, "val"))
    clips = read_store(store)
    assert [c.name for c in clips] == [c.name for c in dataset]

    things = tuple(sorted(descriptor.thing_ids))
    stuff = tuple(sorted(descriptor.stuff_ids))
    manifest = read_manifest(store)
    assert manifest["labels"] == GT_LABELS
    assert manifest["frames"] == str(frames_root(store).resolve())
    assert manifest["summary"]["done"] == len(dataset)
    assert (manifest["height"], manifest["width"]) == (32, 64)

    instances = 0
    for clip, source in zip(clips, dataset, strict=True):
        annotated = source.annotated
        if name == "cityscapes-vps":
            assert (len(source.frames), len(annotated)) == (10, 2)
        else:
            assert len(annotated) == len(source.frames) == 4
        assert clip.thing_classes == things and clip.stuff_classes == stuff
        assert clip.stems == tuple(f"{f.stamp_ns:019d}" for f in annotated)
        assert clip.source == {
            "kind": "frames",
            "path": str((frames_root(store) / clip.name).resolve()),
        }
        assert (clip.height, clip.width) == (32, 64)

        read = list(clip.frames())
        assert [stem for stem, _ in read] == list(clip.stems)
        for (_, frame), truth in zip(read, annotated, strict=True):
            np.testing.assert_array_equal(frame.image, read_rgb(truth.image_path))

        for i, frame in enumerate(annotated):
            label = frame.label()
            assert label is not None
            thing_pixels = np.isin(label.semantic, things) & (label.instance > 0)
            ids = sorted(int(t) for t in np.unique(label.instance[thing_pixels]))
            instances += len(ids)
            semantic = clip.semantic(i)
            assert semantic is not None
            np.testing.assert_array_equal(semantic, label.semantic)
            np.testing.assert_array_equal(
                clip.instance(i), np.where(thing_pixels, label.instance, 0)
            )
            targets = clip.targets(i)
            assert targets.track_ids.tolist() == ids
            for mask, track in zip(targets.masks, ids, strict=True):
                np.testing.assert_array_equal(mask, thing_pixels & (label.instance == track))
            classes = [things[c] for c in targets.classes]
            assert classes == [
                int(np.bincount(label.semantic[thing_pixels & (label.instance == t)]).argmax())
                for t in ids
            ]
            np.testing.assert_array_equal(
                targets.sem_seg, expected_sem_seg(label.semantic, things, stuff)
            )
    assert instances > 0

    records = read_records(store)
    assert all(
        r.backends == {"instances": GT_LABELS, "semantics": GT_LABELS} for r in records.values()
    )
    assert all(r.thing_stuff is not None for r in records.values())


def test_the_training_index_reads_the_store(kitti: Path, tmp_path: Path) -> None:
    store = finetune_store(f"kitti-step:{kitti}", None, tmp_path / "gt_store")
    index = StoreIndex.build(store, tmp_path / "cache")
    assert index.thing_classes == tuple(sorted(KITTI_STEP.thing_ids))
    assert len(index) == 4


def _mtimes(*folders: Path) -> dict[Path, int]:
    return {
        p: p.stat().st_mtime_ns
        for folder in folders
        for p in folder.rglob("*")
        if p.is_file() and p.name not in ("manifest.json", ".lock")
    }


def test_a_rerun_skips_finished_clips_and_redoes_damaged_ones(
    cityscapes: Path, tmp_path: Path
) -> None:
    store = tmp_path / "gt_store"
    finetune_store(f"cityscapes-vps:{cityscapes}", "val", store)
    before = _mtimes(store, frames_root(store))
    assert len(before) > 4
    finetune_store(f"cityscapes-vps:{cityscapes}", "val", store)
    assert _mtimes(store, frames_root(store)) == before

    clip = read_store(store)[0]
    (frames_root(store) / clip.name / f"{clip.stems[0]}.png").unlink()
    finetune_store(f"cityscapes-vps:{cityscapes}", "val", store)
    again = read_store(store)[0]
    assert again.stems == clip.stems
    assert len(list(again.frames())) == len(clip.stems)


def test_another_dataset_into_the_same_store_needs_overwrite(
    kitti: Path, cityscapes: Path, tmp_path: Path
) -> None:
    store = tmp_path / "gt_store"
    finetune_store(f"kitti-step:{kitti}", "val", store)
    with pytest.raises(StoreConfigError, match="another config"):
        finetune_store(f"cityscapes-vps:{cityscapes}", "val", store)
    finetune_store(f"cityscapes-vps:{cityscapes}", "val", store, overwrite=True)
    clips = read_store(store)
    assert len(clips) == 1 and len(clips[0]) == 2
    assert len(list(clips[0].frames())) == 2


def test_bad_dataset_arguments_are_clear(kitti: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'nope'.*kitti-step"):
        finetune_store(f"nope:{kitti}", None, tmp_path / "s")
    with pytest.raises(FileNotFoundError, match="kitti-step dataset root not found"):
        finetune_store(f"kitti-step:{tmp_path / 'missing'}", None, tmp_path / "s")
    with pytest.raises(ValueError, match="NAME:ROOT"):
        finetune_store("kitti-step", None, tmp_path / "s")
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        finetune_store(f"kitti-step:{kitti}", "train", tmp_path / "s")


def test_the_split_without_annotations_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "kitti"
    world = SyntheticWorld(height=32, width=64, num_frames=2, seed=0)
    clip = labeled_clip(world, every=1)
    write_kitti_step([type(clip)(clip.name, clip.images, (None, None))], root, split="test")
    with pytest.raises(ValueError, match="no annotated frame"):
        finetune_store(f"kitti-step:{root}", "test", tmp_path / "s")


def _frame(label: PanopticLabel, index: int) -> ClipFrame:
    return ClipFrame(index, index, Path(f"{index}.png"), lambda: label)


def test_large_instance_ids_are_renumbered_consistently() -> None:
    sem = np.full((2, 3), 13, np.uint8)
    sem[0, 0] = 0  # road: its instance id is dropped
    a = PanopticLabel(sem, np.array([[9, 70000, 70000], [5, 5, 0]], np.int32))
    b = PanopticLabel(sem, np.array([[1, 5, 5], [70000, 0, 0]], np.int32))
    ids = clip_track_ids([_frame(a, 0), _frame(b, 1)], KITTI_STEP)
    assert ids is not None and ids.tolist() == [5, 70000]
    _, inst_a = ground_truth_maps(a, KITTI_STEP, ids)
    _, inst_b = ground_truth_maps(b, KITTI_STEP, ids)
    assert inst_a.dtype == np.uint16
    assert inst_a.tolist() == [[0, 2, 2], [1, 1, 0]]
    assert inst_b.tolist() == [[0, 1, 1], [2, 0, 0]]
    small = PanopticLabel(sem, np.array([[0, 7, 7], [65535, 0, 0]], np.int32))
    assert clip_track_ids([_frame(small, 0)], KITTI_STEP) is None
    assert ground_truth_maps(small, KITTI_STEP)[1].tolist() == [[0, 7, 7], [65535, 0, 0]]


def test_classes_the_dataset_does_not_evaluate_are_void() -> None:
    sem = np.array([[3, 4, 9, 0, 255, 13]], np.uint8)  # wall, fence, terrain are not in Waymo
    label = PanopticLabel(sem, np.array([[0, 0, 0, 0, 0, 2]], np.int32))
    semantic, instance = ground_truth_maps(label, WAYMO)
    assert semantic.tolist() == [[255, 255, 255, 0, 255, 13]]
    assert instance.tolist() == [[0, 0, 0, 0, 0, 2]]
