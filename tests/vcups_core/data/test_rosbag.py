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
    bag_status,
    is_unfinished_bag,
    list_topics,
    write_synthetic_bag,
)
from vcups_core.data.synthetic import SyntheticFrame, SyntheticWorld
from vcups_core.rosmsg import make_header, rgb_to_compressed_msg

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
            from vcups_core.rosmsg import rgb_to_image_msg

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


def test_truncated_mcap_delivers_frames_before_the_cut_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A bag cut short (what a killed recorder leaves) is not damaged: every complete chunk is
    delivered and the reader says that the bag is incomplete."""
    path, stamps = big_clip(tmp_path, "mcap")
    file = next(path.glob("*.mcap"))
    with file.open("r+b") as fh:
        fh.truncate(int(file.stat().st_size * 0.6))
    reader = BagFrameReader(path, CAM)
    with caplog.at_level(logging.WARNING):
        got = [frame.stamp_ns for frame in reader]
    assert 5 <= len(got) < 30
    assert got == stamps[: len(got)]
    assert reader.incomplete is not None
    assert f"recovered the {len(got)} complete messages" in reader.incomplete
    assert f"stamped {got[-1]} ns" in reader.incomplete
    assert f"{file}: incomplete bag, cut short" in caplog.text
    # also without metadata.yaml (the writer was killed before closing) and as a bare file
    (path / "metadata.yaml").unlink()
    assert [f.stamp_ns for f in BagFrameReader(path, CAM)] == got
    assert [f.stamp_ns for f in BagFrameReader(file, CAM)] == got
    with pytest.raises(ValueError, match=r"no topic '/cam' in this bag, which is incomplete"):
        list(BagFrameReader(path, "/cam"))


def chunk_spans(file: Path) -> list[tuple[int, int]]:
    from mcap.reader import make_reader

    with file.open("rb") as fh:
        summary = make_reader(fh).get_summary()
    assert summary is not None
    return [(c.chunk_start_offset, c.chunk_length) for c in summary.chunk_indexes]


def test_chunks_carry_crcs_checked_by_an_independent_reader(mcap_bag: Path) -> None:
    import struct

    from mcap.reader import make_reader

    file = next(mcap_bag.glob("*.mcap"))
    data = file.read_bytes()
    for start, _ in chunk_spans(file):
        assert struct.unpack_from("<I", data, start + 33)[0] != 0  # 0 would mean "no CRC"
    with file.open("rb") as fh:
        assert sum(1 for _ in make_reader(fh, validate_crcs=True).iter_messages()) == 40


@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "stream"])
def test_damage_inside_a_chunk_is_an_error_naming_the_bag(tmp_path: Path, indexed: bool) -> None:
    """4 KB of random bytes in the second chunk: the frames of the first chunk, then an error
    (before chunk CRCs: a silently different frame and exit 0)."""
    path, stamps = big_clip(tmp_path, "mcap")
    file = next(path.glob("*.mcap"))
    (start, length), _ = chunk_spans(file)[1], None
    data = bytearray(file.read_bytes())
    middle = start + length // 2
    data[middle : middle + 4096] = np.random.default_rng(0).bytes(4096)
    file.write_bytes(bytes(data))
    if not indexed:
        (path / "metadata.yaml").unlink()
    got: list[int] = []
    with pytest.raises(BagReadError, match=r"(?i)checksum|crc") as info:
        got.extend(frame.stamp_ns for frame in BagFrameReader(path, CAM))
    assert got == stamps[: len(got)] and len(got) >= 3
    assert str(path) in str(info.value)
    assert info.value.last_good_stamp_ns == got[-1]


def test_bags_record_how_their_run_ended(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_frames(tmp_path / "done", [1, 2])
    assert bag_status(tmp_path / "done") == "complete"
    assert not is_unfinished_bag(tmp_path / "done")

    def stopped() -> None:
        with BagWriter(tmp_path / "stopped") as bag:
            bag.write_rgb(CAM, np.zeros((2, 2, 3), np.uint8), 7, "cam")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stopped()
    assert bag_status(tmp_path / "stopped") == "interrupted"
    assert is_unfinished_bag(tmp_path / "stopped")
    reader = BagFrameReader(tmp_path / "stopped", CAM)
    assert reader.incomplete is not None and "interrupted" in caplog.text
    assert [f.stamp_ns for f in reader] == [7]

    with pytest.raises(RuntimeError), BagWriter(tmp_path / "failed"):
        raise RuntimeError
    assert bag_status(tmp_path / "failed") == "failed"

    # a killed rosbags writer: only <name>.mcap; another tool's bag or folder: never unfinished
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "killed.mcap").write_bytes(next((tmp_path / "done").glob("*.mcap")).read_bytes())
    assert is_unfinished_bag(killed)
    (killed / "notes.txt").write_text("")
    assert not is_unfinished_bag(killed)
    foreign = tmp_path / "foreign"
    write_frames(foreign, [1])
    meta = foreign / "metadata.yaml"
    meta.write_text(meta.read_text().replace("vcups.status: complete", "other: x"))
    assert bag_status(foreign) is None and not is_unfinished_bag(foreign)
    assert not is_unfinished_bag(tmp_path / "missing")


def test_write_synthetic_bag_is_atomic(world: SyntheticWorld, tmp_path: Path) -> None:
    class BoomError(Exception):
        pass

    def frames() -> Any:
        yield from list(world.frames())[:2]
        raise BoomError

    class Broken:
        height, width = world.height, world.width

        def __len__(self) -> int:
            return 8

        def frames(self) -> Any:
            return frames()

    with pytest.raises(BoomError):
        write_synthetic_bag(Broken(), tmp_path / "b")
    assert list(tmp_path.iterdir()) == []  # nothing under the final name, no temporary
    write_synthetic_bag(world, tmp_path / "b")
    with pytest.raises(FileExistsError, match="already exists"):
        write_synthetic_bag(world, tmp_path / "b")
    write_synthetic_bag(world, tmp_path / "b", overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["b"]
    assert len(list(BagFrameReader(tmp_path / "b", CAM))) == 8


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
