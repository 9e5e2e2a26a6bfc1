"""One training sample: a clip of ``T`` frames with its pseudo-label targets (method §4).

The contract between the data side (store reading, augmentation, copy-paste) and the loop:

* :class:`FrameTargets` is one frame's targets as tensors, in the layout of
  :class:`~vcups_core.pseudo.compose.TrainingTargets`.
* :class:`ClipSample` holds ``T`` frames of one clip. Track ids are **clip-local**: the clip's
  ``K`` tracks are numbered ``1..K`` in order of first appearance (key frame first), the same id
  in every frame it appears in; ``0`` is never used (the model's "no track"). The presence table
  (:meth:`ClipSample.presence`) gives, for frame ``t`` and track ``k`` (id ``k + 1``), the index of
  that track in frame ``t``'s instance list, ``-1`` when the track is **absent** from the frame.
* :func:`model_inputs` flattens a batch of clips into the ``(images, targets)`` of
  :meth:`~vcups_core.model.meta_arch.PanopticCascadeMaskTrack.forward_train`, pairing each clip's
  key frame with its first reference frame for the tracking loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from vcups_core.types import IGNORE_LABEL

ABSENT = -1
"""Presence-table value of a track that is not in a frame."""


@dataclasses.dataclass
class FrameTargets:
    """One frame's training targets (``N`` instances, ``H x W`` pixels).

    Attributes:
        boxes: ``float32[N, 4]`` tight ``(x0, y0, x1, y1)`` boxes in pixels, exclusive max side
            (:func:`~vcups_core.pseudo.compose.mask_boxes`).
        classes: ``int64[N]`` thing class index ``0..T_things-1``.
        masks: ``bool[N, H, W]`` instance masks.
        track_ids: ``int64[N]`` clip-local track ids (``>= 1``, unique within the frame).
        semantic: ``int64[H, W]`` semantic-head target: ``0`` = thing, ``1..S`` = stuff,
            ``255`` = ignore.
    """

    boxes: Tensor
    classes: Tensor
    masks: Tensor
    track_ids: Tensor
    semantic: Tensor

    def __len__(self) -> int:
        return int(self.track_ids.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.semantic.shape[-2]), int(self.semantic.shape[-1])

    def validate(self, where: str = "frame") -> None:
        """Check shapes and dtypes.

        Raises:
            ValueError: naming ``where`` and the field that is wrong.
        """
        n = len(self)
        h, w = self.size
        expect = {
            "boxes": ((n, 4), torch.float32),
            "classes": ((n,), torch.int64),
            "masks": ((n, h, w), torch.bool),
            "track_ids": ((n,), torch.int64),
            "semantic": ((h, w), torch.int64),
        }
        for name, (shape, dtype) in expect.items():
            value = getattr(self, name)
            if tuple(value.shape) != shape or value.dtype != dtype:
                raise ValueError(
                    f"{where}: {name} must be {dtype}{list(shape)}, got "
                    f"{value.dtype}{list(value.shape)}"
                )
        if n and (int(self.track_ids.min()) < 1 or len(set(self.track_ids.tolist())) != n):
            raise ValueError(f"{where}: track ids must be >= 1 and unique, got {self.track_ids}")

    @classmethod
    def empty(cls, height: int, width: int, *, semantic: Tensor | None = None) -> FrameTargets:
        """A frame without instances (semantic all ignore unless given)."""
        if semantic is None:
            semantic = torch.full((height, width), IGNORE_LABEL, dtype=torch.int64)
        return cls(
            boxes=torch.zeros((0, 4), dtype=torch.float32),
            classes=torch.zeros((0,), dtype=torch.int64),
            masks=torch.zeros((0, height, width), dtype=torch.bool),
            track_ids=torch.zeros((0,), dtype=torch.int64),
            semantic=semantic,
        )

    def select(self, keep: Tensor) -> FrameTargets:
        """The instances where ``keep`` (``bool[N]``) is true; semantics unchanged."""
        return FrameTargets(
            boxes=self.boxes[keep],
            classes=self.classes[keep],
            masks=self.masks[keep],
            track_ids=self.track_ids[keep],
            semantic=self.semantic,
        )


@dataclasses.dataclass
class ClipSample:
    """A training clip: ``T`` frames of one source clip with their targets.

    Attributes:
        images: ``float32[T, 3, H, W]`` RGB in ``[0, 1]``; frame 0 is the key frame.
        targets: ``T`` :class:`FrameTargets` of size ``H x W`` with clip-local track ids.
        clip: the store's clip name.
        frame_indices: index in the clip of each frame (key first).
    """

    images: Tensor
    targets: list[FrameTargets]
    clip: str = ""
    frame_indices: tuple[int, ...] = ()

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    @property
    def num_tracks(self) -> int:
        """``K``: the largest track id in the clip (ids are ``1..K``)."""
        ids = [int(t.track_ids.max()) for t in self.targets if len(t)]
        return max(ids, default=0)

    def presence(self) -> Tensor:
        """``int64[T, K]``: index of track ``k + 1`` in frame ``t``'s instances, ``-1`` = absent."""
        table = torch.full((len(self), self.num_tracks), ABSENT, dtype=torch.int64)
        for t, frame in enumerate(self.targets):
            if len(frame):
                table[t, frame.track_ids - 1] = torch.arange(len(frame))
        return table

    def validate(self) -> None:
        """Check the whole clip (shapes, dtypes, one size, track ids).

        Raises:
            ValueError: naming the clip, the frame and the field.
        """
        if self.images.dim() != 4 or self.images.shape[1] != 3:
            raise ValueError(f"clip {self.clip!r}: images must be float[T, 3, H, W]")
        if self.images.dtype != torch.float32:
            raise ValueError(f"clip {self.clip!r}: images must be float32, got {self.images.dtype}")
        if len(self.targets) != len(self):
            raise ValueError(
                f"clip {self.clip!r}: {len(self)} images but {len(self.targets)} targets"
            )
        for t, frame in enumerate(self.targets):
            where = f"clip {self.clip!r} frame {t}"
            if frame.size != self.size:
                raise ValueError(f"{where}: targets are {frame.size}, images {self.size}")
            frame.validate(where)


def relabel_tracks(targets: Sequence[FrameTargets], source_ids: Sequence[Tensor]) -> None:
    """Give the clip's tracks clip-local ids ``1..K`` in order of first appearance (in place).

    Args:
        targets: the clip's frames, key first.
        source_ids: per frame, ``int64[N_t]`` the tracks' ids in the source (e.g. the store's
            16-bit track ids); equal ids in different frames are the same track.
    """
    mapping: dict[int, int] = {}
    for frame, ids in zip(targets, source_ids, strict=True):
        local = [mapping.setdefault(int(i), len(mapping) + 1) for i in ids.tolist()]
        frame.track_ids = torch.tensor(local, dtype=torch.int64)


def model_inputs(
    clips: Sequence[ClipSample], device: torch.device | str = "cpu"
) -> tuple[list[Tensor], list[dict[str, Any]]]:
    """``(images, targets)`` for ``model.forward_train`` from a batch of clips.

    Frames are laid out clip after clip. Track ids are made unique over the batch (clip ``c``'s
    ids are offset by the ids of clips before it), so no track is matched across clips. Pairs for
    the tracking loss: the key frame with the clip's first reference frame, every reference frame
    with the key frame; single-frame clips get no pair.
    """
    images: list[Tensor] = []
    targets: list[dict[str, Any]] = []
    offset = 0
    for clip in clips:
        base = len(images)
        n = len(clip)
        for t in range(n):
            frame = clip.targets[t]
            pair = -1 if n == 1 else (base + 1 if t == 0 else base)
            images.append(clip.images[t].to(device))
            targets.append(
                {
                    "boxes": frame.boxes.to(device),
                    "labels": frame.classes.to(device),
                    "masks": frame.masks.to(device=device, dtype=torch.uint8),
                    "semantic": frame.semantic.to(device),
                    "track_ids": (frame.track_ids + offset).to(device),
                    "pair": pair,
                }
            )
        offset += clip.num_tracks
    return images, targets
