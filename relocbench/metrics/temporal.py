"""``reloc-temporal``: the temporal re-localization protocol of Feng et al. (ECCV 2018).

Per pair, the top-1 segment (highest score; on equal scores the one listed first) is
compared with the ground truth by tIoU. "mAP@1 at t" is the fraction of pairs whose top-1
tIoU is ``>= t`` (``iou_rule="inclusive"``) or ``> t`` (``"strict"``, the original code),
for t = 0.1 ... 0.9, and the headline ``average`` is its mean over t = 0.5 ... 0.9, which is
the "Average" column of the paper's Table 1. Missing pairs (with ``allow_missing``) and
pairs with an empty list count as misses.

Also computed: recall@k (a hit among the k best-ranked segments at ``recall_iou``); an
ActivityNet-style AP over all pairs' ranked predictions pooled together (each pair owns one
ground truth; within a pair the first hit in rank order is the true positive, later ones are
false positives; thresholds ``np.linspace(0.5, 0.95, 10)``, averaged); breakdowns per class,
per query length (steps) and per ratio of ground-truth to window length (steps); and a
seeded bootstrap 95% interval over pairs for ``average``.

Ties in the pooled AP: predictions of equal score are ranked by the pair's position in the
manifest, then by their position in the pair's list.

The bootstrap is exact and fast: a pair's contribution to ``average`` takes one of six
values (0, 1/5, ..., 1), so resampling n pairs with replacement is a multinomial draw over
those six values; ``n_bootstrap`` draws with ``numpy.random.default_rng(seed)``, and the
2.5th and 97.5th percentiles (linear interpolation) bound the interval.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from ..errors import ConfigError, ManifestError, PredictionError
from ..predictions import TemporalPredictions, check_provenance, match_pair_ids, predictions_from_dict
from .geometry import _tiou_arrays, ap_from_tp_ranks

__all__ = ["evaluate_temporal", "MAP_THRESHOLDS", "AVERAGE_THRESHOLDS", "AP_THRESHOLDS", "IOU_RULES",
           "thr_key", "hit"]

MAP_THRESHOLDS = tuple(k / 10 for k in range(1, 10))
AVERAGE_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
AP_THRESHOLDS = tuple(float(x) for x in np.linspace(0.5, 0.95, 10))
IOU_RULES = ("inclusive", "strict")
LENGTH_BINS = (8, 16, 32)
RATIO_BINS = (0.1, 0.25, 0.5)
_TOL = 1e-9

_PAIR_COLUMNS = ("pair_id", "label", "query_start_step", "query_end_step", "ref_start_step",
                 "ref_end_step", "gt_start_step", "gt_end_step", "ref_start_s", "ref_end_s",
                 "gt_start_s", "gt_end_s")


def thr_key(t: float) -> str:
    """JSON key of a threshold: ``0.5 -> "0.5"``, ``0.55 -> "0.55"``."""
    return f"{float(t):g}"


def hit(values: np.ndarray, t: float, rule: str) -> np.ndarray:
    """``values >= t`` (inclusive) or ``values > t`` (strict)."""
    return values > t if rule == "strict" else values >= t


def _within_pair(counts: np.ndarray, starts: np.ndarray, score: np.ndarray, tiou: np.ndarray,
                 ks: Sequence[int]):
    """Rank predictions inside each pair and summarise their tIoUs, without a Python loop over rows.

    Pairs are bucketed by their number of predictions (powers of two); each bucket is a dense
    (pairs x width) block sorted row-wise (stable, descending score). Returns the per-row
    maximum tIoU of the better-ranked rows of its pair (``-inf`` for the top row) and, per k,
    the per-pair maximum tIoU of the k best rows (``-inf`` for a pair without rows).
    """
    n_pairs = counts.shape[0]
    prev = np.full(score.shape[0], -np.inf)
    topk = {k: np.full(n_pairs, -np.inf) for k in ks}
    has = counts > 0
    if not has.any():
        return prev, topk
    bucket = np.zeros(n_pairs, dtype=np.int64)
    bucket[has] = np.ceil(np.log2(counts[has])).astype(np.int64)
    for b in np.unique(bucket[has]):
        rows = np.flatnonzero(has & (bucket == b))
        c = counts[rows]
        width = int(c.max())
        cols = np.arange(width)
        valid = cols[None, :] < c[:, None]
        fidx = np.where(valid, starts[rows, None] + cols[None, :], 0)
        key = np.where(valid, -score[fidx], np.inf)
        order = np.argsort(key, axis=1, kind="stable")
        sidx = np.take_along_axis(fidx, order, axis=1)
        svalid = np.take_along_axis(valid, order, axis=1)
        t = np.where(svalid, tiou[sidx], -np.inf)
        run = np.maximum.accumulate(t, axis=1)
        before = np.empty_like(run)
        before[:, 0] = -np.inf
        before[:, 1:] = run[:, :-1]
        prev[sidx[svalid]] = before[svalid]
        for k in ks:
            topk[k][rows] = run[:, min(k, width) - 1]
    return prev, topk


def _global_ranks(score: np.ndarray, rows: np.ndarray, tie_key: np.ndarray) -> np.ndarray:
    """0-based rank of ``rows`` when all rows are sorted by descending score, ties by ``tie_key``."""
    n = score.shape[0]
    s_sorted = np.sort(score)
    s = score[rows]
    rank = (n - np.searchsorted(s_sorted, s, side="right")).astype(np.int64)
    if n > 1 and np.any(s_sorted[1:] == s_sorted[:-1]):
        lo = np.searchsorted(s_sorted, s, side="left")
        hi = np.searchsorted(s_sorted, s, side="right")
        tied = (hi - lo) > 1
        if tied.any():
            vals = np.unique(s[tied])
            members = np.flatnonzero(np.isin(score, vals))
            order = np.lexsort((tie_key[members], score[members]))
            m_sorted = members[order]
            v_sorted = score[m_sorted]
            first = np.searchsorted(v_sorted, v_sorted, side="left")
            within = np.arange(m_sorted.shape[0]) - first  # rank among equal scores
            pos = np.empty(n, dtype=np.int64)
            pos[m_sorted] = within
            rank[tied] += pos[rows[tied]]
    return rank


def _bins(values: np.ndarray, edges: Sequence[float], fmt) -> tuple:
    edges = [float(e) for e in edges]
    codes = np.digitize(values, edges, right=True)
    lows = [None] + edges
    highs = edges + [None]
    names = [fmt(lo, hi) for lo, hi in zip(lows, highs)]
    return codes, names


def _length_name(lo, hi):
    if lo is None:
        return f"1-{hi:g}"
    if hi is None:
        return f">{lo:g}"
    return f"{lo + 1:g}-{hi:g}"


def _ratio_name(lo, hi):
    return f"({0 if lo is None else lo:g}, {1 if hi is None else hi:g}]"


def _breakdown(codes: np.ndarray, names: Sequence[str], hits: np.ndarray, thresholds, avg_idx) -> Dict:
    g = len(names)
    n = np.bincount(codes, minlength=g)
    out = {}
    frac = np.stack([np.bincount(codes, weights=hits[:, i], minlength=g) for i in range(hits.shape[1])], axis=1)
    for j in np.flatnonzero(n):
        m = frac[j] / n[j]
        out[str(names[j])] = {
            "n_pairs": int(n[j]),
            "average": float(np.mean(m[avg_idx])),
            "map_at_iou": {thr_key(t): float(v) for t, v in zip(thresholds, m)},
        }
    return out


def _check_pairs(pairs: pd.DataFrame) -> None:
    if not isinstance(pairs, pd.DataFrame):
        raise ManifestError(f"expected the pairs table as a pandas DataFrame, found {type(pairs).__name__}")
    missing = [c for c in _PAIR_COLUMNS if c not in pairs.columns]
    if missing:
        raise ManifestError(f"the temporal pairs table lacks columns {missing}")
    if len(pairs) == 0:
        raise ManifestError("the temporal pairs table is empty: nothing to evaluate")
    ids = pd.Index(pairs["pair_id"])
    if not ids.is_unique:
        raise ManifestError(f"pair_id {ids[ids.duplicated()][0]!r} appears more than once in the pairs table")


def evaluate_temporal(
    pairs: pd.DataFrame,
    predictions: Union[TemporalPredictions, Mapping],
    *,
    iou_rule: str = "inclusive",
    clip: bool = False,
    allow_missing: bool = False,
    thresholds: Sequence[float] = MAP_THRESHOLDS,
    average_thresholds: Sequence[float] = AVERAGE_THRESHOLDS,
    ks: Sequence[int] = (1, 5),
    recall_iou: float = 0.5,
    ap_thresholds: Sequence[float] = AP_THRESHOLDS,
    n_bootstrap: int = 1000,
    seed: int = 0,
    length_bins: Sequence[float] = LENGTH_BINS,
    ratio_bins: Sequence[float] = RATIO_BINS,
    manifest_name: Optional[str] = None,
    split: Optional[str] = None,
) -> Dict:
    """Score temporal re-localization predictions against a pairs table (see the module doc).

    ``predictions`` is a :class:`~relocbench.predictions.TemporalPredictions` or a parsed
    prediction document. Segments outside ``[0, window length]`` are an error, or with
    ``clip`` are clipped and counted in ``n_clipped``. Pairs without predictions are an
    error unless ``allow_missing`` (then they are misses, counted in ``n_missing``).

    Returns a JSON-ready dict: ``average``, ``map_at_iou``, ``recall_at_k``, ``ap``,
    ``ap_at_iou``, ``ci95``, ``mean_top1_tiou``, ``n_pairs``, ``n_missing``, ``n_clipped``,
    ``n_predictions`` and ``breakdowns`` (``per_class``, ``query_length_steps``,
    ``gt_to_window_ratio``), fractions in [0, 1].
    """
    if iou_rule not in IOU_RULES:
        raise ConfigError(f"The 'iou_rule' parameter must be one of {list(IOU_RULES)}. Got {iou_rule!r} instead.")
    if n_bootstrap < 1:
        raise ConfigError(f"The 'n_bootstrap' parameter must be an int >= 1. Got {n_bootstrap!r} instead.")
    ks = tuple(int(k) for k in ks)
    if any(k < 1 for k in ks):
        raise ConfigError(f"The 'ks' parameter must hold ints >= 1. Got {ks!r} instead.")
    thresholds = tuple(float(t) for t in thresholds)
    missing_avg = [t for t in average_thresholds if float(t) not in thresholds]
    if missing_avg:
        raise ConfigError(f"The 'average_thresholds' {missing_avg} must be among 'thresholds' {list(thresholds)}.")
    _check_pairs(pairs)
    if not isinstance(predictions, TemporalPredictions):
        predictions = predictions_from_dict(predictions, task="temporal")
    preds = predictions
    check_provenance(preds, manifest_name, split)
    src = preds.source
    n_pairs = len(pairs)
    gidx = match_pair_ids(preds.pair_ids, pairs["pair_id"].to_numpy(object), source=src)

    counts = np.zeros(n_pairs, dtype=np.int64)
    starts = np.zeros(n_pairs, dtype=np.int64)
    counts[gidx] = preds.counts
    starts[gidx] = preds.offsets[:-1]
    present = np.zeros(n_pairs, dtype=bool)
    present[gidx] = True
    n_missing = int(n_pairs - present.sum())
    if n_missing and not allow_missing:
        first = pairs["pair_id"].iloc[int(np.flatnonzero(~present)[0])]
        raise PredictionError(
            f"{n_missing} pair(s) of the ground truth have no predictions, e.g. {first!r}; "
            "pass --allow-missing (allow_missing=True) to score them as misses", file=src)

    if preds.unit == "step":
        wlen = (pairs["ref_end_step"].to_numpy(np.float64) - pairs["ref_start_step"].to_numpy(np.float64))
        gs, ge = pairs["gt_start_step"].to_numpy(np.float64), pairs["gt_end_step"].to_numpy(np.float64)
    else:
        wlen = pairs["ref_end_s"].to_numpy(np.float64) - pairs["ref_start_s"].to_numpy(np.float64)
        gs, ge = pairs["gt_start_s"].to_numpy(np.float64), pairs["gt_end_s"].to_numpy(np.float64)

    row_pair = np.repeat(gidx, preds.counts)  # ground-truth row of every prediction
    start, end = preds.start, preds.end
    wl = wlen[row_pair]
    outside = (start < -_TOL) | (end > wl + _TOL)
    n_clipped = int(outside.sum())
    if n_clipped and not clip:
        i = int(np.flatnonzero(outside)[0])
        raise PredictionError(
            f"segment [{float(start[i])!r}, {float(end[i])!r}] lies outside the reference window [0, {float(wl[i])!r}] "
            f"({preds.unit}s; {n_clipped} such segment(s)); pass --clip (clip=True) to clip and count them",
            file=src, item=preds.item(i))
    if n_clipped or (start.size and ((start < 0).any() or (end > wl).any())):
        start = np.clip(start, 0.0, wl)
        end = np.clip(end, 0.0, wl)
    tiou = _tiou_arrays(start, end, gs[row_pair], ge[row_pair])

    ks_all = tuple(sorted(set(ks) | {1}))
    prev, topk = _within_pair(counts, starts, preds.score, tiou, ks_all)
    top1 = topk[1]

    hits = np.stack([hit(top1, t, iou_rule) for t in thresholds], axis=1)
    map_vals = hits.mean(axis=0)
    avg_idx = [thresholds.index(float(t)) for t in average_thresholds]
    average = float(np.mean(map_vals[avg_idx]))

    # Bootstrap over pairs: multinomial over the distinct per-pair contributions.
    nh = hits[:, avg_idx].sum(axis=1)
    freq = np.bincount(nh, minlength=len(avg_idx) + 1) / n_pairs
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n_pairs, freq, size=n_bootstrap)
    boot = draws @ (np.arange(len(avg_idx) + 1) / len(avg_idx)) / n_pairs
    lo, hi = np.percentile(boot, [2.5, 97.5])

    # Pooled ActivityNet-style AP: a row is the TP of its pair at t iff prev < t <= tIoU.
    ap_thresholds = tuple(float(t) for t in ap_thresholds)
    ap_vals = []
    if preds.n_predictions:
        cand = np.flatnonzero(tiou > prev)
        if ap_thresholds:
            cand = cand[hit(tiou[cand], min(ap_thresholds), iou_rule)]
        new_off = np.concatenate([[0], np.cumsum(counts)])
        tie_key = new_off[row_pair] + (np.arange(preds.n_predictions) - np.repeat(preds.offsets[:-1], preds.counts))
        rank = _global_ranks(preds.score, cand, tie_key)
        order = np.argsort(rank, kind="stable")
        cand, rank = cand[order], rank[order]
        for t in ap_thresholds:
            m = hit(tiou[cand], t, iou_rule) & ~hit(prev[cand], t, iou_rule)
            ap_vals.append(ap_from_tp_ranks(rank[m] + 1, n_pairs))
    else:
        ap_vals = [0.0] * len(ap_thresholds)

    recall = {str(k): float(np.mean(hit(topk[k], recall_iou, iou_rule))) for k in ks}

    labels = pairs["label"].to_numpy(object)
    lab_codes, lab_names = pd.factorize(labels, sort=True)
    qlen = pairs["query_end_step"].to_numpy(np.float64) - pairs["query_start_step"].to_numpy(np.float64)
    q_codes, q_names = _bins(qlen, length_bins, _length_name)
    step_w = pairs["ref_end_step"].to_numpy(np.float64) - pairs["ref_start_step"].to_numpy(np.float64)
    ratio = (pairs["gt_end_step"].to_numpy(np.float64) - pairs["gt_start_step"].to_numpy(np.float64)) / step_w
    r_codes, r_names = _bins(ratio, ratio_bins, _ratio_name)
    hitsf = hits.astype(np.float64)

    return {
        "protocol": "reloc-temporal",
        "unit": preds.unit,
        "iou_rule": iou_rule,
        "average": average,
        "average_thresholds": [float(t) for t in average_thresholds],
        "map_at_iou": {thr_key(t): float(v) for t, v in zip(thresholds, map_vals)},
        "recall_at_k": recall,
        "recall_iou": float(recall_iou),
        "ap": float(np.mean(ap_vals)) if ap_vals else 0.0,
        "ap_at_iou": {thr_key(t): float(v) for t, v in zip(ap_thresholds, ap_vals)},
        "ci95": [float(lo), float(hi)],
        "n_bootstrap": int(n_bootstrap),
        "seed": int(seed),
        "mean_top1_tiou": float(np.mean(np.where(np.isfinite(top1), top1, 0.0))),
        "n_pairs": int(n_pairs),
        "n_missing": n_missing,
        "n_empty": int(np.sum(present & (counts == 0))),
        "n_clipped": n_clipped,
        "n_predictions": int(preds.n_predictions),
        "breakdowns": {
            "per_class": _breakdown(lab_codes, list(lab_names), hitsf, thresholds, avg_idx),
            "query_length_steps": _breakdown(q_codes, q_names, hitsf, thresholds, avg_idx),
            "gt_to_window_ratio": _breakdown(r_codes, r_names, hitsf, thresholds, avg_idx),
        },
    }
