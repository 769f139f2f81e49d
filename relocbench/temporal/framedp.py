"""The frame-level baseline (ECCV 2018, Sec. 5.1), solved exactly.

Features are L2-normalised and compared in a distance table ``D[i, j] = ||q_i - r_j||``
(query step ``i``, reference step ``j``). A *path* is a monotone chain of cells that starts
in query row 0 at any reference column, ends in the last query row, and moves diagonally
``(i+1, j+1)``, horizontally ``(i, j+1)`` (the reference advances alone) or vertically
``(i+1, j)`` (the query advances alone). The baseline returns the reference columns spanned
by the path with the smallest *mean* distance over its cells.

The smallest mean is a ratio objective; Dinkelbach iteration finds it exactly. Start with
``λ`` = the smallest mean of a pure-diagonal block (a feasible path); solve the min-sum path
on ``D - λ`` by dynamic programming; set ``λ`` to the mean of that path; stop when ``λ``
no longer decreases. At the fixed point no path has ``sum(D - λ) < 0``, i.e. no path has a
smaller mean. Each DP is ``O(q r)``: a row's horizontal runs are a prefix minimum, computed
with ``np.minimum.accumulate``, so only the ``q`` rows are a Python loop.
"""
from __future__ import annotations

from typing import List, NamedTuple, Tuple

import numpy as np

from ..errors import ConfigError

__all__ = [
    "FrameDPResult", "frame_distances", "min_mean_path", "min_sum_path", "frame_level_baseline",
    "min_mean_path_brute_force",
]

Cell = Tuple[int, int]


class FrameDPResult(NamedTuple):
    """Reference span ``[start_step, end_step)``, mean distance of the path, and the path."""

    start_step: int
    end_step: int
    mean_distance: float
    iterations: int
    path: Tuple[Cell, ...]


def frame_distances(query: np.ndarray, reference: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """``D[i, j] = ||q_i / |q_i| - r_j / |r_j| ||`` in float64, shape ``[q, r]``."""
    q = np.asarray(query, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if q.ndim != 2 or r.ndim != 2 or q.shape[1] != r.shape[1] or len(q) == 0 or len(r) == 0:
        raise ConfigError(
            f"query and reference must be non-empty [steps, dim] arrays of one dim; got {q.shape} and {r.shape}"
        )
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), eps)
    r = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), eps)
    sq = (q * q).sum(1)[:, None] + (r * r).sum(1)[None, :] - 2.0 * (q @ r.T)
    return np.sqrt(np.maximum(sq, 0.0))


def _check_table(d: np.ndarray) -> np.ndarray:
    d = np.asarray(d, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] == 0 or d.shape[1] == 0:
        raise ConfigError(f"the distance table must be a non-empty 2-D array; got shape {d.shape}")
    if not np.isfinite(d).all():
        raise ConfigError("the distance table holds NaN or infinite values")
    return d


def _running_argmin(vals: np.ndarray) -> np.ndarray:
    """Index of the first minimum of ``vals[:j + 1]`` for every ``j``."""
    runmin = np.minimum.accumulate(vals)
    new = np.empty(vals.shape, dtype=bool)
    new[0] = True
    new[1:] = vals[1:] < runmin[:-1]
    return np.maximum.accumulate(np.where(new, np.arange(vals.size), 0))


def min_sum_path(cost: np.ndarray) -> Tuple[float, List[Cell]]:
    """The path (module docstring) with the smallest sum of ``cost``; ties: earliest choices.

    Returns ``(sum, cells)`` with the cells in path order.
    """
    c = _check_table(cost)
    q, r = c.shape
    run_start = np.empty((q, r), dtype=np.int64)   # where the horizontal run ending at (i, j) began
    from_diag = np.zeros((q, r), dtype=bool)       # entry into (i, k) came diagonally
    prev = None
    for i in range(q):
        if i == 0:
            arrive = np.zeros(r)                    # a path may start at any column of row 0
        else:
            arrive = prev.copy()                    # vertical from (i - 1, k)
            diag = np.full(r, np.inf)
            diag[1:] = prev[:-1]
            take = diag <= arrive
            from_diag[i] = take
            arrive = np.where(take, diag, arrive)
        csum = np.concatenate([[0.0], np.cumsum(c[i])])
        vals = arrive - csum[:-1]
        k = _running_argmin(vals)
        run_start[i] = k
        prev = csum[1:] + vals[k]
    j = int(np.argmin(prev))
    total = float(prev[j])
    cells: List[Cell] = []
    for i in range(q - 1, -1, -1):
        k = int(run_start[i, j])
        cells.extend((i, col) for col in range(j, k - 1, -1))
        if i > 0:
            j = k - 1 if from_diag[i, k] else k
    cells.reverse()
    return total, cells


def min_mean_path(d: np.ndarray, *, max_iter: int = 1000) -> Tuple[float, List[Cell], int]:
    """The path with the smallest mean of ``d`` by Dinkelbach iteration: ``(mean, cells, iterations)``."""
    d = _check_table(d)
    q, r = d.shape
    rows = np.arange(q)
    if r >= q:  # best pure-diagonal block covering the whole query
        j0 = np.arange(r - q + 1)
        means = d[rows[None, :], j0[:, None] + rows[None, :]].mean(axis=1)
        b = int(np.argmin(means))
        cells = [(int(i), int(b + i)) for i in rows]
    else:  # no diagonal block fits: diagonal, then vertical along the last column
        cells = [(int(i), int(min(i, r - 1))) for i in rows]
    lam = float(np.mean([d[c] for c in cells]))
    it = 0
    while True:
        it += 1
        if it > max_iter:
            raise ConfigError(f"Dinkelbach iteration did not converge in {max_iter} iterations")
        _, path = min_sum_path(d - lam)
        idx = tuple(np.array(path).T)
        new = float(d[idx].mean())
        if not new < lam - 1e-12 * (1.0 + abs(lam)):
            return lam, cells, it
        lam, cells = new, path


def min_mean_path_brute_force(d: np.ndarray) -> Tuple[float, List[Cell]]:
    """Enumerate every path (small tables only); reference for the tests."""
    d = _check_table(d)
    q, r = d.shape
    if q * r > 30:
        raise ConfigError(f"brute force is for tables of at most 30 cells; got {q}x{r}")
    best: List = [np.inf, None]

    def walk(cells: List[Cell], total: float) -> None:
        i, j = cells[-1]
        if i == q - 1:
            mean = total / len(cells)
            if mean < best[0] - 1e-12:
                best[0], best[1] = mean, list(cells)
        for di, dj in ((1, 1), (0, 1), (1, 0)):
            ni, nj = i + di, j + dj
            if ni < q and nj < r:
                cells.append((ni, nj))
                walk(cells, total + d[ni, nj])
                cells.pop()

    for j0 in range(r):
        walk([(0, j0)], float(d[0, j0]))
    return float(best[0]), best[1]


def frame_level_baseline(query: np.ndarray, reference: np.ndarray) -> FrameDPResult:
    """Run the frame-level baseline on one pair of feature arrays ``[steps, dim]``."""
    d = frame_distances(query, reference)
    mean, cells, it = min_mean_path(d)
    cols = [c[1] for c in cells]
    return FrameDPResult(int(min(cols)), int(max(cols)) + 1, float(mean), it, tuple(cells))
