"""Streaming, frame-accurate video decoding with OpenCV's FFmpeg backend.

:class:`VideoReader` decodes a file frame by frame, in order, and never holds more than the
current frame: a one-hour video costs the memory of one frame. Frames are counted as they
are decoded (the container's frame count is only an estimate, often wrong for variable
frame rate files), so frame ``i`` is exactly the ``i``-th decoded frame and a start time
is reached by decoding (``grab``, no colour conversion) rather than by an approximate seek.

What the decoder notices is kept in :attr:`VideoReader.warnings` (each ``category: details``):

* variable frame rate (frame intervals differing from ``1 / fps`` by more than a quarter
  of a frame in more than 1% of the frames): the rows still follow decoded frames, which
  is the grid of the manifests, but their times are then approximate;
* rotation metadata (phone videos): FFmpeg applies it, frames come out upright;
* a decoded frame count that differs from the container's.

Errors (:class:`relocbench.errors.InputError`, naming the file): a path that is not a
regular file (missing, a folder, a FIFO, a socket, a device such as ``/dev/null``: refused
by :func:`require_video` before anything opens it, since opening a FIFO blocks until a
writer appears), a file that cannot be opened, one with no decodable frame, and a
truncated one (far fewer frames decoded than the container declares).

OpenCV's own log line for a file it cannot open (``[ WARN:0@...] global cap.cpp:...``) and
FFmpeg's lines about a damaged stream say nothing the one-line error does not: both are
silenced while a file is opened, unless the user sets ``OPENCV_LOG_LEVEL`` /
``OPENCV_FFMPEG_LOGLEVEL``.
"""
from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
from pathlib import Path
from typing import Iterator, List, Optional, Type, Union

import numpy as np

from ..errors import InputError, RelocbenchError
from ..io import require_file

__all__ = ["VideoReader", "frame_range", "prefetch", "require_video", "quiet_opencv", "VIDEO_EXTENSIONS"]

PathLike = Union[str, os.PathLike]

#: Extensions found when a folder is given (case-insensitive).
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".ts")

#: A video is truncated when fewer than this fraction of the declared frames decode.
TRUNCATED_FRACTION = 0.9


def _cv2():
    # FFmpeg's own lines on a damaged stream ("[mpeg4 @ 0x...] ac-tex damaged") say nothing the
    # reader's one-line error and the run's report do not: quiet unless the user sets a level
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    return cv2


_LOG_LOCK = threading.Lock()
_log_state = {"depth": 0, "saved": None}


@contextlib.contextmanager
def quiet_opencv():
    """OpenCV's log at errors only while the block runs (nested and thread-safe: the level in
    force before the outermost block comes back after it). Nothing changes when the user set
    ``OPENCV_LOG_LEVEL``."""
    cv2 = _cv2()
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    if "OPENCV_LOG_LEVEL" in os.environ or log is None or not hasattr(log, "setLogLevel"):
        yield
        return
    with _LOG_LOCK:
        if _log_state["depth"] == 0:
            _log_state["saved"] = log.getLogLevel()
            log.setLogLevel(min(_log_state["saved"], log.LOG_LEVEL_ERROR))
        _log_state["depth"] += 1
    try:
        yield
    finally:
        with _LOG_LOCK:
            _log_state["depth"] -= 1
            if _log_state["depth"] == 0:
                log.setLogLevel(_log_state["saved"])


def require_video(path: PathLike, error: Type[RelocbenchError] = InputError) -> Path:
    """Check, without opening it, that ``path`` is a readable, non-empty regular file.

    The one check every video goes through before it is hashed or decoded (extraction,
    ``localize``): a FIFO would block the reader forever, a socket, a device (``/dev/null``)
    or a folder cannot be a video. Raises :class:`InputError` naming the file and what was
    found (``video file not found``, ``expected a regular file (video file), found a FIFO
    (named pipe)``, ...).
    """
    p = require_file(path, "video file", error)
    try:
        size = os.stat(p).st_size
    except OSError as exc:  # removed between the two calls
        raise error(f"cannot read the video file ({exc.strerror})", file=p) from None
    if size == 0:
        raise error("unreadable video: the file is empty (0 bytes)", file=p)
    return p


def frame_range(fps: float, start_s: Optional[float], end_s: Optional[float]) -> tuple:
    """Frames ``[start_frame, end_frame)`` whose start times ``i / fps`` lie in ``[start_s, end_s)``."""
    start = 0 if start_s is None else int(math.ceil(start_s * fps - 1e-6))
    end = None if end_s is None else int(math.ceil(end_s * fps - 1e-6))
    return max(0, start), end


class VideoReader:
    """Decode ``path`` frame by frame (BGR ``uint8`` arrays ``[H, W, 3]``).

    >>> with VideoReader("clip.mp4") as r:          # doctest: +SKIP
    ...     for frame in r.frames(start_frame=25):   # frames 25, 26, ... in decode order
    ...         pass
    ...     r.n_decoded, r.fps, r.warnings
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self._cap = None
        self.fps = float("nan")
        self.declared_frames = 0
        self.width = self.height = 0
        self.rotation = 0
        self.n_decoded = 0
        self.warnings: List[str] = []
        self._reached_end = False

    # ------------------------------------------------------------------ opening
    def open(self) -> "VideoReader":
        cv2 = _cv2()
        require_video(self.path)
        with quiet_opencv():
            cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise InputError(
                "unreadable video: FFmpeg (through OpenCV) cannot open it; expected a video file "
                "(mp4, mkv, webm, avi, mov, ...)",
                file=self.path,
            )
        self._cap = cap
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not (math.isfinite(fps) and fps > 0):
            self.close()
            raise InputError(f"unreadable video: the stream declares no frame rate (fps {fps!r})", file=self.path)
        self.fps = fps
        self.declared_frames = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        self.width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        self.height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        rot = getattr(cv2, "CAP_PROP_ORIENTATION_META", None)
        self.rotation = int(cap.get(rot) or 0) % 360 if rot is not None else 0
        if self.rotation:
            self.warnings.append(
                f"rotation metadata: rotated by {self.rotation} degrees in the container; frames decoded upright"
            )
        return self

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> "VideoReader":
        return self.open() if self._cap is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ decoding
    def frames(self, start_frame: int = 0, end_frame: Optional[int] = None) -> Iterator[np.ndarray]:
        """Frames ``start_frame .. end_frame - 1`` (to the end when ``end_frame`` is None).

        Raises :class:`InputError` when the video holds no frame, when ``start_frame`` lies past
        its end, and (reading to the end) when it is truncated.
        """
        if self._cap is None:
            self.open()
        cv2 = _cv2()
        cap = self._cap
        period_ms = 1000.0 / self.fps
        prev_ms = None
        n_intervals = n_irregular = 0
        lo_ms, hi_ms = math.inf, 0.0
        i = 0
        while end_frame is None or i < end_frame:
            if i < start_frame:
                ok = cap.grab()
                frame = None
            else:
                ok, frame = cap.read()
                ok = ok and frame is not None
            if not ok:
                self._reached_end = True
                break
            ts = cap.get(cv2.CAP_PROP_POS_MSEC)
            if prev_ms is not None and math.isfinite(ts):
                d = ts - prev_ms
                n_intervals += 1
                lo_ms, hi_ms = min(lo_ms, d), max(hi_ms, d)
                if abs(d - period_ms) > 0.25 * period_ms:
                    n_irregular += 1
            prev_ms = ts
            i += 1
            self.n_decoded = i
            if frame is not None:
                yield frame
        self._finish(start_frame, end_frame, n_intervals, n_irregular, lo_ms, hi_ms)

    def _finish(self, start_frame, end_frame, n_intervals, n_irregular, lo_ms, hi_ms) -> None:
        n = self.n_decoded
        if n == 0:
            raise InputError(
                "zero-frame video: no frame could be decoded"
                + (f" (the container declares {self.declared_frames})" if self.declared_frames else ""),
                file=self.path,
            )
        if n <= start_frame:
            raise InputError(
                f"the requested start (frame {start_frame}) lies past the end of the video ({n} frames decoded)",
                file=self.path,
            )
        if n_intervals and n_irregular > 0.01 * n_intervals:
            self.warnings.append(
                f"variable frame rate: {n_irregular} of {n_intervals} frame intervals differ from 1/fps "
                f"({1000.0 / self.fps:.1f} ms) by over 25% (range {lo_ms:.1f}-{hi_ms:.1f} ms); rows follow "
                "decoded frames"
            )
        if self._reached_end and self.declared_frames:
            if n < TRUNCATED_FRACTION * self.declared_frames:
                raise InputError(
                    f"truncated video: the container declares {self.declared_frames} frames, "
                    f"only {n} could be decoded",
                    file=self.path,
                )
            if n != self.declared_frames:
                self.warnings.append(
                    f"frame count differs from the container's: decoded {n} frames, the container declares "
                    f"{self.declared_frames} (decoded count used)"
                )


def prefetch(iterator: Iterator, maxsize: int = 32) -> Iterator:
    """Run ``iterator`` in a background thread, ``maxsize`` items ahead (decoding in parallel).

    Exceptions raised by the iterator are re-raised in the consumer; closing the consumer
    stops the thread.
    """
    q: "queue.Queue" = queue.Queue(maxsize=maxsize)
    done = object()
    stop = threading.Event()

    def run() -> None:
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("done", done))
        except BaseException as exc:  # handed to the consumer, re-raised there
            q.put(("error", exc))

    t = threading.Thread(target=run, daemon=True, name="relocbench-decode")
    t.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass
        t.join()
