"""Span decoding of the matching model (ECCV 2018, Eq. 12), vectorised over all spans.

For per-step log-probabilities ``log p_start, log p_end, log p_inside`` (columns 0, 1, 2 of
the model's 4-way softmax), the decoded span is

    argmax over s <= e, e - s + 1 <= max_span of
        log p_start(s) + log p_end(e) + mean of log p_inside over the span

with ``e`` the span's last step; it is returned end-exclusive as ``[s, e + 1)``.

``form="paper"`` (the default) averages ``log p_inside`` over ``s .. e``, the geometric
mean of Eq. 12. ``form="original"`` reproduces the released code, which averaged over
``s .. e - 1`` for ``e > s`` (one step short); for ``e == s`` that average is empty, and
we use ``log p_inside(s)`` there. Spans are limited to ``max_span`` steps (64 = 1024 frames,
the paper's limit).

All spans of all items are scored at once: ``[B, T, K]`` scores (``K = max_span`` span
lengths per start) from one cumulative sum, masked by each item's length, no Python loop
over spans. Ties go to the smallest start, then the shortest span.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from ..errors import ConfigError

__all__ = ["DecodedSpans", "decode_spans", "decode_spans_brute_force", "span_score_table", "MAX_SPAN_STEPS", "FORMS"]

#: The paper's limit on a decoded span: 1024 frames = 64 steps.
MAX_SPAN_STEPS = 64
FORMS = ("paper", "original")


class DecodedSpans(NamedTuple):
    """Decoded spans, one per item: ``[start_step, end_step)`` (end exclusive) and score."""

    start_step: np.ndarray
    end_step: np.ndarray
    score: np.ndarray


def _prepare(log_probs, lengths, max_span, form):
    if hasattr(log_probs, "detach"):
        log_probs = log_probs.detach().cpu().numpy()
    lp = np.asarray(log_probs, dtype=np.float64)
    single = lp.ndim == 2
    if single:
        lp = lp[None]
    if lp.ndim != 3 or lp.shape[-1] < 3:
        raise ConfigError(
            f"log_probs must have shape [T, 4] or [B, T, 4] (start, end, inside, outside); got {lp.shape}"
        )
    if np.isnan(lp).any():
        raise ConfigError("log_probs hold NaN values")
    b, t = lp.shape[:2]
    if lengths is None:
        n = np.full(b, t, dtype=np.int64)
    else:
        if hasattr(lengths, "detach"):
            lengths = lengths.detach().cpu().numpy()
        n = np.asarray(lengths, dtype=np.int64).reshape(-1)
        if n.shape != (b,):
            raise ConfigError(f"lengths must hold one length per item ({b}); got shape {n.shape}")
        if ((n < 1) | (n > t)).any():
            i = int(np.flatnonzero((n < 1) | (n > t))[0])
            raise ConfigError(f"item {i}: length {n[i]} is outside [1, {t}]")
    if not isinstance(max_span, (int, np.integer)) or max_span < 1:
        raise ConfigError(f"The 'max_span' parameter must be an int >= 1. Got {max_span!r} instead.")
    if form not in FORMS:
        raise ConfigError(f"The 'form' parameter must be one of {FORMS}. Got {form!r} instead.")
    return lp, n, single


def span_score_table(lp: np.ndarray, n: np.ndarray, max_span: int, form: str):
    """The Eq. 12 score of every span of every item: ``(score [B, T * K], K)``.

    ``lp`` ``[B, T, 4]`` float64 and ``n`` ``[B]`` as checked by :func:`decode_spans`; flat index
    ``s * K + (e - s)`` is the span ``[s, e + 1)`` (``K = min(max_span, T)``), ``-inf`` where
    ``e >= n``. One table for :func:`decode_spans` and every k-best decoder built on it.
    """
    b, t = lp.shape[:2]
    k = min(int(max_span), t)
    ls, le, li = lp[..., 0], lp[..., 1], lp[..., 2]
    csum = np.concatenate([np.zeros((b, 1)), np.cumsum(li, axis=1)], axis=1)  # [B, T + 1]
    s = np.arange(t)[:, None]                      # [T, 1]
    off = np.arange(k)[None, :]                    # [1, K] span length - 1
    e = s + off                                    # [T, K] last step
    valid = e[None] < n[:, None, None]             # [B, T, K]
    e_c = np.minimum(e, t - 1).reshape(-1)
    s_f = np.broadcast_to(s, e.shape).reshape(-1)
    off_f = np.broadcast_to(off, e.shape).reshape(-1)
    c_s = csum[:, s_f]
    if form == "paper":
        inside = (csum[:, e_c + 1] - c_s) / (off_f + 1)
    else:
        short = (csum[:, e_c] - c_s) / np.maximum(off_f, 1)
        inside = np.where(off_f == 0, li[:, s_f], short)
    score = ls[:, s_f] + le[:, e_c] + inside
    return np.where(valid.reshape(b, -1), score, -np.inf), k


def decode_spans(log_probs, lengths: Optional[np.ndarray] = None, *, max_span: int = MAX_SPAN_STEPS,
                 form: str = "paper") -> DecodedSpans:
    """Decode the best span of every item (module docstring).

    ``log_probs``: ``[B, T, 4]`` or ``[T, 4]`` log-probabilities (NumPy or a CPU tensor);
    ``lengths``: valid steps per item (default ``T``). Returns arrays of shape ``[B]`` (or
    scalars' arrays of shape ``[]`` for a ``[T, 4]`` input).
    """
    lp, n, single = _prepare(log_probs, lengths, max_span, form)
    b = lp.shape[0]
    score, k = span_score_table(lp, n, max_span, form)
    best = np.argmax(score, axis=1)
    start = best // k
    end = start + best % k + 1
    top = score[np.arange(b), best]
    out = DecodedSpans(start.astype(np.int64), end.astype(np.int64), top)
    if single:
        return DecodedSpans(out.start_step[0], out.end_step[0], out.score[0])
    return out


def decode_spans_brute_force(log_probs, lengths: Optional[np.ndarray] = None, *,
                             max_span: int = MAX_SPAN_STEPS, form: str = "paper") -> DecodedSpans:
    """Plain loops over every span; the reference :func:`decode_spans` is tested against."""
    lp, n, single = _prepare(log_probs, lengths, max_span, form)
    starts, ends, scores = [], [], []
    for bi in range(lp.shape[0]):
        best = (-np.inf, 0, 1)
        for s in range(int(n[bi])):
            for e in range(s, min(int(n[bi]), s + int(max_span))):
                if form == "paper" or e == s:
                    inside = float(np.mean(lp[bi, s:e + 1, 2]))
                else:
                    inside = float(np.mean(lp[bi, s:e, 2]))
                sc = lp[bi, s, 0] + lp[bi, e, 1] + inside
                if sc > best[0]:
                    best = (sc, s, e + 1)
        scores.append(best[0])
        starts.append(best[1])
        ends.append(best[2])
    out = DecodedSpans(np.array(starts, np.int64), np.array(ends, np.int64), np.array(scores))
    if single:
        return DecodedSpans(out.start_step[0], out.end_step[0], out.score[0])
    return out
