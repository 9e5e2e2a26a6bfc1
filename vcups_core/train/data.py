"""Training clips from a pseudo-label store: frame cache, index, schedule and dataset (method §4).

* :class:`FrameCache` decodes each clip's frames **once** from the source the store names (bag,
  image folder or dataset) into ``CACHE/<clip>/<stem>.png`` at the label size, so training reads
  frames by index instead of replaying a bag for every sample. A clip's cache is complete when
  its ``.done`` marker lists exactly the store's stems; it is filled under a lock, so torchrun
  ranks share one cache.
* :class:`StoreIndex` lists the key frames training samples from: every frame of every finished
  clip, or (``only_with_instances``, CUPS' ``only_use_non_empty_samples``) those with at least one
  thing instance. It is cached in ``CACHE/index.json`` under the store's config hash.
* :class:`Schedule` fixes the data order: epoch ``e`` visits the index in the order of a
  permutation drawn from ``(seed, e)``; global step ``s`` takes ``batch_size`` consecutive entries
  of its epoch's order, wrapping around when the index is shorter than the batch, and rank ``r``
  of ``W`` takes the ``r``-th contiguous ``batch_size / W`` of them. So the order depends on
  nothing but the seed and the step, a resumed run sees the same samples as an uninterrupted
  one, and ``W`` ranks see exactly the global batch one process would.
* :class:`ClipDataset` turns one work item ``(step, slot, key frame)`` into a :class:`ClipSample`:
  reference frames drawn within ``±clip.max_reference_offset`` of the key, targets from the store
  (:meth:`~vcups_core.pseudo.store.StoreClip.targets`), track ids made clip-local, then the
  clip-consistent augmentation. Every random draw comes from a generator seeded by
  ``(seed, step, slot)``, so the result does not depend on the worker that made it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from vcups_core.jobs import atomic_write_json, atomic_write_png, file_lock
from vcups_core.pseudo.store import StoreClip, read_manifest, read_store
from vcups_core.train.sample import ClipSample, FrameTargets, relabel_tracks

log = logging.getLogger(__name__)

DONE_MARKER = ".done"
INDEX_FILE = "index.json"


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (sha256 of their decimal text): independent streams for
    ``(seed, step, slot)`` tuples without the correlations of ``seed + step``."""
    digest = hashlib.sha256(",".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator(*parts: int) -> torch.Generator:
    """A CPU :class:`torch.Generator` seeded with :func:`mix_seed` of ``parts``."""
    g = torch.Generator()
    g.manual_seed(mix_seed(*parts))
    return g


# --------------------------------------------------------------------------------------------------
# Frames


class FrameCache:
    """Decoded frames of a store's clips, ``CACHE/<clip>/<stem>.png`` (RGB stored as PNG).

    Args:
        root: the cache folder (created when needed).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, clip: str, stem: str) -> Path:
        return self.root / clip / f"{stem}.png"

    def is_complete(self, clip: StoreClip) -> bool:
        marker = self.root / clip.name / DONE_MARKER
        try:
            data = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return bool(data == {"stems": list(clip.stems)})

    def ensure(self, clip: StoreClip, *, progress: Callable[[int], None] | None = None) -> None:
        """Decode the clip's frames into the cache unless it is complete (idempotent).

        Raises:
            FileNotFoundError, ValueError: the clip's source is gone or no longer matches the
                labels (from :meth:`StoreClip.frames`).
        """
        if self.is_complete(clip):
            return
        folder = self.root / clip.name
        folder.mkdir(parents=True, exist_ok=True)
        with file_lock(folder / ".lock"):
            if self.is_complete(clip):  # another rank filled it while we waited
                return
            for _stem, frame in clip.frames():
                atomic_write_png(
                    self.path(clip.name, _stem), np.ascontiguousarray(frame.image[:, :, ::-1])
                )
                if progress is not None:
                    progress(1)
            atomic_write_json(folder / DONE_MARKER, {"stems": list(clip.stems)})

    def read(self, clip: str, stem: str) -> torch.Tensor:
        """``float32[3, H, W]`` RGB in ``[0, 1]``.

        Raises:
            FileNotFoundError: the frame is not cached (call :meth:`ensure` first).
        """
        path = self.path(clip, stem)
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"{path}: cached frame missing or unreadable")
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        return torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)


# --------------------------------------------------------------------------------------------------
# Index


@dataclasses.dataclass(frozen=True)
class StoreIndex:
    """The store's clips and the key frames training samples from.

    Attributes:
        clips: the store's finished clips (by name).
        keys: ``(clip index, frame index)`` of every eligible key frame, in store order.
        thing_classes, stuff_classes: the store's thing/stuff split (pseudo-class ids).
    """

    clips: tuple[StoreClip, ...]
    keys: tuple[tuple[int, int], ...]
    thing_classes: tuple[int, ...]
    stuff_classes: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def build(cls, store: Path, cache: Path, *, only_with_instances: bool = True) -> StoreIndex:
        """Read ``store``'s manifest and list its key frames (cached in ``cache/index.json``).

        Raises:
            FileNotFoundError: no manifest (not a store).
            ValueError: the store has no semantic pseudo-labels (thing/stuff classes), no
                finished clip, or no eligible key frame.
        """
        store = Path(store)
        manifest = read_manifest(store)
        clips = tuple(read_store(store))
        if not clips:
            raise ValueError(f"{store}: the store has no finished clip (see its manifest summary)")
        things, stuff = clips[0].thing_classes, clips[0].stuff_classes
        if things is None or stuff is None:
            raise ValueError(
                f"{store}: the store has no semantic pseudo-labels (thing_classes missing); "
                "make it with `vcups pseudo-labels` and semantics.weights set"
            )
        if not things:
            raise ValueError(f"{store}: the store's thing/stuff split has no thing class")
        signature = {
            "config_hash": manifest.get("config_hash"),
            "thing_classes": list(things),
            "clips": {c.name: list(c.stems) for c in clips},
            "only_with_instances": only_with_instances,
        }
        index_path = Path(cache) / INDEX_FILE
        keys: list[tuple[int, int]] | None = None
        try:
            data = json.loads(index_path.read_text(encoding="utf-8"))
            if data.get("signature") == signature:
                keys = [(int(c), int(f)) for c, f in data["keys"]]
        except (OSError, ValueError, KeyError, TypeError):
            keys = None
        if keys is None:
            keys = []
            for c, clip in enumerate(clips):
                for f in range(len(clip)):
                    if not only_with_instances or clip.targets(f).has_instances:
                        keys.append((c, f))
            index_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(index_path, {"signature": signature, "keys": keys}, indent=None)
        if not keys:
            raise ValueError(
                f"{store}: no frame has a thing instance to train on (only_with_instances); "
                "check the pseudo-labels"
            )
        return cls(clips, tuple(keys), tuple(things), tuple(stuff))


# --------------------------------------------------------------------------------------------------
# Schedule


@dataclasses.dataclass(frozen=True)
class WorkItem:
    """One clip to load: global ``step``, ``slot`` in the global batch, key frame."""

    step: int
    slot: int
    clip: int
    frame: int


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The data order of a run (see the module docstring).

    Args:
        num_keys: length of the index.
        batch_size: global batch size (clips per step over all ranks).
        epochs: passes over the index.
        seed: the run's seed.
        world_size: number of ranks (must divide ``batch_size``).
        max_steps: stop after this many steps (None: ``epochs`` passes).
    """

    num_keys: int
    batch_size: int
    epochs: int
    seed: int
    world_size: int = 1
    max_steps: int | None = None

    def __post_init__(self) -> None:
        if self.num_keys < 1:
            raise ValueError("the index is empty")
        if self.batch_size % self.world_size:
            raise ValueError(
                f"batch_size {self.batch_size} is not divisible by the {self.world_size} ranks "
                "(set batch_size to a multiple of the number of processes)"
            )

    @property
    def steps_per_epoch(self) -> int:
        """``max(1, num_keys // batch_size)`` (the last partial batch of an epoch is dropped)."""
        return max(1, self.num_keys // self.batch_size)

    @property
    def total_steps(self) -> int:
        total = self.epochs * self.steps_per_epoch
        return total if self.max_steps is None else min(total, self.max_steps)

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def _order(self, epoch: int) -> list[int]:
        return torch.randperm(self.num_keys, generator=generator(self.seed, epoch)).tolist()

    def items(self, index: StoreIndex, rank: int, start_step: int = 0) -> list[WorkItem]:
        """Every work item of rank ``rank`` from ``start_step`` to the end, in order."""
        out = []
        orders: dict[int, list[int]] = {}
        local = self.batch_size // self.world_size
        for step in range(start_step, self.total_steps):
            epoch = self.epoch_of(step)
            order = orders.setdefault(epoch, self._order(epoch))
            start = (step - epoch * self.steps_per_epoch) * self.batch_size
            for slot in range(rank * local, (rank + 1) * local):
                clip, frame = index.keys[order[(start + slot) % self.num_keys]]
                out.append(WorkItem(step, slot, clip, frame))
        return out


# --------------------------------------------------------------------------------------------------
# Dataset


def frame_targets(
    clip: StoreClip, i: int, *, ignore_unknown_thing_regions: bool = False
) -> tuple[FrameTargets, torch.Tensor]:
    """Frame ``i``'s targets with the store's track ids (``int64[N]``, returned separately).

    ``ignore_unknown_thing_regions``: see :func:`vcups_core.pseudo.compose.training_targets`.
    """
    t = clip.targets(i, ignore_unknown_thing_regions=ignore_unknown_thing_regions)
    targets = FrameTargets(
        boxes=torch.from_numpy(t.boxes),
        classes=torch.from_numpy(t.classes),
        masks=torch.from_numpy(t.masks),
        track_ids=torch.from_numpy(t.track_ids),
        semantic=torch.from_numpy(t.sem_seg.astype(np.int64)),
    )
    return targets, torch.from_numpy(t.track_ids)


def reference_offsets(
    key: int, length: int, count: int, max_offset: int, g: torch.Generator
) -> list[int]:
    """``count`` reference frame indices within ``±max_offset`` of ``key`` (not ``key``) inside
    ``[0, length)``, drawn with ``g`` without repeats while possible; ``key`` itself when the
    clip has a single frame."""
    candidates = [
        key + d for d in range(-max_offset, max_offset + 1) if d and 0 <= key + d < length
    ]
    if not candidates:
        return [key] * count
    out = []
    for n in range(count):
        pool = candidates if n >= len(candidates) else [c for c in candidates if c not in out]
        out.append(pool[int(torch.randint(len(pool), (1,), generator=g))])
    return out


class ClipDataset(Dataset[tuple[ClipSample, ClipSample]]):
    """Work items → ``(augmented, raw)`` clip pairs (see the module docstring).

    Args:
        index: the store index.
        cache: decoded frames (every clip must be cached: :meth:`FrameCache.ensure`).
        items: the work items, in order.
        clip_length: frames per clip (key + ``clip_length - 1`` references).
        max_reference_offset: largest ``|dt|`` between key and reference.
        augment: the clip-consistent *geometric* augmentation, called with the sample and its
            generator (None: none); the loop applies copy-paste, the batch resolution and the
            photometric part after it (method §4.3's order).
        seed: the run's seed.

    ``raw`` is the clip before augmentation (label size); the self-enhanced copy-paste predicts
    on it.
    """

    def __init__(
        self,
        index: StoreIndex,
        cache: FrameCache,
        items: Sequence[WorkItem],
        *,
        clip_length: int,
        max_reference_offset: int,
        augment: Callable[[ClipSample, torch.Generator], ClipSample] | None,
        seed: int,
        ignore_unknown_thing_regions: bool = False,
    ) -> None:
        self.index = index
        self.ignore_unknown_thing_regions = ignore_unknown_thing_regions
        self.cache = cache
        self.items = list(items)
        self.clip_length = clip_length
        self.max_reference_offset = max_reference_offset
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return len(self.items)

    def load(self, item: WorkItem, g: torch.Generator) -> ClipSample:
        """The un-augmented clip of ``item`` (references drawn with ``g``)."""
        clip = self.index.clips[item.clip]
        refs = reference_offsets(
            item.frame, len(clip), self.clip_length - 1, self.max_reference_offset, g
        )
        frames = [item.frame, *refs]
        targets, source_ids = [], []
        for f in frames:
            t, ids = frame_targets(
                clip, f, ignore_unknown_thing_regions=self.ignore_unknown_thing_regions
            )
            targets.append(t)
            source_ids.append(ids)
        relabel_tracks(targets, source_ids)
        images = torch.stack([self.cache.read(clip.name, clip.stems[f]) for f in frames])
        return ClipSample(images, targets, clip=clip.name, frame_indices=tuple(frames))

    def __getitem__(self, i: int) -> tuple[ClipSample, ClipSample]:
        item = self.items[i]
        g = generator(self.seed, item.step, item.slot)
        raw = self.load(item, g)
        augmented = raw if self.augment is None else self.augment(raw, g)
        return augmented, raw


def collate(batch: list[tuple[ClipSample, ClipSample]]) -> list[tuple[ClipSample, ClipSample]]:
    """The identity: a batch is a list of ``(augmented, raw)`` pairs (clip sizes may differ)."""
    return batch


def describe(index: StoreIndex) -> dict[str, Any]:
    """Counts for the log and the run record."""
    return {
        "clips": len(index.clips),
        "frames": sum(len(c) for c in index.clips),
        "key_frames": len(index),
        "thing_classes": list(index.thing_classes),
        "stuff_classes": list(index.stuff_classes),
    }
