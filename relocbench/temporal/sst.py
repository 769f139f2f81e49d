"""SST proposal enumeration (Buch et al., CVPR 2017), as the action-proposal baseline uses it.

A recurrent network reads the window step by step; after reading steps ``0 .. t`` its
output ``t`` scores ``K`` anchors. **Convention** (the released SST code's validity mask,
and reference-algorithms.md's oracle): anchor ``k`` (0-based) at output ``t`` is the span
``[t - k - 1, t)``, the ``k + 1`` steps ending at boundary ``t``; it exists when
``t - k - 1 >= 0``. So 3 outputs and ``K = 2`` give exactly ``[0, 1)``, ``[1, 2)`` and
``[0, 2)``. (The released code labelled anchor ``k`` with ``[t - k, t + 1)`` while masking
with this rule, so it never proposed a span starting at step 0; we use one span for both.)
To make spans that end at the window's last step reachable, the model reads the window
followed by one zero step: ``n`` steps give ``n + 1`` outputs and boundaries ``0 .. n``.

An anchor is positive when its tIoU with a ground-truth segment exceeds ``0.5``. Training
weighs each anchor's positives by ``1 - w_k`` and negatives by ``w_k``, ``w_k`` being the
anchor's positive rate. At test time the proposals are ranked by score after 1-D NMS at
tIoU 0.7; the baseline's answer is the first, and it writes the ``top_k`` first (all
the proposals NMS keeps when fewer).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import numpy as np

from ..errors import ConfigError

__all__ = [
    "anchor_spans", "span_tiou", "anchor_labels", "batch_anchor_labels", "anchor_positive_rate",
    "nms_1d", "Proposals", "top_proposals",
]


def _check_k(n_anchors: int) -> int:
    if not isinstance(n_anchors, (int, np.integer)) or n_anchors < 1:
        raise ConfigError(f"The 'n_anchors' parameter must be an int >= 1. Got {n_anchors!r} instead.")
    return int(n_anchors)


def anchor_spans(n_outputs: int, n_anchors: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spans of every (output, anchor): ``starts, ends, valid``, each ``[n_outputs, K]``."""
    k = _check_k(n_anchors)
    if not isinstance(n_outputs, (int, np.integer)) or n_outputs < 0:
        raise ConfigError(f"The 'n_outputs' parameter must be an int >= 0. Got {n_outputs!r} instead.")
    ends = np.broadcast_to(np.arange(n_outputs)[:, None], (n_outputs, k)).astype(np.int64)
    starts = ends - np.arange(1, k + 1)[None, :]
    return starts, ends.copy(), starts >= 0


def span_tiou(s1, e1, s2, e2) -> np.ndarray:
    """Temporal IoU of spans ``[s1, e1)`` and ``[s2, e2)`` (broadcasting); 0 when both are empty."""
    s1, e1, s2, e2 = (np.asarray(x, dtype=np.float64) for x in (s1, e1, s2, e2))
    inter = np.maximum(0.0, np.minimum(e1, e2) - np.maximum(s1, s2))
    union = (e1 - s1) + (e2 - s2) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def anchor_labels(n_outputs: int, n_anchors: int, gt_starts, gt_ends, *, threshold: float = 0.5
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """Positive anchors ``[n_outputs, K]`` (tIoU with some ground truth > ``threshold``) and validity."""
    starts, ends, valid = anchor_spans(n_outputs, n_anchors)
    gs = np.asarray(gt_starts, dtype=np.float64).reshape(-1)
    ge = np.asarray(gt_ends, dtype=np.float64).reshape(-1)
    if gs.size == 0:
        return np.zeros(valid.shape, dtype=bool), valid
    iou = span_tiou(starts[..., None], ends[..., None], gs, ge).max(axis=-1)
    return (iou > threshold) & valid, valid


def batch_anchor_labels(lengths, gt_starts, gt_ends, n_anchors: int, *, max_outputs: Optional[int] = None,
                        threshold: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
    """Labels and mask ``[B, T, K]`` for a padded batch with one ground truth per item.

    ``lengths[b]`` counts item ``b``'s outputs (window steps + 1 with the zero step); outputs
    beyond it are masked.
    """
    n = np.asarray(lengths, dtype=np.int64).reshape(-1)
    gs = np.asarray(gt_starts, dtype=np.float64).reshape(-1, 1, 1)
    ge = np.asarray(gt_ends, dtype=np.float64).reshape(-1, 1, 1)
    t = int(n.max(initial=0)) if max_outputs is None else int(max_outputs)
    starts, ends, valid = anchor_spans(t, n_anchors)
    mask = valid[None] & (np.arange(t)[None, :, None] < n[:, None, None])
    labels = (span_tiou(starts[None], ends[None], gs, ge) > threshold) & mask
    return labels, mask


def anchor_positive_rate(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-anchor positive rate ``w_k`` over valid entries (``[..., K]`` inputs); 0 where none."""
    labels = np.asarray(labels, dtype=np.float64).reshape(-1, np.shape(labels)[-1])
    mask = np.asarray(mask, dtype=np.float64).reshape(labels.shape)
    n = mask.sum(0)
    return np.where(n > 0, (labels * mask).sum(0) / np.maximum(n, 1), 0.0)


def nms_1d(starts, ends, scores, *, threshold: float = 0.7, top_k: Optional[int] = None) -> np.ndarray:
    """Greedy non-maximum suppression of spans: indices kept, by decreasing score.

    A span is suppressed when its tIoU with a kept span exceeds ``threshold`` (as
    ``torchvision.ops.nms`` on boxes ``[s, 0, e, 1]``). Ties in score keep the lower index first.
    """
    s = np.asarray(starts, dtype=np.float64).reshape(-1)
    e = np.asarray(ends, dtype=np.float64).reshape(-1)
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not (s.shape == e.shape == sc.shape):
        raise ConfigError(f"starts, ends and scores must have one length; got {s.size}, {e.size}, {sc.size}")
    order = np.argsort(-sc, kind="stable")
    keep = []
    alive = np.ones(order.size, dtype=bool)
    for pos in range(order.size):
        if not alive[pos]:
            continue
        i = order[pos]
        keep.append(int(i))
        if top_k is not None and len(keep) >= top_k:
            break
        rest = order[pos + 1:]
        alive[pos + 1:] &= ~(span_tiou(s[i], e[i], s[rest], e[rest]) > threshold)
    return np.array(keep, dtype=np.int64)


class Proposals(NamedTuple):
    start_step: np.ndarray
    end_step: np.ndarray
    score: np.ndarray


def top_proposals(scores: np.ndarray, n_outputs: Optional[int] = None, *, nms_threshold: float = 0.7,
                  top_k: int = 1) -> Proposals:
    """The ``top_k`` best proposals of one window from anchor scores ``[T, K]`` after NMS."""
    if hasattr(scores, "detach"):
        scores = scores.detach().cpu().numpy()
    sc = np.asarray(scores, dtype=np.float64)
    if sc.ndim != 2:
        raise ConfigError(f"scores must have shape [outputs, anchors]; got {sc.shape}")
    t = sc.shape[0] if n_outputs is None else int(n_outputs)
    starts, ends, valid = anchor_spans(t, sc.shape[1])
    sel = valid.reshape(-1)
    s, e, v = starts.reshape(-1)[sel], ends.reshape(-1)[sel], sc[:t].reshape(-1)[sel]
    if s.size == 0:
        raise ConfigError(f"a window of {t} outputs has no proposal; it needs at least 2 outputs")
    keep = nms_1d(s, e, v, threshold=nms_threshold, top_k=top_k)
    return Proposals(s[keep], e[keep], v[keep])
