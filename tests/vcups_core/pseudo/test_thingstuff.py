"""Thing/stuff statistic and split (method §2.6), on hand-computed counts."""

from __future__ import annotations

import itertools
import json
import logging

import numpy as np
import pytest

from vcups_core.pseudo.thingstuff import (
    ThingStuffStats,
    thing_stuff_scores,
    thing_stuff_split,
)

V = 255  # void


def stats(n_in: list[int], n_all: list[int]) -> ThingStuffStats:
    return ThingStuffStats.from_dict({"num_classes": len(n_in), "n_in": n_in, "n_all": n_all})


# --------------------------------------------------------------------------------------------
# Accumulation


def test_update_counts_by_hand() -> None:
    semantic = np.array([[0, 0, 1, 1], [2, 2, 1, V], [3, 3, V, 0]], np.uint8)
    instance = np.array([[0, 5, 5, 0], [0, 7, 7, 7], [0, 0, 7, 0]], np.uint16)
    s = ThingStuffStats(4)
    s.update(semantic, instance)
    # The two void pixels (both inside track 7) count nowhere.
    assert s.n_all.tolist() == [3, 3, 2, 2]
    assert s.n_in.tolist() == [1, 2, 1, 0]
    assert s.n_in.dtype == np.int64
    s.update(semantic, instance)
    assert s.n_all.tolist() == [6, 6, 4, 4]


def test_update_rejects_bad_maps() -> None:
    s = ThingStuffStats(4)
    with pytest.raises(ValueError, match="pseudo-class"):
        s.update(np.array([[4]], np.uint8), np.zeros((1, 1), np.uint16))
    with pytest.raises(ValueError, match="equal size"):
        s.update(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint16))
    with pytest.raises(ValueError, match="integer"):
        s.update(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.uint16))


def _random_frames(n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        sem = rng.integers(0, 6, size=(5, 7)).astype(np.uint8)
        sem[rng.random((5, 7)) < 0.1] = V
        inst = rng.integers(0, 4, size=(5, 7)).astype(np.uint16)
        frames.append((sem, inst))
    return frames


def test_merge_equals_single_accumulation_and_is_order_independent() -> None:
    frames = _random_frames(9)
    single = ThingStuffStats(6)
    for sem, inst in frames:
        single.update(sem, inst)

    shards = []
    for part in (frames[:2], frames[2:3], frames[3:7], frames[7:]):
        shard = ThingStuffStats(6)
        for sem, inst in part:
            shard.update(sem, inst)
        # Each shard's statistic travels through its JSON status record.
        shards.append(ThingStuffStats.from_dict(json.loads(json.dumps(shard.to_dict()))))

    for perm in itertools.permutations(shards):
        total = ThingStuffStats.sum(perm)
        assert total == single
        assert total.to_dict() == single.to_dict()
        assert thing_stuff_split(total, 0.1) == thing_stuff_split(single, 0.1)
    # merge() works in place and sum() leaves the parts alone.
    before = shards[0].to_dict()
    ThingStuffStats.sum(shards)
    assert shards[0].to_dict() == before
    acc = ThingStuffStats(6)
    for shard in shards:
        assert acc.merge(shard) is acc
    assert acc == single


def test_sum_of_nothing_and_merge_mismatch() -> None:
    assert ThingStuffStats.sum([]) == ThingStuffStats(27)
    assert ThingStuffStats.sum([], num_classes=4) == ThingStuffStats(4)
    with pytest.raises(ValueError, match="merge"):
        ThingStuffStats(4).merge(ThingStuffStats(5))


@pytest.mark.parametrize(
    "data",
    [
        {"num_classes": 3, "n_in": [0, 0], "n_all": [0, 0, 0]},  # wrong length
        {"num_classes": 2, "n_in": [0, -1], "n_all": [0, 0]},  # negative
        {"num_classes": 2, "n_in": [0, 1.5], "n_all": [0, 2]},  # not an int
        {"num_classes": 2, "n_in": [0, 3], "n_all": [0, 2]},  # n_in > n_all
        {"num_classes": 2, "n_in": [0, 0]},  # key missing
    ],
)
def test_from_dict_rejects_bad_records(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (several distinct messages)
        ThingStuffStats.from_dict(data)


# --------------------------------------------------------------------------------------------
# Split


def test_split_hand_computed_q_and_order() -> None:
    # Equal n_all, so q = n_in / sum(n_in) exactly: 90/135, 40/135, 5/135, 0, 0.
    s = stats([0, 90, 0, 40, 5], [100, 100, 100, 100, 100])
    order, q = thing_stuff_scores(s)
    assert order.tolist() == [1, 3, 4, 0, 2]  # the zero ratios keep class-id order
    np.testing.assert_allclose(q, [90 / 135, 40 / 135, 5 / 135, 0, 0], rtol=1e-12)

    # psi = 0.1: q = .667, .296 above; .037 at or below -> 2 things.
    assert thing_stuff_split(s, 0.1) == ((1, 3), (0, 2, 4))
    # psi = 0.01 (the default): .037 > .01 too -> 3 things, in descending-ratio order.
    assert thing_stuff_split(s) == ((1, 3, 4), (0, 2))
    # Stuff comes back ascending, not in the sorted order (4, 0, 2).
    assert thing_stuff_split(s, 0.1)[1] == (0, 2, 4)


def test_split_uses_ratio_not_counts() -> None:
    # Class 0 has the most instance pixels but a small ratio; class 2 the fewest but ratio 1.
    s = stats([50, 10, 4], [1000, 20, 4])
    order, q = thing_stuff_scores(s)
    ratio = np.array([50 / (1000 + 1e-6), 10 / (20 + 1e-6), 4 / (4 + 1e-6)])
    assert order.tolist() == [2, 1, 0]
    np.testing.assert_allclose(q, ratio[[2, 1, 0]] / ratio.sum(), rtol=1e-12)
    # q = [0.6452, 0.3226, 0.0323] -> psi 0.05 keeps two things.
    assert thing_stuff_split(s, 0.05) == ((2, 1), (0,))


def test_split_ties_broken_by_class_id() -> None:
    # ratios .5, 1, 1, 0 -> order 1, 2 (tie, by id), 0, 3; q = .4, .4, .2, 0.
    s = stats([5, 10, 10, 0], [10, 10, 10, 10])
    order, q = thing_stuff_scores(s)
    assert order.tolist() == [1, 2, 0, 3]
    np.testing.assert_allclose(q, [0.4, 0.4, 0.2, 0.0], rtol=1e-12)
    assert thing_stuff_split(s, 0.3) == ((1, 2), (0, 3))
    # The tied pair at ids 0 and 1 instead: again the smaller id first.
    s2 = stats([10, 10, 5, 0], [10, 10, 10, 10])
    assert thing_stuff_split(s2, 0.3) == ((0, 1), (2, 3))


def test_split_many_ties_keep_class_id_order() -> None:
    # 64 classes in three tied groups (numpy's default sort is not stable at this size).
    n_in = [1] * 20 + [2] * 20 + [0] * 24
    s = stats(n_in, [2] * 64)
    order, _ = thing_stuff_scores(s)
    assert order.tolist() == list(range(20, 40)) + list(range(20)) + list(range(40, 64))
    things, _ = thing_stuff_split(s, 0.01)  # q = 1/30 and 1/60 -> all 40 above 0.01
    assert things == tuple(range(20, 40)) + tuple(range(20))


def test_split_q_equal_to_psi_is_not_a_thing() -> None:
    # q = 0.5, 0.25, 0.25 exactly; "q > psi" is strict, so psi = 0.25 keeps one thing.
    s = stats([1, 1, 2], [4, 4, 4])
    order, q = thing_stuff_scores(s)
    assert order.tolist() == [2, 0, 1]
    assert q.tolist() == [0.5, 0.25, 0.25]
    assert thing_stuff_split(s, 0.25) == ((2,), (0, 1))


def test_split_all_above_psi_gives_no_things_as_cups(caplog: pytest.LogCaptureFixture) -> None:
    # q = 30/60, 20/60, 10/60: all > 0.1, so argmin(all True) = 0 -> zero thing classes.
    s = stats([10, 20, 30], [100, 100, 100])
    _, q = thing_stuff_scores(s)
    np.testing.assert_allclose(q, [0.5, 1 / 3, 1 / 6], rtol=1e-12)
    with caplog.at_level(logging.WARNING, logger="vcups_core.pseudo.thingstuff"):
        assert thing_stuff_split(s, 0.1) == ((), (0, 1, 2))
    assert "every class has q > psi" in caplog.text
    # One step more psi and the last class drops below: 2 things.
    assert thing_stuff_split(s, 0.2) == ((2, 1), (0,))


def test_split_none_above_psi(caplog: pytest.LogCaptureFixture) -> None:
    # Four equal ratios: q = 0.25 each, not > 0.3.
    s = stats([1, 1, 1, 1], [2, 2, 2, 2])
    _, q = thing_stuff_scores(s)
    np.testing.assert_allclose(q, [0.25] * 4, rtol=1e-12)
    with caplog.at_level(logging.WARNING, logger="vcups_core.pseudo.thingstuff"):
        assert thing_stuff_split(s, 0.3) == ((), (0, 1, 2, 3))
    assert "no class has q > psi" in caplog.text
    # At the default psi with > 100 equal classes every q = 1/200 <= 0.01.
    many = stats([1] * 200, [2] * 200)
    assert thing_stuff_split(many) == ((), tuple(range(200)))


@pytest.mark.parametrize(
    ("n_in", "n_all"),
    [([0, 0, 0], [5, 7, 0]), ([0, 0, 0], [0, 0, 0])],
    ids=["no-instance-pixels", "empty"],
)
def test_split_zero_ratios_gives_no_things(n_in: list[int], n_all: list[int]) -> None:
    s = stats(n_in, n_all)
    order, q = thing_stuff_scores(s)
    assert order.tolist() == [0, 1, 2]
    assert q.tolist() == [0.0, 0.0, 0.0]  # zeros, not NaN
    assert thing_stuff_split(s) == ((), (0, 1, 2))


def test_split_rejects_bad_psi() -> None:
    with pytest.raises(ValueError, match="psi"):
        thing_stuff_split(ThingStuffStats(3), 0.0)
    with pytest.raises(ValueError, match="psi"):
        thing_stuff_split(ThingStuffStats(3), 1.0)


def test_split_covers_every_class_once() -> None:
    s = ThingStuffStats(6)
    for sem, inst in _random_frames(5, seed=3):
        s.update(sem, inst)
    for psi in (0.01, 0.1, 0.2, 0.5):
        things, stuff = thing_stuff_split(s, psi)
        assert sorted(things + stuff) == list(range(6))
        assert list(stuff) == sorted(stuff)
