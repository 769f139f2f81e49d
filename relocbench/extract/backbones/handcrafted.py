"""``handcrafted``: colour, appearance (HOG-like) and motion (HOF-like) histograms per step.

Every frame is resized to 160x120 (whatever its size or aspect, so that a re-encoded copy at
another resolution gives the same descriptor). Per step, summed over its frames:

* **colour** -- HSV histogram, 8 hue x 3 saturation x 3 value bins, in each quadrant of a
  2x2 grid (computed at 80x60 after one gain and offset bring the frame's luminance to mean
  128 and standard deviation 48, so that a brighter, darker or flatter copy falls in the same
  bins): 288 values;
* **appearance** -- gradient-orientation histogram (Sobel gradients, 9 unsigned orientation
  bins weighted by gradient magnitude) in each cell of a 4x4 grid: 144 values;
* **motion** -- dense optical flow between consecutive frames (OpenCV's DIS, ``ultrafast``
  preset, or Farneback with ``options={"flow": "farneback"}``) in frame widths per second,
  so that a copy at another frame rate gives the same histogram: in each cell of a 3x3
  grid, a pixel votes for one of 8 directions, or for "static" below 0.03 widths/s (81
  values), plus a global histogram of 8 speed bins (log-spaced, 0.03 to 2 widths/s): 89.

Each block is power-normalised (square root) and L2-normalised, the four blocks are weighted
(colour 1, appearance 1, motion directions 1, speeds 0.5) and the row is L2-normalised:
521 values, deterministic on CPU. The first frame of a video has no flow; its step averages
the flows it has (a step of a single-frame video has a zero motion block).
"""
from __future__ import annotations

from typing import Any, Dict, Iterator

import numpy as np

from ...errors import ConfigError
from .base import Backbone, check_rows, register_backbone

__all__ = ["Handcrafted", "DESCRIPTOR_VERSION"]

#: Bumped whenever the descriptor changes (part of the settings checked on ``--resume``).
DESCRIPTOR_VERSION = 1

_W, _H = 160, 120
_CW, _CH = 80, 60
_HUE, _SAT, _VAL = 8, 3, 3
_ORI = 9
_HOG_GRID = 4
_FLOW_GRID = 3
_DIRS = 8
_STATIC = 0.03  # frame widths per second
_SPEED_EDGES = np.array([0.03, 0.06, 0.125, 0.25, 0.5, 1.0, 2.0], dtype=np.float32)
_WEIGHTS = (1.0, 1.0, 1.0, 0.5)
_LUMA_MEAN, _LUMA_STD = 128.0, 48.0


def _cell_map(h: int, w: int, grid: int) -> np.ndarray:
    ys = np.minimum(np.arange(h) * grid // h, grid - 1)
    xs = np.minimum(np.arange(w) * grid // w, grid - 1)
    return (ys[:, None] * grid + xs[None, :]).astype(np.int64).ravel()


def _norm(v: np.ndarray) -> np.ndarray:
    v = np.sqrt(np.maximum(v, 0.0))
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


class Handcrafted(Backbone):
    name = "handcrafted"

    def __init__(self, flow: str = "dis") -> None:
        if flow not in ("dis", "farneback"):
            raise ConfigError(f"The 'flow' option of the handcrafted backbone must be 'dis' or 'farneback'. "
                              f"Got {flow!r} instead.")
        self.flow = flow
        self.colour_dim = 4 * _HUE * _SAT * _VAL
        self.hog_dim = _HOG_GRID * _HOG_GRID * _ORI
        self.hof_dim = _FLOW_GRID * _FLOW_GRID * (_DIRS + 1)
        self.speed_dim = len(_SPEED_EDGES) + 1
        self.dim = self.colour_dim + self.hog_dim + self.hof_dim + self.speed_dim
        self._hog_cells = _cell_map(_H, _W, _HOG_GRID)
        self._flow_cells = _cell_map(_H, _W, _FLOW_GRID)

    def attrs(self) -> Dict[str, Any]:
        return {"backbone": self.name, "weights": "none", "weights_note": "no weights (handcrafted descriptor)",
                "dim": self.dim, "flow": self.flow, "descriptor_version": DESCRIPTOR_VERSION}

    # ------------------------------------------------------------------ per-frame parts
    def _flow_engine(self):
        import cv2

        if self.flow == "dis":
            dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
            return lambda a, b: dis.calc(a, b, None)
        return lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 2, 9, 2, 5, 1.1, 0)

    def colour(self, small_bgr: np.ndarray) -> np.ndarray:
        import cv2

        c = cv2.resize(small_bgr, (_CW, _CH), interpolation=cv2.INTER_AREA)
        # brightness and contrast normalised on luminance (one gain and offset for the three
        # channels, so hues keep their relations): a brighter or darker copy gives the same bins
        y = cv2.cvtColor(c, cv2.COLOR_BGR2GRAY)
        mean, std = cv2.meanStdDev(y)
        gain = _LUMA_STD / max(float(std[0, 0]), 4.0)
        c = cv2.convertScaleAbs(c, alpha=gain, beta=_LUMA_MEAN - gain * float(mean[0, 0]))
        hsv = cv2.cvtColor(c, cv2.COLOR_BGR2HSV)
        parts = []
        for y0, y1 in ((0, _CH // 2), (_CH // 2, _CH)):
            for x0, x1 in ((0, _CW // 2), (_CW // 2, _CW)):
                h = cv2.calcHist([np.ascontiguousarray(hsv[y0:y1, x0:x1])], [0, 1, 2], None,
                                 [_HUE, _SAT, _VAL], [0, 180, 0, 256, 0, 256])
                parts.append(h.ravel())
        return np.concatenate(parts)

    def hog(self, gray: np.ndarray) -> np.ndarray:
        import cv2

        g = gray.astype(np.float32)
        gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
        mag, ang = cv2.cartToPolar(gx, gy, angleInDegrees=True)
        b = (np.mod(ang.ravel(), 180.0) * (_ORI / 180.0)).astype(np.int64) % _ORI
        return np.bincount(self._hog_cells * _ORI + b, weights=mag.ravel(), minlength=self.hog_dim)

    def hof(self, flow: np.ndarray, fps: float) -> tuple:
        import cv2

        fx = np.ascontiguousarray(flow[..., 0]) * np.float32(fps / _W)
        fy = np.ascontiguousarray(flow[..., 1]) * np.float32(fps / _W)
        mag, ang = cv2.cartToPolar(fx, fy, angleInDegrees=True)
        mag, ang = mag.ravel(), ang.ravel()
        d = ((ang + 180.0 / _DIRS) * (_DIRS / 360.0)).astype(np.int64) % _DIRS
        d = np.where(mag < _STATIC, _DIRS, d)
        hof = np.bincount(self._flow_cells * (_DIRS + 1) + d, minlength=self.hof_dim)
        speed = np.bincount(np.searchsorted(_SPEED_EDGES, mag), minlength=self.speed_dim)
        return hof, speed

    # ------------------------------------------------------------------ rows
    def _row(self, col, hog, hof, speed) -> np.ndarray:
        parts = [w * _norm(p) for w, p in zip(_WEIGHTS, (col, hog, hof, speed))]
        row = np.concatenate(parts)
        n = float(np.linalg.norm(row))
        return (row / n if n > 0 else row).astype(np.float32)

    def rows(self, frames: Iterator[np.ndarray], fps: float, step_frames: int) -> np.ndarray:
        import cv2

        flow_fn = self._flow_engine()
        out = []
        prev = None
        col = np.zeros(self.colour_dim)
        hog = np.zeros(self.hog_dim)
        hof = np.zeros(self.hof_dim)
        speed = np.zeros(self.speed_dim)
        k = 0
        for frame in frames:
            small = cv2.resize(frame, (_W, _H), interpolation=cv2.INTER_AREA)
            gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
            col += self.colour(small)
            hog += self.hog(gray)
            if prev is not None:
                h, s = self.hof(flow_fn(prev, gray), fps)
                hof += h
                speed += s
            prev = gray
            k += 1
            if k == step_frames:
                out.append(self._row(col, hog, hof, speed))
                col[:] = 0
                hog[:] = 0
                hof[:] = 0
                speed[:] = 0
                k = 0
        if k:
            out.append(self._row(col, hog, hof, speed))
        return check_rows(out, self.dim, self.name)


@register_backbone("handcrafted")
def _make_handcrafted(cfg) -> Handcrafted:
    if cfg.weights not in ("auto", "none"):
        raise ConfigError(f"the handcrafted backbone takes no weights; got --weights {cfg.weights!r} "
                          "(use 'auto' or 'none')")
    extra = set(cfg.options) - {"flow"}
    if extra:
        raise ConfigError(f"unknown option(s) {sorted(extra)} for the handcrafted backbone; expected 'flow'")
    return Handcrafted(flow=cfg.options.get("flow", "dis"))
