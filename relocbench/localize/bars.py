"""Black bars cropped before the first stage's features (letterbox, pillarbox).

A copy of a video saved with black bars (a 4:3 player's letterbox around 16:9 footage, a
pillarboxed upload) shows the same content in a smaller part of the frame. The handcrafted
features see the bars (colour histograms full of black, no gradients and no motion there), so
such a copy scored 0.25 against its own reference and could rank another reference first
(measured on 2026-12-07, ``benchmarks/bench_localize.py --mode floor`` and ``--mode refine
--worst``). :class:`BarCropped` wraps the backbone of the training-free matchers: the frames of
each step (``step_frames`` consecutive frames, what one feature row covers) are cropped to
their content (:func:`bar_box`) and scaled back to the frame's size before the backbone sees
them, for queries, references and index entries alike. Working on each step rather than on a
whole video keeps a query and the same moments of its reference cropped alike (a clip's
frames are a few steps of its source) and keeps the memory to one step's frames.

The crop is a setting of the features (:data:`BARS_SETTING`, recorded as ``bars`` in the
features' attributes, the cache key and an index's settings): features cached or indexed
without it are not reused, and ``localize --index`` refuses an index made before it as made
with other settings. A trained run's features (``extract-features``) are used as they are.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, List, Tuple

import numpy as np

from ..extract.backbones.base import Backbone

__all__ = ["BARS_SETTING", "BAR_LEVEL", "BAR_SHARE", "BarCropped", "bar_box", "crop_bars"]

#: The ``bars`` setting recorded with features whose frames were cropped this way.
BARS_SETTING = "crop-steps-v1"
#: A pixel value (of one channel) brighter than this is content, not bar.
BAR_LEVEL = 24
#: An edge row or column is a bar when at most this share of its values over the step is content.
BAR_SHARE = 0.05


def _span(bar: np.ndarray) -> Tuple[int, int]:
    """``[a, b)`` without the bars at both ends of ``bar`` (one more pixel per 64 cut beside
    each bar: the row a codec blends into the bar); everything when less than half would stay."""
    n = bar.size
    a, b = 0, n
    while a < b and bar[a]:
        a += 1
    while b > a and bar[b - 1]:
        b -= 1
    extra = max(1, n // 64)
    a, b = (a + extra if a else a), (b - extra if b < n else b)
    return (a, b) if b - a >= n // 2 else (0, n)


def bar_box(frames: List[np.ndarray]) -> Tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)``: the frames (BGR ``uint8``, one shape) without the black bars at their
    edges: edge rows and columns in which at most :data:`BAR_SHARE` of the values (pixels times
    channels, over all the frames) are brighter than :data:`BAR_LEVEL` (so dark but saturated
    content is not a bar). The whole frame when the bars would leave less than half of its height
    or width."""
    import cv2

    h, w = frames[0].shape[:2]
    n = len(frames)
    row_max, col_max = BAR_SHARE * 3 * w * n, BAR_SHARE * 3 * h * n

    def bright(lines) -> int:
        return sum(int(np.count_nonzero(x > BAR_LEVEL)) for x in lines)

    # the edges first: when no edge row or column is a bar, there is none (the usual case)
    if bright(f[0] for f in frames) > row_max and bright(f[-1] for f in frames) > row_max and \
            bright(f[:, 0] for f in frames) > col_max and bright(f[:, -1] for f in frames) > col_max:
        return 0, h, 0, w
    rows = np.zeros(h, np.int64)
    cols = np.zeros(w, np.int64)
    for f in frames:
        _, t = cv2.threshold(np.ascontiguousarray(f).reshape(h, w * 3), BAR_LEVEL, 1, cv2.THRESH_BINARY)
        rows += cv2.reduce(t, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
        cols += cv2.reduce(t, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).reshape(w, 3).sum(axis=1)
    y0, y1 = _span(rows <= row_max)
    x0, x1 = _span(cols <= col_max)
    return y0, y1, x0, x1


def _cropped(block: List[np.ndarray]) -> Iterator[np.ndarray]:
    import cv2

    shape = block[0].shape
    if any(f.shape != shape for f in block):  # a stream changing size mid-step: left as it is
        yield from block
        return
    h, w = shape[:2]
    y0, y1, x0, x1 = bar_box(block)
    if (y0, y1, x0, x1) == (0, h, 0, w):
        yield from block
        return
    for f in block:
        yield cv2.resize(np.ascontiguousarray(f[y0:y1, x0:x1]), (w, h), interpolation=cv2.INTER_LINEAR)


def crop_bars(frames: Iterator[np.ndarray], step_frames: int) -> Iterator[np.ndarray]:
    """``frames`` with the black bars of each block of ``step_frames`` frames cropped
    (:func:`bar_box`), scaled back to the frame's size; frames without bars pass unchanged."""
    block: List[np.ndarray] = []
    for f in frames:
        block.append(f)
        if len(block) == step_frames:
            yield from _cropped(block)
            block = []
    if block:
        yield from _cropped(block)


class BarCropped(Backbone):
    """``inner`` fed with frames whose black bars are cropped per step (module docstring)."""

    def __init__(self, inner: Backbone) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim

    def __getattr__(self, name: str) -> Any:  # anything else a backbone offers: the inner one's
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def attrs(self) -> Dict[str, Any]:
        out = dict(self.inner.attrs())
        out["bars"] = BARS_SETTING
        return out

    def rows(self, frames: Iterator[np.ndarray], fps: float, step_frames: int) -> np.ndarray:
        return self.inner.rows(crop_bars(frames, step_frames), fps, step_frames)
