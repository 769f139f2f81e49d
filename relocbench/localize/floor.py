"""The score floor of ``localize`` and the last steps on the ranked segments.

**Score floor** (``--min-score``). A segment scoring below the floor is not returned; the
``top_k`` are "at most k". The default depends on the matcher, since their scores have
different scales (:data:`DEFAULT_MIN_SCORE`): measured with ``benchmarks/bench_localize.py
--mode floor --seeds 3 --per-kind 1`` on 2026-12-07, 18 queries cut from unrelated synthetic
scenes (other scenes, other seeds, re-encoded at other sizes, frame rates and brightness) never
reached 0.49 with ``window`` (its score is a mean cosine similarity; 90 % of them stayed under
0.47) nor 0.06 with ``framedp`` (``1 -`` mean distance), so the floors sit just above: 0.50 and
0.10. The found queries (one per kind of degradation and seed, 24) all scored above them (at
least 0.72 with ``window``, 0.28 with ``framedp``) once the first stage cropped black bars
(:mod:`relocbench.localize.bars`); before, about one in ten scored under 0.50 with ``window``,
the lowest (0.25) a letterboxed copy (``--min-score -inf`` shows every candidate). A trained
run's scores are the model's own: no floor unless one is given.

:func:`finish_segments` applies the floor, then the frame-level refinement
(:mod:`relocbench.localize.refine`), and :func:`no_match_line` says in one line why nothing was
returned.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError
from .timecodes import format_hms

__all__ = ["DEFAULT_MIN_SCORE", "resolve_min_score", "best_score", "finish_segments", "no_match_line"]

#: Default floor per matcher (module docstring); ``auto`` takes its matcher's.
DEFAULT_MIN_SCORE: Dict[str, float] = {"window": 0.5, "framedp": 0.1}


def resolve_min_score(method: str, value: Any = "auto") -> Optional[float]:
    """The floor in force: ``"auto"``/``None`` -> the matcher's default (none for a trained run),
    a number -> itself (``-inf`` turns the floor off)."""
    from .matching import MATCHERS, resolve_matcher

    if value is None or (isinstance(value, str) and value == "auto"):
        name = str(method)
        if name == "auto" or name in MATCHERS:
            return DEFAULT_MIN_SCORE[resolve_matcher(name)]
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or math.isnan(float(value)):
        raise ConfigError(f"The 'min_score' parameter must be a number or 'auto'. Got {value!r} instead.")
    return float(value)


def best_score(cand) -> Optional[float]:
    """The best finite score of a reference's candidates (``None`` when there is none)."""
    s = np.asarray(cand.score, dtype=np.float64)
    s = s[np.isfinite(s)]
    return float(s.max()) if s.size else None


def finish_segments(ranked: List, *, min_score: Optional[float], refine: bool, query_path: str, qf, infos: List,
                    coarse_step_s: float, descriptor: Optional[str] = None,
                    unrefinable: Sequence[str] = ()) -> Tuple[List, Any, Dict[str, float]]:
    """``(segments, best, timings)``: the ranked segments at or above ``min_score``, refined to
    the frame when ``refine`` (else given frame indices from their times); ``best`` is the best
    segment found before the floor (``None`` when no reference had one). Segments of the
    references in ``unrefinable`` keep their coarse answer (``refined`` false)."""
    from .refine import DEFAULT_DESCRIPTOR, refine_segments, with_frames

    best = ranked[0] if ranked else None
    kept = [s for s in ranked if min_score is None or s.score >= min_score]
    fps_of = {r.path: r.fps for r in infos}
    timings: Dict[str, float] = {}
    skip = set(unrefinable)
    todo = [k for k, s in enumerate(kept) if s.reference not in skip] if refine else []
    if todo:
        done, stats = refine_segments([kept[k] for k in todo], query_path, qf.start_frame, qf.n_frames, qf.fps,
                                      fps_of, coarse_step_s, descriptor=descriptor or DEFAULT_DESCRIPTOR)
        timings = {"refine_s": stats["refine_s"]}
        by_k = dict(zip(todo, done))
        kept = [by_k[k] if k in by_k else with_frames(s, fps_of[s.reference]) for k, s in enumerate(kept)]
    else:
        kept = [with_frames(s, fps_of[s.reference]) for s in kept]
    return kept, best, timings


def no_match_line(result) -> str:
    """``no segment of REF matches QUERY above 0.NN; best was 0.MM at START-END`` (one line)."""
    from .outputs import table_names

    q = result.query["path"]
    refs = [r.path for r in result.references if not r.skipped]
    names = table_names(refs + [q], width=40) if refs else {q: q}
    where = names[refs[0]] if len(refs) == 1 else f"the {len(refs)} references"
    floor = result.min_score
    line = f"no segment of {where} matches {names[q]}"
    line += f" above {floor:.2f}" if floor is not None else ""
    b = result.best
    if b is not None:
        at = f"{format_hms(b.start)}-{format_hms(b.end)}" + (f" of {names[b.reference]}" if len(refs) > 1 else "")
        line += f"; best was {b.score:.2f} at {at}"
    return line
