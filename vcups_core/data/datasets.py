"""One descriptor per dataset: classes, things, ignore label, label encoding, annotated frames.

The label encodings of the files themselves are documented in each reader's module docstring;
here are the facts every consumer (metrics, readers, writers) shares.
"""

from __future__ import annotations

import dataclasses

from vcups_core.data import cityscapes_classes as cs
from vcups_core.types import IGNORE_LABEL


@dataclasses.dataclass(frozen=True)
class DatasetDescriptor:
    """Facts about one benchmark dataset.

    Attributes:
        name: registry key, e.g. ``"kitti-step"``.
        class_names: name of each class id ``0..N-1`` used in :class:`~vcups_core.data.clip.PanopticLabel`.
        thing_ids: the taxonomy's thing classes: the thing/stuff split of pseudo-class matching
            (``docs/method.md`` §6.1; KITTI-STEP and Waymo use the Cityscapes 8 things, [S A.1]).
        tracked_ids: the thing classes whose ground truth carries instance (track) ids: the
            things of STQ/AQ and VPQ (KITTI-STEP: only person and car; elsewhere all things).
        evaluated_ids: classes that exist in the ground truth and are matched and scored (Waymo
            lacks wall, fence and terrain); ground truth of any other class is void.
        ignore_label: semantic value of void pixels.
        is_video: whether instance ids are consistent over time.
        annotated_every: every how many frames a label exists (1 = every frame).
        fps: frame rate, for timestamps when the dataset has none.
    """

    name: str
    class_names: tuple[str, ...]
    thing_ids: frozenset[int]
    tracked_ids: frozenset[int]
    evaluated_ids: frozenset[int]
    ignore_label: int = IGNORE_LABEL
    is_video: bool = True
    annotated_every: int = 1
    fps: float = 10.0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def stuff_ids(self) -> frozenset[int]:
        return frozenset(range(self.num_classes)) - self.thing_ids

    def __post_init__(self) -> None:
        every = frozenset(range(self.num_classes))
        for name in ("thing_ids", "tracked_ids", "evaluated_ids"):
            bad = sorted(getattr(self, name) - every)
            if bad:
                raise ValueError(f"{self.name}: {name} has {bad}, not a class id < {len(every)}")
        if not self.tracked_ids <= self.thing_ids:
            raise ValueError(f"{self.name}: tracked_ids must be thing classes")


_ALL19 = frozenset(range(19))

CITYSCAPES_VPS = DatasetDescriptor(
    name="cityscapes-vps",
    class_names=cs.CLASS_NAMES,
    thing_ids=cs.THING_IDS,
    tracked_ids=cs.THING_IDS,
    evaluated_ids=_ALL19,
    annotated_every=5,
    fps=17.0,
)
KITTI_STEP = DatasetDescriptor(
    name="kitti-step",
    class_names=cs.CLASS_NAMES,
    thing_ids=cs.THING_IDS,
    tracked_ids=frozenset({cs.PERSON, cs.CAR}),
    evaluated_ids=_ALL19,
    fps=10.0,
)
WAYMO = DatasetDescriptor(
    name="waymo",
    class_names=cs.CLASS_NAMES,
    thing_ids=cs.THING_IDS,
    tracked_ids=cs.THING_IDS,
    evaluated_ids=_ALL19 - {cs.WALL, cs.FENCE, cs.TERRAIN},
    fps=10.0,
)
MOTS = DatasetDescriptor(
    name="mots",
    class_names=("background", "person"),
    thing_ids=frozenset({1}),
    tracked_ids=frozenset({1}),
    evaluated_ids=frozenset({0, 1}),
    fps=30.0,
)
DAVIS = DatasetDescriptor(
    name="davis",
    class_names=("object",),
    thing_ids=frozenset({0}),
    tracked_ids=frozenset({0}),
    evaluated_ids=frozenset({0}),
    fps=24.0,
)

DESCRIPTORS: dict[str, DatasetDescriptor] = {
    d.name: d for d in (CITYSCAPES_VPS, KITTI_STEP, WAYMO, MOTS, DAVIS)
}

SYNTHETIC_WORLD = DatasetDescriptor(
    name="synthetic-world",
    class_names=cs.CLASS_NAMES,
    thing_ids=frozenset({cs.PERSON, cs.CAR}),
    tracked_ids=frozenset({cs.PERSON, cs.CAR}),
    evaluated_ids=frozenset(
        {
            cs.ROAD,
            cs.SIDEWALK,
            cs.BUILDING,
            cs.POLE,
            cs.TRAFFIC_SIGN,
            cs.VEGETATION,
            cs.TERRAIN,
            cs.SKY,
            cs.PERSON,
            cs.CAR,
        }
    ),
    fps=10.0,
)
"""The synthetic world's own labels (:mod:`vcups_core.data.synthetic`, Cityscapes train ids): the
ten classes it renders are evaluated, person and car are its things. Like Waymo's missing
classes, the nine Cityscapes classes the world never draws are not matched or scored: the
protocol's Hungarian step would otherwise spend pseudo-classes on classes without a single
ground-truth pixel and count each as an IoU of 0. Scored in memory (no reader), so it is not in
:data:`DESCRIPTORS`; :func:`get_descriptor` knows it."""


def get_descriptor(name: str) -> DatasetDescriptor:
    """The descriptor of ``name`` (a dataset of :data:`DESCRIPTORS`, or ``"synthetic-world"``);
    raises ``ValueError`` listing the known names."""
    known = {**DESCRIPTORS, SYNTHETIC_WORLD.name: SYNTHETIC_WORLD}
    try:
        return known[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(known)}") from None
