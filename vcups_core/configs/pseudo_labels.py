"""Pseudo-label generation from raw video (``config/pseudo_labels.yaml``).

Values follow ``docs/method.md`` §2 (the supplement's Tables 6-8 and A.2). Every cue has three
kinds of backend: a weight-free default that works on real video, the network the paper uses
loaded from a local file, and an oracle from the synthetic world's ground truth (ablations only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vcups_core.config import option, section


@dataclass(frozen=True)
class CameraSection:
    focal_px: float = option(
        0.0,
        "focal length in pixels at the processing size; 0 = from the source's camera info, "
        "else from hfov_deg",
        ge=0.0,
    )
    hfov_deg: float = option(
        60.0, "horizontal field of view assumed when the source has no intrinsics", gt=1.0, lt=179.0
    )


@dataclass(frozen=True)
class FlowSection:
    method: Literal["dis", "raft", "oracle"] = option(
        "dis",
        "optical flow: OpenCV DIS (no weights), RAFT/SMURF from a local state dict, or the "
        "synthetic world's ground truth",
    )
    dis_preset: Literal["ultrafast", "fast", "medium"] = option(
        "medium", "OpenCV DIS preset (method: dis)"
    )
    weights: str = option("", "RAFT or SMURF state dict file (method: raft)")
    raft_iterations: int = option(12, "RAFT refinement iterations (method: raft)", ge=1)


@dataclass(frozen=True)
class ValiditySection:
    fb_abs: float = option(
        1.0, "forward-backward error (px) always tolerated before flow is invalid", ge=0.0
    )
    fb_rel: float = option(
        0.05, "forward-backward error tolerated per pixel of flow magnitude", ge=0.0
    )
    border_sides: float = option(
        0.0,
        "fraction of the width ignored at the left and at the right (CUPS: 0.025, 32 px of "
        "1280, which leaves objects there unlabelled; monocular flow needs no such band: "
        "pixels leaving the image fail the forward-backward check or are vouched for by the "
        "flow back, see exits_from_back). 0 against 0.025: oracle-cue moving AQ 0.839 -> 0.929 "
        "(seeds 101-103), 0.843 -> 0.893 (301-303), DAVIS union J 0.744 -> 0.743, panoptic "
        "pseudo-label STQ 0.136 -> 0.138",
        ge=0.0,
        lt=0.5,
    )
    border_top: float = option(0.0, "fraction of the height ignored at the top", ge=0.0, lt=1.0)
    border_bottom: float = option(
        0.0,
        "fraction of the height ignored at the bottom (ego-vehicle hood; Cityscapes: 0.2)",
        ge=0.0,
        lt=1.0,
    )
    exits_from_back: bool = option(
        True,
        "with motion.bidirectional: a pixel whose flow leaves the image (no partner pixel to "
        "check) is valid when its flow to the previous frame is consistent (objects leaving the "
        "view); false = such pixels are invalid",
    )


@dataclass(frozen=True)
class DepthSection:
    method: Literal["parallax", "network", "oracle", "none"] = option(
        "parallax",
        "depth: triangulated from the flow and the camera motion (no weights), a local "
        "TorchScript/ONNX depth network, the synthetic ground truth, or none",
    )
    weights: str = option(
        "", "depth network file: TorchScript (.pt, .ts, .torchscript) or .onnx (method: network)"
    )
    min_parallax_deg: float = option(
        0.2, "triangulation angle below which parallax depth is invalid (degrees)", gt=0.0
    )


@dataclass(frozen=True)
class MotionSection:
    method: Literal["geometric", "network", "oracle"] = option(
        "geometric",
        "motion score: residual flow after the camera's own motion (no weights), a local "
        "motion-mask network, or the synthetic ground truth",
    )
    camera_model: Literal["auto", "homography", "essential"] = option(
        "auto",
        "camera motion: homography (rotation or a distant scene), essential matrix (translation "
        "through a 3-D scene), or auto (chosen per frame by which explains the flow better)",
    )
    weights: str = option(
        "",
        "motion-mask network file: TorchScript (.pt, .ts, .torchscript) or .onnx (method: network)",
    )
    flow_noise: float = option(
        0.5,
        "noise of the flow (px) assumed when choosing the camera model (camera_model: auto); "
        "sub-pixel parallax below it is not taken for 3-D structure (DIS: ~0.5; exact flow: 0.1)",
        gt=0.0,
    )
    ground_prior: bool = option(
        False,
        "essential camera with parallax depth: also flag points that lie beyond the road plane or "
        "in front of their ground contact (cars moving along their epipolar lines); off: it "
        "lowered DAVIS union J and added about 0.15 s per 640x1280 frame",
    )
    bidirectional: bool = option(
        True,
        "score motion along the flow to the next and to the previous frame and keep the smaller "
        "(removes the smear of flow over the background an object is about to cover)",
    )
    bidirectional_min_share: float = option(
        0.7,
        "with bidirectional: a direction whose forward-backward-consistent share of the frame is "
        "below this fraction of the other direction's is left out (its flow failed, e.g. a fast "
        "pan's blur; the camera motion is then fitted to whatever stayed consistent, often the "
        "object, and the minimum of the two scores erased it); 0 = always combine both. "
        "Measured shares: 0.41-0.60 on the failed DAVIS pairs, >= 0.75 elsewhere on DAVIS, "
        ">= 0.76 on the benchmarks' synthetic drives with DIS; DAVIS union J 0.743 -> 0.750",
        ge=0.0,
        le=1.0,
    )
    ransac_threshold: float = option(
        1.0, "RANSAC inlier threshold (px, Sampson distance for the essential matrix)", gt=0.0
    )
    residual_floor: float = option(
        1.0,
        "epsilon of score = max(|residual| - residual_noise, 0) / max(|flow|, epsilon) (px)",
        gt=0.0,
    )
    residual_noise: float = option(
        0.5,
        "px subtracted from the residual before the motion score (method: geometric): a residual "
        "within the flow's own noise is not motion (ours; 0 = the paper's plain ratio). 0.5 suits "
        "DIS (median error ~0.4 px on the synthetic drives); lower it for RAFT/SMURF. Against 0: "
        "DAVIS union J 0.630 -> 0.646, fewer false tracks, panoptic pseudo-label STQ 0.113 -> "
        "0.119 on synthetic drives, semantic mIoU 0.629 -> 0.616",
        ge=0.0,
    )


@dataclass(frozen=True)
class RegionGrowingSection:
    seed_threshold: float = option(
        0.15, "alpha: motion score that seeds an instance", ge=0.0, le=1.0
    )
    accept_threshold: float = option(
        0.5,
        "a grown region is an instance only if its median motion score exceeds this (or alpha, "
        "whichever is larger): most of it must move by at least half its flow beyond what the "
        "camera explains (ours; alpha = the plain safeguard). Against alpha: DAVIS union J "
        "0.702 -> 0.744, 84-136 -> 28-62 ids per clip; oracle cues and the panoptic pseudo-label "
        "STQ on held-out synthetic drives unchanged",
        ge=0.0,
        le=1.0,
    )
    depth_threshold: float = option(0.02, "tau_d: relative depth difference to grow", gt=0.0)
    flow_threshold: float = option(0.04, "tau_f: relative flow difference to grow", gt=0.0)
    radius: int = option(8, "r: neighbourhood radius in pixels", ge=1)
    scale_thresholds: bool = option(
        True,
        "tau_d holds per pixel step of a 640x1280 frame (the paper's size); on a coarser growing "
        "grid (a smaller frame, or work_pixels) it grows with the step's length in such pixels, "
        "sqrt(640*1280 / grid area), as a slanted surface's depth changes per step; false = per "
        "step of the grid itself (splits slanted faces into strips)",
    )
    flow_source: Literal["residual", "flow"] = option(
        "residual",
        "grow on the flow minus the camera's own flow where the motion backend gives it (an "
        "object's own motion; a camera panning with the object makes its raw flow tiny), or on "
        "the raw flow as the paper states",
    )
    flow_norm: Literal["relative", "diagonal"] = option(
        "relative",
        "flow difference divided by the region pixel's flow magnitude (relative) or by the image "
        "diagonal (cheaper, less strict on fast objects)",
    )
    flow_tolerance: float = option(
        0.3,
        "flow difference (px) always tolerated on top of tau_f (the estimated flow's noise)",
        ge=0.0,
    )
    support_threshold: float = option(
        0.05,
        "pixels with a motion score below this are never grown into (0 = grow anywhere)",
        ge=0.0,
        le=1.0,
    )
    work_pixels: int = option(
        204800,
        "largest size of the growing graph in pixels (320x640); larger frames are grown at a "
        "lower resolution, the radius scaled with it",
        ge=1,
    )
    min_area: int = option(
        64,
        "instances smaller than this many pixels of a 640x1280 frame are dropped (scaled with "
        "the processing size's area)",
        ge=0,
    )
    fill_holes: bool = option(True, "fill holes inside each instance")
    refine: Literal["none", "grabcut"] = option(
        "grabcut",
        "appearance refinement of the grown instances: none, or GrabCut on a crop around each "
        "instance seeded by its mask and motion score (motion seeds, colour delineates)",
    )
    refine_min_area: float = option(
        0.002,
        "refine: instances (after grouping) smaller than this fraction of the image are kept "
        "as grown",
        ge=0.0,
        le=1.0,
    )
    refine_merge_gap: int = option(
        8,
        "refine: instances closer than this (pixels) are refined together as one instance "
        "(fragments of one object); 0 = never merge",
        ge=0,
    )
    refine_merge_flow: float = option(
        0.0,
        "group neighbours only if their mean flows differ by less than this fraction of the "
        "larger one (+0.5 px); 0 = group by distance alone",
        ge=0.0,
    )
    refine_merge_depth: float = option(
        0.1,
        "group neighbours only if their median depths differ by at most this fraction of the "
        "nearer one (unknown depth does not veto); 0 = no depth test",
        ge=0.0,
    )
    refine_margin: float = option(
        0.25, "refine: crop margin around the instance, fraction of its size per side", ge=0.0
    )
    refine_band: float = option(
        16.0,
        "refine: pixels (processing size) inside the instance boundary that colour may remove: "
        "deeper pixels with a confident motion score are sure foreground (the flow's blur)",
        gt=0.0,
    )
    refine_band_scale: float = option(
        0.1,
        "refine: the band is at most this fraction of the square root of the group's area (a "
        "small object keeps an interior of sure foreground); 0 = always refine_band",
        ge=0.0,
    )
    refine_ring: float = option(
        1.0,
        "refine: the band outside the instance colour may add, in units of refine_band "
        "(beyond it is sure background)",
        gt=0.0,
    )
    refine_sure_motion: float = option(
        0.9,
        "refine: motion score above which the eroded interior is sure foreground",
        ge=0.0,
        le=1.0,
    )
    refine_max_side: int = option(
        128, "refine: crops are downscaled to at most this many pixels per side", ge=16
    )
    refine_iterations: int = option(1, "refine: GrabCut iterations", ge=1)


@dataclass(frozen=True)
class SemanticsSection:
    num_classes: int = option(27, "semantic pseudo-classes (DepthG clusters)", ge=2)
    crop_size: int = option(
        320, "sliding-window crop of depth-guided inference (DepthG model file only)", gt=0
    )
    stride: int = option(
        160, "sliding-window stride of depth-guided inference (DepthG model file only)", gt=0
    )
    cluster_temperature: float = option(2.0, "alpha of log_softmax(alpha * cos)", gt=0.0)
    crf_iterations: int = option(10, "dense-CRF iterations (0 disables the CRF)", ge=0)
    crf_scale: float = option(
        0.5,
        "dense CRF at this fraction of the processing size (1 = full size, ~17 s per 640x1280 "
        "frame; 0.5: ~7 s)",
        gt=0.0,
        le=1.0,
    )
    weights: str = option(
        "",
        "semantic model from `vcups semantic-train`: a clusters file (.npz), or a DepthG model "
        "(.pt, with --backbone-weights; runs on `device`); set, it turns on the semantic stage of "
        "`vcups pseudo-labels`; empty = instance pseudo-labels only",
    )


@dataclass(frozen=True)
class TrackingSection:
    window: int = option(3, "frames of the propagation window", ge=2, le=3)
    iou_threshold: float = option(
        0.4, "tau_m: Hungarian matches need at least this IoU", ge=0.0, le=1.0
    )
    min_containment: float = option(
        0.8,
        "second matching pass for tracks and detections left unmatched at tau_m: accept a pair "
        "whose smaller mask lies this much inside the other (objects entering the image or "
        "leaving an occlusion); 0 = the paper's IoU rule alone",
        ge=0.0,
        le=1.0,
    )
    fill_gaps: bool = option(
        True, "insert a track's warped mask into a frame it is missing from (one-frame gaps)"
    )
    max_lost: int = option(
        0,
        "frames a track without detections is remembered (its last mask moved on with the flow) "
        "so that a later detection matching it at tau_m continues its id; 0 = the paper's rule",
        ge=0,
    )
    fragment_inside: float = option(
        0.8,
        "a detection left without a track whose area lies at least this fraction inside one "
        "track's warped mask (or a remembered lost track's) joins that track: a fragment of the "
        "object, not a new one (the track holding most of it; ours, with fragment_depth: DAVIS "
        "best-track J 0.597 -> 0.658); 0 = off (the paper's rule)",
        ge=0.0,
        le=1.0,
    )
    fragment_flow: float = option(
        0.0,
        "fragment_inside: a detection joins a track only if its mean flow differs from the "
        "mean flow over the track's warped mask by at most this fraction of the larger norm "
        "(plus 1 px): an object coming out from behind another lies inside the occluder's "
        "warped mask but moves differently; 0 = no flow test",
        ge=0.0,
    )
    fragment_depth: float = option(
        0.1,
        "fragment_inside: a detection joins a track only if its median depth differs from that "
        "of the track's other detected pixels by at most this fraction of the smaller (unknown "
        "depth does not veto): a car peeking out from behind another lies in the occluder's "
        "warped mask and may move within a pixel of it, but lies behind it; 0 = no depth test",
        ge=0.0,
    )
    split_min_share: float = option(
        0.1,
        "a detection holding the warped masks of several tracks is split only between tracks "
        "whose warped mask is at least this fraction of the detection's area (slivers inside a "
        "large detection are fragments of it, not crossing objects); 0 = every such track (the "
        "plain split rule)",
        ge=0.0,
        le=1.0,
    )
    min_track_frames: int = option(
        1,
        "tracks seen in fewer frames are removed from the labels (short false tracks); the "
        "labels come out this many frames minus one late; 1 = off (the paper's rule)",
        ge=1,
    )


@dataclass(frozen=True)
class PseudoLabelConfig:
    """Everything that turns raw monocular video into panoptic pseudo-labels."""

    height: int = option(640, "processing height (pixels); 0 with width 0 = native size", ge=0)
    width: int = option(1280, "processing width (pixels); 0 with height 0 = native size", ge=0)
    device: str = option(
        "cpu",
        "torch device of the network cues (cpu, cuda, cuda:1); torchrun ranks use their own GPU",
    )
    semantic_smoothing_window: int = option(
        3,
        "frames of temporal semantic smoothing (3 = previous, current, next; 1 = off)",
        choices=(1, 3),
    )
    thing_stuff_threshold: float = option(
        0.01, "psi: normalised in-instance ratio above which a class is a thing", gt=0.0, lt=1.0
    )
    camera: CameraSection = section(CameraSection, "camera intrinsics")
    flow: FlowSection = section(FlowSection, "optical flow")
    validity: ValiditySection = section(ValiditySection, "which pixels carry usable evidence")
    depth: DepthSection = section(DepthSection, "depth cue")
    motion: MotionSection = section(MotionSection, "ego-motion and independent-motion score")
    region_growing: RegionGrowingSection = section(RegionGrowingSection, "motion instances")
    semantics: SemanticsSection = section(SemanticsSection, "unsupervised semantics")
    tracking: TrackingSection = section(TrackingSection, "instance propagation and tracking")
