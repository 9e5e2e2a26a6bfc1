"""Shared fixtures. Tests mirror the packages: tests/vcups_core, tests/vcups_ros, tests/training."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from vcups_core.types import PanopticFrame

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# DDS traffic of the rclpy tests stays on this machine and in a domain of its own per run.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))


def rclpy_or_skip() -> None:
    """Import rclpy and the built messages; fail loudly unless the user opted out.

    `make setup` installs the ROS 2 wheels and builds msg/, so a missing rclpy is a broken set-up,
    not a reason to skip. Set VCUPS_SKIP_ROS_TESTS=1 (pip-only install without ROS) to skip.
    """
    if os.environ.get("VCUPS_SKIP_ROS_TESTS") == "1":
        pytest.skip("VCUPS_SKIP_ROS_TESTS=1: rclpy tests disabled for an install without ROS 2")
    import rclpy  # noqa: F401  (ImportError here fails the test: the set-up is broken)
    import vcups_ros.msg  # noqa: F401


@pytest.fixture
def tiny_frame() -> PanopticFrame:
    """A 4x6 panoptic frame: stuff 0 (top), stuff 1 (bottom), thing 3 track 7, one void pixel.

    semantic          track ids
    0 0 0 0 0 0       0 0 0 0 0 0
    0 3 3 0 0 255     0 7 7 0 0 0
    1 3 3 1 1 1       0 7 7 0 0 0
    1 1 1 1 1 1       0 0 0 0 0 0
    """
    semantic = np.array(
        [[0, 0, 0, 0, 0, 0], [0, 3, 3, 0, 0, 255], [1, 3, 3, 1, 1, 1], [1, 1, 1, 1, 1, 1]],
        dtype=np.uint8,
    )
    tracks = np.zeros_like(semantic, dtype=np.int64)
    tracks[1:3, 1:3] = 7
    return PanopticFrame.from_maps(
        semantic,
        tracks,
        frozenset({3}),
        scores={7: 0.875},
        stamp_ns=1_700_000_000_123_456_789,
        frame_id="cam_front",
        frame_index=41,
    )


@pytest.fixture
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import tensorrt`` raises ImportError, as on a machine without it (also where it is
    installed), so the tests of its absence run everywhere."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)
