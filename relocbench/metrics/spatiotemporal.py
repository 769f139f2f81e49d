"""``reloc-spatiotemporal``: the frame-mAP of the CVPR 2019 spatio-temporal protocol.

Each (pair, reference keyframe) is an image; its ground truth is the ``targets`` rows of the
pair at that time (the boxes of every person carrying the pair's combined label). All
predictions of a pair are detections of the pair's label. Matching is the AVA rule (best-IoU
box, no fall-through, IoU ``>= t``; see :mod:`relocbench.metrics.frame_ap`); AP per label
over all its pairs' keyframes, ``frame_map`` is the mean over labels with ground truth, at
IoU 0.3, 0.5 (the headline) and 0.7.

Keyframe times are matched after rounding to 1e-6 (of the manifest's time unit). A
prediction at a keyframe without targets is a false positive; a time outside the pair's
reference window ``[ref_start, ref_end]`` is an error, and so is a time that is not one of the
pair's ``ref_keyframes`` when the pairs table lists them (the ucf24 and ava builders do); boxes outside [0, 1] are an error, or
with ``clip`` are clipped and counted in ``n_clipped``.

Ties: predictions of equal score are ranked by the pair's position in the manifest, then by
their position in the pair's list; boxes of equal IoU: the first target row wins.

``clip_scoring="original"`` scores as the CVPR 2019 authors' ``compute_ap.py`` (lines 63-110,
github.com/fengyang0317/STVR): each keyframe is cut into three 8-frame clips (its 1-second file
at 24 fps, ``split_videos.py`` lines 33-36), and each clip is an image of its own carrying the
keyframe's boxes: every target box is counted three times, and every prediction names its
clip (``"clip": 0 | 1 | 2``, required on every prediction; the default ``"keyframe"``
scoring refuses it). Matching inside a clip is the same rule. When the three clips of a
keyframe carry the same predictions, the two scorings give the same AP whenever the copies of
one prediction are ranked together (no two predictions of different outcome share a score,
or the copies are listed next to each other): each copy then repeats its prediction's
outcome, and the precision at every third rank is the keyframe scoring's.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from ..errors import ConfigError, ManifestError, PredictionError
from ..predictions import SpatiotemporalPredictions, check_provenance, match_pair_ids, predictions_from_dict
from .frame_ap import CLIPS_PER_KEYFRAME, frame_ap
from .temporal import thr_key

__all__ = ["evaluate_spatiotemporal", "ST_THRESHOLDS", "CLIP_SCORINGS", "image_keys"]

ST_THRESHOLDS = (0.3, 0.5, 0.7)
#: ``keyframe``: one image per (pair, keyframe); ``original``: one per (pair, keyframe, clip).
CLIP_SCORINGS = ("keyframe", "original")
_TOL = 1e-9


def _time_key(t: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(t, dtype=np.float64) * 1e6).astype(np.int64)


def _check_keyframes(pairs: pd.DataFrame, row_pair: np.ndarray, t: np.ndarray, preds, src) -> None:
    """When the manifest lists each pair's scored keyframes (``ref_keyframes``), a prediction
    at any other time is an error: it could never match and would count as a false positive."""
    kf = pairs["ref_keyframes"].to_numpy(object)
    lens = np.array([len(k) for k in kf], dtype=np.int64)
    times = np.concatenate([np.asarray(k, dtype=np.float64) for k in kf]) if lens.sum() else np.zeros(0)
    valid = pd.MultiIndex.from_arrays([np.repeat(np.arange(len(kf)), lens), _time_key(times)])
    ok = pd.MultiIndex.from_arrays([row_pair, _time_key(t)]).isin(valid)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        k = [float(x) for x in kf[row_pair[i]][:4]]
        raise PredictionError(
            f"time {float(t[i])!r} is not a scored keyframe of its pair (expected one of its ref_keyframes, "
            f"e.g. {k}; {int((~ok).sum())} such prediction(s))", file=src, item=preds.item(i))


def _check_clips(preds: SpatiotemporalPredictions, clip_scoring: str) -> Optional[np.ndarray]:
    """The predictions' clip indices under ``clip_scoring="original"`` (every prediction must
    name one), None under ``"keyframe"`` (where a prediction naming one is refused)."""
    clips = preds.clip
    if clip_scoring == "keyframe":
        if clips is not None and (clips >= 0).any():
            i = int(np.flatnonzero(clips >= 0)[0])
            raise PredictionError(
                f"the prediction names a clip ({int(clips[i])}) but the scoring is per keyframe "
                f"({int((clips >= 0).sum())} such prediction(s)); score with --clip-scoring original "
                "(clip_scoring='original') or drop the 'clip' fields", file=preds.source, item=preds.item(i))
        return None
    if preds.n_predictions and (clips is None or (clips < 0).any()):
        i = 0 if clips is None else int(np.flatnonzero(clips < 0)[0])
        n_bad = preds.n_predictions if clips is None else int((clips < 0).sum())
        raise PredictionError(
            f"the prediction names no clip ({n_bad} such prediction(s)); --clip-scoring original "
            "(clip_scoring='original') needs \"clip\": 0, 1 or 2 on every prediction", file=preds.source,
            item=preds.item(i))
    return np.zeros(0, np.int64) if clips is None else clips


def image_keys(det_pair: np.ndarray, det_time: np.ndarray, tgt_pair: np.ndarray, tgt_time: np.ndarray, *,
               n_pairs: int, det_clip: Optional[np.ndarray] = None, n_classes: int = 1):
    """The images of the frame-mAP as int64 keys: ``(det_img, gt_img, gt_row)``.

    An image is a (pair, keyframe); with ``det_clip`` (``clip_scoring="original"``) it is a
    (pair, clip, keyframe), and each targets row becomes :data:`CLIPS_PER_KEYFRAME` scored boxes,
    one per clip, each carrying the row's box (STVR compute_ap.py:69-77). ``gt_row[j]`` is the
    targets row of scored box j (rows in order, each repeated once per clip), so that
    ``np.bincount(tgt_pair[gt_row])`` counts each pair's scored boxes. Keys are small enough
    that ``key * n_classes + class`` fits an int64 (the key of :func:`frame_ap`).
    """
    det_pair = np.asarray(det_pair, dtype=np.int64)
    tgt_pair = np.asarray(tgt_pair, dtype=np.int64)
    n_targets = tgt_pair.shape[0]
    tgt_t = _time_key(tgt_time)
    if det_clip is None:
        gt_row = np.arange(n_targets, dtype=np.int64)
    else:
        # the clip is the last digit of the pair key, so that the image key below numbers (pair, clip, keyframe)
        k = CLIPS_PER_KEYFRAME
        gt_row = np.repeat(np.arange(n_targets, dtype=np.int64), k)
        tgt_pair = tgt_pair[gt_row] * k + np.tile(np.arange(k, dtype=np.int64), n_targets)
        tgt_t = tgt_t[gt_row]
        det_pair = det_pair * k + np.asarray(det_clip, dtype=np.int64)
    # image = (pair, keyframe): one int64 key, pair * n_times + the keyframe's rank among all times
    # (any injective numbering serves: images are only compared for equality)
    det_t = _time_key(det_time)
    times = np.union1d(det_t, tgt_t)
    n_times = np.int64(max(len(times), 1))
    det_img = det_pair * n_times + np.searchsorted(times, det_t)
    del det_t, det_pair
    gt_img = tgt_pair * n_times + np.searchsorted(times, tgt_t)
    del tgt_t, times
    n_images = int(n_pairs) * (1 if det_clip is None else CLIPS_PER_KEYFRAME) * int(n_times)
    if n_images * max(int(n_classes), 1) >= 1 << 62:  # frame_ap's (image, class) key would overflow
        _, img = np.unique(np.concatenate([det_img, gt_img]), return_inverse=True)
        img = img.reshape(-1)
        det_img, gt_img = img[:len(det_img)], img[len(det_img):]
    return det_img, gt_img, gt_row


ST_PAIR_COLUMNS = ("pair_id", "label", "ref_start", "ref_end", "ref_keyframes")  # what scoring reads of pairs


def evaluate_spatiotemporal(
    pairs: pd.DataFrame,
    targets: pd.DataFrame,
    predictions: Union[SpatiotemporalPredictions, Mapping],
    *,
    thresholds: Sequence[float] = ST_THRESHOLDS,
    clip: bool = False,
    allow_missing: bool = False,
    manifest_name: Optional[str] = None,
    split: Optional[str] = None,
    clip_scoring: str = "keyframe",
) -> Dict:
    """Frame-mAP per combined label (see the module docstring).

    Returns ``frame_map`` ({"0.3", "0.5", "0.7"}: mean AP over labels with targets),
    ``per_label`` ({label: {threshold: AP}}; labels without targets are listed in
    ``labels_without_targets``), ``n_pairs``, ``n_missing``, ``n_clipped``, ``n_predictions``,
    ``n_targets`` (target rows of the manifest; under ``clip_scoring="original"`` each is
    scored on three clips) and ``clip_scoring``.
    """
    if clip_scoring not in CLIP_SCORINGS:
        raise ConfigError(f"The 'clip_scoring' parameter must be one of {list(CLIP_SCORINGS)}. "
                          f"Got {clip_scoring!r} instead.")
    thresholds = tuple(float(t) for t in thresholds)
    if not thresholds or any(not (0 <= t <= 1) for t in thresholds):
        raise ConfigError(f"The 'thresholds' parameter must hold numbers in [0, 1]. Got {thresholds!r} instead.")
    for name, df, cols in (("pairs", pairs, ("pair_id", "label", "ref_start", "ref_end")),
                           ("targets", targets, ("pair_id", "time", "x1", "y1", "x2", "y2"))):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ManifestError(f"the spatio-temporal {name} table lacks columns {missing}")
    if len(pairs) == 0:
        raise ManifestError("the spatio-temporal pairs table is empty: nothing to evaluate")
    if not isinstance(predictions, SpatiotemporalPredictions):
        predictions = predictions_from_dict(predictions, task="spatiotemporal")
    preds = predictions
    check_provenance(preds, manifest_name, split)
    src = preds.source
    clip_idx = _check_clips(preds, clip_scoring)
    pair_ids = pairs["pair_id"].to_numpy(object)
    n_pairs = len(pairs)
    gidx = match_pair_ids(preds.pair_ids, pair_ids, source=src)
    present = np.zeros(n_pairs, dtype=bool)
    present[gidx] = True
    n_missing = int(n_pairs - present.sum())
    if n_missing and not allow_missing:
        first = pair_ids[int(np.flatnonzero(~present)[0])]
        raise PredictionError(
            f"{n_missing} pair(s) of the ground truth have no predictions, e.g. {first!r}; "
            "pass --allow-missing (allow_missing=True) to score them as misses", file=src)

    row_pair = np.repeat(gidx, preds.counts)
    t = preds.time
    rs = pairs["ref_start"].to_numpy(np.float64)[row_pair]
    re_ = pairs["ref_end"].to_numpy(np.float64)[row_pair]
    bad = (t < rs - _TOL) | (t > re_ + _TOL)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise PredictionError(
            f"time {float(t[i])!r} lies outside the reference window [{float(rs[i])!r}, {float(re_[i])!r}] "
            f"({int(bad.sum())} such prediction(s))", file=src, item=preds.item(i))
    del rs, re_, bad
    if "ref_keyframes" in pairs.columns and len(t):
        _check_keyframes(pairs, row_pair, t, preds, src)
    boxes = preds.boxes
    outside = ((boxes < 0) | (boxes > 1)).any(axis=1)
    n_clipped = int(outside.sum())
    del outside
    if n_clipped:
        if not clip:
            i = int(np.flatnonzero(((boxes < 0) | (boxes > 1)).any(axis=1))[0])
            raise PredictionError(
                f"box {boxes[i].tolist()} is outside [0, 1] (expected normalised xyxy; {n_clipped} such "
                "box(es)); pass --clip (clip=True) to clip and count them", file=src, item=preds.item(i))
        boxes = np.clip(boxes, 0.0, 1.0)

    tgt_idx = pd.Index(pair_ids).get_indexer(targets["pair_id"].to_numpy(object))
    if (tgt_idx < 0).any():
        i = int(np.flatnonzero(tgt_idx < 0)[0])
        raise ManifestError(f"targets row {i} names pair {targets['pair_id'].iloc[i]!r}, which is not in the pairs table")
    tgt_time = targets["time"].to_numpy(np.float64)
    tgt_boxes = targets[["x1", "y1", "x2", "y2"]].to_numpy(np.float64)
    n_targets = len(targets)
    n_labels = len(pd.unique(pairs["label"].to_numpy(object)))
    det_img, gt_img, gt_row = image_keys(row_pair, t, tgt_idx, tgt_time, n_pairs=n_pairs, det_clip=clip_idx,
                                         n_classes=n_labels)
    del tgt_time
    if clip_idx is not None:  # each target box scored once per clip
        tgt_idx, tgt_boxes = tgt_idx[gt_row], tgt_boxes[gt_row]
    del gt_row
    lab_codes, lab_names = pd.factorize(pairs["label"].to_numpy(object), sort=True)
    n = preds.n_predictions
    if gidx.shape[0] < 2 or bool(np.all(gidx[1:] > gidx[:-1])):
        tie = None  # pairs listed in manifest order: the file's row order is the tie order
    else:
        new_off = np.concatenate([[0], np.cumsum(np.bincount(gidx, weights=preds.counts,
                                                             minlength=n_pairs).astype(np.int64))])
        tie = new_off[row_pair] + (np.arange(n) - np.repeat(preds.offsets[:-1], preds.counts))
    det_cls = lab_codes[row_pair]
    del row_pair
    res = frame_ap(det_img, det_cls, preds.score, boxes, gt_img, lab_codes[tgt_idx], tgt_boxes, len(lab_names),
                   thresholds, det_tie=tie)
    ap = res["ap"]
    has = res["npos"] > 0
    if not has.any():
        raise ManifestError("the targets table holds no box for these pairs: nothing to evaluate")
    return {
        "protocol": "reloc-spatiotemporal",
        "thresholds": list(thresholds),
        "frame_map": {thr_key(th): float(np.mean(ap[k, has])) for k, th in enumerate(thresholds)},
        "per_label": {str(lab): {thr_key(th): float(ap[k, j]) for k, th in enumerate(thresholds)}
                      for j, lab in enumerate(lab_names) if has[j]},
        "labels_without_targets": [str(lab) for j, lab in enumerate(lab_names) if not has[j]],
        "n_pairs": int(n_pairs),
        "n_missing": n_missing,
        "n_clipped": n_clipped,
        "n_predictions": int(n),
        "n_targets": int(n_targets),
        "clip_scoring": clip_scoring,
    }
