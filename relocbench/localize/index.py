"""Search a whole video collection: ``relocbench index`` and ``relocbench localize --index``.

**The index** is the HDF5 features file of :func:`relocbench.extract.extract_videos` (same
code, journal, ``--resume`` and ``--shard``): one row per ``step_frames`` frames of every
video, with each video's source path, SHA-256, frame rate and frame count, and the settings
that made the rows in the file's ``settings`` attribute. :func:`build_index` writes it, and
beside it the first stage's matrix (:func:`coarse_paths`: ``INDEX.coarse.npy``, the grid cells
of every video as one contiguous float32 array, and ``INDEX.coarse.json``, its record). A search
memory-maps the matrix after checking its record against the index (settings, size,
modification time, grid) and its SHA-256; a matrix that does not pass (or is missing: an index
merged from shards, or written before the matrix existed) is computed again from the index's
rows, written again, and a one-line warning says why. Only the candidates' full rows are read.

The rows are those of ``localize``'s training-free matchers: each step's frames with their black
bars cropped first (:mod:`relocbench.localize.bars`), recorded as the ``bars`` setting, so an
index made before that crop existed is refused as made with other settings.

**A search** (:func:`search_index`) extracts the query with the index's settings (other
settings asked for are refused, naming each difference) and then works in two stages:

1. *Ranking references* (fast): every video's rows and the query's are put on a coarse grid of
   :data:`COARSE_GRID_S` seconds, centred on the collection's mean cell and normalised; one
   matrix product gives every cell's cosine similarity with every query cell, and each video
   scores its best window (the query stretched to 3/4, 1 and 4/3 of its length, mean cosine
   similarity over the window, as ``window`` in :mod:`relocbench.localize.matching`).
2. *The full matcher and the refinement* on the ``candidates`` best videos, exactly as
   :func:`relocbench.localize.localize` does on references given by hand (``auto`` on the
   ``grid_s`` grid, 0.5 s by default, the score floor, frame-level boundaries), with the rows
   read from the index.

Videos shorter than 3/4 of the query score ``-inf`` in the first stage: they are counted and
reported, never dropped silently. Before the refinement decodes a candidate's source, the file
is checked against what the index recorded (:func:`source_changed`): a source edited since it
was indexed is not refined (its coarse answer, from the indexed rows, is kept with
``refined`` false) and a one-line warning names it, so rows and frames of two versions of a
video are never mixed.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import ConfigError, InputError, RelocbenchError

__all__ = ["build_index", "search_index", "IndexRefs", "load_index", "rank_references", "coarse_paths",
           "build_coarse", "source_changed", "COARSE_GRID_S", "COARSE_SCALES"]

PathLike = Union[str, os.PathLike]
#: Seconds per cell of the first stage's grid.
COARSE_GRID_S = 1.0
#: Query lengths (times its own) tried by the first stage.
COARSE_SCALES = (0.75, 1.0, 4.0 / 3.0)


def _config(backbone, weights, step_frames, device, batch_size):
    from ..extract import ExtractConfig

    return ExtractConfig(backbone=backbone or "handcrafted", weights=weights or "auto",
                         step_frames=int(step_frames or 16),
                         device=device, batch_size=batch_size)


def _backbone(cfg):
    """The index's backbone: frames' black bars cropped first, as for ``localize`` (module docstring)."""
    from ..extract.backbones import make_backbone
    from .bars import BarCropped

    return BarCropped(make_backbone(cfg))


def build_index(videos: Sequence[PathLike], out: PathLike, *, backbone: Optional[str] = None,
                weights: Optional[str] = None, step_frames: Optional[int] = None, device: str = "auto",
                batch_size: int = 8, resume: bool = False, force: bool = False, shard: Any = None,
                workers: int = 0, quiet: bool = True):
    """Extract the features of ``videos`` (files, or folders of videos) into the index ``out``;
    returns :class:`relocbench.extract.ExtractSummary`. ``resume`` keeps what an interrupted
    run (or an earlier index of the same settings) finished; ``shard`` = ``"K/N"`` as in
    ``extract-features`` (merge the shards with ``merge-features``; the first search of the merged
    index then writes its first-stage matrix). Without ``shard`` the first stage's matrix is
    written beside ``out`` (:func:`coarse_paths`)."""
    from ..extract import extract_videos
    from .core import check_bounds, expand_references

    check_bounds(batch_size=batch_size, step_frames=step_frames)
    paths = expand_references(videos)
    cfg = _config(backbone, weights, step_frames, device, batch_size)
    summary = extract_videos(paths, cfg, out=out, resume=resume, force=force, shard=shard, workers=workers,
                             quiet=quiet, backbone=_backbone(cfg))
    if shard is None and summary.extracted + summary.resumed > 0 and Path(out).is_file():
        build_coarse(out, stat_sources=True)
    return summary


@dataclass
class IndexRefs:
    """The index read for a search: per video its name, source, frame rate and frame count, and
    the first stage's coarse matrix (memory-mapped from :func:`coarse_paths`); a video's full
    rows are read only when asked (:meth:`load_rows`)."""

    path: Path
    settings: Dict[str, Any]
    step_frames: int
    videos: List[str]
    sources: List[str]
    fps: np.ndarray
    n_frames: np.ndarray
    #: each video's dataset name in the HDF5 file and its source's SHA-256
    names: List[str]
    sha256: List[str]
    #: the first stage's grid cells, centred and normalised, and each video's first cell and count
    coarse: Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    #: "read" (the stored matrix, verified) or why it was computed again
    coarse_status: str = "read"
    #: each source's (size, modification time in ns) when the index was built, ``None`` where
    #: not recorded (a matrix computed again at search time): only the SHA-256 then tells
    source_stat: Optional[List[Optional[Tuple[int, int]]]] = None

    def load_rows(self, indices: Sequence[int]) -> Dict[int, np.ndarray]:
        """The full rows of the videos ``indices`` (checked), each checked against what the
        coarse matrix's record says of it (source, SHA-256, frame rate, frame count)."""
        from ..extract.writer import FeaturesFile

        out: Dict[int, np.ndarray] = {}
        if not indices:
            return out
        with FeaturesFile(self.path, what=_WHAT) as ff:
            for i in indices:
                e = ff.load(self.videos[i], self.names[i])
                found = (e.source, e.sha256, float(e.fps), int(e.n_frames))
                want = (self.sources[i], self.sha256[i], float(self.fps[i]), int(self.n_frames[i]))
                if found != want:
                    raise InputError(f"video {self.videos[i]!r} is {found} (source, sha256, fps, n_frames) in the "
                                     f"index, {want} in {coarse_paths(self.path)[1].name}; expected the same: delete "
                                     f"{coarse_paths(self.path)[1].name} to compute it again", file=self.path)
                out[int(i)] = e.features
        return out


_WHAT = "an index written by relocbench index"
#: Version of the coarse matrix's record (``*.coarse.json``).
COARSE_FORMAT = 1

#: Indexes read in this process, by (real path, size, modification time): a second search of
#: an unchanged index reads nothing (at most :data:`_MEMO_SIZE` kept).
_MEMO: Dict[Tuple[str, int, int], "IndexRefs"] = {}
_MEMO_SIZE = 2


def coarse_paths(index: PathLike) -> Tuple[Path, Path]:
    """The first stage's matrix beside the index (``INDEX.coarse.npy``, float32 ``[cells, dim]``,
    every video's cells one after the other in video order) and its record (``INDEX.coarse.json``:
    format, grid, shape, the matrix's SHA-256, the index's settings, size and modification time,
    the centre, and per video its name, source, SHA-256, frame rate, frame count and cells)."""
    p = Path(index)
    return p.with_name(p.name + ".coarse.npy"), p.with_name(p.name + ".coarse.json")


def load_index(path: PathLike, *, warn: Optional[Callable[[str], None]] = None) -> IndexRefs:
    """The index's videos and its first-stage matrix: the stored one when its record matches the
    index (settings, size, modification time, grid) and the matrix its checksum; otherwise (an
    index written before the matrix existed, a changed index, a damaged matrix) the matrix is
    computed again from every video's rows, written beside the index when the folder allows it,
    and ``warn`` (default: one line on standard error) says why. An unchanged index already read
    by this process is not read again."""
    from ..io import require_file

    require_file(path, "index", InputError)
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _MEMO:
        while len(_MEMO) >= _MEMO_SIZE:
            _MEMO.pop(next(iter(_MEMO)))
        _MEMO[key] = _read_index(path, st, warn or _stderr)
    return _MEMO[key]


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


def _index_settings(path: PathLike) -> Dict[str, Any]:
    from ..extract.writer import FeaturesFile

    with FeaturesFile(path, what=_WHAT) as ff:
        if ff.pca is not None:
            raise ConfigError("holds PCA-reduced rows; an index is written by relocbench index (no PCA)", file=path)
        return dict(ff.settings)


def _read_index(path: PathLike, st: os.stat_result, warn: Callable[[str], None]) -> IndexRefs:
    settings = _index_settings(path)
    got = _stored_coarse(path, st, settings)
    if isinstance(got, IndexRefs):
        return got
    t0 = time.perf_counter()
    refs, record, matrix = _compute_coarse(path, st)
    note = ""
    try:
        write_coarse(path, record, matrix)
    except (OSError, RelocbenchError) as exc:
        note = f"; not written ({exc})"
    refs.coarse_status = got
    warn(f"warning: {path}: {got}; computed the first stage's matrix again from every video "
         f"({time.perf_counter() - t0:.1f} s){note}")
    return refs


def _stored_coarse(path: PathLike, st: os.stat_result, settings: Dict[str, Any]) -> Union[IndexRefs, str]:
    """The index with its stored, verified coarse matrix, or why it cannot be used."""
    import hashlib
    import json

    npy, rec = coarse_paths(path)
    if not rec.is_file() or not npy.is_file():
        return f"no first-stage matrix beside it ({npy.name}, {rec.name})"
    try:
        r = json.loads(rec.read_text(encoding="utf-8"))
        if r.get("format") != COARSE_FORMAT or r.get("grid_s") != COARSE_GRID_S or r.get("dtype") != "float32":
            return (f"{rec.name} was made with other settings (format {r.get('format')!r}, grid_s "
                    f"{r.get('grid_s')!r}, dtype {r.get('dtype')!r}; expected {COARSE_FORMAT}, {COARSE_GRID_S}, "
                    "'float32')")
        if r.get("index") != {"size": st.st_size, "mtime_ns": st.st_mtime_ns}:
            return f"{rec.name} is stale (the index changed since it was written)"
        if r.get("settings") != settings:
            return f"{rec.name} records other settings than the index's"
        mat = np.load(npy, mmap_mode="r", allow_pickle=False)
        vids = r["videos"]
        cells = np.array([v["cells"] for v in vids], dtype=np.int64)
        if mat.dtype != np.float32 or list(mat.shape) != r.get("shape") or mat.ndim != 2 or \
                int(cells.sum()) != mat.shape[0] or not vids:
            return f"{npy.name} is {mat.dtype} {list(mat.shape)}; expected float32 {r.get('shape')} ({rec.name})"
        if hashlib.sha256(mat.data).hexdigest() != r.get("sha256"):
            return f"{npy.name} does not match its checksum in {rec.name} (damaged or replaced)"
        centre = np.array(r["centre"], dtype=np.float32)
        if centre.shape != (mat.shape[1],):
            return f"{rec.name}: the centre has {centre.shape[0]} values; expected {mat.shape[1]}"
        starts = np.concatenate([[0], np.cumsum(cells)[:-1]]).astype(np.int64)
        stats = [(int(v["source_size"]), int(v["source_mtime_ns"])) if "source_size" in v and "source_mtime_ns" in v
                 else None for v in vids]
        return IndexRefs(Path(path), settings, int(settings.get("step_frames", 0)), [str(v["video"]) for v in vids],
                         [str(v["source"]) for v in vids], np.array([v["fps"] for v in vids], np.float64),
                         np.array([v["n_frames"] for v in vids], np.int64), [str(v["name"]) for v in vids],
                         [str(v["sha256"]) for v in vids], (mat, centre, starts, cells), source_stat=stats)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"the first-stage matrix beside it cannot be read ({type(exc).__name__}: {exc})"


def _compute_coarse(path: PathLike, st: os.stat_result, *, stat_sources: bool = False
                    ) -> Tuple[IndexRefs, Dict[str, Any], np.ndarray]:
    """Every video's rows read, put on the first stage's grid, centred on the collection's mean
    cell and normalised (module docstring)."""
    import hashlib

    from ..extract.writer import FeaturesFile
    from .matching import normalise, resample_to_grid

    with FeaturesFile(path, what=_WHAT) as ff:
        settings = dict(ff.settings)
        if ff.pca is not None:
            raise ConfigError("holds PCA-reduced rows; an index is written by relocbench index (no PCA)", file=path)
        entries = [(name, ff.load(video, name)) for video, name in ff._names().items()]
    if not entries:
        raise InputError(f"holds no video; expected {_WHAT}", file=path)
    entries.sort(key=lambda ne: ne[1].video)
    sf = int(settings.get("step_frames", 0))
    cells = [resample_to_grid(e.features, fps=e.fps, n_frames=e.n_frames, step_frames=sf, grid_s=COARSE_GRID_S)
             for _, e in entries]
    lengths = np.array([c.shape[0] for c in cells], dtype=np.int64)
    allc = np.concatenate(cells)
    centre = allc.mean(axis=0)
    mat = np.ascontiguousarray(normalise(allc, centre), dtype=np.float32)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    refs = IndexRefs(Path(path), settings, sf, [e.video for _, e in entries], [e.source for _, e in entries],
                     np.array([e.fps for _, e in entries], np.float64),
                     np.array([e.n_frames for _, e in entries], np.int64), [n for n, _ in entries],
                     [e.sha256 for _, e in entries], (mat, np.asarray(centre, np.float32), starts, lengths))
    record = {"format": COARSE_FORMAT, "grid_s": COARSE_GRID_S, "dtype": "float32", "shape": list(mat.shape),
              "sha256": hashlib.sha256(mat.data).hexdigest(), "index": {"size": st.st_size, "mtime_ns": st.st_mtime_ns},
              "settings": settings, "centre": [float(x) for x in np.asarray(centre, np.float32)],
              "videos": [{"video": e.video, "name": n, "source": e.source, "sha256": e.sha256, "fps": float(e.fps),
                          "n_frames": int(e.n_frames), "cells": int(L)} for (n, e), L in zip(entries, lengths)]}
    if stat_sources:
        refs.source_stat = [_stat(e.source) for _, e in entries]
        for v, ss in zip(record["videos"], refs.source_stat):
            if ss is not None:
                v["source_size"], v["source_mtime_ns"] = ss
    return refs, record, mat


def write_coarse(path: PathLike, record: Dict[str, Any], matrix: np.ndarray) -> None:
    """Write the matrix, then its record (the record is what makes it used), each atomically."""
    import io

    from ..io import atomic_write_bytes, atomic_write_json

    npy, rec = coarse_paths(path)
    buf = io.BytesIO()
    np.save(buf, matrix, allow_pickle=False)
    atomic_write_bytes(npy, buf.getvalue(), force=True)
    atomic_write_json(rec, record, force=True)


def build_coarse(path: PathLike, *, stat_sources: bool = False) -> Path:
    """Compute and write the first stage's matrix of the index ``path`` (:func:`coarse_paths`);
    returns the record's path. ``stat_sources`` (right after the sources were indexed) records
    each source's size and modification time, the cheap first check of :func:`source_changed`."""
    st = os.stat(path)
    _, record, matrix = _compute_coarse(path, st, stat_sources=stat_sources)
    write_coarse(path, record, matrix)
    return coarse_paths(path)[1]


def _stat(path: str) -> Optional[Tuple[int, int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return int(st.st_size), int(st.st_mtime_ns)


#: Sources whose SHA-256 was found equal to the index's in this process, by (real path, size,
#: modification time, SHA-256): a second search does not hash them again.
_SOURCE_OK: set = set()


def source_changed(index: IndexRefs, i: int) -> Optional[str]:
    """Why the source of video ``i`` is no longer what the index was built from, or ``None``.
    Cheap first: the size and modification time the index recorded; when they differ (or were
    not recorded), the file's SHA-256 against the one recorded at index time."""
    from ..io import sha256_file

    src = index.sources[i]
    now = _stat(src)
    if now is None:
        return "it cannot be read"
    then = index.source_stat[i] if index.source_stat is not None else None
    if then is not None and tuple(then) == now:
        return None
    key = (os.path.realpath(src), now[0], now[1], index.sha256[i])
    if key in _SOURCE_OK:
        return None
    digest = sha256_file(src)
    if digest == index.sha256[i]:
        _SOURCE_OK.add(key)
        return None
    what = f"size {then[0]} -> {now[0]} bytes, " if then is not None and then[0] != now[0] else ""
    return f"{what}sha256 {digest[:12]}, indexed {index.sha256[i][:12]}"


def check_settings(index: IndexRefs, asked: Dict[str, Any]) -> None:
    """Refuse a search with other settings than the index's, naming every difference."""
    diffs = [f"{k} {index.settings.get(k)!r} in the index, {asked.get(k)!r} asked"
             for k in sorted(set(index.settings) | set(asked)) if index.settings.get(k) != asked.get(k)]
    if diffs:
        raise ConfigError("was made with other settings than this search: " + "; ".join(diffs) + "; search it with "
                          "the index's settings or index the videos again", file=index.path)


def rank_references(index: IndexRefs, query_rows: np.ndarray, query_fps: float, query_frames: int
                    ) -> np.ndarray:
    """The first stage (module docstring): every video's best window score, float64 ``[videos]``
    (``-inf`` for a video shorter than 3/4 of the query)."""
    from .matching import normalise, resample_to_grid, stretch

    g, sf = COARSE_GRID_S, index.step_frames
    R, centre, starts, lengths = index.coarse
    q = normalise(resample_to_grid(query_rows, fps=query_fps, n_frames=query_frames, step_frames=sf, grid_s=g),
                  centre)
    best = np.full(len(lengths), -np.inf)
    for c in COARSE_SCALES:
        m = max(1, int(round(q.shape[0] * c)))
        qm = normalise(stretch(q, m))
        S = R @ qm.T  # [N, m]
        n = S.shape[0] - m + 1
        if n <= 0:
            continue
        acc = np.zeros(n, dtype=np.float64)
        for i in range(m):
            acc += S[i:i + n, i]
        acc /= m
        for k, (a, L) in enumerate(zip(starts, lengths)):
            if L >= m:
                best[k] = max(best[k], float(acc[a:a + L - m + 1].max()))
    return best


class _Rows:
    """What the matcher needs of a reference's features (``features``, ``fps``, ``n_frames``)."""

    def __init__(self, features, fps, n_frames) -> None:
        self.features, self.fps, self.n_frames = features, float(fps), int(n_frames)


def search_index(query: PathLike, index: PathLike, *, query_range: Any = None, backbone: Optional[str] = None,
                 weights: Optional[str] = None, step_frames: Optional[int] = None, device: str = "auto",
                 batch_size: int = 8, top_k: int = 5, candidates: int = 5, min_score: Any = "auto",
                 refine: bool = True, method: str = "auto", grid_s: float = 0.5,
                 warn: Optional[Callable[[str], None]] = None):
    """Find ``query`` in the videos of ``index`` (module docstring); returns a
    :class:`relocbench.localize.LocalizeResult` whose references are the ``candidates`` videos
    searched in full (their first-stage scores in ``timings``/``features``).

    ``grid_s``: seconds per cell of the full matcher's grid on the candidates (the first stage
    uses the index's stored grid, :data:`COARSE_GRID_S`). Videos shorter than 3/4 of the query
    cannot be ranked: they are counted in ``features["first_stage_skipped"]`` and reported in
    the result's ``skipped``. Before the refinement each candidate's source is checked against
    what the index recorded (:func:`source_changed`); a changed one keeps its coarse answer
    (``refined`` false) and ``warn`` (default: one line on standard error) names it."""
    from ..extract import extract_video
    from ..extract.api import settings_for
    from ..io import require_file
    from .core import (LocalizeResult, ReferenceInfo, _check_query_range, _check_range, _range, _rank,
                       _TrainingFree, check_bounds)
    from .floor import best_score, finish_segments, resolve_min_score
    from .matching import resolve_matcher
    from .timecodes import format_hms

    if not (isinstance(candidates, int) and not isinstance(candidates, bool) and candidates >= 1):
        raise ConfigError(f"The 'candidates' parameter must be an int >= 1. Got {candidates!r} instead.")
    resolve_matcher(method)
    check_bounds(top_k=top_k, batch_size=batch_size, step_frames=step_frames, grid_s=grid_s)
    floor = resolve_min_score(method, min_score)  # checked before any work, as localize does
    t_all = time.perf_counter()
    require_file(index, "index", InputError)
    cfg = _config(backbone, weights, step_frames, device, batch_size)
    t0 = time.perf_counter()
    refs = load_index(index)
    load_s = time.perf_counter() - t0
    bb = _backbone(cfg)
    check_settings(refs, settings_for(bb, cfg))
    start_s, end_s = _range(query_range)
    _check_query_range(str(query), start_s, end_s)
    t0 = time.perf_counter()
    qf = extract_video(query, cfg, start_s=start_s, end_s=end_s, backbone=bb)
    extract_s = time.perf_counter() - t0
    _check_range(qf, str(query), start_s, end_s)
    t0 = time.perf_counter()
    first = rank_references(refs, qf.features, qf.fps, qf.n_frames)
    order = [int(i) for i in np.argsort(-first, kind="stable") if np.isfinite(first[i])][:candidates]
    n_short = int(np.sum(~np.isfinite(first)))
    rank_s = time.perf_counter() - t0
    how = _TrainingFree(method, backbone=cfg.backbone, weights=cfg.weights, step_frames=cfg.step_frames, pca=None,
                        device=device, batch_size=batch_size, grid_s=float(grid_s), window=_window(), top_k=top_k)
    how.set_query(qf)
    q_dur = qf.n_frames / qf.fps
    t0 = time.perf_counter()
    infos, per_ref, paths = [], [], []
    rows = refs.load_rows([i for i in order if refs.n_frames[i] / refs.fps[i] + 1e-9 >= q_dur])
    for k, i in enumerate(order):
        src = refs.sources[i]
        info = ReferenceInfo(src, refs.n_frames[i] / refs.fps[i], float(refs.fps[i]), int(refs.n_frames[i]))
        infos.append(info)
        paths.append(src)
        if info.duration + 1e-9 < q_dur:
            from .core import SKIP_SHORTER, format_hms

            info.skipped = f"{SKIP_SHORTER} ({format_hms(info.duration)} < {format_hms(q_dur)})"
            continue
        cand = how.match(_Rows(rows[i], refs.fps[i], refs.n_frames[i]), info)
        info.best_score = best_score(cand)
        per_ref.append((k, cand))
    match_s = time.perf_counter() - t0
    changed: List[str] = []
    ranked = _rank(per_ref, paths, top_k)
    if refine:  # the refinement decodes the sources: they must still be there, as they were indexed
        kept = {s.reference for s in ranked if floor is None or s.score >= floor}
        for k, i in enumerate(order):
            if infos[k].skipped or infos[k].path not in kept:
                continue
            require_file(infos[k].path, "indexed video (moved or deleted since it was indexed?)", InputError)
            why = source_changed(refs, i)
            if why is not None:
                changed.append(infos[k].path)
                (warn or _stderr)(f"warning: {infos[k].path}: changed since it was indexed ({why}); its segments "
                                  f"are not refined (index the video again)")
    segments, best, extra = finish_segments(ranked, min_score=floor, refine=refine, query_path=str(query), qf=qf,
                                            infos=infos, coarse_step_s=float(grid_s), unrefinable=changed)
    timings = {"index_load_s": load_s, "extract_s": extract_s, "rank_s": rank_s, "match_s": match_s, **extra,
               "total_s": time.perf_counter() - t_all}
    q_start = qf.start_frame / qf.fps
    features = {**how.features_doc(qf), "index": str(index), "indexed_videos": len(refs.videos),
                "first_stage": [{"reference": refs.sources[i], "score": round(float(first[i]), 6)} for i in order],
                "first_stage_skipped": {"shorter_than_query": n_short}, "changed_since_indexed": changed}
    res = LocalizeResult({"path": str(query), "start": round(q_start, 3), "end": round(q_start + q_dur, 3)}, how.doc,
                         features, segments, infos, timings, {},
                         [str(query), str(index), *(str(p) for p in coarse_paths(index))])
    res.min_score, res.best = floor, best
    if n_short:
        res.skipped_before.append({"reference": str(index), "reason": f"{n_short} indexed video(s) shorter than 3/4 "
                                   f"of the query ({format_hms(q_dur)}), not ranked"})
    return res


def _window():
    from .matching import WindowConfig

    return WindowConfig()
