"""Small synthetic videos written with OpenCV's ``VideoWriter`` (tests and benchmarks).

:func:`write_moving_shapes` renders a seeded scene -- a smooth coloured background and a few
shapes moving and bouncing -- defined in continuous time, so the same seed gives the same
content at any size and frame rate. :func:`reencode` makes a copy of a video the way a user's
copy would differ: another size, codec and quality, frame rate (frames dropped or repeated)
and brightness.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import ConfigError

__all__ = ["write_moving_shapes", "write_pieces", "reencode", "render_frame", "CODECS"]

PathLike = Union[str, os.PathLike]

#: Container extension -> FourCC that OpenCV's FFmpeg writer handles.
CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "XVID", ".mov": "mp4v"}


def open_writer(path: Path, fps: float, size: Tuple[int, int], fourcc: Optional[str]):
    """An OpenCV FFmpeg ``VideoWriter`` for ``path`` (codec from the extension unless ``fourcc``)."""
    import cv2

    code = fourcc or CODECS.get(path.suffix.lower())
    if code is None:
        raise ConfigError(f"no default codec for {path.suffix!r}; pass fourcc (e.g. 'mp4v', 'MJPG')")
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*code), float(fps), size)
    if not w.isOpened():
        raise ConfigError(f"OpenCV cannot write {code} video to {path}")
    return w


def _scene(seed: int):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 6))
    shapes = []
    for _ in range(n):
        shapes.append({
            "kind": int(rng.integers(0, 2)),
            "pos": rng.uniform(0.15, 0.85, 2),
            "vel": rng.uniform(-0.35, 0.35, 2),      # frame widths / heights per second
            "size": float(rng.uniform(0.06, 0.16)),
            "colour": tuple(int(c) for c in rng.integers(0, 256, 3)),
        })
    bg = rng.uniform(0, 255, (3, 4, 3)).astype(np.float32)  # coarse colour field, upsampled
    stripes = float(rng.uniform(3, 12))
    return shapes, bg, stripes


def render_frame(seed_scene, t: float, size: Tuple[int, int]) -> np.ndarray:
    import cv2

    shapes, bg, stripes = seed_scene
    w, h = size
    img = cv2.resize(bg, (w, h), interpolation=cv2.INTER_CUBIC)
    xs = np.linspace(0, 1, w, dtype=np.float32)
    img += (20 * np.sin(2 * np.pi * stripes * (xs + 0.05 * t)))[None, :, None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    for s in shapes:
        p = s["pos"] + s["vel"] * t
        p = np.abs(np.mod(p, 2.0))  # bounce off the borders: triangle wave in [0, 1]
        p = np.where(p > 1.0, 2.0 - p, p)
        cx, cy, r = int(p[0] * w), int(p[1] * h), max(2, int(s["size"] * w))
        if s["kind"] == 0:
            cv2.circle(img, (cx, cy), r, s["colour"], -1, lineType=cv2.LINE_AA)
        else:
            cv2.rectangle(img, (cx - r, cy - r // 2), (cx + r, cy + r // 2), s["colour"], -1)
    return img


def write_moving_shapes(path: PathLike, *, seconds: float = 2.0, fps: float = 25.0, size: Tuple[int, int] = (64, 48),
                        seed: int = 0, fourcc: Optional[str] = None, n_frames: Optional[int] = None) -> Path:
    """Write a seeded moving-shapes video; returns its path. ``n_frames`` overrides ``seconds``."""
    path = Path(path)
    scene = _scene(seed)
    n = int(round(seconds * fps)) if n_frames is None else int(n_frames)
    w = open_writer(path, fps, size, fourcc)
    try:
        for i in range(n):
            w.write(render_frame(scene, i / fps, size))
    finally:
        w.release()
    return path


def write_pieces(path: PathLike, pieces: Sequence[Tuple[int, int, int]], *, fps: float = 25.0,
                 size: Tuple[int, int] = (64, 48), fourcc: Optional[str] = None) -> Path:
    """Write consecutive pieces ``(seed, first frame, n frames)`` of seeded scenes into one video.

    ``[(9, 0, 80), (1, 80, 80)]`` is 80 frames of scene 9 followed by frames 80..159 of scene 1:
    the second piece is the same footage as frames 80..159 of ``write_moving_shapes(seed=1)``.
    """
    path = Path(path)
    w = open_writer(path, fps, size, fourcc)
    try:
        for seed, first, n in pieces:
            scene = _scene(seed)
            for i in range(first, first + n):
                w.write(render_frame(scene, i / fps, size))
    finally:
        w.release()
    return path


def reencode(src: PathLike, dst: PathLike, *, size: Optional[Tuple[int, int]] = None, fps: Optional[float] = None,
             brightness: float = 0.0, contrast: float = 1.0, fourcc: Optional[str] = None,
             quality: Optional[int] = None) -> Path:
    """Copy ``src`` to ``dst`` resized, with another codec, frame rate and brightness.

    ``quality`` (1-100) degrades every frame through a JPEG round trip at that quality before
    encoding (OpenCV's FFmpeg writer has no quality setting). A new frame rate keeps the timeline: output frame ``i`` (time ``i / fps``) is the source
    frame shown at that time.
    """
    import cv2

    from .decode import VideoReader

    dst = Path(dst)
    with VideoReader(src) as r:
        src_fps = r.fps
        out_fps = float(fps or src_fps)
        writer = None
        k = 0
        try:
            for i, frame in enumerate(r.frames()):
                if size is not None:
                    frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
                if quality is not None:
                    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
                    frame = cv2.imdecode(buf, cv2.IMREAD_COLOR)
                if brightness or contrast != 1.0:
                    frame = cv2.convertScaleAbs(frame, alpha=contrast, beta=brightness)
                if writer is None:
                    writer = open_writer(dst, out_fps, (frame.shape[1], frame.shape[0]), fourcc)
                # write the frames whose times fall in [i, i + 1) / src_fps
                while k / out_fps < (i + 1) / src_fps - 1e-9:
                    writer.write(frame)
                    k += 1
        finally:
            if writer is not None:
                writer.release()
    return dst
