"""A deterministic predictor made from the synthetic world's ground truth (no weights needed).

It lives beside the world it reads (:mod:`vcups_core.data.synthetic`) and stands in for the
network wherever the streaming path must be exercised without a trained model: tests, the
benchmark, ``vcups replay --oracle`` and ``vcups evaluate --oracle``, the node's tests. It
implements :class:`~vcups_core.model.predictors.base.Predictor`. Each known image maps to its frame's
ground truth: things become detections with score ``score``, an embedding that is a fixed random
unit vector per track id, and their exact masks; stuff becomes one-hot-ish semantic
probabilities. Options inject the failures a tracker must survive: detection dropouts and
semantic flicker. Unknown images get an empty prediction (everything "thing" channel = void).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from vcups_core.data import cityscapes_classes as cs
from vcups_core.data.datasets import SYNTHETIC_WORLD
from vcups_core.data.synthetic import SyntheticFrame
from vcups_core.types import CategoryTable, FramePrediction, MaskCrops

THING_CLASSES = (cs.CAR, cs.PERSON)
STUFF_CLASSES = tuple(sorted(SYNTHETIC_WORLD.evaluated_ids - SYNTHETIC_WORLD.thing_ids))
"""The world's stuff classes in id order (road, sidewalk, building, pole, traffic sign,
vegetation, terrain, sky): one list, :data:`~vcups_core.data.datasets.SYNTHETIC_WORLD`."""
CATEGORIES = CategoryTable(
    names=tuple(cs.CLASS_NAMES[c] for c in THING_CLASSES + STUFF_CLASSES),
    num_things=len(THING_CLASSES),
    pseudo_class_ids=THING_CLASSES + STUFF_CLASSES,
)
"""Oracle categories: things car, person; then the world's stuff classes (train ids as ids)."""


def image_key(image: npt.NDArray[np.uint8]) -> str:
    return hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).hexdigest()


class OraclePredictor:
    """Ground-truth predictor for :class:`~vcups_core.data.synthetic.SyntheticWorld` frames.

    Args:
        frames: the frames it can answer for (looked up by image content).
        score: detection score of every instance.
        embed_dim: embedding size.
        drop: ``{frame index: track ids}`` instances to leave out (dropouts).
        flicker: ``{frame index: (stuff class a, stuff class b)}`` label swaps on that frame.
        min_area: instances with fewer pixels are not detected.
    """

    categories = CATEGORIES
    model_name = "oracle"
    checksum = ""

    def __init__(
        self,
        frames: Iterable[SyntheticFrame],
        *,
        score: float = 0.9,
        embed_dim: int = 16,
        drop: dict[int, set[int]] | None = None,
        flicker: dict[int, tuple[int, int]] | None = None,
        min_area: int = 4,
    ) -> None:
        self._frames = {image_key(f.rgb): f for f in frames}
        self.score, self.embed_dim, self.min_area = score, embed_dim, min_area
        self.drop = drop or {}
        self.flicker = flicker or {}

    def embedding(self, track_id: int) -> npt.NDArray[np.float32]:
        """Fixed unit vector per track id, scaled so that same-id dot products dominate."""
        rng = np.random.default_rng(track_id)
        v = rng.standard_normal(self.embed_dim)
        return (4.0 * v / np.linalg.norm(v)).astype(np.float32)

    def predict(self, image: npt.NDArray[np.uint8]) -> FramePrediction:
        frame = self._frames.get(image_key(image))
        h, w = image.shape[:2]
        if frame is None:
            return empty_prediction(h, w, self.embed_dim, CATEGORIES.num_stuff)
        ids = [int(t) for t in np.unique(frame.instance) if t]
        ids = [t for t in ids if t not in self.drop.get(frame.index, set())]
        masks, boxes, classes, kept_ids = [], [], [], []
        for t in ids:
            m = frame.instance == t
            if m.sum() < self.min_area:
                continue
            ys, xs = np.nonzero(m)
            masks.append(m)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            classes.append(THING_CLASSES.index(int(frame.semantic[ys[0], xs[0]])))
            kept_ids.append(t)
        n = len(masks)
        mask_arr = np.stack(masks) if n else np.zeros((0, h, w), bool)
        instance = np.zeros((h, w), np.int32)
        for k, m in enumerate(masks):
            instance[m] = k + 1
        semantic = frame.semantic.copy()
        if frame.index in self.flicker:
            a, b = self.flicker[frame.index]
            semantic = np.where(frame.semantic == a, b, np.where(frame.semantic == b, a, semantic))
        probs = stuff_probabilities(semantic, instance > 0)
        return FramePrediction(
            boxes=np.asarray(boxes, np.float32).reshape(n, 4),
            scores=np.full(n, self.score, np.float32),
            classes=np.asarray(classes, np.int64),
            masks=MaskCrops.from_dense(mask_arr),
            embeddings=np.stack([self.embedding(t) for t in kept_ids])
            if n
            else np.zeros((0, self.embed_dim), np.float32),
            semantic_probs=probs,
            panoptic_instance=instance,
        )


def stuff_probabilities(
    semantic: npt.NDArray[np.uint8], things: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float32]:
    """``float32[S + 1, H, W]``: 0.8 on the pixel's class channel (channel 0 for things), rest shared."""
    channels = 1 + len(STUFF_CLASSES)
    lut = np.zeros(256, np.int64)
    for j, c in enumerate(STUFF_CLASSES):
        lut[c] = 1 + j
    index = np.where(things, 0, lut[semantic])
    probs = np.full((channels, *semantic.shape), 0.2 / (channels - 1), np.float32)
    np.put_along_axis(probs, index[None], np.float32(0.8), axis=0)
    return probs


def empty_prediction(height: int, width: int, embed_dim: int, num_stuff: int) -> FramePrediction:
    """No detections; all probability on the "thing" channel (so everything ends up void)."""
    probs = np.zeros((num_stuff + 1, height, width), np.float32)
    probs[0] = 1.0
    return FramePrediction(
        boxes=np.zeros((0, 4), np.float32),
        scores=np.zeros(0, np.float32),
        classes=np.zeros(0, np.int64),
        masks=MaskCrops(np.zeros((0, 4), np.int64), [], height, width),
        embeddings=np.zeros((0, embed_dim), np.float32),
        semantic_probs=probs,
        panoptic_instance=np.zeros((height, width), np.int32),
    )
