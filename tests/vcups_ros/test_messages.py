"""Our msg/ definitions in a rosbags typestore: parse, constants, and CDR round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from msg_utils import to_plain

from vcups_core import rosmsg
from vcups_core.rosmsg import MESSAGE_NAMES, find_msg_dir, msg_type, typestore
from vcups_core.types import PanopticFrame, TrackState

MSG_DIR = Path(__file__).resolve().parents[2] / "msg"


def test_every_msg_file_is_registered() -> None:
    assert sorted(p.stem for p in MSG_DIR.glob("*.msg")) == sorted(MESSAGE_NAMES)
    assert find_msg_dir() == MSG_DIR
    ts = typestore()
    for name in MESSAGE_NAMES:
        assert msg_type(name) in ts.types


def test_track_state_constants_match_the_enum() -> None:
    track = typestore().types[msg_type("PanopticTrack")]
    for state in TrackState:
        assert getattr(track, f"STATE_{state.name}") == state.value


def test_every_field_is_documented() -> None:
    for path in MSG_DIR.glob("*.msg"):
        for line in path.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                assert "#" in line, f"{path.name}: undocumented field {line!r}"


def filled_track_array(frame: PanopticFrame) -> object:
    types = rosmsg.MessageTypes.rosbags()
    meta = rosmsg.TrackArrayMeta(
        frames_dropped=3,
        info_version=2,
        receive_time_ns=5_000_000_001,
        publish_time_ns=5_020_000_002,
        inference_ms=12.5,
    )
    return rosmsg.panoptic_frame_to_msg(frame, types, meta)


def test_filled_track_array_round_trips_cdr(tiny_frame: PanopticFrame) -> None:
    ts = typestore()
    msg = filled_track_array(tiny_frame)
    name = msg_type("PanopticTrackArray")
    raw = ts.serialize_cdr(msg, name)
    back = ts.deserialize_cdr(raw, name)
    assert to_plain(back) == to_plain(msg)
    # and the fields are what the frame said (spot checks on every level)
    plain = to_plain(back)
    assert plain["header"] == {
        "stamp": {"sec": 1_700_000_000, "nanosec": 123_456_789},
        "frame_id": "cam_front",
    }
    assert plain["frame_index"] == 41
    assert plain["frames_dropped"] == 3
    assert plain["tracks"][2]["track_id"] == 7
    assert plain["tracks"][2]["score"] == 0.875
    assert plain["tracks"][2]["bbox"] == {
        "x_offset": 1,
        "y_offset": 1,
        "height": 2,
        "width": 2,
        "do_rectify": False,
    }
    assert plain["segment_ids"]["encoding"] == "16UC1"
    assert plain["segment_ids"]["step"] == 12
    assert plain["publish_time"] == {"sec": 5, "nanosec": 20_000_002}


def test_info_round_trips_cdr() -> None:
    ts = typestore()
    types = rosmsg.MessageTypes.rosbags(ts)
    msg = rosmsg.panoptic_info_msg(
        types,
        version=4,
        category_names=["road", "car"],
        category_is_thing=[False, True],
        category_colors=np.array([[1, 2, 3], [4, 5, 6]], np.uint8),
        model_name="tiny",
        model_checksum="ab" * 32,
        score_threshold=0.25,
        stamp_ns=9,
    )
    name = msg_type("PanopticInfo")
    back = ts.deserialize_cdr(ts.serialize_cdr(msg, name), name)
    plain = to_plain(back)
    assert plain == to_plain(msg)
    assert plain["category_colors"] == [1, 2, 3, 4, 5, 6]
    assert plain["category_is_thing"] == [False, True]
