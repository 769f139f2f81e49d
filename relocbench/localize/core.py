"""``localize``: where does this clip happen in those videos? The library behind
``relocbench localize QUERY REFERENCE...``.

1. The query (a video, or a range of one) and every reference (video files, or every video
   in the folders given) are turned into features by :func:`relocbench.extract.extract_video`
   with one set of settings, through the feature cache (:mod:`relocbench.localize.cache`).
2. Training-free methods (``auto``, ``window``, ``framedp``: :mod:`relocbench.localize.matching`)
   compare query and reference on one time grid of ``grid_s`` seconds. A trained method is a
   finished ``run-baseline`` folder: the features are extracted with the run's own settings
   (read from its features file; a mismatch is refused naming both), the query is resampled to
   the reference's step duration, and the model scans the reference in overlapping windows
   (:func:`relocbench.localize.runs.predict_windows`).
3. Within a reference the best non-overlapping candidates are kept (:func:`~.matching.nms`);
   across references the segments are ranked by score and the ``top_k`` best are returned,
   in seconds on each reference's own timeline. A reference shorter than the query is
   skipped with the reason, and the others are still ranked.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import ConfigError, InputError
from .cache import EntryCheck, FeatureCache
from .floor import best_score, finish_segments, resolve_min_score
from .matching import (DEFAULT_GRID_S, Candidates, WindowConfig, grid_size, match, match_bytes, nms, resample_to_grid,
                       resolve_matcher)
from .timecodes import format_hms, parse_query_range

__all__ = ["localize", "LocalizeResult", "Segment", "ReferenceInfo", "expand_references", "localize_inputs",
           "check_bounds", "SCHEMA_VERSION", "SKIP_SHORTER", "BOUNDS", "MAX_MATCH_BYTES"]

SCHEMA_VERSION = "relocbench/1"
#: Sizes a user can ask for, checked before anything is allocated: ``(low, high)``, both allowed.
BOUNDS: Dict[str, Tuple[str, float, float]] = {
    "grid_s": ("--grid", 0.01, 60.0),         # seconds per cell of the common time grid
    "top_k": ("--top-k", 1, 1000),            # segments reported
    "batch_size": ("--batch-size", 1, 1024),  # clips or frames per forward pass of the backbone
    "step_frames": ("--step-frames", 1, 4096),  # frames per feature step
}
#: Memory the training-free matching of one reference may take (resampled features and the
#: matcher's tables, estimated before they are allocated).
MAX_MATCH_BYTES = 4 << 30
PathLike = Union[str, os.PathLike]
#: Reason recorded for a reference shorter than the query.
SKIP_SHORTER = "reference shorter than the query"


@dataclass(frozen=True)
class Segment:
    """A found segment: seconds ``[start, end)`` of ``reference`` (the path as given), its score and rank."""

    reference: str
    start: float
    end: float
    score: float
    rank: int
    #: reference frames ``[start_frame, end_frame)``; ``refined``: moved to the frame by the
    #: alignment of :mod:`relocbench.localize.refine` (whose mean correlation is ``alignment``)
    start_frame: Optional[int] = None
    end_frame: Optional[int] = None
    refined: bool = False
    alignment: Optional[float] = None

    def to_dict(self) -> Dict[str, Any]:
        doc = {"reference": self.reference, "start": round(self.start, 3), "end": round(self.end, 3),
               "score": round(float(self.score), 6)}
        if self.start_frame is not None:
            doc.update(start_frame=int(self.start_frame), end_frame=int(self.end_frame), refined=bool(self.refined))
        return doc

    @property
    def start_hms(self) -> str:
        return format_hms(self.start)

    @property
    def end_hms(self) -> str:
        return format_hms(self.end)


@dataclass
class ReferenceInfo:
    """What was searched: a reference's path as given, its length, and its score curve."""

    path: str
    duration: float
    fps: float
    n_frames: int
    skipped: Optional[str] = None
    curve_times: Optional[np.ndarray] = None  # seconds (cell or step centres)
    curve: Optional[np.ndarray] = None
    curve_label: str = ""
    best_score: Optional[float] = None  # the best candidate's score, floor or not


@dataclass
class LocalizeResult:
    """Everything ``localize`` found, plus what the plot, SRT and clip writers need."""

    query: Dict[str, Any]
    method: Any
    features: Dict[str, Any]
    segments: List[Segment]
    references: List[ReferenceInfo]
    timings: Dict[str, float] = field(default_factory=dict)
    cache: Dict[str, int] = field(default_factory=dict)
    #: every file read (:func:`localize_inputs`): the writers refuse an output among them
    inputs: List[str] = field(default_factory=list)
    #: the score floor in force (None: none) and the best segment found before it
    min_score: Optional[float] = None
    best: Optional[Segment] = None
    #: skipped before the references were chosen (a collection search's first stage), in the
    #: same form as :attr:`skipped`'s entries
    skipped_before: List[Dict[str, str]] = field(default_factory=list)

    @property
    def skipped(self) -> List[Dict[str, str]]:
        return [*self.skipped_before,
                *({"reference": r.path, "reason": r.skipped} for r in self.references if r.skipped)]

    def to_doc(self) -> Dict[str, Any]:
        """The ``--output-json`` document (schema ``relocbench/1``), segments best first."""
        return {
            "version": SCHEMA_VERSION,
            "query": dict(self.query),
            "method": self.method,
            "features": dict(self.features),
            "segments": [s.to_dict() for s in self.segments],
            "references": [{"path": r.path, "duration": round(r.duration, 3), "fps": round(r.fps, 6),
                            "n_frames": r.n_frames} for r in self.references],
            "skipped": self.skipped,
            "min_score": self.min_score if self.min_score is not None and math.isfinite(self.min_score) else None,
        }


# --------------------------------------------------------------------------- inputs
def expand_references(references: Sequence[PathLike]) -> List[str]:
    """Video files as given, and every video file in each folder given (sorted by name)."""
    from ..extract.decode import VIDEO_EXTENSIONS
    from ..io import require_file

    if isinstance(references, (str, os.PathLike)):
        references = [references]
    out: List[str] = []
    for ref in references:
        p = Path(ref)
        if p.is_dir():
            found = sorted(c for c in p.iterdir() if c.suffix.lower() in VIDEO_EXTENSIONS and not c.is_dir())
            for c in found:  # a FIFO or a broken link named like a video: refused by name, not skipped
                require_file(c, "video file in the reference folder", InputError)
            if not found:
                raise InputError(f"holds no video files; expected files ending in {', '.join(VIDEO_EXTENSIONS)}",
                                 file=p)
            out.extend(str(p / c.name) for c in found)
        elif p.exists() or p.is_symlink():
            require_file(p, "reference video", InputError)  # a FIFO, device or socket: refused, never opened
            out.append(str(ref))
        else:
            raise InputError("reference not found (expected a video file or a folder of videos)", file=p)
    if not out:
        raise InputError("no reference given; expected one or more video files or folders")
    seen, uniq = set(), []
    for r in out:
        if r not in seen:
            seen.add(r)
            uniq.append(r)
    return uniq


def check_bounds(**values: Any) -> None:
    """Refuse a size outside :data:`BOUNDS` (``None`` means the default), one line naming the
    option, the value and the allowed range."""
    for name, value in values.items():
        if value is None:
            continue
        option, lo, hi = BOUNDS[name]
        integral = isinstance(lo, int)
        ok_type = (isinstance(value, (int, np.integer)) if integral else isinstance(value, (int, float, np.number))) \
            and not isinstance(value, bool)
        if not ok_type or not (math.isfinite(float(value)) and lo <= value <= hi):
            what = "an integer" if integral else "a number of seconds"
            raise ConfigError(f"{option} ({name}) must be {what} from {lo} to {hi}. Got {value!r} instead.")


def localize_inputs(query: PathLike, references: Sequence[PathLike], method: Any = "auto",
                    pca: Any = None) -> List[str]:
    """Every file ``localize`` reads: the query, the references (and the folders given), a run
    folder's files and its features file, a PCA file. No output may be one of them."""
    out = [str(query)] + [str(r) for r in (references if not isinstance(references, (str, os.PathLike))
                                           else [references])]
    out += expand_references(references)
    if _is_run_dir(method):
        from .runs import _features_spec, read_run_config, run_input_files

        out += [str(p) for p in run_input_files(method)]
        spec = _features_spec(read_run_config(method).get("features"), Path(method) / "config.json")
        if spec != "synthetic":
            out.append(spec)
    if isinstance(pca, (str, os.PathLike)):
        out.append(str(pca))
    seen: set = set()
    return [p for p in out if not (p in seen or seen.add(p))]


def _check_query_range(path: str, start_s: Optional[float], end_s: Optional[float]) -> None:
    """A range in which no frame starts is refused before extraction, naming the frame duration."""
    if end_s is None:
        return
    from ..extract.decode import VideoReader, frame_range
    from ..io import require_file

    require_file(path, "video file", InputError)
    with VideoReader(path) as reader:  # the container's header: nothing is decoded
        fps = reader.fps
    first, end = frame_range(fps, start_s, end_s)
    if end <= first:
        a = 0.0 if start_s is None else start_s
        raise ConfigError(f"the query range {format_hms(a)} to {format_hms(end_s)} is shorter than one frame: it "
                          f"lasts {(end_s - a) * 1000:.1f} ms, a frame {1000.0 / fps:.1f} ms ({fps:g} fps), and no "
                          "frame starts inside it; widen the range", file=path)


def _range(query_range) -> Tuple[Optional[float], Optional[float]]:
    if query_range is None:
        return None, None
    if isinstance(query_range, str):
        return parse_query_range(query_range)
    try:
        a, b = query_range
    except (TypeError, ValueError):
        raise ConfigError(f"The query range must be 'START:END' or a (start_s, end_s) pair. Got {query_range!r} "
                          "instead.") from None
    for v in (a, b):
        if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ConfigError(f"The query range must hold seconds >= 0 or None. Got {query_range!r} instead.")
    if a is not None and b is not None and not b > a:
        raise ConfigError(f"The query range {query_range!r} is empty: it must end after it starts.")
    return (None if a is None else float(a)), (None if b is None else float(b))


class _Features:
    """Feature extraction with one config and backbone, through the cache; timed. ``bars``: the
    frames' black bars cropped first (:mod:`relocbench.localize.bars`; the training-free matchers)."""

    def __init__(self, cfg, cache: Optional[FeatureCache], *, bars: bool = False) -> None:
        self.cfg = cfg
        self.cache = cache
        self.bars = bool(bars)
        # built on the first cache miss (loading a model's weights takes time), or on the first
        # cache hit when no PCA says the rows' width (an entry's width is checked against it)
        self.backbone = None
        self._width: Optional[int] = None
        self.seconds = {"hash": 0.0, "extract": 0.0, "cache_read": 0.0}

    def settings(self) -> Dict[str, Any]:
        out = {"backbone": self.cfg.backbone, "weights": self.cfg.weights, "step_frames": self.cfg.step_frames,
               "pca": self.cfg.pca, "options": self.cfg.options}
        if self.bars:
            from .bars import BARS_SETTING

            out["bars"] = BARS_SETTING
        return out

    def _make_backbone(self):
        if self.backbone is None:
            from ..extract.backbones import make_backbone
            from .bars import BarCropped

            self.backbone = BarCropped(make_backbone(self.cfg)) if self.bars else make_backbone(self.cfg)
        return self.backbone

    def width(self) -> int:
        """The width of the rows these settings give: the PCA's output, else the backbone's
        (built for it when a cached entry is the first to need it)."""
        if self._width is None:
            pca = self.cfg.pca
            if pca is not None:
                from ..extract.pca import load_pca

                pca = load_pca(pca) if isinstance(pca, (str, os.PathLike)) else pca
                self._width = int(pca.n_components)
            else:
                self._width = int(self._make_backbone().dim)
        return self._width

    def get(self, path: str, start_s: Optional[float] = None, end_s: Optional[float] = None):
        from ..extract import extract_video
        from ..io import require_file, sha256_file

        require_file(path, "video file", InputError)
        key = check = None
        if self.cache is not None:
            t0 = time.perf_counter()
            digest = sha256_file(path)
            check = EntryCheck(digest, self.settings(), start_s, end_s, self.width)
            key = check.key
            self.seconds["hash"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            vf = self.cache.get(key, path, check)
            self.seconds["cache_read"] += time.perf_counter() - t0
            if vf is not None:
                return vf
        t0 = time.perf_counter()
        vf = extract_video(path, self.cfg, start_s=start_s, end_s=end_s, backbone=self._make_backbone())
        self.seconds["extract"] += time.perf_counter() - t0
        if self.cache is not None:
            self.cache.put(key, vf, check)
        return vf


def _check_range(vf, path: str, start_s: Optional[float], end_s: Optional[float]) -> None:
    """A range ending after the video: fewer frames decoded than the range asks for."""
    if end_s is None:
        return
    want_end = int(math.ceil(end_s * vf.fps - 1e-6))
    got_end = vf.start_frame + vf.n_frames
    if got_end < want_end - 1:  # one frame of slack for rounding of the container's rate
        raise InputError(f"the query range ends at {format_hms(end_s)}, after the end of the video "
                         f"({format_hms(got_end / vf.fps)})", file=path)


def _feature_summary(vf) -> Dict[str, Any]:
    a = vf.attrs
    return {k: a.get(k) for k in ("backbone", "weights", "step_frames", "dim", "pca")}


# --------------------------------------------------------------------------- methods
class _TrainingFree:
    """``auto``/``window``/``framedp`` on the common time grid of ``grid_s`` seconds."""

    def __init__(self, name: str, *, backbone, weights, step_frames, pca, device, batch_size, grid_s, window,
                 top_k) -> None:
        from ..extract import ExtractConfig

        self.name = resolve_matcher(name)
        self.cfg = ExtractConfig(backbone=backbone or "handcrafted", weights=weights or "auto",
                                 step_frames=int(step_frames or 16), device=device, batch_size=batch_size, pca=pca)
        self.grid_s, self.window, self.top_k = grid_s, window, top_k
        self.doc: Any = self.name
        self.query = None

    def _check_memory(self, query_cells: int, reference_cells: int, dim: int, what: str) -> None:
        need = match_bytes(self.name, query_cells, reference_cells, dim, self.window)
        if need > MAX_MATCH_BYTES:
            _, lo, hi = BOUNDS["grid_s"]
            raise ConfigError(
                f"--grid {self.grid_s:g} s gives {what} ({dim}-dimensional features): {self.name} matching would need "
                f"about {need / 2**30:.1f} GiB, more than the {MAX_MATCH_BYTES / 2**30:g} GiB allowed; pass a larger "
                f"--grid (allowed: {lo:g} to {hi:g} s) or a shorter query")

    def set_query(self, qf) -> None:
        cells = grid_size(qf.n_frames / qf.fps, self.grid_s)
        self._check_memory(cells, 0, qf.features.shape[1], f"a query of {cells} cells")
        self.query = resample_to_grid(qf.features, fps=qf.fps, n_frames=qf.n_frames,
                                      step_frames=self.cfg.step_frames, grid_s=self.grid_s)

    def match(self, rf, info: ReferenceInfo) -> Candidates:
        """The kept segments of one reference, in seconds; fills the reference's curve."""
        g = self.grid_s
        cells = grid_size(rf.n_frames / rf.fps, g)
        self._check_memory(self.query.shape[0], cells, rf.features.shape[1],
                           f"a query of {self.query.shape[0]} cells and {cells} cells of {info.path}")
        ref = resample_to_grid(rf.features, fps=rf.fps, n_frames=rf.n_frames, step_frames=self.cfg.step_frames,
                               grid_s=g)
        res = match(self.query, ref, method=self.name, top_k=self.top_k, window=self.window)
        kept = nms(res.candidates, self.top_k) if res.candidates.start.size else res.candidates
        info.curve_times, info.curve, info.curve_label = (np.arange(ref.shape[0]) + 0.5) * g, res.curve, res.curve_label
        return Candidates(kept.start * g, np.minimum(kept.end * g, info.duration), kept.score)

    def features_doc(self, qf) -> Dict[str, Any]:
        return {**_feature_summary(qf), "bars": qf.attrs.get("bars"), "grid_s": self.grid_s}


class _Trained:
    """A finished run: its extraction settings, its model, overlapping windows over each reference."""

    def __init__(self, run_dir, *, backbone, weights, step_frames, pca, device, batch_size, top_k) -> None:
        from ..extract import ExtractConfig
        from .runs import check_feature_settings, load_run, run_feature_settings

        self.run = load_run(run_dir, device=device)
        self.settings, self.features_file = run_feature_settings(self.run)
        # weights are compared after extraction (the file records a weights file by its sha256)
        asked = {k: v for k, v in (("backbone", backbone), ("step_frames", step_frames), ("pca", pca))
                 if v is not None}
        check_feature_settings(self.settings, asked, wanted_from=f"features file {self.features_file}",
                               have_from="asked for", pca_presence_only=True)
        self.cfg = ExtractConfig(backbone=str(self.settings["backbone"]), weights=weights or "auto",
                                 step_frames=int(self.settings["step_frames"]), device=device, batch_size=batch_size,
                                 pca=self.features_file if _has_pca(self.settings.get("pca")) else None)
        self.top_k = top_k
        self.doc: Any = self.run.describe()
        self.qf = None

    def set_query(self, qf) -> None:
        from .runs import check_feature_settings

        check_feature_settings(self.settings, _feature_summary(qf), wanted_from=f"features file {self.features_file}",
                               have_from=f"extracted from {qf.source}")
        self.qf = qf

    def match(self, rf, info: ReferenceInfo) -> Candidates:
        from .runs import predict_windows

        qf, sf = self.qf, self.cfg.step_frames
        step_s = sf / rf.fps  # the query on the reference's steps
        query = resample_to_grid(qf.features, fps=qf.fps, n_frames=qf.n_frames, step_frames=sf, grid_s=step_s)
        cand, _ = predict_windows(self.run, query, rf.features)
        kept = nms(cand, self.top_k) if cand.start.size else cand
        info.curve_times, info.curve = _candidate_curve(cand, rf.features.shape[0], step_s)
        info.curve_label = f"{self.run.name} score"
        return Candidates(kept.start * step_s, np.minimum(kept.end * step_s, info.duration), kept.score)

    def features_doc(self, qf) -> Dict[str, Any]:
        return _feature_summary(qf)


def _is_run_dir(method: Any) -> bool:
    text = str(method)
    return text not in ("auto", "window", "framedp") and (Path(text).exists() or os.sep in text or "/" in text)


# --------------------------------------------------------------------------- main entry
def localize(
    query: PathLike,
    references: Sequence[PathLike],
    *,
    query_range: Any = None,
    method: str = "auto",
    backbone: Optional[str] = None,
    weights: Optional[str] = None,
    step_frames: Optional[int] = None,
    pca: Any = None,
    device: str = "auto",
    batch_size: int = 8,
    top_k: int = 5,
    grid_s: float = DEFAULT_GRID_S,
    window: WindowConfig = WindowConfig(),
    cache: Union[bool, PathLike, FeatureCache] = True,
    progress: bool = False,
    min_score: Any = "auto",
    refine: bool = True,
) -> LocalizeResult:
    """Find the ``top_k`` segments of ``references`` that best match ``query``.

    ``method``: ``auto`` (= ``window``), ``window``, ``framedp``, or a finished run folder.
    ``backbone``/``weights``/``step_frames``/``pca``: extraction settings (defaults:
    ``handcrafted``, ``auto``, 16, none; a run folder supplies its own and refuses others).
    ``cache``: ``True`` (``$RELOCBENCH_CACHE`` or the user cache folder), a folder, a
    :class:`FeatureCache`, or ``False``.
    ``min_score``: segments scoring below it are not returned (``"auto"``: the matcher's measured
    floor, :mod:`relocbench.localize.floor`; ``-inf``: none); ``top_k`` is at most k.
    ``refine``: move each boundary to a reference frame (:mod:`relocbench.localize.refine`).

    >>> res = localize("query.mp4", ["long.mp4"], query_range="12.5:18")  # doctest: +SKIP
    >>> res.segments[0].start, res.segments[0].end  # doctest: +SKIP
    """
    from ..progress import Progress

    if not (isinstance(top_k, (int, np.integer)) and not isinstance(top_k, bool) and top_k >= 1):
        raise ConfigError(f"The 'top_k' parameter must be an int >= 1. Got {top_k!r} instead.")
    check_bounds(top_k=top_k, batch_size=batch_size, step_frames=step_frames,
                 grid_s=None if _is_run_dir(method) else grid_s)
    floor = resolve_min_score(str(method), min_score)  # checked before any work
    t_all = time.perf_counter()
    start_s, end_s = _range(query_range)
    inputs = localize_inputs(query, references, method, pca)
    refs = expand_references(references)
    common = dict(backbone=backbone, weights=weights, step_frames=step_frames, pca=pca, device=device,
                  batch_size=batch_size, top_k=top_k)
    if _is_run_dir(method):
        how: Union[_Trained, _TrainingFree] = _Trained(method, **common)
    else:
        how = _TrainingFree(str(method), grid_s=grid_s, window=window, **common)
    fc = cache if isinstance(cache, FeatureCache) else (
        FeatureCache(None if cache is True else cache) if cache not in (False, None) else None)
    feats = _Features(how.cfg, fc, bars=isinstance(how, _TrainingFree))
    infos: List[ReferenceInfo] = []
    per_ref: List[Tuple[int, Candidates]] = []
    match_s = 0.0
    with Progress(total=len(refs) + 1, desc="localize", unit="video", quiet=not progress) as bar:
        _check_query_range(str(query), start_s, end_s)
        qf = feats.get(str(query), start_s, end_s)
        _check_range(qf, str(query), start_s, end_s)
        how.set_query(qf)
        q_dur = qf.n_frames / qf.fps
        bar.update(1)
        for k, ref in enumerate(refs):
            rf = feats.get(ref)
            info = ReferenceInfo(ref, rf.n_frames / rf.fps, float(rf.fps), int(rf.n_frames))
            infos.append(info)
            bar.update(1)
            if info.duration + 1e-9 < q_dur:
                info.skipped = f"{SKIP_SHORTER} ({format_hms(info.duration)} < {format_hms(q_dur)})"
                continue
            t0 = time.perf_counter()
            per_ref.append((k, how.match(rf, info)))
            info.best_score = best_score(per_ref[-1][1])
            match_s += time.perf_counter() - t0
    timings = {"extract_s": feats.seconds["extract"], "hash_s": feats.seconds["hash"],
               "cache_read_s": feats.seconds["cache_read"], "match_s": match_s, "total_s": time.perf_counter() - t_all}
    q_start = qf.start_frame / qf.fps
    query_doc = {"path": str(query), "start": round(q_start, 3), "end": round(q_start + q_dur, 3)}
    step_s = getattr(how, "grid_s", None) or how.cfg.step_frames / max(qf.fps, 1e-9)
    segments, best, extra = finish_segments(_rank(per_ref, refs, top_k), min_score=floor, refine=refine,
                                            query_path=str(query), qf=qf, infos=infos, coarse_step_s=step_s)
    timings.update(extra)
    timings["total_s"] = time.perf_counter() - t_all
    res = LocalizeResult(query_doc, how.doc, how.features_doc(qf), segments, infos, timings,
                         fc.counts() if fc is not None else {}, inputs)
    res.min_score, res.best = floor, best
    return res


def _has_pca(value: Any) -> bool:
    return value is not None and str(value).lower() not in ("", "none", "null")


def _candidate_curve(cand: Candidates, n_steps: int, step_s: float):
    """Per step, the best score of a candidate covering it (NaN where none does)."""
    curve = np.full(n_steps, np.nan)
    for s, e, sc in zip(cand.start, cand.end, cand.score):
        seg = curve[s:e]
        curve[s:e] = np.where(np.isnan(seg) | (seg < sc), sc, seg)
    return (np.arange(n_steps) + 0.5) * step_s, curve


def _rank(per_ref: List[Tuple[int, Candidates]], refs: List[str], top_k: int) -> List[Segment]:
    """All references' kept segments by score, best first (ties: reference order, then start)."""
    rows = []
    for k, c in per_ref:
        for s, e, sc in zip(c.start, c.end, c.score):
            if np.isfinite(sc):
                rows.append((-float(sc), k, float(s), float(e)))
    rows.sort()
    return [Segment(refs[k], s, e, -neg, i + 1) for i, (neg, k, s, e) in enumerate(rows[:top_k])]
