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
from itertools import chain, compress
from operator import attrgetter, itemgetter, methodcaller
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Sequence, Tuple, Union

import numpy as np

from ..errors import ConfigError, InputError, PredictionError
from ..io import JsonMapping, Typed, read_json, require_file, trim_heap
from ..predictions import (_first_bad, check_entries, count_entry_keys, entry_columns, list_columns,
                           struct_columns, typed_decode, typed_decoder)
from ..validate import found, read_text, string
from .geometry import _tiou_arrays, ap_from_tp_ranks, descending_order, group_starts

if TYPE_CHECKING:  # scoring needs no pandas: only the table readers import it, when called
    import pandas as pd

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
    """The keys of a slice of ``database`` whose entries hold strings, numbers and lists of
    flat annotation objects (see :func:`relocbench.io.count_json_keys`)."""
    vals = list(db.values())
    anns = chain.from_iterable(map(methodcaller("get", "annotations", ()), vals))  # AttributeError unless dicts
    return len(db) + sum(map(dict.__len__, vals)) + sum(map(dict.__len__, anns))


_GT_LAYOUTS = (("duration", "subset", "resolution", "url", "annotations"),  # ActivityNet 1.3
               ("subset", "duration", "url", "annotations"))


def _gt_typed_decoder():
    """A typed decoder (:meth:`relocbench.io.JsonMapping.map_chunks`) of ``database`` slices
    whose videos hold exactly the keys of one of the usual layouts (``_GT_LAYOUTS``, any key
    order), each annotation exactly ``segment`` and ``label``; None without msgspec. Any other
    slice is read by the checked reader, whose errors stay the same."""
    try:
        import msgspec
    except ImportError:  # pragma: no cover - a dependency; the checked reader serves without it
        return None
    ann = msgspec.defstruct("Annotation", [("segment", Tuple[float, float]), ("label", str)], gc=False,
                            forbid_unknown_fields=True)
    kinds = {"duration": float, "subset": str, "resolution": str, "url": str, "annotations": List[ann]}
    decoders = [(msgspec.json.Decoder(Dict[str, msgspec.defstruct(
        "Video", [(k, kinds[k]) for k in keys], gc=False, forbid_unknown_fields=True)]), len(keys))
        for keys in _GT_LAYOUTS]
    last = [0]

    def decode(text: bytes):
        for i in (last[0], *(j for j in range(len(decoders)) if j != last[0])):  # the last layout first
            dec, per_video = decoders[i]
            db = typed_decode(dec, text)
            if db is None:
                continue
            last[0] = i
            anns = list(map(attrgetter("annotations"), db.values()))
            counts = np.fromiter(map(len, anns), dtype=np.int64, count=len(anns))
            return db, len(db) * (1 + per_video) + 2 * int(counts.sum()), (anns, counts)
        return None

    return decode


def _video_ids(keys, src, error, what: str = "video id"):
    """Keys as given, checked to be text UTF-8 holds (JSON allows lone surrogates)."""
    joined = "".join(keys)
    if not joined.isascii():
        for k in keys:
            string(k, file=src, item=f"{what} {ascii(k)}", nonempty=False, what="a video id that UTF-8 can hold",
                   error=error)
    return keys


def _gt_chunk(db: Mapping, subset: str, blocked: set, src, subsets: set, bools=True):
    """(videos, counts, (n, 2) segments, labels, annotations on blocked videos) of one slice."""
    vals = list(db.values())
    subs = anns = None
    if isinstance(bools, Typed):  # decoded by _gt_typed_decoder: every field as the layout says
        return _typed_gt_chunk(db, vals, subset, blocked, subsets, *bools.info)
    if set(map(type, vals)) <= {dict}:
        try:
            subs = list(map(itemgetter("subset"), vals))
        except KeyError:
            subs = None
        if subs is not None and set(map(type, subs)) <= {str}:
            anns = list(map(methodcaller("get", "annotations", []), vals))
            if not set(map(type, anns)) <= {list}:
                anns = None
    if anns is None:  # a malformed entry: the checked loop names it
        _check_gt_entries(db, src)
    subsets.update(subs)
    pick = list(map(subset.__eq__, subs))
    vids, anns = list(compress(db, pick)), list(compress(anns, pick))
    n_blocked = 0
    if blocked and not blocked.isdisjoint(vids):
        keep = [v not in blocked for v in vids]
        n_blocked = sum(len(a) for a, k in zip(anns, keep) if not k)
        vids, anns = list(compress(vids, keep)), list(compress(anns, keep))
    got = list_columns(anns, {"segment": 2}, strings=("label",), bools=bools)
    if got is None:
        check_entries(dict(zip(vids, anns)), {"segment": 2}, strings=("label",), need=_GT_NEED, source=src,
                      item="video", entry="annotation", error=InputError)
    counts, cols, text = got
    return vids, counts, cols["segment"], text["label"], n_blocked


def _typed_gt_chunk(db, vals, subset, blocked, subsets, anns, counts):
    subs = list(map(attrgetter("subset"), vals))
    subsets.update(subs)
    pick = np.fromiter(map(subset.__eq__, subs), dtype=bool, count=len(subs))
    if not pick.all():
        vids, anns, counts = list(compress(db, pick)), list(compress(anns, pick)), counts[pick]
    else:
        vids = list(db)
    n_blocked = 0
    if blocked and not blocked.isdisjoint(vids):
        keep = np.fromiter((v not in blocked for v in vids), dtype=bool, count=len(vids))
        n_blocked = int(counts[~keep].sum())
        vids, anns, counts = list(compress(vids, keep)), list(compress(anns, keep)), counts[keep]
    cols, text = struct_columns(chain.from_iterable(anns), {"segment": 2}, ("label",))
    return vids, counts, cols["segment"], text["label"], n_blocked


def _check_gt_entries(db: Mapping, src) -> None:
    """Raise naming the first video entry that is not an object with a string ``subset`` and
    a list of ``annotations``."""
    for vid, v in db.items():
        if not isinstance(v, dict):
            raise InputError(f"expected an object with 'subset' and 'annotations', found {found(v)}", file=src,
                             item=f"video {vid!r}")
        sub = v.get("subset")
        if not isinstance(sub, str):
            what = "a 'subset' string" if "subset" in v else "an object with 'subset' and 'annotations'"
            raise InputError(f"expected {what}, found {found(sub if 'subset' in v else v)}", file=src,
                             item=f"video {vid!r}" + (": 'subset'" if "subset" in v else ""))
        a = v.get("annotations", [])
        if not isinstance(a, list):
            raise InputError(f"expected a list of annotations, found {found(a)}", file=src,
                             item=f"video {vid!r}: 'annotations'")
    raise InputError("malformed ground truth (no entry found at fault)", file=src)  # pragma: no cover


def read_activitynet_ground_truth(doc: Union[PathLike, Mapping], subset: str = "validation",
                                  blocked: Iterable[str] = ()) -> Tuple[pd.DataFrame, list, dict]:
    """Ground truth of one subset as (table of video/label/t_start/t_end, class names, report).

    A file is read in chunks (see :class:`relocbench.io.JsonMapping`); every video entry must
    be an object with a string ``subset`` and a list of ``annotations``, each annotation a
    ``segment`` of two finite numbers (start <= end) and a string ``label``.
    """
    import pandas as pd

    vids, counts, seg, code, classes, report = ground_truth_arrays(doc, subset, blocked)
    gt = pd.DataFrame({"video": np.repeat(np.array(vids, dtype=object), counts),
                       "label": pd.Categorical.from_codes(code, categories=classes),
                       "t_start": seg[:, 0], "t_end": seg[:, 1]})
    return gt, classes, report


def local_codes(labels: list):
    """(names in order of first appearance, integer codes of ``labels`` into them): codes of
    one slice, made without knowing the others (see :func:`global_codes`)."""
    names = list(dict.fromkeys(labels))
    index = {n: i for i, n in enumerate(names)}
    return names, np.fromiter(map(index.__getitem__, labels), dtype=np.int64, count=len(labels))


def global_codes(names: list, codes: np.ndarray, vocab: Dict[str, int]) -> np.ndarray:
    """The :func:`local_codes` of a slice as codes of ``vocab`` (names added in order of first
    appearance, so that slices taken in file order number names as one pass would)."""
    remap = np.fromiter((vocab.setdefault(n, len(vocab)) for n in names), dtype=np.int64, count=len(names))
    return remap[codes]


def ground_truth_arrays(doc: Union[PathLike, Mapping], subset: str = "validation", blocked: Iterable[str] = ()):
    """:func:`read_activitynet_ground_truth` as arrays: (video names, annotations per video,
    (n, 2) segments, class codes, class names in order of first appearance, report)."""
    src = None
    jm = None
    if not isinstance(doc, Mapping):
        src = str(doc)
        jm = JsonMapping(doc, "database", "ActivityNet ground-truth file", InputError, boundary=rb'\}\s*,\s*"',
                         item_name="video id", count_keys=_count_database)
        doc = jm.header
    if not isinstance(doc, Mapping) or "database" not in doc or not isinstance(doc["database"], Mapping):
        found_db = found(doc.get("database")) if isinstance(doc, Mapping) and "database" in doc else found(doc)
        raise InputError(f"expected an ActivityNet ground-truth object with a 'database' mapping, found {found_db}",
                         file=src)
    blocked = set(blocked)

    def piece(chunk: Mapping, bools: bool = True):
        subsets = set()
        v, c, s, lab, nb = _gt_chunk(chunk, subset, blocked, src, subsets, bools)
        return _video_ids(v, src, InputError), c, s, local_codes(lab), nb, subsets

    pieces = (jm.map_chunks(piece, typed=_gt_typed_decoder()) if jm is not None and jm.chunked
              else [piece(doc["database"])])
    vids, counts, segs, codes, subsets = [], [], [], [], set()
    vocab: Dict[str, int] = {}
    n_blocked = 0
    for v, c, sg, lab, nb, subs in pieces:
        vids.extend(v)
        counts.append(c)
        segs.append(sg)
        codes.append(global_codes(*lab, vocab))
        n_blocked += nb
        subsets |= subs
    pieces = None
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
    # classes in order of first appearance
    names = _video_ids(list(vocab), src, InputError, "label")
    code = np.concatenate(codes)
    first = np.full(len(names), len(code), dtype=np.int64)
    np.minimum.at(first, code, np.arange(len(code)))
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names))
    classes = [names[i] for i in order]
    return vids, counts, seg, rank[code], classes, {"ground truth on blocked videos (skipped)": n_blocked}


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
    jm = None
    if not isinstance(doc, Mapping):
        src = str(doc)
        jm = JsonMapping(doc, "results", what, PredictionError, item_name="video id", count_keys=count_entry_keys)
        header = jm.header
    else:
        header = doc
    if not isinstance(header, Mapping) or not isinstance(header.get("results"), Mapping):
        res = header.get("results") if isinstance(header, Mapping) else header
        raise PredictionError(f"expected an ActivityNet predictions object with a 'results' mapping, found "
                              f"{found(res)}", file=src)
    blocked = set(blocked)
    fields = {"segment": 2, "score": 0}
    strings = ("label",) if labels else ()
    need = _PRED_NEED if labels else "{'segment': [start, end], 'score': s}"

    def piece(chunk: Mapping, bools: bool = True):
        got = entry_columns(chunk, fields, strings=strings, bools=bools)
        if got is None:
            check_entries(chunk, fields, strings=strings, need=need, source=src, item="video")
        v, c, cols, text = got
        n_blocked = 0
        if blocked and not blocked.isdisjoint(v):
            mask = np.fromiter((k not in blocked for k in v), dtype=bool, count=len(v))
            rows = np.repeat(mask, c)
            n_blocked = int((~rows).sum())
            v = list(compress(v, mask))
            c = c[mask]
            cols = {n: a[rows] for n, a in cols.items()}
            text = {n: list(compress(t, rows)) for n, t in text.items()}
        lab = local_codes(text["label"]) if labels else None
        return _video_ids(v, src, PredictionError), c, cols["segment"], cols["score"], lab, n_blocked

    pieces = (jm.map_chunks(piece, typed=typed_decoder(fields, strings)) if jm is not None and jm.chunked
              else [piece(header["results"])])
    vids, counts, segs, scores, codes, n_blocked = [], [], [], [], [], 0
    vocab: Dict[str, int] = {}
    for v, c, sg, sc, lab, nb in pieces:
        vids.extend(v)
        counts.append(c)
        segs.append(sg)
        scores.append(sc)
        if labels:
            codes.append(global_codes(*lab, vocab))
        n_blocked += nb
    pieces = None
    trim_heap()
    counts, seg, score = _stack(counts, np.int64, (0,)), _stack(segs, np.float64, (0, 2)), _stack(scores, np.float64, (0,))
    _check_values(vids, counts, seg, score, src)
    if not labels:
        return vids, counts, seg, score, None, None, n_blocked
    names = list(vocab)
    _video_ids(names, src, PredictionError, "label")
    code = _stack(codes, np.int64, (0,))
    return vids, counts, seg, score, code, names, n_blocked


def _stack(parts: list, dtype, empty_shape) -> np.ndarray:
    """``np.concatenate(parts)``, emptying ``parts`` (so that the pieces and the whole are
    not both held longer than needed)."""
    out = np.concatenate(parts) if parts else np.zeros(empty_shape, dtype=dtype)
    parts.clear()
    return out


def read_activitynet_predictions(doc: Union[PathLike, Mapping], blocked: Iterable[str] = ()) -> Tuple[pd.DataFrame, dict]:
    """Predictions (``results``) as a table of video/label/t_start/t_end/score plus a report."""
    import pandas as pd

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
    if not (np.isfinite(seg).all() and np.isfinite(score).all()):  # reductions first: no row mask usually
        i = _first_bad(~(np.isfinite(seg).all(axis=1) & np.isfinite(score)))
        raise PredictionError(f"segment and score must be finite numbers, found {[*seg[i].tolist(), float(score[i])]}",
                              file=src, item=_item_of_row(vids, counts, i))
    bad = seg[:, 1] < seg[:, 0]
    if bad.any():
        i = _first_bad(bad)
        raise PredictionError(f"segment end {float(seg[i, 1])!r} is before its start {float(seg[i, 0])!r} "
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


def anet_true_positives(pred_key: np.ndarray, pred_order: np.ndarray, pred_t: np.ndarray,
                        gt_key: np.ndarray, gt_t: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """True-positive mask (n_thresholds, n_pred) of the ActivityNet greedy rule with
    fall-through, in processing order: column ``i`` is prediction ``pred_order[i]``.

    ``pred_key``/``gt_key`` are integer (class, video) codes; ``pred_order`` lists the
    predictions in processing order (a permutation); ``pred_t``/``gt_t`` are (n, 2)
    segments. A prediction tries the ground truths of its key by tIoU descending, the later
    row first on equal tIoU.

    No sort of the candidates: the (prediction, ground truth) rows are laid out in
    processing order, and each prediction's few ground truths are put in preference order
    by a row-wise sort of a (predictions, k) matrix per number k of ground truths.
    """
    n_pred, n_gt = pred_order.shape[0], gt_key.shape[0]
    tp = np.zeros((len(thresholds), n_pred), dtype=bool)
    if n_pred == 0 or n_gt == 0 or not len(thresholds):
        return tp
    itype = np.int32 if max(n_pred, n_gt) < 2 ** 31 else np.int64  # ranks, rows, groups
    gorder = np.argsort(gt_key, kind="stable")
    gk = gt_key[gorder]
    gfirst = group_starts(gk)
    gstart = np.flatnonzero(gfirst)
    gcount = np.diff(np.append(gstart, n_gt))
    code = _index_of(gk[gstart], pred_key[pred_order])  # key of each, in processing order
    has = np.flatnonzero(code >= 0)  # processing ranks of the predictions with candidates
    code = code[has]
    cnt = gcount[code]
    offs = np.cumsum(cnt) - cnt
    total = int(offs[-1] + cnt[-1]) if cnt.size else 0
    res = np.empty(total, dtype=itype)  # ground-truth row of each candidate
    tiou = np.empty(total)
    for k in np.flatnonzero(np.bincount(cnt)).tolist():  # the distinct counts (np.unique imports numpy.ma)
        sel_all = np.flatnonzero(cnt == k)
        rev = np.arange(k - 1, -1, -1)  # later ground truth first, kept on equal tIoU (stable sort)
        for a in range(0, sel_all.shape[0], max(1, _BLOCK // k)):
            sel = sel_all[a:a + max(1, _BLOCK // k)]
            gm = gorder[gstart[code[sel]][:, None] + rev]
            p = pred_order[has[sel]]
            tm = _tiou_arrays(pred_t[p, 0][:, None], pred_t[p, 1][:, None], gt_t[gm, 0], gt_t[gm, 1])
            if k > 1:
                o = np.argsort(-tm, axis=1, kind="stable")
                gm, tm = np.take_along_axis(gm, o, 1), np.take_along_axis(tm, o, 1)
            dest = offs[sel][:, None] + np.arange(k)
            res[dest], tiou[dest] = gm, tm
    # only rows that clear the lowest threshold take part (int32 ranks, rows and groups below
    # 2**31: half the memory, faster gathers)
    live = tiou >= min(thresholds)
    agent_all = np.repeat(has.astype(itype), cnt)[live]  # processing rank of each candidate (ascending)
    group_all = np.repeat(code.astype(itype), cnt)[live]  # its (class, video) group
    res, tiou = res[live], tiou[live]
    del offs, live
    n_grp = gstart.shape[0]
    big = np.iinfo(itype).max
    for k, t in enumerate(thresholds):  # one threshold at a time (memory: one candidate list, not ten)
        m = tiou >= t
        agent, resource, group = agent_all[m], res[m], group_all[m]
        locked = np.zeros(n_gt, dtype=bool)
        winners = []
        while agent.size:
            # every unresolved prediction proposes its best untaken ground truth; in each group the
            # predictions before the first repeated proposal take what they proposed
            first = group_starts(agent)
            starts = np.flatnonzero(first)
            p_agent, p_res, p_grp = agent[starts], resource[starts], group[starts]
            idx = np.arange(starts.shape[0], dtype=itype)
            first_of_res = np.full(n_gt, big, dtype=itype)
            np.minimum.at(first_of_res, p_res, idx)
            dup = first_of_res[p_res] != idx
            cutoff = np.full(n_grp, big, dtype=itype)
            if dup.any():
                np.minimum.at(cutoff, p_grp[dup], p_agent[dup])
            accept = p_agent < cutoff[p_grp]
            locked[p_res[accept]] = True
            winners.append(p_agent[accept])
            # drop every row of an agent that won (its rows are contiguous) and every locked box
            won_row = np.repeat(accept, np.diff(np.append(starts, agent.size)))
            keep = ~won_row & ~locked[resource]
            agent, resource, group = agent[keep], resource[keep], group[keep]
        if winners:
            tp[k, np.concatenate(winners)] = True
    return tp


def _index_of(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Position of each ``query`` value in the sorted, distinct ``keys``; -1 where absent."""
    pos = np.searchsorted(keys, query)
    if not keys.shape[0]:
        return np.full(query.shape[0], -1, dtype=np.int64)
    pos = np.minimum(pos, keys.shape[0] - 1)
    return np.where(keys[pos] == query, pos, -1).astype(np.int64)


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
    gt_vids, gt_counts, gt_t, gcls, classes, rep_gt = ground_truth_arrays(ground_truth, subset, blocked)
    vids, counts, seg, score, code, names, n_blocked = read_activitynet_arrays(predictions, blocked)
    src = None if isinstance(predictions, Mapping) else str(predictions)
    cls_index = {c: j for j, c in enumerate(classes)}
    name_cls = (np.fromiter((cls_index.get(nm, -1) for nm in names), dtype=np.int64, count=len(names)) if names
                else np.zeros(0, np.int64))
    pcls = name_cls[code] if len(code) else np.zeros(0, np.int64)
    if (pcls < 0).any():
        i = int(np.flatnonzero(pcls < 0)[0])
        raise PredictionError(
            f"label {names[int(code[i])]!r} is not a class of the ground truth in subset {subset!r} "
            f"({int((pcls < 0).sum())} prediction(s) with unknown labels)", file=src,
            item=_item_of_row(vids, counts, i))
    del code
    vid_index: Dict[str, int] = {}
    vid_codes = np.fromiter((vid_index.setdefault(v, len(vid_index)) for v in chain(gt_vids, vids)), dtype=np.int64,
                            count=len(gt_vids) + len(vids))
    n_vid = int(vid_codes.max()) + 1 if vid_codes.size else 1
    n_gt_vid = len(gt_vids)
    del gt_vids
    gkey = gcls * n_vid + np.repeat(vid_codes[:n_gt_vid], gt_counts)
    pkey = pcls.astype(np.int64) * n_vid + np.repeat(vid_codes[n_gt_vid:], counts)
    del vid_codes
    n = len(score)
    # Processing order: by class, descending score, later row first on ties (by score, then a
    # stable sort by class: a radix sort for small codes).
    by_score = descending_order(score, later_first=True)
    cls_codes = pcls[by_score].astype(np.int16 if len(classes) < 2 ** 15 else np.int64)
    order = by_score[np.argsort(cls_codes, kind="stable")]
    del score, by_score, cls_codes
    rep_pred = {"predictions on blocked videos (skipped)": n_blocked}
    tp = anet_true_positives(pkey, order, seg, gkey, gt_t, thr)
    del pkey
    n_cls = len(classes)
    npos = np.bincount(gcls, minlength=n_cls)
    cls_sorted = pcls[order]
    cls_start = np.searchsorted(cls_sorted, np.arange(n_cls), side="left")
    ap = np.zeros((len(thr), n_cls))
    for k in range(len(thr)):
        pos = np.flatnonzero(tp[k])
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
        "n_ground_truth": int(len(gt_t)),
        "n_predictions": int(n),
        "n_classes": n_cls,
        "skipped": {**rep_gt, **rep_pred},
    }
