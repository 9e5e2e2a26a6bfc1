"""The model's own confident video detections, for the self-enhanced copy-paste (method §4.5).

After the start-up epochs, the objects pasted into a batch come from the model's eval-mode
predictions on the previous step's un-augmented clips (CUPS ``training_step``): detections
with a score above ``confidence`` form the frames' instances, and the MaskTrack head links each
reference frame's detections to the key frame's (argmax of the association logits over
``[new, key detections]``, same class required; method §3.3 without the extra cues), so a
"video detection" is a track across the clip. :func:`~vcups_core.train.copy_paste.novel_objects`
then keeps those that overlap no pseudo-label (IoU < 0.5), the objects the pseudo-labels missed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vcups_core.model.meta_arch import PanopticCascadeMaskTrack
from vcups_core.model.track_head import association_logits
from vcups_core.pseudo.compose import mask_boxes
from vcups_core.train.sample import ClipSample, FrameTargets
from vcups_core.types import FramePrediction


def _network(model: nn.Module) -> PanopticCascadeMaskTrack:
    net = getattr(model, "module", model)  # DistributedDataParallel wraps the network
    if not isinstance(net, PanopticCascadeMaskTrack):
        raise TypeError(f"expected a PanopticCascadeMaskTrack, got {type(net).__name__}")
    return net


def _frame_targets(prediction: FramePrediction, keep: torch.Tensor, ids: list[int]) -> FrameTargets:
    h, w = prediction.height, prediction.width
    inst = torch.from_numpy(prediction.panoptic_instance.astype("int64"))
    index = torch.nonzero(keep).reshape(-1)
    masks = (
        inst[None] == (index + 1)[:, None, None]
        if index.numel()
        else torch.zeros((0, h, w), dtype=torch.bool)
    )
    boxes = torch.from_numpy(mask_boxes(masks.numpy()))
    classes = torch.from_numpy(prediction.classes)[index]
    frame = FrameTargets(
        boxes=boxes,
        classes=classes.to(torch.int64),
        masks=masks,
        track_ids=torch.tensor(ids, dtype=torch.int64),
        semantic=torch.zeros((h, w), dtype=torch.int64),
    )
    nonempty = masks.flatten(1).any(dim=1)
    return frame.select(nonempty)


@torch.no_grad()
def predicted_clips(
    model: nn.Module,
    clips: Sequence[ClipSample],
    *,
    confidence: float,
    device: torch.device | str = "cpu",
) -> list[ClipSample]:
    """The model's confident tracks on ``clips`` as clips of the same frames.

    Args:
        model: the network (or its DDP wrapper); put back in its previous mode afterwards.
        clips: un-augmented clips (``images`` ``float32[T, 3, H, W]``).
        confidence: detections need a score strictly above it (CUPS ``AUGMENTATION.CONFIDENCE``).
        device: where to run.

    Returns:
        One :class:`ClipSample` per input clip with the same images; its targets hold the
        confident detections' masks (from the panoptic merge, so they do not overlap), classes
        and clip-local track ids (``1..K``); the semantic targets are unused (all 0).
    """
    net = _network(model)
    was_training = net.training
    net.eval()
    try:
        out = []
        for clip in clips:
            frames = [img.to(device) for img in clip.images]
            predictions = net.predict(frames)
            key = predictions[0]
            key_keep = torch.from_numpy(key.scores > confidence)
            key_index = torch.nonzero(key_keep).reshape(-1)
            key_ids = list(range(1, key_index.numel() + 1))
            next_id = len(key_ids) + 1
            targets = [_frame_targets(key, key_keep, key_ids)]
            for pred in predictions[1:]:
                keep = torch.from_numpy(pred.scores > confidence)
                index = torch.nonzero(keep).reshape(-1)
                ids = []
                if index.numel() and key_index.numel():
                    logits = association_logits(
                        torch.from_numpy(pred.embeddings)[index],
                        torch.from_numpy(key.embeddings)[key_index],
                    )
                    best = logits.argmax(dim=1)
                else:
                    best = torch.zeros(index.numel(), dtype=torch.int64)
                used: set[int] = set()
                for n, k in enumerate(best.tolist()):
                    same_class = k > 0 and int(pred.classes[int(index[n])]) == int(
                        key.classes[int(key_index[k - 1])]
                    )
                    if same_class and k not in used:
                        used.add(k)
                        ids.append(k)
                    else:
                        ids.append(next_id)
                        next_id += 1
                targets.append(_frame_targets(pred, keep, ids))
            out.append(
                ClipSample(clip.images, targets, clip=clip.clip, frame_indices=clip.frame_indices)
            )
        return out
    finally:
        net.train(was_training)
