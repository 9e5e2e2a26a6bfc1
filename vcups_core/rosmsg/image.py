"""``sensor_msgs/Image`` and ``CompressedImage`` <-> numpy, for ROS and ``rosbags`` objects alike.

Decoding uses attribute access only, so it works on rclpy, ``rosbags`` and ``mcap_ros2`` message
objects; building goes through a :class:`~vcups_core.rosmsg.messages.MessageTypes`. This is the
one place that knows ROS image encodings (the node, the bag reader and replay all use it). Bad input raises
``ValueError`` naming the message field with the expected and the actual value.

Supported:

* ``Image`` encodings ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``, ``mono8``, ``mono16``, ``16UC1``
  (and ``32FC1`` as an array, e.g. depth); row padding (``step`` larger than a row) and big-endian
  16/32-bit data are handled.
* ``CompressedImage`` with JPEG or PNG data; ``format`` is either the bare codec (``jpeg``,
  ``png``) or image_transport's ``"<encoding>; <codec> compressed <encoding>"``.

16-bit images become RGB by ``value // 257`` (65535 -> 255, exact for 8-bit data stored as
``v * 257``) replicated to three channels.
"""

from __future__ import annotations

import array
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from vcups_core.rosmsg.messages import MessageTypes, time_to_ns
from vcups_core.types import VideoFrame

# encoding -> (channels, numpy dtype); one place for what we accept.
IMAGE_ENCODINGS: dict[str, tuple[int, type[np.generic]]] = {
    "rgb8": (3, np.uint8),
    "bgr8": (3, np.uint8),
    "rgba8": (4, np.uint8),
    "bgra8": (4, np.uint8),
    "mono8": (1, np.uint8),
    "mono16": (1, np.uint16),
    "16UC1": (1, np.uint16),
    "32FC1": (1, np.float32),
}
RGB_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "16UC1")
"""Encodings that :func:`image_msg_to_rgb` turns into a picture."""
COMPRESSED_CODECS = ("jpeg", "png")


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
    encoding = str(msg.encoding)
    if encoding in IMAGE_ENCODINGS and encoding not in RGB_ENCODINGS:
        raise ValueError(
            f"Image.encoding: expected a picture ({', '.join(RGB_ENCODINGS)}), got {encoding!r}"
        )
    native = image_msg_to_array(msg, max_pixels=max_pixels)
    # OpenCV's SIMD colour conversions are ~10x faster than numpy's reversed-stride copies
    if encoding == "rgb8":
        return np.ascontiguousarray(native)
    if encoding == "bgr8":
        return np.asarray(cv2.cvtColor(native, cv2.COLOR_BGR2RGB), dtype=np.uint8)
    if encoding == "rgba8":
        return np.asarray(cv2.cvtColor(native, cv2.COLOR_RGBA2RGB), dtype=np.uint8)
    if encoding == "bgra8":
        return np.asarray(cv2.cvtColor(native, cv2.COLOR_BGRA2RGB), dtype=np.uint8)
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
        native = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif encoding == "rgba8":
        native = cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
    elif encoding == "bgra8":
        native = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
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
