"""Instance propagation and tracking over a 3-frame window (method §2.4).

Stated: a sliding window of 3 frames, Hungarian matching on IoU, acceptance threshold
τ_m = 0.4. The rest is the GUESS of ``method.md`` §2.4, streaming with one frame of delay:

1. The final track map of frame ``t − 1`` is warped into frame ``t`` with the flow ``t → t − 1``
   (backward warping, nearest neighbour: :func:`vcups_core.cues.flow.warp`).
2. **Split before matching** (crossing objects are never merged): a detection that contains most
   of the warped masks of two or more tracks (each at least half inside it) is split between
   them, every pixel going to the nearest of those warped masks.
3. IoU between warped tracks and detections of ``t``; Hungarian assignment maximising IoU
   (:func:`scipy.optimize.linear_sum_assignment`); a pair is accepted only with IoU ≥ τ_m, and
   an accepted detection inherits the track id.
4. **One-frame gaps** (window 3, ``fill_gaps``): a track of ``t − 1`` left without a detection at
   ``t`` whose mask, warped two steps (``t − 1 → t → t + 1``), matches a detection of ``t + 1``
   with IoU ≥ τ_m is inserted into frame ``t`` as its one-step warped mask, on pixels no other
   instance holds. This is why frame ``t`` is final only once frame ``t + 1``'s detections exist.
5. **Re-linking lost tracks** (``max_lost`` > 0; ours, GUESS): a track that found no detection
   is remembered for up to ``max_lost`` frames as its last mask, warped on with the flow every
   frame. Detections still unmatched after step 3 are matched to those remembered masks by the
   same rule (IoU ≥ τ_m, then the containment pass) and continue the old id; the frames in
   between stay empty. A motion cue that loses an object for a few frames (the object stops
   moving relative to the camera, or the flow is noisy) then breaks its track into one id with
   holes instead of several ids, which is what AQ and best-track J count. ``max_lost`` 0 is the
   paper's rule.
5b. **Fragments** (``fragment_inside`` > 0; ours): a detection still without a track whose area
   lies at least ``fragment_inside`` inside one track's warped mask (first the active tracks,
   then the remembered lost ones) is a fragment of that object and takes its id, so one track
   can hold several detections. With ``fragment_flow`` > 0 only if it moves like the track
   (mean flows), and with ``fragment_depth`` > 0 only at the track's depth (medians), so that
   an object coming out from behind another is not swallowed by the occluder's backward-warped
   mask (a car peeking out may move within a pixel of its occluder, but lies behind it). On
   real video (DAVIS) region growing often breaks an object into pieces for a frame or two;
   without this the second piece starts a track that step 2 then keeps splitting off the whole
   object again in every later frame.
6. Unmatched detections start new track ids, unique within the clip (1, 2, ...).
7. **Short tracks** (``min_track_frames`` > 1; ours): frames are held back
   ``min_track_frames − 1`` frames and emitted without the tracks seen in fewer than
   ``min_track_frames`` frames so far (a track that reaches the count later keeps only its later
   frames).

Step 2's ``split_min_share`` (ours): only tracks whose warped mask is at least that fraction of
the detection take part in a split; a sliver track (a one-frame fragment) inside a large
detection would otherwise claim its nearest pixels every frame and live on as a splinter.

With window 2 (or ``fill_gaps: false``) step 4 is skipped.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from vcups_core.cues.flow import NearestWarp
from vcups_core.pseudo.boxes import union_box

MAX_TRACK_ID = int(np.iinfo(np.uint16).max)
"""Track ids are stored in 16-bit PNGs."""


def hungarian_iou(iou: npt.NDArray[np.float64], threshold: float) -> list[tuple[int, int]]:
    """One-to-one pairs ``(row, col)`` of maximal total IoU, each with IoU ≥ ``threshold``.

    Args:
        iou: ``float64[N, M]``.
        threshold: τ_m; pairs below it are never returned (and never block other pairs: they are
            removed before the assignment).
    """
    if iou.size == 0:
        return []
    gated = np.where(iou >= threshold, iou, 0.0)
    rows, cols = linear_sum_assignment(gated, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= threshold]


def joint_counts(
    a: npt.NDArray[np.integer], b: npt.NDArray[np.integer], n: int, m: int
) -> npt.NDArray[np.int64]:
    """Pixel counts of every label pair of two label maps.

    Args:
        a: ``int[H, W]`` labels ``0..n``.
        b: ``int[H, W]`` labels ``0..m``.

    Returns:
        ``int64[n + 1, m + 1]``: entry ``[i, j]`` counts the pixels with ``a == i`` and ``b == j``.
    """
    key = a.astype(np.int64)  # a * (m + 1) + b, in place (frame-sized temporaries are slow)
    key *= m + 1
    key += b
    return np.bincount(key.ravel(), minlength=(n + 1) * (m + 1)).reshape(n + 1, m + 1)


def _mapped_joint_counts(
    a: npt.NDArray[np.integer],
    labels: npt.NDArray[np.integer],
    lut: npt.NDArray[np.int64],
    n: int,
    m: int,
) -> npt.NDArray[np.int64]:
    """``joint_counts(a, lut[labels], n, m)`` for a ``lut`` with ``lut[0] == 0``, counted on the
    pixels with a label (track masks cover a small part of a frame) and the histogram of ``a``
    (column 0: the rest of each row). The same integers.

    Args:
        a: ``int[H, W]`` labels ``0..n``.
        labels: ``int[H, W]`` (``>= 0``), mapped by ``lut`` to ``0..m``.
    """
    flat, flat_a = labels.reshape(-1), a.reshape(-1)
    at = np.flatnonzero(flat != 0)  # (np.flatnonzero of a bool array is far faster)
    key = flat_a.take(at).astype(np.int64)
    key *= m + 1
    key += lut.take(flat.take(at))
    joint = np.bincount(key, minlength=(n + 1) * (m + 1)).reshape(n + 1, m + 1)
    # the histogram of a from its labelled pixels (few, like the tracks')
    labelled = np.flatnonzero(flat_a != 0)
    rows = np.bincount(flat_a.take(labelled), minlength=n + 1)
    rows[0] = flat_a.size - labelled.size
    if rows.size != n + 1:
        raise ValueError(f"a: labels 0..{n} expected, got up to {rows.size - 1}")
    joint[:, 0] += rows - joint.sum(axis=1)
    return joint


def pair_overlaps(
    current: npt.NDArray[np.integer], previous: npt.NDArray[np.integer], n: int, m: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """IoU and containment of every pair of masks of two label maps.

    Args:
        current: ``int[H, W]`` labels ``0..n`` (mask ``i`` is label ``i + 1``).
        previous: ``int[H, W]`` labels ``0..m``.

    Returns:
        ``(iou, containment)``, each ``float64[n, m]``; containment is ``|a ∩ b| / min(|a|, |b|)``,
        how much of the smaller mask lies inside the other.
    """
    return _overlaps(joint_counts(current, previous, n, m))


def _overlaps(
    joint: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """:func:`pair_overlaps` from the :func:`joint_counts` ``int64[n + 1, m + 1]`` of the two
    label maps."""
    inter = joint[1:, 1:].astype(np.float64)
    area_a = joint[1:, :].sum(axis=1)[:, None].astype(np.float64)
    area_b = joint[:, 1:].sum(axis=0)[None, :].astype(np.float64)
    union = area_a + area_b - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    smaller = np.minimum(area_a, area_b)
    contain = np.divide(inter, smaller, out=np.zeros_like(inter), where=smaller > 0)
    return iou, contain


def match_tracks(
    iou: npt.NDArray[np.float64],
    containment: npt.NDArray[np.float64],
    threshold: float,
    min_containment: float,
) -> list[tuple[int, int]]:
    """Hungarian matching at IoU ≥ ``threshold`` (τ_m), then a second Hungarian pass over the rows
    and columns left unmatched that accepts pairs whose smaller mask lies at least
    ``min_containment`` inside the other (``0`` disables it).

    The second pass is ours: an object entering the image or coming out of an occlusion grows
    faster from one frame to the next than an IoU of τ_m allows, though it plainly is the same
    object. Pairs that pass τ_m are always decided first, so the paper's rule is unchanged
    wherever it applies.
    """
    pairs = hungarian_iou(iou, threshold)
    if min_containment <= 0 or iou.size == 0:
        return pairs
    rows = sorted(set(range(iou.shape[0])) - {r for r, _ in pairs})
    cols = sorted(set(range(iou.shape[1])) - {c for _, c in pairs})
    if not rows or not cols:
        return pairs
    sub_iou = iou[np.ix_(rows, cols)]
    ok = (containment[np.ix_(rows, cols)] >= min_containment) & (sub_iou > 0)
    gated = np.where(ok, sub_iou, 0.0)
    r2, c2 = linear_sum_assignment(gated, maximize=True)
    pairs += [(rows[r], cols[c]) for r, c in zip(r2, c2, strict=True) if ok[r, c]]
    return pairs


def split_merged(
    detections: npt.NDArray[np.int32],
    warped: npt.NDArray[np.integer],
    track_ids: list[int],
    min_share: float = 0.0,
) -> npt.NDArray[np.int32]:
    """Split detections that swallowed two or more tracks' warped masks (step 2).

    Args:
        detections: ``int32[H, W]`` ids ``1..N`` (0 = none).
        warped: ``int[H, W]`` warped track map of the previous frame (track ids, 0 = none).
        track_ids: the ids present in ``warped``.
        min_share: a track takes part in a split only if its warped mask is at least this
            fraction of the detection's area (0 = every track at least half inside). A sliver
            track inside a large detection is a fragment of that object, not a second object;
            without the floor it claims its nearest pixels every frame and lives on as a
            splinter of the object.

    Returns:
        ``int32[H, W]`` detections ``1..N'``: every split part gets a new id after ``N`` (a
        fresh array).
    """
    out, _ = _split_merged(detections, warped, track_ids, min_share)
    return out.copy() if out is detections else out


def _split_merged(
    detections: npt.NDArray[np.int32],
    warped: npt.NDArray[np.integer],
    track_ids: list[int],
    min_share: float = 0.0,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64] | None]:
    """:func:`split_merged`, returning ``detections`` itself (not a copy) when nothing is split,
    and then also the :func:`joint_counts` ``int64[N + 1, M + 1]`` of ``detections`` and the
    tracks numbered ``1..M`` in the order of ``track_ids`` (None otherwise: with a split, or
    without detections or tracks)."""
    n = int(detections.max())
    if n == 0 or not track_ids:
        return detections, None
    out = detections
    tid = np.asarray(track_ids)
    lut = np.zeros(int(warped.max()) + 1, np.int64)
    lut[tid] = np.arange(1, tid.size + 1)
    m = tid.size
    joint = _mapped_joint_counts(detections, warped, lut, n, m)  # of detections, lut[warped]
    track_area = joint.sum(axis=0)
    det_area = joint.sum(axis=1)
    next_id = n + 1
    objects: list[tuple[slice, slice] | None] | None = None  # bounding boxes, found once
    for d in range(1, n + 1):
        inside = (
            np.flatnonzero(
                (joint[d, 1:] >= 0.5 * track_area[1:])
                & (track_area[1:] > 0)
                & (track_area[1:] >= min_share * det_area[d])
            )
            + 1
        )
        if inside.size < 2:
            continue
        if objects is None:
            objects = ndimage.find_objects(detections, max_label=n)
        sl = objects[d - 1]
        if sl is None:
            continue
        if out is detections:
            out = detections.copy()
        tracks = lut[warped[sl]]
        sub_tracks = np.where(np.isin(tracks, inside), tracks, 0)
        # every pixel of the detection goes to the nearest warped mask among those inside it
        _, (iy, ix) = ndimage.distance_transform_edt(sub_tracks == 0, return_indices=True)
        nearest = sub_tracks[iy, ix]
        sub_mask = detections[sl] == d
        for k, track in enumerate(inside):
            part = sub_mask & (nearest == track)
            if k == 0:
                continue  # the first part keeps the detection's id
            out[sl][part] = next_id
            next_id += 1
    return out, joint if out is detections else None


def absorb_fragments(
    detections: npt.NDArray[np.int32],
    tracks: npt.NDArray[np.integer],
    free: list[int],
    min_inside: float,
    flow: npt.NDArray[np.float32] | None = None,
    max_flow_diff: float = 0.0,
    depth: npt.NDArray[np.float32] | None = None,
    max_depth_diff: float = 0.0,
) -> dict[int, int]:
    """Detections that are fragments of one track (step 5b): each detection of ``free`` whose
    area lies at least ``min_inside`` inside one track's (warped) mask joins that track.

    Args:
        detections: ``int32[H, W]`` ids ``1..N`` (0 = none).
        tracks: ``int[H, W]`` the warped masks (track ids, 0 = none).
        free: the detection ids still without a track.
        min_inside: fraction of the detection's area inside the track's mask (``> 0.5``: at
            most one track qualifies; below, the track holding most of the detection).
        flow: ``float32[H, W, 2]`` flow of this frame (to the previous one); with
            ``max_flow_diff > 0`` a detection joins a track only if its mean flow differs from
            the mean flow over the track's mask by at most ``max_flow_diff`` times the larger of
            the two norms, plus 1 px. An object coming out from behind another lies inside the
            occluder's backward-warped mask (its pixels sample where the occluder was) but
            moves differently; a fragment of the object moves with it.
        depth: ``float32[H, W]`` depth of this frame (NaN = unknown); with
            ``max_depth_diff > 0`` a detection joins a track only if its median depth differs from
            the median depth of the track's other detected pixels (its warped mask where other
            detections lie) by at most ``max_depth_diff`` times the smaller of the two. A car
            peeking out from behind another also lies inside the occluder's warped mask and may
            move within a pixel of it, but lies behind it. Unknown depth does not veto: the test
            is skipped when fewer than half of the detection's pixels, or fewer than
            :data:`MIN_DEPTH_PIXELS` of the track's, have a finite depth.

    Returns:
        ``{detection id: track id}``.
    """
    if not free or min_inside <= 0:
        return {}
    track_ids = np.flatnonzero(np.bincount(tracks.ravel())[1:]) + 1
    if track_ids.size == 0:
        return {}
    n = int(detections.max())
    lut_t = np.zeros(int(track_ids[-1]) + 1, np.int64)
    lut_t[track_ids] = np.arange(1, track_ids.size + 1)
    lut_d = np.zeros(n + 1, np.int64)
    lut_d[free] = np.arange(1, len(free) + 1)
    m = track_ids.size
    joint = joint_counts(lut_d[detections], lut_t[tracks], len(free), m)[1:]
    area = joint.sum(axis=1)
    best = joint[:, 1:].argmax(axis=1)
    inside = joint[np.arange(len(free)), best + 1]
    ok = (area > 0) & (inside >= min_inside * np.maximum(area, 1))
    if flow is not None and max_flow_diff > 0 and ok.any():
        flat_d, flat_t = lut_d[detections].ravel(), lut_t[tracks].ravel()
        fx, fy = flow[..., 0].ravel(), flow[..., 1].ravel()
        finite = np.isfinite(fx) & np.isfinite(fy)
        fx, fy = np.where(finite, fx, 0.0), np.where(finite, fy, 0.0)

        def means(index: npt.NDArray[np.int64], k: int) -> npt.NDArray[np.float64]:
            count = np.bincount(index, finite, minlength=k + 1)[1:]
            sums = [np.bincount(index, c, minlength=k + 1)[1:] for c in (fx, fy)]
            return np.stack(sums, -1) / np.maximum(count, 1)[:, None]

        det_flow = means(flat_d, len(free))
        track_flow = means(flat_t, m)[best]
        diff = np.linalg.norm(det_flow - track_flow, axis=1)
        scale = np.maximum(np.linalg.norm(det_flow, axis=1), np.linalg.norm(track_flow, axis=1))
        ok &= diff <= max_flow_diff * scale + 1.0
    out = {free[i]: int(track_ids[best[i]]) for i in np.flatnonzero(ok)}
    if depth is not None and max_depth_diff > 0 and out:
        # each pair's test reads only the window around the detection and the track
        det_boxes = ndimage.find_objects(detections)
        track_boxes = ndimage.find_objects(tracks)
        kept = {}
        for d, t in out.items():
            win = union_box([det_boxes[d - 1], track_boxes[t - 1]])
            if _same_depth(detections[win], tracks[win], depth[win], d, t, max_depth_diff):
                kept[d] = t
        out = kept
    return out


MIN_DEPTH_PIXELS = 10
"""Finite depth pixels a track needs before :func:`absorb_fragments`' depth test applies."""


def _same_depth(
    detections: npt.NDArray[np.int32],
    tracks: npt.NDArray[np.integer],
    depth: npt.NDArray[np.float32],
    detection: int,
    track: int,
    max_diff: float,
) -> bool:
    """The depth test of :func:`absorb_fragments` for one (detection, track) pair."""
    fragment = detections == detection
    rest = (tracks == track) & (detections > 0) & ~fragment
    a, b = depth[fragment], depth[rest]
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if 2 * a.size < int(fragment.sum()) or b.size < MIN_DEPTH_PIXELS:
        return True  # unknown depth does not veto
    da, db = float(np.median(a)), float(np.median(b))
    return abs(da - db) <= max_diff * min(da, db)


class InstanceTracker:
    """Links per-frame detections into tracks with one frame of delay (see the module docstring).

    Args:
        iou_threshold: τ_m.
        fill_gaps: insert one-frame gaps (window 3).
        min_containment: the second matching pass of :func:`match_tracks` (0 = off).
        max_lost: frames a track without detections is remembered for re-linking (step 5;
            0 = off).
        fragment_inside: a detection left without a track whose area lies at least this much
            inside one warped (or remembered lost) track joins that track (step 5b; 0 = off).
        fragment_flow: ``max_flow_diff`` of :func:`absorb_fragments` (0 = no flow test).
        fragment_depth: ``max_depth_diff`` of :func:`absorb_fragments` (0 = no depth test; it
            needs the frames' depth in :meth:`push`).
        split_min_share: ``min_share`` of :func:`split_merged` (step 2; 0 = the plain rule).
        min_track_frames: tracks seen in fewer frames are removed from the output (step 7;
            1 = off); output is delayed by ``min_track_frames - 1`` frames.
    """

    def __init__(
        self,
        iou_threshold: float = 0.4,
        *,
        fill_gaps: bool = True,
        min_containment: float = 0.0,
        max_lost: int = 0,
        fragment_inside: float = 0.0,
        split_min_share: float = 0.0,
        min_track_frames: int = 1,
        fragment_flow: float = 0.0,
        fragment_depth: float = 0.0,
    ) -> None:
        if max_lost < 0:
            raise ValueError(f"max_lost must be >= 0, got {max_lost}")
        if not 0.0 <= fragment_inside <= 1.0:
            raise ValueError(f"fragment_inside must be in [0, 1], got {fragment_inside}")
        if min_track_frames < 1:
            raise ValueError(f"min_track_frames must be >= 1, got {min_track_frames}")
        if fragment_depth < 0:
            raise ValueError(f"fragment_depth must be >= 0, got {fragment_depth}")
        self.fragment_inside = fragment_inside
        self.fragment_flow = fragment_flow
        self.fragment_depth = fragment_depth
        self.split_min_share = split_min_share
        self.min_track_frames = min_track_frames
        # step 7: final maps not yet emitted, and the frames each track id was seen in so far
        self._held: list[tuple[int, npt.NDArray[np.uint16]]] = []
        self._seen = np.zeros(1, np.int64)
        self.iou_threshold = iou_threshold
        self.min_containment = min_containment
        self.fill_gaps = fill_gaps
        self.max_lost = max_lost
        self._next_id = 1
        self._last: npt.NDArray[np.uint16] | None = None  # final map of t - 1
        # lost tracks (step 5): their last masks, warped into frame t - 1, and frames since seen
        self._lost: npt.NDArray[np.uint16] | None = None
        self._lost_age: dict[int, int] = {}
        # the frame waiting for its lookahead: index, detections, flow to t - 1, depth
        self._pending: (
            tuple[
                int,
                npt.NDArray[np.int32],
                npt.NDArray[np.float32] | None,
                npt.NDArray[np.float32] | None,
            ]
            | None
        ) = None
        self._warps: list[NearestWarp] = []  # the last two flows' (:meth:`_warp`)

    def push(
        self,
        index: int,
        detections: npt.NDArray[np.int32],
        flow_prev: npt.NDArray[np.float32] | None,
        depth: npt.NDArray[np.float32] | None = None,
    ) -> list[tuple[int, npt.NDArray[np.uint16]]]:
        """Add frame ``index``'s detections; return the frames now final.

        Args:
            index: the frame's position in the clip.
            detections: ``int32[H, W]`` instance ids ``1..N`` (0 = none).
            flow_prev: ``float32[H, W, 2]`` flow from this frame to the previous one (None for
                the first frame).
            depth: ``float32[H, W]`` depth of this frame (NaN = unknown), for the depth test of
                ``fragment_depth``; None = no depth (the test is skipped).

        Returns:
            ``[(index, uint16[H, W] track ids)]`` of the frames that became final (the previous
            frame, once this one is known).
        """
        out: list[tuple[int, npt.NDArray[np.uint16]]] = []
        if self._pending is not None:
            out.append(self._finalize(lookahead=(detections, flow_prev)))
        self._pending = (index, detections, flow_prev, depth)
        return self._hold(out, flush=False)

    def finish(self) -> list[tuple[int, npt.NDArray[np.uint16]]]:
        """Finalize the last frame (and the frames held back for ``min_track_frames``)."""
        out = [] if self._pending is None else [self._finalize(lookahead=None)]
        return self._hold(out, flush=True)

    def _hold(
        self, done: list[tuple[int, npt.NDArray[np.uint16]]], *, flush: bool
    ) -> list[tuple[int, npt.NDArray[np.uint16]]]:
        """Step 7: hold final maps back ``min_track_frames - 1`` frames; emit them without the
        tracks seen in fewer than ``min_track_frames`` frames so far (counted up to the newest
        frame, so a track that reaches the count later keeps only its later frames)."""
        if self.min_track_frames <= 1:
            return done
        for _, labels in done:
            present = np.bincount(labels.ravel()) > 0
            present[0] = False
            if present.size > self._seen.size:
                self._seen = np.pad(self._seen, (0, present.size - self._seen.size))
            self._seen[: present.size] += present
        self._held.extend(done)
        out: list[tuple[int, npt.NDArray[np.uint16]]] = []
        while self._held and (flush or len(self._held) >= self.min_track_frames):
            index, labels = self._held.pop(0)
            keep = self._seen >= self.min_track_frames
            keep[0] = True
            out.append((index, np.where(keep[labels], labels, 0).astype(np.uint16)))
        return out

    def _warp(self, flow: npt.NDArray[np.float32]) -> NearestWarp:
        """The nearest-neighbour warp along ``flow``, reused: a frame's flow to the previous
        frame warps the gap-filling masks as the lookahead, then the track maps (step 1) and the
        lost masks when that frame is finalized."""
        for known in self._warps:
            if known.flow is flow:
                return known
        made = NearestWarp(flow)
        self._warps = [*self._warps[-1:], made]
        return made

    def _new_id(self) -> int:
        if self._next_id > MAX_TRACK_ID:
            raise ValueError(
                f"more than {MAX_TRACK_ID} tracks in one clip: track ids no longer fit the 16-bit "
                "instance PNGs; split the input into shorter clips"
            )
        self._next_id += 1
        return self._next_id - 1

    def _finalize(
        self,
        lookahead: tuple[npt.NDArray[np.int32], npt.NDArray[np.float32] | None] | None,
    ) -> tuple[int, npt.NDArray[np.uint16]]:
        assert self._pending is not None
        index, detections, flow_prev, depth = self._pending
        self._pending = None
        result = np.zeros(detections.shape, np.uint16)
        warped: npt.NDArray[np.uint16] | None = None
        matched_det: dict[int, int] = {}
        unmatched_tracks: list[int] = []
        joint: npt.NDArray[np.int64] | None = None  # of the final detections and the tracks
        if self._last is not None and flow_prev is not None:
            warped = self._warp(flow_prev)(self._last).astype(np.uint16, copy=False)
            # the ids present, ascending (a histogram of the labelled pixels: cheaper than
            # np.unique's sort, and than a histogram of every pixel)
            flat_w = warped.reshape(-1)
            labelled = flat_w.take(np.flatnonzero(flat_w != 0))
            track_ids = [int(t) for t in np.flatnonzero(np.bincount(labelled))]
            # without a split, its joint histogram is the one of the matching below
            detections, joint = _split_merged(detections, warped, track_ids, self.split_min_share)
            n = int(detections.max())
            if track_ids and n:
                tid = np.asarray(track_ids)
                if joint is None:
                    lut = np.zeros(int(warped.max()) + 1, np.int64)
                    lut[tid] = np.arange(1, tid.size + 1)
                    joint = _mapped_joint_counts(detections, warped, lut, n, tid.size)
                iou, contain = _overlaps(joint)
                for d, t in match_tracks(iou, contain, self.iou_threshold, self.min_containment):
                    matched_det[d + 1] = track_ids[t]
            unmatched_tracks = [t for t in track_ids if t not in matched_det.values()]
        if self.fragment_inside > 0 and warped is not None:
            # fragments of an active track before lost tracks may claim them
            self._absorb(detections, warped, matched_det, flow_prev, depth)
        lost_warped: npt.NDArray[np.uint16] | None = None
        if self._lost is not None and flow_prev is not None:
            lost_warped = self._warp(flow_prev)(self._lost).astype(np.uint16, copy=False)
            matched_det.update(self._relink(detections, lost_warped, matched_det))
            if self.fragment_inside > 0:
                self._absorb(detections, lost_warped, matched_det, flow_prev, depth)
        if self.fragment_inside > 0:
            taken = set(matched_det.values())
            unmatched_tracks = [t for t in unmatched_tracks if t not in taken]
        n = int(detections.max())
        lut_out = np.zeros(n + 1, np.uint16)
        for d in range(1, n + 1):
            lut_out[d] = matched_det.get(d, 0)
        # new ids in the order of the detections (largest first, as region growing numbers them)
        present = np.zeros(n + 1, bool)
        if joint is not None:  # the pixel count of each detection, already known
            present[: n + 1] = joint.sum(axis=1) > 0
        elif detections.size and detections.min() >= 0:  # a histogram: cheaper than np.unique
            present[: n + 1] = np.bincount(detections.ravel(), minlength=n + 1)[: n + 1] > 0
        else:
            present[np.unique(detections)] = True
        for d in range(1, n + 1):
            if present[d] and lut_out[d] == 0:
                lut_out[d] = self._new_id()
        result = np.take(lut_out, detections)  # = lut_out[detections] (faster)
        if (
            self.fill_gaps
            and warped is not None
            and lookahead is not None
            and lookahead[1] is not None
            and unmatched_tracks
        ):
            result = self._fill_gaps(result, warped, unmatched_tracks, *lookahead)  # type: ignore[arg-type]
        if self.max_lost > 0:
            self._remember_lost(result, warped, lost_warped)
        self._last = result
        return index, result

    def _absorb(
        self,
        detections: npt.NDArray[np.int32],
        tracks: npt.NDArray[np.uint16],
        matched_det: dict[int, int],
        flow: npt.NDArray[np.float32] | None,
        depth: npt.NDArray[np.float32] | None,
    ) -> None:
        """Step 5b: add the free detections that are fragments of a track in ``tracks``."""
        free = [d for d in range(1, int(detections.max()) + 1) if d not in matched_det]
        matched_det.update(
            absorb_fragments(
                detections,
                tracks,
                free,
                self.fragment_inside,
                flow,
                self.fragment_flow,
                depth,
                self.fragment_depth,
            )
        )

    def _relink(
        self,
        detections: npt.NDArray[np.int32],
        lost_warped: npt.NDArray[np.uint16],
        matched_det: dict[int, int],
    ) -> dict[int, int]:
        """Step 5: unmatched detections (ids) that continue a remembered lost track."""
        lost_ids = [t for t in self._lost_age if t <= int(lost_warped.max())]
        n = int(detections.max())
        free = [d for d in range(1, n + 1) if d not in matched_det]
        if not lost_ids or not free:
            return {}
        tid = np.asarray(lost_ids)
        lut_t = np.zeros(int(lost_warped.max()) + 1, np.int64)
        lut_t[tid] = np.arange(1, tid.size + 1)
        lut_d = np.zeros(n + 1, np.int64)
        lut_d[free] = np.arange(1, len(free) + 1)
        iou, contain = pair_overlaps(lut_d[detections], lut_t[lost_warped], len(free), tid.size)
        pairs = match_tracks(iou, contain, self.iou_threshold, self.min_containment)
        return {free[d]: lost_ids[t] for d, t in pairs}

    def _remember_lost(
        self,
        result: npt.NDArray[np.uint16],
        warped: npt.NDArray[np.uint16] | None,
        lost_warped: npt.NDArray[np.uint16] | None,
    ) -> None:
        """Age the remembered tracks, forget the re-found and the too old, add the newly lost."""
        present = set(np.flatnonzero(np.bincount(result.ravel())).tolist()) - {0}
        ages = {t: a + 1 for t, a in self._lost_age.items() if t not in present}
        ages = {t: a for t, a in ages.items() if a <= self.max_lost}
        lost = np.zeros(result.shape, np.uint16) if lost_warped is None else lost_warped.copy()
        lost[~np.isin(lost, list(ages))] = 0
        if warped is not None:
            newly = np.isin(warped, list(set(np.unique(warped).tolist()) - present - {0}))
            lost[newly] = warped[newly]  # the newest mask wins where remembered masks overlap
            for t in np.unique(warped[newly]).tolist():
                ages[int(t)] = 1
        kept = np.bincount(lost.ravel())
        self._lost_age = {t: a for t, a in ages.items() if t < kept.size and kept[t] > 0}
        self._lost = lost if self._lost_age else None

    def _fill_gaps(
        self,
        result: npt.NDArray[np.uint16],
        warped: npt.NDArray[np.uint16],
        tracks: list[int],
        next_detections: npt.NDArray[np.int32],
        next_flow_prev: npt.NDArray[np.float32],
    ) -> npt.NDArray[np.uint16]:
        """Step 4: insert unmatched tracks that reappear one frame later."""
        keep = np.where(np.isin(warped, tracks), warped, 0).astype(np.uint16, copy=False)
        twice = self._warp(next_flow_prev)(keep)  # uint16
        n = int(next_detections.max())
        if n == 0:
            return result
        tid = np.asarray(tracks)
        lut = np.zeros(int(max(tracks)) + 1, np.int64)
        lut[tid] = np.arange(1, tid.size + 1)
        iou, contain = _overlaps(_mapped_joint_counts(next_detections, twice, lut, n, tid.size))
        out = result.copy()
        for _, t in match_tracks(iou, contain, self.iou_threshold, self.min_containment):
            track = tracks[t]
            out[(keep == track) & (out == 0)] = track
        return out
