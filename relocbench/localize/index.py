"""Search a whole video collection: ``relocbench index`` and ``relocbench localize --index``.

**The index** is the HDF5 features file of :func:`relocbench.extract.extract_videos` (same
code, journal, ``--resume`` and ``--shard``): one row per ``step_frames`` frames of every
video, with each video's source path, SHA-256, frame rate and frame count, and the settings
that made the rows in the file's ``settings`` attribute. :func:`build_index` writes it.

**A search** (:func:`search_index`) extracts the query with the index's settings (other
settings asked for are refused, naming each difference) and then works in two stages:

1. *Ranking references* (fast): every video's rows and the query's are put on a coarse grid of
   :data:`COARSE_GRID_S` seconds, centred on the collection's mean cell and normalised; one
   matrix product gives every cell's cosine similarity with every query cell, and each video
   scores its best window (the query stretched to 3/4, 1 and 4/3 of its length, mean cosine
   similarity over the window, as ``window`` in :mod:`relocbench.localize.matching`).
2. *The full matcher and the refinement* on the ``candidates`` best videos, exactly as
   :func:`relocbench.localize.localize` does on references given by hand (``auto`` on the
   0.5 s grid, the score floor, frame-level boundaries), with the rows read from the index.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import ConfigError, InputError

__all__ = ["build_index", "search_index", "IndexRefs", "load_index", "rank_references", "COARSE_GRID_S",
           "COARSE_SCALES"]

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


def build_index(videos: Sequence[PathLike], out: PathLike, *, backbone: Optional[str] = None,
                weights: Optional[str] = None, step_frames: Optional[int] = None, device: str = "auto",
                batch_size: int = 8, resume: bool = False, force: bool = False, shard: Any = None,
                workers: int = 0, quiet: bool = True):
    """Extract the features of ``videos`` (files, or folders of videos) into the index ``out``;
    returns :class:`relocbench.extract.ExtractSummary`. ``resume`` keeps what an interrupted
    run (or an earlier index of the same settings) finished; ``shard`` = ``"K/N"`` as in
    ``extract-features`` (merge the shards with ``merge-features``)."""
    from ..extract import extract_videos
    from .core import check_bounds, expand_references

    check_bounds(batch_size=batch_size, step_frames=step_frames)
    paths = expand_references(videos)
    return extract_videos(paths, _config(backbone, weights, step_frames, device, batch_size), out=out,
                          resume=resume, force=force, shard=shard, workers=workers, quiet=quiet)


@dataclass
class IndexRefs:
    """The index read for a search: per video its source, frame rate, frame count and rows."""

    path: Path
    settings: Dict[str, Any]
    step_frames: int
    videos: List[str]
    sources: List[str]
    fps: np.ndarray
    n_frames: np.ndarray
    rows: List[np.ndarray]
    #: the first stage's grid cells, centred and normalised, and each video's first cell and count
    coarse: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = None


#: Indexes read in this process, by (real path, size, modification time): a second search of
#: an unchanged index reads nothing (at most :data:`_MEMO_SIZE` kept).
_MEMO: Dict[Tuple[str, int, int], "IndexRefs"] = {}
_MEMO_SIZE = 2


def load_index(path: PathLike) -> IndexRefs:
    """Every video of the index (checked by :class:`relocbench.extract.writer.FeaturesFile`);
    an unchanged index already read by this process is not read again."""
    from ..io import require_file

    require_file(path, "index", InputError)
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _MEMO:
        while len(_MEMO) >= _MEMO_SIZE:
            _MEMO.pop(next(iter(_MEMO)))
        _MEMO[key] = _read_index(path)
    return _MEMO[key]


def _read_index(path: PathLike) -> IndexRefs:
    from ..extract.writer import FeaturesFile

    what = "an index written by relocbench index"
    with FeaturesFile(path, what=what) as ff:
        settings = dict(ff.settings)
        if ff.pca is not None:
            raise ConfigError("holds PCA-reduced rows; an index is written by relocbench index (no PCA)", file=path)
        entries = list(ff.entries())
    if not entries:
        raise InputError(f"holds no video; expected {what}", file=path)
    entries.sort(key=lambda e: e.video)
    return IndexRefs(Path(path), settings, int(settings.get("step_frames", 0)), [e.video for e in entries],
                     [e.source for e in entries], np.array([e.fps for e in entries], np.float64),
                     np.array([e.n_frames for e in entries], np.int64), [e.features for e in entries])


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
    if index.coarse is None:  # once per index read
        cells = [resample_to_grid(r, fps=f, n_frames=n, step_frames=sf, grid_s=g)
                 for r, f, n in zip(index.rows, index.fps, index.n_frames)]
        lengths = np.array([c.shape[0] for c in cells])
        allc = np.concatenate(cells)
        centre = allc.mean(axis=0)
        index.coarse = (normalise(allc, centre), centre, np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
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
                 refine: bool = True, method: str = "auto"):
    """Find ``query`` in the videos of ``index`` (module docstring); returns a
    :class:`relocbench.localize.LocalizeResult` whose references are the ``candidates`` videos
    searched in full (their first-stage scores in ``timings``/``features``)."""
    from ..extract import extract_video
    from ..extract.api import settings_for
    from ..extract.backbones import make_backbone
    from ..io import require_file
    from .core import (LocalizeResult, ReferenceInfo, _check_query_range, _check_range, _range, _rank,
                       _TrainingFree, check_bounds)
    from .floor import best_score, finish_segments, resolve_min_score
    from .matching import DEFAULT_GRID_S, resolve_matcher

    if not (isinstance(candidates, int) and not isinstance(candidates, bool) and candidates >= 1):
        raise ConfigError(f"The 'candidates' parameter must be an int >= 1. Got {candidates!r} instead.")
    resolve_matcher(method)
    check_bounds(top_k=top_k, batch_size=batch_size, step_frames=step_frames)
    t_all = time.perf_counter()
    require_file(index, "index", InputError)
    cfg = _config(backbone, weights, step_frames, device, batch_size)
    t0 = time.perf_counter()
    refs = load_index(index)
    load_s = time.perf_counter() - t0
    bb = make_backbone(cfg)
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
    rank_s = time.perf_counter() - t0
    how = _TrainingFree(method, backbone=cfg.backbone, weights=cfg.weights, step_frames=cfg.step_frames, pca=None,
                        device=device, batch_size=batch_size, grid_s=DEFAULT_GRID_S, window=_window(), top_k=top_k)
    how.set_query(qf)
    q_dur = qf.n_frames / qf.fps
    t0 = time.perf_counter()
    infos, per_ref, paths = [], [], []
    for k, i in enumerate(order):
        src = refs.sources[i]
        info = ReferenceInfo(src, refs.n_frames[i] / refs.fps[i], float(refs.fps[i]), int(refs.n_frames[i]))
        infos.append(info)
        paths.append(src)
        if info.duration + 1e-9 < q_dur:
            from .core import SKIP_SHORTER, format_hms

            info.skipped = f"{SKIP_SHORTER} ({format_hms(info.duration)} < {format_hms(q_dur)})"
            continue
        cand = how.match(_Rows(refs.rows[i], refs.fps[i], refs.n_frames[i]), info)
        info.best_score = best_score(cand)
        per_ref.append((k, cand))
    match_s = time.perf_counter() - t0
    for info in infos:  # the refinement decodes the sources: they must still be there
        if not info.skipped:
            require_file(info.path, "indexed video (moved or deleted since it was indexed?)", InputError)
    floor = resolve_min_score(method, min_score)
    segments, best, extra = finish_segments(_rank(per_ref, paths, top_k), min_score=floor, refine=refine,
                                            query_path=str(query), qf=qf, infos=infos, coarse_step_s=DEFAULT_GRID_S)
    timings = {"index_load_s": load_s, "extract_s": extract_s, "rank_s": rank_s, "match_s": match_s, **extra,
               "total_s": time.perf_counter() - t_all}
    q_start = qf.start_frame / qf.fps
    features = {**how.features_doc(qf), "index": str(index), "indexed_videos": len(refs.videos),
                "first_stage": [{"reference": refs.sources[i], "score": round(float(first[i]), 6)} for i in order]}
    res = LocalizeResult({"path": str(query), "start": round(q_start, 3), "end": round(q_start + q_dur, 3)}, how.doc,
                         features, segments, infos, timings, {}, [str(query), str(index)])
    res.min_score, res.best = floor, best
    return res


def _window():
    from .matching import WindowConfig

    return WindowConfig()
