"""Pseudo-label sources: frame folders, bags (with and without camera info) and datasets."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from pseudo_fakes import (
    HEIGHT,
    WIDTH,
    frame_image,
    read_png,
    truncate,
    write_davis,
    write_frames,
)

from vcups_core.data.rosbag import BagWriter
from vcups_core.pseudo.sources import (
    FOLDER_FRAME_PERIOD_NS,
    SourceSpec,
    assumed_intrinsics,
    camera_info_topic,
    open_source,
    processing_size,
    read_image,
    reopen_clip,
    scale_intrinsics,
)

CAM = "/cam/image_raw"
STAMPS = [7_000_000_000 + i * 50_000_000 for i in range(3)]
K = np.array([[40.0, 0.0, 23.5], [0.0, 41.0, 15.5], [0.0, 0.0, 1.0]])


def write_bag(path: Path, *, camera_info: bool = True) -> Path:
    with BagWriter(path, "mcap") as bag:
        for i, stamp in enumerate(STAMPS):
            bag.write_rgb(CAM, frame_image(0, i), stamp, "cam")
            if camera_info:
                bag.write_camera_info("/cam/camera_info", K, HEIGHT, WIDTH, stamp, "cam")
    return path


def test_frames_folder_in_name_order(tmp_path: Path) -> None:
    folder = write_frames(tmp_path / "walk", 0, 3)
    (folder / "00001.png").rename(folder / "00001.JPG.png")  # odd names still sort by name
    (folder / "notes.txt").write_text("not a frame")
    (folder / ".hidden.png").write_bytes(b"")
    (clip,) = open_source(SourceSpec.frames(folder))
    assert clip.name == "walk"
    assert clip.stems == ("00000", "00001.JPG", "00002")
    assert len(clip) == 3 and clip.intrinsics is None and clip.native_size is None
    assert clip.source == {"kind": "frames", "path": str(folder.resolve())}
    got = list(clip.frames())
    assert [s for s, _ in got] == list(clip.stems)
    assert [f.index for _, f in got] == [0, 1, 2]
    assert [f.stamp_ns for _, f in got] == [0, FOLDER_FRAME_PERIOD_NS, 2 * FOLDER_FRAME_PERIOD_NS]
    for i, (_, frame) in enumerate(got):
        assert np.array_equal(frame.image, frame_image(0, i))  # RGB, lossless


def test_frames_named_by_stamp_keep_their_stamps(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for stamp in STAMPS:
        cv2.imwrite(str(folder / f"{stamp:019d}.png"), frame_image(0, 0))
    (clip,) = open_source(SourceSpec.frames(folder))
    assert [f.stamp_ns for _, f in clip.frames()] == STAMPS


def test_frames_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder"):
        open_source(SourceSpec.frames(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        open_source(SourceSpec.frames(tmp_path / "empty"))
    a = write_frames(tmp_path / "a" / "same", 0, 2)
    b = write_frames(tmp_path / "b" / "same", 1, 2)
    with pytest.raises(ValueError, match="two clips are named 'same'"):
        open_source(SourceSpec.frames([a, b]))


def test_damaged_frames_fail_while_reading_and_name_the_file(tmp_path: Path) -> None:
    folder = write_frames(tmp_path / "c", 0, 3, ".jpg")
    truncate(folder / "00001.jpg")
    (clip,) = open_source(SourceSpec.frames(folder))  # opening does not decode
    frames = clip.frames()
    assert next(frames)[0] == "00000"
    with pytest.raises(ValueError, match=r"00001\.jpg: truncated JPEG"):
        next(frames)
    png = write_frames(tmp_path / "p", 0, 1)
    truncate(png / "00000.png")
    with pytest.raises(ValueError, match=r"00000\.png: damaged"):
        read_image(png / "00000.png")
    (png / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        read_image(png / "empty.png")
    with pytest.raises(FileNotFoundError):
        read_image(png / "missing.png")


def test_bag_clip_with_camera_info(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "drive_01")
    (clip,) = open_source(SourceSpec.bag(bag, CAM))
    assert clip.name == "drive_01"
    assert len(clip) == 3
    assert clip.stems == tuple(str(s) for s in STAMPS)
    assert clip.native_size == (HEIGHT, WIDTH)
    assert clip.intrinsics is not None and np.allclose(clip.intrinsics, K)
    assert clip.source == {"kind": "bag", "path": str(bag.resolve()), "topic": CAM}
    for i, (stem, frame) in enumerate(clip.frames()):
        assert stem == str(STAMPS[i]) and frame.stamp_ns == STAMPS[i]
        assert np.array_equal(frame.image, frame_image(0, i))


def test_bag_without_camera_info_and_missing_topic(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "plain", camera_info=False)
    (clip,) = open_source(SourceSpec.bag(bag, CAM))
    assert clip.intrinsics is None and clip.native_size is None
    with pytest.raises(ValueError, match=r"no topic '/nope'; topics in the bag: /cam/image_raw"):
        open_source(SourceSpec.bag(bag, "/nope"))
    with pytest.raises(FileNotFoundError, match="no such bag"):
        open_source(SourceSpec.bag(tmp_path / "missing", CAM))


def test_camera_info_topic_next_to_the_image_topic() -> None:
    info = "sensor_msgs/msg/CameraInfo"
    topics = [("/a/camera_info", info), ("/b/camera_info", info), ("/b/image/camera_info", info)]
    assert camera_info_topic(topics, "/a/image_raw") == "/a/camera_info"
    assert camera_info_topic(topics, "/b/image") == "/b/camera_info"
    assert camera_info_topic(topics[:2], "/b/image/compressed") == "/b/camera_info"
    assert camera_info_topic(topics, "/c/image_raw") is None  # several, none next to it
    assert camera_info_topic(topics[:1], "/c/image_raw") == "/a/camera_info"  # the only one
    assert camera_info_topic([], "/image") is None


def test_dataset_clips_and_reopen(tmp_path: Path) -> None:
    root = write_davis(tmp_path / "davis", clips=2, frames=3)
    clips = open_source(SourceSpec.parse_dataset(f"davis:{root}"))
    assert [c.name for c in clips] == ["seq0", "seq1"]
    assert clips[1].stems == ("00000", "00001", "00002")
    frames = list(clips[1].frames())
    assert frames[2][1].index == 2
    decoded = read_png(root / "seq1" / "images" / "00002.jpg", cv2.IMREAD_COLOR)[:, :, ::-1]
    assert np.array_equal(frames[2][1].image, decoded)  # RGB order
    again = reopen_clip(clips[1].source)
    assert again.name == "seq1" and again.stems == clips[1].stems
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        open_source(SourceSpec.parse_dataset(f"nope:{root}"))
    with pytest.raises(ValueError, match="NAME:ROOT"):
        SourceSpec.parse_dataset("davis")
    with pytest.raises(FileNotFoundError):
        open_source(SourceSpec.parse_dataset(f"davis:{tmp_path / 'none'}"))


def test_spec_needs_a_topic_for_bags() -> None:
    with pytest.raises(ValueError, match="topic"):
        SourceSpec("bag", (Path("x"),))


def test_processing_geometry() -> None:
    assert processing_size((480, 640), 0, 0) == (480, 640)
    assert processing_size((480, 640), 240, 0) == (240, 320)
    assert processing_size((480, 640), 0, 320) == (240, 320)
    assert processing_size((480, 640), 100, 200) == (100, 200)
    k = np.array([[500.0, 0.0, 319.5], [0.0, 500.0, 239.5], [0.0, 0.0, 1.0]])
    half = scale_intrinsics(k, (480, 640), (240, 320))
    # the image centre stays the centre: (640 - 1) / 2 -> (320 - 1) / 2
    assert np.allclose(half, [[250.0, 0.0, 159.5], [0.0, 250.0, 119.5], [0.0, 0.0, 1.0]])
    k90 = assumed_intrinsics((30, 40), hfov_deg=90.0)
    assert np.allclose(k90, [[20.0, 0.0, 19.5], [0.0, 20.0, 14.5], [0.0, 0.0, 1.0]])
    assert assumed_intrinsics((30, 40), focal_px=55.0)[0, 0] == 55.0
