"""``activitynet-detection``: the official ActivityNet temporal detection evaluation, offline.

Behaviour (reference-algorithms.md Sec. 6, the official ``eval_detection.py``):

* Ground truth: ``database`` entries of one ``subset``; the classes are the labels seen in
  that subset (in order of first appearance). Blocked videos (``blocked_videos``, read from a
  local file, never fetched) are removed from ground truth and predictions, and counted.
* Predictions (``results``: ``{video: [{"label", "segment", "score"}]}``) are not filtered by
  subset; a prediction on a video without ground truth of its class is a false positive; a
  label unknown to the ground truth is an error.
* Per class and tIoU threshold (``np.linspace(0.5, 0.95, 10)``), predictions in descending
  score each walk their same-video ground truths in descending tIoU: below the threshold ->
  false positive; already taken -> next one (fall-through); else true positive.
* AP: all-point interpolated VOC AP; a class without predictions has AP 0; mAP is the mean
  over classes and ``average_mAP`` the mean over thresholds.

Tie rule. The official code sorts with ``argsort()[::-1]``; when NumPy's sort keeps equal
keys in order (it does for small arrays, not in general) that reverses them. relocbench
fixes that choice: among predictions of equal score the one listed later in the file goes
first, and among ground truths of equal tIoU the one listed later is tried first. For
distinct scores (and distinct tIoUs) the result is exactly the official one.

The greedy matching is vectorised by rounds: every unresolved prediction proposes its best
untaken ground truth; in each (threshold, class, video) group the predictions before the
first repeated proposal take what they proposed (the sequential walk would give them the
same boxes), the rest try again. Each round takes at least one box per active group, so
the number of rounds is bounded by the largest number of ground truths in one
(class, video) plus one, never by the number of predictions.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from ..errors import ConfigError, InputError, PredictionError
from ..io import read_json
from ..predictions import load_json_strict
from .frame_ap import candidate_pairs
from .geometry import _tiou_arrays, ap_from_tp_ranks, group_starts

__all__ = ["activitynet_detection", "read_activitynet_ground_truth", "read_activitynet_predictions",
           "read_blocked_videos", "ANET_TIOU_THRESHOLDS", "anet_true_positives"]

ANET_TIOU_THRESHOLDS = tuple(float(x) for x in np.linspace(0.5, 0.95, 10))
PathLike = Union[str, os.PathLike]


def read_blocked_videos(path: PathLike) -> list:
    """A local blocked-videos list: a JSON list of ids, or a text file with one id per line."""
    p = Path(path)
    text = p.read_text(encoding="utf-8") if p.is_file() else None
    if text is None:
        raise InputError("blocked-videos file not found", file=p)
    if text.lstrip().startswith("["):
        doc = read_json(p, "blocked-videos file")
        if not all(isinstance(v, str) for v in doc):
            raise InputError("expected a JSON list of video id strings", file=p)
        return list(doc)
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def read_activitynet_ground_truth(doc: Union[PathLike, Mapping], subset: str = "validation",
                                  blocked: Iterable[str] = ()) -> Tuple[pd.DataFrame, list, dict]:
    """Ground truth of one subset as (table of video/label/t_start/t_end, class names, report)."""
    src = None
    if not isinstance(doc, Mapping):
        src = str(doc)
        doc = read_json(doc, "ActivityNet ground-truth file")
    if not isinstance(doc, Mapping) or "database" not in doc or not isinstance(doc["database"], Mapping):
        raise InputError("expected an ActivityNet ground-truth object with a 'database' mapping", file=src)
    blocked = set(blocked)
    videos, labels, t0, t1 = [], [], [], []
    classes: Dict[str, int] = {}
    n_blocked = 0
    subsets = set()
    for vid, v in doc["database"].items():
        if not isinstance(v, Mapping) or "subset" not in v:
            raise InputError("expected an object with 'subset' and 'annotations'", file=src, item=f"video {vid!r}")
        subsets.add(v["subset"])
        if v["subset"] != subset:
            continue
        if vid in blocked:
            n_blocked += len(v.get("annotations", []))
            continue
        for i, ann in enumerate(v.get("annotations", [])):
            try:
                s, e = (float(x) for x in ann["segment"])
                lab = ann["label"]
            except (KeyError, TypeError, ValueError):
                raise InputError(f"expected {{'segment': [start, end], 'label': name}}, found {ann!r:.80}",
                                 file=src, item=f"video {vid!r}: annotation {i}") from None
            if not (np.isfinite(s) and np.isfinite(e)) or e < s:
                raise InputError(f"segment [{s}, {e}] must be finite with start <= end", file=src,
                                 item=f"video {vid!r}: annotation {i}")
            classes.setdefault(lab, len(classes))
            videos.append(vid)
            labels.append(lab)
            t0.append(s)
            t1.append(e)
    if not videos:
        raise InputError(f"no ground truth in subset {subset!r} (subsets present: {sorted(map(str, subsets))})",
                         file=src)
    gt = pd.DataFrame({"video": videos, "label": labels, "t_start": np.asarray(t0, dtype=np.float64),
                       "t_end": np.asarray(t1, dtype=np.float64)})
    return gt, list(classes), {"ground truth on blocked videos (skipped)": n_blocked}


def read_activitynet_predictions(doc: Union[PathLike, Mapping], blocked: Iterable[str] = ()) -> Tuple[pd.DataFrame, dict]:
    """Predictions (``results``) as a table of video/label/t_start/t_end/score plus a report."""
    src = None
    if not isinstance(doc, Mapping):
        src = str(doc)
        doc = load_json_strict(doc, "ActivityNet predictions file")
    if not isinstance(doc, Mapping) or not isinstance(doc.get("results"), Mapping):
        raise PredictionError("expected an ActivityNet predictions object with a 'results' mapping", file=src)
    blocked = set(blocked)
    try:
        pred, n_blocked = _predictions_fast(doc["results"], blocked)
    except (KeyError, TypeError, ValueError, IndexError):
        pred, n_blocked = _predictions_checked(doc["results"], blocked, src)  # raises, naming the item
    _check_pred_values(pred, src)
    return pred, {"predictions on blocked videos (skipped)": n_blocked}


def _predictions_fast(results: Mapping, blocked: set):
    """Flatten well-formed results with list comprehensions; any malformed entry raises."""
    vids, counts, labels, seg, scores = [], [], [], [], []
    n_blocked = 0
    for vid, lst in results.items():
        if not isinstance(lst, list):
            raise TypeError(vid)
        if vid in blocked:
            n_blocked += len(lst)
            continue
        vids.append(vid)
        counts.append(len(lst))
        labels.extend([r["label"] for r in lst])
        seg.extend([r["segment"] for r in lst])
        scores.extend([r["score"] for r in lst])
    segs = np.array(seg, dtype=np.float64).reshape(-1, 2)
    if segs.shape[0] != len(labels) or not all(isinstance(x, str) for x in labels):
        raise ValueError("malformed")
    if any(isinstance(x, (bool, str)) for x in scores):
        raise ValueError("malformed")
    pred = pd.DataFrame({"video": np.repeat(np.array(vids, dtype=object), counts), "label": labels,
                         "t_start": segs[:, 0], "t_end": segs[:, 1], "score": np.array(scores, dtype=np.float64)})
    return pred, n_blocked


def _predictions_checked(results: Mapping, blocked: set, src):
    """The slow twin of :func:`_predictions_fast` that names the first malformed entry."""
    videos, labels, seg, scores = [], [], [], []
    n_blocked = 0
    for vid, lst in results.items():
        if not isinstance(lst, list):
            raise PredictionError(f"expected a list of predictions, found {type(lst).__name__}", file=src,
                                  item=f"video {vid!r}")
        if vid in blocked:
            n_blocked += len(lst)
            continue
        for i, r in enumerate(lst):
            try:
                lab, sg, sc = r["label"], r["segment"], r["score"]
                if len(sg) != 2 or not isinstance(lab, str) or isinstance(sc, (bool, str)):
                    raise ValueError
                sg = [float(sg[0]), float(sg[1])]
                sc = float(sc)
            except (KeyError, TypeError, ValueError):
                raise PredictionError(
                    f"expected {{'label': name, 'segment': [start, end], 'score': s}}, found {r!r:.80}",
                    file=src, item=f"video {vid!r}: prediction {i}") from None
            videos.append(vid)
            labels.append(lab)
            seg.append(sg)
            scores.append(sc)
    seg = np.asarray(seg, dtype=np.float64).reshape(-1, 2)
    pred = pd.DataFrame({"video": videos, "label": labels, "t_start": seg[:, 0], "t_end": seg[:, 1],
                         "score": np.asarray(scores, dtype=np.float64)})
    return pred, n_blocked


def _pred_item(pred: pd.DataFrame, i: int) -> str:
    vid = pred["video"].iloc[i]
    k = int(np.sum(pred["video"].to_numpy(object)[:i] == vid))
    return f"video {vid!r}: prediction {k}"


def _check_pred_values(pred: pd.DataFrame, src) -> None:
    vals = pred[["t_start", "t_end", "score"]].to_numpy(np.float64)
    bad = ~np.isfinite(vals).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise PredictionError(f"segment and score must be finite numbers, found {vals[i].tolist()}",
                              file=src, item=_pred_item(pred, i))
    bad = vals[:, 1] < vals[:, 0]
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise PredictionError(f"segment end {float(vals[i, 1])!r} is before its start {float(vals[i, 0])!r} "
                              f"({int(bad.sum())} such segment(s))", file=src, item=_pred_item(pred, i))


def anet_true_positives(pred_key: np.ndarray, pred_prio: np.ndarray, pred_t: np.ndarray,
                        gt_key: np.ndarray, gt_t: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """True-positive mask (n_thresholds, n_pred) of the ActivityNet greedy rule with fall-through.

    ``pred_key``/``gt_key`` are integer (class, video) codes; ``pred_prio`` is the processing
    order (a permutation, smaller first); ``pred_t``/``gt_t`` are (n, 2) segments. Ground
    truths of equal tIoU are tried later-row first.
    """
    n_pred, n_gt = pred_key.shape[0], gt_key.shape[0]
    nt = len(thresholds)
    tp = np.zeros((nt, n_pred), dtype=bool)
    d, g, _ = candidate_pairs(pred_key, gt_key)
    if d.size == 0:
        return tp
    tiou = _tiou_arrays(pred_t[d, 0], pred_t[d, 1], gt_t[g, 0], gt_t[g, 1])
    # Candidate preference: processing order, then tIoU descending, then later ground truth first.
    o = np.lexsort((-g, -tiou, pred_prio[d]))
    d, g, tiou = d[o], g[o], tiou[o]
    _, grp_of = np.unique(pred_key, return_inverse=True)
    n_grp = int(grp_of.max()) + 1 if n_pred else 1
    agents, res, groups = [], [], []
    for k, t in enumerate(thresholds):
        m = tiou >= t
        agents.append(k * n_pred + pred_prio[d[m]])   # agent id: (threshold, processing order)
        res.append(k * n_gt + g[m])
        groups.append(k * n_grp + grp_of[d[m]])
    agent = np.concatenate(agents)
    resource = np.concatenate(res)
    group = np.concatenate(groups)
    # Rows are sorted by threshold then processing order (then preference): agent ids ascend.
    locked = np.zeros(nt * n_gt, dtype=bool)
    winners = []
    while agent.size:
        first = group_starts(agent)
        p_agent, p_res, p_grp = agent[first], resource[first], group[first]
        by_res = np.lexsort((p_agent, p_res))
        dup = ~group_starts(p_res[by_res])
        cutoff = np.full(nt * n_grp, np.iinfo(np.int64).max, dtype=np.int64)
        if dup.any():
            np.minimum.at(cutoff, p_grp[by_res[dup]], p_agent[by_res[dup]])
        accept = p_agent < cutoff[p_grp]
        won_agents = p_agent[accept]
        locked[p_res[accept]] = True
        winners.append(won_agents)
        done = np.zeros(agent.size, dtype=bool)
        done[np.flatnonzero(first)[accept]] = True
        # Drop every row of an agent that won (its rows are contiguous) and every locked box.
        won_row = np.repeat(done[first], np.diff(np.append(np.flatnonzero(first), agent.size)))
        keep = ~won_row & ~locked[resource]
        agent, resource, group = agent[keep], resource[keep], group[keep]
    if winners:
        w = np.concatenate(winners)
        inv = np.empty(n_pred, dtype=np.int64)
        inv[pred_prio] = np.arange(n_pred)
        tp[w // n_pred, inv[w % n_pred]] = True
    return tp


def activitynet_detection(
    ground_truth: Union[PathLike, Mapping],
    predictions: Union[PathLike, Mapping],
    *,
    subset: str = "validation",
    tiou_thresholds: Sequence[float] = ANET_TIOU_THRESHOLDS,
    blocked_videos: Union[PathLike, Iterable[str], None] = None,
) -> Dict[str, Any]:
    """Official ActivityNet detection mAP (see the module docstring), with no network access.

    ``ground_truth`` and ``predictions`` are paths to the official JSON layouts or their
    parsed contents; ``blocked_videos`` a local file or a list of video ids.

    >>> gt = {"database": {"v": {"subset": "validation",
    ...       "annotations": [{"segment": [0, 20], "label": "a"}]}}}
    >>> pr = {"results": {"v": [{"label": "a", "segment": [0, 10], "score": 1.0}]}}
    >>> activitynet_detection(gt, pr)["average_mAP"]  # tIoU 0.5: a hit at 0.5 only
    0.1
    """
    thr = [float(t) for t in tiou_thresholds]
    if not thr or any(not (0.0 <= t <= 1.0) for t in thr):
        raise ConfigError(f"The 'tiou_thresholds' parameter must hold numbers in [0, 1]. Got {thr!r} instead.")
    if blocked_videos is None:
        blocked = []
    elif isinstance(blocked_videos, (str, os.PathLike)):
        blocked = read_blocked_videos(blocked_videos)
    else:
        blocked = list(blocked_videos)
    gt, classes, rep_gt = read_activitynet_ground_truth(ground_truth, subset, blocked)
    pred, rep_pred = read_activitynet_predictions(predictions, blocked)
    src = None if isinstance(predictions, Mapping) else str(predictions)
    cls_index = pd.Index(classes)
    pcls = cls_index.get_indexer(pred["label"].to_numpy(object))
    if (pcls < 0).any():
        i = int(np.flatnonzero(pcls < 0)[0])
        raise PredictionError(
            f"label {pred['label'].iloc[i]!r} is not a class of the ground truth in subset {subset!r} "
            f"({int((pcls < 0).sum())} prediction(s) with unknown labels)", file=src, item=_pred_item(pred, i))
    gcls = cls_index.get_indexer(gt["label"].to_numpy(object))
    vid_codes, _ = pd.factorize(np.concatenate([gt["video"].to_numpy(object), pred["video"].to_numpy(object)]))
    n_vid = int(vid_codes.max()) + 1 if vid_codes.size else 1
    gkey = gcls.astype(np.int64) * n_vid + vid_codes[: len(gt)]
    pkey = pcls.astype(np.int64) * n_vid + vid_codes[len(gt):]
    score = pred["score"].to_numpy(np.float64)
    n = len(pred)
    # Processing order: by class, descending score, later row first on ties.
    order = np.lexsort((-np.arange(n), -score, pcls))
    prio = np.empty(n, dtype=np.int64)
    prio[order] = np.arange(n)
    tp = anet_true_positives(pkey, prio, pred[["t_start", "t_end"]].to_numpy(np.float64), gkey,
                             gt[["t_start", "t_end"]].to_numpy(np.float64), thr)
    n_cls = len(classes)
    npos = np.bincount(gcls, minlength=n_cls)
    cls_sorted = pcls[order]
    cls_start = np.searchsorted(cls_sorted, np.arange(n_cls), side="left")
    ap = np.zeros((len(thr), n_cls))
    for k in range(len(thr)):
        pos = np.flatnonzero(tp[k, order])
        pc = cls_sorted[pos]
        ranks = pos - cls_start[pc] + 1
        bounds = np.searchsorted(pc, np.arange(n_cls + 1), side="left")
        for c in range(n_cls):
            ap[k, c] = ap_from_tp_ranks(ranks[bounds[c]:bounds[c + 1]], int(npos[c]))
    mAP = ap.mean(axis=1)
    return {
        "protocol": "activitynet-detection",
        "subset": subset,
        "tiou_thresholds": thr,
        "mAP": [float(v) for v in mAP],
        "average_mAP": float(mAP.mean()),
        "per_class": {c: [float(v) for v in ap[:, j]] for j, c in enumerate(classes)},
        "n_ground_truth": int(len(gt)),
        "n_predictions": int(n),
        "n_classes": n_cls,
        "skipped": {**rep_gt, **rep_pred},
    }
