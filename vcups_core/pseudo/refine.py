"""Appearance refinement of motion instances: motion seeds, appearance delineates.

Region growing on estimated flow gives masks whose boundaries are as blurry as the flow (it smooths
across object edges) and that break one object into several fragments where the flow is noisy.
:func:`refine_instances` keeps the motion evidence as the *seed* and lets colour draw the boundary:

1. **Grouping.** Instances closer than ``refine_merge_gap`` pixels to each other form one group
   (one object broken into fragments by flow noise); with ``refine_merge_gap = 0`` every instance is
   its own group. Groups smaller than ``refine_min_area`` (a fraction of the image) are left
   unrefined, so the cost goes to the instances that matter and not to every tiny fragment.
2. **GrabCut per group** (``cv2.grabCut`` with ``GC_INIT_WITH_MASK``) on a crop around the group,
   its bounding box grown by ``refine_margin`` of its size on each side, downscaled so that its
   longer side is at most ``refine_max_side`` pixels (for speed). Initial labels:

   * sure foreground: pixels more than ``refine_band`` pixels inside the group whose motion
     score is ``> refine_sure_motion`` (the flow blurs boundaries over a band of fixed width,
     not one proportional to the object);
   * probable foreground: the rest of the group;
   * probable background: up to ``refine_ring * refine_band`` pixels outside the group, where
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


def group_instances(
    labels: npt.NDArray[np.int32],
    gap: int,
    flow: npt.NDArray[np.float32] | None = None,
    max_flow_difference: float = 0.0,
) -> npt.NDArray[np.int32]:
    """Group id per instance id (``int32[max_id + 1]``, index 0 unused): instances within ``gap``
    pixels of each other share a group (transitively).

    With ``flow`` and ``max_flow_difference > 0``, two neighbours are grouped only if their mean
    flows differ by less than ``max_flow_difference`` times the larger mean flow's length (plus
    half a pixel): fragments of one object move alike, two cars side by side rarely do.
    """
    n = int(labels.max())
    groups = np.arange(n + 1, dtype=np.int32)
    if n <= 1 or gap <= 0:
        return groups
    if flow is not None and max_flow_difference > 0:
        return _group_by_flow(labels, gap, flow, max_flow_difference)
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


def _group_by_flow(
    labels: npt.NDArray[np.int32],
    gap: int,
    flow: npt.NDArray[np.float32],
    max_flow_difference: float,
) -> npt.NDArray[np.int32]:
    n = int(labels.max())
    flat = labels.ravel()
    finite = np.isfinite(flow).all(axis=2).ravel()
    count = np.maximum(np.bincount(flat[finite], minlength=n + 1), 1)
    mean_x = np.bincount(flat[finite], flow[..., 0].ravel()[finite], n + 1) / count
    mean_y = np.bincount(flat[finite], flow[..., 1].ravel()[finite], n + 1) / count
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
    diff = np.hypot(mean_x[a] - mean_x[b], mean_y[a] - mean_y[b])
    scale = np.maximum(np.hypot(mean_x[a], mean_y[a]), np.hypot(mean_x[b], mean_y[b]))
    ok = diff < max_flow_difference * scale + 0.5
    graph = coo_matrix((np.ones(int(ok.sum()), np.int8), (a[ok], b[ok])), shape=(n + 1, n + 1))
    _, comp = connected_components(graph.tocsr(), directed=False)
    _, compact = np.unique(comp[1:], return_inverse=True)
    groups = np.zeros(n + 1, np.int32)
    groups[1:] = compact.astype(np.int32) + 1
    return groups


def grabcut_mask(
    image: npt.NDArray[np.uint8],
    mask: npt.NDArray[np.bool_],
    motion: npt.NDArray[np.float32],
    cfg: RegionGrowingSection,
) -> npt.NDArray[np.bool_]:
    """GrabCut of one object seeded by ``mask`` (``bool[H, W]``); returns its refined mask."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    bh, bw = y1 - y0, x1 - x0
    my, mx = round(cfg.refine_margin * bh), round(cfg.refine_margin * bw)
    cy0, cy1 = max(0, y0 - my), min(h, y1 + my)
    cx0, cx1 = max(0, x0 - mx), min(w, x1 + mx)
    crop_img = image[cy0:cy1, cx0:cx1]
    crop_mask = mask[cy0:cy1, cx0:cx1].astype(np.uint8)
    crop_motion = motion[cy0:cy1, cx0:cx1]
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
    band = max(1.0, cfg.refine_band * scale)
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
        fg_full = cv2.resize(fg.astype(np.float32), (cw, ch), interpolation=cv2.INTER_LINEAR) > 0.5
    else:
        fg_full = fg > 0
    out = np.zeros_like(mask)
    out[cy0:cy1, cx0:cx1] = fg_full
    if not out.any():
        return mask
    return out


def refine_instances(
    image: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.int32],
    motion: npt.NDArray[np.float32],
    cfg: RegionGrowingSection,
    flow: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.int32]:
    """Refine motion instances with appearance (see the module docstring).

    Args:
        image: ``uint8[H, W, 3]`` the frame.
        labels: ``int32[H, W]`` instance ids ``1..N``, 0 = none (from region growing).
        motion: ``float32[H, W]`` motion score in ``[0, 1]``.
        cfg: ``refine`` and the ``refine_*`` parameters.
        flow: ``float32[H, W, 2]`` the flow the instances were grown on; with
            ``refine_merge_flow > 0`` only neighbours that move alike are grouped.

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
    groups = group_instances(labels, cfg.refine_merge_gap, flow, cfg.refine_merge_flow)
    group_map = groups[labels]
    group_map[labels == 0] = 0
    n_groups = int(groups[1:].max()) if groups.size > 1 else 0
    areas = np.bincount(group_map.ravel(), minlength=n_groups + 1)
    min_area = cfg.refine_min_area * h * w
    out = np.zeros((h, w), np.int32)
    next_id = 1
    for g in np.argsort(-areas[1:], kind="stable") + 1:
        if areas[g] == 0:
            continue
        seed = group_map == g
        if areas[g] < min_area:
            # unrefined: each instance of the group keeps its own mask
            for i in np.unique(labels[seed]):
                m = (labels == i) & (out == 0)
                out[m] = next_id
                next_id += 1
            continue
        refined = grabcut_mask(image, seed, motion, cfg)
        # groups are visited by decreasing area: a taken pixel stays with the larger group unless
        # this group held it before refinement
        take = refined & ((out == 0) | seed)
        out[take] = next_id
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
