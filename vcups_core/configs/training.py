"""Training of the video panoptic model on pseudo-labels (``config/training.yaml``).

Values follow ``docs/method.md`` §4 (stated: AdamW 2e-5, 8 epochs, batch 24, tau_IoU 0.5, 1-8
pasted objects; the rest are the CUPS defaults the paper builds on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vcups_core.config import option, section


@dataclass(frozen=True)
class OptimizerSection:
    learning_rate: float = option(2e-5, "AdamW base learning rate", gt=0.0)
    weight_decay: float = option(1e-5, "weight decay of non-normalization parameters", ge=0.0)
    betas: tuple[float, float] = option((0.9, 0.999), "AdamW betas", ge=0.0, lt=1.0)
    grad_clip_norm: float = option(1.0, "gradient norm clip (0 disables)", ge=0.0)


@dataclass(frozen=True)
class ClipSection:
    length: int = option(2, "frames per training clip (key + references)", ge=1)
    max_reference_offset: int = option(3, "largest |dt| between key and reference frame", ge=1)


@dataclass(frozen=True)
class AugmentationSection:
    crop_height: int = option(640, "crop height", gt=0)
    crop_width: int = option(1280, "crop width", gt=0)
    flip_prob: float = option(0.5, "horizontal flip probability", ge=0.0, le=1.0)
    crop_scale: tuple[float, float] = option((0.7, 1.0), "RandomResizedCrop scale range", gt=0.0)
    resolutions: tuple[tuple[int, int], ...] = option(
        tuple((h, 2 * h) for h in range(384, 705, 32)),
        "resolution jitter: one (height, width) drawn per batch",
        gt=0,
    )
    color_jitter_prob: float = option(
        0.5, "ColorJitter(0.4, 0.4, 0.4, 0.1) probability", ge=0.0, le=1.0
    )
    grayscale_prob: float = option(0.2, "RandomGrayscale probability", ge=0.0, le=1.0)
    blur_sigma: tuple[float, float] = option(
        (0.1, 2.0), "Gaussian blur sigma range (kernel 7)", gt=0.0
    )


@dataclass(frozen=True)
class CopyPasteSection:
    enabled: bool = option(True, "self-enhanced video copy-paste")
    max_objects: int = option(8, "1..max_objects video detections pasted per clip", ge=1)
    scale_range: tuple[float, float] = option((0.25, 1.5), "scale of pasted objects", gt=0.0)
    min_box_size: int = option(32, "source objects need a box at least this wide and high", ge=1)
    startup_epochs: int = option(1, "epochs pasting pseudo-labels before pasting predictions", ge=0)
    confidence: float = option(0.75, "score of predictions eligible for pasting", ge=0.0, le=1.0)


@dataclass(frozen=True)
class TrainingConfig:
    """One training run."""

    epochs: int = option(8, "passes over the pseudo-labelled frames", ge=1)
    batch_size: int = option(24, "global batch size (clips), split over all ranks", ge=1)
    num_workers: int = option(4, "data-loading workers per rank", ge=0)
    precision: Literal["fp32", "bf16"] = option("bf16", "autocast precision (bf16 on GPUs only)")
    seed: int = option(1996, "random seed shared by all ranks", ge=0)
    drop_loss_iou: float = option(
        0.5, "Video DropLoss tau_IoU: proposals below it get no background loss", ge=0.0, le=1.0
    )
    video_drop_loss: bool = option(
        True, "Video DropLoss on (off: plain cross-entropy and 'new object' targets; ablations)"
    )
    checkpoint_every: int = option(1000, "iterations between checkpoints", ge=1)
    micro_batch: int = option(
        0,
        "clips per forward pass on each rank, gradients accumulated (0: the rank's whole share)",
        ge=0,
    )
    only_with_instances: bool = option(
        True, "train only on key frames with at least one thing instance (as CUPS)"
    )
    ignore_unknown_thing_regions: bool = option(
        False,
        "semantic target: pixels of a thing pseudo-class outside every instance are ignored "
        "instead of 'thing' (CUPS IGNORE_UNKNOWN_THING_REGIONS; False in CUPS' config)",
    )
    backend: Literal["auto", "nccl", "gloo"] = option(
        "auto", "torch.distributed backend (auto: nccl on GPUs, gloo on CPUs)"
    )
    optimizer: OptimizerSection = section(OptimizerSection, "AdamW")
    clip: ClipSection = section(ClipSection, "clip sampling")
    augmentation: AugmentationSection = section(AugmentationSection, "clip-consistent augmentation")
    copy_paste: CopyPasteSection = section(CopyPasteSection, "self-enhanced video copy-paste")
