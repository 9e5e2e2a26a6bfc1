"""union_box: the bounding box of find_objects boxes, hand-computed."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from vcups_core.pseudo.boxes import union_box


def test_union_box_of_two_find_objects_boxes() -> None:
    labels = np.zeros((10, 12), np.int32)
    labels[1:3, 2:5] = 1
    labels[6:9, 7:11] = 2
    boxes = ndimage.find_objects(labels)
    assert union_box([b for b in boxes if b is not None]) == (slice(1, 9), slice(2, 11))
    assert union_box([boxes[0]]) == boxes[0]
