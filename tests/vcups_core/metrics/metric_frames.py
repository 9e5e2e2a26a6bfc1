"""Helpers for the metric tests: readable label grids and naive reference implementations."""

from __future__ import annotations

import math

import numpy as np

VOID = 255


def frame(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse a grid of ``class`` / ``class.instance`` / ``v`` (void) tokens into (sem, inst)."""
    rows = [line.split() for line in text.strip().splitlines()]
    sem = np.zeros((len(rows), len(rows[0])), np.uint8)
    inst = np.zeros(sem.shape, np.int32)
    for y, row in enumerate(rows):
        for x, token in enumerate(row):
            if token == "v":
                sem[y, x] = VOID
            else:
                cls, _, ins = token.partition(".")
                sem[y, x], inst[y, x] = int(cls), int(ins or 0)
    return sem, inst


def pair(gt: str, pred: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(gt_sem, gt_inst, pred_sem, pred_inst)`` of one frame from two grids."""
    return (*frame(gt), *frame(pred))


def reference_stq(sequences, num_classes, things, rule="deeplab2", pred_void="deeplab2"):
    """Naive per-pixel STQ (deeplab2 AQ; SQ with predicted void as an extra IoU-0 bin of the mean
    under ``pred_void="deeplab2"``, as FN only under ``"false_negative"``).

    ``sequences``: {sequence_id: [(gs, gi, ps, pi), ...]}. Returns (STQ, AQ, SQ, AQ_per_seq).
    """
    c = num_classes
    total = np.zeros((c, c + 1), np.int64)
    aq_sum, tubes, aq_seq = 0.0, 0, {}
    for sid, frames in sequences.items():
        gt_sz, pr_sz, inter = {}, {}, {}
        for gs, gi, ps, pi in frames:
            gs, gi, ps, pi = (np.asarray(a, np.int64).ravel() for a in (gs, gi, ps, pi))
            for g, p in zip(gs, ps, strict=True):
                if g != VOID:
                    total[g, c if p == VOID else p] += 1
            g_thing = np.isin(gs, list(things))
            crowd = g_thing & (gi == 0)
            g_mask = g_thing & ~crowd
            p_mask = np.isin(ps, list(things)) & ~crowd
            if rule == "labelled":
                p_mask &= (pi != 0) & (gs != VOID)
            for i in range(gs.size):
                g, p = (gs[i], gi[i]), (ps[i], pi[i])
                if g_mask[i]:
                    gt_sz[g] = gt_sz.get(g, 0) + 1
                if p_mask[i]:
                    pr_sz[p] = pr_sz.get(p, 0) + 1
                if g_mask[i] and p_mask[i]:
                    inter[g, p] = inter.get((g, p), 0) + 1
        s = 0.0
        for g, size in gt_sz.items():
            s += (
                sum(n * n / (size + pr_sz[p] - n) for (gg, p), n in inter.items() if gg == g) / size
            )
        aq_sum, tubes = aq_sum + s, tubes + len(gt_sz)
        aq_seq[sid] = s / len(gt_sz) if gt_sz else 0.0
    tp = np.diag(total[:, :c]).astype(float)
    union = total.sum(1) + total[:, :c].sum(0) - tp
    bins = int((union > 0).sum()) + int(pred_void == "deeplab2" and total[:, c].sum() > 0)
    sq = float(np.sum(tp[union > 0] / union[union > 0]) / bins) if bins else 0.0
    aq = aq_sum / tubes if tubes else 0.0
    return math.sqrt(aq * sq), aq, sq, aq_seq


def reference_pq(gs, gi, ps, pi, num_classes, things):
    """Naive COCO-style PQ statistics of one image: per-class (tp, fp, fn, iou_sum) arrays."""
    gs, gi, ps, pi = (np.asarray(a, np.int64).ravel() for a in (gs, gi, ps, pi))
    things = set(things)
    gi = np.where(np.isin(gs, list(things)), gi, 0)
    pi = np.where(np.isin(ps, list(things)), pi, 0)
    tp, fp, fn = (np.zeros(num_classes, np.int64) for _ in range(3))
    iou_sum = np.zeros(num_classes)
    gt_segs = {(int(a), int(b)) for a, b in zip(gs, gi, strict=True) if a != VOID}
    pr_segs = {(int(a), int(b)) for a, b in zip(ps, pi, strict=True) if a != VOID}
    matched_g, matched_p = set(), set()
    for g in gt_segs:
        g_mask = (gs == g[0]) & (gi == g[1])
        if g[0] in things and g[1] == 0:
            continue  # crowd
        for p in pr_segs:
            if p[0] != g[0]:
                continue
            p_mask = (ps == p[0]) & (pi == p[1])
            inter = int((g_mask & p_mask).sum())
            union = int(g_mask.sum() + p_mask.sum()) - inter - int((p_mask & (gs == VOID)).sum())
            if inter and inter / union > 0.5:
                tp[g[0]] += 1
                iou_sum[g[0]] += inter / union
                matched_g.add(g)
                matched_p.add(p)
    for g in gt_segs - matched_g:
        if not (g[0] in things and g[1] == 0):
            fn[g[0]] += 1
    for p in pr_segs - matched_p:
        p_mask = (ps == p[0]) & (pi == p[1])
        ignored = (p_mask & (gs == VOID)).sum()
        if p[0] in things:
            ignored += (p_mask & (gs == p[0]) & (gi == 0)).sum()
        if ignored / p_mask.sum() > 0.5:
            continue
        fp[p[0]] += 1
    return tp, fp, fn, iou_sum
