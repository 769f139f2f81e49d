"""Overlaps and average precision: the numeric core shared by every protocol (pure numpy).

* :func:`tiou` / :func:`pairwise_tiou`: temporal intersection over union of ``[start, end]``
  segments (continuous; for half-open step segments ``[s, e)`` this is the step count ratio).
* :func:`box_iou` / :func:`pairwise_box_iou`: IoU of ``xyxy`` boxes (no ``+1`` pixel rule).
* :func:`voc_ap`: the all-point interpolated VOC AP of a precision/recall curve, exactly as
  the official ActivityNet and AVA evaluators compute it.
* :func:`ap_from_tp_ranks`: the same number from the ranks of the true positives only,
  which is what the fast evaluators use.

An empty union (two zero-length segments or zero-area boxes) has overlap 0.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

__all__ = ["tiou", "pairwise_tiou", "box_iou", "pairwise_box_iou", "voc_ap", "ap_from_tp_ranks",
           "group_starts"]


def _safe_div(inter: np.ndarray, union: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(inter, union).shape, dtype=np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def tiou(a, b) -> np.ndarray:
    """Elementwise temporal IoU of segments ``a[..., :2]`` and ``b[..., :2]`` (broadcasting).

    >>> float(tiou([3, 7], [5, 9]))  # intersection 2, union 6
    0.3333333333333333
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return _tiou_arrays(a[..., 0], a[..., 1], b[..., 0], b[..., 1])


def _tiou_arrays(s1, e1, s2, e2) -> np.ndarray:
    inter = np.clip(np.minimum(e1, e2) - np.maximum(s1, s2), 0.0, None)
    union = (e1 - s1) + (e2 - s2) - inter
    return _safe_div(inter, union)


def pairwise_tiou(a, b) -> np.ndarray:
    """tIoU of every segment of ``a`` (n, 2) with every segment of ``b`` (m, 2): shape (n, m)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 2)
    return tiou(a[:, None, :], b[None, :, :])


def _box_iou_arrays(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0.0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0.0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return _safe_div(inter, area_a + area_b - inter)


def box_iou(a, b) -> np.ndarray:
    """Elementwise IoU of boxes ``a[..., :4]`` and ``b[..., :4]`` in ``xyxy`` (broadcasting).

    >>> float(box_iou([0, 0, 2, 1], [1, 0, 3, 1]))  # 1 / 3
    0.3333333333333333
    """
    return _box_iou_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))


def pairwise_box_iou(a, b) -> np.ndarray:
    """IoU of every box of ``a`` (n, 4) with every box of ``b`` (m, 4): shape (n, m)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    return box_iou(a[:, None, :], b[None, :, :])


def voc_ap(precision, recall) -> float:
    """All-point interpolated AP (VOC 2010+; the official ActivityNet/AVA formula).

    Precision is made non-increasing from the right (with a 0 appended), and
    ``sum(Δrecall × precision)`` is taken where the recall changes (recall starts at 0 and
    is extended with 1).

    >>> voc_ap([0.0, 0.5], [0.0, 1.0])  # [FP, TP] against one ground truth
    0.5
    """
    prec = np.concatenate([[0.0], np.asarray(precision, dtype=np.float64), [0.0]])
    rec = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64), [1.0]])
    prec = np.maximum.accumulate(prec[::-1])[::-1]
    idx = np.flatnonzero(rec[1:] != rec[:-1]) + 1
    return float(np.sum((rec[idx] - rec[idx - 1]) * prec[idx]))


def ap_from_tp_ranks(ranks, npos: int) -> float:
    """:func:`voc_ap` computed from the 1-based ranks of the true positives alone.

    With TPs at ranks ``r_1 < ... < r_m`` the precision at the j-th TP is ``j / r_j``; the
    interpolated precision there is the largest such value at or after j, and each TP adds
    ``1 / npos`` recall. False positives never raise the interpolated precision, so they
    need not be materialised. ``ranks`` must be sorted ascending.
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    if npos <= 0 or ranks.size == 0:
        return 0.0
    prec = np.arange(1, ranks.size + 1, dtype=np.float64) / ranks
    prec = np.maximum.accumulate(prec[::-1])[::-1]
    return float(np.sum(prec) / npos)


def descending_order(score: np.ndarray, tie: Optional[np.ndarray] = None, *, later_first: bool = False) -> np.ndarray:
    """Rows by descending score; among equal scores by ascending ``tie`` then row order
    (``tie`` None: row order), or with ``later_first`` the later row first (the official
    ActivityNet rule). Distinct scores (the usual case) need no stable sort: an unstable one
    is checked for ties and redone stably only where there are some."""
    n = score.shape[0]
    neg = -score
    o = np.argsort(neg)
    s = neg[o]
    if n < 2 or not bool((s[1:] == s[:-1]).any()):
        return o
    if later_first:
        return (n - 1) - np.argsort(neg[::-1], kind="stable")
    return np.lexsort((neg,) if tie is None else (tie, neg))


def group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Boolean mask of the first element of each run of equal values in ``sorted_keys``."""
    sorted_keys = np.asarray(sorted_keys)
    mask = np.ones(sorted_keys.shape[0], dtype=bool)
    if sorted_keys.shape[0] > 1:
        mask[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return mask


def first_per_group(keys: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """For keys already grouped (equal keys adjacent): (index of each group's first element, key)."""
    m = group_starts(keys)
    idx = np.flatnonzero(m)
    return idx, np.asarray(keys)[idx]
