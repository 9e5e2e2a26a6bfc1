"""Motion-based region growing: instance masks of one frame from motion, flow and depth (method §2.3).

The paper names the ingredients and their values (seed threshold α = 0.15, relative depth threshold
τ_d = 0.02, relative flow threshold τ_f = 0.04, neighbourhood radius r = 8) but not the exact rule;
this is the GUESS of ``method.md`` §2.3, computed without a per-pixel loop:

1. **Seeds** are valid pixels with motion score ``> α``.
2. **Growing.** Only *supported* pixels take part: valid ones with motion score
   ``≥ support_threshold`` (``0`` = every valid pixel). The others are never grown into, and a
   seed among them (possible only with ``support_threshold > α``) starts no region. Two supported
   pixels ``p``, ``q`` at most ``r`` apart are *similar* when

   * ``|D(q) − D(p)| / min(D(p), D(q)) < τ_d`` (skipped where a depth is unknown), and
   * ``‖F(q) − F(p)‖ < τ_f · ½(‖F(p)‖ + ‖F(q)‖) + t_F`` (``flow_norm: relative``), or
     ``‖F(q) − F(p)‖ < τ_f · diag + t_F`` with the image diagonal ``diag`` (``flow_norm:
     diagonal``, the alternative normalisation of ``method.md``; far more lenient). ``t_F`` is
     ``flow_tolerance``: a flow difference in pixels always tolerated, the noise of estimated
     flow (with ``t_F = 0`` the relative test joins no two pixels of zero flow).

   A breadth-first search from a seed that adds every similar pixel within ``r`` of the region
   reaches exactly the connected component of the seed in the graph of similar pairs (with the
   symmetric form of the two tests above, which compares both pixels the same way so that the
   order of growth cannot matter). So the regions are computed as connected components of that
   graph (:func:`scipy.sparse.csgraph.connected_components`); the graph has an edge for every pixel
   and each offset of a sparse stencil (4 directions × distances 1, 2, 4, ..., r), which connects
   any two pixels of a region within ``r`` through short hops.
2b. **Merging fragments** (ours): estimated flow is noisy from pixel to pixel, so a region that a
   clean flow grows whole can break into fragments; neighbouring components whose *mean* flow
   (and mean depth) pass the same tests are merged (:func:`merge_components`).
3. **Acceptance** (a safeguard of ours): a component is an instance only if its median motion
   score is ``> α``, i.e. most of it moves; a noisy seed on the static background, whose component
   is the background, is rejected instead of becoming a huge "instance".
4. **Post-processing**: holes are filled, regions smaller than ``min_area`` pixels (of a 640×1280 frame, scaled with the frame's area; at the
   processing size) dropped, and ids relabelled ``1..N`` by decreasing area.

The graph has at most ``work_pixels`` nodes (larger frames are downscaled, the radius with them) and the
labels are upsampled with nearest neighbours: the components of a 640×1280 frame's 13 million
edges would cost more than the rest of the pipeline together.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from vcups_core.configs.pseudo_labels import RegionGrowingSection
from vcups_core.cues.geometry import usable_mask

_DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))


def stencil(radius: int) -> list[tuple[int, int]]:
    """Offsets ``(dy, dx)`` of the neighbourhood graph: 4 half-plane directions × distances
    ``1, 2, 4, ...`` up to ``radius`` (``radius`` itself always included)."""
    distances = sorted({min(2**k, radius) for k in range(int(math.log2(max(radius, 1))) + 2)})
    return [(dy * d, dx * d) for d in distances for dy, dx in _DIRECTIONS]


def _pairs(
    shape: tuple[int, int], dy: int, dx: int
) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Slices selecting ``p`` and ``q = p + (dy, dx)`` for all pairs inside an image."""
    h, w = shape
    ys_p = slice(0, h - dy) if dy >= 0 else slice(-dy, h)
    ys_q = slice(dy, h) if dy >= 0 else slice(0, h + dy)
    xs_p = slice(0, w - dx) if dx >= 0 else slice(-dx, w)
    xs_q = slice(dx, w) if dx >= 0 else slice(0, w + dx)
    return (ys_p, xs_p), (ys_q, xs_q)


def similarity_components(
    flow: npt.NDArray[np.float32],
    depth: npt.NDArray[np.float32] | None,
    active: npt.NDArray[np.bool_],
    *,
    radius: int,
    depth_threshold: float,
    flow_threshold: float,
    flow_norm: str = "relative",
    flow_tolerance: float = 0.0,
) -> npt.NDArray[np.int32]:
    """Connected components of the graph of similar pixel pairs (step 2 of the module docstring).

    Args:
        flow: ``float32[H, W, 2]``.
        depth: ``float32[H, W]`` (NaN = unknown) or None.
        active: ``bool[H, W]`` pixels that may join a region (valid flow).
        radius: neighbourhood radius in pixels.
        depth_threshold, flow_threshold: τ_d and τ_f.
        flow_norm: ``"relative"`` or ``"diagonal"``.
        flow_tolerance: pixels of flow difference always tolerated (the flow's noise).

    Returns:
        ``int32[H, W]`` component id per pixel (``-1`` outside ``active``); isolated active pixels
        are components of their own.
    """
    h, w = active.shape
    n = h * w
    index = np.arange(n, dtype=np.int64).reshape(h, w)
    fx = np.ascontiguousarray(flow[..., 0])
    fy = np.ascontiguousarray(flow[..., 1])
    mag = np.sqrt(fx * fx + fy * fy)  # = np.linalg.norm(flow, axis=2), without the slow reduction
    diag = math.hypot(h, w)
    rows: list[npt.NDArray[np.int64]] = []
    cols: list[npt.NDArray[np.int64]] = []
    for dy, dx in stencil(radius):
        if abs(dy) >= h or abs(dx) >= w:
            continue
        sp, sq = _pairs((h, w), dy, dx)
        ok = active[sp] & active[sq]
        diff = np.hypot(fx[sp] - fx[sq], fy[sp] - fy[sq])
        if flow_norm == "relative":
            ok &= diff < flow_threshold * 0.5 * (mag[sp] + mag[sq]) + flow_tolerance
        else:
            ok &= diff < flow_threshold * diag + flow_tolerance
        if depth is not None:
            dp, dq = depth[sp], depth[sq]
            with np.errstate(invalid="ignore"):
                rel = np.abs(dp - dq) / np.minimum(dp, dq)
                ok &= ~(rel >= depth_threshold)  # NaN (unknown depth) passes
        rows.append(index[sp][ok])
        cols.append(index[sq][ok])
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(r.size, np.int8), (r, c)), shape=(n, n)).tocsr()
    _, comp = connected_components(graph, directed=False)
    out: npt.NDArray[np.int32] = comp.astype(np.int32).reshape(h, w)
    out[~active] = -1
    return out


def merge_components(
    comp: npt.NDArray[np.int32],
    flow: npt.NDArray[np.float32],
    depth: npt.NDArray[np.float32] | None,
    *,
    radius: int,
    depth_threshold: float,
    flow_threshold: float,
    flow_tolerance: float,
) -> npt.NDArray[np.int32]:
    """Merge neighbouring components whose *mean* flow (and mean depth) pass the growing tests.

    Estimated flow is noisy pixel to pixel, so a region that a clean flow would grow whole breaks
    into fragments at the pixel level; their means are far less noisy. Two components within
    ``radius`` of each other are merged when ``|mean F_a - mean F_b| < tau_f * mean(|mean F|)
    + flow_tolerance`` and, where both mean depths are known, their relative difference is
    below ``tau_d``. Objects that move differently stay apart.

    Args:
        comp: ``int32[H, W]`` component ids, -1 = inactive.
        flow: ``float32[H, W, 2]``; depth ``float32[H, W]`` (NaN = unknown) or None.

    Returns:
        ``int32[H, W]`` merged component ids (-1 kept).
    """
    active = comp >= 0
    if not active.any():
        return comp
    k = int(comp.max()) + 1
    ids = comp[active]
    count = np.maximum(np.bincount(ids, minlength=k), 1)
    mean_x = np.bincount(ids, flow[..., 0][active], k) / count
    mean_y = np.bincount(ids, flow[..., 1][active], k) / count
    mag = np.hypot(mean_x, mean_y)
    mean_d = None
    if depth is not None:
        known = active & np.isfinite(depth)
        dcount = np.bincount(comp[known], minlength=k)
        dsum = np.bincount(comp[known], depth[known], k)
        mean_d = np.where(dcount > 0, dsum / np.maximum(dcount, 1), np.nan)
    h, w = comp.shape
    pa: list[npt.NDArray[np.int32]] = []
    pb: list[npt.NDArray[np.int32]] = []
    for dy, dx in stencil(radius):
        if abs(dy) >= h or abs(dx) >= w:
            continue
        sp, sq = _pairs((h, w), dy, dx)
        a, b = comp[sp], comp[sq]
        differ = (a >= 0) & (b >= 0) & (a != b)
        pa.append(a[differ])
        pb.append(b[differ])
    a = np.concatenate(pa)
    b = np.concatenate(pb)
    if a.size == 0:
        return comp
    pairs = np.unique(np.minimum(a, b).astype(np.int64) * k + np.maximum(a, b))
    first, second = pairs // k, pairs % k
    diff = np.hypot(mean_x[first] - mean_x[second], mean_y[first] - mean_y[second])
    ok = diff < flow_threshold * 0.5 * (mag[first] + mag[second]) + flow_tolerance
    if mean_d is not None:
        with np.errstate(invalid="ignore"):
            rel = np.abs(mean_d[first] - mean_d[second]) / np.minimum(mean_d[first], mean_d[second])
        ok &= ~(rel >= depth_threshold)
    graph = coo_matrix(
        (np.ones(int(ok.sum()), np.int8), (first[ok], second[ok])), shape=(k, k)
    ).tocsr()
    _, merged = connected_components(graph, directed=False)
    out = np.where(active, merged[np.maximum(comp, 0)], -1).astype(np.int32)
    return out


def grow_regions(
    motion: npt.NDArray[np.float32],
    flow: npt.NDArray[np.float32],
    depth: npt.NDArray[np.float32] | None,
    valid: npt.NDArray[np.bool_],
    cfg: RegionGrowingSection,
    *,
    work_scale: float | None = None,
) -> npt.NDArray[np.int32]:
    """Instance masks of one frame by motion-based region growing (see the module docstring).

    Args:
        motion: ``float32[H, W]`` motion score in ``[0, 1]``.
        flow: ``float32[H, W, 2]`` the frame's motion flow (NaN = undefined).
        depth: ``float32[H, W]`` depth (NaN = unknown), or None to grow on flow alone.
        valid: ``bool[H, W]`` pixels with trustworthy flow inside the border mask.
        cfg: α, τ_d, τ_f, r, ``flow_norm``, ``flow_tolerance``, ``support_threshold``,
            ``min_area``, ``fill_holes``.
        work_scale: resolution of the graph relative to ``H, W`` (``1`` = full); None uses
            ``min(1, sqrt(cfg.work_pixels / (H W)))``.

    Returns:
        ``int32[H, W]`` instance ids ``1..N`` by decreasing area, 0 = no instance.
    """
    if work_scale is None:
        work_scale = min(1.0, math.sqrt(cfg.work_pixels / (motion.shape[0] * motion.shape[1])))
    if not 0 < work_scale <= 1:
        raise ValueError(f"work_scale: expected in (0, 1], got {work_scale}")
    h, w = motion.shape
    if flow.shape != (h, w, 2) or valid.shape != (h, w):
        raise ValueError(f"flow {flow.shape} / valid {valid.shape} do not match motion {(h, w)}")
    finite = usable_mask(flow, valid)
    flow0 = flow.astype(np.float32, copy=True)
    flow0[~finite] = 0
    sh, sw = max(1, round(h * work_scale)), max(1, round(w * work_scale))
    scale = sw / w
    small_depth: npt.NDArray[np.float32] | None
    if (sh, sw) != (h, w):
        small_flow = np.asarray(
            cv2.resize(flow0, (sw, sh), interpolation=cv2.INTER_AREA), dtype=np.float32
        )
        small_motion = np.asarray(
            cv2.resize(motion.astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA),
            dtype=np.float32,
        )
        small_valid = (
            cv2.resize(finite.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST) > 0
        )
        small_depth = None
        if depth is not None:
            small_depth = np.asarray(
                cv2.resize(depth.astype(np.float32), (sw, sh), interpolation=cv2.INTER_NEAREST),
                dtype=np.float32,
            )
    else:
        small_flow, small_motion, small_valid, small_depth = flow0, motion, finite, depth
    radius = max(1, round(cfg.radius * scale))
    comp = similarity_components(
        small_flow,
        small_depth,
        small_valid & (small_motion >= cfg.support_threshold),
        radius=radius,
        depth_threshold=cfg.depth_threshold,
        flow_threshold=cfg.flow_threshold,
        flow_norm=cfg.flow_norm,
        flow_tolerance=cfg.flow_tolerance,
    )
    comp = merge_components(
        comp,
        small_flow,
        small_depth,
        radius=radius,
        depth_threshold=cfg.depth_threshold,
        flow_threshold=cfg.flow_threshold,
        flow_tolerance=cfg.flow_tolerance,
    )
    seeds = small_valid & (small_motion > cfg.seed_threshold)
    seed_comps = np.unique(comp[seeds])
    seed_comps = seed_comps[seed_comps >= 0]  # seeds below support_threshold join no region
    if seed_comps.size == 0:
        return np.zeros((h, w), np.int32)
    # median motion score of each seeded component (step 3)
    member = np.isin(comp, seed_comps)
    ids = comp[member]
    scores = small_motion[member]
    order = np.lexsort((scores, ids))
    ids_sorted, scores_sorted = ids[order], scores[order]
    starts = np.flatnonzero(np.r_[True, ids_sorted[1:] != ids_sorted[:-1]])
    counts = np.diff(np.r_[starts, ids_sorted.size])
    medians = scores_sorted[starts + (counts - 1) // 2]
    keep = ids_sorted[starts][medians > cfg.seed_threshold]
    lut = np.zeros(int(comp.max()) + 2, np.int32)
    lut[keep + 1] = np.arange(1, keep.size + 1, dtype=np.int32)
    labels_small = lut[comp + 1]
    if (sh, sw) != (h, w):
        labels = np.asarray(
            cv2.resize(labels_small, (w, h), interpolation=cv2.INTER_NEAREST), dtype=np.int32
        )
    else:
        labels = labels_small
    return clean_instances(
        labels, min_area=scaled_min_area(cfg.min_area, h, w), fill_holes=cfg.fill_holes
    )


REFERENCE_AREA = 640 * 1280
"""Frame area (pixels) at which ``min_area`` is given: the paper's processing size."""


def scaled_min_area(min_area: int, height: int, width: int) -> int:
    """``min_area`` (pixels of a 640×1280 frame) at a ``height × width`` frame, at least 1."""
    return max(1, round(min_area * height * width / REFERENCE_AREA))


def clean_instances(
    labels: npt.NDArray[np.integer], *, min_area: int, fill_holes: bool = True
) -> npt.NDArray[np.int32]:
    """Fill holes, drop instances smaller than ``min_area`` and relabel ``1..N`` by decreasing area.

    Args:
        labels: ``int[H, W]`` instance ids, 0 = none.

    Returns:
        ``int32[H, W]``. A filled hole is given to the instance that encloses it only where no other
        instance is.
    """
    labels = np.asarray(labels)
    out = labels.astype(np.int32, copy=True)
    if out.size and out.min() < 0:
        raise ValueError("labels: instance ids must be >= 0")
    ids = np.flatnonzero(np.bincount(out.ravel()))
    ids = ids[ids != 0]
    if fill_holes:
        objects = ndimage.find_objects(out)
        for i in ids:
            sl = objects[i - 1]
            if sl is None:
                continue
            mask = out[sl] == i
            filled = ndimage.binary_fill_holes(mask)
            out[sl][filled & (out[sl] == 0)] = i
    areas = np.bincount(out.ravel())
    areas[0] = 0
    order = np.argsort(-areas, kind="stable")
    order = order[areas[order] >= max(min_area, 1)]
    lut = np.zeros(areas.size, np.int32)
    lut[order] = np.arange(1, order.size + 1, dtype=np.int32)
    result: npt.NDArray[np.int32] = lut[out]
    return result
