"""Appearance refinement of motion instances: motion seeds, appearance delineates.

Region growing on estimated flow gives masks whose boundaries are as blurry as the flow (it smooths
across object edges) and that break one object into several fragments where the flow is noisy.
:func:`refine_instances` keeps the motion evidence as the *seed* and lets colour draw the boundary.
Not in the paper (ours, on by default: it raised DAVIS union J and the oracle-cue AQ alike, see the
README); ``region_growing.refine: none`` gives the paper's grown masks.


1. **Grouping.** Instances closer than ``refine_merge_gap`` pixels to each other form one group
   (one object broken into fragments by flow noise) if they also move alike
   (``refine_merge_flow``) and lie at a similar depth (``refine_merge_depth``: a car just behind
   another is not its fragment); with ``refine_merge_gap = 0`` every instance is its own group.
   Groups smaller than ``refine_min_area`` (a fraction of the image) are left unrefined, so the
   cost goes to the instances that matter and not to every tiny fragment.
2. **GrabCut per group** (``cv2.grabCut`` with ``GC_INIT_WITH_MASK``) on a crop around the group,
   its bounding box grown by ``refine_margin`` of its size on each side, downscaled so that its
   longer side is at most ``refine_max_side`` pixels (for speed). Initial labels:

   * sure foreground: pixels more than ``refine_band`` pixels inside the group whose motion
     score is ``> refine_sure_motion`` (the flow blurs boundaries over a band of fixed width,
     not one proportional to the object), the band at most ``refine_band_scale`` times the
     square root of the group's area (a small object keeps a sure interior);
   * probable foreground: the rest of the group;
   * probable background: up to ``refine_ring`` times that band outside the group, where
     the colour may still move the boundary outwards;
   * sure background: the rest of the crop.

3. **Result.** The group's GrabCut foreground (components that touch the original group; the
   rest are colour look-alikes far from the motion) becomes one instance. A pixel claimed by two
   groups goes to the one that held it before refinement, else to the larger group. Instances of
   groups left unrefined keep their masks. Ids are renumbered ``1..N`` by decreasing area.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from vcups_core.configs.pseudo_labels import RegionGrowingSection
from vcups_core.pseudo.boxes import union_box


def group_instances(
    labels: npt.NDArray[np.int32],
    gap: int,
    flow: npt.NDArray[np.float32] | None = None,
    max_flow_difference: float = 0.0,
    depth: npt.NDArray[np.float32] | None = None,
    max_depth_difference: float = 0.0,
) -> npt.NDArray[np.int32]:
    """Group id per instance id (``int32[max_id + 1]``; 0 at index 0, no instance): instances
    within ``gap`` pixels of each other share a group (transitively).

    With ``flow`` and ``max_flow_difference > 0``, two neighbours are grouped only if their mean
    flows differ by less than ``max_flow_difference`` times the larger mean flow's length (plus
    half a pixel): fragments of one object move alike, two cars side by side rarely do. With
    ``depth`` (``float32[H, W]``, non-finite = unknown) and ``max_depth_difference > 0``, only if
    their median depths differ by at most that fraction of the nearer one: two cars one behind
    the other move alike but lie at different depths (an instance with depth on fewer than half
    of its pixels does not veto).
    """
    n = int(labels.max())
    groups = np.arange(n + 1, dtype=np.int32)
    if n <= 1 or gap <= 0:
        return groups
    by_flow = flow is not None and max_flow_difference > 0
    by_depth = depth is not None and max_depth_difference > 0
    if by_flow or by_depth:
        return _group_by_similarity(
            labels,
            gap,
            flow if by_flow else None,
            max_flow_difference,
            depth if by_depth else None,
            max_depth_difference,
        )
    # instances within `gap` are connected components of the dilated foreground; an instance
    # belongs to the component its pixels fall in.
    size = 2 * gap + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    grown = cv2.dilate((labels > 0).astype(np.uint8), kernel) > 0
    comp, _ = ndimage.label(grown)
    # every pixel of an instance lies in the same dilated component
    first = np.zeros(n + 1, np.int32)
    ys, xs = np.nonzero(labels)
    ids = labels[ys, xs]
    first[ids] = comp[ys, xs]
    _, groups_compact = np.unique(first[1:], return_inverse=True)
    groups[1:] = groups_compact.astype(np.int32) + 1
    return groups


def _median_depths(
    labels: npt.NDArray[np.int32], depth: npt.NDArray[np.float32], n: int
) -> npt.NDArray[np.float64]:
    """Median depth per instance id ``0..n`` (NaN where fewer than half its pixels have one)."""
    flat = labels.ravel()
    values = depth.ravel()
    finite = np.isfinite(values) & (flat > 0)
    known = np.bincount(flat[finite], minlength=n + 1)
    area = np.bincount(flat, minlength=n + 1)
    ids = np.nonzero(2 * known >= np.maximum(area, 1))[0]
    ids = ids[ids > 0]
    out = np.full(n + 1, np.nan)
    if ids.size:
        out[ids] = ndimage.median(values[finite], flat[finite], ids)
    return out


def _group_by_similarity(
    labels: npt.NDArray[np.int32],
    gap: int,
    flow: npt.NDArray[np.float32] | None,
    max_flow_difference: float,
    depth: npt.NDArray[np.float32] | None,
    max_depth_difference: float,
) -> npt.NDArray[np.int32]:
    n = int(labels.max())
    # as in group_instances: two instances are neighbours when their masks grown by ``gap``
    # touch, i.e. within 2 * gap of each other
    size = 4 * gap + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    rows: list[int] = []
    cols: list[int] = []
    objects = ndimage.find_objects(labels)
    h, w = labels.shape
    for i, sl in enumerate(objects, start=1):
        if sl is None:
            continue
        y0, y1 = max(sl[0].start - 2 * gap, 0), min(sl[0].stop + 2 * gap, h)
        x0, x1 = max(sl[1].start - 2 * gap, 0), min(sl[1].stop + 2 * gap, w)
        crop = labels[y0:y1, x0:x1]
        grown = cv2.dilate((crop == i).astype(np.uint8), kernel) > 0
        for j in np.unique(crop[grown]):
            if j > i:
                rows.append(i)
                cols.append(int(j))
    if not rows:
        return np.arange(n + 1, dtype=np.int32)
    a, b = np.asarray(rows), np.asarray(cols)
    ok = np.ones(a.size, bool)
    if flow is not None:
        flat = labels.ravel()
        finite = np.isfinite(flow).all(axis=2).ravel()
        count = np.maximum(np.bincount(flat[finite], minlength=n + 1), 1)
        mean_x = np.bincount(flat[finite], flow[..., 0].ravel()[finite], n + 1) / count
        mean_y = np.bincount(flat[finite], flow[..., 1].ravel()[finite], n + 1) / count
        diff = np.hypot(mean_x[a] - mean_x[b], mean_y[a] - mean_y[b])
        scale = np.maximum(np.hypot(mean_x[a], mean_y[a]), np.hypot(mean_x[b], mean_y[b]))
        ok &= diff < max_flow_difference * scale + 0.5
    if depth is not None:
        med = _median_depths(labels, depth, n)
        da, db = med[a], med[b]
        unknown = ~(np.isfinite(da) & np.isfinite(db))
        with np.errstate(invalid="ignore"):
            ok &= unknown | (np.abs(da - db) <= max_depth_difference * np.fmin(da, db))
    graph = coo_matrix((np.ones(int(ok.sum()), np.int8), (a[ok], b[ok])), shape=(n + 1, n + 1))
    _, comp = connected_components(graph.tocsr(), directed=False)
    _, compact = np.unique(comp[1:], return_inverse=True)
    groups = np.zeros(n + 1, np.int32)
    groups[1:] = compact.astype(np.int32) + 1
    return groups


def crop_window(
    box: tuple[slice, slice], shape: tuple[int, int], margin: float
) -> tuple[slice, slice]:
    """``box`` (an object's bounding box) grown by ``margin`` of its size on each side, clipped
    to ``shape`` = (H, W)."""
    (ys, xs), (h, w) = box, shape
    my, mx = round(margin * (ys.stop - ys.start)), round(margin * (xs.stop - xs.start))
    return (
        slice(max(0, ys.start - my), min(h, ys.stop + my)),
        slice(max(0, xs.start - mx), min(w, xs.stop + mx)),
    )


def band_width(cfg: RegionGrowingSection, area: int) -> float:
    """The band (pixels at processing size) that colour may remove inside an object of ``area``
    pixels: ``refine_band``, at most ``refine_band_scale * sqrt(area)`` when that is > 0."""
    if cfg.refine_band_scale > 0:
        return min(cfg.refine_band, cfg.refine_band_scale * float(np.sqrt(area)))
    return cfg.refine_band


def grabcut_mask(
    image: npt.NDArray[np.uint8],
    mask: npt.NDArray[np.bool_],
    motion: npt.NDArray[np.float32],
    cfg: RegionGrowingSection,
) -> npt.NDArray[np.bool_]:
    """GrabCut of one object seeded by ``mask`` on a crop around it.

    Args:
        image: ``uint8[h, w, 3]`` the crop (see :func:`crop_window`).
        mask: ``bool[h, w]`` the object's pixels in the crop (not empty).
        motion: ``float32[h, w]`` the motion score in the crop.
        cfg: the ``refine_*`` parameters.

    Returns:
        ``bool[h, w]`` the refined mask; ``mask`` itself where GrabCut cannot run or keeps
        nothing.
    """
    crop_img, crop_mask, crop_motion = image, mask.astype(np.uint8), motion
    ch, cw = crop_mask.shape
    scale = min(1.0, cfg.refine_max_side / max(ch, cw))
    sh, sw = max(1, round(ch * scale)), max(1, round(cw * scale))
    if scale < 1.0:
        img_s = cv2.resize(crop_img, (sw, sh), interpolation=cv2.INTER_AREA)
        mask_s = cv2.resize(crop_mask, (sw, sh), interpolation=cv2.INTER_NEAREST)
        motion_s = cv2.resize(crop_motion, (sw, sh), interpolation=cv2.INTER_AREA)
    else:
        img_s, mask_s, motion_s = crop_img, crop_mask, crop_motion
    if not mask_s.any():
        return mask
    band = max(1.0, band_width(cfg, int(np.count_nonzero(mask))) * scale)
    inside = cv2.distanceTransform(mask_s, cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - mask_s, cv2.DIST_L2, 5)
    gc = np.full((sh, sw), cv2.GC_BGD, np.uint8)
    gc[outside <= cfg.refine_ring * band] = cv2.GC_PR_BGD
    gc[mask_s > 0] = cv2.GC_PR_FGD
    gc[(inside > band) & (motion_s > cfg.refine_sure_motion)] = cv2.GC_FGD
    if not (gc == cv2.GC_BGD).any() or not np.isin(gc, (cv2.GC_FGD, cv2.GC_PR_FGD)).any():
        return mask
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    # GrabCut seeds its colour models with k-means++ from OpenCV's (thread's) global RNG: seeded
    # per call, a crop's result does not depend on what ran before it in this process, so a
    # resumed or sharded run writes the same labels as an uninterrupted one.
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(
            np.ascontiguousarray(img_s),
            gc,
            (0, 0, 0, 0),  # unused with GC_INIT_WITH_MASK
            bgd,
            fgd,
            cfg.refine_iterations,
            cv2.GC_INIT_WITH_MASK,
        )
    except cv2.error:  # degenerate colour models (e.g. a flat crop)
        return mask
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
    # keep the components that touch the seed
    comp, n = ndimage.label(fg)
    if n > 1:
        touching = np.unique(comp[(mask_s > 0) & (fg > 0)])
        fg = np.isin(comp, touching[touching > 0]).astype(np.uint8)
    if scale < 1.0:
        out = cv2.resize(fg.astype(np.float32), (cw, ch), interpolation=cv2.INTER_LINEAR) > 0.5
    else:
        out = fg > 0
    return out if out.any() else mask


def refine_instances(
    image: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.int32],
    motion: npt.NDArray[np.float32],
    cfg: RegionGrowingSection,
    flow: npt.NDArray[np.float32] | None = None,
    depth: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.int32]:
    """Refine motion instances with appearance (see the module docstring).

    Args:
        image: ``uint8[H, W, 3]`` the frame.
        labels: ``int32[H, W]`` instance ids ``1..N``, 0 = none (from region growing).
        motion: ``float32[H, W]`` motion score in ``[0, 1]``.
        cfg: ``refine`` and the ``refine_*`` parameters.
        flow: ``float32[H, W, 2]`` the flow the instances were grown on; with
            ``refine_merge_flow > 0`` only neighbours that move alike are grouped.
        depth: ``float32[H, W]`` the frame's depth (non-finite = unknown); with
            ``refine_merge_depth > 0`` only neighbours at a similar depth are grouped.

    Returns:
        ``int32[H, W]`` refined instance ids ``1..N`` by decreasing area, 0 = none.
    """
    if cfg.refine == "none" or not labels.any():
        return labels
    if cfg.refine != "grabcut":
        raise ValueError(f"refine: unknown method {cfg.refine!r}")
    if image.shape[:2] != labels.shape or motion.shape != labels.shape:
        raise ValueError(f"image {image.shape} / motion {motion.shape} vs labels {labels.shape}")
    h, w = labels.shape
    groups = group_instances(
        labels, cfg.refine_merge_gap, flow, cfg.refine_merge_flow, depth, cfg.refine_merge_depth
    )
    n_groups = int(groups[1:].max()) if groups.size > 1 else 0
    areas = np.bincount(groups, np.bincount(labels.ravel(), minlength=groups.size), n_groups + 1)
    min_area = cfg.refine_min_area * h * w
    # every group is read through the bounding box of its instances, never the whole frame
    boxes = ndimage.find_objects(labels)
    members: list[list[int]] = [[] for _ in range(n_groups + 1)]
    for i, box in enumerate(boxes, start=1):
        if box is not None:
            members[groups[i]].append(i)
    out = np.zeros((h, w), np.int32)
    next_id = 1
    for g in np.argsort(-areas[1:], kind="stable") + 1:
        if areas[g] == 0:
            continue
        ids = members[g]
        box = union_box([boxes[i - 1] for i in ids])
        if areas[g] < min_area:
            # unrefined: each instance of the group keeps its own mask (it held those pixels
            # before refinement, so a larger group's colour model does not take them)
            sub, out_box = labels[box], out[box]
            for i in ids:
                out_box[sub == i] = next_id
                next_id += 1
            continue
        window = crop_window(box, (h, w), cfg.refine_margin)
        sub = labels[window]
        seed = sub == ids[0] if len(ids) == 1 else np.isin(sub, ids)
        refined = grabcut_mask(image[window], seed, motion[window], cfg)
        # groups are visited by decreasing area: a taken pixel stays with the larger group unless
        # this group held it before refinement
        out_win = out[window]
        out_win[refined & ((out_win == 0) | seed)] = next_id
        next_id += 1
    # renumber 1..N by decreasing area
    counts = np.bincount(out.ravel(), minlength=next_id)
    counts[0] = 0
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] > 0]
    lut = np.zeros(counts.size, np.int32)
    lut[order] = np.arange(1, order.size + 1, dtype=np.int32)
    result: npt.NDArray[np.int32] = lut[out]
    return result
