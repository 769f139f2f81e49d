"""The ``--plot`` figure of ``localize`` (in the style of the ECCV 2018 paper's Fig. 4).

:func:`make_figure` builds it and :func:`~relocbench.localize.outputs.write_plot` writes it:

* on top, the query's thumbnail strip, titled with the query, the method, the score floor and
  the references counted as searched and skipped (separately);
* then one panel per searched reference, **every** one (best first by its best score; at most
  ``max_references`` when given, the title saying how many are not shown), each with its
  similarity or score curve, the found segments shaded by rank, the floor as a dashed line, and
  its best score in the panel's label even when no segment passes the floor;
* **one y-scale** for all panels (the range of every curve, the floor and the segments'
  scores), so that a 0.32 peak looks lower than a 0.90 one.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional

import numpy as np

from .timecodes import format_hms

__all__ = ["make_figure", "shared_ylim", "panel_order"]


def panel_order(result) -> List:
    """The searched (not skipped) references, best score first (ties: the order given)."""
    searched = [(i, r) for i, r in enumerate(result.references) if not r.skipped]
    key = [(-(r.best_score if r.best_score is not None else -math.inf), i) for i, r in searched]
    return [r for _, (i, r) in sorted(zip(key, searched), key=lambda x: x[0])]


def shared_ylim(result, infos) -> tuple:
    """``(low, high)`` covering every shown curve, the floor and every segment's score, 5 % margin."""
    vals: List[float] = []
    for r in infos:
        if r.curve is not None:
            c = np.asarray(r.curve, dtype=np.float64)
            vals += [float(np.nanmin(c)), float(np.nanmax(c))] if np.isfinite(c).any() else []
    vals += [s.score for s in result.segments]
    floor = getattr(result, "min_score", None)
    if floor is not None and math.isfinite(floor):
        vals.append(float(floor))
    vals = [v for v in vals if math.isfinite(v)]
    if not vals:
        return (0.0, 1.0)
    lo, hi = min(vals), max(vals)
    pad = 0.05 * (hi - lo) if hi > lo else 0.05
    return (lo - pad, hi + pad)


def make_figure(result, *, max_references: Optional[int] = None, thumbnails: Optional[list] = None):
    """The figure (module docstring); the caller closes it. ``thumbnails``: the query's frames
    (default: read from the query's video)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .outputs import query_thumbnails

    q = result.query
    thumbs = query_thumbnails(q["path"], q["start"], q["end"]) if thumbnails is None else thumbnails
    order = panel_order(result)
    shown = order if max_references is None else order[:max_references]
    n_skipped = sum(1 for r in result.references if r.skipped)
    n = len(shown)
    fig = plt.figure(figsize=(8.0, 1.1 + 1.6 * max(n, 1)))
    grid = fig.add_gridspec(1 + max(n, 1), 1, height_ratios=[0.6] + [1.2] * max(n, 1), hspace=0.7)
    ax = fig.add_subplot(grid[0])
    if thumbs:
        ax.imshow(np.concatenate([np.pad(t, ((0, 0), (0, 2), (0, 0)), constant_values=255) for t in thumbs], 1))
    ax.set_axis_off()
    method = result.method if isinstance(result.method, str) else result.method.get("baseline", "trained")
    floor = getattr(result, "min_score", None)
    has_floor = floor is not None and math.isfinite(floor)
    counts = f"{len(order)} reference(s) searched, {n_skipped} skipped"
    if len(shown) < len(order):
        counts += f", {len(order) - len(shown)} not shown"
    ax.set_title(f"query: {Path(q['path']).name} [{format_hms(q['start'])} - {format_hms(q['end'])}], "
                 f"method {method}" + (f", min score {floor:.2f}" if has_floor else "") + f"\n{counts}", fontsize=9)
    ax.set_gid("query")
    ylim = shared_ylim(result, shown)
    colours = plt.get_cmap("tab10")
    for i, info in enumerate(shown):
        ax = fig.add_subplot(grid[1 + i])
        ax.set_gid(info.path)
        if info.curve is not None:
            ax.plot(info.curve_times, info.curve, color="0.25", lw=0.9, label=info.curve_label)
        if has_floor:
            ax.axhline(floor, color="tab:red", lw=0.8, ls="--")
        for s in result.segments:
            if s.reference != info.path:
                continue
            c = colours((s.rank - 1) % 10)
            ax.axvspan(s.start, s.end, color=c, alpha=0.3, lw=0)
            ax.annotate(f"#{s.rank} {s.score:.2f}", xy=((s.start + s.end) / 2, 1.0),
                        xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=7, color=c)
        ax.set_xlim(0, info.duration)
        ax.set_ylim(*ylim)
        ax.set_ylabel(info.curve_label or "score", fontsize=8)
        ax.tick_params(labelsize=7)
        best = "none" if info.best_score is None else f"{info.best_score:.2f}"
        passed = sum(1 for s in result.segments if s.reference == info.path)
        ax.set_xlabel(f"{Path(info.path).name}: seconds (best score {best}, {passed} segment(s) returned)", fontsize=8)
    return fig
