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
from .geometry import ap_from_tp_ranks

__all__ = ["evaluate_temporal", "MAP_THRESHOLDS", "AVERAGE_THRESHOLDS", "AP_THRESHOLDS", "IOU_RULES",
           "thr_key", "hit"]

MAP_THRESHOLDS = tuple(k / 10 for k in range(1, 10))
AVERAGE_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
AP_THRESHOLDS = tuple(float(x) for x in np.linspace(0.5, 0.95, 10))
IOU_RULES = ("inclusive", "strict")
LENGTH_BINS = (8, 16, 32)
RATIO_BINS = (0.1, 0.25, 0.5)
_TOL = 1e-9
_SPLIT_ROWS = 1 << 21  # at least this many predictions are scored by two processes where two cores are free

_PAIR_COLUMNS = ("pair_id", "label", "query_start_step", "query_end_step", "ref_start_step",
                 "ref_end_step", "gt_start_step", "gt_end_step", "ref_start_s", "ref_end_s",
                 "gt_start_s", "gt_end_s")


def thr_key(t: float) -> str:
    """JSON key of a threshold: ``0.5 -> "0.5"``, ``0.55 -> "0.55"``."""
    return f"{float(t):g}"


def hit(values: np.ndarray, t: float, rule: str) -> np.ndarray:
    """``values >= t`` (inclusive) or ``values > t`` (strict)."""
    return values > t if rule == "strict" else values >= t


class _Scored:
    """What the evaluators need from the per-pair pass, collected bucket by bucket."""

    def __init__(self, n_pairs: int, ks: Sequence[int]):
        self.topk = {k: np.full(n_pairs, -np.inf) for k in ks}
        self.parts = []          # candidate rows: (flat index, tIoU, best tIoU ranked above, pair, position)
        self.n_outside = 0
        self.first_outside = None


def _blocks(counts: np.ndarray, starts: np.ndarray):
    """Yield (pair rows, width, flat index block or None for a contiguous full block, first flat row).

    Pairs are bucketed by their number of predictions (powers of two) so that each bucket is
    a dense (pairs x width) block; when a bucket's pairs are full and stored back to back
    (the usual case) the block is a reshaped view and nothing is gathered.
    """
    has = counts > 0
    if not has.any():
        return
    bucket = np.zeros(counts.shape[0], dtype=np.int64)
    bucket[has] = np.ceil(np.log2(counts[has])).astype(np.int64)
    for b in np.unique(bucket[has]):
        rows = np.flatnonzero(has & (bucket == b))
        c = counts[rows]
        width = int(c.max())
        st = starts[rows]
        if np.all(c == width) and np.all(np.diff(st) == width):
            yield rows, width, None, int(st[0])
        else:
            cols = np.arange(width)
            valid = cols[None, :] < c[:, None]
            yield rows, width, np.where(valid, st[:, None] + cols[None, :], -1), -1


def _score_pairs(counts, starts, start, end, score, wlen, gs, ge, *, min_thr: float, rule: str,
                 ks: Sequence[int], ties: bool) -> _Scored:
    """Per pair: rank by score (first listed first on ties), tIoU, top-k summaries and AP
    candidates, densely per bucket. ``ties`` says whether any two scores are equal (without
    ties a faster unstable sort gives the same order)."""
    out = _Scored(counts.shape[0], ks)
    for rows, width, fidx, first in _blocks(counts, starts):
        nb = rows.shape[0]
        if fidx is None:
            sl = slice(first, first + nb * width)
            S = score[sl].reshape(nb, width)
            St = start[sl].reshape(nb, width)
            En = end[sl].reshape(nb, width)
            valid = None
        else:
            valid = fidx >= 0
            safe = np.where(valid, fidx, 0)
            S = np.where(valid, score[safe], -np.inf)
            St = np.where(valid, start[safe], 0.0)
            En = np.where(valid, end[safe], 0.0)
        w = wlen[rows][:, None]
        bad = None
        if St.min(initial=0.0) < 0 or np.any(En > w):
            bad = (St < 0) | (En > w)
            if valid is not None:
                bad &= valid
        if bad is not None and bad.any():
            far = bad & ((St < -_TOL) | (En > w + _TOL))
            n_far = int(far.sum())
            if n_far:
                out.n_outside += n_far
                r, c = np.nonzero(far)
                flat = (first + r * width + c) if fidx is None else fidx[r, c]
                f = int(flat.min())
                out.first_outside = f if out.first_outside is None else min(out.first_outside, f)
            St = np.clip(St, 0.0, w)
            En = np.clip(En, 0.0, w)
        g0, g1 = gs[rows][:, None], ge[rows][:, None]
        inter = np.minimum(En, g1)
        inter -= np.maximum(St, g0)
        np.maximum(inter, 0.0, out=inter)
        union = En - St
        union += g1 - g0
        union -= inter
        T = inter
        T /= union  # the ground truth has positive length, so the union does too
        if valid is not None:
            T[~valid] = -np.inf
        order = np.argsort(-S, axis=1, kind="stable" if ties else "quicksort")
        Ts = np.take_along_axis(T, order, axis=1)
        run = np.maximum.accumulate(Ts, axis=1)
        for k in ks:
            out.topk[k][rows] = run[:, min(k, width) - 1]
        before = np.empty_like(run)
        before[:, 0] = -np.inf
        before[:, 1:] = run[:, :-1]
        cand = (Ts > before) & hit(Ts, min_thr, rule)
        r, c = np.nonzero(cand)
        pos = order[r, c]
        flat = (first + r * width + pos) if fidx is None else fidx[r, pos]
        out.parts.append((flat, Ts[r, c], before[r, c], rows[r], pos))
    return out


def _score_pairs_in_two(counts, starts, *args, **kw) -> _Scored:
    """:func:`_score_pairs`, the pairs holding the second half of the predictions scored by a
    forked second process (see :mod:`relocbench._fork`). Every pair's values are computed by
    the same code on the same rows, so the result is the one of one process."""
    from .._fork import Forked, second_process

    total = int(counts.sum())
    if total < _SPLIT_ROWS or counts.shape[0] < 2 or not second_process():
        return _score_pairs(counts, starts, *args, **kw)
    h = int(np.searchsorted(np.cumsum(counts), total // 2, side="right"))
    h = min(max(h, 1), counts.shape[0] - 1)
    first, second = counts.copy(), counts.copy()
    first[h:] = 0  # a pair without predictions is left out of the blocks
    second[:h] = 0
    with Forked(lambda: _score_pairs(second, starts, *args, **kw), "scoring in a second process") as child:
        a = _score_pairs(first, starts, *args, **kw)
        b = child.result(fallback=lambda: _score_pairs(second, starts, *args, **kw))
    for k, top in a.topk.items():
        top[h:] = b.topk[k][h:]
    a.parts += b.parts  # candidates are ranked by (score, tie key) later: their order is free
    a.n_outside += b.n_outside
    if b.first_outside is not None:
        a.first_outside = b.first_outside if a.first_outside is None else min(a.first_outside, b.first_outside)
    return a


def _global_ranks(score: np.ndarray, s_sorted: np.ndarray, ties: bool, cand_score: np.ndarray,
                  cand_tie: np.ndarray, tie_key_of) -> tuple:
    """Order candidates by (descending score, tie key) and give their 0-based rank among all rows.

    ``tie_key_of(rows)`` returns the tie key of arbitrary rows; it is only called when some
    scores are equal.
    """
    n = score.shape[0]
    if ties:
        order = np.lexsort((cand_tie, -cand_score))
    else:
        order = np.argsort(-cand_score)
    s = cand_score[order]
    rank = (n - np.searchsorted(s_sorted, s, side="right")).astype(np.int64)
    if ties:
        lo = np.searchsorted(s_sorted, s, side="left")
        tied = (n - lo - rank) > 1
        if tied.any():
            vals = np.unique(s[tied])
            members = np.flatnonzero(np.isin(score, vals))
            mkey = np.asarray(tie_key_of(members), dtype=np.int64)
            big = int(max(mkey.max(), cand_tie.max())) + 1
            # one integer per (score, tie key): position of the score among the tied values, then the key
            comb = np.sort(np.searchsorted(vals, score[members]).astype(np.int64) * big + mkey)
            cs, ct = s[tied], cand_tie[order][tied]
            vcode = np.searchsorted(vals, cs).astype(np.int64)
            within = np.searchsorted(comb, vcode * big + ct) - np.searchsorted(comb, vcode * big)
            rank[tied] += within
    return order, rank


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


def _breakdown(codes: np.ndarray, names: Sequence[str], n_hit: np.ndarray, pos: Sequence[int],
               thresholds, avg_idx) -> Dict:
    """Per group: n_pairs, average and mAP@1 per threshold.

    ``n_hit[i]`` is the number of (sorted) thresholds pair i clears; threshold j sits at
    sorted position ``pos[j]``, so pair i hits it iff ``n_hit[i] > pos[j]``.
    """
    g, nt = len(names), len(thresholds)
    table = np.bincount(codes * (nt + 1) + n_hit, minlength=g * (nt + 1)).reshape(g, nt + 1)
    at_least = np.cumsum(table[:, ::-1], axis=1)[:, ::-1]  # at_least[:, h] = pairs clearing >= h thresholds
    n = table.sum(axis=1)
    out = {}
    for j in np.flatnonzero(n):
        m = np.array([at_least[j, p + 1] for p in pos]) / n[j]
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
    gidx = match_pair_ids(preds.pair_ids, pairs["pair_id"], source=src)

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

    ap_thresholds = tuple(float(t) for t in ap_thresholds)
    ks_all = tuple(sorted(set(ks) | {1}))
    min_thr = min(ap_thresholds) if ap_thresholds else np.inf
    s_sorted = np.sort(preds.score)
    ties = s_sorted.shape[0] > 1 and bool(np.any(s_sorted[1:] == s_sorted[:-1]))
    sc = _score_pairs_in_two(counts, starts, preds.start, preds.end, preds.score, wlen, gs, ge,
                             min_thr=min_thr, rule=iou_rule, ks=ks_all, ties=ties)
    n_clipped = sc.n_outside
    if n_clipped and not clip:
        i = sc.first_outside
        k = int(np.searchsorted(preds.offsets, i, side="right") - 1)
        raise PredictionError(
            f"segment [{float(preds.start[i])!r}, {float(preds.end[i])!r}] lies outside the reference window "
            f"[0, {float(wlen[gidx[k]])!r}] ({preds.unit}s; {n_clipped} such segment(s)); "
            "pass --clip (clip=True) to clip and count them", file=src, item=preds.item(i))
    top1 = sc.topk[1]

    # Hits are monotone in the threshold: count the thresholds each top-1 tIoU clears.
    side = "left" if iou_rule == "strict" else "right"
    thr_sorted = np.sort(np.asarray(thresholds))
    n_hit = np.searchsorted(thr_sorted, top1, side=side)  # thresholds t with hit(top1, t)
    pos = [int(np.searchsorted(thr_sorted, t, side="left")) for t in thresholds]
    n_at_least = np.cumsum(np.bincount(n_hit, minlength=len(thresholds) + 1)[::-1])[::-1]
    map_vals = np.array([n_at_least[p + 1] for p in pos]) / n_pairs
    avg_idx = [thresholds.index(float(t)) for t in average_thresholds]
    average = float(np.mean(map_vals[avg_idx]))

    # Bootstrap over pairs: multinomial over the distinct per-pair contributions.
    avg_sorted = np.sort(np.asarray([float(t) for t in average_thresholds]))
    nh = np.searchsorted(avg_sorted, top1, side=side)
    freq = np.bincount(nh, minlength=len(avg_idx) + 1) / n_pairs
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n_pairs, freq, size=n_bootstrap)
    boot = draws @ (np.arange(len(avg_idx) + 1) / len(avg_idx)) / n_pairs
    lo, hi = np.percentile(boot, [2.5, 97.5])

    # Pooled ActivityNet-style AP: a row is the TP of its pair at t iff (best above it) < t <= tIoU.
    ap_vals = []
    if sc.parts:
        flat, ctiou, cprev, cpair, cpos = (np.concatenate(x) for x in zip(*sc.parts))
    else:
        flat = cpair = cpos = np.zeros(0, dtype=np.int64)
        ctiou = cprev = np.zeros(0)
    new_off = np.concatenate([[0], np.cumsum(counts)])

    def tie_key_of(rows):  # manifest position of the pair, then position in its list
        k = np.searchsorted(preds.offsets, rows, side="right") - 1
        return new_off[gidx[k]] + (rows - preds.offsets[k])

    order, rank = _global_ranks(preds.score, s_sorted, ties, preds.score[flat], new_off[cpair] + cpos, tie_key_of)
    ctiou, cprev = ctiou[order], cprev[order]
    for t in ap_thresholds:
        m = hit(ctiou, t, iou_rule) & ~hit(cprev, t, iou_rule)
        ap_vals.append(ap_from_tp_ranks(rank[m] + 1, n_pairs))

    recall = {str(k): float(np.mean(hit(sc.topk[k], recall_iou, iou_rule))) for k in ks}

    lab_codes, lab_names = pd.factorize(pairs["label"], sort=True)
    qlen = pairs["query_end_step"].to_numpy(np.float64) - pairs["query_start_step"].to_numpy(np.float64)
    q_codes, q_names = _bins(qlen, length_bins, _length_name)
    step_w = pairs["ref_end_step"].to_numpy(np.float64) - pairs["ref_start_step"].to_numpy(np.float64)
    ratio = (pairs["gt_end_step"].to_numpy(np.float64) - pairs["gt_start_step"].to_numpy(np.float64)) / step_w
    r_codes, r_names = _bins(ratio, ratio_bins, _ratio_name)

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
        "mean_top1_tiou": float(np.sum(top1[np.isfinite(top1)]) / n_pairs),
        "n_pairs": int(n_pairs),
        "n_missing": n_missing,
        "n_empty": int(np.sum(present & (counts == 0))),
        "n_clipped": n_clipped,
        "n_predictions": int(preds.n_predictions),
        "breakdowns": {
            "per_class": _breakdown(lab_codes, list(lab_names), n_hit, pos, thresholds, avg_idx),
            "query_length_steps": _breakdown(q_codes, q_names, n_hit, pos, thresholds, avg_idx),
            "gt_to_window_ratio": _breakdown(r_codes, r_names, n_hit, pos, thresholds, avg_idx),
        },
    }
