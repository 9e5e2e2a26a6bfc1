"""Oracle cues: the synthetic world's exact flow, depth and motion (ablations and tests only).

:class:`OracleCues` renders frames of a :class:`~vcups_core.data.synthetic.SyntheticWorld` and
serves their ground truth through the three cue contracts of :mod:`vcups_core.cues.base`. The
frames handed to the backends are identified by ``VideoFrame.index`` (their frame number in the
world's clip); their image content is not looked at.

If a frame is not at the world's size (the pipeline's processing size differs), the ground truth
is resized to it: flow bilinearly with each component scaled by the size ratio, depth and the
motion mask with nearest neighbours (bilinear depth would invent surfaces between an object and
what lies behind it).
"""

from __future__ import annotations

from collections import OrderedDict

import cv2
import numpy as np
import numpy.typing as npt

from vcups_core.cues.base import FloatMap, FrameCues
from vcups_core.data.synthetic import SyntheticFrame, SyntheticWorld
from vcups_core.types import VideoFrame


class OracleCues:
    """Ground-truth cue backends of one synthetic world.

    Attributes:
        flow: :class:`~vcups_core.cues.base.FlowEstimator` (between neighbouring frames only).
        depth: :class:`~vcups_core.cues.base.DepthEstimator` (z-depth in metres, sky NaN).
        motion: :class:`~vcups_core.cues.base.MotionEstimator` (the moving mask as 0/1).

    Args:
        world: the world the frames come from.
        cache_size: rendered frames kept (rendering is the expensive part; a frame and its two
            neighbours are what one step of the pipeline asks for).
    """

    name = "oracle"

    def __init__(self, world: SyntheticWorld, cache_size: int = 4) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        self.world = world
        self.cache_size = cache_size
        self._cache: OrderedDict[int, SyntheticFrame] = OrderedDict()
        self.flow = OracleFlow(self)
        self.depth = OracleDepth(self)
        self.motion = OracleMotion(self)

    def render(self, index: int) -> SyntheticFrame:
        """The world's frame ``index`` (cached, least recently used dropped first).

        Raises:
            ValueError: if ``index`` is outside ``[0, len(world))`` (e.g. -1, unknown).
        """
        if not 0 <= index < self.world.num_frames:
            raise ValueError(
                f"oracle cues: frame index {index} is not a frame of the synthetic clip "
                f"(0..{self.world.num_frames - 1}); VideoFrame.index must be set"
            )
        frame = self._cache.get(index)
        if frame is None:
            frame = self.world.render(index)
            self._cache[index] = frame
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(index)
        return frame

    def _size_ratio(self, frame: VideoFrame) -> tuple[float, float] | None:
        """``(sx, sy)`` from the world's size to ``frame``'s, or None if they are equal."""
        if (frame.height, frame.width) == (self.world.height, self.world.width):
            return None
        return frame.width / self.world.width, frame.height / self.world.height


def _resize_nearest(values: npt.NDArray[np.float32], frame: VideoFrame) -> npt.NDArray[np.float32]:
    out = cv2.resize(values, (frame.width, frame.height), interpolation=cv2.INTER_NEAREST)
    return np.asarray(out, dtype=np.float32)


class OracleFlow:
    """Ground-truth flow between neighbouring frames (a
    :class:`~vcups_core.cues.base.FlowEstimator`)."""

    name = "oracle"

    def __init__(self, oracle: OracleCues) -> None:
        self._oracle = oracle

    def __call__(self, source: VideoFrame, target: VideoFrame) -> FloatMap:
        """The rendered ``flow_forward`` (target = source + 1) or ``flow_backward`` (source - 1).

        Returns:
            ``float32[H, W, 2]`` at ``source``'s size (NaN where the point is behind the camera
            in the other frame).

        Raises:
            ValueError: if the frames differ in size, or ``target`` is not a neighbour of
                ``source`` in the clip.
        """
        if source.image.shape != target.image.shape:
            raise ValueError(
                f"oracle flow needs frames of the same size, got {source.height}x{source.width} "
                f"and {target.height}x{target.width}"
            )
        step = target.index - source.index
        if step not in (1, -1):
            raise ValueError(
                f"oracle flow exists only between neighbouring frames, got {source.index} -> "
                f"{target.index}"
            )
        rendered = self._oracle.render(source.index)
        flow = rendered.flow_forward if step == 1 else rendered.flow_backward
        ratio = self._oracle._size_ratio(source)
        if ratio is None:
            return flow.copy()
        resized = cv2.resize(flow, (source.width, source.height), interpolation=cv2.INTER_LINEAR)
        return (resized * np.array(ratio, dtype=np.float32)).astype(np.float32)


class OracleDepth:
    """Ground-truth z-depth (:class:`~vcups_core.cues.base.DepthEstimator`)."""

    name = "oracle"

    def __init__(self, oracle: OracleCues) -> None:
        self._oracle = oracle

    def __call__(self, cues: FrameCues) -> FloatMap:
        """``float32[H, W]`` metric z-depth of ``cues.frame``; the sky (infinite) is NaN."""
        frame = cues.frame
        depth = self._oracle.render(frame.index).depth
        depth = np.where(np.isfinite(depth), depth, np.float32(np.nan)).astype(np.float32)
        if self._oracle._size_ratio(frame) is not None:
            depth = _resize_nearest(depth, frame)
        return depth


class OracleMotion:
    """Ground-truth independent motion (:class:`~vcups_core.cues.base.MotionEstimator`)."""

    name = "oracle"

    def __init__(self, oracle: OracleCues) -> None:
        self._oracle = oracle

    def __call__(
        self, cues: FrameCues, where: npt.NDArray[np.bool_] | None = None
    ) -> tuple[FloatMap, FloatMap | None]:
        """``(float32[H, W]`` 1 on independently moving objects, 0 elsewhere``, None)``
        (``where`` is ignored: every pixel is scored)."""
        frame = cues.frame
        moving = self._oracle.render(frame.index).motion.astype(np.float32)
        if self._oracle._size_ratio(frame) is not None:
            moving = _resize_nearest(moving, frame)
        return moving, None
