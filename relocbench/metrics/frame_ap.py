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

The CVPR 2019 authors' AVA scoring (github.com/fengyang0317/STVR, ``compute_ap.py``
lines 63-110) is this rule with each keyframe split into three clips, each clip an image
carrying the keyframe's boxes. :func:`original_mean_ap` is that scoring written the way the
original walks it (a loop per clip: :func:`count_ground_truth`, :func:`clip_true_positives`),
the plain reference that ``reloc-spatiotemporal`` with ``clip_scoring="original"`` (which
scores through :func:`frame_ap`) is tested against.
"""
from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError
from ..io import trim_heap
from .geometry import _box_iou_arrays, ap_from_tp_ranks, descending_order, group_starts, pairwise_box_iou, voc_ap

__all__ = ["frame_ap", "candidate_pairs", "CLIPS_PER_KEYFRAME", "count_ground_truth", "clip_true_positives",
           "original_mean_ap"]

#: Clips per keyframe in the original's AVA scoring: each 1-second, 24 fps file cut into three
#: 8-frame clips (STVR split_videos.py:33-36; compute_ap.py:74-75, ``range(3)``).
CLIPS_PER_KEYFRAME = 3


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


# --------------------------------------------------------------------------- the original's loop form
def _boxes(value, name: str, owner: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4 or not np.isfinite(arr).all():
        raise ConfigError(f"The '{name}' parameter of {owner} must be an (n, 4) array of finite "
                          f"xyxy boxes. Got shape {arr.shape} instead.")
    return arr


def count_ground_truth(boxes_per_second: Iterable, *, clips_per_second: int = CLIPS_PER_KEYFRAME) -> int:
    """Ground-truth instances of one query/reference pair: each second's boxes counted once
    per clip (``num_gt_instances[label] += gt_boxes.shape[0] * 3``, STVR/compute_ap.py:69-74).
    """
    total = 0
    for i, boxes in enumerate(boxes_per_second):
        total += _boxes(boxes, f"boxes_per_second[{i}]", "count_ground_truth").shape[0]
    return total * clips_per_second


def clip_true_positives(det_boxes, det_scores, gt_boxes, *, iou_threshold: float
                        ) -> Tuple[np.ndarray, np.ndarray]:
    """``(scores, is_tp)`` of one clip's matching-actor detections, highest score first.

    As STVR/compute_ap.py:83-97: detections sorted by score (descending; the AVA evaluator's
    ``sort_by_field`` inside a non-maximum suppression at IoU 1.0, which suppresses nothing);
    each takes the ground-truth box of highest IoU (the first on equal IoU, ``np.argmax``); it
    is a true positive when that IoU is ``>= iou_threshold`` and the box was not taken by a
    higher-scored detection (a detection whose best box is taken is a false positive, even
    when another box would fit). Equal scores: the detection listed first ranks first (the
    original leaves that order to ``np.argsort``).
    """
    owner = "clip_true_positives"
    d = _boxes(det_boxes, "det_boxes", owner)
    s = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    g = _boxes(gt_boxes, "gt_boxes", owner)
    if s.shape[0] != d.shape[0]:
        raise ConfigError(f"The 'det_scores' parameter of {owner} must have one score per box "
                          f"({d.shape[0]}). Got {s.shape[0]} instead.")
    order = np.argsort(-s, kind="stable")
    d, s = d[order], s[order]
    tp = np.zeros(s.shape[0], dtype=bool)
    if d.shape[0] and g.shape[0]:
        iou = pairwise_box_iou(d, g)
        best = np.argmax(iou, axis=1)
        taken = np.zeros(g.shape[0], dtype=bool)
        for k in range(d.shape[0]):
            j = best[k]
            if iou[k, j] >= iou_threshold and not taken[j]:
                tp[k] = True
                taken[j] = True
    return s, tp


def original_mean_ap(pairs: Iterable[Mapping], *, iou_threshold: float = 0.5) -> Dict[str, object]:
    """Mean over query labels of the AP of the matching-actor detections (STVR/compute_ap.py:59-110).

    Each pair is a mapping with ``label`` (hashable: the query's action label set),
    ``gt`` (one ``(n, 4)`` box array per reference second) and ``detections`` (one
    ``(boxes, scores)`` per clip, ``3 * len(gt)`` of them, second-major, already restricted
    to the "matching actor" class). Ground truth is counted by :func:`count_ground_truth`;
    each clip is matched by :func:`clip_true_positives`; per label, precision/recall over
    every clip of its pairs (descending score, earlier clip first on equal scores) and
    :func:`relocbench.metrics.geometry.voc_ap`. Returns ``{"mean_ap", "ap_per_label",
    "labels_without_ground_truth"}``: a label whose pairs hold no box is left out of the mean
    and counted there.
    """
    scores: Dict[object, list] = {}
    tps: Dict[object, list] = {}
    npos: Dict[object, int] = {}
    for n, pair in enumerate(pairs):
        label = pair["label"]
        gt = list(pair["gt"])
        dets = list(pair["detections"])
        if len(dets) != CLIPS_PER_KEYFRAME * len(gt):
            raise ConfigError(f"pair {n} (label {label!r}) must have {CLIPS_PER_KEYFRAME} clips of "
                              f"detections per reference second ({CLIPS_PER_KEYFRAME * len(gt)}). "
                              f"Got {len(dets)} instead.")
        npos[label] = npos.get(label, 0) + count_ground_truth(gt)
        for idx, (boxes, sc) in enumerate(dets):
            s, tp = clip_true_positives(boxes, sc, gt[idx // CLIPS_PER_KEYFRAME], iou_threshold=iou_threshold)
            scores.setdefault(label, []).append(s)
            tps.setdefault(label, []).append(tp)
    aps: Dict[object, float] = {}
    empty = 0
    for label, total in npos.items():
        if total == 0:
            empty += 1
            continue
        s = np.concatenate(scores.get(label, [np.zeros(0)]))
        tp = np.concatenate(tps.get(label, [np.zeros(0, dtype=bool)]))
        order = np.argsort(-s, kind="stable")
        tp_cum = np.cumsum(tp[order])
        fp_cum = np.cumsum(~tp[order])
        precision = tp_cum / np.maximum(tp_cum + fp_cum, 1)
        recall = tp_cum / total
        aps[label] = voc_ap(precision, recall)
    mean = float(np.mean(list(aps.values()))) if aps else float("nan")
    return {"mean_ap": mean, "ap_per_label": aps, "labels_without_ground_truth": empty}
