"""Frame readers for real videos: JPEG folders (UCF101-24, AVA) and video files (OpenCV).

The spatio-temporal baselines see 8-frame clips at 24 fps (paper Sec. 4.1), resized to a
square (``size``; the paper used 320x320), whatever the source rate:

* :func:`resample_indices` maps the 24 fps timeline onto the source frames (the source frame
  shown at each 24 fps instant: ``floor(k * src_fps / 24)``), :func:`cut_clips` cuts a
  timeline into 8-frame clips (the incomplete tail is dropped and counted),
  :func:`video_clips` does both for a whole video.
* :class:`FrameSource` serves the clip *centred on a manifest keyframe*
  (``clip(video, time)``), which is what the baselines ask for.

Layouts (``FrameSource(root, layout=...)``):

``ucf24``
    ``<root>/rgb-images/<class>/<video>/00001.jpg`` (or ``<root>/<class>/<video>/...``), one
    JPEG per frame at the native 25 fps, as distributed with UCF101-24. Manifest times are
    0-based frame indices: time ``t`` is file ``{t + 1:05d}.jpg``.
``ava``
    ``<root>/<video_id>/<video_id>_000001.jpg``: the frames of the trimmed 15-minute clip
    (seconds 900 to 1800 of the movie) extracted at 30 fps, e.g.
    ``ffmpeg -ss 900 -t 901 -i <video_id>.mkv -r 30 -q:v 1 <video_id>/<video_id>_%06d.jpg``
    (the layout of the common AVA frame releases). Manifest times are seconds of the movie:
    second ``t`` is frame ``(t - 900) * 30`` (0-based; file number + 1). Change ``fps`` and
    ``start_s`` for other extractions.
``videos``
    ``<root>/<video>.mp4`` (or ``.avi``, ``.mkv``, ``.webm``, ``.mov``), decoded with OpenCV at
    the file's own rate; manifest times in ``time_unit`` (``"frame"`` at ``time_fps`` or
    ``"second"``).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import ConfigError, FeatureError

__all__ = [
    "TARGET_FPS",
    "CLIP_LEN",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "list_frame_files",
    "read_image",
    "FrameFolder",
    "VideoFile",
    "resample_indices",
    "cut_clips",
    "video_clips",
    "FrameSource",
]

TARGET_FPS = 24.0
CLIP_LEN = 8
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov")
_NUM = re.compile(r"(\d+)")


def _natural_key(name: str):
    return [int(p) if p.isdigit() else p for p in _NUM.split(name)]


def list_frame_files(folder: Union[str, Path]) -> List[Path]:
    """Image files of a frame folder in natural order (``2.jpg`` before ``10.jpg``)."""
    d = Path(folder)
    if not d.is_dir():
        raise FeatureError("frame folder not found", file=d)
    files = sorted((p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS), key=lambda p: _natural_key(p.name))
    if not files:
        raise FeatureError(f"frame folder holds no image ({', '.join(IMAGE_EXTENSIONS)})", file=d)
    return files


def _check_size(size) -> Optional[Tuple[int, int]]:
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size)):
        raise ConfigError(f"The 'size' parameter must be None, an int >= 1 or (height, width). Got {size!r} instead.")
    return int(size[0]), int(size[1])


def _resize(img: np.ndarray, size: Optional[Tuple[int, int]]) -> np.ndarray:
    if size is None or img.shape[:2] == size:
        return img
    import cv2

    h, w = size
    interp = cv2.INTER_AREA if h <= img.shape[0] and w <= img.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(img, (w, h), interpolation=interp)


def read_image(path: Union[str, Path], size=None) -> np.ndarray:
    """One image as ``(H, W, 3)`` uint8 RGB, resized to ``size`` (int or (height, width))."""
    import cv2

    size = _check_size(size)
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FeatureError("unreadable image (expected a JPEG or PNG file)", file=path)
    return _resize(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), size)


class FrameFolder:
    """One video stored as a folder of frame images, at ``fps`` frames per second."""

    def __init__(self, folder: Union[str, Path], fps: float, *, size=None) -> None:
        if not fps > 0:
            raise ConfigError(f"The 'fps' parameter of FrameFolder must be > 0. Got {fps!r} instead.")
        self.folder = Path(folder)
        self.fps = float(fps)
        self.size = _check_size(size)
        self._files: Optional[List[Path]] = None

    @property
    def files(self) -> List[Path]:
        if self._files is None:
            self._files = list_frame_files(self.folder)
        return self._files

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise FeatureError(f"frame {index} is outside the video (0..{len(self) - 1})", file=self.folder)
        return read_image(self.files[index], self.size)


class VideoFile:
    """One video file decoded with OpenCV (all frames are decoded once, on first access)."""

    def __init__(self, path: Union[str, Path], *, size=None, fps: Optional[float] = None) -> None:
        self.path = Path(path)
        self.size = _check_size(size)
        self._fps = fps
        self._frames: Optional[List[np.ndarray]] = None

    def _decode(self) -> None:
        import cv2

        from ..extract.decode import quiet_opencv, require_video

        require_video(self.path, FeatureError)  # missing, a FIFO, a device, ...: refused before opening
        with quiet_opencv():
            cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise FeatureError("OpenCV cannot open this video file", file=self.path)
        try:
            fps = cap.get(cv2.CAP_PROP_FPS)
            frames = []
            while True:
                ok, img = cap.read()
                if not ok:
                    break
                frames.append(_resize(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), self.size))
        finally:
            cap.release()
        if not frames:
            raise FeatureError("the video file holds no decodable frame", file=self.path)
        if self._fps is None:
            if not fps or not np.isfinite(fps) or fps <= 0:
                raise FeatureError("the video file does not state its frame rate; pass fps=", file=self.path)
            self._fps = float(fps)
        self._frames = frames

    @property
    def fps(self) -> float:
        if self._fps is None:
            self._decode()
        return float(self._fps)

    def __len__(self) -> int:
        if self._frames is None:
            self._decode()
        return len(self._frames)

    def read(self, index: int) -> np.ndarray:
        if self._frames is None:
            self._decode()
        if not 0 <= index < len(self._frames):
            raise FeatureError(f"frame {index} is outside the video (0..{len(self._frames) - 1})", file=self.path)
        return self._frames[index]


def resample_indices(n_frames: int, src_fps: float, dst_fps: float = TARGET_FPS) -> np.ndarray:
    """Source frame shown at each instant ``k / dst_fps`` of a video of ``n_frames`` frames at
    ``src_fps``: ``floor(k * src_fps / dst_fps)``, for every ``k`` with ``k / dst_fps`` inside
    the video.

    >>> resample_indices(5, 30.0, 24.0).tolist()
    [0, 1, 2, 3]
    """
    if not src_fps > 0 or not dst_fps > 0:
        raise ConfigError(f"frame rates must be > 0. Got src_fps={src_fps!r}, dst_fps={dst_fps!r} instead.")
    if n_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    n_out = int(np.floor(n_frames / src_fps * dst_fps - 1e-9)) + 1
    idx = np.floor(np.arange(n_out) * (src_fps / dst_fps) + 1e-9).astype(np.int64)
    return idx[idx < n_frames]


def cut_clips(indices: Sequence[int], clip_len: int = CLIP_LEN) -> Tuple[np.ndarray, int]:
    """``(n_clips, clip_len)`` consecutive clips of a timeline and the number of trailing
    frames dropped (an incomplete last clip)."""
    if isinstance(clip_len, bool) or not isinstance(clip_len, int) or clip_len < 1:
        raise ConfigError(f"The 'clip_len' parameter must be an int >= 1. Got {clip_len!r} instead.")
    idx = np.asarray(indices, dtype=np.int64)
    n = len(idx) // clip_len
    return idx[: n * clip_len].reshape(n, clip_len), int(len(idx) - n * clip_len)


def video_clips(video, *, fps: float = TARGET_FPS, clip_len: int = CLIP_LEN) -> Tuple[np.ndarray, int]:
    """A whole video (:class:`FrameFolder` or :class:`VideoFile`) resampled to ``fps`` and cut
    into clips: ``((n_clips, clip_len, H, W, 3) uint8, frames dropped at the end)``."""
    clips, dropped = cut_clips(resample_indices(len(video), video.fps, fps), clip_len)
    cache: Dict[int, np.ndarray] = {}
    out = [[cache.setdefault(int(i), video.read(int(i))) for i in row] for row in clips]
    if not out:
        return np.zeros((0, clip_len, 0, 0, 3), np.uint8), dropped
    return np.stack([np.stack(c) for c in out]), dropped


class FrameSource:
    """Clips centred on manifest keyframes, for every video of a dataset.

    ``clip(video, time, size=None)`` returns the ``(8, H, W, 3)`` uint8 RGB clip at 24 fps whose
    centre is the keyframe ``time`` (frames ``time - 4/24 s .. time + 3/24 s``; instants
    outside the video repeat its first or last frame), resized to ``size`` (int or (height,
    width); default: the source's ``size``, or the native size). Decoded frames are cached
    (LRU, ``cache_frames`` frames).
    """

    LAYOUTS = ("ucf24", "ava", "videos")

    def __init__(self, root: Union[str, Path], *, layout: str, size=None, fps: Optional[float] = None,
                 time_unit: Optional[str] = None, time_fps: Optional[float] = None, start_s: Optional[float] = None,
                 cache_frames: int = 4096) -> None:
        if layout not in self.LAYOUTS:
            raise ConfigError(f"The 'layout' parameter of FrameSource must be one of {list(self.LAYOUTS)}. "
                              f"Got {layout!r} instead.")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FeatureError(f"frames folder not found (expected the {layout} layout; see relocbench.video.frames)",
                               file=self.root)
        self.layout = layout
        self.size = _check_size(size)
        defaults = {"ucf24": (25.0, "frame", 25.0, 0.0), "ava": (30.0, "second", None, 900.0),
                    "videos": (None, "second", None, 0.0)}[layout]
        self.fps = fps if fps is not None else defaults[0]
        self.time_unit = time_unit or defaults[1]
        self.time_fps = time_fps if time_fps is not None else defaults[2]
        self.start_s = float(start_s if start_s is not None else defaults[3])
        if self.time_unit not in ("frame", "second"):
            raise ConfigError(f"The 'time_unit' parameter must be 'frame' or 'second'. Got {self.time_unit!r} instead.")
        if self.time_unit == "frame" and not (self.time_fps and self.time_fps > 0):
            raise ConfigError("time_unit='frame' needs time_fps, the frame rate of the manifest's frame indices")
        if layout == "ucf24" and (self.root / "rgb-images").is_dir():
            self.root = self.root / "rgb-images"
        self._videos: Dict[str, object] = {}
        self._cache: "OrderedDict[tuple, np.ndarray]" = OrderedDict()
        self.cache_frames = int(cache_frames)

    def describe(self) -> dict:
        return {"source": "frames", "layout": self.layout, "root": str(self.root), "size": list(self.size or ()),
                "fps": self.fps, "time_unit": self.time_unit, "start_s": self.start_s}

    def _path(self, video: str) -> Optional[Path]:
        if self.layout == "videos":
            for ext in VIDEO_EXTENSIONS:
                p = self.root / f"{video}{ext}"
                if (p.exists() or p.is_symlink()) and not p.is_dir():  # a FIFO is found, then refused by name
                    return p
            return None
        p = self.root / video
        return p if p.is_dir() else None

    def __contains__(self, video: str) -> bool:
        return self._path(video) is not None

    def video(self, video: str):
        v = self._videos.get(video)
        if v is None:
            p = self._path(video)
            if p is None:
                want = f"{video}.mp4 (or .avi, .mkv, ...)" if self.layout == "videos" else f"{video}/"
                raise FeatureError(f"no frames for video {video!r}: expected {self.root / want}")
            v = VideoFile(p, size=self.size, fps=self.fps) if self.layout == "videos" else FrameFolder(
                p, self.fps, size=self.size)
            self._videos[video] = v
        return v

    def seconds(self, time: float) -> float:
        """A manifest time in seconds from the start of the frames."""
        t = float(time) / self.time_fps if self.time_unit == "frame" else float(time)
        return t - self.start_s

    def _frame(self, video: str, index: int, size=None) -> np.ndarray:
        size = _check_size(size)
        key = (video, index, size)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        img = _resize(self.video(video).read(index), size)
        self._cache[key] = img
        if len(self._cache) > self.cache_frames:
            self._cache.popitem(last=False)
        return img

    def frame_indices(self, video: str, time: float, clip_len: int = CLIP_LEN) -> np.ndarray:
        v = self.video(video)
        s = self.seconds(time)
        taus = s + (np.arange(clip_len) - clip_len // 2) / TARGET_FPS
        idx = np.floor(taus * v.fps + 1e-6).astype(np.int64)
        return np.clip(idx, 0, len(v) - 1)

    def clip(self, video: str, time: float, size=None) -> np.ndarray:
        return np.stack([self._frame(video, int(i), size) for i in self.frame_indices(video, time)])

    def frame(self, video: str, time: float, size=None) -> np.ndarray:
        """The keyframe itself (the centre frame of its clip)."""
        return self._frame(video, int(self.frame_indices(video, time)[CLIP_LEN // 2]), size)

    def duration_s(self, video: str) -> float:
        v = self.video(video)
        return len(v) / v.fps
