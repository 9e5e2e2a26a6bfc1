"""Small stand-ins for the cue pipeline and the instance labeler, and tiny inputs, for the tests of
the pseudo-label pipeline (so they do not depend on the real cues).

Run as a script, it labels frame folders with the fakes (used by the SIGKILL test)::

    python tests/pseudo_fakes.py --out STORE [--delay S] [--shard I/N] DIR [DIR ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from vcups_core.config import config_from_dict
from vcups_core.configs.pseudo_labels import PseudoLabelConfig
from vcups_core.cues.base import FrameCues
from vcups_core.types import VideoFrame

HEIGHT, WIDTH = 32, 48


def native_config(**changes: Any) -> PseudoLabelConfig:
    """The default config at the native size (plus ``changes``, YAML-style nested dicts)."""
    return config_from_dict({"height": 0, "width": 0, **changes}, PseudoLabelConfig)


def frame_image(clip: int, index: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """A reproducible ``uint8[H, W, 3]`` RGB frame, different for every clip and index."""
    rng = np.random.default_rng(1000 * clip + index)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_frames(folder: Path, clip: int, frames: int, suffix: str = ".png") -> Path:
    """A folder of ``frames`` images named ``00000<suffix>`` ... (JPEG or lossless PNG)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(frames):
        ok, buf = cv2.imencode(suffix, frame_image(clip, i)[:, :, ::-1])
        assert ok
        (folder / f"{i:05d}{suffix}").write_bytes(buf.tobytes())
    return folder


def write_clips(root: Path, clips: int = 3, frames: int = 3) -> list[Path]:
    """``clips`` frame folders ``root/clip_<k>`` of ``frames`` PNG frames each."""
    return [write_frames(root / f"clip_{k}", k, frames) for k in range(clips)]


def write_davis(root: Path, clips: int = 3, frames: int = 3) -> Path:
    """A flat-layout DAVIS root (``<seq>/images/<n>.jpg``, ``<seq>/masks/<n>.png``)."""
    for k in range(clips):
        images = write_frames(root / f"seq{k}" / "images", k, frames, ".jpg")
        masks = images.parent / "masks"
        masks.mkdir()
        for i in range(frames):
            cv2.imwrite(str(masks / f"{i:05d}.png"), np.zeros((HEIGHT, WIDTH), np.uint8))
    return root


def read_png(path: Path, flags: int = cv2.IMREAD_UNCHANGED) -> npt.NDArray[Any]:
    """``cv2.imread`` that fails the test instead of returning None."""
    array = cv2.imread(str(path), flags)
    assert array is not None, f"{path}: missing or unreadable"
    return array


def truncate(path: Path) -> None:
    """Cut a file to half its size (a damaged frame)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def expected_labels(image: npt.NDArray[np.uint8], index: int) -> npt.NDArray[np.uint16]:
    """What :class:`FakeLabeler` writes for frame ``index`` with ``image`` (processing size)."""
    return (image[:, :, 0].astype(np.uint16) // 32 + 1 + 300 * index).astype(np.uint16)


class FakeCues:
    """Cue pipeline stand-in: zero flow, one frame of look-ahead, records the intrinsics."""

    def __init__(self) -> None:
        self.intrinsics: list[npt.NDArray[np.float64]] = []
        self.frames_seen = 0

    @property
    def backends(self) -> dict[str, str]:
        return {"flow": "fake", "depth": "none", "motion": "fake"}

    def run(
        self, frames: Iterable[VideoFrame], intrinsics: npt.NDArray[np.float64]
    ) -> Iterator[FrameCues]:
        self.intrinsics.append(np.array(intrinsics))
        it = iter(frames)
        prev: VideoFrame | None = None
        current = next(it, None)
        while current is not None:
            self.frames_seen += 1
            following = next(it, None)
            partner = following if following is not None else prev
            assert partner is not None, "clips have at least 2 frames"
            zeros = np.zeros((current.height, current.width, 2), np.float32)
            yield FrameCues(
                frame=current,
                partner=partner,
                intrinsics=intrinsics,
                flow=zeros,
                flow_is_forward=following is not None,
                flow_back=zeros,
            )
            prev, current = current, following


class FakeLabeler:
    """Labeler stand-in: frame ``i``'s labels come out when frame ``i + 1`` is pushed, as a
    deterministic function of the pixels (:func:`expected_labels`); optionally slow."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.pending: list[FrameCues] = []
        self.pushed = 0

    def push(self, cues: FrameCues) -> list[tuple[int, npt.NDArray[np.uint16]]]:
        if self.delay:
            time.sleep(self.delay)
        self.pushed += 1
        self.pending.append(cues)
        if len(self.pending) < 2:
            return []
        return [self._label(self.pending.pop(0))]

    def finish(self) -> list[tuple[int, npt.NDArray[np.uint16]]]:
        out = [self._label(c) for c in self.pending]
        self.pending = []
        return out

    @staticmethod
    def _label(cues: FrameCues) -> tuple[int, npt.NDArray[np.uint16]]:
        return cues.frame.index, expected_labels(cues.frame.image, cues.frame.index)


class Factories:
    """Cue and labeler factories for :func:`run_pseudo_labels` that remember what they built."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.cues: list[FakeCues] = []
        self.labelers: list[FakeLabeler] = []

    def cue_factory(self, cfg: PseudoLabelConfig, oracle: Any) -> FakeCues:
        self.cues.append(FakeCues())
        return self.cues[-1]

    def labeler_factory(self, cfg: PseudoLabelConfig) -> FakeLabeler:
        self.labelers.append(FakeLabeler(self.delay))
        return self.labelers[-1]

    @property
    def frames_labelled(self) -> int:
        return sum(lab.pushed for lab in self.labelers)


def main(argv: list[str] | None = None) -> int:
    from vcups_core.jobs import parse_shard
    from vcups_core.pseudo.pipeline import run_pseudo_labels
    from vcups_core.pseudo.sources import SourceSpec

    parser = argparse.ArgumentParser()
    parser.add_argument("dirs", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--shard", default="0/1")
    args = parser.parse_args(argv)
    fakes = Factories(args.delay)
    return run_pseudo_labels(
        SourceSpec.frames([Path(d) for d in args.dirs]),
        Path(args.out),
        native_config(),
        shard=parse_shard(args.shard),
        progress=False,
        cue_factory=fakes.cue_factory,
        labeler_factory=fakes.labeler_factory,
    )


if __name__ == "__main__":
    sys.exit(main())
