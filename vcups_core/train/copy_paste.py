"""Self-enhanced video copy-paste (method §4.5, video version).

A *video detection* (:class:`VideoObject`) is one track of a source clip across its frames: the
per-frame image and mask crops plus the track's thing class. :func:`video_objects` cuts them
from a clip (pseudo-labels in the first epoch, the model's predicted tracks converted to a
:class:`~vcups_core.train.sample.ClipSample` afterwards), :func:`novel_objects` keeps only the
predicted objects that no pseudo-label explains (the "self-enhanced" filter), and
:func:`paste_objects` pastes 1..``max_objects`` of them into another clip with **one** scale,
flip and position for all frames, so that the pasted object keeps the source's motion (scaled)
and gets one fresh clip-local track id.

All randomness comes from the ``torch.Generator`` passed in; inputs are never modified.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
from torch import Tensor
from torchvision.ops import box_iou

from vcups_core.configs.training import CopyPasteSection
from vcups_core.train.augment import MIN_MASK_PIXELS, boxes_from_masks, mask_pixels
from vcups_core.train.sample import ClipSample, FrameTargets

ObjectCrop = tuple[Tensor, Tensor]
"""One frame of a :class:`VideoObject`: ``(image float32[3, h, w], mask bool[h, w])``."""


@dataclasses.dataclass
class VideoObject:
    """One video detection: a track across the ``T`` frames of its source clip.

    Attributes:
        crops: per source frame ``t``, ``None`` where the track is absent, else
            ``(image, mask)``: ``image`` ``float32[3, h_t, w_t]`` is the source frame cut to the
            track's box at ``t``, ``mask`` ``bool[h_t, w_t]`` its mask inside that box.
        boxes: ``float32[T, 4]`` ``(x0, y0, x1, y1)`` (exclusive max) where each crop was cut, in
            the source frame's pixels; whole numbers, all zeros where the track is absent. The
            pasting keeps the crops' relative placement, i.e. the source's motion.
        class_index: the track's thing class index.
        track_id: the track's id in the source clip (informational; pasting assigns a new one).
    """

    crops: list[ObjectCrop | None]
    boxes: Tensor
    class_index: int
    track_id: int = 0

    def __post_init__(self) -> None:
        if tuple(self.boxes.shape) != (len(self.crops), 4):
            raise ValueError(
                f"boxes must be float32[{len(self.crops)}, 4], got {list(self.boxes.shape)}"
            )
        for t, crop in enumerate(self.crops):
            if crop is None:
                continue
            image, mask = crop
            x0, y0, x1, y1 = (int(v) for v in self.boxes[t].tolist())
            if tuple(image.shape) != (3, y1 - y0, x1 - x0) or mask.shape != image.shape[1:]:
                raise ValueError(
                    f"frame {t}: crop {list(image.shape)} / {list(mask.shape)} does not match "
                    f"box {(x0, y0, x1, y1)}"
                )

    def __len__(self) -> int:
        return len(self.crops)

    def present(self) -> list[int]:
        """Indices of the frames where the object is present."""
        return [t for t, crop in enumerate(self.crops) if crop is not None]

    def union_box(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)``: the box enclosing all present frames' boxes (source pixels).

        Raises:
            ValueError: if the object is absent from every frame.
        """
        present = self.present()
        if not present:
            raise ValueError("the object is absent from every frame")
        boxes = self.boxes[present]
        x0, y0 = boxes[:, :2].amin(dim=0).tolist()
        x1, y1 = boxes[:, 2:].amax(dim=0).tolist()
        return int(x0), int(y0), int(x1), int(y1)


def video_objects(sample: ClipSample, min_box_size: int) -> list[VideoObject]:
    """Cut every large enough track of a clip into a :class:`VideoObject`.

    Rule: a track qualifies when, in **at least one** frame, its box (recomputed tightly from the
    mask) is at least ``min_box_size`` pixels wide **and** at least ``min_box_size`` high (CUPS's
    image rule, applied to the track's best frame). A qualifying track is cut from **every** frame
    it is present in (including frames where it is smaller), so the pasted track is not
    interrupted. Frames where its mask is empty count as absent.

    Args:
        sample: the source clip; not modified (crops are copies).
        min_box_size: minimum box width and height in pixels.

    Returns:
        The objects, in order of track id.
    """
    presence = sample.presence()  # [T, K]
    objects: list[VideoObject] = []
    for k in range(presence.shape[1]):
        crops: list[ObjectCrop | None] = []
        boxes = torch.zeros((len(sample), 4), dtype=torch.float32)
        large = False
        class_index = -1
        for t, frame in enumerate(sample.targets):
            index = int(presence[t, k])
            if index < 0 or not bool(frame.masks[index].any()):
                crops.append(None)
                continue
            mask = frame.masks[index]
            box = boxes_from_masks(mask[None])[0]
            x0, y0, x1, y1 = (int(v) for v in box.tolist())
            large = large or (x1 - x0 >= min_box_size and y1 - y0 >= min_box_size)
            if class_index < 0:
                class_index = int(frame.classes[index])
            boxes[t] = box.cpu()
            crops.append(
                (
                    sample.images[t, :, y0:y1, x0:x1].clone(),
                    mask[y0:y1, x0:x1].clone(),
                )
            )
        if large:
            objects.append(VideoObject(crops, boxes, class_index, track_id=k + 1))
    return objects


def novel_objects(
    objects: Sequence[VideoObject], pseudo: ClipSample, iou: float = 0.5
) -> list[VideoObject]:
    """The objects that no pseudo-label box explains (the self-enhanced filter, CUPS).

    ``objects`` must come from the **same clip** as ``pseudo``, unaugmented and at the same
    resolution (in CUPS: the model's predictions on the previous step's un-augmented batch), so
    that frame ``t`` of an object and frame ``t`` of ``pseudo`` are the same image. An object is
    kept when in **no** frame its box overlaps **any** pseudo-label box of that frame with
    IoU ``>= iou`` (frames beyond ``pseudo``'s length are not checked).

    Args:
        objects: candidate objects (e.g. ``video_objects`` of the predictions).
        pseudo: the clip's pseudo-labels.
        iou: IoU at or above which an object counts as explained.

    Returns:
        The kept objects, in input order.
    """
    kept: list[VideoObject] = []
    for obj in objects:
        novel = True
        for t in obj.present():
            if t >= len(pseudo) or len(pseudo.targets[t]) == 0:
                continue
            ious = box_iou(obj.boxes[t : t + 1], pseudo.targets[t].boxes.to(obj.boxes))
            if bool((ious >= iou).any()):
                novel = False
                break
        if novel:
            kept.append(obj)
    return kept


@dataclasses.dataclass(frozen=True)
class _Placement:
    """One pasted object's transform, the same in every frame.

    Source pixel coordinate ``u`` (continuous, pixel centres at ``i + 0.5``) maps to target
    ``x = px + scale * (u - ux0)``, or ``x = px + scale * (ux1 - u)`` when flipped; ``y`` likewise
    without flip. ``(ux0, uy0, ux1, uy1)`` is the object's union box.
    """

    obj: VideoObject
    track_id: int
    scale: float
    flip: bool
    px: int
    py: int
    union: tuple[int, int, int, int]


def _axis_map(
    lo: float, hi: float, offset: int, scale: float, start: int, size: int, mirror: int | None
) -> tuple[Tensor, Tensor, int]:
    """Target pixels covered by the source interval ``[lo, hi)`` and their source coordinates.

    Args:
        lo, hi: the crop's interval in source pixels.
        offset: target position of the union box's start (or of its end when mirrored).
        scale: source → target scale.
        start: the union box's start in source pixels.
        size: target axis length (pixels outside ``[0, size)`` are cut off).
        mirror: the union box's end when the axis is flipped, else ``None``.

    Returns:
        ``(coord float64[n], index int64[n], first)``: continuous crop-local source coordinate of
        each covered target pixel, its nearest crop pixel, and the first target pixel.
    """
    if mirror is None:
        t0, t1 = offset + scale * (lo - start), offset + scale * (hi - start)
    else:
        t0, t1 = offset + scale * (mirror - hi), offset + scale * (mirror - lo)
    first, last = max(0, math.floor(t0)), min(size, math.ceil(t1))
    target = torch.arange(first, max(first, last), dtype=torch.float64) + 0.5
    source = (target - offset) / scale
    source = start + source if mirror is None else mirror - source
    coord = source - lo
    return coord, torch.floor(coord).to(torch.int64), first


def _render(
    placement: _Placement, t: int, size: tuple[int, int], device: torch.device
) -> tuple[Tensor, Tensor, int, int] | None:
    """The object's frame ``t`` under its placement, cut to the target frame.

    Returns:
        ``(image float32[3, h, w], mask bool[h, w], y0, x0)``: the pasted window and its origin in
        the target frame, or ``None`` when nothing (or ``<= MIN_MASK_PIXELS`` pixels) lands in it.
    """
    obj = placement.obj
    crop = obj.crops[t] if t < len(obj) else None
    if crop is None:
        return None
    image, mask = crop
    bx0, by0, bx1, by1 = (int(v) for v in obj.boxes[t].tolist())
    ux0, uy0, ux1, _ = placement.union
    s = placement.scale
    cx, ix, x0 = _axis_map(bx0, bx1, placement.px, s, ux0, size[1], ux1 if placement.flip else None)
    cy, iy, y0 = _axis_map(by0, by1, placement.py, s, uy0, size[0], None)
    if cx.numel() == 0 or cy.numel() == 0:
        return None
    h, w = mask.shape
    valid = ((iy >= 0) & (iy < h))[:, None] & ((ix >= 0) & (ix < w))[None, :]
    window = mask.to(device)[iy.clamp(0, h - 1).to(device)[:, None], ix.clamp(0, w - 1).to(device)]
    window = window & valid.to(device)
    if int(window.sum()) <= MIN_MASK_PIXELS:
        return None
    # bilinear, align_corners=False: normalised coordinate of crop-local c is 2 c / w - 1
    gx = (2.0 * cx / w - 1.0).to(device=device, dtype=torch.float32)
    gy = (2.0 * cy / h - 1.0).to(device=device, dtype=torch.float32)
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None]  # [1, h', w', 2]
    pasted = F.grid_sample(
        image.to(device)[None], grid, mode="bilinear", padding_mode="border", align_corners=False
    )[0]
    return pasted, window, y0, x0


def _paste_frame(
    frame: FrameTargets, image: Tensor, placements: Sequence[_Placement], t: int
) -> tuple[FrameTargets, Tensor]:
    """Paste the placements (in order, later ones on top) into one target frame.

    Returns:
        The new targets and image ``float32[3, H, W]``; ``frame`` and ``image`` are not modified.
    """
    size = frame.size
    device = image.device
    image = image.clone()
    existing = frame.masks  # cloned on the first paste
    pasted_masks: list[Tensor] = []
    classes = frame.classes.tolist()
    track_ids = frame.track_ids.tolist()
    counts = mask_pixels(frame.masks).tolist()
    semantic = frame.semantic
    for placement in placements:
        rendered = _render(placement, t, size, device)
        if rendered is None:
            continue
        if not pasted_masks:
            existing, semantic = existing.clone(), semantic.clone()
        pasted, window, y0, x0 = rendered
        win = (slice(y0, y0 + window.shape[0]), slice(x0, x0 + window.shape[1]))
        image[:, win[0], win[1]] = torch.where(window, pasted, image[:, win[0], win[1]])
        # every instance already in the frame loses the pixels under the pasted mask
        existing[:, win[0], win[1]] &= ~window
        for mask in pasted_masks:
            mask[win] &= ~window
        semantic[win][window] = 0
        full = torch.zeros(size, dtype=torch.bool, device=device)
        full[win] = window
        pasted_masks.append(full)
        classes.append(placement.obj.class_index)
        track_ids.append(placement.track_id)
        counts.append(int(window.sum()))
    if not pasted_masks:
        return frame, image
    stacked = torch.cat([existing, torch.stack(pasted_masks)])
    left = mask_pixels(stacked)
    # Removed: instances that pasting reduced to <= MIN_MASK_PIXELS (fully occluded included).
    keep = ~(
        (left <= MIN_MASK_PIXELS) & (left < torch.tensor(counts, dtype=torch.int32, device=device))
    )
    stacked = stacked[keep]
    new = FrameTargets(
        boxes=boxes_from_masks(stacked),
        classes=torch.tensor(classes, dtype=torch.int64, device=device)[keep],
        masks=stacked,
        track_ids=torch.tensor(track_ids, dtype=torch.int64, device=device)[keep],
        semantic=semantic,
    )
    return new, image


def paste_objects(
    target: ClipSample,
    objects: Sequence[VideoObject],
    cfg: CopyPasteSection,
    generator: torch.Generator,
) -> ClipSample:
    """Paste video objects into a clip, one transform per object for all frames (method §4.5).

    Draws from ``generator``, in order: ``n ~ U{1..min(max_objects, len(objects))}``; a
    ``randperm`` of the objects, whose first ``n`` are pasted (no object twice); then per pasted
    object 4 uniforms: scale ``~ U(scale_range)``, flip (``< 0.5``), x and y position.

    Per pasted object, the same in every frame: the object's union box over its frames is scaled,
    flipped horizontally about itself when drawn, and placed with its corner at an integer
    position uniform over all positions where it lies inside the target frame (or, when larger,
    covers it; the parts outside are cut). Source frame ``t`` goes to target frame ``t``, so the
    source's motion is kept (scaled, mirrored when flipped); where the source has no frame ``t``,
    the object is absent at ``t``, or fewer than ``MIN_MASK_PIXELS + 1`` of its pixels land in
    the frame, nothing is pasted there. Image bilinear, mask nearest, hard paste (alpha = mask).

    Per frame, objects are pasted in draw order (later ones on top): pixels under a pasted mask
    are removed from the masks of every instance already there (existing and earlier pasted),
    and the semantic target there becomes 0 (thing). An instance that pasting reduces to
    ``<= MIN_MASK_PIXELS`` pixels (fully occluded included) is removed from that frame; its few
    remaining pixels keep their semantic label. Pasted object ``j`` (``1..n``) gets track id
    ``target.num_tracks + j`` in every frame it appears in (ids of objects that never land stay
    unused), and its object's class. Boxes of all instances are recomputed from the masks.

    Args:
        target: the clip to paste into; not modified.
        objects: the candidates (:func:`video_objects`, optionally :func:`novel_objects`).
        cfg: ``max_objects`` and ``scale_range`` are used; when ``cfg.enabled`` is false the
            target is returned unchanged and nothing is drawn.
        generator: the only source of randomness.

    Returns:
        A new clip (``target`` itself when ``objects`` is empty or copy-paste is disabled); frames
        where nothing lands share their :class:`FrameTargets` with ``target``.
    """
    objects = [obj for obj in objects if obj.present()]
    if not cfg.enabled or not objects:
        return target
    g_device = generator.device
    limit = min(cfg.max_objects, len(objects))
    n = int(torch.randint(1, limit + 1, (1,), generator=generator, device=g_device).item())
    chosen = torch.randperm(len(objects), generator=generator, device=g_device)[:n].tolist()
    height, width = target.size
    lo, hi = cfg.scale_range
    base_id = target.num_tracks
    placements: list[_Placement] = []
    for j, index in enumerate(chosen):
        u_scale, u_flip, u_x, u_y = torch.rand(4, generator=generator, device=g_device).tolist()
        obj = objects[index]
        union = obj.union_box()
        scale = lo + u_scale * (hi - lo)
        px = _position(u_x, scale * (union[2] - union[0]), width)
        py = _position(u_y, scale * (union[3] - union[1]), height)
        placements.append(_Placement(obj, base_id + j + 1, scale, u_flip < 0.5, px, py, union))
    targets: list[FrameTargets] = []
    images: list[Tensor] = []
    for t, frame in enumerate(target.targets):
        new_frame, new_image = _paste_frame(frame, target.images[t], placements, t)
        targets.append(new_frame)
        images.append(new_image)
    return dataclasses.replace(target, images=torch.stack(images), targets=targets)


def _position(u: float, extent: float, size: int) -> int:
    """Integer start of an ``extent``-long object, uniform over the nested positions."""
    d = size - extent
    lo, hi = min(0.0, d), max(0.0, d)
    return math.floor(lo + u * (hi - lo))
