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
frame index for UCF101-24), in the same unit as the manifest's ``targets.time`` column. An
entry may also carry ``"clip": c`` (an integer 0, 1 or 2): which of the keyframe's three
8-frame clips it was detected on, for the original clip scoring of ``reloc-spatiotemporal``
(``clip_scoring="original"``, which requires it on every entry; the default keyframe scoring
refuses it). It is read into ``clip`` (-1 where an entry has none; None when none has one).

Both are read into flat numpy arrays (one row per prediction, rows of a pair contiguous,
``offsets`` delimiting the pairs) so that the evaluators never loop over predictions.
Checks that need the ground truth (unknown pairs, windows) live in :mod:`relocbench.metrics`.
"""
from __future__ import annotations

import os
from array import array
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import attrgetter, itemgetter
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import PredictionError
from .io import JsonMapping, Typed, trim_heap
from .validate import found

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
    """Read a whole prediction-like JSON document with every check of
    :func:`relocbench.io.read_json`, and also reject duplicate keys.

    ``json`` keeps the last of two equal keys silently; a pair id listed twice would then
    lose predictions without a word, so it is an error here (named as a pair id when it is a
    key of ``results``). Large files are better read with :func:`read_predictions`, which
    never holds the whole document as Python objects.
    """
    return JsonMapping(path, "results", what, PredictionError, malformed="unparsable", item_name="pair id",
                       count_keys=count_entry_keys, whole=True).header


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


# ----------------------------------------------------------------------------- column reading

_NUMBER_TYPES = {int, float}


def count_entry_keys(results: Mapping) -> int:
    """The keys of ``{id: [entry, ...]}`` with flat entries (see
    :func:`relocbench.io.count_json_keys`), counted without walking every value."""
    return len(results) + sum(map(dict.__len__, chain.from_iterable(results.values())))  # TypeError unless dicts


def _numbers(values: list, size: int, bools: bool = True):
    """``values`` (lists of ``size`` numbers, or numbers when ``size`` is 0) as a float64
    array, or None when one of them is not that (the caller then names it). ``bools=False``
    says the text held no ``true``/``false`` (the only non-number ``array('d')`` takes)."""
    if size:
        if values and (set(map(type, values)) != {list} or set(map(len, values)) != {size}):
            return None
        values = list(chain.from_iterable(values))
    try:
        arr = np.frombuffer(array("d", values), dtype=np.float64)  # refuses strings, None, lists
    except (TypeError, OverflowError):  # OverflowError: an integer no float holds
        return None
    if bools and values and bool in set(map(type, values)):
        return None
    return arr.reshape(-1, size) if size else arr


def list_columns(lists: list, fields: Mapping[str, int], *, strings: Sequence[str] = (), bools: bool = True):
    """Columns of the entry lists ``lists``: (counts, {field: array}, {string field: list}),
    or None when an entry is malformed (then a checked loop names it).

    ``fields`` maps each numeric field to its length (0: a number, k: a list of k numbers);
    ``strings`` are fields that hold strings. Other keys of an entry are ignored.
    ``bools=False``: the text is known to hold no boolean (see :func:`_numbers`).
    """
    if lists and set(map(type, lists)) != {list}:
        return None
    counts = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    entries = list(chain.from_iterable(lists))
    cols, text = {}, {}
    try:  # itemgetter raises TypeError on an entry that is not an object, KeyError on a missing field
        for name, size in fields.items():
            arr = _numbers(list(map(itemgetter(name), entries)), size, bools)
            if arr is None:
                return None
            cols[name] = arr
        for name in strings:
            vals = list(map(itemgetter(name), entries))
            if vals and set(map(type, vals)) != {str}:
                return None
            text[name] = vals
    except (KeyError, TypeError):
        return None
    return counts, cols, text


def entry_columns(results: Mapping, fields: Mapping[str, int], *, strings: Sequence[str] = (), bools=True):
    """Columns of ``{id: [entry, ...]}``: (ids, counts, {field: array}, {string field: list}),
    or None when an entry is malformed (see :func:`list_columns`). ``bools`` is a
    :class:`relocbench.io.Typed` for a slice decoded by :func:`typed_decoder` (entries are
    structs whose fields hold what the layout says; its ``info``, the entries per id)."""
    if isinstance(bools, Typed):
        return _struct_columns(results, fields, strings, bools.info)
    got = list_columns(list(results.values()), fields, strings=strings, bools=bools)
    return None if got is None else (list(results), *got)


def _struct_columns(results: Mapping, fields: Mapping[str, int], strings: Sequence[str], counts: np.ndarray):
    return (list(results), counts, *struct_columns(chain.from_iterable(results.values()), fields, strings))


def struct_columns(entries, fields: Mapping[str, int], strings: Sequence[str] = ()):
    """({field: array}, {string field: list}) of typed entries (msgspec structs whose fields
    hold what the layout says: no check is needed)."""
    entries = list(entries)
    cols = {}
    for name, size in fields.items():
        vals = list(map(attrgetter(name), entries))
        if size:
            vals = list(chain.from_iterable(vals))
        arr = np.frombuffer(array("d", vals), dtype=np.float64)
        cols[name] = arr.reshape(-1, size) if size else arr
    return cols, {name: list(map(attrgetter(name), entries)) for name in strings}


def typed_decode(decoder, text: bytes):
    """``decoder.decode(text)`` (a msgspec decoder), or None where it refuses the text or the
    text escapes a surrogate (the checked reader refuses lone ones and names them)."""
    import msgspec

    if b"\\ud" in text or b"\\uD" in text:
        return None
    try:
        return decoder.decode(text)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return None


def typed_decoder(fields: Mapping[str, int], strings: Sequence[str] = (), ints: Sequence[str] = ()):
    """A decoder of ``{id: [entry, ...]}`` text whose entries hold exactly ``fields`` (numbers,
    or lists of that many numbers) and ``strings``, for
    :meth:`relocbench.io.JsonMapping.map_chunks`: ``decode(text)`` returns (mapping of entry
    structs, number of keys, entries per id) or None where the text is anything else (another layout, a
    boolean, null, NaN, a number no float holds, an escaped surrogate: the checked reader
    then reads it and names the problem). ``ints`` are fields that hold JSON integers.
    None without msgspec."""
    try:
        import msgspec
    except ImportError:  # pragma: no cover - a dependency; the checked reader serves without it
        return None
    spec = [(name, Tuple[(float,) * size] if size else float) for name, size in fields.items()]
    spec += [(name, str) for name in strings]
    spec += [(name, int) for name in ints]
    entry = msgspec.defstruct("Entry", spec, gc=False)  # fields hold no containers: no cycles to collect
    decoder = msgspec.json.Decoder(Dict[str, List[entry]])
    per_entry = len(spec)

    def decode(text: bytes):
        doc = typed_decode(decoder, text)
        if doc is None:
            return None
        counts = np.fromiter(map(len, doc.values()), dtype=np.int64, count=len(doc))
        return doc, len(doc) + per_entry * int(counts.sum()), counts

    return decode


def _entry_problem(e: Any, fields: Mapping[str, int], strings: Sequence[str], need: str) -> Optional[str]:
    """Why ``e`` is not a well-formed entry (a message), or None."""
    if not isinstance(e, dict) or any(k not in e for k in (*fields, *strings)):
        return f"expected {need}, found {e!r:.80}"
    for name, size in fields.items():
        v = e[name]
        if size:
            ok = isinstance(v, list) and len(v) == size and all(type(x) in _NUMBER_TYPES for x in v)
            what = f"a list of {size} numbers"
        else:
            ok = type(v) in _NUMBER_TYPES
            what = "a number"
        if not ok:
            return f"{name!r} must be {what}, found {found(v)}"
        try:
            np.asarray(v, dtype=np.float64)
        except OverflowError:
            return f"{name!r} must hold numbers that fit a float (below 1.8e308), found {found(v)}"
    for name in strings:
        if not isinstance(e[name], str):
            return f"{name!r} must be a string, found {found(e[name])}"
    return None


def check_entries(results: Mapping, fields: Mapping[str, int], *, strings: Sequence[str] = (), need: str,
                  source=None, item: str = "pair", entry: str = "prediction", error=PredictionError) -> None:
    """Raise naming the first malformed entry of ``results`` (the slow twin of
    :func:`entry_columns`, run when that one refuses a chunk)."""
    for key, entries in results.items():
        if not isinstance(entries, list):
            raise error(f"expected a list of {entry}s, found {found(entries)}", file=source,
                        item=f"{item} {key!r}")
        for i, e in enumerate(entries):
            why = _entry_problem(e, fields, strings, need)
            if why:
                raise error(why, file=source, item=f"{item} {key!r}: {entry} {i}")
    raise error("malformed predictions (no entry found at fault)", file=source)  # pragma: no cover


def column_reader(fields: Mapping[str, int], *, strings: Sequence[str] = (), need: str, source=None,
                  item: str = "pair", error=PredictionError):
    """``piece(mapping, may hold booleans)``: the columns of one slice of ``{id: [entry, ...]}``
    (see :func:`entry_columns`), a malformed entry named in one line (:func:`check_entries`).
    Made for :meth:`relocbench.io.JsonMapping.map_chunks`; :func:`join_columns` joins them."""
    def piece(chunk: Mapping, bools: bool = True):
        got = entry_columns(chunk, fields, strings=strings, bools=bools)
        if got is None:
            check_entries(chunk, fields, strings=strings, need=need, source=source, item=item, error=error)
        return got

    return piece


def join_columns(pieces: list, fields: Mapping[str, int], strings: Sequence[str] = ()):
    """The pieces of :func:`column_reader`, in order, as one (ids, counts, {field: array},
    {string field: list}); ``pieces`` is emptied as it is read."""
    ids, counts, cols, text = [], [], {k: [] for k in fields}, {k: [] for k in strings}
    for k, c, num, txt in pieces:
        ids.extend(k)
        counts.append(c)
        for n, a in num.items():
            cols[n].append(a)
        for n, v in txt.items():
            text[n].extend(v)
    pieces.clear()
    shape = {n: ((0, s) if s else (0,)) for n, s in fields.items()}
    cols = {n: (np.concatenate(v) if v else np.zeros(shape[n])) for n, v in cols.items()}
    return ids, (np.concatenate(counts) if counts else np.zeros(0, np.int64)), cols, text


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
    clip: Optional[np.ndarray] = None  # int64 clip index 0..2 per row, -1 where absent; None: no row has one

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
        if self.clip is not None:
            c = self.clip
            if c.shape != (n,) or c.dtype.kind not in "iu":
                raise PredictionError(f"expected {n} integer clip indices, found shape {c.shape} and dtype "
                                      f"{c.dtype}", file=self.source)
            bad = (c < -1) | (c > CLIPS_PER_KEYFRAME - 1)
            if bad.any():
                i = _first_bad(bad)
                raise PredictionError(
                    f"'clip' must be an integer 0, 1 or 2 (the keyframe's clip), found {int(c[i])!r} "
                    f"({int(bad.sum())} such prediction(s))", file=self.source, item=self.item(i))

    @classmethod
    def from_arrays(cls, pair_ids: Sequence[str], counts, time, boxes, score, *,
                    manifest: Optional[str] = None, split: Optional[str] = None,
                    source: Optional[str] = None, clip=None) -> "SpatiotemporalPredictions":
        counts = np.asarray(counts, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(pair_ids=np.asarray(pair_ids, dtype=object), offsets=offsets,
                   score=np.asarray(score, dtype=np.float64), time=np.asarray(time, dtype=np.float64),
                   boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4), manifest=manifest,
                   split=split, source=source, clip=None if clip is None else np.asarray(clip, dtype=np.int64))


#: Clips a keyframe is cut into for the original clip scoring (the ``clip`` field: 0, 1, 2).
CLIPS_PER_KEYFRAME = 3
_CLIP = "clip"
_ABSENT = -1
_NO_CLIP = object()  # an entry without the key


def _clip_item(ids, counts: np.ndarray, row: int) -> str:
    k = int(np.searchsorted(np.cumsum(counts), row, side="right"))
    return f"pair {ids[k]!r}: prediction {row - int(np.sum(counts[:k]))}"


def _clip_values(vals: list, ids, counts: np.ndarray, source) -> Optional[np.ndarray]:
    """The ``clip`` column of a slice from its values (``_NO_CLIP`` where an entry has none):
    None when no entry has one, else int64 with -1 where absent; anything but an integer 0..2
    named in one line."""
    if not vals or vals.count(_NO_CLIP) == len(vals):
        return None
    given = [v for v in vals if v is not _NO_CLIP] if _NO_CLIP in vals else vals
    if set(map(type, given)) != {int} or min(given) < 0 or max(given) >= CLIPS_PER_KEYFRAME:
        i = next(k for k, v in enumerate(vals)
                 if v is not _NO_CLIP and (type(v) is not int or not 0 <= v < CLIPS_PER_KEYFRAME))
        raise PredictionError(f"'clip' must be an integer 0, 1 or 2 (the keyframe's clip), found {found(vals[i])}",
                              file=source, item=_clip_item(ids, counts, i))
    if given is not vals:
        vals = [_ABSENT if v is _NO_CLIP else v for v in vals]
    return np.fromiter(vals, dtype=np.int64, count=len(vals))


def _st_reader(source: Optional[str]):
    """The column reader of spatio-temporal predictions (see :func:`column_reader`): the
    pieces carry the slice's ``clip`` column (or None) as their string-field entry ``"clip"``.
    Returns ``(piece, typed)``."""
    need = _NEED["spatiotemporal"]
    plain = column_reader(_ST_FIELDS, need=need, source=source)
    typed_plain = typed_decoder(_ST_FIELDS)
    typed_clip = typed_decoder(_ST_FIELDS, ints=(_CLIP,))

    def typed(text: bytes):
        if b'"clip"' in text:  # the layout with a clip (where that is not it, the checked reader decides)
            got = typed_clip(text)
            if got is not None:
                return got[0], got[1], ("clip", got[2])
        return typed_plain(text)

    def piece(chunk: Mapping, bools=True):
        if isinstance(bools, Typed) and isinstance(bools.info, tuple):  # decoded with a clip on every entry
            counts = bools.info[1]
            ids, counts, cols, text = _struct_columns(chunk, _ST_FIELDS, (), counts)
            vals = list(map(attrgetter(_CLIP), chain.from_iterable(chunk.values())))
            return ids, counts, cols, {_CLIP: _clip_values(vals, ids, counts, source)}
        ids, counts, cols, text = plain(chunk, bools)
        if isinstance(bools, Typed):  # decoded without a clip: no entry has one
            return ids, counts, cols, {_CLIP: None}
        vals = list(map(dict.get, chain.from_iterable(chunk.values()), repeat(_CLIP), repeat(_NO_CLIP)))
        return ids, counts, cols, {_CLIP: _clip_values(vals, ids, counts, source)}

    return piece, (typed if typed_plain is not None and typed_clip is not None else None)


def _join_clips(pieces: list) -> Optional[np.ndarray]:
    """The ``clip`` columns of the pieces of :func:`_st_reader` (taken out of them), joined."""
    parts = [(p[3].pop(_CLIP, None), int(np.sum(p[1]))) for p in pieces]
    if all(c is None for c, _ in parts):
        return None
    return np.concatenate([np.full(n, _ABSENT, np.int64) if c is None else c for c, n in parts])


_TEMPORAL_FIELDS = {"segment": 2, "score": 0}
_ST_FIELDS = {"time": 0, "box": 4, "score": 0}
_NEED = {"temporal": "an object with 'segment' and 'score'",
         "spatiotemporal": "an object with 'time', 'box' and 'score'"}


def _check_header(doc: Any, src: Optional[str], task: Optional[str]) -> str:
    """The document's keys other than the predictions; returns its task."""
    if not isinstance(doc, Mapping):
        raise PredictionError(f"expected a JSON object, found {found(doc)}", file=src)
    for k in ("task", "results"):
        if k not in doc:
            raise PredictionError(f"lacks the key {k!r}", file=src)
    if "version" in doc and doc["version"] != VERSION:
        raise PredictionError(f"'version' must be {VERSION!r}, found {doc['version']!r}", file=src)
    found_task = doc["task"]
    if found_task not in ("temporal", "spatiotemporal"):
        raise PredictionError(f"'task' must be 'temporal' or 'spatiotemporal', found {found_task!r}", file=src)
    if task is not None and found_task != task:
        raise PredictionError(f"'task' is {found_task!r} but the ground truth is a {task!r} manifest", file=src)
    if found_task == "temporal" and "unit" not in doc:
        raise PredictionError(f"lacks the key 'unit' (one of {list(UNITS)})", file=src)
    for k in ("manifest", "split"):
        if doc.get(k) is not None and not isinstance(doc[k], str):
            raise PredictionError(f"{k!r} must be a string, found {found(doc[k])}", file=src)
    return found_task


def _from_columns(doc, found_task: str, src: Optional[str]):
    """Flat predictions of ``doc``: a parsed document, or a :class:`JsonMapping` of a file."""
    fields = _TEMPORAL_FIELDS if found_task == "temporal" else _ST_FIELDS
    if found_task == "temporal":
        piece, typed = column_reader(fields, need=_NEED[found_task], source=src), typed_decoder(fields)
    else:
        piece, typed = _st_reader(src)
    if isinstance(doc, JsonMapping):
        pieces = doc.map_chunks(piece, typed=typed)
        doc = doc.header
    else:
        pieces = [piece(doc["results"])]
    clip = _join_clips(pieces) if found_task == "spatiotemporal" else None
    ids, counts, cols, _ = join_columns(pieces, fields)
    meta = dict(manifest=doc.get("manifest"), split=doc.get("split"), source=src)
    if found_task == "temporal":
        seg = cols["segment"]
        return TemporalPredictions.from_arrays(ids, counts, seg[:, 0], seg[:, 1], cols["score"],
                                               unit=doc["unit"], **meta)
    return SpatiotemporalPredictions.from_arrays(ids, counts, cols["time"], cols["box"], cols["score"], clip=clip,
                                                 **meta)


def predictions_from_dict(doc: Mapping, *, source: Optional[PathLike] = None,
                          task: Optional[str] = None):
    """Validate the structure of a parsed prediction document and return flat predictions.

    ``task`` (when given) is the task of the ground truth: a different ``task`` in the
    document is an error.
    """
    src = None if source is None else str(source)
    found_task = _check_header(doc, src, task)
    results = doc["results"]
    if not isinstance(results, Mapping):
        raise PredictionError(f"'results' must be an object mapping pair ids to lists, found {found(results)}",
                              file=src)
    return _from_columns(doc, found_task, src)


def read_predictions(path: PathLike, *, task: Optional[str] = None):
    """Read and structurally validate a relocbench prediction file (see the module docstring).

    The file is read in chunks straight into columns (memory near that of the arrays), with
    every check of :func:`relocbench.io.read_json` (``unique_keys``): a pair id listed twice,
    a key twice in one entry, NaN or Infinity (then refused as values), integers no float
    holds, lone surrogates, undecodable bytes, nesting too deep, each named in one line.
    """
    doc = JsonMapping(path, "results", "predictions file", PredictionError, malformed="unparsable",
                      item_name="pair id", count_keys=count_entry_keys)
    src = str(path)
    found_task = _check_header(doc.header, src, task)
    if not doc.chunked:
        return predictions_from_dict(doc.header, source=path, task=task)
    preds = _from_columns(doc, found_task, src)
    trim_heap()
    return preds


def match_pair_ids(pred_ids: np.ndarray, gt_ids, *, source: Optional[str] = None) -> np.ndarray:
    """Position of each predicted pair id among the (unique) ground-truth ids.

    Unknown and repeated pair ids are errors. Predictions listed in the ground truth's
    order (the usual case) are recognised without hashing.
    """
    import pandas as pd  # here, not at the top: the official protocols read predictions without pandas

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
