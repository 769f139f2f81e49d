"""``activitynet-proposal``: the official ActivityNet proposal evaluation (AR@AN and AUC), offline.

Behaviour (the official ``eval_proposal.py`` with its command-line default of 100 proposals):

* Ground truth: the annotations of one ``subset`` (read as for ``activitynet-detection``;
  labels are ignored); the videos are those with at least one annotation. Blocked videos
  (a local list, never fetched) are removed from ground truth and proposals, and counted.
* Proposals (``results``: ``{video: [{"segment": [start, end], "score": s}]}``; a ``label``
  is allowed and ignored; read by the detection reader without labels) are not filtered by subset: proposals on videos without ground
  truth are not scored, but they count in the total that sets the budget ratio.
* Budget: ``ratio = max_avg_nr_proposals * n_videos / n_proposals`` (every proposal read);
  each ground-truth video keeps its ``min(int(n * ratio), n)`` best-scored proposals (``n``
  its own count), and ``n_kept`` is their sum over videos. Without ``max_avg_nr_proposals``
  (``None`` or 0) it is ``n_proposals / n_videos``.
* Curve: 100 points ``p_j = j / 100 * max_avg_nr_proposals * n_videos / n_kept``
  (j = 1..100); at point j a video looks at its first ``min(int(m * p_j), m)`` kept
  proposals (``m`` its number of kept proposals). A ground truth is recalled at tIoU
  threshold t when one of them has tIoU ``>= t`` with it. ``recall[t, j]`` is the fraction
  of all ground truths recalled, ``average_recall`` its mean over thresholds,
  ``average_nr_proposals[j] = p_j * n_kept / n_videos`` (up to ``max_avg_nr_proposals``).
* ``auc``: the trapezoid area under ``average_recall`` against ``average_nr_proposals``
  divided by the last ``average_nr_proposals`` (a fraction; the official script prints it
  times 100). ``ar_at_an[k]``: ``average_recall`` at ``k`` proposals per video, linearly
  interpolated between curve points (exact on the grid, which holds 1, 5, 10 and 100 for
  the default budget); ``None`` outside the curve.
* A ground-truth video without any proposal is scored as the official code does: one
  proposal of tIoU 0 that is not counted in ``n_kept`` (it only matters at a threshold 0).
  A tIoU of two zero-length segments is 0/0 and never a hit.

Tie rule. The official code orders a video's proposals with ``argsort()[::-1]`` on the
scores; relocbench fixes its tie choice as for ``activitynet-detection``: among proposals
of equal score, the one listed later in the file comes first. For distinct scores the
result is exactly the official one.

Vectorised: one lexsort ranks every proposal within its video; every (ground truth, kept
proposal) pair of a video gets its tIoU (a block of ground truths at a time: memory stays
near that of the proposals); in rank order the first pair clearing each threshold gives
the ground truth's first-hit rank, and a ground truth is recalled at curve point j exactly
when that rank is below its video's cut at j.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import ConfigError, PredictionError
from .activitynet import ANET_TIOU_THRESHOLDS, check_thresholds_and_blocked, ground_truth_arrays, read_activitynet_arrays
from .._fork import Forked, second_process
from .geometry import descending_order

__all__ = ["activitynet_proposal", "read_activitynet_proposals", "proposal_recall_curve", "proposal_documents",
           "AR_AT_AN"]

AR_AT_AN = (1, 5, 10, 100)
N_CURVE_POINTS = 100
_PAIR_BLOCK = 1 << 21  # (ground truth, proposal) rows scored at once
_SPLIT_PAIRS = 1 << 22  # at least this many such rows are scored by two processes where two cores are free
PathLike = Union[str, os.PathLike]


def read_activitynet_proposals(doc: Union[PathLike, Mapping], blocked: Iterable[str] = ()) -> Tuple[Any, dict]:
    """Proposals (``results``) as a table of video/t_start/t_end/score plus a report.

    Read by the ActivityNet predictions reader (:func:`read_activitynet_arrays` without
    labels): entries need ``segment`` and ``score``, a ``label`` is ignored.
    """
    import pandas as pd  # only this table needs it: scoring works on arrays

    names, counts, segs, scores, report = _read_proposal_arrays(doc, blocked)
    pred = pd.DataFrame({"video": np.repeat(np.array(names, dtype=object), counts), "t_start": segs[:, 0],
                         "t_end": segs[:, 1], "score": scores})
    return pred, report


def _read_proposal_arrays(doc, blocked):
    """(video names, proposals per video, (n, 2) segments, scores, report), checked."""
    vids, counts, segs, scores, _, _, n_blocked = read_activitynet_arrays(doc, blocked, labels=False,
                                                                          what="ActivityNet proposals file")
    return (list(vids), np.asarray(counts, dtype=np.int64), segs, scores,
            {"proposals on blocked videos (skipped)": int(n_blocked)})


def proposal_documents(preds, pairs, *, subset: str) -> Tuple[dict, dict, Dict[str, int]]:
    """(ground-truth document, proposals document, report) of temporal re-localization
    predictions (:class:`relocbench.predictions.TemporalPredictions`) over a pairs table, as
    this metric reads them: one "video" per pair (its id is the pair id) whose ground truth
    is the pair's segment and whose proposals are the pair's ranked predictions (segment and
    score, in the predictions' unit, relative to the reference window).

    ``pairs`` is the manifest's pairs table of the predicted split (every pair id of ``preds``
    must be in it); ``subset`` names the ground truth's subset (the split).
    """
    from ..predictions import match_pair_ids

    gidx = match_pair_ids(preds.pair_ids, pairs["pair_id"], source=preds.source)
    cols = ("gt_start_step", "gt_end_step") if preds.unit == "step" else ("gt_start_s", "gt_end_s")
    gs, ge = (pairs[c].to_numpy(np.float64) for c in cols)
    ids = pairs["pair_id"].astype(str).tolist()
    labels = pairs["label"].astype(str).tolist()
    database = {pid: {"subset": subset, "annotations": [{"segment": [float(gs[i]), float(ge[i])],
                                                          "label": labels[i]}]}
                for i, pid in enumerate(ids)}
    results: Dict[str, List[dict]] = {}
    off = preds.offsets
    for k, i in enumerate(gidx.tolist()):
        rows = range(int(off[k]), int(off[k + 1]))
        results[ids[i]] = [{"segment": [float(preds.start[j]), float(preds.end[j])], "score": float(preds.score[j])}
                           for j in rows]
    version = f"relocbench pairs of {preds.manifest or 'a manifest'} ({subset}) as videos"
    report = {"pairs": len(ids), "pairs without predictions (scored as misses)": len(ids) - len(gidx),
              "proposals": int(preds.n_predictions)}
    return ({"version": version, "taxonomy": [], "database": database},
            {"version": version, "results": results, "external_data": {"used": False}}, report)


def _tiou_nan(s1, e1, s2, e2) -> np.ndarray:
    """tIoU as the official code computes it: 0/0 (two zero-length segments) is NaN."""
    inter = np.clip(np.minimum(e1, e2) - np.maximum(s1, s2), 0.0, None)
    union = (e2 - s2) + (e1 - s1) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def proposal_recall_curve(gt_video: np.ndarray, gt_t: np.ndarray, prop_video: np.ndarray, prop_t: np.ndarray,
                          prop_score: np.ndarray, n_videos: int, n_proposals: int,
                          max_avg_nr_proposals: float, thresholds: Sequence[float],
                          source: Optional[str] = None) -> Dict[str, Any]:
    """The official recall curve from integer video codes (see the module docstring).

    ``gt_video`` codes lie in ``[0, n_videos)``; ``prop_video`` holds the codes of the
    proposals on ground-truth videos (in file order); ``n_proposals`` counts every proposal
    read, scored or not. Returns ``recall`` (n_thresholds, 100), ``average_recall``,
    ``average_nr_proposals`` and ``n_kept``.
    """
    thr = np.asarray(thresholds, dtype=np.float64)
    ratio = max_avg_nr_proposals * float(n_videos) / n_proposals
    n_prop_video = np.bincount(prop_video, minlength=n_videos)
    keep_video = np.minimum((n_prop_video * ratio).astype(np.int64), n_prop_video)
    n_kept = int(keep_video.sum())
    if n_kept == 0:
        raise PredictionError(f"no proposal on a ground-truth video is within the budget of "
                              f"{max_avg_nr_proposals:g} per video ({n_proposals} proposals in all, "
                              f"{int(n_prop_video.sum())} on ground-truth videos)", file=source)
    n = prop_video.shape[0]
    # Rank within video: score descending, the later row first on ties, then a sort by
    # (video, global position), whose keys are unique.
    by_score = descending_order(prop_score, later_first=True)
    pos = np.empty(n, dtype=np.int64)
    pos[by_score] = np.arange(n)
    order = np.argsort(prop_video.astype(np.int64) * max(n, 1) + pos)
    sv = prop_video[order]
    start = np.searchsorted(sv, np.arange(n_videos), side="left")
    rank = np.arange(n) - start[sv]
    kept = rank < keep_video[sv]
    k_idx = order[kept]
    del by_score, pos, order, sv, rank, kept
    kstart = np.cumsum(keep_video) - keep_video   # kept proposals: by video, then rank
    n_gt = gt_video.shape[0]
    nt = thr.shape[0]
    rtype = np.int32 if n < 2 ** 31 else np.int64   # ranks (half the memory where they fit)
    big = np.iinfo(rtype).max
    t_idx = np.argsort(thr, kind="stable")
    ts = thr[t_idx]
    levels = nt + 1
    weight = keep_video[gt_video]

    def first_hits(lo: int, hi: int) -> np.ndarray:
        """First-hit rank per (threshold, ground truth) of ground truths ``lo:hi``."""
        out = np.full((nt, hi - lo), big, dtype=rtype)
        # Every (ground truth, kept proposal) of one video, by ground truth then rank, a block
        # of ground truths at a time (the pairs of one block stay near _PAIR_BLOCK rows). A
        # pair's level is the number of thresholds its tIoU clears; along a ground truth's ranks
        # the running maximum of the level first reaches k + 1 at the first hit at threshold k,
        # whose rank is therefore the number of pairs whose running maximum is at most k (exact
        # integer arithmetic, no loop over thresholds).
        for a, b in _blocks(weight[lo:hi], _PAIR_BLOCK):
            a, b = a + lo, b + lo
            c = keep_video[gt_video[a:b]]
            g = np.repeat(np.arange(b - a, dtype=np.int64), c)
            seg0 = np.cumsum(c) - c
            pr = np.arange(g.shape[0], dtype=np.int64) - np.repeat(seg0, c)   # rank of the proposal
            pt = prop_t[k_idx[np.repeat(kstart[gt_video[a:b]], c) + pr]]
            tiou = _tiou_nan(pt[:, 0], pt[:, 1], gt_t[a:b][g, 0], gt_t[a:b][g, 1])
            del pt, pr
            lvl = np.searchsorted(ts, tiou, side="right")
            lvl[np.isnan(tiou)] = 0   # 0/0 is never a hit
            del tiou
            lvl += levels * g          # segments made increasing: a running maximum per ground truth
            np.maximum.accumulate(lvl, out=lvl)
            lvl -= levels * g
            cum = np.cumsum(np.bincount(g * levels + lvl, minlength=(b - a) * levels).reshape(b - a, levels), axis=1)
            del g, lvl
            fr = cum[:, :nt].T         # (thresholds in sorted order, block)
            out[t_idx, a - lo:b - lo] = np.where(fr < c[None, :], fr, big)
        return out

    total = int(weight.sum())
    if total >= _SPLIT_PAIRS and n_gt >= 2 and second_process():
        # the ground truths holding the second half of the pairs in a forked second process
        h = min(max(int(np.searchsorted(np.cumsum(weight), total // 2, side="right")), 1), n_gt - 1)
        with Forked(lambda: first_hits(h, n_gt), "the proposal curve in a second process") as child:
            head = first_hits(0, h)
            tail = child.result(fallback=lambda: first_hits(h, n_gt))
        first = np.concatenate([head, tail], axis=1)
        del head, tail
    else:
        first = first_hits(0, n_gt)
    # Ground-truth videos without proposals: one phantom proposal of tIoU 0 (official behaviour).
    cols = keep_video.copy()
    empty = n_prop_video == 0
    cols[empty] = 1
    phantom = empty[gt_video]
    first[np.ix_(thr <= 0.0, phantom)] = 0
    pcn = np.arange(1, N_CURVE_POINTS + 1) / 100.0 * (max_avg_nr_proposals * float(n_videos) / n_kept)
    # recalled at point j: first-hit rank below the ground truth's cut min(int(m * p_j), m),
    # which depends only on its video's number m of columns: count by m
    hits = np.zeros((nt, N_CURVE_POINTS), dtype=np.int64)
    cg = cols[gt_video]
    by_m = np.argsort(cg, kind="stable")
    m_sorted = cg[by_m]
    bounds = np.flatnonzero(np.append(True, m_sorted[1:] != m_sorted[:-1]))
    step = max(1, _PAIR_BLOCK // (4 * nt))
    for lo, hi in zip(bounds.tolist(), np.append(bounds[1:], n_gt).tolist()):
        m = int(m_sorted[lo])
        cut = np.minimum((m * pcn).astype(np.int64), m)           # (points,)
        base = np.arange(nt, dtype=np.int64)[:, None] * (m + 1)
        for a in range(lo, hi, step):
            f = np.minimum(first[:, by_m[a:min(hi, a + step)]], m)   # never a hit: m (no cut exceeds m)
            hist = np.bincount((base + f).ravel(), minlength=nt * (m + 1)).reshape(nt, m + 1)
            below = np.concatenate([np.zeros((nt, 1), np.int64), np.cumsum(hist, axis=1)], axis=1)
            hits += below[:, cut]                                  # number of first-hit ranks < cut
    recall = hits / float(n_gt)
    avg = recall.mean(axis=0)
    return {"recall": recall, "average_recall": avg, "average_nr_proposals": pcn * (float(n_kept) / n_videos),
            "n_kept": n_kept}


def _blocks(weights: np.ndarray, size: int):
    """(start, stop) ranges of consecutive rows whose ``weights`` sum to about ``size``
    (a row heavier than ``size`` is a block of its own)."""
    n = weights.shape[0]
    ends = np.cumsum(weights)
    a = 0
    while a < n:
        base = ends[a - 1] if a else 0
        b = max(a + 1, int(np.searchsorted(ends, base + size, side="right")))
        yield a, min(b, n)
        a = b


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def _ar_at(an: np.ndarray, avg: np.ndarray, k: float) -> Optional[float]:
    if k < an[0] - 1e-9 * k or k > an[-1] + 1e-9 * k:
        return None
    return float(np.interp(k, an, avg))


def activitynet_proposal(
    ground_truth: Union[PathLike, Mapping],
    proposals: Union[PathLike, Mapping],
    *,
    subset: str = "validation",
    max_avg_nr_proposals: Optional[float] = 100,
    tiou_thresholds: Sequence[float] = ANET_TIOU_THRESHOLDS,
    blocked_videos: Union[PathLike, Iterable[str], None] = None,
) -> Dict[str, Any]:
    """Official ActivityNet proposal AR@AN and AUC (see the module docstring), no network access.

    >>> gt = {"database": {"v": {"subset": "validation",
    ...       "annotations": [{"segment": [0, 10], "label": "a"}]}}}
    >>> pr = {"results": {"v": [{"segment": [0, 10], "score": 0.9}]}}
    >>> r = activitynet_proposal(gt, pr)
    >>> r["ar_at_an"]["1"], r["auc"]  # a perfect hit at every budget; the curve starts at 1 per video
    (1.0, 0.99)
    """
    thr, blocked = check_thresholds_and_blocked(tiou_thresholds, blocked_videos)
    m = max_avg_nr_proposals
    if m is not None and not (isinstance(m, (int, float)) and not isinstance(m, bool) and np.isfinite(m) and m >= 0):
        raise ConfigError("The 'max_avg_nr_proposals' parameter must be a number >= 0 (0 or None: all proposals). "
                          f"Got {max_avg_nr_proposals!r} instead.")
    src = None if isinstance(proposals, Mapping) else str(proposals)
    gt_vids, gt_counts, gt_t, _, _, rep_gt = ground_truth_arrays(ground_truth, subset, blocked)
    names, counts, segs, scores, rep_prop = _read_proposal_arrays(proposals, blocked)
    n_prop = int(counts.sum())
    if n_prop == 0:
        n_bl = next(iter(rep_prop.values()))
        raise PredictionError(f"expected at least one proposal, found none ({n_bl} on blocked videos skipped)",
                              file=src)
    has_gt = gt_counts > 0  # the videos are those with at least one annotation
    code: Dict[str, int] = {}  # video -> its index, in order of first appearance
    vcode = np.array([code.setdefault(v, len(code)) for v, h in zip(gt_vids, has_gt) if h], dtype=np.int64)
    gvid = np.repeat(vcode, gt_counts[has_gt])
    n_vid = len(code)
    budget = float(max_avg_nr_proposals) if max_avg_nr_proposals else n_prop / float(n_vid)
    pvid = np.repeat(np.array([code.get(v, -1) for v in names], dtype=np.int64), counts)
    on_gt = pvid >= 0
    if not on_gt.all():
        pvid, segs, scores = pvid[on_gt], segs[on_gt], scores[on_gt]
    cur = proposal_recall_curve(gvid.astype(np.int64), gt_t, pvid.astype(np.int64, copy=False), segs, scores,
                                n_vid, n_prop, budget, thr, source=src)
    an, avg = cur["average_nr_proposals"], cur["average_recall"]
    return {
        "protocol": "activitynet-proposal",
        "subset": subset,
        "tiou_thresholds": thr,
        "max_avg_nr_proposals": budget,
        "auc": _trapezoid(avg, an) / float(an[-1]),
        "ar_at_an": {str(k): _ar_at(an, avg, k) for k in AR_AT_AN},
        "average_recall": [float(v) for v in avg],
        "average_nr_proposals": [float(v) for v in an],
        "recall": [[float(v) for v in row] for row in cur["recall"]],
        "n_videos": n_vid,
        "n_ground_truth": int(len(gt_t)),
        "n_proposals": n_prop,
        "n_proposals_kept": cur["n_kept"],
        "skipped": {**rep_gt, **rep_prop,
                    "proposals on videos without ground truth (not scored, counted in the budget)":
                        int((~on_gt).sum())},
    }
