"""vcups_core.rosmsg conversions on rosbags message objects and on real rclpy message objects
(``vcups_ros.rclpy_types``)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest
from conftest import rclpy_or_skip
from msg_utils import to_plain

from vcups_core import rosmsg
from vcups_core.rosmsg import typestore
from vcups_core.types import PanopticFrame
from vcups_ros.rclpy_types import rclpy_types

WORLDS = ["rosbags", "rclpy"]


def make_types(world: str) -> rosmsg.MessageTypes:
    if world == "rclpy":
        rclpy_or_skip()
        return rclpy_types()
    return rosmsg.MessageTypes.rosbags()


def header(types: rosmsg.MessageTypes, stamp_ns: int = 1_500_000_000_000_000_042) -> Any:
    return rosmsg.make_header(stamp_ns, "cam", types)


def native_sample(encoding: str, rng: np.random.Generator) -> np.ndarray:
    channels, dtype = rosmsg.IMAGE_ENCODINGS[encoding]
    shape = (5, 7) if channels == 1 else (5, 7, channels)
    if np.issubdtype(dtype, np.floating):
        return (rng.standard_normal(shape) * 100).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True, dtype=dtype)


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("encoding", sorted(rosmsg.IMAGE_ENCODINGS))
def test_each_encoding_round_trips_exactly(world: str, encoding: str) -> None:
    types = make_types(world)
    arr = native_sample(encoding, np.random.default_rng(0))
    msg = rosmsg.array_to_image_msg(arr, encoding, header(types), types)
    assert (msg.encoding, msg.height, msg.width, msg.is_bigendian) == (encoding, 5, 7, 0)
    back = rosmsg.image_msg_to_array(msg)
    assert back.dtype == arr.dtype
    assert np.array_equal(back, arr)
    if world == "rosbags":  # also through CDR bytes
        ts = typestore()
        raw = ts.serialize_cdr(msg, "sensor_msgs/msg/Image")
        assert np.array_equal(
            rosmsg.image_msg_to_array(ts.deserialize_cdr(raw, "sensor_msgs/msg/Image")), arr
        )


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_rgb_round_trips_through_colour_encodings(world: str, encoding: str) -> None:
    types = make_types(world)
    rgb = np.random.default_rng(1).integers(0, 256, (6, 4, 3), dtype=np.uint8)
    msg = rosmsg.rgb_to_image_msg(rgb, encoding, header(types), types)
    out = rosmsg.image_msg_to_rgb(msg)
    assert out.dtype == np.uint8
    assert out.shape == (6, 4, 3)
    assert np.array_equal(out, rgb)


def test_channel_order_by_hand() -> None:
    types = make_types("rosbags")
    # two pixels stored as B,G,R = (1,2,3) and (4,5,6) -> RGB (3,2,1), (6,5,4)
    bgr = types.Image(
        header=header(types),
        height=1,
        width=2,
        encoding="bgr8",
        is_bigendian=0,
        step=6,
        data=np.array([1, 2, 3, 4, 5, 6], np.uint8),
    )
    assert rosmsg.image_msg_to_rgb(bgr).tolist() == [[[3, 2, 1], [6, 5, 4]]]
    bgra = types.Image(
        header=header(types),
        height=1,
        width=1,
        encoding="bgra8",
        is_bigendian=0,
        step=4,
        data=np.array([10, 20, 30, 40], np.uint8),
    )
    assert rosmsg.image_msg_to_rgb(bgra).tolist() == [[[30, 20, 10]]]


def test_mono_and_16bit_to_rgb_by_hand() -> None:
    types = make_types("rosbags")
    mono = rosmsg.array_to_image_msg(
        np.array([[0, 7, 255]], np.uint8), "mono8", header(types), types
    )
    assert rosmsg.image_msg_to_rgb(mono).tolist() == [[[0, 0, 0], [7, 7, 7], [255, 255, 255]]]
    # 16 bit -> value // 257: 0 -> 0, 257 -> 1, 256 -> 0, 65535 -> 255
    depth = np.array([[0, 257, 256, 65535]], np.uint16)
    msg = rosmsg.array_to_image_msg(depth, "16UC1", header(types), types)
    assert msg.data.tolist() == [0, 0, 1, 1, 0, 1, 255, 255]  # little-endian bytes
    assert rosmsg.image_msg_to_rgb(msg)[0, :, 0].tolist() == [0, 1, 0, 255]


def test_padded_rows_and_big_endian_data() -> None:
    types = make_types("rosbags")
    # 2x2 rgb8 with step 8: 2 padding bytes (99) per row are skipped
    data = np.array([1, 2, 3, 4, 5, 6, 99, 99, 7, 8, 9, 10, 11, 12, 99, 99], np.uint8)
    padded = types.Image(
        header=header(types), height=2, width=2, encoding="rgb8", is_bigendian=0, step=8, data=data
    )
    assert rosmsg.image_msg_to_rgb(padded).reshape(-1).tolist() == list(range(1, 13))
    # big-endian 16UC1: bytes 01 02 -> 0x0102 = 258, bytes ff 00 -> 0xff00 = 65280
    big = types.Image(
        header=header(types),
        height=1,
        width=2,
        encoding="16UC1",
        is_bigendian=1,
        step=4,
        data=np.array([1, 2, 255, 0], np.uint8),
    )
    out = rosmsg.image_msg_to_array(big)
    assert out.tolist() == [[258, 65280]]
    assert out.dtype == np.uint16


def image(types: rosmsg.MessageTypes, **override: Any) -> Any:
    fields = dict(
        header=header(types),
        height=2,
        width=3,
        encoding="rgb8",
        is_bigendian=0,
        step=9,
        data=np.zeros(18, np.uint8),
    )
    fields.update(override)
    return types.Image(**fields)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"encoding": "yuv422"}, r"Image.encoding: expected one of rgb8, .*got 'yuv422'"),
        ({"encoding": ""}, r"Image.encoding: .*got ''"),
        ({"step": 8}, r"Image.step: expected >= width\*channels\*bytes = 9 .*got 8"),
        (
            {"data": np.zeros(17, np.uint8)},
            r"Image.data: expected height\*step = 2\*9 = 18 bytes, got 17",
        ),
        ({"data": np.zeros(0, np.uint8)}, r"Image.data: empty, expected height\*step = 18 bytes"),
        (
            {"height": 0, "data": np.zeros(0, np.uint8)},
            r"Image.height/width: expected > 0, got 0x3",
        ),
        ({"is_bigendian": 2}, r"Image.is_bigendian: expected 0 or 1, got 2"),
        (
            {"encoding": "16UC1", "step": 7, "data": np.zeros(14, np.uint8)},
            r"Image.step: expected a multiple of 2 for 16UC1, got 7",
        ),
        ({"data": [300] * 18}, r"Image.data: expected bytes \(integers 0..255\)"),
    ],
)
def test_bad_images_raise_naming_the_field(override: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rosmsg.image_msg_to_rgb(image(make_types("rosbags"), **override))


def test_depth_is_an_array_not_a_picture() -> None:
    types = make_types("rosbags")
    depth = np.array([[1.5, np.inf]], np.float32)
    msg = rosmsg.array_to_image_msg(depth, "32FC1", header(types), types)
    assert rosmsg.image_msg_to_array(msg).tolist() == [[1.5, np.inf]]
    with pytest.raises(ValueError, match=r"Image.encoding: expected a picture .*got '32FC1'"):
        rosmsg.image_msg_to_rgb(msg)


def test_too_many_pixels_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"expected at most 5 pixels, got 2x3"):
        rosmsg.image_msg_to_rgb(image(make_types("rosbags")), max_pixels=5)


def test_bad_arrays_for_building_messages() -> None:
    types = make_types("rosbags")
    with pytest.raises(
        ValueError, match=r"array for 16UC1: expected non-empty uint16\[H, W\], got uint8"
    ):
        rosmsg.array_to_image_msg(np.zeros((2, 2), np.uint8), "16UC1", header(types), types)
    with pytest.raises(ValueError, match=r"rgb: expected non-empty uint8\[H, W, 3\]"):
        rosmsg.rgb_to_image_msg(np.zeros((2, 2, 4), np.uint8), "rgb8", header(types), types)
    with pytest.raises(
        ValueError, match="encoding: expected one of rgb8, bgr8, rgba8, bgra8, mono8"
    ):
        rosmsg.rgb_to_image_msg(np.zeros((2, 2, 3), np.uint8), "16UC1", header(types), types)


@pytest.mark.parametrize("world", WORLDS)
def test_png_round_trips_exactly_and_jpeg_closely(world: str) -> None:
    types = make_types(world)
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    png = rosmsg.rgb_to_compressed_msg(rgb, "png", header(types), types)
    assert png.format == "rgb8; png compressed bgr8"
    assert np.array_equal(rosmsg.compressed_msg_to_rgb(png), rgb)
    # JPEG is lossy: a smooth image comes back within a few grey levels.
    smooth = np.dstack([np.tile(np.arange(0, 240, 10, dtype=np.uint8), (16, 1))] * 3)
    jpeg = rosmsg.rgb_to_compressed_msg(smooth, "jpeg", header(types), types, jpeg_quality=100)
    diff = np.abs(rosmsg.compressed_msg_to_rgb(jpeg).astype(int) - smooth)
    assert diff.max() <= 3


@pytest.mark.parametrize(
    "fmt", ["jpeg", "jpg", "png", "bgr8; jpeg compressed bgr8", "PNG", "16UC1; png compressed "]
)
def test_compressed_formats_accepted(fmt: str) -> None:
    assert rosmsg.parse_compressed_format(fmt) in ("jpeg", "png")


def test_sixteen_bit_png_and_gray_jpeg_decode() -> None:
    types = make_types("rosbags")
    depth = np.array([[0, 257, 65535]], np.uint16)
    _, buf = cv2.imencode(".png", depth)
    msg = types.CompressedImage(header=header(types), format="16UC1; png compressed ", data=buf)
    assert rosmsg.compressed_msg_to_rgb(msg)[0, :, 1].tolist() == [0, 1, 255]
    _ok, buf = cv2.imencode(".png", np.array([[9, 200]], np.uint8))
    gray = types.CompressedImage(header=header(types), format="png", data=buf)
    assert rosmsg.compressed_msg_to_rgb(gray).tolist() == [[[9, 9, 9], [200, 200, 200]]]


@pytest.mark.parametrize(
    ("fmt", "data", "message"),
    [
        ("h264", b"\x00\x00\x01", r"CompressedImage.format: expected 'jpeg', 'png'.*got 'h264'"),
        ("16UC1; compressedDepth png", b"\x00", r"CompressedImage.format: .*compressedDepth"),
        ("jpeg", b"", r"CompressedImage.data: empty, expected jpeg bytes"),
        (
            "jpeg",
            b"not an image at all",
            r"CompressedImage.data: expected a decodable jpeg image, got 19 bytes",
        ),
    ],
)
def test_bad_compressed_images(fmt: str, data: bytes, message: str) -> None:
    types = make_types("rosbags")
    msg = types.CompressedImage(
        header=header(types), format=fmt, data=np.frombuffer(data, np.uint8)
    )
    with pytest.raises(ValueError, match=message):
        rosmsg.compressed_msg_to_rgb(msg)


@pytest.mark.parametrize("world", WORLDS)
def test_video_frame_from_raw_and_compressed(world: str) -> None:
    types = make_types(world)
    rgb = np.random.default_rng(3).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    for msg in (
        rosmsg.rgb_to_image_msg(rgb, "bgr8", header(types), types),
        rosmsg.rgb_to_compressed_msg(rgb, "png", header(types), types),
    ):
        frame = rosmsg.msg_to_video_frame(msg, index=3)
        assert np.array_equal(frame.image, rgb)
        assert (frame.stamp_ns, frame.frame_id, frame.index) == (
            1_500_000_000_000_000_042,
            "cam",
            3,
        )


def test_time_conversions() -> None:
    types = make_types("rosbags")
    assert rosmsg.time_to_ns(rosmsg.ns_to_time(3_000_000_007, types)) == 3_000_000_007
    with pytest.raises(ValueError, match="timestamp: expected >= 0 ns, got -1"):
        rosmsg.ns_to_time(-1, types)
    with pytest.raises(ValueError, match=r"Time.nanosec: expected 0..999999999, got 1000000000"):
        rosmsg.time_to_ns(types.Time(sec=1, nanosec=1_000_000_000))


@pytest.mark.parametrize("world", WORLDS)
def test_panoptic_frame_round_trips(world: str, tiny_frame: PanopticFrame) -> None:
    types = make_types(world)
    meta = rosmsg.TrackArrayMeta(
        frames_dropped=2,
        info_version=5,
        receive_time_ns=10,
        publish_time_ns=2_000_000_020,
        inference_ms=3.25,
    )
    msg = rosmsg.panoptic_frame_to_msg(tiny_frame, types, meta)
    assert (msg.image_height, msg.image_width, len(msg.tracks)) == (4, 6, 3)
    assert to_plain(msg.segment_ids.header) == to_plain(msg.header)
    frame, meta_back = rosmsg.msg_to_panoptic_frame(msg)
    assert meta_back == meta
    assert frame.segments == tiny_frame.segments
    assert np.array_equal(frame.segment_ids, tiny_frame.segment_ids)
    assert (frame.stamp_ns, frame.frame_id, frame.frame_index) == (
        tiny_frame.stamp_ns,
        tiny_frame.frame_id,
        tiny_frame.frame_index,
    )


def test_without_embedded_map_only_the_table_survives(tiny_frame: PanopticFrame) -> None:
    types = make_types("rosbags")
    msg = rosmsg.panoptic_frame_to_msg(tiny_frame, types, embed_segment_ids=False)
    assert (msg.segment_ids.height, msg.segment_ids.width, len(msg.segment_ids.data)) == (0, 0, 0)
    assert rosmsg.segments_from_msg(msg) == tiny_frame.segments
    with pytest.raises(ValueError, match="segment_ids: empty"):
        rosmsg.msg_to_panoptic_frame(msg)


def test_bad_track_arrays(tiny_frame: PanopticFrame) -> None:
    types = make_types("rosbags")
    msg = rosmsg.panoptic_frame_to_msg(tiny_frame, types)
    msg.image_width = 5
    with pytest.raises(ValueError, match=r"expected image_height x image_width = 4x5, got 4x6"):
        rosmsg.msg_to_panoptic_frame(msg)
    msg = rosmsg.panoptic_frame_to_msg(tiny_frame, types)
    msg.segment_ids.encoding = "mono8"
    with pytest.raises(ValueError, match=r"segment_ids.encoding: expected '16UC1', got 'mono8'"):
        rosmsg.msg_to_panoptic_frame(msg)
    msg = rosmsg.panoptic_frame_to_msg(tiny_frame, types)
    msg.tracks[1].track_state = 9
    with pytest.raises(ValueError, match=r"tracks\[1\].track_state: expected 0..3, got 9"):
        rosmsg.segments_from_msg(msg)


@pytest.mark.parametrize("world", WORLDS)
def test_info_message(world: str) -> None:
    types = make_types(world)
    msg = rosmsg.panoptic_info_msg(
        types, version=1, category_names=["a", "b", "c"], category_is_thing=[False, True, False]
    )
    assert list(msg.category_is_thing) == [False, True, False]
    assert len(msg.category_colors) == 9
    with pytest.raises(ValueError, match="category_is_thing: expected 3 entries"):
        rosmsg.panoptic_info_msg(
            types, version=1, category_names=["a", "b", "c"], category_is_thing=[True]
        )


def test_info_of_a_predictor_without_name_or_checksum() -> None:
    """A bare predictor (a test fake, a user's own) still gets an info message: its class name,
    no checksum (before, the node's configure failed on the missing attributes)."""
    from vcups_core.configs.streaming import StreamingConfig
    from vcups_core.streaming.segmenter import StreamingSegmenter
    from vcups_core.types import CategoryTable

    class Bare:
        categories = CategoryTable.default(1, 2)

        def predict(self, image: Any) -> Any:
            raise AssertionError("not called")

    seg = StreamingSegmenter.from_config(Bare(), StreamingConfig())  # type: ignore[arg-type]
    msg = rosmsg.segmenter_info_msg(seg, rosmsg.MessageTypes.rosbags(), version=3)
    assert (msg.model_name, msg.model_checksum, msg.version) == ("Bare", "", 3)
    assert list(msg.category_names) == ["thing_0", "stuff_0", "stuff_1"]
