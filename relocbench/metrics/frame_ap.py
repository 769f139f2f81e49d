"""Frame AP with greedy matching and no fall-through (the AVA / PASCAL rule), vectorised.

Rule, per image and class, detections taken in descending score: a detection looks only at
its highest-IoU ground-truth box of that class in that image (the first one listed, on equal
IoU); it is a true positive when that IoU is ``>= threshold`` and the box is not yet taken
(it then takes it), otherwise a false positive. Unlike the ActivityNet rule it never falls
through to its second-best box.

Because a detection only ever competes for its own best box, the sequential walk has a
closed form: a detection is a true positive exactly when its best IoU clears the threshold
and it comes first, in score order, among the detections that share that best box and clear
the threshold. That is one sort plus a "first of each group" mask, for every threshold.

AP per class is :func:`~relocbench.metrics.geometry.voc_ap` over the class's detections of
all images in descending score, against the class's number of ground-truth boxes; a class
without ground truth has AP NaN.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from ..io import trim_heap
from .geometry import _box_iou_arrays, ap_from_tp_ranks, descending_order, group_starts

__all__ = ["frame_ap", "candidate_pairs"]


_BLOCK = 1 << 18  # candidate (detection, ground truth) rows scored at once


def candidate_pairs(det_key: np.ndarray, gt_key: np.ndarray):
    """Every (detection, ground truth) with equal keys, in detection order then ground-truth order.

    Returns ``(det_index, gt_index, counts)`` where ``counts[d]`` is the number of ground
    truths sharing detection d's key.
    """
    gorder = np.argsort(gt_key, kind="stable")
    gk = gt_key[gorder]
    # searching sorted needles walks the ground truth once (binary searches hinted by the last);
    # the sorted keys are gathered a block at a time (memory)
    n = det_key.shape[0]
    lo = np.empty(n, dtype=np.int64)
    cnt = np.empty(n, dtype=np.int64)
    if not n or bool(np.all(det_key[1:] >= det_key[:-1])):
        lo[:] = np.searchsorted(gk, det_key, side="left")
        cnt[:] = np.searchsorted(gk, det_key, side="right")
        cnt -= lo
    else:
        dorder = np.argsort(det_key, kind="stable")
        for a in range(0, n, _BLOCK):
            idx = dorder[a:a + _BLOCK]
            dk = det_key[idx]
            lo_s = np.searchsorted(gk, dk, side="left")
            lo[idx] = lo_s
            cnt[idx] = np.searchsorted(gk, dk, side="right") - lo_s
        del dorder, idx, dk, lo_s
    has = np.flatnonzero(cnt)  # only detections with ground truth of their key take part
    c = cnt[has]
    total = int(c.sum())
    if total == has.shape[0]:  # one ground truth per detection (the usual case): no expansion
        return has, gorder[lo[has]], cnt
    det_idx = np.repeat(has, c)
    del has
    seg0 = np.cumsum(c)
    seg0 -= c
    within = np.arange(total, dtype=np.int64)
    within -= np.repeat(seg0, c)
    del seg0
    start = lo[det_idx]
    del lo
    start += within
    del within
    gt_idx = gorder[start]
    return det_idx, gt_idx, cnt


def frame_ap(
    det_img: np.ndarray,
    det_cls: np.ndarray,
    det_score: np.ndarray,
    det_boxes: np.ndarray,
    gt_img: np.ndarray,
    gt_cls: np.ndarray,
    gt_boxes: np.ndarray,
    n_classes: int,
    thresholds: Sequence[float],
    det_tie: Optional[np.ndarray] = None,
) -> Dict[str, np.ndarray]:
    """AP per (threshold, class); images and classes are integer codes, boxes ``xyxy``.

    ``det_tie`` orders detections of equal score (smaller first); by default, row order.
    Ground-truth boxes of equal IoU are taken in row order (first wins).
    Returns ``ap`` (n_thresholds, n_classes; NaN without ground truth), ``npos`` and
    ``n_tp`` (per threshold).
    """
    det_img = np.asarray(det_img, dtype=np.int64)
    det_cls = np.asarray(det_cls, dtype=np.int64)
    det_score = np.asarray(det_score, dtype=np.float64)
    det_boxes = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    gt_img = np.asarray(gt_img, dtype=np.int64)
    gt_cls = np.asarray(gt_cls, dtype=np.int64)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    n = det_score.shape[0]
    tie = None if det_tie is None else np.asarray(det_tie)  # None: row order (lexsort is stable)
    npos = np.bincount(gt_cls, minlength=n_classes)[:n_classes]
    thresholds = [float(t) for t in thresholds]

    # Best ground truth of every detection (first on ties).
    best_iou = np.full(n, -np.inf)
    best_gt = np.full(n, -1, dtype=np.int64)
    d_idx, g_idx, _ = candidate_pairs(det_img * n_classes + det_cls, gt_img * n_classes + gt_cls)
    # candidates come grouped by detection: take them in blocks of whole detections (memory)
    lo = 0
    while lo < d_idx.size:
        hi = min(d_idx.size, lo + _BLOCK)
        if hi < d_idx.size:  # end the block at a detection's first candidate (or after a large one)
            cut = int(np.searchsorted(d_idx, d_idx[hi], side="left"))
            hi = cut if cut > lo else int(np.searchsorted(d_idx, d_idx[hi], side="right"))
        d, g = d_idx[lo:hi], g_idx[lo:hi]
        iou = _box_iou_arrays(det_boxes[d], gt_boxes[g])
        starts = np.flatnonzero(group_starts(d))
        best_iou[d[starts]] = np.maximum.reduceat(iou, starts)
        at_max = np.flatnonzero(iou == best_iou[d])
        first = group_starts(d[at_max])
        best_gt[d[at_max[first]]] = g[at_max[first]]
        lo = hi
    del d_idx, g_idx
    trim_heap()  # the blocks' arrays sit below the mmap threshold: hand them back

    # One processing order (descending score, then ``tie``, then row), from which both sorts
    # below are stable sorts on one integer key.
    by_score = descending_order(det_score, tie)
    # True positives: first in score order among the detections sharing a best box.
    ranked = by_score[best_gt[by_score] >= 0]
    by_box = ranked[np.argsort(best_gt[ranked], kind="stable")]
    del ranked
    tp = np.zeros((len(thresholds), n), dtype=bool)
    for k, t in enumerate(thresholds):
        elig = by_box[best_iou[by_box] >= t]
        tp[k, elig[group_starts(best_gt[elig])]] = True

    del by_box, elig
    trim_heap()
    # AP per class over all images, descending score.
    ctype = np.int16 if n_classes < 2 ** 15 else np.int64  # a radix sort for small codes
    order = by_score[np.argsort(det_cls[by_score].astype(ctype), kind="stable")]
    del by_score
    cls_sorted = det_cls[order]
    cls_start = np.searchsorted(cls_sorted, np.arange(n_classes), side="left")
    ap = np.full((len(thresholds), n_classes), np.nan)
    for k in range(len(thresholds)):
        pos = np.flatnonzero(tp[k, order])
        pc = cls_sorted[pos]
        ranks = pos - cls_start[pc] + 1
        bounds = np.searchsorted(pc, np.arange(n_classes + 1), side="left")
        for c in np.flatnonzero(npos > 0):
            ap[k, c] = ap_from_tp_ranks(ranks[bounds[c]:bounds[c + 1]], int(npos[c]))
    return {"ap": ap, "npos": npos, "n_tp": tp.sum(axis=1)}
