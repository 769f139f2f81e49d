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
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from ..errors import ConfigError, InputError, PredictionError
from ..io import JsonMapping, read_json, require_file, trim_heap
from ..predictions import _first_bad, check_entries, count_entry_keys, entry_columns, read_columns
from ..validate import found, read_text, string
from .frame_ap import candidate_pairs
from .geometry import _tiou_arrays, ap_from_tp_ranks, group_starts

__all__ = ["activitynet_detection", "read_activitynet_ground_truth", "read_activitynet_predictions",
           "read_activitynet_arrays", "read_blocked_videos", "ANET_TIOU_THRESHOLDS", "anet_true_positives"]

_BLOCK = 1 << 20  # candidate rows whose tIoU is computed at once
ANET_TIOU_THRESHOLDS = tuple(float(x) for x in np.linspace(0.5, 0.95, 10))
PathLike = Union[str, os.PathLike]


def read_blocked_videos(path: PathLike) -> list:
    """A local blocked-videos list: a JSON list of ids, or a text file with one id per line."""
    p = require_file(path, "blocked-videos file")
    text = read_text(p, "blocked-videos file")
    if text.lstrip().startswith("["):
        doc = read_json(p, "blocked-videos file")
        if not isinstance(doc, list):
            raise InputError(f"expected a JSON list of video id strings, found {found(doc)}", file=p)
        for i, v in enumerate(doc):
            if not isinstance(v, str):
                raise InputError(f"expected a JSON list of video id strings, found {found(v)}", file=p,
                                 item=f"entry {i}")
        return list(doc)
    out = []
    for i, ln in enumerate(text.splitlines(), 1):
        ln = ln.strip()
        if ln and not ln.startswith("#"):
            out.append(string(ln, file=p, item=f"line {i}"))
    return out


_GT_NEED = "{'segment': [start, end], 'label': name}"
_PRED_NEED = "{'label': name, 'segment': [start, end], 'score': s}"


def _count_database(db: Mapping) -> int:
    """The ``:`` in the JSON text of a slice of ``database`` whose entries hold strings,
    numbers and lists of flat annotation objects (see :func:`relocbench.io.count_json_keys`)."""
    vals = list(db.values())
    n = len(db) + sum(map(dict.__len__, vals))  # TypeError unless every entry is an object
    strings = [x for v in vals for x in v.values() if type(x) is str]
    anns = [a for v in vals for a in v.get("annotations", ()) if type(a) is dict]
    n += sum(map(len, anns))
    strings += [x for a in anns for x in a.values() if type(x) is str]
    strings += list(db)
    text = "".join(strings)
    return n + text.count(":")


def _video_ids(keys, src, error, what: str = "video id"):
    """Keys as given, checked to be text UTF-8 holds (JSON allows lone surrogates)."""
    joined = "".join(keys)
    if not joined.isascii():
        for k in keys:
            string(k, file=src, item=f"{what} {ascii(k)}", nonempty=False, what="a video id that UTF-8 can hold",
                   error=error)
    return keys


def _gt_chunk(db: Mapping, subset: str, blocked: set, src, subsets: set):
    """(videos, counts, (n, 2) segments, labels, annotations on blocked videos) of one slice."""
    vids, anns, n_blocked = [], [], 0
    for vid, v in db.items():
        if not isinstance(v, dict):
            raise InputError(f"expected an object with 'subset' and 'annotations', found {found(v)}", file=src,
                             item=f"video {vid!r}")
        sub = v.get("subset")
        if not isinstance(sub, str):
            what = "a 'subset' string" if "subset" in v else "an object with 'subset' and 'annotations'"
            raise InputError(f"expected {what}, found {found(sub if 'subset' in v else v)}", file=src,
                             item=f"video {vid!r}" + (": 'subset'" if "subset" in v else ""))
        subsets.add(sub)
        a = v.get("annotations", [])
        if not isinstance(a, list):
            raise InputError(f"expected a list of annotations, found {found(a)}", file=src,
                             item=f"video {vid!r}: 'annotations'")
        if sub != subset:
            continue
        if vid in blocked:
            n_blocked += len(a)
            continue
        vids.append(vid)
        anns.append(a)
    sel = dict(zip(vids, anns))
    got = entry_columns(sel, {"segment": 2}, strings=("label",))
    if got is None:
        check_entries(sel, {"segment": 2}, strings=("label",), need=_GT_NEED, source=src, item="video",
                      entry="annotation", error=InputError)
    _, counts, cols, text = got
    return vids, counts, cols["segment"], text["label"], n_blocked


def read_activitynet_ground_truth(doc: Union[PathLike, Mapping], subset: str = "validation",
                                  blocked: Iterable[str] = ()) -> Tuple[pd.DataFrame, list, dict]:
    """Ground truth of one subset as (table of video/label/t_start/t_end, class names, report).

    A file is read in chunks (see :class:`relocbench.io.JsonMapping`); every video entry must
    be an object with a string ``subset`` and a list of ``annotations``, each annotation a
    ``segment`` of two finite numbers (start <= end) and a string ``label``.
    """
    src = None
    chunks = None
    if not isinstance(doc, Mapping):
        src = str(doc)
        jm = JsonMapping(doc, "database", "ActivityNet ground-truth file", InputError, boundary=rb'\}\s*,\s*"',
                         item_name="video id", count_keys=_count_database)
        doc = jm.header
        chunks = jm.chunks() if jm.chunked else None
    if not isinstance(doc, Mapping) or "database" not in doc or not isinstance(doc["database"], Mapping):
        found_db = found(doc.get("database")) if isinstance(doc, Mapping) and "database" in doc else found(doc)
        raise InputError(f"expected an ActivityNet ground-truth object with a 'database' mapping, found {found_db}",
                         file=src)
    if chunks is None:
        chunks = [doc["database"]]
    blocked = set(blocked)
    vids, counts, segs, codes, subsets = [], [], [], [], set()
    vocab: Dict[str, int] = {}
    n_blocked = 0
    for chunk in chunks:
        v, c, s, lab, nb = _gt_chunk(chunk, subset, blocked, src, subsets)
        vids.extend(_video_ids(v, src, InputError))
        counts.append(c)
        segs.append(s)
        for name in set(lab).difference(vocab):
            vocab[name] = len(vocab)
        codes.append(np.fromiter(map(vocab.__getitem__, lab), dtype=np.int64, count=len(lab)))
        n_blocked += nb
    chunk = chunks = v = lab = None  # the last slice is garbage now
    trim_heap()
    counts = np.concatenate(counts) if counts else np.zeros(0, np.int64)
    seg = np.concatenate(segs) if segs else np.zeros((0, 2))
    bad = ~np.isfinite(seg).all(axis=1) | (seg[:, 1] < seg[:, 0])
    if bad.any():
        i = _first_bad(bad)
        k = int(np.searchsorted(np.cumsum(counts), i, side="right"))
        raise InputError(f"segment {seg[i].tolist()} must be finite with start <= end", file=src,
                         item=f"video {vids[k]!r}: annotation {i - int(counts[:k].sum())}")
    if not len(seg):
        raise InputError(f"no ground truth in subset {subset!r} (subsets present: {sorted(map(str, subsets))})",
                         file=src)
    # classes in order of first appearance; labels stored as codes (one string per class)
    names = _video_ids(list(vocab), src, InputError, "label")
    code = np.concatenate(codes)
    first = np.full(len(names), len(code), dtype=np.int64)
    np.minimum.at(first, code, np.arange(len(code)))
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names))
    classes = [names[i] for i in order]
    gt = pd.DataFrame({"video": np.repeat(np.array(vids, dtype=object), counts),
                       "label": pd.Categorical.from_codes(rank[code], categories=classes),
                       "t_start": seg[:, 0], "t_end": seg[:, 1]})
    vids = code = None
    trim_heap()
    return gt, classes, {"ground truth on blocked videos (skipped)": n_blocked}


def read_activitynet_arrays(doc: Union[PathLike, Mapping], blocked: Iterable[str] = (), *, labels: bool = True,
                            what: str = "ActivityNet predictions file"):
    """The ``results`` of an ActivityNet predictions (or proposals) file as columns:
    (video names, predictions per video, (n, 2) segments, scores, label codes, label names,
    predictions on blocked videos). ``labels=False`` reads proposals (a ``label`` is then not
    needed and ignored; codes and names are None).

    A file is read in chunks (see :class:`relocbench.io.JsonMapping`), with duplicate video
    keys, NaN/Infinity, oversized integers, lone surrogates and malformed entries refused in
    one line naming the video and the prediction.
    """
    src = None
    if not isinstance(doc, Mapping):
        src = str(doc)
        jm = JsonMapping(doc, "results", what, PredictionError, item_name="video id", count_keys=count_entry_keys)
        header = jm.header
        chunks = jm.chunks() if jm.chunked else None
    else:
        header, chunks = doc, None
    if not isinstance(header, Mapping) or not isinstance(header.get("results"), Mapping):
        res = header.get("results") if isinstance(header, Mapping) else header
        raise PredictionError(f"expected an ActivityNet predictions object with a 'results' mapping, found "
                              f"{found(res)}", file=src)
    if chunks is None:
        chunks = [header["results"]]
    blocked = set(blocked)
    n_blocked = [0]
    vocab: Dict[str, int] = {}
    codes = []

    def keep(ids):
        mask = np.fromiter((k not in blocked for k in ids), dtype=bool, count=len(ids))
        return mask

    fields = {"segment": 2, "score": 0}
    strings = ("label",) if labels else ()
    need = _PRED_NEED if labels else "{'segment': [start, end], 'score': s}"
    vids, counts, segs, scores = [], [], [], []
    for chunk in chunks:
        v, c, cols, text = read_columns([chunk], fields, strings=strings, need=need, source=src, item="video")
        if blocked:
            mask = keep(v)
            if not mask.all():
                rows = np.repeat(mask, c)
                n_blocked[0] += int((~rows).sum())
                v = [x for x, m in zip(v, mask) if m]
                c = c[mask]
                cols = {n: a[rows] for n, a in cols.items()}
                text = {n: [x for x, m in zip(t, rows) if m] for n, t in text.items()}
        vids.extend(_video_ids(v, src, PredictionError))
        counts.append(c)
        segs.append(cols["segment"])
        scores.append(cols["score"])
        if labels:
            lab = text["label"]
            for name in set(lab).difference(vocab):
                vocab[name] = len(vocab)
            codes.append(np.fromiter(map(vocab.__getitem__, lab), dtype=np.int64, count=len(lab)))
    chunk = chunks = v = text = cols = None  # the last slice is garbage now
    trim_heap()
    counts, seg, score = _stack(counts, np.int64, (0,)), _stack(segs, np.float64, (0, 2)), _stack(scores, np.float64, (0,))
    _check_values(vids, counts, seg, score, src)
    if not labels:
        return vids, counts, seg, score, None, None, n_blocked[0]
    names = list(vocab)
    _video_ids(names, src, PredictionError, "label")
    code = _stack(codes, np.int64, (0,))
    return vids, counts, seg, score, code, names, n_blocked[0]


def _stack(parts: list, dtype, empty_shape) -> np.ndarray:
    """``np.concatenate(parts)``, emptying ``parts`` (so that the pieces and the whole are
    not both held longer than needed)."""
    out = np.concatenate(parts) if parts else np.zeros(empty_shape, dtype=dtype)
    parts.clear()
    return out


def read_activitynet_predictions(doc: Union[PathLike, Mapping], blocked: Iterable[str] = ()) -> Tuple[pd.DataFrame, dict]:
    """Predictions (``results``) as a table of video/label/t_start/t_end/score plus a report."""
    vids, counts, seg, score, code, names, n_blocked = read_activitynet_arrays(doc, blocked)
    pred = pd.DataFrame({"video": np.repeat(np.array(vids, dtype=object), counts),
                         "label": np.array(names, dtype=object)[code] if len(code) else np.zeros(0, object),
                         "t_start": seg[:, 0], "t_end": seg[:, 1], "score": score})
    return pred, {"predictions on blocked videos (skipped)": n_blocked}


def _item_of_row(vids, counts: np.ndarray, i: int) -> str:
    ends = np.cumsum(counts)
    k = int(np.searchsorted(ends, i, side="right"))
    return f"video {vids[k]!r}: prediction {i - (int(ends[k - 1]) if k else 0)}"


def _check_values(vids, counts, seg: np.ndarray, score: np.ndarray, src) -> None:
    vals = np.column_stack([seg, score])
    bad = ~np.isfinite(vals).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise PredictionError(f"segment and score must be finite numbers, found {vals[i].tolist()}",
                              file=src, item=_item_of_row(vids, counts, i))
    bad = vals[:, 1] < vals[:, 0]
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise PredictionError(f"segment end {float(vals[i, 1])!r} is before its start {float(vals[i, 0])!r} "
                              f"({int(bad.sum())} such segment(s))", file=src, item=_item_of_row(vids, counts, i))


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
                        gt_key: np.ndarray, gt_t: np.ndarray, thresholds: Sequence[float], *,
                        pred_order: Optional[np.ndarray] = None) -> np.ndarray:
    """True-positive mask (n_thresholds, n_pred) of the ActivityNet greedy rule with fall-through.

    ``pred_key``/``gt_key`` are integer (class, video) codes; ``pred_prio`` is the processing
    order (a permutation, smaller first); ``pred_t``/``gt_t`` are (n, 2) segments. Ground
    truths of equal tIoU are tried later-row first. ``pred_order`` (optional) is the inverse
    of ``pred_prio`` (the rows in processing order), when the caller has it.
    """
    n_pred, n_gt = pred_key.shape[0], gt_key.shape[0]
    nt = len(thresholds)
    tp = np.zeros((nt, n_pred), dtype=bool)
    d, g, _ = candidate_pairs(pred_key, gt_key)
    if d.size == 0:
        return tp
    tiou = np.empty(d.shape[0])
    for a in range(0, d.shape[0], _BLOCK):  # a block at a time: four gathered columns stay small
        dd, gg = d[a:a + _BLOCK], g[a:a + _BLOCK]
        tiou[a:a + _BLOCK] = _tiou_arrays(pred_t[dd, 0], pred_t[dd, 1], gt_t[gg, 0], gt_t[gg, 1])
    del dd, gg
    # Candidate preference: processing order, then tIoU descending, then later ground truth first.
    o = np.lexsort((-g, -tiou, pred_prio[d]))
    d, g, tiou = d[o], g[o], tiou[o]
    del o
    # (class, video) group of each candidate row, numbered among the candidates only
    grp_c, _ = pd.factorize(pred_key[d])  # hashed: no sorted copies of the candidates
    grp_c = grp_c.astype(np.int64, copy=False)
    n_grp = int(grp_c.max()) + 1
    if pred_order is None:
        inv = np.empty(n_pred, dtype=np.int64)
        inv[pred_prio] = np.arange(n_pred)
    else:
        inv = pred_order
    # One threshold at a time (memory: one candidate list, not ten).
    for k, t in enumerate(thresholds):
        m = tiou >= t
        # Rows are sorted by processing order (then preference): agent ids ascend.
        agent, resource, group = pred_prio[d[m]], g[m], grp_c[m]
        locked = np.zeros(n_gt, dtype=bool)
        winners = []
        while agent.size:
            first = group_starts(agent)
            p_agent, p_res, p_grp = agent[first], resource[first], group[first]
            by_res = np.lexsort((p_agent, p_res))
            dup = ~group_starts(p_res[by_res])
            cutoff = np.full(n_grp, np.iinfo(np.int64).max, dtype=np.int64)
            if dup.any():
                np.minimum.at(cutoff, p_grp[by_res[dup]], p_agent[by_res[dup]])
            accept = p_agent < cutoff[p_grp]
            locked[p_res[accept]] = True
            winners.append(p_agent[accept])
            done = np.zeros(agent.size, dtype=bool)
            done[np.flatnonzero(first)[accept]] = True
            # Drop every row of an agent that won (its rows are contiguous) and every locked box.
            won_row = np.repeat(done[first], np.diff(np.append(np.flatnonzero(first), agent.size)))
            keep = ~won_row & ~locked[resource]
            agent, resource, group = agent[keep], resource[keep], group[keep]
        if winners:
            tp[k, inv[np.concatenate(winners)]] = True
    return tp


def check_thresholds_and_blocked(tiou_thresholds: Sequence[float], blocked_videos) -> Tuple[List[float], List[str]]:
    """The official protocols' shared arguments: tIoU thresholds (numbers in [0, 1]) and the
    blocked videos (a file of ids, an iterable of ids, or None)."""
    thr = [float(t) for t in tiou_thresholds]
    if not thr or any(not (0.0 <= t <= 1.0) for t in thr):
        raise ConfigError(f"The 'tiou_thresholds' parameter must hold numbers in [0, 1]. Got {thr!r} instead.")
    if blocked_videos is None:
        return thr, []
    if isinstance(blocked_videos, (str, os.PathLike)):
        return thr, list(read_blocked_videos(blocked_videos))
    return thr, list(blocked_videos)


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
    thr, blocked = check_thresholds_and_blocked(tiou_thresholds, blocked_videos)
    gt, classes, rep_gt = read_activitynet_ground_truth(ground_truth, subset, blocked)
    vids, counts, seg, score, code, names, n_blocked = read_activitynet_arrays(predictions, blocked)
    src = None if isinstance(predictions, Mapping) else str(predictions)
    cls_index = pd.Index(classes)
    name_cls = cls_index.get_indexer(pd.Index(names, dtype=object)) if names else np.zeros(0, np.int64)
    pcls = name_cls[code] if len(code) else np.zeros(0, np.int64)
    if (pcls < 0).any():
        i = int(np.flatnonzero(pcls < 0)[0])
        raise PredictionError(
            f"label {names[int(code[i])]!r} is not a class of the ground truth in subset {subset!r} "
            f"({int((pcls < 0).sum())} prediction(s) with unknown labels)", file=src,
            item=_item_of_row(vids, counts, i))
    del code
    gcls = cls_index.get_indexer(gt["label"].to_numpy(object))
    vid_codes, _ = pd.factorize(np.concatenate([gt["video"].to_numpy(object), np.array(vids, dtype=object)]))
    n_vid = int(vid_codes.max()) + 1 if vid_codes.size else 1
    gkey = gcls.astype(np.int64) * n_vid + vid_codes[: len(gt)]
    pkey = pcls.astype(np.int64) * n_vid + np.repeat(vid_codes[len(gt):], counts)
    n = len(score)
    # Processing order: by class, descending score, later row first on ties.
    order = np.lexsort((np.arange(n, 0, -1), -score, pcls))
    prio = np.empty(n, dtype=np.int64)
    prio[order] = np.arange(n)
    del score
    rep_pred = {"predictions on blocked videos (skipped)": n_blocked}
    tp = anet_true_positives(pkey, prio, seg, gkey, gt[["t_start", "t_end"]].to_numpy(np.float64), thr,
                             pred_order=order)
    del pkey, prio
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
