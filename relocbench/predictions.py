"""Prediction files of the relocbench protocols: reading, structural validation, flat arrays.

Temporal re-localization (``task: "temporal"``)::

    {"version": "relocbench/1", "task": "temporal", "manifest": "activitynet", "split": "test",
     "unit": "step",                       # or "second"
     "results": {pair_id: [{"segment": [start, end], "score": s}, ...]}}

Segments are relative to the start of the pair's reference window (steps are end-exclusive
feature steps, seconds are seconds). A list is a ranking: on equal scores the entry listed
first ranks first.

Spatio-temporal re-localization (``task: "spatiotemporal"``)::

    {"task": "spatiotemporal", "manifest": ..., "split": ...,
     "results": {pair_id: [{"time": t, "box": [x1, y1, x2, y2], "score": s}, ...]}}

Boxes are normalised ``xyxy`` in [0, 1]; ``time`` is a reference keyframe (seconds for AVA,
frame index for UCF101-24), in the same unit as the manifest's ``targets.time`` column.

Both are read into flat numpy arrays (one row per prediction, rows of a pair contiguous,
``offsets`` delimiting the pairs) so that the evaluators never loop over predictions.
Checks that need the ground truth (unknown pairs, windows) live in :mod:`relocbench.metrics`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from .errors import PredictionError
from .io import read_json, require_file

__all__ = [
    "VERSION",
    "TemporalPredictions",
    "SpatiotemporalPredictions",
    "read_predictions",
    "load_json_strict",
    "predictions_from_dict",
    "match_pair_ids",
]

VERSION = "relocbench/1"
UNITS = ("step", "second")
PathLike = Union[str, os.PathLike]


def load_json_strict(path: PathLike, what: str = "predictions file") -> Any:
    """Read JSON like :func:`relocbench.io.read_json`, and also reject duplicate keys.

    ``json`` keeps the last of two equal keys silently; a pair id listed twice would then
    lose predictions without a word, so it is an error here.
    """
    p = require_file(path, what, PredictionError)
    dups = []

    def hook(pairs):
        d = dict(pairs)
        if len(d) != len(pairs):
            seen = set()
            for k, _ in pairs:
                if k in seen:
                    dups.append(k)
                seen.add(k)
        return d

    doc = read_json(p, what, PredictionError, object_pairs_hook=hook, malformed="unparsable")
    if dups:
        results = doc.get("results") if isinstance(doc, dict) else None
        if isinstance(results, dict) and dups[0] in results:
            raise PredictionError(
                f"pair id {dups[0]!r} appears more than once in 'results' "
                f"({len(dups)} duplicate key(s) in all)", file=p)
        raise PredictionError(f"key {dups[0]!r} appears more than once in one JSON object", file=p)
    return doc


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


@dataclass(frozen=True)
class _Flat:
    """Shared layout: ``pair_ids[k]`` owns rows ``offsets[k]:offsets[k + 1]``."""

    pair_ids: np.ndarray
    offsets: np.ndarray
    score: np.ndarray
    manifest: Optional[str] = None
    split: Optional[str] = None
    source: Optional[str] = None

    @property
    def n_predictions(self) -> int:
        return int(self.offsets[-1])

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def item(self, row: int) -> str:
        """``pair 'x': prediction i`` for a flat row index (for error messages)."""
        k = int(np.searchsorted(self.offsets, row, side="right") - 1)
        return f"pair {self.pair_ids[k]!r}: prediction {row - int(self.offsets[k])}"

    def _check_common(self) -> None:
        n = len(self.pair_ids)
        if self.offsets.shape != (n + 1,) or self.offsets[0] != 0 or np.any(np.diff(self.offsets) < 0):
            raise PredictionError(
                f"offsets must be {n + 1} non-decreasing integers from 0, found shape "
                f"{self.offsets.shape}", file=self.source)
        if self.score.shape != (self.n_predictions,):
            raise PredictionError(
                f"expected {self.n_predictions} scores, found shape {self.score.shape}", file=self.source)
        bad = ~np.isfinite(self.score)
        if bad.any():
            i = _first_bad(bad)
            raise PredictionError(
                f"score must be a finite number, found {float(self.score[i])!r} "
                f"({int(bad.sum())} non-finite score(s))", file=self.source, item=self.item(i))


@dataclass(frozen=True)
class TemporalPredictions(_Flat):
    """Flat temporal predictions: ``start``/``end`` relative to the reference window start."""

    start: np.ndarray = field(default_factory=lambda: np.zeros(0))
    end: np.ndarray = field(default_factory=lambda: np.zeros(0))
    unit: str = "step"

    task = "temporal"

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise PredictionError(f"'unit' must be one of {list(UNITS)}, found {self.unit!r}", file=self.source)
        self._check_common()
        for name in ("start", "end"):
            arr = getattr(self, name)
            if arr.shape != (self.n_predictions,):
                raise PredictionError(
                    f"expected {self.n_predictions} segment {name}s, found shape {arr.shape}", file=self.source)
            bad = ~np.isfinite(arr)
            if bad.any():
                i = _first_bad(bad)
                raise PredictionError(
                    f"segment {name} must be a finite number, found {float(arr[i])!r}",
                    file=self.source, item=self.item(i))
        bad = self.end < self.start
        if bad.any():
            i = _first_bad(bad)
            raise PredictionError(
                f"segment end {float(self.end[i])!r} is before its start {float(self.start[i])!r} "
                f"({int(bad.sum())} such segment(s))", file=self.source, item=self.item(i))

    @classmethod
    def from_arrays(cls, pair_ids: Sequence[str], counts, start, end, score, *, unit: str = "step",
                    manifest: Optional[str] = None, split: Optional[str] = None,
                    source: Optional[str] = None) -> "TemporalPredictions":
        """Build from per-pair counts and flat arrays (rows of a pair contiguous, ranked)."""
        counts = np.asarray(counts, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(pair_ids=np.asarray(pair_ids, dtype=object), offsets=offsets,
                   score=np.asarray(score, dtype=np.float64), start=np.asarray(start, dtype=np.float64),
                   end=np.asarray(end, dtype=np.float64), unit=unit, manifest=manifest, split=split,
                   source=source)


@dataclass(frozen=True)
class SpatiotemporalPredictions(_Flat):
    """Flat spatio-temporal predictions: a keyframe ``time`` and a normalised xyxy ``boxes`` row."""

    time: np.ndarray = field(default_factory=lambda: np.zeros(0))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))

    task = "spatiotemporal"

    def __post_init__(self) -> None:
        self._check_common()
        n = self.n_predictions
        if self.time.shape != (n,) or self.boxes.shape != (n, 4):
            raise PredictionError(
                f"expected {n} times and ({n}, 4) boxes, found shapes {self.time.shape} and "
                f"{self.boxes.shape}", file=self.source)
        for name, arr in (("time", self.time), ("box", self.boxes)):
            bad = ~np.isfinite(arr if arr.ndim > 1 else arr[:, None]).all(axis=1)
            if bad.any():
                i = _first_bad(bad)
                raise PredictionError(f"{name} must hold finite numbers, found {arr[i].tolist()!r}",
                                      file=self.source, item=self.item(i))
        b = self.boxes
        bad = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
        if bad.any():
            i = _first_bad(bad)
            raise PredictionError(
                f"box {b[i].tolist()} ends before it starts (expected x1 <= x2 and y1 <= y2, "
                f"normalised xyxy; {int(bad.sum())} such box(es))", file=self.source, item=self.item(i))

    @classmethod
    def from_arrays(cls, pair_ids: Sequence[str], counts, time, boxes, score, *,
                    manifest: Optional[str] = None, split: Optional[str] = None,
                    source: Optional[str] = None) -> "SpatiotemporalPredictions":
        counts = np.asarray(counts, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(pair_ids=np.asarray(pair_ids, dtype=object), offsets=offsets,
                   score=np.asarray(score, dtype=np.float64), time=np.asarray(time, dtype=np.float64),
                   boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4), manifest=manifest,
                   split=split, source=source)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _parse_results(results: Mapping, task: str, source: Optional[str]):
    """Flatten ``results`` with per-entry structural checks; returns lists of values."""
    if not isinstance(results, Mapping):
        raise PredictionError(f"'results' must be an object mapping pair ids to lists, found "
                              f"{type(results).__name__}", file=source)
    ids, counts, a, b, scores = [], [], [], [], []
    key = "segment" if task == "temporal" else "box"
    size = 2 if task == "temporal" else 4
    for pid, entries in results.items():
        if not isinstance(entries, list):
            raise PredictionError(f"expected a list of predictions, found {type(entries).__name__}",
                                  file=source, item=f"pair {pid!r}")
        ids.append(pid)
        counts.append(len(entries))
        for i, e in enumerate(entries):
            try:
                geo = e[key]
                s = e["score"]
                t = e["time"] if task == "spatiotemporal" else None
            except (KeyError, TypeError):
                need = "'segment' and 'score'" if task == "temporal" else "'time', 'box' and 'score'"
                raise PredictionError(f"expected an object with {need}, found {e!r:.80}",
                                      file=source, item=f"pair {pid!r}: prediction {i}") from None
            if not (isinstance(geo, list) and len(geo) == size and all(_number(x) for x in geo)):
                raise PredictionError(f"'{key}' must be a list of {size} numbers, found {geo!r:.80}",
                                      file=source, item=f"pair {pid!r}: prediction {i}")
            if not _number(s) or (t is not None and not _number(t)):
                raise PredictionError(
                    f"'score'{' and time' if t is not None else ''} must be numbers, found "
                    f"score={s!r}" + (f", time={t!r}" if t is not None else ""),
                    file=source, item=f"pair {pid!r}: prediction {i}")
            a.append(geo)
            scores.append(s)
            if t is not None:
                b.append(t)
    return ids, counts, a, b, scores


def predictions_from_dict(doc: Mapping, *, source: Optional[PathLike] = None,
                          task: Optional[str] = None):
    """Validate the structure of a parsed prediction document and return flat predictions.

    ``task`` (when given) is the task of the ground truth: a different ``task`` in the
    document is an error.
    """
    src = None if source is None else str(source)
    if not isinstance(doc, Mapping):
        raise PredictionError(f"expected a JSON object, found {type(doc).__name__}", file=src)
    for k in ("task", "results"):
        if k not in doc:
            raise PredictionError(f"lacks the key {k!r}", file=src)
    if "version" in doc and doc["version"] != VERSION:
        raise PredictionError(f"'version' must be {VERSION!r}, found {doc['version']!r}", file=src)
    found = doc["task"]
    if found not in ("temporal", "spatiotemporal"):
        raise PredictionError(f"'task' must be 'temporal' or 'spatiotemporal', found {found!r}", file=src)
    if task is not None and found != task:
        raise PredictionError(f"'task' is {found!r} but the ground truth is a {task!r} manifest", file=src)
    ids, counts, geo, times, scores = _parse_results(doc["results"], found, src)
    meta = dict(manifest=doc.get("manifest"), split=doc.get("split"), source=src)
    if found == "temporal":
        if "unit" not in doc:
            raise PredictionError(f"lacks the key 'unit' (one of {list(UNITS)})", file=src)
        seg = np.asarray(geo, dtype=np.float64).reshape(-1, 2)
        return TemporalPredictions.from_arrays(ids, counts, seg[:, 0], seg[:, 1], scores,
                                               unit=doc["unit"], **meta)
    return SpatiotemporalPredictions.from_arrays(ids, counts, times, geo, scores, **meta)


def read_predictions(path: PathLike, *, task: Optional[str] = None):
    """Read and structurally validate a relocbench prediction file (see the module docstring)."""
    return predictions_from_dict(load_json_strict(path), source=Path(path), task=task)


def match_pair_ids(pred_ids: np.ndarray, gt_ids, *, source: Optional[str] = None) -> np.ndarray:
    """Position of each predicted pair id among the (unique) ground-truth ids.

    Unknown and repeated pair ids are errors. Predictions listed in the ground truth's
    order (the usual case) are recognised without hashing.
    """
    pred_ids = np.asarray(pred_ids, dtype=object)
    gt_arr = gt_ids.to_numpy(object) if isinstance(gt_ids, pd.Series) else np.asarray(gt_ids, dtype=object)
    if pred_ids.shape == gt_arr.shape and bool(np.all(pred_ids == gt_arr)):
        return np.arange(pred_ids.shape[0], dtype=np.int64)
    idx = pd.Index(gt_arr).get_indexer(pred_ids)
    bad = idx < 0
    if bad.any():
        i = _first_bad(bad)
        raise PredictionError(
            f"pair id {pred_ids[i]!r} is not in the ground truth ({int(bad.sum())} unknown pair id(s))",
            file=source)
    seen = np.bincount(idx, minlength=gt_arr.shape[0])
    if seen.max(initial=0) > 1:
        dup = gt_arr[int(np.argmax(seen))]
        raise PredictionError(f"pair id {dup!r} appears more than once", file=source)
    return idx.astype(np.int64)


def check_provenance(preds: "_Flat", manifest_name: Optional[str], split: Optional[str]) -> None:
    """The document's ``manifest``/``split`` (when present) must match the ground truth's."""
    if preds.manifest is not None and manifest_name is not None and preds.manifest != manifest_name:
        raise PredictionError(
            f"predictions are for manifest {preds.manifest!r} but the ground truth is manifest "
            f"{manifest_name!r}", file=preds.source)
    if preds.split is not None and split is not None and preds.split != split:
        raise PredictionError(
            f"predictions are for split {preds.split!r} but the ground truth is split {split!r}",
            file=preds.source)
