"""Frame-accurate boundaries for the segments ``localize`` found.

The training-free matchers answer on a grid of ``grid_s`` seconds (a trained run on its
feature steps), so a found segment's start and end are off by up to a cell, and a window's
length is one of a few scales. :func:`refine_segments` moves each boundary of each returned
segment to a reference frame, within the coarse answer's uncertainty:

1. **Per-frame descriptors** (:data:`DESCRIPTORS`): each decoded frame is shrunk to a small
   thumbnail (``colour``, the default: 8x8 in three channels, each standardised; ``grey``: 16x16
   luma), cropped first to its content when black bars frame it (:func:`content_box`), and
   standardised (zero mean, unit length), so that a brighter, darker or lower-contrast copy of
   a frame keeps its descriptor, and a copy at another size or codec quality keeps nearly all of
   it. Two frames
   are compared by the dot product of their descriptors (a correlation, -1 to 1).
2. **Candidates**: reference frames within ``uncertainty_s`` seconds of the coarse start and of
   the coarse end (by default two grid cells plus a tenth of the segment's length, see
   :func:`default_uncertainty_s`), decoded in one pass over each reference.
3. **Alignment**: for every pair of a candidate start frame ``j0`` and end frame ``j1``, the
   query's frames are laid evenly over reference frames ``[j0, j1)``: query frame ``k`` of ``n``
   starts at the share ``k / n`` of the query and shows the reference frame on screen then,
   ``floor(j0 + k (j1 - j0) / n)`` (the query may have another frame rate, or be played faster
   or slower, within 0.5x to 2x; measured on 2026-12-07, taking frame centres instead biased the
   start one frame early on average over 24 degraded copies), and the pair scores
   the mean correlation of the query's frames with the reference frames they land on. A query
   of more than :data:`MAX_ALIGN_FRAMES` frames is represented by its first and last
   ``MAX_ALIGN_FRAMES // 4`` frames and half of them spread evenly over the rest, so that the
   frames deciding each boundary weigh most.
4. **Zoom** (a copy cropped and enlarged, or the reference being the cropped one): each
   descriptor sees the whole content box, so a copy showing only its centre correlates with the
   right frames at 0.7 to 0.8 and hardly better than with its neighbours; measured on 2026-12-07,
   the largest boundary error of ``benchmarks/bench_localize.py --mode refine --seeds 2
   --per-kind 3 --worst 10`` (21 frames at the end of a copy cropped by 20 %, in a scene of slow
   motion where frame after frame looks alike) came from it. So the content box of one side is
   also tried inset by :data:`ZOOM_INSETS` thumbnail pixels on each side (the reference's for a
   cropped query, the query's for a cropped reference): the inset whose frames find the best
   matches (the mean over query frames of the best correlation with any candidate reference
   frame, on every :data:`ZOOM_SAMPLE`-th reference frame and every second query frame) is
   aligned too when it beats no inset by :data:`ZOOM_MARGIN`, and the better of the two
   alignments is kept. On that copy the right inset (3 of 32 pixels) aligns the right frames at
   0.996 and both boundaries exactly; on copies that were not cropped no inset is chosen.
5. The best pair wins when its mean correlation reaches :data:`MIN_ALIGNMENT`; otherwise the
   coarse boundaries are kept and the segment is marked unrefined. (Measured on 2026-12-07 on
   copies degraded in each way of :data:`relocbench.localize.degrade.KINDS`: the right place
   aligned at 0.63 to 0.74 for a 20 % crop before the zoom search of step 4, about 0.99 with it,
   and 0.96 or more for the others; a letterboxed copy
   before the bars were cropped, i.e. frames that do not correspond, at 0.32 at most.) A refined
   segment never overlaps a better-ranked one of the same reference: its boundary stops at the
   other's edge.

The result is each segment's ``start_frame``/``end_frame`` (reference frames ``[start_frame,
end_frame)``) and ``start``/``end`` = ``frame / fps``, reported to the millisecond.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import ConfigError, InputError

__all__ = ["DESCRIPTORS", "DEFAULT_DESCRIPTOR", "MIN_ALIGNMENT", "MAX_ALIGN_FRAMES", "THUMB", "ZOOM_INSETS",
           "ZOOM_MARGIN", "ZOOM_SAMPLE", "frame_descriptor", "describe", "content_box", "inset_box", "best_zoom",
           "read_thumbnails", "query_sample", "align_boundaries", "default_uncertainty_s", "refine_segments",
           "with_frames"]

PathLike = Union[str, os.PathLike]
#: The mean correlation a refined alignment must reach (unrelated footage stays below it).
MIN_ALIGNMENT = 0.5
#: Query frames used by the alignment at most (module docstring, step 3).
MAX_ALIGN_FRAMES = 96
#: Thumbnail pixels (of :data:`THUMB`) cut from each side of a content box when looking for a zoom
#: (module docstring, step 4): up to about 31 % of the width and height.
ZOOM_INSETS = (1, 2, 3, 4, 5)
#: How much better (mean best correlation) an inset must match than none to be aligned too.
ZOOM_MARGIN = 0.02
#: The zoom is chosen on every ``ZOOM_SAMPLE``-th candidate reference frame (and every second
#: query frame of the alignment's): neighbouring frames look alike, and each inset costs a descriptor.
ZOOM_SAMPLE = 3
#: Frames skipped by seeking rather than decoding when the next needed frame is this far ahead.
SEEK_AHEAD_FRAMES = 300


#: Side of the square thumbnail each decoded frame is kept as (BGR, uint8), before cropping.
THUMB = 32
#: Grey level below which an edge row or column counts as a black bar.
BAR_LEVEL = 24


def _standardise(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32).reshape(x.shape[0], -1)
    x = x - x.mean(axis=1, keepdims=True)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(n > 1e-6, x / np.maximum(n, 1e-6), 0.0).astype(np.float32)


def _resize_all(thumbs: np.ndarray, side: int) -> np.ndarray:
    import cv2

    return np.stack([cv2.resize(t, (side, side), interpolation=cv2.INTER_AREA) for t in thumbs])


def _grey(thumbs: np.ndarray) -> np.ndarray:
    grey = thumbs.astype(np.float32) @ np.array([0.114, 0.587, 0.299], np.float32)  # BGR
    return _standardise(_resize_all(grey, 16))


def _colour(thumbs: np.ndarray) -> np.ndarray:
    small = _resize_all(thumbs, 8).astype(np.float32)
    return _standardise(np.concatenate([_standardise(small[..., c]) for c in range(3)], axis=1))


#: Per-frame descriptors by name (module docstring, step 1): ``[N, 32', 32', 3]`` thumbnails
#: (cropped to their content) -> ``[N, d]`` unit rows.
DESCRIPTORS: Dict[str, Callable[[np.ndarray], np.ndarray]] = {"grey": _grey, "colour": _colour}
DEFAULT_DESCRIPTOR = "colour"


def _check_kind(kind: str) -> None:
    if kind not in DESCRIPTORS:
        raise ConfigError(f"The descriptor must be one of {', '.join(map(repr, DESCRIPTORS))}. Got {kind!r} instead.")


def content_box(thumbs: np.ndarray) -> Tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)``: the thumbnails without the black bars at their edges (letterbox or
    pillarbox: edge rows/columns darker than :data:`BAR_LEVEL` in 95 % of their pixels over all
    frames), one more pixel cut on each side with a bar; the whole frame when the bars would
    leave less than half of it."""
    n, h, w = thumbs.shape[:3]
    grey = thumbs.astype(np.float32).mean(axis=-1)
    rows = np.percentile(grey, 95, axis=(0, 2)) < BAR_LEVEL
    cols = np.percentile(grey, 95, axis=(0, 1)) < BAR_LEVEL

    def span(dark: np.ndarray) -> Tuple[int, int]:
        a, b = 0, dark.size
        while a < b and dark[a]:
            a += 1
        while b > a and dark[b - 1]:
            b -= 1
        a, b = (a + 1 if a else a), (b - 1 if b < dark.size else b)
        return (a, b) if b - a >= dark.size // 2 else (0, dark.size)

    y0, y1 = span(rows)
    x0, x1 = span(cols)
    return y0, y1, x0, x1


def describe(thumbs: np.ndarray, kind: str = DEFAULT_DESCRIPTOR, box: Optional[Tuple[int, int, int, int]] = None
             ) -> np.ndarray:
    """Descriptors ``[N, d]`` of thumbnails ``[N, THUMB, THUMB, 3]`` cropped to ``box`` (default:
    :func:`content_box` of these thumbnails)."""
    _check_kind(kind)
    t = np.asarray(thumbs)
    y0, y1, x0, x1 = content_box(t) if box is None else box
    return DESCRIPTORS[kind](np.ascontiguousarray(t[:, y0:y1, x0:x1]))


def inset_box(box: Tuple[int, int, int, int], inset: int) -> Tuple[int, int, int, int]:
    """``box`` with ``inset`` pixels of :data:`THUMB` cut from each side, in proportion to its
    height and width (a letterboxed box loses fewer rows)."""
    y0, y1, x0, x1 = box
    dy = int(round(inset * (y1 - y0) / THUMB))
    dx = int(round(inset * (x1 - x0) / THUMB))
    return y0 + dy, y1 - dy, x0 + dx, x1 - dx


def frame_descriptor(frame: np.ndarray, kind: str = DEFAULT_DESCRIPTOR) -> np.ndarray:
    """The descriptor of one BGR frame, uncropped (unit length, float32; zeros for a flat frame)."""
    import cv2

    thumb = cv2.resize(frame, (THUMB, THUMB), interpolation=cv2.INTER_AREA)[None]
    return describe(thumb, kind, box=(0, THUMB, 0, THUMB))[0]


def read_thumbnails(path: PathLike, ranges: Sequence[Tuple[int, int]]) -> Tuple[Dict[int, np.ndarray], float]:
    """``THUMB x THUMB`` BGR thumbnails of the frames in ``ranges`` (``[lo, hi)`` frame indices) of
    one video, in one pass: frames between ranges are skipped (decoded without conversion, or
    sought past when the next range is :data:`SEEK_AHEAD_FRAMES` or more ahead). Returns
    ``{frame: thumbnail}`` (frames past the video's end are absent) and the video's frame rate."""
    from ..extract.decode import _cv2, quiet_opencv, require_video

    cv2 = _cv2()
    p = require_video(path)
    wanted = sorted({(max(0, int(a)), int(b)) for a, b in ranges if int(b) > max(0, int(a))})
    merged: List[List[int]] = []
    for a, b in wanted:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    out: Dict[int, np.ndarray] = {}
    with quiet_opencv():
        cap = cv2.VideoCapture(str(p), cv2.CAP_FFMPEG)
    try:
        if not cap.isOpened():
            raise InputError("unreadable video: FFmpeg (through OpenCV) cannot open it", file=p)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not (math.isfinite(fps) and fps > 0):
            raise InputError(f"unreadable video: the stream declares no frame rate (fps {fps!r})", file=p)
        pos = 0
        for a, b in merged:
            if a - pos >= SEEK_AHEAD_FRAMES and cap.set(cv2.CAP_PROP_POS_FRAMES, a) and \
                    int(round(cap.get(cv2.CAP_PROP_POS_FRAMES))) == a:
                pos = a
            while pos < a:
                if not cap.grab():
                    return out, fps
                pos += 1
            while pos < b:
                ok, frame = cap.read()
                if not ok or frame is None:
                    return out, fps
                out[pos] = cv2.resize(frame, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
                pos += 1
    finally:
        cap.release()
    return out, fps


def query_sample(n_frames: int, max_frames: int = MAX_ALIGN_FRAMES) -> np.ndarray:
    """Indices of the query frames the alignment uses (module docstring, step 3), sorted."""
    n = int(n_frames)
    if n <= max_frames:
        return np.arange(n, dtype=np.int64)
    edge = max_frames // 4
    middle = np.linspace(edge, n - 1 - edge, max_frames - 2 * edge).round().astype(np.int64)
    return np.unique(np.concatenate([np.arange(edge), middle, np.arange(n - edge, n)]))


def align_boundaries(query: np.ndarray, ks: np.ndarray, n_query: int, reference: np.ndarray, ref_lo: int,
                     starts: np.ndarray, ends: np.ndarray, *, min_rate: float = 0.5, max_rate: float = 2.0,
                     rate_unit: float = 1.0) -> Tuple[int, int, float]:
    """The best ``(start_frame, end_frame, mean correlation)`` over candidate pairs.

    ``query [K, d]``: descriptors of query frames ``ks`` (of ``n_query``); ``reference [M, d]``:
    descriptors of reference frames ``ref_lo .. ref_lo + M - 1``; ``starts``/``ends``: candidate
    reference frames. A pair is allowed when ``(end - start) / n_query * rate_unit`` lies in
    ``[min_rate, max_rate]`` (``rate_unit`` = query fps / reference fps makes it the playing speed).
    Ties go to the pair listed first (earliest start, then earliest end). Returns ``(-1, -1, -inf)``
    when no pair is allowed.
    """
    S = np.asarray(query, np.float32) @ np.asarray(reference, np.float32).T  # [K, M]
    j0 = np.asarray(starts, np.int64)[:, None]
    j1 = np.asarray(ends, np.int64)[None, :]
    length = (j1 - j0).astype(np.float64)  # [A, B]
    rate = length / n_query * rate_unit
    ok = (length >= 1) & (rate >= min_rate - 1e-9) & (rate <= max_rate + 1e-9)
    if not ok.any():
        return -1, -1, -math.inf
    frac = np.asarray(ks, np.float64) / n_query  # [K]: each query frame's start, as a share of the query
    rows = np.arange(S.shape[0])[None, None, :]
    score = np.full(length.shape, -np.inf)
    chunk = max(1, (1 << 22) // max(1, length.shape[1] * len(frac)))  # at most 4M gathered values at once
    for c in range(0, length.shape[0], chunk):
        pos = np.floor(j0[c:c + chunk, :, None] + frac[None, None, :] * length[c:c + chunk, :, None] + 1e-9)
        pos = np.clip(pos.astype(np.int64) - ref_lo, 0, S.shape[1] - 1)  # [a, B, K]
        score[c:c + chunk] = S[rows, pos].mean(axis=-1)
    score = np.where(ok, score, -np.inf)
    a, b = np.unravel_index(int(np.argmax(score)), score.shape)
    return int(starts[a]), int(ends[b]), float(score[a, b])


def best_zoom(query: Dict[int, np.ndarray], reference: Dict[int, np.ndarray]) -> Tuple[int, int, float, float]:
    """``(query inset, reference inset, its match, the match without inset)``: the zoom (module
    docstring, step 4) under which the query's frames find the best matches. ``query`` and
    ``reference`` map an inset (0 and :data:`ZOOM_INSETS`) to descriptors ``[K, d]`` / ``[M, d]``;
    a match is the mean over query frames of the best correlation with any reference frame. One
    side is inset at a time; ties go to no inset, then to the smaller inset, the reference's first."""
    def match(q: np.ndarray, r: np.ndarray) -> float:
        return float((np.asarray(q, np.float32) @ np.asarray(r, np.float32).T).max(axis=1).mean())

    base = match(query[0], reference[0])
    best = (0, 0, base)
    for q_in, r_in in [(0, i) for i in ZOOM_INSETS] + [(i, 0) for i in ZOOM_INSETS]:
        m = match(query[q_in], reference[r_in])
        if m > best[2]:
            best = (q_in, r_in, m)
    return best[0], best[1], best[2], base


def default_uncertainty_s(coarse_step_s: float, length_s: float) -> float:
    """How far a coarse boundary may be from the true one: two coarse cells (one for the grid, one
    for the interpolation of features onto it) plus a tenth of the segment (a window length is
    one of a few scales, about 19 % apart)."""
    return 2.0 * float(coarse_step_s) + 0.1 * float(length_s)


def with_frames(segment, fps: float):
    """``segment`` with ``start_frame``/``end_frame`` from its times (unrefined)."""
    a = int(math.floor(segment.start * fps + 1e-6))
    b = max(a + 1, int(math.ceil(segment.end * fps - 1e-6)))
    return dataclasses.replace(segment, start_frame=a, end_frame=b)


class _Described:
    """One video's thumbnails (``{frame: thumbnail}``) and their descriptors under each inset of
    their content box (:func:`inset_box`), each computed when first asked for."""

    def __init__(self, thumbs: Dict[int, np.ndarray], descriptor: str) -> None:
        self.thumbs = thumbs
        self.descriptor = descriptor
        self.box = content_box(np.stack([thumbs[k] for k in sorted(thumbs)])) if thumbs else (0, THUMB, 0, THUMB)
        self._rows: Dict[int, Dict[int, np.ndarray]] = {}

    def rows(self, inset: int, keys: Sequence[int]) -> np.ndarray:
        """Descriptors ``[len(keys), d]`` of the frames ``keys`` under ``inset``."""
        have = self._rows.setdefault(inset, {})
        todo = [k for k in keys if k not in have]
        if todo:
            d = describe(np.stack([self.thumbs[k] for k in todo]), self.descriptor, inset_box(self.box, inset))
            have.update(zip(todo, d))
        return np.stack([have[k] for k in keys])


def refine_segments(segments: Sequence, query_path: PathLike, query_start_frame: int, query_n_frames: int,
                    query_fps: float, fps_of: Dict[str, float], coarse_step_s: float, *,
                    descriptor: str = DEFAULT_DESCRIPTOR, min_alignment: float = MIN_ALIGNMENT,
                    uncertainty_s: Optional[float] = None) -> Tuple[List, Dict[str, float]]:
    """Every segment's boundaries moved to reference frames (module docstring).

    ``segments``: ranked :class:`~relocbench.localize.core.Segment` s; ``query_*``: the query's
    video and its frames ``[query_start_frame, query_start_frame + query_n_frames)``;
    ``fps_of``: each reference's frame rate; ``coarse_step_s``: the coarse answer's time step.
    Returns the segments (same order; ``refined`` tells which moved) and
    ``{"refine_s": seconds, "refined": count, "kept_coarse": count}``.
    """
    t0 = time.perf_counter()
    if not segments:
        return [], {"refine_s": 0.0, "refined": 0, "kept_coarse": 0}
    n_q = int(query_n_frames)
    qa = int(query_start_frame)
    _check_kind(descriptor)
    ks = query_sample(n_q)
    qthumbs, _ = read_thumbnails(query_path, [(qa + int(k), qa + int(k) + 1) for k in ks])
    ks = np.array([k for k in ks if qa + int(k) in qthumbs], dtype=np.int64)
    if not ks.size:
        raise InputError("no frame of the query could be decoded for the refinement", file=query_path)
    qd = _Described({int(k): qthumbs[qa + int(k)] for k in ks}, descriptor)
    q_keys = [int(k) for k in ks]
    plans = []
    by_ref: Dict[str, List[Tuple[int, int]]] = {}
    for s in segments:
        fps = float(fps_of[s.reference])
        u = default_uncertainty_s(coarse_step_s, s.end - s.start) if uncertainty_s is None else float(uncertainty_s)
        c0, c1 = s.start * fps, s.end * fps
        uf = max(1, int(math.ceil(u * fps)))
        starts = np.arange(max(0, int(round(c0)) - uf), int(round(c0)) + uf + 1)
        ends = np.arange(max(1, int(round(c1)) - uf), int(round(c1)) + uf + 1)
        lo, hi = int(starts[0]), int(ends[-1])
        plans.append((s, fps, starts, ends, lo, hi))
        by_ref.setdefault(s.reference, []).append((lo, hi))
    descs = {ref: _Described(read_thumbnails(ref, ranges)[0], descriptor) for ref, ranges in by_ref.items()}
    taken: Dict[str, List[Tuple[int, int]]] = {}
    out, refined = [], 0
    for s, fps, starts, ends, lo, hi in plans:
        rd = descs[s.reference]
        frames = [j for j in range(lo, hi) if j in rd.thumbs]
        best = (-1, -1, -math.inf)
        if frames:
            top = frames[-1]
            starts_ok = starts[starts <= top]
            ends_ok = ends[ends <= top + 1]
            if starts_ok.size and ends_ok.size:
                insets = (0, *ZOOM_INSETS)
                q_in, r_in, m, base = best_zoom({i: qd.rows(i, q_keys[::2]) for i in insets},
                                                {i: rd.rows(i, frames[::ZOOM_SAMPLE]) for i in insets})
                tries = [(0, 0)] + ([(q_in, r_in)] if (q_in, r_in) != (0, 0) and m >= base + ZOOM_MARGIN else [])
                for qi, ri in tries:
                    rows = rd.rows(ri, frames)
                    R = np.zeros((top + 1 - lo, rows.shape[1]), np.float32)
                    R[np.asarray(frames) - lo] = rows
                    got = align_boundaries(qd.rows(qi, q_keys), ks, n_q, R, lo, starts_ok, ends_ok,
                                           rate_unit=query_fps / fps)
                    if got[2] > best[2]:
                        best = got
        a, b, sim = best
        good = sim >= min_alignment
        if not good:
            coarse = with_frames(s, fps)
            a, b = coarse.start_frame, coarse.end_frame
        for ta, tb in taken.get(s.reference, []):  # never into a better-ranked segment
            if a < tb and b > ta:
                if (a + b) / 2 >= (ta + tb) / 2:
                    a = max(a, tb)
                else:
                    b = min(b, ta)
        if b <= a:  # wholly inside a better one: the coarse answer as it was
            coarse = with_frames(s, fps)
            a, b, good = coarse.start_frame, coarse.end_frame, False
        seg = dataclasses.replace(s, start=a / fps, end=b / fps, start_frame=a, end_frame=b, refined=bool(good),
                                  alignment=round(sim, 6) if math.isfinite(sim) else None)
        refined += int(good)
        taken.setdefault(s.reference, []).append((seg.start_frame, seg.end_frame))
        out.append(seg)
    return out, {"refine_s": time.perf_counter() - t0, "refined": refined, "kept_coarse": len(out) - refined}
