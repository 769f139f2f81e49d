"""Training-free matching of a query's features against a reference's, on one time grid.

**Time grid.** Query and reference may differ in frame rate, so their feature steps (one
per ``step_frames`` frames) last different times. Both are resampled onto one grid of
``grid_s`` seconds (:func:`resample_to_grid`): feature step ``j`` describes frames
``[j s, min((j + 1) s, n))`` and sits at the centre time of those frames; grid cell ``k``
covers ``[k g, (k + 1) g)`` seconds and takes the features linearly interpolated at its
centre ``(k + 0.5) g`` (the first and last steps hold beyond the outermost centres).

**Similarity.** Features are centred on the reference's mean step feature (what every
step of that video shares, such as its overall colour, says nothing about *where* the
query is) and L2-normalised; two steps are compared by their cosine similarity.

**Matchers** (:data:`MATCHERS`), each returning scored candidate segments in grid cells:

* ``window`` -- multi-scale sliding window. The query (``L`` cells) is stretched in time to
  ``m`` cells for ``n_scales`` lengths ``m = round(L c)``, ``c`` spaced evenly in log scale
  over ``[min_scale, max_scale]`` (default 0.5 to 2: a segment half to twice the query's
  length, so that the same action played faster or slower is found). Every placement
  ``t`` scores the mean cosine similarity of the stretched query's cell ``i`` with
  reference cell ``t + i``, minus ``length_penalty`` per octave of ``|log2 c|`` (which
  prefers the query's own length when content is uniform and lengths cannot be told
  apart). ``O(T m d)`` per scale: a matrix product and ``m`` shifted additions.
* ``framedp`` -- the frame-level baseline of the ECCV 2018 paper
  (:mod:`relocbench.temporal.framedp`): the monotone path of smallest mean distance
  between unit vectors; score ``1 - mean distance``. Further segments come from running
  it again with the columns already found set to the largest distance (2).
* ``auto`` -- ``window``. Measured with ``benchmarks/bench_localize.py`` on the test suite's
  kind of videos (references of distinct scenes; 48 queries cut out and re-encoded at another
  frame rate, size and brightness, half of them also played 0.7x to 1.4x as fast; 3
  references each), both matchers found every query at tIoU >= 0.8 in its own reference and
  ranked that reference first (mean tIoU 0.94 for ``window``, 0.95 for ``framedp``);
  ``window`` matched 2 to 5 times faster (8 vs 41 to 48 ms for the three references of a query,
  0.12 vs 0.27 to 0.65 s for an hour of reference) and its score, a mean cosine similarity, has the same meaning
  in every reference, which the ranking across references relies on. With the frame-level
  refinement that follows by default (:mod:`relocbench.localize.refine`), ``window`` and
  ``framedp`` give the same boundaries on every kind of degradation measured
  (``benchmarks/bench_localize.py --mode degrade``), so ``auto`` stays the faster one.

:func:`nms` keeps the best non-overlapping candidates of one reference.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, NamedTuple, Optional

import numpy as np

from ..errors import ConfigError

__all__ = [
    "DEFAULT_GRID_S", "MATCHERS", "DEFAULT_MATCHER", "Candidates", "MatchResult", "WindowConfig",
    "grid_size", "step_centres_s", "resample_to_grid", "normalise", "stretch", "window_scores",
    "match_window", "match_framedp", "match", "match_bytes", "nms",
]

#: Seconds per cell of the common time grid (about one 16-frame step at 30 fps).
DEFAULT_GRID_S = 0.5
DEFAULT_MATCHER = "window"


class Candidates(NamedTuple):
    """Candidate segments ``[start, end)`` in grid cells with their scores (higher is better)."""

    start: np.ndarray  # int64
    end: np.ndarray  # int64
    score: np.ndarray  # float64


class MatchResult(NamedTuple):
    """The candidates of one reference and a per-cell curve for the plot."""

    candidates: Candidates
    curve: np.ndarray  # [T] float64: the best score of a segment centred on each cell
    curve_label: str


@dataclass(frozen=True)
class WindowConfig:
    """Settings of the multi-scale sliding window (module docstring)."""

    min_scale: float = 0.5
    max_scale: float = 2.0
    n_scales: int = 9
    length_penalty: float = 0.02

    def __post_init__(self) -> None:
        if not (0 < self.min_scale <= 1 <= self.max_scale and math.isfinite(self.max_scale)):
            raise ConfigError(
                f"The window scales must satisfy 0 < min_scale <= 1 <= max_scale. "
                f"Got min_scale={self.min_scale!r}, max_scale={self.max_scale!r} instead.")
        if not (isinstance(self.n_scales, int) and self.n_scales >= 1):
            raise ConfigError(f"The 'n_scales' parameter must be an int >= 1. Got {self.n_scales!r} instead.")
        if not (self.length_penalty >= 0 and math.isfinite(self.length_penalty)):
            raise ConfigError(f"The 'length_penalty' parameter must be >= 0. Got {self.length_penalty!r} instead.")

    def lengths(self, query_cells: int, reference_cells: int) -> np.ndarray:
        """Distinct window lengths in cells (at least 1, at most the reference's length)."""
        if self.n_scales == 1:
            c = np.array([1.0])
        else:
            c = np.exp(np.linspace(math.log(self.min_scale), math.log(self.max_scale), self.n_scales))
        m = np.clip(np.round(query_cells * c).astype(np.int64), 1, reference_cells)
        return np.unique(m)


# --------------------------------------------------------------------------- time grid
def grid_size(duration_s: float, grid_s: float) -> int:
    """Cells of ``grid_s`` seconds covering ``duration_s`` (at least 1)."""
    _check_grid(grid_s)
    return max(1, int(math.ceil(duration_s / grid_s - 1e-9)))


def _check_grid(grid_s: float) -> None:
    if not (isinstance(grid_s, (int, float)) and grid_s > 0 and math.isfinite(grid_s)):
        raise ConfigError(f"The 'grid_s' parameter must be a positive number of seconds. Got {grid_s!r} instead.")


def step_centres_s(n_steps: int, n_frames: int, step_frames: int, fps: float) -> np.ndarray:
    """Centre time (seconds) of each feature step ``[j s, min((j + 1) s, n_frames))``."""
    j = np.arange(n_steps, dtype=np.float64)
    first = j * step_frames
    last = np.minimum(first + step_frames, max(n_frames, n_steps * step_frames - step_frames + 1))
    return (first + last) / 2.0 / fps


def resample_to_grid(features: np.ndarray, *, fps: float, n_frames: int, step_frames: int,
                     grid_s: float = DEFAULT_GRID_S) -> np.ndarray:
    """Features of each grid cell (module docstring), float32 ``[cells, dim]``."""
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ConfigError(f"features must be a non-empty [steps, dim] array; got shape {x.shape}")
    if not (fps > 0 and math.isfinite(fps)):
        raise ConfigError(f"The frame rate must be a positive number. Got {fps!r} instead.")
    duration = n_frames / fps
    n = grid_size(duration, grid_s)
    t = (np.arange(n, dtype=np.float64) + 0.5) * grid_s
    c = step_centres_s(x.shape[0], n_frames, step_frames, fps)
    if x.shape[0] == 1:
        return np.repeat(x, n, axis=0)
    hi = np.clip(np.searchsorted(c, t, side="right"), 1, x.shape[0] - 1)
    lo = hi - 1
    w = np.clip((t - c[lo]) / np.maximum(c[hi] - c[lo], 1e-12), 0.0, 1.0).astype(np.float32)[:, None]
    return (1.0 - w) * x[lo] + w * x[hi]


def normalise(x: np.ndarray, centre: Optional[np.ndarray] = None, eps: float = 1e-8) -> np.ndarray:
    """``x - centre`` with each row scaled to unit length (rows of zeros stay zero), float32."""
    y = np.asarray(x, dtype=np.float32)
    if centre is not None:
        y = y - np.asarray(centre, dtype=np.float32)[None, :]
    norm = np.linalg.norm(y, axis=1, keepdims=True)
    return (y / np.maximum(norm, eps)).astype(np.float32, copy=False)


def stretch(x: np.ndarray, m: int) -> np.ndarray:
    """``x`` (``[L, d]``) resampled in time to ``m`` rows by linear interpolation at cell centres."""
    n = x.shape[0]
    if m == n:
        return x
    pos = (np.arange(m, dtype=np.float64) + 0.5) * n / m - 0.5
    lo = np.clip(np.floor(pos).astype(np.int64), 0, n - 1)
    hi = np.minimum(lo + 1, n - 1)
    w = np.clip(pos - lo, 0.0, 1.0).astype(np.float32)[:, None]
    return (1.0 - w) * x[lo] + w * x[hi]


# --------------------------------------------------------------------------- matchers
def window_scores(query: np.ndarray, reference: np.ndarray, m: int) -> np.ndarray:
    """Mean cosine similarity of the query stretched to ``m`` cells at each placement ``t``.

    ``query [L, d]`` and ``reference [T, d]`` are unit rows; returns ``[T - m + 1]`` float64.
    """
    qm = normalise(stretch(query, m))
    sim = reference @ qm.T  # [T, m]
    n = reference.shape[0] - m + 1
    acc = np.zeros(n, dtype=np.float64)
    for i in range(m):
        acc += sim[i:i + n, i]
    return acc / m


def match_window(query: np.ndarray, reference: np.ndarray, config: WindowConfig = WindowConfig()) -> MatchResult:
    """Every placement of every window length (module docstring)."""
    L, T = query.shape[0], reference.shape[0]
    starts, ends, scores = [], [], []
    curve = np.full(T, -np.inf)
    for m in config.lengths(L, T):
        m = int(m)
        s = window_scores(query, reference, m) - config.length_penalty * abs(math.log2(m / L))
        t = np.arange(s.size, dtype=np.int64)
        starts.append(t)
        ends.append(t + m)
        scores.append(s)
        centre = t + m // 2
        np.maximum.at(curve, centre, s)
    curve = _fill_curve(curve)
    cand = Candidates(np.concatenate(starts), np.concatenate(ends), np.concatenate(scores))
    return MatchResult(cand, curve, "window similarity")


def _fill_curve(curve: np.ndarray) -> np.ndarray:
    """Cells no window centre falls on (the edges) take the nearest defined value."""
    ok = np.isfinite(curve)
    if ok.all() or not ok.any():
        return np.where(ok, curve, 0.0)
    idx = np.arange(curve.size)
    return np.interp(idx, idx[ok], curve[ok])


def match_framedp(query: np.ndarray, reference: np.ndarray, top_k: int = 5) -> MatchResult:
    """The ECCV 2018 frame-level baseline, run ``top_k`` times with found columns masked."""
    from ..temporal.framedp import frame_distances, min_mean_path

    d = frame_distances(query, reference)
    curve = 1.0 - d.min(axis=0)
    used = np.zeros(d.shape[1], dtype=bool)
    starts, ends, scores = [], [], []
    for _ in range(max(1, int(top_k))):
        if used.all():
            break
        mean, cells, _ = min_mean_path(np.where(used[None, :], 2.0, d))
        cols = np.array([c[1] for c in cells])
        if used[cols].any():  # only masked columns were left to pass through
            break
        a, b = int(cols.min()), int(cols.max()) + 1
        starts.append(a)
        ends.append(b)
        scores.append(1.0 - float(mean))
        used[a:b] = True
    cand = Candidates(np.array(starts, np.int64), np.array(ends, np.int64), np.array(scores, np.float64))
    return MatchResult(cand, curve, "frame similarity")


MATCHERS: Dict[str, Callable[..., MatchResult]] = {"window": match_window, "framedp": match_framedp}


def resolve_matcher(name: str) -> str:
    """``auto`` -> :data:`DEFAULT_MATCHER`; other names must be in :data:`MATCHERS`."""
    if name == "auto":
        return DEFAULT_MATCHER
    if name not in MATCHERS:
        raise ConfigError(
            f"The matcher must be 'auto', {', '.join(repr(k) for k in MATCHERS)} or a run folder. Got {name!r} instead.")
    return name


def match(query: np.ndarray, reference: np.ndarray, *, method: str = "auto", top_k: int = 5,
          window: WindowConfig = WindowConfig()) -> MatchResult:
    """Centre on the reference's mean, normalise, and run a matcher on grid features."""
    name = resolve_matcher(method)
    centre = reference.mean(axis=0)
    q, r = normalise(query, centre), normalise(reference, centre)
    if name == "window":
        return match_window(q, r, window)
    return match_framedp(q, r, top_k=top_k)


def match_bytes(method: str, query_cells: int, reference_cells: int, dim: int,
                window: WindowConfig = WindowConfig()) -> int:
    """Estimated peak memory (bytes) of :func:`match` on grids of these sizes, before any of it
    is allocated: the resampled, centred and normalised features (float32, three copies) and
    the matcher's tables (``window``: the ``[T, m]`` similarity of the longest window and its
    partial sums, float32; ``framedp``: the ``[L, T]`` distances and the diagonal blocks, float64)."""
    L, T = int(query_cells), int(reference_cells)
    feats = 3 * 4 * (L + T) * int(dim)
    if resolve_matcher(method) == "window":
        m = int(window.lengths(L, T).max()) if L and T else 0
        return feats + 2 * 4 * T * m
    return feats + 5 * 8 * L * T


# --------------------------------------------------------------------------- NMS
def nms(cand: Candidates, top_k: int) -> Candidates:
    """The ``top_k`` best candidates, none overlapping a better one (ties: listed first wins)."""
    if not (isinstance(top_k, (int, np.integer)) and top_k >= 1):
        raise ConfigError(f"The 'top_k' parameter must be an int >= 1. Got {top_k!r} instead.")
    start, end = np.asarray(cand.start), np.asarray(cand.end)
    score = np.asarray(cand.score, dtype=np.float64).copy()
    keep = []
    alive = np.isfinite(score)
    score[~alive] = -np.inf
    while len(keep) < top_k and alive.any():
        i = int(np.argmax(np.where(alive, score, -np.inf)))
        keep.append(i)
        alive &= ~((start < end[i]) & (end > start[i]))
    idx = np.array(keep, dtype=np.int64)
    return Candidates(start[idx].astype(np.int64), end[idx].astype(np.int64), np.asarray(cand.score)[idx].astype(np.float64))
