"""Clips of frames with panoptic ground truth, as every dataset reader yields them.

Images and labels are loaded lazily (a Cityscapes-VPS clip is 30 frames of 1024x2048), so a reader
can list a whole dataset cheaply and a consumer decides what to decode.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from vcups_core.types import IGNORE_LABEL, VideoFrame, encode_panoptic


@dataclasses.dataclass(frozen=True)
class PanopticLabel:
    """Panoptic ground truth of one frame in a dataset's own class ids.

    Attributes:
        semantic: ``uint8[H, W]`` class ids, :data:`~vcups_core.types.IGNORE_LABEL` = void.
        instance: ``int32[H, W]`` instance ids, unique within the clip for the same object across
            frames (so they act as track ids); 0 on stuff, and on thing pixels without an instance
            ("crowd", ignored for tracking but counted semantically).
    """

    semantic: npt.NDArray[np.uint8]
    instance: npt.NDArray[np.int32]

    def __post_init__(self) -> None:
        if self.semantic.shape != self.instance.shape or self.semantic.ndim != 2:
            raise ValueError(
                f"semantic {self.semantic.shape} and instance {self.instance.shape} must be equal [H, W]"
            )
        if self.semantic.dtype != np.uint8 or self.instance.dtype != np.int32:
            raise ValueError(
                f"expected semantic uint8 and instance int32, got {self.semantic.dtype} and "
                f"{self.instance.dtype}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.semantic.shape[0]), int(self.semantic.shape[1]))

    def panoptic(self, label_bit_shift: int = 16) -> npt.NDArray[np.int64]:
        """``(semantic << shift) + instance`` per pixel (void pixels keep semantic 255)."""
        return encode_panoptic(self.semantic, self.instance, label_bit_shift)

    @classmethod
    def void(cls, height: int, width: int) -> PanopticLabel:
        return cls(
            np.full((height, width), IGNORE_LABEL, np.uint8), np.zeros((height, width), np.int32)
        )


def read_rgb(path: Path) -> npt.NDArray[np.uint8]:
    """Read an image file as ``uint8[H, W, 3]`` RGB.

    Raises:
        FileNotFoundError: if the file is missing or not a readable image.
    """
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"{path}: missing or not a readable image")
    return np.ascontiguousarray(bgr[:, :, ::-1])


@dataclasses.dataclass(frozen=True)
class ClipFrame:
    """One frame of a clip: where its image is and, if annotated, how to load its label.

    Attributes:
        index: position in the clip (0-based).
        stamp_ns: timestamp (derived from the frame rate when the dataset has none).
        image_path: the RGB image file.
        load_label: returns the frame's :class:`PanopticLabel`; ``None`` if not annotated.
        image_id: the dataset's own id of the frame where its format names frames by an id
            rather than by their image file (Cityscapes-VPS: the JSON's image id of a frame the
            JSON lists, labelled or not); ``None`` otherwise.
    """

    index: int
    stamp_ns: int
    image_path: Path
    load_label: Callable[[], PanopticLabel] | None = None
    image_id: str | None = None

    @property
    def annotated(self) -> bool:
        return self.load_label is not None

    def image(self) -> VideoFrame:
        """Decode the image (``uint8[H, W, 3]`` RGB) with this frame's stamp and index."""
        return VideoFrame(read_rgb(self.image_path), stamp_ns=self.stamp_ns, index=self.index)

    def label(self) -> PanopticLabel | None:
        return None if self.load_label is None else self.load_label()


@dataclasses.dataclass(frozen=True)
class Clip:
    """A video clip of a dataset (a sequence, or a Cityscapes-VPS 30-frame snippet).

    Attributes:
        name: the dataset's id of the clip (sequence or video id).
        dataset: name of the dataset descriptor (``vcups_core.data.datasets.DESCRIPTORS``).
        frames: in temporal order.
    """

    name: str
    dataset: str
    frames: tuple[ClipFrame, ...]

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def annotated(self) -> tuple[ClipFrame, ...]:
        return tuple(f for f in self.frames if f.annotated)


@dataclasses.dataclass(frozen=True)
class LabeledClip:
    """A clip held in memory, as dataset writers take it.

    Attributes:
        name: clip id (a sequence name or number).
        images: ``uint8[H, W, 3]`` RGB frames in order.
        labels: per frame, its label or ``None`` when the frame is not annotated.
    """

    name: str
    images: tuple[npt.NDArray[np.uint8], ...]
    labels: tuple[PanopticLabel | None, ...]

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
