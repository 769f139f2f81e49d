"""Degraded copies of a part of a video, for measuring ``localize`` (tests and benchmark).

:func:`degrade` cuts reference frames ``[start_frame, end_frame)`` of a video and writes them
again as a user's copy might be: at another frame rate, size, brightness and contrast, JPEG
quality (each frame compressed, then written by the chosen codec: ``mp4v`` or ``MJPG``),
letterboxed or cropped, played faster or slower. Output frame ``k`` shows the source frame on
screen at ``start + k * speed / fps`` (source time), so the copy covers exactly the source
frames ``[start_frame, end_frame)``: the boundaries a refinement should find are those frames.
:data:`KINDS` names one setting per kind of degradation (what ``benchmarks/bench_localize.py
--mode degrade`` and the tests compare the methods on).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from ..errors import ConfigError

__all__ = ["Degradation", "KINDS", "degrade"]

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class Degradation:
    """How a copy differs from its source (module docstring)."""

    fps: Optional[float] = None  # None: the source's
    size: Optional[Tuple[int, int]] = None  # (width, height); None: the source's
    brightness: float = 1.0  # pixel values times this ...
    contrast: float = 1.0  # ... and spread around mid-grey by this
    jpeg_quality: Optional[int] = None  # each frame JPEG-compressed at this quality (1-100)
    codec: str = "mp4v"  # mp4v or MJPG
    letterbox: float = 0.0  # share of the height replaced by black bars (top + bottom)
    crop: float = 0.0  # share of width and height cut away (centred), then resized back
    speed: float = 1.0  # played this many times as fast

    def with_(self, **kw) -> "Degradation":
        return replace(self, **kw)


#: One setting per kind of degradation (a plain re-encode at another frame rate and size is in each).
KINDS: Dict[str, Degradation] = {
    "compression": Degradation(jpeg_quality=8, codec="MJPG"),
    "resolution": Degradation(size=(48, 36)),
    "frame rate": Degradation(fps=12.0),
    "brightness/contrast": Degradation(brightness=1.3, contrast=0.6),
    "letterbox": Degradation(letterbox=0.25),
    "crop": Degradation(crop=0.2),
    "speed 0.7x": Degradation(speed=0.7),
    "speed 1.4x": Degradation(speed=1.4),
}


def _apply(frame: np.ndarray, d: Degradation, size: Tuple[int, int]) -> np.ndarray:
    import cv2

    f = frame
    h0, w0 = f.shape[:2]
    if d.crop > 0:
        dy, dx = int(round(h0 * d.crop / 2)), int(round(w0 * d.crop / 2))
        f = cv2.resize(f[dy:h0 - dy, dx:w0 - dx], (w0, h0), interpolation=cv2.INTER_LINEAR)
    if (f.shape[1], f.shape[0]) != size:
        f = cv2.resize(f, size, interpolation=cv2.INTER_AREA)
    if d.brightness != 1.0 or d.contrast != 1.0:
        x = f.astype(np.float32) * d.brightness
        f = np.clip((x - 128.0) * d.contrast + 128.0, 0, 255).astype(np.uint8)
    if d.letterbox > 0:
        bar = int(round(size[1] * d.letterbox / 2))
        inner = cv2.resize(f, (size[0], size[1] - 2 * bar), interpolation=cv2.INTER_AREA)
        f = np.zeros_like(f)
        f[bar:bar + inner.shape[0]] = inner
    if d.jpeg_quality is not None:
        ok, buf = cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, int(d.jpeg_quality)])
        f = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return f


def degrade(src: PathLike, dst: PathLike, start_frame: int, end_frame: int, d: Degradation = Degradation()) -> Path:
    """Write source frames ``[start_frame, end_frame)`` of ``src`` into ``dst`` degraded by ``d``;
    returns ``dst``. The copy lasts ``(end_frame - start_frame) / (src fps * speed)`` seconds.
    Written atomically (a temporary file of the same extension beside ``dst``, then renamed
    over it): an interrupted call leaves ``dst`` as it was."""
    import contextlib
    import tempfile

    from ..extract.decode import VideoReader
    from ..extract.synth import open_writer
    from ..io import _umask_mode

    if not (0 <= start_frame < end_frame):
        raise ConfigError(f"degrade needs 0 <= start_frame < end_frame; got {start_frame} and {end_frame}")
    if not (d.speed > 0 and math.isfinite(d.speed)):
        raise ConfigError(f"The 'speed' parameter must be a positive number. Got {d.speed!r} instead.")
    frames: List[np.ndarray] = []
    with VideoReader(src) as reader:
        src_fps = reader.fps
        frames = list(reader.frames(start_frame, end_frame))
    if len(frames) < end_frame - start_frame:
        raise ConfigError(f"{src} holds {start_frame + len(frames)} frames; asked for frames up to {end_frame}")
    out_fps = float(d.fps or src_fps)
    n = max(1, int(round((end_frame - start_frame) / src_fps / d.speed * out_fps)))
    h0, w0 = frames[0].shape[:2]
    size = (int(d.size[0]), int(d.size[1])) if d.size else (w0, h0)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=f".tmp{dst.suffix}", dir=dst.parent)
    os.close(fd)
    try:
        os.chmod(tmp, _umask_mode(0o666))
        vw = open_writer(Path(tmp), out_fps, size, d.codec)  # the codec from the same extension
        try:
            for k in range(n):
                j = min(len(frames) - 1, int(math.floor(k * d.speed / out_fps * src_fps + 1e-9)))
                vw.write(_apply(frames[j], d, size))
        finally:
            vw.release()
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return dst
