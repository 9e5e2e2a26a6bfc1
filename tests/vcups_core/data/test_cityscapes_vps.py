"""Cityscapes-VPS: a synthetic round trip, the RGB segment-id encoding by hand, and bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from vcups_core.data import cityscapes_classes as cs
from vcups_core.data.cityscapes_vps import read_cityscapes_vps, write_cityscapes_vps
from vcups_core.data.clip import Clip, LabeledClip, PanopticLabel
from vcups_core.data.predictions import submission_frames, write_predictions
from vcups_core.data.synthetic import SyntheticWorld

FPS = 17.0


def synthetic_clip(name: str, num_frames: int, seed: int) -> LabeledClip:
    """A rendered clip labelled at positions 4, 9, 14, ... as in Cityscapes-VPS."""
    frames = list(SyntheticWorld(height=32, width=64, num_frames=num_frames, seed=seed).frames())
    return LabeledClip(
        name,
        tuple(f.rgb for f in frames),
        tuple(
            PanopticLabel(f.semantic, f.instance) if i % 5 == 4 else None
            for i, f in enumerate(frames)
        ),
    )


@pytest.fixture(scope="module")
def source() -> list[LabeledClip]:
    return [synthetic_clip("1", 30, seed=1), synthetic_clip("2", 10, seed=2)]


@pytest.fixture(scope="module")
def written(source: list[LabeledClip], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vps")
    write_cityscapes_vps(source, root, "val")
    return root


def assert_same_partition(original: list[PanopticLabel], read: list[PanopticLabel | None]) -> None:
    """Same semantics; thing ids a bijection over the whole clip; stuff and void instance 0."""
    pairs: set[tuple[int, int]] = set()
    for a, b in zip(original, read, strict=True):
        assert b is not None
        np.testing.assert_array_equal(b.semantic, a.semantic)
        thing = np.isin(a.semantic, list(cs.THING_IDS))
        assert (b.instance[~thing] == 0).all()
        assert ((a.instance[thing] > 0) == (b.instance[thing] > 0)).all()
        tracked = thing & (a.instance > 0)
        pairs |= set(zip(a.instance[tracked].tolist(), b.instance[tracked].tolist(), strict=True))
    assert len({p[0] for p in pairs}) == len(pairs) == len({p[1] for p in pairs})


def test_round_trip_with_img_all(source: list[LabeledClip], written: Path) -> None:
    clips = list(read_cityscapes_vps(written, "val"))
    assert [c.name for c in clips] == ["0001", "0002"]
    assert all(c.dataset == "cityscapes-vps" for c in clips)
    for clip, src in zip(clips, source, strict=True):
        assert len(clip) == len(src.images)
        assert [f.index for f in clip.frames] == list(range(len(src.images)))
        assert [f.stamp_ns for f in clip.frames] == [round(i * 1e9 / FPS) for i in range(len(clip))]
        assert [f.index for f in clip.annotated] == list(range(4, len(src.images), 5))
        for frame, image in zip(clip.frames, src.images, strict=True):
            np.testing.assert_array_equal(frame.image().image, image)
        read = [f.label() for f in clip.annotated]
        assert all(lb is not None for lb in read)
        assert_same_partition([lb for lb in src.labels if lb is not None], read)
    # the clip of 30 frames has tracks, so the check above is not vacuous
    assert any((lb.instance > 0).any() for f in clips[0].annotated if (lb := f.label()) is not None)


def test_annotated_only_without_img_all(
    source: list[LabeledClip], written: Path, tmp_path: Path
) -> None:
    root = tmp_path / "copy"
    shutil.copytree(written, root)
    shutil.rmtree(root / "val" / "img_all")
    clips = list(read_cityscapes_vps(root, "val"))
    assert [len(c) for c in clips] == [6, 2]
    first = clips[0]
    assert all(f.annotated for f in first.frames)
    assert [f.index for f in first.frames] == list(range(6))
    # stamps keep the snippet positions 4, 9, ..., 29
    assert [f.stamp_ns for f in first.frames] == [round(p * 1e9 / FPS) for p in range(4, 30, 5)]
    np.testing.assert_array_equal(first.frames[1].image().image, source[0].images[9])


def test_file_names_and_json(written: Path) -> None:
    data = json.loads((written / "panoptic_gt_val_city_vps.json").read_text())
    assert len(data["images"]) == len(data["annotations"]) == 8
    assert [c["id"] for c in data["categories"]] == list(range(19))
    first = data["images"][0]
    assert first["id"] == "0001_0001_vcups_000001_000004"
    assert first["file_name"] == "0001_0001_vcups_000001_000004_newImg8bit.png"
    assert data["images"][6]["id"] == "0002_0007_vcups_000002_000004"  # gid runs on
    assert (
        written / "val" / "panoptic_video" / "0001_0001_vcups_000001_000004_final_mask.png"
    ).is_file()
    assert len(list((written / "val" / "img_all").iterdir())) == 40
    for ann in data["annotations"]:
        ids = [s["id"] for s in ann["segments_info"]]
        assert 0 not in ids and len(ids) == len(set(ids))


def write_rgb_ids(path: Path, rgb: list[list[tuple[int, int, int]]]) -> None:
    cv2.imwrite(str(path), np.array(rgb, np.uint8)[:, :, ::-1])


def make_real_like(root: Path) -> None:
    """Video 0001 of frankfurt_000000 (snippet 000275..000304) in the dataset's naming.

    Each image is 2x3 with its frame number in every pixel (mod 256) so frames can be told apart.
    The frame at snippet position 19 is the gtFine one: _leftImg8bit / _gtFine_color.
    """
    for sub in ("img", "img_all", "panoptic_video"):
        (root / "val" / sub).mkdir(parents=True)

    def image(frame: int) -> np.ndarray:
        return np.full((2, 3, 3), frame % 256, np.uint8)

    for frame in [*range(275, 305), 580]:  # 000580 belongs to another snippet of the sequence
        cv2.imwrite(
            str(root / "val" / "img_all" / f"frankfurt_000000_{frame:06d}_leftImg8bit.png"),
            image(frame),
        )
    images, annotations = [], []
    for gid, frame in enumerate(range(279, 305, 5), start=1):
        image_id = f"0001_{gid:04d}_frankfurt_000000_{frame:06d}"
        gt = frame == 294
        img_name = f"{image_id}_{'leftImg8bit' if gt else 'newImg8bit'}.png"
        lbl_name = f"{image_id}_{'gtFine_color' if gt else 'final_mask'}.png"
        cv2.imwrite(str(root / "val" / "img" / img_name), image(frame))
        # ids: 0 void, 7 road, 256 car, 65536 person, 2000 crowd car
        write_rgb_ids(
            root / "val" / "panoptic_video" / lbl_name,
            [[(0, 0, 0), (7, 0, 0), (0, 1, 0)], [(0, 0, 1), (208, 7, 0), (0, 1, 0)]],
        )
        images.append({"id": image_id, "width": 3, "height": 2, "file_name": img_name})
        annotations.append(
            {
                "image_id": image_id,
                "file_name": lbl_name,
                "segments_info": [
                    {"id": 7, "category_id": cs.ROAD, "iscrowd": 0, "area": 1},
                    {"id": 256, "category_id": cs.CAR, "iscrowd": 0, "area": 2},
                    {"id": 65536, "category_id": cs.PERSON, "iscrowd": 0, "area": 1},
                    {"id": 2000, "category_id": cs.CAR, "iscrowd": 1, "area": 1},
                ],
            }
        )
    data = {"images": images, "annotations": annotations, "categories": []}
    (root / "panoptic_gt_val_city_vps.json").write_text(json.dumps(data))


def test_real_naming_and_rgb_id_encoding(tmp_path: Path) -> None:
    make_real_like(tmp_path)
    (clip,) = list(read_cityscapes_vps(tmp_path))
    assert clip.name == "0001"
    assert len(clip) == 30  # 000580 is not part of the snippet
    assert [f.index for f in clip.annotated] == [4, 9, 14, 19, 24, 29]
    assert [int(f.image().image[0, 0, 0]) for f in clip.frames] == [
        f % 256 for f in range(275, 305)
    ]
    assert clip.frames[19].image_path.name.endswith("_leftImg8bit.png")
    assert clip.frames[19].image_path.parent.name == "img"
    label = clip.frames[19].label()
    assert label is not None
    # segment id = R + 256 G + 256^2 B: 7 road, 256 car (track 1), 65536 person (track 2), 2000 crowd
    np.testing.assert_array_equal(
        label.semantic, [[255, cs.ROAD, cs.CAR], [cs.PERSON, cs.CAR, cs.CAR]]
    )
    np.testing.assert_array_equal(label.instance, [[0, 0, 1], [2, 0, 1]])
    assert label.semantic.dtype == np.uint8 and label.instance.dtype == np.int32


def test_writer_segment_id_scheme(tmp_path: Path) -> None:
    semantic = np.array([[cs.ROAD, cs.CAR, cs.CAR], [cs.PERSON, 255, cs.CAR]], np.uint8)
    instance = np.array([[0, 5, 5], [9, 0, 0]], np.int32)
    image = np.zeros((2, 3, 3), np.uint8)
    clip = LabeledClip("7", (image,) * 5, (None,) * 4 + (PanopticLabel(semantic, instance),))
    write_cityscapes_vps([clip], tmp_path, "train")
    bgr = cv2.imread(
        str(tmp_path / "train" / "panoptic_video" / "0007_0001_vcups_000007_000004_final_mask.png")
    )
    rgb = bgr[:, :, ::-1].astype(int)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    # road (0+1)*1000; car track 5 = rank 1 -> 14001; person track 9 = rank 2 -> 12002;
    # car without track -> 14000 (crowd); void 0
    np.testing.assert_array_equal(ids, [[1000, 14001, 14001], [12002, 0, 14000]])
    assert rgb[0, 1].tolist() == [14001 % 256, 14001 // 256, 0]
    data = json.loads((tmp_path / "panoptic_gt_train_city_vps.json").read_text())
    infos = {s["id"]: s for s in data["annotations"][0]["segments_info"]}
    assert infos[14000]["iscrowd"] == 1 and infos[14001]["iscrowd"] == 0
    assert infos[14001]["area"] == 2 and infos[1000]["category_id"] == cs.ROAD
    (read,) = list(read_cityscapes_vps(tmp_path, "train"))
    label = read.frames[4].label()
    assert label is not None
    np.testing.assert_array_equal(label.semantic, semantic)
    np.testing.assert_array_equal(label.instance, [[0, 2, 2], [1, 0, 0]])  # 12002 < 14001


def test_missing_json_and_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"panoptic_gt_val_city_vps\.json"):
        read_cityscapes_vps(tmp_path)
    (tmp_path / "panoptic_gt_val_city_vps.json").write_text('{"images": [], "annotations": []}')
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "val" / "img"))):
        read_cityscapes_vps(tmp_path)


def test_segment_id_missing_from_segments_info(tmp_path: Path) -> None:
    make_real_like(tmp_path)
    bad = tmp_path / "val" / "panoptic_video" / "0001_0002_frankfurt_000000_000284_final_mask.png"
    write_rgb_ids(bad, [[(0, 0, 0), (9, 0, 0), (0, 1, 0)], [(0, 0, 1), (208, 7, 0), (0, 1, 0)]])
    (clip,) = list(read_cityscapes_vps(tmp_path))
    with pytest.raises(
        ValueError, match=r"0001_0002_frankfurt_000000_000284_final_mask\.png.*segment id 9\b"
    ):
        clip.frames[9].label()


def test_bad_json_category(tmp_path: Path) -> None:
    make_real_like(tmp_path)
    path = tmp_path / "panoptic_gt_val_city_vps.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["segments_info"][0]["category_id"] = 19
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="category_id expected in"):
        read_cityscapes_vps(tmp_path)


def test_writer_rejects_other_label_positions(tmp_path: Path) -> None:
    image = np.zeros((2, 3, 3), np.uint8)
    label = PanopticLabel.void(2, 3)
    clip = LabeledClip("1", (image,) * 5, (label, None, None, None, None))
    with pytest.raises(ValueError, match=r"positions \[4\]"):
        write_cityscapes_vps([clip], tmp_path)
    with pytest.raises(ValueError, match="video number"):
        write_cityscapes_vps([LabeledClip("a", (), ())], tmp_path)


def test_clip_type(written: Path) -> None:
    clip = next(read_cityscapes_vps(written))
    assert isinstance(clip, Clip)
    assert clip.frames[0].image_path.parent.name == "img_all"
    assert clip.frames[4].image_path.parent.name == "img"


def json_entries(path: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(id, file_name)`` of the images and ``(image_id, file_name)`` of the annotations."""
    data = json.loads(path.read_text())
    images = [(i["id"], i["file_name"]) for i in data["images"]]
    return images, [(a["image_id"], a["file_name"]) for a in data.get("annotations", [])]


def test_predictions_carry_the_ground_truths_ids_and_file_names(tmp_path: Path) -> None:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    make_real_like(gt)
    (clip,) = list(read_cityscapes_vps(gt))
    labels = {f.index: f.label() for f in clip.annotated}
    write_predictions("cityscapes-vps", [(clip, labels)], pred, "val")
    # the JSON lists the ground truth's ids and file names, in its order
    gt_json, pred_json = (r / "panoptic_gt_val_city_vps.json" for r in (gt, pred))
    assert json_entries(pred_json) == json_entries(gt_json)
    assert json_entries(pred_json)[0][3] == (
        "0001_0004_frankfurt_000000_000294",
        "0001_0004_frankfurt_000000_000294_leftImg8bit.png",  # the gtFine frame keeps its suffix
    )
    for sub in ("img", "panoptic_video"):
        names = sorted(p.name for p in (pred / "val" / sub).iterdir())
        assert names == sorted(p.name for p in (gt / "val" / sub).iterdir())
    snippet = {f"frankfurt_000000_{n:06d}_leftImg8bit.png" for n in range(275, 305)}
    assert {p.name for p in (pred / "val" / "img_all").iterdir()} == snippet  # not 000580
    # ... and reads back through the reader as the ground truth's clip
    (back,) = list(read_cityscapes_vps(pred))
    assert back.name == "0001" and len(back) == 30
    assert [f.stamp_ns for f in back.frames] == [f.stamp_ns for f in clip.frames]
    assert [f.image_id for f in back.frames] == [f.image_id for f in clip.frames]
    assert [f.index for f in back.annotated] == [4, 9, 14, 19, 24, 29]
    label = back.frames[19].label()
    assert label is not None
    np.testing.assert_array_equal(
        label.semantic, [[255, cs.ROAD, cs.CAR], [cs.PERSON, cs.CAR, cs.CAR]]
    )
    # written ids: person track 2 -> 12002, car track 1 -> 14001, crowd car 14000; the reader
    # numbers the non-crowd thing ids in ascending order: person 1, car 2
    np.testing.assert_array_equal(label.instance, [[0, 0, 2], [1, 0, 2]])


def test_official_vpq_submission_files(tmp_path: Path) -> None:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    make_real_like(gt)
    (clip,) = list(read_cityscapes_vps(gt))
    write_predictions("cityscapes-vps", [(clip, {9: clip.frames[9].label()})], pred, "val")
    submission = json.loads((pred / "val" / "pred.json").read_text())
    (ann,) = submission["annotations"]
    assert ann["image_id"] == "0001_0002_frankfurt_000000_000284"
    assert ann["file_name"] == "0001_0002_frankfurt_000000_000284.png"
    rgb = cv2.imread(str(pred / "val" / "pan_pred" / ann["file_name"]))[:, :, ::-1].astype(int)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    # road 1000, car track 1 14001, person track 2 12002, crowd car 14000, void 0
    np.testing.assert_array_equal(ids, [[0, 1000, 14001], [12002, 14000, 14001]])
    infos = {s["id"]: (s["category_id"], s["iscrowd"]) for s in ann["segments_info"]}
    assert infos == {
        1000: (cs.ROAD, 0),
        12002: (cs.PERSON, 0),
        14000: (cs.CAR, 1),
        14001: (cs.CAR, 0),
    }
    # the images the JSON lists are all there, labelled or not (one annotation)
    images, annotations = json_entries(pred / "panoptic_gt_val_city_vps.json")
    assert len(images) == 6 and annotations == [
        (ann["image_id"], f"{ann['image_id']}_final_mask.png")
    ]


def test_a_test_split_lists_its_frames_without_labels(tmp_path: Path) -> None:
    make_real_like(tmp_path / "gt")
    root = tmp_path / "gt"
    (root / "val").rename(root / "test")
    data = json.loads((root / "panoptic_gt_val_city_vps.json").read_text())
    del data["annotations"]
    (root / "panoptic_im_test_city_vps.json").write_text(json.dumps(data))
    (root / "panoptic_gt_val_city_vps.json").unlink()
    (clip,) = list(read_cityscapes_vps(root, "test"))
    assert len(clip) == 30 and not clip.annotated
    listed = submission_frames(clip)
    assert [f.index for f in listed] == [4, 9, 14, 19, 24, 29]
    assert listed[0].image_id == "0001_0001_frankfurt_000000_000279"
    label = PanopticLabel(np.full((2, 3), cs.ROAD, np.uint8), np.zeros((2, 3), np.int32))
    write_predictions(
        "cityscapes-vps", [(clip, {f.index: label for f in listed})], tmp_path / "p", "test"
    )
    (back,) = list(read_cityscapes_vps(tmp_path / "p", "test"))
    assert [f.image_id for f in back.annotated] == [f.image_id for f in listed]
    with pytest.raises(FileNotFoundError, match=r"nor panoptic_im_val_city_vps\.json"):
        read_cityscapes_vps(root, "val")


def test_a_label_needs_an_image_id(tmp_path: Path) -> None:
    make_real_like(tmp_path / "gt")
    (clip,) = list(read_cityscapes_vps(tmp_path / "gt"))
    label = clip.frames[4].label()
    assert label is not None
    with pytest.raises(ValueError, match="frame 3: a label on a frame without an image id"):
        write_predictions("cityscapes-vps", [(clip, {3: label})], tmp_path / "p", "val")
