"""The time axis of a feature source (row ``i`` -> seconds) and its mapping onto the manifest grid.

A feature source declares one of two axes:

* ``clips``: row ``i`` is a clip of ``clip_frames`` frames starting at frame
  ``offset_frames + i * stride_frames`` of the video sampled at ``fps`` frames per second
  (a number, or ``"native"``: the video's own rate, ``n_frames / duration``). The row stands
  at its clip's centre::

      t_i = (offset_frames + i * stride_frames + clip_frames / 2) / fps

  OpenTAD's ``convert_to_seconds`` (``opentad/models/utils/post_processing/utils.py``) places
  a row at ``(i * snippet_stride + offset_frames) / fps``, its ``offset_frames`` being this
  axis's ``offset_frames + clip_frames / 2``.
* ``resized``: ``rows`` rows spread evenly over a span of ``S`` seconds, row ``i`` at
  ``t_i = (i + 0.5) * S / rows``. ``span: duration`` is the video's duration;
  ``span: grid`` is the ``n_steps * 16`` native frames the manifest's steps cover
  (``n_steps * 16 * duration / n_frames`` seconds): BSN/BMN's ``corrected_second``
  (``feature_frame / duration_frame * duration_second``), whose ``feature_frame`` is that
  count in 64 % of ActivityNet videos and 16 frames more or less in the others.

**The manifest grid.** Step ``j`` of a video covers the native frames ``16 j .. 16 j + 15``,
the seconds ``[16 j, 16 j + 16) * duration / n_frames``; its centre is
``s_j = (16 j + 8) * duration / n_frames``. :meth:`TimeAxis.to_grid` returns, for each of the
manifest's ``n_steps`` steps, the rows linearly interpolated at ``s_j`` between the two rows
whose centres surround it (before the first row's centre the first row, after the last
row's centre the last row). A native-rate axis computes in frames, so that a row whose
centre is a step's centre is returned bit for bit.

**Rows expected.** ``clips``: with ``N`` frames at the axis's rate (``n_frames`` when
native, else ``duration * fps``), between ``floor((N - offset - clip) / stride) + 1`` (clips
that end inside the video) and ``ceil((N - offset) / stride)`` (clips that start inside it,
the last one padded), widened by ``tolerance_rows`` rows on each side (default 1: one clip
stride; a card adds the release's documented padding). ``resized``: exactly ``rows``.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from ..errors import ConfigError

__all__ = ["TimeAxis", "VideoInfo", "video_infos", "STEP_FRAMES", "GridPlan", "grid_plan", "interpolate_rows"]

#: Frames per step of every temporal manifest (one C3D clip).
STEP_FRAMES = 16

_CLIP_KEYS = ("kind", "fps", "clip_frames", "stride_frames", "offset_frames", "tolerance_rows")
_RESIZED_KEYS = ("kind", "rows", "span")


@dataclass(frozen=True)
class VideoInfo:
    """What the manifest says about a video: ``duration_s``, ``n_frames`` (native) and ``n_steps``."""

    duration_s: float
    n_frames: int
    n_steps: int

    def step_centres_s(self) -> np.ndarray:
        """``(16 j + 8) * duration / n_frames`` for every step ``j`` (float64)."""
        return (STEP_FRAMES * np.arange(self.n_steps, dtype=np.float64) + STEP_FRAMES / 2) * (
            self.duration_s / self.n_frames)


def _number(card: str, key: str, value: Any, *, minimum: float, strict: bool, integer: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > minimum if strict else value >= minimum) and (not integer or float(value).is_integer())
    if not ok:
        what = "an int" if integer else "a number"
        rel = ">" if strict else ">="
        raise ConfigError(f"The time axis {key!r} must be {what} {rel} {minimum:g}. Got {value!r} instead.",
                          file=card or None)
    return int(value) if integer else float(value)


@dataclass(frozen=True)
class TimeAxis:
    """The row -> seconds rule of a feature source (see the module docstring).

    >>> TimeAxis.clips(fps=15, clip_frames=16, stride_frames=16).row_centres_s(3, None)
    array([0.53333333, 1.6       , 2.66666667])
    """

    kind: str
    fps: Union[float, str] = "native"
    clip_frames: float = STEP_FRAMES
    stride_frames: float = STEP_FRAMES
    offset_frames: float = 0.0
    tolerance_rows: int = 1
    rows: Optional[int] = None
    span: str = "duration"

    # ---- construction
    @classmethod
    def clips(cls, *, fps: Union[float, str] = "native", clip_frames: float = STEP_FRAMES,
              stride_frames: float = STEP_FRAMES, offset_frames: float = 0.0, tolerance_rows: int = 1) -> "TimeAxis":
        return cls.from_dict({"kind": "clips", "fps": fps, "clip_frames": clip_frames, "stride_frames": stride_frames,
                              "offset_frames": offset_frames, "tolerance_rows": tolerance_rows})

    @classmethod
    def resized(cls, rows: int, *, span: str = "duration") -> "TimeAxis":
        return cls.from_dict({"kind": "resized", "rows": rows, "span": span})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, file: Optional[str] = None) -> "TimeAxis":
        """Validate a ``time_axis`` mapping of a feature card (errors name ``file`` and the key)."""
        where = file or ""
        if not isinstance(d, Mapping):
            raise ConfigError(f"The 'time_axis' of a feature card must be a mapping. Got {d!r} instead.",
                              file=file)
        kind = d.get("kind")
        if kind not in ("clips", "resized"):
            raise ConfigError(f"The time axis 'kind' must be 'clips' or 'resized'. Got {kind!r} instead.", file=file)
        allowed = _CLIP_KEYS if kind == "clips" else _RESIZED_KEYS
        extra = sorted(set(d) - set(allowed))
        if extra:
            raise ConfigError(f"unknown time axis key(s) {extra} for kind {kind!r}; expected some of "
                              f"{list(allowed)}", file=file)
        if kind == "resized":
            if "rows" not in d:
                raise ConfigError("a 'resized' time axis needs 'rows' (the rows of every video)", file=file)
            rows = _number(where, "rows", d["rows"], minimum=1, strict=False, integer=True)
            span = d.get("span", "duration")
            if span not in ("duration", "grid"):
                raise ConfigError(f"The time axis 'span' must be 'duration' or 'grid'. Got {span!r} instead.",
                                  file=file)
            return cls("resized", rows=int(rows), span=span, tolerance_rows=0)
        fps = d.get("fps", "native")
        if fps != "native":
            fps = _number(where, "fps", fps, minimum=0, strict=True)
        return cls(
            "clips", fps=fps,
            clip_frames=_number(where, "clip_frames", d.get("clip_frames", STEP_FRAMES), minimum=0, strict=True),
            stride_frames=_number(where, "stride_frames", d.get("stride_frames", STEP_FRAMES), minimum=0, strict=True),
            offset_frames=_number(where, "offset_frames", d.get("offset_frames", 0), minimum=0, strict=False),
            tolerance_rows=int(_number(where, "tolerance_rows", d.get("tolerance_rows", 1), minimum=0, strict=False,
                                       integer=True)),
        )

    def to_dict(self) -> Dict[str, Any]:
        if self.kind == "resized":
            return {"kind": "resized", "rows": self.rows, "span": self.span}
        return {"kind": "clips", "fps": self.fps, "clip_frames": _num(self.clip_frames),
                "stride_frames": _num(self.stride_frames), "offset_frames": _num(self.offset_frames),
                "tolerance_rows": self.tolerance_rows}

    def text(self) -> str:
        """One line for messages and ``features inspect``."""
        if self.kind == "resized":
            over = "the duration" if self.span == "duration" else "the steps' frames (corrected duration)"
            return f"{self.rows} rows over {over}"
        rate = "the video's own fps" if self.fps == "native" else f"{_num(self.fps)} fps"
        off = f", first at frame {_num(self.offset_frames)}" if self.offset_frames else ""
        return f"clips of {_num(self.clip_frames)} frames every {_num(self.stride_frames)} frames at {rate}{off}"

    @property
    def native(self) -> bool:
        return self.kind == "clips" and self.fps == "native"

    # ---- rows, seconds and the grid
    def _span_s(self, info: VideoInfo) -> float:
        if self.span == "grid":
            return info.n_steps * STEP_FRAMES * info.duration_s / info.n_frames
        return float(info.duration_s)

    def row_centres_s(self, n_rows: int, info: Optional[VideoInfo]) -> np.ndarray:
        """Centre time (seconds) of rows ``0 .. n_rows - 1`` (``info`` needed unless fps is a number)."""
        i = np.arange(n_rows, dtype=np.float64)
        if self.kind == "resized":
            if info is None:
                raise ConfigError("a resized time axis needs the video's duration (a manifest)")
            return (i + 0.5) * (self._span_s(info) / self.rows)
        frames = self.offset_frames + i * self.stride_frames + self.clip_frames / 2
        if self.fps == "native":
            if info is None:
                raise ConfigError("a time axis at the video's own fps needs its frame count (a manifest)")
            return frames * (info.duration_s / info.n_frames)
        return frames / float(self.fps)

    @functools.lru_cache(maxsize=8192)  # noqa: B019 - axes are few, small and immutable
    def expected_rows(self, info: VideoInfo) -> Tuple[int, int]:
        """``(fewest, most)`` rows accepted for a video (module docstring: rows expected)."""
        if self.kind == "resized":
            return int(self.rows), int(self.rows)
        n = float(info.n_frames) if self.fps == "native" else info.duration_s * float(self.fps)
        full = math.floor((n - self.offset_frames - self.clip_frames) / self.stride_frames + 1e-9) + 1
        padded = math.ceil((n - self.offset_frames) / self.stride_frames - 1e-9)
        lo = max(1, min(full, padded) - self.tolerance_rows)
        return lo, max(lo, padded + self.tolerance_rows)

    def positions(self, n_rows: int, info: VideoInfo) -> np.ndarray:
        """Fractional row index at each step's centre, clamped to ``[0, n_rows - 1]`` (float64)."""
        if self.native:  # in frames: a row centred on a step centre gives an exact index
            rows_c = self.offset_frames + np.arange(n_rows, dtype=np.float64) * self.stride_frames \
                + self.clip_frames / 2
            steps_c = STEP_FRAMES * np.arange(info.n_steps, dtype=np.float64) + STEP_FRAMES / 2
        else:
            rows_c = self.row_centres_s(n_rows, info)
            steps_c = info.step_centres_s()
        return np.interp(steps_c, rows_c, np.arange(n_rows, dtype=np.float64))

    def to_grid(self, rows: np.ndarray, info: VideoInfo, scratch: Optional[np.ndarray] = None) -> np.ndarray:
        """``rows`` ``[T, dim]`` -> ``[n_steps, dim]`` on the manifest grid (linear interpolation).

        Equal, bit for bit, to :func:`interpolate_rows` at :meth:`positions`; computed through
        the cached :func:`grid_plan` of ``(T, info)``.
        """
        return grid_plan(self, rows.shape[0], info).apply(rows, scratch)


def interpolate_rows(rows: np.ndarray, pos: np.ndarray, scratch: Optional[np.ndarray] = None) -> np.ndarray:
    """Rows at fractional indices ``pos`` (``>= 0``): ``rows[lo] + w (rows[lo + 1] - rows[lo])``.

    The general rule: ``lo = floor(pos)`` (clamped to the last row), ``w = pos - lo`` rounded
    to float32, every product and sum in float32. When every index is whole the rows are
    gathered as they are (``rows`` itself when the indices are ``0 .. T - 1``). ``scratch``
    (float32, 1-D) is reused for the blocks of the second gather.
    """
    return GridPlan.from_positions(pos, rows.shape[0]).apply(rows, scratch)


#: Bytes per block of the interpolation: the two blocks in flight (512 KiB) stay in a 1 MiB L2
#: cache, and a 2048-d video of a few minutes takes a few blocks (each block is five NumPy calls).
BLOCK_BYTES = 1 << 18


class GridPlan:
    """How ``T`` rows map onto a video's steps, computed once (:func:`grid_plan`).

    ``kind`` is the cheapest exact way to apply it: ``identity`` (step ``j`` is row ``j``:
    the rows themselves), ``slice`` (rows ``start .. start + n - 1``: a view), ``gather``
    (whole row indices, as the official C3D layout's rows ``2 j``: one gather) or ``interp``
    (``rows[lo] + w (rows[hi] - rows[lo])`` in float32, in blocks that stay in cache). Every
    kind gives the values of the general rule (:func:`interpolate_rows`) bit for bit.
    """

    __slots__ = ("kind", "n_rows", "start", "lo", "hi", "w")

    def __init__(self, kind: str, n_rows: int, start: int, lo: np.ndarray, hi: Optional[np.ndarray],
                 w: Optional[np.ndarray]) -> None:
        self.kind, self.n_rows, self.start, self.lo, self.hi, self.w = kind, n_rows, start, lo, hi, w
        for a in (lo, hi, w):
            if a is not None:
                a.setflags(write=False)

    @classmethod
    def from_positions(cls, pos: np.ndarray, n_rows: int) -> "GridPlan":
        t = int(n_rows)
        lo = np.minimum(pos.astype(np.int64), t - 1)  # pos >= 0: truncation is the floor
        w = (pos - lo).astype(np.float32)
        n = lo.shape[0]
        if not w.any():
            start = int(lo[0]) if n else 0
            if n and np.array_equal(lo, np.arange(start, start + n)):
                return cls("identity" if start == 0 and n == t else "slice", t, start, lo, None, None)
            return cls("gather", t, 0, lo, None, None)
        return cls("interp", t, 0, lo, np.minimum(lo + 1, t - 1), w[:, None])

    def apply(self, rows: np.ndarray, scratch: Optional[np.ndarray] = None) -> np.ndarray:
        """The steps of ``rows`` (``[n_rows, dim]``): a view for identity/slice, else a new array."""
        if rows.shape[0] != self.n_rows:
            raise ValueError(f"a plan for {self.n_rows} rows applied to {rows.shape[0]}")
        if self.kind == "identity":
            return rows
        if self.kind == "slice":
            return rows[self.start:self.start + self.lo.shape[0]]
        if self.kind == "gather":
            return np.take(rows, self.lo, axis=0, mode="clip")  # rows[lo]; the indices are in range
        if rows.dtype != np.float32:  # not a store's validated rows: the general code, step by step
            out = rows[self.lo]
            n, d = out.shape
            diff = np.empty((n, d), np.float32)
            np.take(rows, self.hi, axis=0, out=diff)
            diff -= out
            diff *= self.w
            out += diff
            return out
        n, d = self.lo.shape[0], rows.shape[1]
        out = np.empty((n, d), np.float32)
        block = max(1, min(n, BLOCK_BYTES // max(1, 4 * d)))
        if scratch is None or scratch.size < block * d:
            scratch = np.empty(block * d, np.float32)
        lo, hi, w = self.lo, self.hi, self.w
        for s in range(0, n, block):  # the general rule's four steps on a cache-sized block
            e = min(n, s + block)
            a = out[s:e]
            b = scratch[:(e - s) * d].reshape(e - s, d)
            np.take(rows, lo[s:e], axis=0, out=a, mode="clip")  # the indices are in range: no buffering
            np.take(rows, hi[s:e], axis=0, out=b, mode="clip")
            np.subtract(b, a, out=b)
            np.multiply(b, w[s:e], out=b)
            np.add(a, b, out=a)
        return out


@functools.lru_cache(maxsize=4096)
def grid_plan(axis: TimeAxis, n_rows: int, info: VideoInfo) -> GridPlan:
    """The :class:`GridPlan` of ``n_rows`` rows on ``axis`` for the video ``info`` (cached)."""
    return GridPlan.from_positions(axis.positions(int(n_rows), info), int(n_rows))


def _num(x: Any) -> Any:
    if isinstance(x, float) and x.is_integer():
        return int(x)
    return x


def video_infos(manifest: Any) -> Dict[str, VideoInfo]:
    """``{video: VideoInfo}`` from a manifest's ``timelines`` table (a Manifest, name, folder or table)."""
    import pandas as pd

    if isinstance(manifest, pd.DataFrame):
        df = manifest
    else:
        from ..manifest import Manifest, open_manifest

        m = manifest if isinstance(manifest, Manifest) else open_manifest(manifest)
        if m.task != "temporal":
            return {}
        df = m.table("timelines", None)
    need = ("video", "duration_s", "n_frames", "n_steps")
    if any(c not in df.columns for c in need):
        return {}
    first = df.drop_duplicates("video")
    return {str(v): VideoInfo(float(d), int(f), int(n))
            for v, d, f, n in zip(first["video"], first["duration_s"], first["n_frames"], first["n_steps"])
            if d > 0 and f > 0 and n > 0}
