"""``config/pseudo_labels.yaml`` → cue backends, and the streaming cue pipeline of a clip.

The one place where the cue sections of :class:`~vcups_core.configs.pseudo_labels.PseudoLabelConfig`
are translated into backends. Per clip, :meth:`CuePipeline.run` computes for every frame ``t``:

1. flow to the next frame and the next frame's flow back (two flows per frame; the last frame of
   a clip uses its flow to the previous frame, which the previous step already computed);
2. validity: forward-backward consistency and the border mask;
3. the camera motion along that flow (only where a backend needs it);
4. depth, then the motion score; with ``motion.bidirectional`` also along the flow to the
   previous frame (the smaller score kept), and pixels whose flow leaves the image take their
   validity from that direction (``validity.exits_from_back``).

Frames stream through with one frame of look-ahead, so memory does not grow with the clip.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from vcups_core.config import config_to_dict, replace
from vcups_core.configs.pseudo_labels import PseudoLabelConfig
from vcups_core.cues.base import (
    DepthEstimator,
    FloatMap,
    FlowEstimator,
    FrameCues,
    MotionEstimator,
)
from vcups_core.cues.validity import leaves_image, validity_mask
from vcups_core.runtime import rank_device
from vcups_core.types import VideoFrame


def cue_device(cfg: PseudoLabelConfig) -> str:
    """The torch device of network cues: ``cfg.device``, or under torchrun with ``cuda`` the
    rank's own GPU (``cuda:$LOCAL_RANK``)."""
    return rank_device(cfg.device)


def _need_oracle(oracle: Any, what: str) -> Any:
    if oracle is None:
        raise ValueError(
            f"{what}.method: oracle needs the synthetic world's ground truth; it is available "
            "only to the benchmarks and tests (choose another method for real video)"
        )
    from vcups_core.cues.oracle import OracleCues

    return oracle if isinstance(oracle, OracleCues) else OracleCues(oracle)


ORACLE_CUES = ("flow", "depth", "motion")


def with_oracle_cues(cfg: PseudoLabelConfig) -> PseudoLabelConfig:
    """``cfg`` with flow, depth and motion ``method: oracle`` (every other key kept): the
    synthetic world's exact cues, for ablations; build it with the world as ``oracle=``."""
    merged = config_to_dict(cfg)
    changes = {key: {**merged[key], "method": "oracle"} for key in ORACLE_CUES}
    result: PseudoLabelConfig = replace(cfg, **changes)
    return result


def build_flow(cfg: PseudoLabelConfig, oracle: Any = None) -> FlowEstimator:
    """The flow backend of ``cfg.flow``."""
    section = cfg.flow
    if section.method == "dis":
        from vcups_core.cues.flow import DISFlow

        return DISFlow(section.dis_preset)
    if section.method == "raft":
        if not section.weights:
            raise ValueError("flow.method: raft needs flow.weights (a local RAFT/SMURF state dict)")
        from vcups_core.cues.flow import RAFTFlow

        return RAFTFlow(section.weights, section.raft_iterations, cue_device(cfg))
    flow: FlowEstimator = _need_oracle(oracle, "flow").flow
    return flow


def build_depth(cfg: PseudoLabelConfig, oracle: Any = None) -> DepthEstimator:
    """The depth backend of ``cfg.depth``."""
    section = cfg.depth
    if section.method == "parallax":
        from vcups_core.cues.depth import ParallaxDepth

        return ParallaxDepth(section.min_parallax_deg)
    if section.method == "none":
        from vcups_core.cues.depth import NoDepth

        return NoDepth()
    if section.method == "network":
        if not section.weights:
            raise ValueError("depth.method: network needs depth.weights (a .pt or .onnx file)")
        from vcups_core.cues.networks import NetworkDepth

        return NetworkDepth(section.weights, cue_device(cfg))
    depth: DepthEstimator = _need_oracle(oracle, "depth").depth
    return depth


def build_motion(cfg: PseudoLabelConfig, oracle: Any = None) -> MotionEstimator:
    """The motion-score backend of ``cfg.motion``."""
    section = cfg.motion
    if section.method == "geometric":
        from vcups_core.cues.motion import GeometricMotion

        return GeometricMotion(
            section.residual_floor,
            residual_noise=section.residual_noise,
            depth_from_flow=cfg.depth.method in ("parallax", "none"),
            ground_prior=section.ground_prior,
        )
    if section.method == "network":
        if not section.weights:
            raise ValueError("motion.method: network needs motion.weights (a .pt or .onnx file)")
        from vcups_core.cues.networks import NetworkMotion

        return NetworkMotion(section.weights, cue_device(cfg))
    motion: MotionEstimator = _need_oracle(oracle, "motion").motion
    return motion


@dataclasses.dataclass
class CuePipeline:
    """Flow, validity, camera motion, depth and motion score of every frame of a clip.

    Attributes:
        cfg: the pseudo-label config.
        flow, depth, motion: the backends.
    """

    cfg: PseudoLabelConfig
    flow: FlowEstimator
    depth: DepthEstimator
    motion: MotionEstimator

    @property
    def backends(self) -> dict[str, str]:
        """Backend of each cue, as recorded in the store's manifest."""
        return {"flow": self.flow.name, "depth": self.depth.name, "motion": self.motion.name}

    @property
    def needs_camera(self) -> bool:
        return self.cfg.depth.method == "parallax" or self.cfg.motion.method == "geometric"

    def run(
        self, frames: Iterable[VideoFrame], intrinsics: npt.NDArray[np.float64]
    ) -> Iterator[FrameCues]:
        """One :class:`FrameCues` per frame, in order (a clip needs at least 2 frames).

        Args:
            frames: the clip's frames at the processing size, ``index`` = position in the clip.
            intrinsics: ``float64[3, 3]`` K at the processing size.
        """
        it = iter(frames)
        current = next(it, None)
        if current is None:
            return
        back_to_prev: FloatMap | None = None  # flow current -> previous
        prev_forward: FloatMap | None = None  # flow previous -> current
        previous: VideoFrame | None = None
        for nxt in it:
            forward = self.flow(current, nxt)
            backward = self.flow(nxt, current)
            yield self.complete(
                FrameCues(
                    frame=current,
                    partner=nxt,
                    intrinsics=intrinsics,
                    flow=forward,
                    flow_is_forward=True,
                    flow_back=backward,
                    flow_prev=back_to_prev,
                ),
                previous=previous,
                prev_forward=prev_forward,
            )
            previous, current = current, nxt
            back_to_prev, prev_forward = backward, forward
        if previous is None or back_to_prev is None or prev_forward is None:
            raise ValueError("a clip needs at least 2 frames: a single frame has no optical flow")
        yield self.complete(
            FrameCues(
                frame=current,
                partner=previous,
                intrinsics=intrinsics,
                flow=back_to_prev,
                flow_is_forward=False,
                flow_back=prev_forward,
                flow_prev=back_to_prev,
            )
        )

    def complete(
        self,
        cues: FrameCues,
        *,
        previous: VideoFrame | None = None,
        prev_forward: FloatMap | None = None,
    ) -> FrameCues:
        """Fill validity, camera motion, depth and motion score of ``cues`` (in place).

        With ``motion.bidirectional`` and a previous frame (``previous`` and its flow to this
        frame, ``prev_forward``), the motion score is also computed along the flow to the previous
        frame, and a pixel keeps the smaller of the two scores where both directions are valid
        (the other one's where only one is). Flow smears an object's motion over the background
        it is about to cover, on its leading edge going forward and its trailing edge going
        backward; only the object itself moves in both directions. A direction whose flow failed
        (``motion.bidirectional_min_share``) is left out: the other one's score is kept where it
        is valid.
        """
        self._fill(cues)
        if (
            self.cfg.motion.bidirectional
            and cues.flow_is_forward
            and previous is not None
            and prev_forward is not None
            and cues.flow_prev is not None
            and cues.motion is not None
        ):
            back = FrameCues(
                frame=cues.frame,
                partner=previous,
                intrinsics=cues.intrinsics,
                flow=cues.flow_prev,
                flow_is_forward=False,
                flow_back=prev_forward,
                flow_prev=cues.flow_prev,
            )
            self._fill_geometry(back, depth=cues.depth)
            assert back.valid is not None
            assert cues.valid is not None
            failed = self._failed_direction(cues.valid, back.valid)
            if failed == "backward":
                return cues  # the forward direction alone
            if failed == "forward":
                self._fill_motion(back)
                assert back.motion is not None
                cues.motion = np.where(back.valid, back.motion, cues.motion).astype(np.float32)
                return cues
            # the backward score only matters where it can change the combination: where the
            # forward flow is invalid or its score is above 0 (min(0, b) = 0 for any b >= 0)
            self._fill_motion(back, where=~cues.valid | (cues.motion > 0))
            assert back.motion is not None
            # = where(valid & back.valid, minimum, where(valid, motion, back.motion))
            combined = np.minimum(cues.motion, back.motion)
            np.copyto(combined, cues.motion, where=cues.valid & ~back.valid)
            np.copyto(combined, back.motion, where=~cues.valid)
            cues.motion = combined.astype(np.float32, copy=False)
            if self.cfg.validity.exits_from_back:
                # pixels leaving the image had no partner to check their flow against; the flow
                # to the previous frame vouches for them (objects driving out of the view)
                cues.valid = cues.valid | leaves_image(cues.flow, where=back.valid & ~cues.valid)
        return cues

    def _failed_direction(
        self, forward: npt.NDArray[np.bool_], backward: npt.NDArray[np.bool_]
    ) -> Literal["forward", "backward"] | None:
        """``"forward"`` or ``"backward"`` when that direction's consistent share of the frame is
        below ``motion.bidirectional_min_share`` times the other's (its flow failed), else None."""
        ratio = self.cfg.motion.bidirectional_min_share
        if ratio <= 0:
            return None
        fwd, back = np.count_nonzero(forward), np.count_nonzero(backward)
        if back < ratio * fwd:
            return "backward"
        if fwd < ratio * back:
            return "forward"
        return None

    def _fill(self, cues: FrameCues) -> None:
        """Validity, camera motion, depth and motion score along ``cues.flow``."""
        self._fill_geometry(cues)
        self._fill_motion(cues)

    def _fill_geometry(self, cues: FrameCues, depth: FloatMap | bool | None = False) -> None:
        """Validity, camera motion and depth (or the given one) along ``cues.flow``."""
        cues.valid = validity_mask(cues.flow, cues.flow_back, self.cfg.validity)
        if self.needs_camera:
            from vcups_core.cues.geometry import estimate_camera_motion

            cues.camera = estimate_camera_motion(
                cues.flow,
                cues.valid,
                cues.intrinsics,
                model=self.cfg.motion.camera_model,
                ransac_threshold=self.cfg.motion.ransac_threshold,
                noise_floor=self.cfg.motion.flow_noise,
            )
        cues.depth = self.depth(cues) if depth is False else depth  # type: ignore[assignment]

    def _fill_motion(self, cues: FrameCues, where: npt.NDArray[np.bool_] | None = None) -> None:
        """Motion score along ``cues.flow`` (read only ``where``, when given: see
        :class:`~vcups_core.cues.base.MotionEstimator`)."""
        cues.motion, cues.ego_flow = self.motion(cues, where)


def build_cue_pipeline(cfg: PseudoLabelConfig, *, oracle: Any = None) -> CuePipeline:
    """The cue pipeline that ``cfg`` describes.

    Args:
        cfg: pseudo-label config.
        oracle: a :class:`~vcups_core.data.synthetic.SyntheticWorld` (or
            :class:`~vcups_core.cues.oracle.OracleCues`) for the ``oracle`` methods; None otherwise.

    Raises:
        ValueError: a method that needs a weights file without one, or ``oracle`` without a world.
        FileNotFoundError: a weights file that does not exist (raised by the backend).
    """
    if oracle is not None:
        oracle = _need_oracle(oracle, "flow")
    return CuePipeline(
        cfg, build_flow(cfg, oracle), build_depth(cfg, oracle), build_motion(cfg, oracle)
    )
