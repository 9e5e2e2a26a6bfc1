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
3. **Acceptance** (ours): a component is an instance only if its median motion score is
   ``> max(α, accept_threshold)``, i.e. most of it moves. With ``α`` alone this is a safeguard: a
   noisy seed on the static background, whose component is the background, is rejected instead
   of becoming a huge "instance". ``accept_threshold`` 0.5 also asks that most of the region moves
   by at least half its flow beyond the camera's own: the false regions of estimated flow
   (parallax and flow noise just above ``α``) have mean scores of 0.15–0.35 on DAVIS, a moving
   object's are near 1 (DAVIS union J 0.702 → 0.744, ids per clip 84–136 → 28–62; exact cues
   score 0 or 1 and are unaffected).
3b. **Per-step depth threshold** (``scale_thresholds``, ours): τ_d is taken per pixel step of a
   640×1280 frame, the paper's size. A step of a coarser grid (a smaller frame, or the
   ``work_pixels`` downscaling) spans ``s = sqrt(640·1280 / grid area)`` such pixels, and across
   a slanted surface the depth changes ``s`` times as much per step; τ_d is multiplied by ``s``
   (2.5 at 256×512, 2 at 320×640). Without it, a side face of a car seen at a grazing angle
   (depth +2.3 % per pixel at 256×512) falls apart into one-pixel-wide strips that become
   instances and tracks of their own. τ_f is left per grid step: scaling it as well changed
   nothing with exact flow and lowered DAVIS union J (DIS flow) from 0.632 to 0.618.
4. **Post-processing**: holes are filled, regions smaller than ``min_area`` pixels (of a 640×1280 frame, scaled with the frame's area; at the
   processing size) dropped, and ids relabelled ``1..N`` by decreasing area.

The graph has at most ``work_pixels`` nodes (larger frames are downscaled, the radius with them) and the
labels are upsampled with nearest neighbours: the components of a 640×1280 frame's 13 million
edges would cost more than the rest of the pipeline together.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

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
    comp, _ = _similarity_graph(
        flow,
        depth,
        active,
        radius=radius,
        depth_threshold=depth_threshold,
        flow_threshold=flow_threshold,
        flow_norm=flow_norm,
        flow_tolerance=flow_tolerance,
    )
    return comp


def _similarity_graph(
    flow: npt.NDArray[np.float32],
    depth: npt.NDArray[np.float32] | None,
    active: npt.NDArray[np.bool_],
    *,
    radius: int,
    depth_threshold: float,
    flow_threshold: float,
    flow_norm: str = "relative",
    flow_tolerance: float = 0.0,
    compact: bool = False,
) -> tuple[npt.NDArray[np.int32], tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]]:
    """:func:`similarity_components`, and the stencil pairs ``(p, q)`` (flat indices of two
    active pixels, ``intp[M]`` each) that failed the tests: the only pairs whose components can
    differ (every other pair is an edge of the graph).

    With ``compact``, the component ids are renumbered ``0..K-1`` in their order (-1 kept for
    inactive pixels), from a graph of the active pixels alone (most ids of the full graph belong
    to inactive pixels; without them the per-component arrays of :func:`merge_components` are
    short, and its tests see the same components with the same means): the components are
    numbered by their smallest member in both graphs, and the active pixels keep their order, so
    the ids of one are the ids of the other in the same order."""
    h, w = active.shape
    n = h * w
    itype = np.int32 if n < 2**31 else np.int64
    fx = np.ascontiguousarray(flow[..., 0])
    fy = np.ascontiguousarray(flow[..., 1])
    mag = np.sqrt(fx * fx + fy * fy)  # = np.linalg.norm(flow, axis=2), without the slow reduction
    diag = math.hypot(h, w)
    # Only pairs of active pixels can be similar: their flat indices (p, q) are gathered (in the
    # order of ``index[sp][ok]`` on the whole grid) and tested with the same per-pair arithmetic.
    pixels = _ActivePixels(active)
    flat_x, flat_y, flat_mag = fx.reshape(-1), fy.reshape(-1), mag.reshape(-1)
    flat_depth = None if depth is None else depth.reshape(-1)
    rows: list[npt.NDArray[np.integer]] = []
    cols: list[npt.NDArray[np.integer]] = []
    rejected_p: list[npt.NDArray[np.intp]] = []
    rejected_q: list[npt.NDArray[np.intp]] = []
    for dy, dx in stencil(radius):
        if abs(dy) >= h or abs(dx) >= w:
            continue
        p, q = pixels.pairs(dy, dx)
        bound: npt.NDArray[np.floating[Any]] | np.floating[Any]
        if flow_norm == "relative":
            bound = flow_threshold * 0.5 * (flat_mag.take(p) + flat_mag.take(q)) + flow_tolerance
        else:
            bound = flat_x.dtype.type(flow_threshold * diag + flow_tolerance)
        ok = _below_hypot(flat_x.take(p) - flat_x.take(q), flat_y.take(p) - flat_y.take(q), bound)
        if flat_depth is not None:
            dp, dq = flat_depth.take(p), flat_depth.take(q)
            with np.errstate(invalid="ignore"):
                rel = np.abs(dp - dq) / np.minimum(dp, dq)
                ok &= ~(rel >= depth_threshold)  # NaN (unknown depth) passes
        rows.append(p[ok].astype(itype))
        cols.append(q[ok].astype(itype))
        failed = ~ok
        rejected_p.append(p[failed])
        rejected_q.append(q[failed])
    r: npt.NDArray[np.integer] = np.concatenate(rows) if rows else np.zeros(0, itype)
    c: npt.NDArray[np.integer] = np.concatenate(cols) if cols else np.zeros(0, itype)
    out: npt.NDArray[np.int32]
    if compact:
        # the graph of the active pixels alone (node = rank among them), far smaller
        size = pixels.index.size
        out = np.full((h, w), -1, np.int32)
        if size:
            rank = np.zeros(n, itype)
            rank[pixels.index] = np.arange(size, dtype=itype)
            graph = coo_matrix(
                (np.ones(r.size, np.int8), (rank.take(r), rank.take(c))), shape=(size, size)
            ).tocsr()
            _, comp = connected_components(graph, directed=False)
            out.reshape(-1)[pixels.index] = comp
    else:
        graph = coo_matrix((np.ones(r.size, np.int8), (r, c)), shape=(n, n)).tocsr()
        _, comp = connected_components(graph, directed=False)
        out = comp.astype(np.int32).reshape(h, w)
        out[~active] = -1
    empty = np.zeros(0, np.intp)
    rejected = (
        np.concatenate(rejected_p) if rejected_p else empty,
        np.concatenate(rejected_q) if rejected_q else empty,
    )
    return out, rejected


class _ActivePixels:
    """The active pixels of a mask, to list the pairs ``p``, ``q = p + (dy, dx)`` of two active
    pixels inside the image (flat indices, ``p`` ascending: the order of ``mask[sp] &
    mask[sq]`` on the whole grid)."""

    def __init__(self, active: npt.NDArray[np.bool_]) -> None:
        self.shape = active.shape
        self.flat = active.reshape(-1)
        self.index = np.flatnonzero(self.flat)
        self.y, self.x = np.divmod(self.index, active.shape[1])

    def pairs(self, dy: int, dx: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        h, w = self.shape
        # = (y + dy >= 0) & (y + dy < h) & (x + dx >= 0) & (x + dx < w), without the additions
        # (and the bounds that always hold: y, x >= 0 and y, x < h, w)
        inside = self.y < h - dy if dy > 0 else self.y >= -dy
        if dx > 0:
            inside &= self.x < w - dx
        elif dx < 0:
            inside &= self.x >= -dx
        p = self.index[inside]
        q = p + (dy * w + dx)
        both = self.flat.take(q)
        return p[both], q[both]


_HYPOT_MARGIN = 1e-5
"""Relative margin on the squared bound of :func:`_below_hypot`: far above the float32 rounding
of ``dx dx + dy dy`` and of the bound's square (a few ``1e-7``) and of ``np.hypot`` itself."""


def _below_hypot(
    dx: npt.NDArray[np.floating[Any]],
    dy: npt.NDArray[np.floating[Any]],
    bound: npt.NDArray[np.floating[Any]] | np.floating[Any],
) -> npt.NDArray[np.bool_]:
    """``np.hypot(dx, dy) < bound`` (float32), exactly, calling the slow ``np.hypot`` only near
    the bound.

    ``s = dx dx + dy dy`` (float32) is within a relative ``2.4e-7`` of ``hypot(dx, dy)^2``. Where
    ``s < bound^2 (1 - m)`` the hypot is below ``bound (1 - m / 2)`` up to rounding, where
    ``s > bound^2 (1 + m)`` above ``bound (1 + m / 2)`` (``m`` = :data:`_HYPOT_MARGIN`); those
    decide the comparison. The others (within the margin, NaN, or a bound outside
    ``(1e-15, 1e15)``, whose square may have under- or overflowed) use ``np.hypot``.
    """
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        squares = np.multiply(dx, dx)
        squares += np.multiply(dy, dy)
        limit = np.multiply(bound, bound)
        below: npt.NDArray[np.bool_] = squares < limit * np.float32(1.0 - _HYPOT_MARGIN)
        sure = squares > limit * np.float32(1.0 + _HYPOT_MARGIN)
        sure |= below
        sure &= (limit > np.float32(1e-30)) & (limit < np.float32(1e30))
    redo = np.flatnonzero(~sure)
    if redo.size:
        full = np.broadcast_to(bound, squares.shape)
        below.reshape(-1)[redo] = np.hypot(
            dx.reshape(-1).take(redo), dy.reshape(-1).take(redo)
        ) < full.reshape(-1).take(redo)
    return below


def merge_components(
    comp: npt.NDArray[np.int32],
    flow: npt.NDArray[np.float32],
    depth: npt.NDArray[np.float32] | None,
    *,
    radius: int,
    depth_threshold: float,
    flow_threshold: float,
    flow_tolerance: float,
    pairs: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]] | None = None,
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
        pairs: the stencil pairs ``(p, q)`` (flat indices of active pixels) to look for
            neighbouring components in, when known to hold every pair of two different
            components (those that failed the tests of :func:`similarity_components`, which made
            ``comp``); None = every pair of the stencil.

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
    mean_d = None
    if depth is not None:
        known = active & np.isfinite(depth)
        dcount = np.bincount(comp[known], minlength=k)
        dsum = np.bincount(comp[known], depth[known], k)
        mean_d = np.where(dcount > 0, dsum / np.maximum(dcount, 1), np.nan)
    h, w = comp.shape
    flat = comp.reshape(-1)
    pa: list[npt.NDArray[np.int32]] = []
    pb: list[npt.NDArray[np.int32]] = []
    every: Iterable[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]] = (
        [] if pairs is None else [pairs]
    )
    if pairs is None:
        pixels = _ActivePixels(active)
        every = (pixels.pairs(dy, dx) for dy, dx in stencil(radius) if abs(dy) < h and abs(dx) < w)
    for p, q in every:  # both >= 0; only the set of component pairs matters below
        a, b = flat.take(p), flat.take(q)
        differ = a != b
        pa.append(a[differ])
        pb.append(b[differ])
    a = np.concatenate(pa)
    b = np.concatenate(pb)
    if a.size == 0:
        return comp
    keys = np.unique(np.minimum(a, b).astype(np.int64) * k + np.maximum(a, b))
    first, second = keys // k, keys % k
    diff = np.hypot(mean_x[first] - mean_x[second], mean_y[first] - mean_y[second])
    mag_first = np.hypot(mean_x[first], mean_y[first])  # |mean F| only where needed
    mag_second = np.hypot(mean_x[second], mean_y[second])
    ok = diff < flow_threshold * 0.5 * (mag_first + mag_second) + flow_tolerance
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
            ``accept_threshold``, ``min_area``, ``fill_holes``.
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
    flow0 = np.array(flow, dtype=np.float32, order="C")  # a C-contiguous copy
    # = flow0[~finite] = 0: a pixel's two float32 read as one uint64, times 0 or 1 (+0.0 bits)
    pixels = flow0.view(np.uint64).reshape(h, w)
    np.multiply(pixels, finite, out=pixels)
    sh, sw = max(1, round(h * work_scale)), max(1, round(w * work_scale))
    scale = sw / w
    small_depth: npt.NDArray[np.float32] | None
    if (sh, sw) != (h, w):
        small_flow = np.asarray(
            cv2.resize(flow0, (sw, sh), interpolation=cv2.INTER_AREA), dtype=np.float32
        )
        small_motion = np.asarray(
            cv2.resize(
                motion.astype(np.float32, copy=False), (sw, sh), interpolation=cv2.INTER_AREA
            ),
            dtype=np.float32,
        )
        small_valid = (
            cv2.resize(finite.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST) > 0
        )
        small_depth = None
        if depth is not None:
            small_depth = np.asarray(
                cv2.resize(
                    depth.astype(np.float32, copy=False), (sw, sh), interpolation=cv2.INTER_NEAREST
                ),
                dtype=np.float32,
            )
    else:
        small_flow, small_motion, small_valid, small_depth = flow0, motion, finite, depth
    radius = max(1, round(cfg.radius * scale))
    step = reference_step(sh, sw) if cfg.scale_thresholds else 1.0
    depth_threshold = cfg.depth_threshold * step
    comp, rejected = _similarity_graph(
        small_flow,
        small_depth,
        small_valid & (small_motion >= cfg.support_threshold),
        radius=radius,
        depth_threshold=depth_threshold,
        flow_threshold=cfg.flow_threshold,
        flow_norm=cfg.flow_norm,
        flow_tolerance=cfg.flow_tolerance,
        compact=True,  # ids 0..K-1 of the active pixels' components
    )
    comp = merge_components(
        comp,
        small_flow,
        small_depth,
        radius=radius,
        depth_threshold=depth_threshold,
        flow_threshold=cfg.flow_threshold,
        flow_tolerance=cfg.flow_tolerance,
        pairs=rejected,  # the other pairs join pixels of one component
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
    keep = ids_sorted[starts][medians > max(cfg.seed_threshold, cfg.accept_threshold)]
    lut = np.zeros(int(comp.max()) + 2, np.int32)
    lut[keep + 1] = np.arange(1, keep.size + 1, dtype=np.int32)
    labels_small = np.take(lut, comp + 1)  # = lut[comp + 1] (faster)
    min_area = scaled_min_area(cfg.min_area, h, w)
    if (sh, sw) == (h, w):
        return clean_instances(labels_small, min_area=min_area, fill_holes=cfg.fill_holes)
    repeats = _nearest_repeats((sh, sw), (h, w))
    if repeats is None:
        labels = np.asarray(
            cv2.resize(labels_small, (w, h), interpolation=cv2.INTER_NEAREST), dtype=np.int32
        )
        return clean_instances(labels, min_area=min_area, fill_holes=cfg.fill_holes)
    # The nearest upsampling repeats every small row and column as one run of pixels, so it
    # maps each instance's holes (background components, 4-connected, not touching the
    # bounding box's border) onto the upsampled instance's holes and back: cleaning commutes
    # with it when the areas count each small pixel with the size of its block.
    cleaned = _clean(labels_small, min_area=min_area, fill_holes=cfg.fill_holes, weights=repeats)
    return np.asarray(cv2.resize(cleaned, (w, h), interpolation=cv2.INTER_NEAREST), dtype=np.int32)


def _nearest_repeats(
    small: tuple[int, int], shape: tuple[int, int]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None:
    """How many rows and columns of ``cv2.resize(..., shape, INTER_NEAREST)`` each row and
    column of a ``small`` image becomes, or None unless each becomes one non-empty run (nearest
    resizing is separable: the maps are those of a single column and a single row)."""
    sh, sw = small
    h, w = shape
    ys = cv2.resize(np.arange(sh, dtype=np.int32)[:, None], (1, h), interpolation=cv2.INTER_NEAREST)
    xs = cv2.resize(np.arange(sw, dtype=np.int32)[None, :], (w, 1), interpolation=cv2.INTER_NEAREST)
    out = []
    for index, size in ((np.asarray(ys).reshape(-1), sh), (np.asarray(xs).reshape(-1), sw)):
        if index[0] != 0 or index[-1] != size - 1 or (np.diff(index) < 0).any():
            return None
        counts = np.bincount(index, minlength=size)
        if (counts == 0).any():
            return None
        out.append(counts.astype(np.int64))
    return out[0], out[1]


REFERENCE_AREA = 640 * 1280
"""Frame area (pixels) at which ``min_area`` is given: the paper's processing size."""


def reference_step(height: int, width: int) -> float:
    """Length of one pixel step of a ``height × width`` grid in pixels of a 640×1280 frame,
    ``sqrt(640·1280 / (height·width))`` (the factor on τ_d of ``scale_thresholds``)."""
    return math.sqrt(REFERENCE_AREA / max(height * width, 1))


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
    return _clean(labels, min_area=min_area, fill_holes=fill_holes)


_FOUR = ndimage.generate_binary_structure(2, 1)


def _holes(background: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_] | None:
    """The pixels that ``ndimage.binary_fill_holes(~background)`` adds: the 4-connected
    components of ``background`` that do not touch the border (None if there are none)."""
    comps, count = ndimage.label(background, _FOUR)
    if count == 0:
        return None
    border = np.zeros(count + 1, np.bool_)
    for edge in (comps[0], comps[-1], comps[:, 0], comps[:, -1]):
        border[edge] = True
    if border[1:].all():
        return None
    border[0] = True
    holes: npt.NDArray[np.bool_] = ~border[comps]
    return holes


def _clean(
    labels: npt.NDArray[np.integer],
    *,
    min_area: int,
    fill_holes: bool,
    weights: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None,
) -> npt.NDArray[np.int32]:
    """:func:`clean_instances`, where each pixel ``(y, x)`` counts ``weights[0][y] *
    weights[1][x]`` pixels of area (None: 1)."""
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
            if sl[0].stop - sl[0].start < 3 or sl[1].stop - sl[1].start < 3:
                continue  # every pixel on the bounding box's border: no holes
            window = out[sl]
            holes = _holes(window != i)
            if holes is not None:
                window[holes & (window == 0)] = i
    if weights is None:
        areas = np.bincount(out.ravel())
    elif (weights[0] == weights[0][0]).all() and (weights[1] == weights[1][0]).all():
        # every pixel counts the same (an integer factor of the frame's size): the same sums
        areas = np.bincount(out.ravel()) * (int(weights[0][0]) * int(weights[1][0]))
    else:
        # exact: integer sums far below 2**53
        areas = np.bincount(out.ravel(), np.outer(weights[0], weights[1]).ravel()).astype(np.int64)
    areas[0] = 0
    order = np.argsort(-areas, kind="stable")
    order = order[areas[order] >= max(min_area, 1)]
    lut = np.zeros(areas.size, np.int32)
    lut[order] = np.arange(1, order.size + 1, dtype=np.int32)
    result: npt.NDArray[np.int32] = np.take(lut, out)  # = lut[out] (faster)
    return result
