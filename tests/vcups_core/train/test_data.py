"""Schedule, reference frames, clip-local ids and model inputs (hand-made cases)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vcups_core.pseudo.store import StoreClip
from vcups_core.train.data import (
    Schedule,
    StoreIndex,
    frame_targets,
    generator,
    reference_offsets,
)
from vcups_core.train.sample import ClipSample, FrameTargets, model_inputs, relabel_tracks


def _index(n: int) -> StoreIndex:
    return StoreIndex(
        clips=(), keys=tuple((0, i) for i in range(n)), thing_classes=(1,), stuff_classes=(0,)
    )


def test_schedule_ranks_split_the_global_batch_of_one_process() -> None:
    index = _index(10)
    single = Schedule(num_keys=10, batch_size=4, epochs=2, seed=3)
    double = Schedule(num_keys=10, batch_size=4, epochs=2, seed=3, world_size=2)
    assert single.steps_per_epoch == 2 and single.total_steps == 4
    one = single.items(index, 0)
    r0, r1 = double.items(index, 0), double.items(index, 1)
    for step in range(4):
        glob = [(i.slot, i.frame) for i in one if i.step == step]
        split = [(i.slot, i.frame) for i in r0 + r1 if i.step == step]
        assert sorted(split) == glob
        assert [i.slot for i in r0 if i.step == step] == [0, 1]
    # an epoch visits distinct keys; the second epoch is another permutation
    epoch0 = [i.frame for i in one if i.step < 2]
    assert len(set(epoch0)) == 8
    assert epoch0 != [i.frame for i in one if i.step >= 2]


def test_schedule_resume_continues_the_same_order_and_wraps_short_indices() -> None:
    index = _index(3)
    sched = Schedule(num_keys=3, batch_size=4, epochs=2, seed=0, max_steps=2)
    assert sched.steps_per_epoch == 1 and sched.total_steps == 2
    full = sched.items(index, 0)
    assert sched.items(index, 0, start_step=1) == [i for i in full if i.step == 1]
    first = [i.frame for i in full if i.step == 0]
    assert first[3] == first[0]  # wrapped around the 3 keys
    assert sorted(set(first)) == [0, 1, 2]


def test_schedule_rejects_a_batch_not_divisible_by_the_ranks() -> None:
    with pytest.raises(ValueError, match="not divisible by the 2 ranks"):
        Schedule(num_keys=5, batch_size=3, epochs=1, seed=0, world_size=2)


def test_reference_offsets_stay_in_range_and_differ_from_the_key() -> None:
    g = generator(1, 2)
    for key in range(5):
        refs = reference_offsets(key, 5, 2, 1, g)
        assert all(0 <= r < 5 and r != key and abs(r - key) <= 1 for r in refs)
        if 0 < key < 4:
            assert sorted(refs) == [key - 1, key + 1]  # no repeat while candidates remain
    assert reference_offsets(0, 1, 1, 3, g) == [0]  # a one-frame clip references itself


def _frame(ids: list[int], h: int = 4, w: int = 4) -> FrameTargets:
    n = len(ids)
    masks = torch.zeros((n, h, w), dtype=torch.bool)
    for k in range(n):
        masks[k, k, k] = True
    return FrameTargets(
        boxes=torch.zeros((n, 4)),
        classes=torch.zeros(n, dtype=torch.int64),
        masks=masks,
        track_ids=torch.tensor(ids, dtype=torch.int64),
        semantic=torch.zeros((h, w), dtype=torch.int64),
    )


def test_relabel_tracks_and_presence() -> None:
    frames = [_frame([0, 0]), _frame([0, 0, 0])]
    relabel_tracks(frames, [torch.tensor([700, 9]), torch.tensor([9, 1234, 700])])
    assert frames[0].track_ids.tolist() == [1, 2]
    assert frames[1].track_ids.tolist() == [2, 3, 1]
    clip = ClipSample(torch.zeros((2, 3, 4, 4)), frames, clip="c")
    clip.validate()
    # track 1 (700): index 0 then 2; track 2 (9): 1 then 0; track 3 (1234): absent then 1
    assert clip.presence().tolist() == [[0, 1, -1], [2, 0, 1]]


def test_model_inputs_pairs_key_and_reference_and_offsets_ids_per_clip() -> None:
    a = ClipSample(torch.zeros((2, 3, 4, 4)), [_frame([1, 2]), _frame([2])])
    b = ClipSample(torch.zeros((2, 3, 4, 4)), [_frame([1]), _frame([1])])
    images, targets = model_inputs([a, b])
    assert len(images) == 4
    assert [t["pair"] for t in targets] == [1, 0, 3, 2]
    assert [t["track_ids"].tolist() for t in targets] == [[1, 2], [2], [3], [3]]
    assert targets[0]["masks"].dtype == torch.uint8


def test_frame_targets_ignore_unknown_thing_regions(tmp_path: Path) -> None:
    # thing class 1, stuff class 0; the instance covers (0, 0) only, class 1 also lies at (0, 1)
    sem = np.array([[1, 1, 0]], np.uint8)
    inst = np.array([[7, 0, 0]], np.uint16)
    cv2.imwrite(str(tmp_path / "s.png"), sem)
    cv2.imwrite(str(tmp_path / "i.png"), inst)
    clip = StoreClip(
        name="c",
        stems=("0",),
        instance_paths=(tmp_path / "i.png",),
        semantic_paths=(tmp_path / "s.png",),
        source={},
        height=1,
        width=3,
        thing_classes=(1,),
        stuff_classes=(0,),
    )
    kept, ids = frame_targets(clip, 0)
    assert kept.semantic.tolist() == [[0, 0, 1]]  # CUPS default: 'thing' outside instances
    assert ids.tolist() == [7]
    ignored, _ = frame_targets(clip, 0, ignore_unknown_thing_regions=True)
    assert ignored.semantic.tolist() == [[0, 255, 1]]
    assert ignored.masks.tolist() == kept.masks.tolist() == [[[True, False, False]]]
