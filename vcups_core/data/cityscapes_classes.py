"""The Cityscapes 19-class train-id taxonomy used by every benchmark vcups evaluates on.

Train ids 0-10 are stuff, 11-18 things; 255 is void. Colours are the Cityscapes palette.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

CLASS_NAMES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
"""Name of each train id 0..18."""

THING_IDS: frozenset[int] = frozenset(range(11, 19))
"""Train ids of the 8 thing classes (person .. bicycle)."""

STUFF_IDS: frozenset[int] = frozenset(range(11))

COLORS: npt.NDArray[np.uint8] = np.array(
    [
        (128, 64, 128),
        (244, 35, 232),
        (70, 70, 70),
        (102, 102, 156),
        (190, 153, 153),
        (153, 153, 153),
        (250, 170, 30),
        (220, 220, 0),
        (107, 142, 35),
        (152, 251, 152),
        (70, 130, 180),
        (220, 20, 60),
        (255, 0, 0),
        (0, 0, 142),
        (0, 0, 70),
        (0, 60, 100),
        (0, 80, 100),
        (0, 0, 230),
        (119, 11, 32),
    ],
    dtype=np.uint8,
)
"""``uint8[19, 3]`` RGB display colour of each train id."""

# Train ids by name, for code that needs a specific class.
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN = range(8)
VEGETATION, TERRAIN, SKY, PERSON, RIDER, CAR, TRUCK, BUS, TRAIN = range(8, 17)
MOTORCYCLE, BICYCLE = 17, 18
