"""Tracked panoptic results <-> our messages: :class:`~vcups_core.types.PanopticFrame` <->
``vcups_ros/PanopticTrackArray``, and ``vcups_ros/PanopticInfo``.

Every function works on rclpy message objects and on ``rosbags`` message objects alike: reading
uses attribute access only, and building goes through a
:class:`~vcups_core.rosmsg.messages.MessageTypes` holding the message classes of one world
(``vcups_ros.rclpy_types.rclpy_types()`` in the node, ``MessageTypes.rosbags()`` in ``vcups
replay`` and the bag writers). Bad input raises ``ValueError`` naming the message field with the
expected and the actual value. :func:`segmenter_info_msg` is the one ``PanopticInfo`` of a
running segmenter, published by the node and written by ``vcups replay``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from vcups_core.rosmsg.image import array_to_image_msg, image_msg_to_array
from vcups_core.rosmsg.messages import MessageTypes, make_header, ns_to_time, time_to_ns
from vcups_core.types import Box, PanopticFrame, Segment, TrackState
from vcups_core.viz.palette import default_palette

if TYPE_CHECKING:  # the segmenter only as a type: no import of the streaming path here
    from vcups_core.streaming.segmenter import StreamingSegmenter

SEGMENT_IDS_ENCODING = "16UC1"
"""Encoding of the segment-id map embedded in ``PanopticTrackArray``."""


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


def segmenter_info_msg(
    segmenter: StreamingSegmenter, types: MessageTypes, *, version: int, stamp_ns: int = 0
) -> Any:
    """The ``vcups_ros/PanopticInfo`` of what ``segmenter`` publishes: its predictor's category
    table, model name and checksum, and the score threshold it tracks with.

    The one builder of the node (``panoptic/info``) and ``vcups replay`` (``/panoptic/info``).

    Args:
        segmenter: the running segmenter.
        types: the message classes to build with.
        version: ``PanopticInfo.version`` (``PanopticTrackArray.info_version`` refers to it).
        stamp_ns: the header stamp (the node: its clock when it publishes; replay: 0).
    """
    cats = segmenter.categories
    predictor = segmenter.predictor
    return panoptic_info_msg(
        types,
        version=version,
        category_names=list(cats.names),
        category_is_thing=list(cats.is_thing),
        # injected predictors (tests, benchmarks, a user's own) may leave these out
        model_name=str(getattr(predictor, "model_name", type(predictor).__name__)),
        model_checksum=str(getattr(predictor, "checksum", "")),
        score_threshold=segmenter.score_threshold,
        stamp_ns=stamp_ns,
    )
