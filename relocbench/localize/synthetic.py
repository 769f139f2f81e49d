"""Synthetic scene videos for the tests and the benchmark of ``localize``.

:func:`write_scene_video` renders a timeline of *scenes* into a video file with OpenCV's
``VideoWriter``. Scene ``k`` (any int) is drawn from ``(seed, k)`` alone: a smooth textured
background of its own colours, panning slowly, with a few coloured blocks moving at their
own speeds, so that scenes differ in colour, texture and motion, as shots of real footage do.
:func:`recode` cuts ``[start_s, end_s)`` out of a video and writes it again at another frame
rate, size and brightness (two codec generations, like a clip a user saved from a video).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import ConfigError

__all__ = ["write_scene_video", "recode", "scene_frame", "scene_at"]

PathLike = Union[str, os.PathLike]


def _rng(seed: int, scene: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(scene), 0x5CE7E])


class _Scene:
    def __init__(self, seed: int, scene: int, width: int, height: int) -> None:
        import cv2

        rng = _rng(seed, scene)
        pad = 2
        small = rng.random((6, 8, 3)).astype(np.float32)
        base = rng.uniform(0.15, 0.85, 3).astype(np.float32)
        tex = cv2.resize(small, (width + 2 * pad * 8, height + 2 * pad * 6), interpolation=cv2.INTER_CUBIC)
        fine = cv2.resize(rng.random((height // 4 + 1, width // 4 + 1, 3)).astype(np.float32),
                          (width + 2 * pad * 8, height + 2 * pad * 6), interpolation=cv2.INTER_LINEAR)
        img = np.clip(0.55 * base + 0.35 * tex + 0.1 * fine, 0, 1)
        self.bg = (img * 255).astype(np.uint8)
        self.w, self.h = width, height
        self.pan = rng.uniform(-1, 1, 2) * np.array([pad * 8, pad * 6]) / 4.0  # pixels per second
        self.margin = np.array([pad * 8, pad * 6])
        n = int(rng.integers(2, 5))
        self.blocks = []
        for _ in range(n):
            bw, bh = int(rng.integers(width // 10, width // 4)), int(rng.integers(height // 10, height // 4))
            colour = rng.integers(0, 256, 3).astype(np.uint8)
            pos = rng.uniform(0, 1, 2) * np.array([width - bw, height - bh])
            vel = rng.uniform(-0.35, 0.35, 2) * np.array([width, height])  # pixels per second
            self.blocks.append((bw, bh, colour, pos, vel))

    def frame(self, t: float) -> np.ndarray:
        off = self.margin + np.clip(self.pan * t, -self.margin, self.margin)
        x0, y0 = int(round(off[0])), int(round(off[1]))
        img = self.bg[y0:y0 + self.h, x0:x0 + self.w].copy()
        for bw, bh, colour, pos, vel in self.blocks:
            span = np.array([self.w - bw, self.h - bh], dtype=np.float64)
            p = pos + vel * t
            p = np.abs(((p / span) + 1.0) % 2.0 - 1.0) * span  # bounce off the edges
            x, y = int(p[0]), int(p[1])
            img[y:y + bh, x:x + bw] = colour
        return img


def scene_at(timeline: Sequence[Tuple[int, float]], t: float) -> Tuple[int, float]:
    """``(scene, local time)`` of time ``t`` on a timeline of ``(scene, duration_s)``."""
    acc = 0.0
    for scene, dur in timeline:
        if t < acc + dur:
            return int(scene), t - acc
        acc += dur
    scene, dur = timeline[-1]
    return int(scene), t - (acc - dur)


def scene_frame(seed: int, scene: int, t: float, width: int, height: int) -> np.ndarray:
    """One BGR frame of ``scene`` at local time ``t``."""
    return _Scene(seed, scene, width, height).frame(t)


def _writer(path: Path, fps: float, width: int, height: int):
    from ..extract.synth import open_writer

    return open_writer(path, fps, (int(width), int(height)), "mp4v")


def write_scene_video(path: PathLike, timeline: Sequence[Tuple[int, float]], *, fps: float = 25.0,
                      size: Tuple[int, int] = (96, 72), seed: int = 0) -> Path:
    """Render ``timeline`` (``(scene, duration_s)`` pairs) into ``path``; returns ``path``."""
    w, h = int(size[0]), int(size[1])
    if not timeline or any(d <= 0 for _, d in timeline):
        raise ConfigError(f"the timeline must be non-empty with positive durations; got {list(timeline)!r}")
    if w < 16 or h < 16 or fps <= 0:
        raise ConfigError(f"size must be at least 16x16 and fps > 0; got {size!r} at {fps!r} fps")
    total = sum(d for _, d in timeline)
    n = int(round(total * fps))
    scenes = {}
    p = Path(path)
    vw = _writer(p, fps, w, h)
    try:
        for i in range(n):
            scene, local = scene_at(timeline, i / fps)
            if scene not in scenes:
                scenes[scene] = _Scene(seed, scene, w, h)
            vw.write(scenes[scene].frame(local))
    finally:
        vw.release()
    return p


def recode(src: PathLike, dst: PathLike, *, start_s: float, end_s: float, fps: Optional[float] = None,
           size: Optional[Tuple[int, int]] = None, brightness: float = 1.0, speed: float = 1.0) -> Path:
    """Cut ``[start_s, end_s)`` of ``src`` into ``dst`` at ``fps`` and ``size`` (width, height),
    pixel values scaled by ``brightness``, played ``speed`` times as fast: frame ``k`` of the
    output shows the source frame on screen at time ``start_s + k speed / fps``; the output
    lasts ``(end_s - start_s) / speed`` seconds."""
    import cv2

    from ..extract.decode import VideoReader

    if not end_s > start_s:
        raise ConfigError(f"recode needs end_s > start_s; got {start_s} and {end_s}")
    frames: List[np.ndarray] = []
    with VideoReader(src) as reader:
        src_fps = reader.fps
        a = int(math.floor(start_s * src_fps))
        b = int(math.ceil(end_s * src_fps))
        for frame in reader.frames(a, b):
            frames.append(frame)
    if not (speed > 0 and math.isfinite(speed)):
        raise ConfigError(f"The 'speed' parameter must be a positive number. Got {speed!r} instead.")
    out_fps = float(fps or src_fps)
    n = int(round((end_s - start_s) / speed * out_fps))
    h0, w0 = frames[0].shape[:2]
    w, h = (int(size[0]), int(size[1])) if size else (w0, h0)
    p = Path(dst)
    vw = _writer(p, out_fps, w, h)
    try:
        for k in range(n):
            j = min(len(frames) - 1, max(0, int(math.floor((start_s + k * speed / out_fps) * src_fps + 1e-9)) - a))
            f = frames[j]
            if (w, h) != (w0, h0):
                f = cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA)
            if brightness != 1.0:
                f = np.clip(f.astype(np.float32) * brightness, 0, 255).astype(np.uint8)
            vw.write(f)
    finally:
        vw.release()
    return p
