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

**The k best spans** (:func:`k_best_spans`, :func:`frame_level_top_k`). A path's columns
are monotone, so its reference span ``[a, e + 1)`` is fixed by its first column ``a`` (row 0)
and its last column ``e`` (last row); a span's score is the smallest mean of the paths with
those ends. The k best distinct spans are found exactly by Lawler's partitioning of the set
of (first column, last column) pairs: a subproblem is a rectangle ``a in [a_lo, a_hi]``,
``e in [e_lo, e_hi]``, solved by the same Dinkelbach iteration with row 0 entered only at
columns ``a_lo .. a_hi`` and the path ending at a column ``e_lo .. e_hi``; after the best
span ``(a*, e*)`` of a rectangle is taken, the rest of it is split into four rectangles
(``a < a*``; ``a > a*``; ``a = a*, e < e*``; ``a = a*, e > e*``), each solved, and the
best open rectangle gives the next span. The first span is exactly :func:`min_mean_path`'s.
Means equal within the iteration's tolerance (``1e-12`` relative) are reported equal, so the
list is sorted best first.
"""
from __future__ import annotations

import heapq
from typing import List, NamedTuple, Optional, Tuple

import numpy as np

from ..errors import ConfigError

__all__ = [
    "FrameDPResult", "frame_distances", "min_mean_path", "min_sum_path", "frame_level_baseline",
    "min_mean_path_brute_force", "k_best_spans", "frame_level_top_k", "k_best_spans_brute_force",
]

_TOL = 1e-12  # relative tolerance of the Dinkelbach stopping rule

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
    return _min_sum_path(_check_table(cost))


def _min_sum_path(c: np.ndarray, start_ok: Optional[np.ndarray] = None,
                  end_ok: Optional[np.ndarray] = None) -> Tuple[float, List[Cell]]:
    """:func:`min_sum_path` on a checked table; ``start_ok`` / ``end_ok`` (boolean ``[r]``)
    restrict the column a path may start at (row 0) and end at (last row)."""
    q, r = c.shape
    run_start = np.empty((q, r), dtype=np.int64)   # where the horizontal run ending at (i, j) began
    from_diag = np.zeros((q, r), dtype=bool)       # entry into (i, k) came diagonally
    prev = None
    for i in range(q):
        if i == 0:
            # a path may start at any (allowed) column of row 0
            arrive = np.zeros(r) if start_ok is None else np.where(start_ok, 0.0, np.inf)
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
    j = int(np.argmin(prev if end_ok is None else np.where(end_ok, prev, np.inf)))
    total = float(prev[j])
    cells: List[Cell] = []
    for i in range(q - 1, -1, -1):
        k = int(run_start[i, j])
        cells.extend((i, col) for col in range(j, k - 1, -1))
        if i > 0:
            j = k - 1 if from_diag[i, k] else k
    cells.reverse()
    return total, cells


def _path_mean(d: np.ndarray, cells: List[Cell]) -> float:
    return float(d[tuple(np.array(cells).T)].mean())


def _dinkelbach(d: np.ndarray, lam: float, cells: List[Cell], max_iter: int, start_ok=None,
                end_ok=None) -> Tuple[float, List[Cell], int]:
    """Dinkelbach iteration from the feasible path ``cells`` of mean ``lam``."""
    it = 0
    while True:
        it += 1
        if it > max_iter:
            raise ConfigError(f"Dinkelbach iteration did not converge in {max_iter} iterations")
        _, path = _min_sum_path(d - lam, start_ok, end_ok)
        new = _path_mean(d, path)
        if not new < lam - _TOL * (1.0 + abs(lam)):
            return lam, cells, it
        lam, cells = new, path


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
    return _dinkelbach(d, lam, cells, max_iter)


def _min_mean_path_in(d: np.ndarray, box: Tuple[int, int, int, int], max_iter: int
                      ) -> Tuple[float, List[Cell], int]:
    """The smallest-mean path whose first column is in ``box[0] .. box[1]`` and whose last
    column is in ``box[2] .. box[3]`` (a feasible box: ``box[0] <= box[3]``)."""
    cols = np.arange(d.shape[1])
    start_ok = (cols >= box[0]) & (cols <= box[1])
    end_ok = (cols >= box[2]) & (cols <= box[3])
    _, cells = _min_sum_path(d, start_ok, end_ok)  # the smallest-sum path: a feasible start
    return _dinkelbach(d, _path_mean(d, cells), cells, max_iter, start_ok, end_ok)


def _split(box: Tuple[int, int, int, int], a: int, e: int) -> List[Tuple[int, int, int, int]]:
    """The rest of ``box`` without the span ``(a, e)``, as the feasible ones of four boxes."""
    a_lo, a_hi, e_lo, e_hi = box
    parts = [(a_lo, a - 1, e_lo, e_hi), (a + 1, a_hi, e_lo, e_hi), (a, a, e_lo, e - 1), (a, a, e + 1, e_hi)]
    return [b for b in parts if b[0] <= b[1] and b[2] <= b[3] and b[0] <= b[3]]


def k_best_spans(d: np.ndarray, k: int, *, max_iter: int = 1000) -> List[Tuple[float, List[Cell], int]]:
    """The ``k`` best distinct reference spans of table ``d`` (module docstring), best first.

    Returns up to ``k`` tuples ``(mean, cells, iterations)`` (fewer when the table has fewer
    spans), the path of each span being its smallest-mean path; the first is
    :func:`min_mean_path`'s answer. Spans of equal mean come in the order the search meets
    them (deterministic, not by column).
    """
    d = _check_table(d)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"The 'k' parameter must be an int >= 1. Got {k!r} instead.")
    r = d.shape[1]
    mean, cells, it = min_mean_path(d, max_iter=max_iter)
    heap = [(mean, cells[0][1], cells[-1][1], 0, (0, r - 1, 0, r - 1), cells, it)]
    seq = 1
    out: List[Tuple[float, List[Cell], int]] = []
    while heap and len(out) < int(k):
        mean, a, e, _, box, cells, it = heapq.heappop(heap)
        if out:  # a box's optimum is never below its parent's: only the tolerance can put it there
            mean = max(mean, out[-1][0])
        out.append((mean, cells, it))
        if len(out) == int(k):
            break
        for child in _split(box, a, e):
            m, c, i = _min_mean_path_in(d, child, max_iter)
            heapq.heappush(heap, (m, c[0][1], c[-1][1], seq, child, c, i))
            seq += 1
    return out


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


def k_best_spans_brute_force(d: np.ndarray, k: int) -> List[Tuple[float, int, int]]:
    """Every path enumerated (small tables only): the ``k`` best ``(mean, first column, last
    column)`` spans, sorted by mean, then columns; reference for the tests."""
    d = _check_table(d)
    q, r = d.shape
    if q * r > 30:
        raise ConfigError(f"brute force is for tables of at most 30 cells; got {q}x{r}")
    best: dict = {}

    def walk(j0: int, i: int, j: int, total: float, n: int) -> None:
        if i == q - 1:
            key = (j0, j)
            best[key] = min(best.get(key, np.inf), total / n)
        for di, dj in ((1, 1), (0, 1), (1, 0)):
            ni, nj = i + di, j + dj
            if ni < q and nj < r:
                walk(j0, ni, nj, total + d[ni, nj], n + 1)

    for j0 in range(r):
        walk(j0, 0, j0, float(d[0, j0]), 1)
    return sorted((m, a, e) for (a, e), m in best.items())[:k]


def _result(mean: float, cells: List[Cell], it: int) -> FrameDPResult:
    cols = [c[1] for c in cells]
    return FrameDPResult(int(min(cols)), int(max(cols)) + 1, float(mean), it, tuple(cells))


def frame_level_baseline(query: np.ndarray, reference: np.ndarray) -> FrameDPResult:
    """Run the frame-level baseline on one pair of feature arrays ``[steps, dim]``."""
    d = frame_distances(query, reference)
    return _result(*min_mean_path(d))


def frame_level_top_k(query: np.ndarray, reference: np.ndarray, k: int) -> List[FrameDPResult]:
    """The baseline's ``k`` best distinct spans of one pair, best first (:func:`k_best_spans`);
    the first is :func:`frame_level_baseline`'s answer."""
    d = frame_distances(query, reference)
    return [_result(*x) for x in k_best_spans(d, k)]
