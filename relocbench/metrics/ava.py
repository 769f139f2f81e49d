"""``ava``: the official AVA frame-mAP (``get_ava_performance.py``), vectorised.

Behaviour (reference-algorithms.md Sec. 7):

* CSV rows ``video, timestamp, x1, y1, x2, y2, action_id[, score or person_id]``, no header,
  coordinates normalised; the image key is ``(video, int(timestamp))``.
* Rows whose action is not in the label map are dropped from both files; at most
  ``capacity`` (50) detections per image key are kept (the highest scores over all its boxes
  and classes); keys listed in the exclusions file are dropped from both files; detections
  on keys absent from the ground truth are ignored; detections with ``x1 >= x2`` or
  ``y1 >= y2`` are dropped (after the cap, as the official code does). Every drop is counted
  in ``dropped``.
* Matching per image and class (see :mod:`relocbench.metrics.frame_ap`): the best-IoU box,
  no fall-through, IoU ``>= 0.5``. AP per class is the VOC all-point AP; a class with no
  ground truth has AP ``None`` (NaN in the official code) and is left out of ``mAP``.

Tie rule. The official evaluator orders equal scores through a heap and
``argsort()[::-1]``, which leaves them unspecified. relocbench fixes: among equal scores the
detection listed later in the file goes first, both for the 50-per-key cap and for the
matching and the AP ranking. Among ground-truth boxes of equal IoU the one listed first
wins. For distinct scores the result equals the official one.
"""
from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Tuple, Union

import numpy as np
import pandas as pd

from ..errors import ConfigError, InputError, PredictionError
from ..io import require_file
from .frame_ap import frame_ap

__all__ = ["ava_frame_map", "read_label_map", "read_ava_csv", "read_exclusions"]

PathLike = Union[str, os.PathLike]
CAPACITY = 50


#: Integer fields (label-map ids, timestamps, action ids) must lie in [-2**63, 2**63): NumPy's int64.
_INT64 = 2 ** 63


def read_label_map(path: PathLike) -> List[Tuple[int, str]]:
    """``[(id, name), ...]`` from an AVA ``item { name: "..." id: N }`` label map (.pbtxt).

    The file must be UTF-8 text; every id a 64-bit integer. Errors name the file and line.
    """
    from ..validate import read_text

    p = require_file(path, "label map")
    text = read_text(p, "AVA label map")
    out, lines = [], []
    for i, m in enumerate(re.finditer(r"item\s*\{(.*?)\}", text, flags=re.S)):
        block = m.group(1)
        line = text.count("\n", 0, m.start()) + 1
        name = re.search(r'\bname:\s*"([^"]*)"', block)
        ident = re.search(r"\b(?:label_)?id:\s*(-?\d+)", block)
        if not name or not ident:
            raise InputError(f"item {i} needs a quoted name and an integer id, found {block.strip()!r:.80}", file=p,
                             item=f"line {line}")
        id_line = line + block.count("\n", 0, ident.start())
        digits = ident.group(1)
        if len(digits.lstrip("-")) > 19 or not -_INT64 <= int(digits) < _INT64:
            raise InputError(f"id must be a 64-bit integer, found one of {len(digits.lstrip('-'))} digits "
                             f"({digits[:12]}...)", file=p, item=f"line {id_line}")
        out.append((int(digits), name.group(1)))
        lines.append(id_line)
    if not out:
        raise InputError("no 'item { name: ... id: ... }' entries found", file=p)
    seen: Dict[int, int] = {}
    for (ident, _), line in zip(out, lines):
        if ident in seen:
            raise InputError(f"class id {ident} appears more than once (first at line {seen[ident]})", file=p,
                             item=f"line {line}")
        seen[ident] = line
    return out


def _frame_from_csv(path: PathLike, what: str, error) -> pd.DataFrame:
    p = require_file(path, what, error)
    try:
        df = pd.read_csv(p, header=None, dtype={0: str}, skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        return pd.DataFrame({i: [] for i in range(8)})
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise error(f"unparsable CSV: {str(exc).splitlines()[0]}", file=p) from None
    return df


def read_ava_csv(path: PathLike, *, scores: bool, error=InputError) -> pd.DataFrame:
    """An AVA-layout CSV as columns video, timestamp (int), x1, y1, x2, y2, action_id[, score].

    ``scores=True`` (detections) requires the 8th column to be the score; ground truth may
    have 7 columns or 8 (the 8th, a person id, is ignored).
    """
    df = _frame_from_csv(path, "detections CSV" if scores else "ground-truth CSV", error)
    ncol = df.shape[1]
    if len(df) == 0:
        cols = {"video": pd.Series([], dtype=object), "timestamp": np.zeros(0, np.int64)}
        cols.update({c: np.zeros(0) for c in ("x1", "y1", "x2", "y2")})
        cols["action_id"] = np.zeros(0, np.int64)
        if scores:
            cols["score"] = np.zeros(0)
        return pd.DataFrame(cols)
    need = (8,) if scores else (7, 8)
    if ncol not in need:
        raise error(f"expected {' or '.join(map(str, need))} columns (video, timestamp, x1, y1, x2, y2, "
                    f"action_id{', score' if scores else '[, person_id]'}), found {ncol}", file=path)
    num = {}
    for j, name in ((1, "timestamp"), (2, "x1"), (3, "y1"), (4, "x2"), (5, "y2"), (6, "action_id")) + (
            ((7, "score"),) if scores else ()):
        col = pd.to_numeric(df[j], errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(col)
        if name in ("timestamp", "action_id"):
            bad |= col != np.round(col)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            kind = "an integer" if name in ("timestamp", "action_id") else "a finite number"
            raise error(f"{name} must be {kind}, found {df[j].iloc[i]!r}", file=path, item=f"line {i + 1}")
        if name in ("timestamp", "action_id"):
            big = (col >= _INT64) | (col < -_INT64)
            if big.any():
                i = int(np.flatnonzero(big)[0])
                raise error(f"{name} must be a 64-bit integer, found {str(df[j].iloc[i])[:40]!r}", file=path,
                            item=f"line {i + 1}")
        num[name] = col
    out = pd.DataFrame({"video": df[0].astype(str).to_numpy(object),
                        "timestamp": num["timestamp"].astype(np.int64)})
    for c in ("x1", "y1", "x2", "y2"):
        out[c] = num[c]
    out["action_id"] = num["action_id"].astype(np.int64)
    if scores:
        out["score"] = num["score"]
    return out


def read_exclusions(path: PathLike) -> pd.DataFrame:
    """Excluded image keys: CSV rows ``video, timestamp``."""
    df = _frame_from_csv(path, "exclusions CSV", InputError)
    if len(df) == 0:
        return pd.DataFrame({"video": pd.Series([], dtype=object), "timestamp": np.zeros(0, np.int64)})
    if df.shape[1] < 2:
        raise InputError(f"expected rows 'video, timestamp', found {df.shape[1]} column(s)", file=path)
    ts = pd.to_numeric(df[1], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(ts) | (ts != np.round(ts))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"timestamp must be an integer, found {df[1].iloc[i]!r}", file=path, item=f"line {i + 1}")
    big = (ts >= _INT64) | (ts < -_INT64)
    if big.any():
        i = int(np.flatnonzero(big)[0])
        raise InputError(f"timestamp must be a 64-bit integer, found {str(df[1].iloc[i])[:40]!r}", file=path,
                         item=f"line {i + 1}")
    return pd.DataFrame({"video": df[0].astype(str).to_numpy(object), "timestamp": ts.astype(np.int64)})


def _keys(frames: List[pd.DataFrame]) -> List[np.ndarray]:
    """One integer image key per row, shared across the given tables."""
    vids = np.concatenate([f["video"].to_numpy(object) for f in frames]) if frames else np.zeros(0, object)
    codes, _ = pd.factorize(vids)
    ts = np.concatenate([f["timestamp"].to_numpy(np.int64) for f in frames])
    lo = int(ts.min()) if ts.size else 0
    span = int(ts.max()) - lo + 1 if ts.size else 1
    if span * (int(codes.max(initial=0)) + 1) >= 2 ** 62:  # far-apart timestamps: number them first
        ts, _ = pd.factorize(ts)
        lo, span = 0, int(ts.max(initial=0)) + 1
    key = codes.astype(np.int64) * span + (ts - lo)
    out, at = [], 0
    for f in frames:
        out.append(key[at:at + len(f)])
        at += len(f)
    return out


def ava_frame_map(
    ground_truth: Union[PathLike, pd.DataFrame],
    detections: Union[PathLike, pd.DataFrame],
    label_map: Union[PathLike, List[Tuple[int, str]]],
    *,
    exclusions: Union[PathLike, pd.DataFrame, None] = None,
    iou: float = 0.5,
    capacity: int = CAPACITY,
) -> Dict[str, Any]:
    """Official AVA frame-mAP at ``iou`` (see the module docstring).

    Inputs are paths (official layouts) or tables as returned by :func:`read_ava_csv`,
    :func:`read_label_map` and :func:`read_exclusions`. Returns ``mAP``, ``per_class``
    ({class name: AP, or None without ground truth}), ``iou``, counts and ``dropped``.
    """
    if not (0.0 <= float(iou) <= 1.0):
        raise ConfigError(f"The 'iou' parameter must be a number in [0, 1]. Got {iou!r} instead.")
    if int(capacity) < 0:
        raise ConfigError(f"The 'capacity' parameter must be an int >= 0 (0: no cap). Got {capacity!r} instead.")
    lm = read_label_map(label_map) if isinstance(label_map, (str, os.PathLike)) else list(label_map)
    gt = ground_truth if isinstance(ground_truth, pd.DataFrame) else read_ava_csv(ground_truth, scores=False)
    det = detections if isinstance(detections, pd.DataFrame) else read_ava_csv(
        detections, scores=True, error=PredictionError)
    exc = (read_exclusions(exclusions) if isinstance(exclusions, (str, os.PathLike)) else exclusions)
    if exc is None:
        exc = pd.DataFrame({"video": pd.Series([], dtype=object), "timestamp": np.zeros(0, np.int64)})
    ids = np.array(sorted(i for i, _ in lm), dtype=np.int64)
    names = dict(lm)
    dropped: Dict[str, int] = {}

    gkey, dkey, xkey = _keys([gt, det, exc])
    g_in = np.isin(gt["action_id"].to_numpy(np.int64), ids)
    d_in = np.isin(det["action_id"].to_numpy(np.int64), ids)
    dropped["ground-truth rows with a class outside the label map"] = int((~g_in).sum())
    dropped["detection rows with a class outside the label map"] = int((~d_in).sum())
    gsel = np.flatnonzero(g_in)
    dsel = np.flatnonzero(d_in)

    # The cap: the `capacity` best scores of each key (later row first on equal scores).
    score = det["score"].to_numpy(np.float64)
    if capacity > 0 and dsel.size:
        o = dsel[np.lexsort((-dsel, -score[dsel], dkey[dsel]))]
        k = dkey[o]
        start = np.searchsorted(k, k, side="left")
        keep = (np.arange(o.size) - start) < capacity
        dropped[f"detections beyond {capacity} per image key"] = int((~keep).sum())
        dsel = np.sort(o[keep])
    else:
        dropped[f"detections beyond {capacity} per image key"] = 0

    g_ex = np.isin(gkey[gsel], xkey)
    d_ex = np.isin(dkey[dsel], xkey)
    dropped["ground-truth rows on excluded keys"] = int(g_ex.sum())
    dropped["detections on excluded keys"] = int(d_ex.sum())
    gsel, dsel = gsel[~g_ex], dsel[~d_ex]
    d_known = np.isin(dkey[dsel], gkey[gsel])
    dropped["detections on keys absent from the ground truth"] = int((~d_known).sum())
    dsel = dsel[d_known]
    box_cols = ["x1", "y1", "x2", "y2"]
    dbox = det[box_cols].to_numpy(np.float64)[dsel]
    valid = (dbox[:, 0] < dbox[:, 2]) & (dbox[:, 1] < dbox[:, 3])
    dropped["detections with x1 >= x2 or y1 >= y2"] = int((~valid).sum())
    dsel, dbox = dsel[valid], dbox[valid]

    gcls = np.searchsorted(ids, gt["action_id"].to_numpy(np.int64)[gsel])
    dcls = np.searchsorted(ids, det["action_id"].to_numpy(np.int64)[dsel])
    res = frame_ap(dkey[dsel], dcls, score[dsel], dbox, gkey[gsel], gcls,
                   gt[box_cols].to_numpy(np.float64)[gsel], len(ids), [float(iou)], det_tie=-dsel)
    ap = res["ap"][0]
    has = ~np.isnan(ap)
    if not has.any():
        raise InputError("the ground truth has no box of a label-map class (after exclusions): nothing to evaluate",
                         file=None if isinstance(ground_truth, pd.DataFrame) else str(ground_truth))
    return {
        "protocol": "ava",
        "iou": float(iou),
        "mAP": float(ap[has].mean()),
        "per_class": {names[int(i)]: (float(a) if h else None) for i, a, h in zip(ids, ap, has)},
        "n_classes_evaluated": int(has.sum()),
        "n_classes_without_ground_truth": int((~has).sum()),
        "n_ground_truth": int(gsel.size),
        "n_detections": int(dsel.size),
        "dropped": dropped,
    }
