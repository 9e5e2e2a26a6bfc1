"""Clip result files of :mod:`vcups_core.streaming.dataset_run`: round trip, track renumbering,
byte-identical output, and damaged files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vcups_core.data.clip import Clip, ClipFrame, PanopticLabel
from vcups_core.jobs import atomic_write_bytes
from vcups_core.streaming.dataset_run import (
    ClipResult,
    ClipResultWriter,
    frames_to_stream,
    result_path,
)


def written(tmp_path: Path) -> Path:
    writer = ClipResultWriter("0007")
    sem = np.array([[0, 1, 255], [2, 2, 0]], np.uint8)
    writer.add(4, sem, np.array([[0, 90, 0], [7, 7, 0]], np.int64))
    writer.add(9, sem, np.array([[7, 0, 0], [12, 12, 0]], np.int64))
    path = result_path(tmp_path, "0007")
    atomic_write_bytes(path, writer.to_bytes(streamed=10))
    return path


def test_round_trip_renumbers_tracks_in_order_of_appearance(tmp_path: Path) -> None:
    path = written(tmp_path)
    assert path.name == "0007.npz"
    with ClipResult(path) as result:
        assert (result.name, result.frames, result.streamed) == ("0007", (4, 9), 10)
        sem, track = result.maps(0)
        assert sem.dtype == np.uint8 and track.dtype == np.int32
        np.testing.assert_array_equal(sem, [[0, 1, 255], [2, 2, 0]])
        np.testing.assert_array_equal(track, [[0, 1, 0], [2, 2, 0]])  # 90 -> 1, 7 -> 2
        np.testing.assert_array_equal(result.maps(1)[1], [[2, 0, 0], [3, 3, 0]])  # 12 -> 3
        with pytest.raises(ValueError, match="frame 2 of 2 requested"):
            result.maps(2)
    # equal contents give equal bytes (no time stamps in the file)
    (tmp_path / "again").mkdir()
    assert written(tmp_path / "again").read_bytes() == path.read_bytes()


def test_damaged_files_and_bad_names(tmp_path: Path) -> None:
    bad = tmp_path / "cut.npz"
    bad.write_bytes(b"PK\x03\x04 cut")
    with pytest.raises(ValueError, match=r"cut\.npz: not a readable clip result"):
        ClipResult(bad)
    with pytest.raises(ValueError, match="cannot name a result file"):
        result_path(tmp_path, "a/b")


def test_frames_streamed_run_through_the_last_kept_frame() -> None:
    # 6 frames, labels on 1 and 3: the tracker sees 0..3 (4 and 5 cannot change a causal result)
    def label() -> PanopticLabel:
        return PanopticLabel.void(1, 1)

    frames = tuple(
        ClipFrame(i, i, Path(f"{i}.png"), label if i in (1, 3) else None) for i in range(6)
    )
    clip = Clip("c", "kitti-step", frames)
    assert [f.index for f in frames_to_stream(clip)] == [0, 1, 2, 3]
    assert [f.index for f in frames_to_stream(clip, annotated_only=True)] == [1, 3]
    # other kept frames (a split without labels): through the last of those, or only those
    kept = (frames[0], frames[4])
    assert [f.index for f in frames_to_stream(clip, kept=kept)] == [0, 1, 2, 3, 4]
    assert [f.index for f in frames_to_stream(clip, kept=kept, annotated_only=True)] == [0, 4]
    assert frames_to_stream(clip, kept=()) == ()
