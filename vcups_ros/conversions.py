"""Pure conversions between ROS 2 messages and vcups types (no node state, no rclpy import here).

Every function works on real rclpy message objects and on ``rosbags`` message objects alike:
reading uses attribute access only, and building goes through a :class:`MessageTypes` that holds
the message classes of one world (:meth:`MessageTypes.rclpy` or :meth:`MessageTypes.rosbags`).

Bad input raises ``ValueError`` naming the message field with the expected and the actual value.

Supported inputs:

* ``sensor_msgs/Image`` encodings ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``, ``mono8``, ``mono16``,
  ``16UC1``; row padding (``step`` larger than a row) and big-endian 16-bit data are handled.
* ``sensor_msgs/CompressedImage`` with JPEG or PNG data; ``format`` is either the bare codec
  (``jpeg``, ``png``) or image_transport's ``"<encoding>; <codec> compressed <encoding>"``.

16-bit images become RGB by ``value // 257`` (65535 -> 255, exact for 8-bit data stored as
``v * 257``) replicated to three channels.
"""

from __future__ import annotations

import array
import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from vcups_core.types import Box, PanopticFrame, Segment, TrackState, VideoFrame
from vcups_core.viz.palette import default_palette

NS_PER_S = 1_000_000_000

# encoding -> (channels, numpy dtype); one place for what we accept.
IMAGE_ENCODINGS: dict[str, tuple[int, type[np.generic]]] = {
    "rgb8": (3, np.uint8),
    "bgr8": (3, np.uint8),
    "rgba8": (4, np.uint8),
    "bgra8": (4, np.uint8),
    "mono8": (1, np.uint8),
    "mono16": (1, np.uint16),
    "16UC1": (1, np.uint16),
}
SEGMENT_IDS_ENCODING = "16UC1"
COMPRESSED_CODECS = ("jpeg", "png")


@dataclasses.dataclass(frozen=True)
class MessageTypes:
    """The message classes conversions build, from either rclpy or a ``rosbags`` typestore.

    Attributes:
        Time, Header, Image, CompressedImage, RegionOfInterest, PanopticTrack,
        PanopticTrackArray, PanopticInfo: message classes taking every field as a keyword.
        array: turns a 1-D numpy array (``uint8`` or ``bool``) into what this world stores in a
            primitive-array field (``uint8[]``, ``bool[]``).
    """

    Time: Any
    Header: Any
    Image: Any
    CompressedImage: Any
    RegionOfInterest: Any
    PanopticTrack: Any
    PanopticTrackArray: Any
    PanopticInfo: Any
    array: Callable[[npt.NDArray[Any]], Any]

    @classmethod
    def rclpy(cls) -> MessageTypes:
        """Message classes of a sourced ROS 2 environment (imports the message modules lazily)."""
        from builtin_interfaces.msg import Time
        from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest
        from std_msgs.msg import Header

        from vcups_ros.msg import PanopticInfo, PanopticTrack, PanopticTrackArray

        return cls(
            Time=Time,
            Header=Header,
            Image=Image,
            CompressedImage=CompressedImage,
            RegionOfInterest=RegionOfInterest,
            PanopticTrack=PanopticTrack,
            PanopticTrackArray=PanopticTrackArray,
            PanopticInfo=PanopticInfo,
            array=_rclpy_array,
        )

    @classmethod
    def rosbags(cls, store: Any = None) -> MessageTypes:
        """Message classes of a ``rosbags`` typestore (default: :func:`vcups_core.rosmsg.typestore`)."""
        if store is None:
            from vcups_core.rosmsg import typestore

            store = typestore()
        t = store.types
        return cls(
            Time=t["builtin_interfaces/msg/Time"],
            Header=t["std_msgs/msg/Header"],
            Image=t["sensor_msgs/msg/Image"],
            CompressedImage=t["sensor_msgs/msg/CompressedImage"],
            RegionOfInterest=t["sensor_msgs/msg/RegionOfInterest"],
            PanopticTrack=t["vcups_ros/msg/PanopticTrack"],
            PanopticTrackArray=t["vcups_ros/msg/PanopticTrackArray"],
            PanopticInfo=t["vcups_ros/msg/PanopticInfo"],
            array=lambda a: np.ascontiguousarray(a).reshape(-1),
        )


def _rclpy_array(values: npt.NDArray[Any]) -> Any:
    """rclpy's storage for primitive arrays: ``array('B')`` for uint8 (skips per-element checks,
    which cost seconds on a camera image), a list of ``bool`` for bool."""
    if values.dtype == np.uint8:
        return array.array("B", np.ascontiguousarray(values).tobytes())
    if values.dtype == np.bool_:
        return [bool(v) for v in values.reshape(-1)]
    raise TypeError(f"no rclpy array conversion for dtype {values.dtype}")


@dataclasses.dataclass(frozen=True)
class TrackArrayMeta:
    """Node bookkeeping carried by ``PanopticTrackArray`` next to the :class:`PanopticFrame`.

    Attributes:
        frames_dropped: input frames skipped since the previous output.
        info_version: ``PanopticInfo.version`` the category ids refer to.
        receive_time_ns: node clock when the input arrived (ns).
        publish_time_ns: node clock just before publishing (ns).
        inference_ms: network + post-processing time of this frame (ms).
    """

    frames_dropped: int = 0
    info_version: int = 0
    receive_time_ns: int = 0
    publish_time_ns: int = 0
    inference_ms: float = 0.0


# --------------------------------------------------------------------------------------------------
# Time and header


def time_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds."""
    sec, nanosec = int(stamp.sec), int(stamp.nanosec)
    if not 0 <= nanosec < NS_PER_S:
        raise ValueError(f"Time.nanosec: expected 0..{NS_PER_S - 1}, got {nanosec}")
    return sec * NS_PER_S + nanosec


def ns_to_time(ns: int, types: MessageTypes) -> Any:
    """Integer nanoseconds (>= 0) -> ``builtin_interfaces/Time``."""
    if ns < 0:
        raise ValueError(f"timestamp: expected >= 0 ns, got {ns}")
    return types.Time(sec=ns // NS_PER_S, nanosec=ns % NS_PER_S)


def make_header(stamp_ns: int, frame_id: str, types: MessageTypes) -> Any:
    """``std_msgs/Header`` with the given stamp and frame id."""
    return types.Header(stamp=ns_to_time(stamp_ns, types), frame_id=frame_id)


# --------------------------------------------------------------------------------------------------
# Raw images


def _data_bytes(data: Any, field: str) -> npt.NDArray[np.uint8]:
    """View a ``uint8[]`` field (array('B'), bytes, numpy, list) as a flat uint8 array."""
    if isinstance(data, (bytes, bytearray, memoryview)) or (
        isinstance(data, array.array) and data.typecode == "B"
    ):
        return np.frombuffer(data, dtype=np.uint8)
    arr = np.asarray(data)
    if arr.dtype == np.uint8:
        return arr.reshape(-1)
    if arr.size and (
        not np.issubdtype(arr.dtype, np.integer) or int(arr.min()) < 0 or int(arr.max()) > 255
    ):
        raise ValueError(f"{field}: expected bytes (integers 0..255), got {arr.dtype} values")
    return arr.astype(np.uint8).reshape(-1)


def image_msg_to_array(msg: Any, *, max_pixels: int | None = None) -> npt.NDArray[Any]:
    """Decode ``sensor_msgs/Image`` into its native numpy layout (a view where possible).

    Args:
        msg: the image message.
        max_pixels: reject images with more pixels than this (``None``: no limit).

    Returns:
        ``uint8[H, W, C]`` for the 8-bit colour encodings (channel order as in ``msg.encoding``),
        ``uint8[H, W]`` for ``mono8``, native-endian ``uint16[H, W]`` for ``mono16``/``16UC1``.

    Raises:
        ValueError: unknown encoding, bad ``is_bigendian``, zero or too large size, ``step``
            smaller than a row or not a multiple of the pixel size, or ``data`` not
            ``height * step`` bytes.
    """
    encoding = str(msg.encoding)
    if encoding not in IMAGE_ENCODINGS:
        raise ValueError(
            f"Image.encoding: expected one of {', '.join(IMAGE_ENCODINGS)}, got {encoding!r}"
        )
    channels, dtype = IMAGE_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    big_endian = int(msg.is_bigendian)
    if big_endian not in (0, 1):
        raise ValueError(f"Image.is_bigendian: expected 0 or 1, got {big_endian}")
    if height <= 0 or width <= 0:
        raise ValueError(f"Image.height/width: expected > 0, got {height}x{width}")
    if max_pixels is not None and height * width > max_pixels:
        raise ValueError(
            f"Image.height*width: expected at most {max_pixels} pixels, got {height}x{width}"
        )
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * channels * itemsize
    if step < row_bytes:
        raise ValueError(
            f"Image.step: expected >= width*channels*bytes = {row_bytes} for {width} px of "
            f"{encoding}, got {step}"
        )
    if step % itemsize:
        raise ValueError(
            f"Image.step: expected a multiple of {itemsize} for {encoding}, got {step}"
        )
    data = _data_bytes(msg.data, "Image.data")
    if data.size == 0:
        raise ValueError(f"Image.data: empty, expected height*step = {height * step} bytes")
    if data.size != height * step:
        raise ValueError(
            f"Image.data: expected height*step = {height}*{step} = {height * step} bytes, "
            f"got {data.size}"
        )
    rows = data.reshape(height, step)[:, :row_bytes]
    if itemsize == 1:
        out = rows.reshape(height, width, channels)
    else:
        order: Literal["<", ">"] = ">" if big_endian else "<"
        typed = np.ascontiguousarray(rows).view(np.dtype(dtype).newbyteorder(order))
        out = typed.reshape(height, width, channels).astype(dtype, copy=False)
    return out[:, :, 0] if channels == 1 else out


def image_msg_to_rgb(msg: Any, *, max_pixels: int | None = None) -> npt.NDArray[np.uint8]:
    """Decode ``sensor_msgs/Image`` to ``uint8[H, W, 3]`` RGB (see the module docstring)."""
    native = image_msg_to_array(msg, max_pixels=max_pixels)
    encoding = str(msg.encoding)
    if encoding == "rgb8":
        return np.ascontiguousarray(native)
    if encoding == "bgr8":
        return np.ascontiguousarray(native[:, :, ::-1])
    if encoding == "rgba8":
        return np.ascontiguousarray(native[:, :, :3])
    if encoding == "bgra8":
        return np.ascontiguousarray(native[:, :, 2::-1])
    return gray_to_rgb(native)


def gray_to_rgb(gray: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """``uint8[H, W]`` or ``uint16[H, W]`` -> ``uint8[H, W, 3]`` (16 bit: ``value // 257``)."""
    if gray.dtype == np.uint16:
        gray = (gray // 257).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def array_to_image_msg(
    array_: npt.NDArray[Any], encoding: str, header: Any, types: MessageTypes
) -> Any:
    """Build ``sensor_msgs/Image`` (little-endian, unpadded rows) from its native numpy layout.

    Args:
        array_: ``uint8[H, W, C]`` or ``uint8/uint16[H, W]`` as returned by
            :func:`image_msg_to_array` for ``encoding``.
        encoding: one of :data:`IMAGE_ENCODINGS`.
        header: ``std_msgs/Header`` to put in the message.
        types: message classes to build with.

    Raises:
        ValueError: if ``encoding`` is unknown or the array's shape/dtype do not fit it.
    """
    if encoding not in IMAGE_ENCODINGS:
        raise ValueError(
            f"encoding: expected one of {', '.join(IMAGE_ENCODINGS)}, got {encoding!r}"
        )
    channels, dtype = IMAGE_ENCODINGS[encoding]
    expected_ndim = 2 if channels == 1 else 3
    if (
        array_.dtype != dtype
        or array_.ndim != expected_ndim
        or (channels > 1 and array_.shape[2] != channels)
        or 0 in array_.shape
    ):
        want = f"{np.dtype(dtype).name}[H, W{'' if channels == 1 else f', {channels}'}]"
        raise ValueError(
            f"array for {encoding}: expected non-empty {want}, got {array_.dtype}{list(array_.shape)}"
        )
    height, width = array_.shape[:2]
    little = np.ascontiguousarray(array_, dtype=np.dtype(dtype).newbyteorder("<"))
    return types.Image(
        header=header,
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * channels * np.dtype(dtype).itemsize,
        data=types.array(little.view(np.uint8).reshape(-1)),
    )


def rgb_to_image_msg(
    rgb: npt.NDArray[np.uint8], encoding: str, header: Any, types: MessageTypes
) -> Any:
    """``uint8[H, W, 3]`` RGB -> ``sensor_msgs/Image`` in ``encoding`` (8-bit encodings only)."""
    _check_rgb(rgb)
    if encoding == "rgb8":
        native: npt.NDArray[Any] = rgb
    elif encoding == "bgr8":
        native = rgb[:, :, ::-1]
    elif encoding in ("rgba8", "bgra8"):
        colour = rgb if encoding == "rgba8" else rgb[:, :, ::-1]
        native = np.concatenate([colour, np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=2)
    elif encoding == "mono8":
        native = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    else:
        raise ValueError(
            f"encoding: expected one of rgb8, bgr8, rgba8, bgra8, mono8 for RGB input, got {encoding!r}"
        )
    return array_to_image_msg(np.ascontiguousarray(native), encoding, header, types)


def _check_rgb(rgb: npt.NDArray[Any]) -> None:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        raise ValueError(
            f"rgb: expected non-empty uint8[H, W, 3], got {rgb.dtype}{list(rgb.shape)}"
        )


# --------------------------------------------------------------------------------------------------
# Compressed images


def parse_compressed_format(fmt: str) -> str:
    """Codec (``jpeg`` or ``png``) of a ``CompressedImage.format`` string.

    Accepts ``"jpeg"``, ``"jpg"``, ``"png"`` and image_transport's
    ``"rgb8; jpeg compressed bgr8"`` form.

    Raises:
        ValueError: for anything else (e.g. ``compressedDepth``, ``h264``).
    """
    text = fmt.strip().lower()
    codec = text
    if ";" in text:
        rest = text.split(";", 1)[1].split()
        codec = rest[0] if len(rest) >= 2 and rest[1] == "compressed" else ""
    codec = {"jpg": "jpeg"}.get(codec, codec)
    if codec not in COMPRESSED_CODECS:
        raise ValueError(
            "CompressedImage.format: expected 'jpeg', 'png' or '<encoding>; <jpeg|png> compressed "
            f"<encoding>', got {fmt!r}"
        )
    return codec


def compressed_msg_to_rgb(msg: Any, *, max_pixels: int | None = None) -> npt.NDArray[np.uint8]:
    """Decode ``sensor_msgs/CompressedImage`` (JPEG/PNG, 8 or 16 bit) to ``uint8[H, W, 3]`` RGB.

    Raises:
        ValueError: unsupported ``format``, empty or undecodable ``data``, too many pixels.
    """
    codec = parse_compressed_format(str(msg.format))
    data = _data_bytes(msg.data, "CompressedImage.data")
    if data.size == 0:
        raise ValueError(f"CompressedImage.data: empty, expected {codec} bytes")
    decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise ValueError(
            f"CompressedImage.data: expected a decodable {codec} image, got {data.size} bytes "
            f"starting {bytes(data[:8]).hex()}"
        )
    if max_pixels is not None and decoded.shape[0] * decoded.shape[1] > max_pixels:
        raise ValueError(
            f"CompressedImage size: expected at most {max_pixels} pixels, "
            f"got {decoded.shape[0]}x{decoded.shape[1]}"
        )
    if decoded.ndim == 2:
        return gray_to_rgb(decoded)
    if decoded.dtype == np.uint16:
        decoded = (decoded // 257).astype(np.uint8)
    code = cv2.COLOR_BGRA2RGB if decoded.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return np.asarray(cv2.cvtColor(decoded, code), dtype=np.uint8)


def rgb_to_compressed_msg(
    rgb: npt.NDArray[np.uint8],
    codec: str,
    header: Any,
    types: MessageTypes,
    *,
    jpeg_quality: int = 95,
) -> Any:
    """``uint8[H, W, 3]`` RGB -> ``sensor_msgs/CompressedImage`` as image_transport writes it."""
    _check_rgb(rgb)
    codec = parse_compressed_format(codec)
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if codec == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if codec == "jpeg" else ".png", rgb[:, :, ::-1], params)
    if not ok:  # pragma: no cover - OpenCV fails only on invalid arrays, checked above
        raise ValueError(f"rgb: OpenCV could not encode {rgb.shape} as {codec}")
    return types.CompressedImage(
        header=header, format=f"rgb8; {codec} compressed bgr8", data=types.array(buf)
    )


# --------------------------------------------------------------------------------------------------
# Frames


def is_compressed(msg: Any) -> bool:
    """True for ``sensor_msgs/CompressedImage`` (it has ``format``), false for ``Image``."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def msg_to_video_frame(msg: Any, *, index: int = -1, max_pixels: int | None = None) -> VideoFrame:
    """``Image`` or ``CompressedImage`` -> :class:`VideoFrame` with the header's stamp and frame."""
    decode = compressed_msg_to_rgb if is_compressed(msg) else image_msg_to_rgb
    rgb = decode(msg, max_pixels=max_pixels)
    return VideoFrame(
        image=rgb,
        stamp_ns=time_to_ns(msg.header.stamp),
        frame_id=str(msg.header.frame_id),
        index=index,
    )


# --------------------------------------------------------------------------------------------------
# Panoptic results


def panoptic_frame_to_msg(
    frame: PanopticFrame,
    types: MessageTypes,
    meta: TrackArrayMeta | None = None,
    *,
    embed_segment_ids: bool = True,
) -> Any:
    """:class:`PanopticFrame` -> ``vcups_ros/PanopticTrackArray``.

    The header is rebuilt from ``frame.stamp_ns`` and ``frame.frame_id`` (the input image's header
    copied through); the segment-id map becomes a ``16UC1`` image with the same header, or an
    empty image when ``embed_segment_ids`` is false.
    """
    meta = meta or TrackArrayMeta()
    header = make_header(frame.stamp_ns, frame.frame_id, types)
    tracks = [
        types.PanopticTrack(
            segment_id=s.segment_id,
            category_id=s.category_id,
            is_thing=bool(s.is_thing),
            track_id=s.track_id,
            track_state=int(s.track_state),
            track_age=s.track_age,
            score=float(s.score),
            area=s.area,
            bbox=types.RegionOfInterest(
                x_offset=s.box.x0,
                y_offset=s.box.y0,
                height=s.box.height,
                width=s.box.width,
                do_rectify=False,
            ),
        )
        for s in frame.segments
    ]
    if embed_segment_ids:
        ids_msg = array_to_image_msg(frame.segment_ids, SEGMENT_IDS_ENCODING, header, types)
    else:
        ids_msg = types.Image(
            header=header,
            height=0,
            width=0,
            encoding=SEGMENT_IDS_ENCODING,
            is_bigendian=0,
            step=0,
            data=types.array(np.zeros(0, np.uint8)),
        )
    return types.PanopticTrackArray(
        header=header,
        frame_index=frame.frame_index,
        frames_dropped=meta.frames_dropped,
        info_version=meta.info_version,
        image_height=frame.height,
        image_width=frame.width,
        tracks=tracks,
        segment_ids=ids_msg,
        receive_time=ns_to_time(meta.receive_time_ns, types),
        publish_time=ns_to_time(meta.publish_time_ns, types),
        inference_ms=float(meta.inference_ms),
    )


def segments_from_msg(msg: Any) -> list[Segment]:
    """The segment table of a ``PanopticTrackArray`` (usable without the embedded map).

    Raises:
        ValueError: on an unknown ``track_state``.
    """
    segments = []
    for i, t in enumerate(msg.tracks):
        try:
            state = TrackState(int(t.track_state))
        except ValueError:
            raise ValueError(
                f"PanopticTrackArray.tracks[{i}].track_state: expected 0..3, got {t.track_state}"
            ) from None
        b = t.bbox
        segments.append(
            Segment(
                segment_id=int(t.segment_id),
                category_id=int(t.category_id),
                is_thing=bool(t.is_thing),
                track_id=int(t.track_id),
                score=float(t.score),
                area=int(t.area),
                box=Box(
                    int(b.x_offset),
                    int(b.y_offset),
                    int(b.x_offset) + int(b.width),
                    int(b.y_offset) + int(b.height),
                ),
                track_state=state,
                track_age=int(t.track_age),
            )
        )
    return segments


def msg_to_panoptic_frame(msg: Any) -> tuple[PanopticFrame, TrackArrayMeta]:
    """``vcups_ros/PanopticTrackArray`` -> (:class:`PanopticFrame`, :class:`TrackArrayMeta`).

    Raises:
        ValueError: if the message has no embedded segment-id map, the map is not ``16UC1`` /
            ``mono16`` or disagrees with ``image_height``/``image_width``, or the table is invalid.
    """
    ids_msg = msg.segment_ids
    if int(ids_msg.height) == 0 or int(ids_msg.width) == 0:
        raise ValueError(
            "PanopticTrackArray.segment_ids: empty (published with output.embed_segment_ids: "
            "false); use segments_from_msg() for the table alone"
        )
    if str(ids_msg.encoding) not in ("16UC1", "mono16"):
        raise ValueError(
            f"PanopticTrackArray.segment_ids.encoding: expected '16UC1', got {ids_msg.encoding!r}"
        )
    ids = image_msg_to_array(ids_msg)
    expected = (int(msg.image_height), int(msg.image_width))
    if ids.shape != expected:
        raise ValueError(
            f"PanopticTrackArray.segment_ids: expected image_height x image_width = "
            f"{expected[0]}x{expected[1]}, got {ids.shape[0]}x{ids.shape[1]}"
        )
    frame = PanopticFrame(
        segment_ids=np.ascontiguousarray(ids, dtype=np.uint16),
        segments=segments_from_msg(msg),
        stamp_ns=time_to_ns(msg.header.stamp),
        frame_id=str(msg.header.frame_id),
        frame_index=int(msg.frame_index),
    )
    meta = TrackArrayMeta(
        frames_dropped=int(msg.frames_dropped),
        info_version=int(msg.info_version),
        receive_time_ns=time_to_ns(msg.receive_time),
        publish_time_ns=time_to_ns(msg.publish_time),
        inference_ms=float(msg.inference_ms),
    )
    return frame, meta


def panoptic_info_msg(
    types: MessageTypes,
    *,
    version: int,
    category_names: list[str],
    category_is_thing: list[bool],
    category_colors: npt.NDArray[np.uint8] | None = None,
    model_name: str = "",
    model_checksum: str = "",
    score_threshold: float = 0.5,
    stamp_ns: int = 0,
) -> Any:
    """Build ``vcups_ros/PanopticInfo``.

    Args:
        category_colors: ``uint8[N, 3]`` RGB per category; default: a fixed palette.

    Raises:
        ValueError: if the per-category lists differ in length.
    """
    n = len(category_names)
    if len(category_is_thing) != n:
        raise ValueError(
            f"category_is_thing: expected {n} entries (one per category name), got "
            f"{len(category_is_thing)}"
        )
    colors = default_palette(n) if category_colors is None else np.asarray(category_colors)
    if colors.shape != (n, 3):
        raise ValueError(f"category_colors: expected uint8[{n}, 3], got {list(colors.shape)}")
    return types.PanopticInfo(
        header=make_header(stamp_ns, "", types),
        version=version,
        model_name=model_name,
        model_checksum=model_checksum,
        category_names=list(category_names),
        category_is_thing=types.array(np.asarray(category_is_thing, dtype=bool)),
        category_colors=types.array(colors.astype(np.uint8).reshape(-1)),
        score_threshold=float(score_threshold),
    )
