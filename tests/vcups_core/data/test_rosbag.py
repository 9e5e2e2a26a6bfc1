"""rosbag2 I/O: synthetic bags written and read back, checked by an independent reader (mcap_ros2)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from msg_utils import read_with_mcap_ros2

from vcups_core.data.rosbag import (
    GT_TOPICS,
    BagFrameReader,
    BagReadError,
    BagWriter,
    list_topics,
    write_synthetic_bag,
)
from vcups_core.data.synthetic import SyntheticFrame, SyntheticWorld
from vcups_core.rosimage import rgb_to_compressed_msg
from vcups_core.rosmsg import make_header

CAM = "/camera/image_raw"


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(height=24, width=40, num_frames=8, seed=5)


@pytest.fixture(scope="module")
def frames(world: SyntheticWorld) -> list[SyntheticFrame]:
    return list(world.frames())


@pytest.fixture(scope="module")
def mcap_bag(world: SyntheticWorld, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_bag(world, tmp_path_factory.mktemp("bags") / "clip")


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_written_frames_read_back_exactly(
    world: SyntheticWorld, frames: list[SyntheticFrame], tmp_path: Path, storage: str, encoding: str
) -> None:
    bag = write_synthetic_bag(world, tmp_path / "b", storage=storage, encoding=encoding)  # type: ignore[arg-type]
    assert [t.name for t in list_topics(bag)] == sorted(
        [CAM, "/camera/camera_info", *GT_TOPICS.values()]
    )
    got = list(BagFrameReader(bag, CAM))
    assert [f.stamp_ns for f in got] == [f.stamp_ns for f in frames]
    assert [f.index for f in got] == list(range(8))
    for a, b in zip(got, frames, strict=True):
        assert np.array_equal(a.image, b.rgb)
        assert a.frame_id == "camera"


def test_an_independent_reader_sees_the_same_fields(
    mcap_bag: Path, frames: list[SyntheticFrame]
) -> None:
    by_topic: dict[str, list[Any]] = {}
    for topic, log_time, msg in read_with_mcap_ros2(next(mcap_bag.glob("*.mcap"))):
        assert log_time == msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        by_topic.setdefault(topic, []).append(msg)
    assert {k: len(v) for k, v in by_topic.items()} == {
        t: 8 for t in [CAM, "/camera/camera_info", *GT_TOPICS.values()]
    }
    f = frames[3]
    img = by_topic[CAM][3]
    assert (img.encoding, img.height, img.width, img.step, img.is_bigendian) == (
        "rgb8",
        24,
        40,
        120,
        0,
    )
    assert bytes(img.data) == f.rgb.tobytes()
    info = by_topic["/camera/camera_info"][3]
    assert np.allclose(np.array(info.k).reshape(3, 3), f.intrinsics)
    sem = by_topic[GT_TOPICS["semantic"]][3]
    assert sem.encoding == "mono8" and bytes(sem.data) == f.semantic.tobytes()
    inst = by_topic[GT_TOPICS["instance"]][3]
    assert inst.encoding == "16UC1"
    assert np.array_equal(np.frombuffer(bytes(inst.data), "<u2").reshape(24, 40), f.instance)
    depth = by_topic[GT_TOPICS["depth"]][3]
    assert depth.encoding == "32FC1"
    assert np.array_equal(np.frombuffer(bytes(depth.data), "<f4").reshape(24, 40), f.depth)


def test_bare_mcap_file_range_and_stride(mcap_bag: Path, frames: list[SyntheticFrame]) -> None:
    mcap_file = next(mcap_bag.glob("*.mcap"))
    stamps = [f.stamp_ns for f in frames]
    got = list(BagFrameReader(mcap_file, CAM, start_ns=stamps[2], stop_ns=stamps[7], stride=2))
    # range keeps frames 2..6; stride 2 keeps the 1st, 3rd, 5th of those
    assert [f.stamp_ns for f in got] == [stamps[2], stamps[4], stamps[6]]
    assert [f.index for f in got] == [0, 2, 4]


def write_frames(path: Path, stamps: list[int], storage: str = "mcap") -> None:
    with BagWriter(path, storage) as bag:  # type: ignore[arg-type]
        for i, stamp in enumerate(stamps):
            bag.write_rgb(CAM, np.full((4, 6, 3), i, np.uint8), stamp, "cam")


def test_gaps_and_backward_stamps_are_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    period = 100_000_000
    kept = [0, 1, 2, 3, 4, 7, 8, 9, 10, 11, 13, 14]  # 5 and 6 missing, then 12
    write_frames(tmp_path / "gappy", [i * period for i in kept])
    reader = BagFrameReader(tmp_path / "gappy", CAM)
    with caplog.at_level(logging.WARNING):
        assert len(list(reader)) == len(kept)
    assert [(g.after_ns, g.before_ns, g.missing) for g in reader.gaps()] == [
        (4 * period, 7 * period, 2),
        (11 * period, 13 * period, 1),
    ]
    assert "2 gaps, about 3 frames missing" in caplog.text
    # header stamps that go back in time (log time still increases)
    with BagWriter(tmp_path / "back", "mcap") as bag:
        for i, stamp in enumerate([10, 20, 15, 30]):
            types = bag.types
            from vcups_core.rosimage import rgb_to_image_msg

            msg = rgb_to_image_msg(
                np.zeros((2, 2, 3), np.uint8), "rgb8", make_header(stamp, "", types), types
            )
            bag.write(CAM, msg, 100 + i)
    reader = BagFrameReader(tmp_path / "back", CAM)
    list(reader)
    assert reader.backwards == 1


def test_compressed_topic(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    with BagWriter(tmp_path / "c", "sqlite3") as bag:
        msg = rgb_to_compressed_msg(rgb, "png", make_header(5, "cam", bag.types), bag.types)
        bag.write("/camera/image_raw/compressed", msg, 5)
    (frame,) = BagFrameReader(tmp_path / "c", "/camera/image_raw/compressed")
    assert np.array_equal(frame.image, rgb) and frame.stamp_ns == 5


def test_bad_topic_and_missing_bag(mcap_bag: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ValueError,
        match=r"no topic '/cam'; topics in the bag: /camera/camera_info \(sensor_msgs/msg/CameraInfo, 8\), /camera/image_raw",
    ):
        BagFrameReader(mcap_bag, "/cam")
    with pytest.raises(
        ValueError,
        match=r"has type sensor_msgs/msg/CameraInfo, expected one of sensor_msgs/msg/Image",
    ):
        BagFrameReader(mcap_bag, "/camera/camera_info")
    with pytest.raises(FileNotFoundError, match="no such bag"):
        BagFrameReader(tmp_path / "nope", CAM)
    with pytest.raises(ValueError, match="stride: expected >= 1"):
        BagFrameReader(mcap_bag, CAM, stride=0)


def test_unsupported_encoding_names_it(tmp_path: Path) -> None:
    with BagWriter(tmp_path / "yuv", "mcap") as bag:
        t = bag.types
        msg = t.Image(
            header=make_header(1, "", t),
            height=2,
            width=2,
            encoding="yuv422",
            is_bigendian=0,
            step=4,
            data=np.zeros(8, np.uint8),
        )
        bag.write(CAM, msg, 1)
    with pytest.raises(ValueError, match=r"Image.encoding: expected one of .*got 'yuv422'"):
        list(BagFrameReader(tmp_path / "yuv", CAM))


def big_clip(tmp_path: Path, storage: str) -> tuple[Path, list[int]]:
    """30 frames of ~200 kB so that an MCAP holds several chunks (rosbags closes them at 1 MiB)."""
    stamps = [1_000 + i * 100_000_000 for i in range(30)]
    path = tmp_path / storage
    with BagWriter(path, storage) as bag:  # type: ignore[arg-type]
        for i, stamp in enumerate(stamps):
            rng = np.random.default_rng(i)
            bag.write_rgb(CAM, rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), stamp, "cam")
    return path, stamps


def test_truncated_mcap_delivers_frames_before_the_cut(tmp_path: Path) -> None:
    path, stamps = big_clip(tmp_path, "mcap")
    file = next(path.glob("*.mcap"))
    with file.open("r+b") as fh:
        fh.truncate(int(file.stat().st_size * 0.6))
    reader = BagFrameReader(path, CAM)
    got: list[int] = []
    with pytest.raises(BagReadError) as info:
        got.extend(frame.stamp_ns for frame in reader)
    assert 5 <= len(got) < 30
    assert got == stamps[: len(got)]
    assert info.value.last_good_stamp_ns == got[-1]
    assert str(file) in str(info.value) and f"after the frame stamped {got[-1]} ns" in str(
        info.value
    )


def test_corrupt_sqlite_delivers_frames_before_the_damage(tmp_path: Path) -> None:
    path, stamps = big_clip(tmp_path, "sqlite3")
    db = next(path.glob("*.db3"))
    data = bytearray(db.read_bytes())
    page = int(len(data) * 0.5) // 4096 * 4096
    data[page : page + 4096] = b"\xff" * 4096
    db.write_bytes(bytes(data))
    got: list[int] = []
    reader = BagFrameReader(path, CAM)
    with pytest.raises(BagReadError, match="database disk image is malformed") as info:
        got.extend(frame.stamp_ns for frame in reader)
    assert got == stamps[: len(got)]
    assert len(got) >= 5
    assert info.value.last_good_stamp_ns == got[-1]
    # cut the file short: not even the topic table survives -> a clear error before any frame
    trunc = tmp_path / "trunc"
    shutil.copytree(path, trunc)
    db = next(trunc.glob("*.db3"))
    with db.open("r+b") as fh:
        fh.truncate(db.stat().st_size // 3)
    with pytest.raises(BagReadError, match=r"trunc: damaged or unreadable before any frame"):
        BagFrameReader(trunc, CAM)


def test_writer_refuses_to_overwrite_and_keeps_partial_bags_valid(tmp_path: Path) -> None:
    write_frames(tmp_path / "b", [1, 2])
    with pytest.raises(FileExistsError, match="already exists"):
        BagWriter(tmp_path / "b")

    def interrupted_recording() -> None:
        with BagWriter(tmp_path / "partial") as bag:
            bag.write_rgb(CAM, np.zeros((2, 2, 3), np.uint8), 7, "cam")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        interrupted_recording()
    assert [f.stamp_ns for f in BagFrameReader(tmp_path / "partial", CAM)] == [7]
