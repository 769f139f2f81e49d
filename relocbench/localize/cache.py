"""A feature cache keyed by the video's content and the extraction settings.

A second query against the same long reference should not decode it again. Features of a
video (or of a range of it) are stored under ``$RELOCBENCH_CACHE/features/`` (default: the
user cache folder, ``$XDG_CACHE_HOME/relocbench`` or ``~/.cache/relocbench`` on Linux,
``~/Library/Caches/relocbench`` on macOS, ``%LOCALAPPDATA%\\relocbench\\Cache`` on Windows),
one ``.npz`` file per entry, named by the SHA-256 of:

* the video file's SHA-256 (its content: a renamed or copied file hits, an edited one misses);
* the settings that shape the rows: backbone, weights (a weights or PCA file by its path,
  size and modification time), step, PCA, backbone options, the decoded range;
* the cache format and the relocbench version (a new release recomputes).

Entries are written atomically, so an interrupted run leaves none half-written; an entry
that cannot be read is an error naming it (delete it, or use ``--no-cache``).
"""
from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np

from ..errors import FeatureError
from ..io import atomic_write_bytes, sha256_bytes

__all__ = ["CACHE_ENV", "default_cache_dir", "FeatureCache", "settings_key"]

CACHE_ENV = "RELOCBENCH_CACHE"
CACHE_FORMAT = 1
PathLike = Union[str, os.PathLike]


def default_cache_dir() -> Path:
    """``$RELOCBENCH_CACHE``, else the platform's user cache folder + ``relocbench``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "relocbench"
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or str(home / "AppData" / "Local")
        return Path(base) / "relocbench" / "Cache"
    base = os.environ.get("XDG_CACHE_HOME") or str(home / ".cache")
    return Path(base) / "relocbench"


def _file_token(value: Any) -> Any:
    """A weights/PCA setting as it enters the key: a file by path, size and mtime."""
    if isinstance(value, (str, os.PathLike)):
        p = Path(value)
        if p.is_file():
            st = p.stat()
            return {"file": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        return str(value)
    if value is None or isinstance(value, (int, float, bool)):
        return value
    digest = getattr(value, "digest", None)  # a fitted PCA object
    if callable(digest):
        return {"object": type(value).__name__, "digest": digest()}
    return {"object": type(value).__name__, "repr": repr(value)}


def settings_key(video_sha256: str, settings: Dict[str, Any], start_s: Optional[float],
                 end_s: Optional[float]) -> str:
    """The cache key (hex SHA-256) of a video's content, extraction settings and range."""
    from .. import __version__

    doc = {
        "format": CACHE_FORMAT, "relocbench": __version__, "video_sha256": video_sha256,
        "backbone": settings.get("backbone"), "weights": _file_token(settings.get("weights")),
        "step_frames": settings.get("step_frames"), "pca": _file_token(settings.get("pca")),
        "options": settings.get("options") or {}, "start_s": start_s, "end_s": end_s,
    }
    return sha256_bytes(json.dumps(doc, sort_keys=True, default=str).encode("utf-8"))


class FeatureCache:
    """Read and write cached :class:`relocbench.extract.VideoFeatures` (module docstring)."""

    def __init__(self, root: Optional[PathLike] = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        return self.root / "features" / key[:2] / f"{key}.npz"

    def get(self, key: str, source: PathLike):
        """The cached features of ``key`` (``source`` as the video's path), or ``None``."""
        p = self.path(key)
        if not p.is_file():
            self.misses += 1
            return None
        from ..extract import VideoFeatures

        try:
            with np.load(p, allow_pickle=False) as z:
                features = np.array(z["features"], dtype=np.float32)
                meta = json.loads(str(z["meta"]))
        except (OSError, ValueError, KeyError) as exc:
            raise FeatureError(f"unreadable feature cache entry ({exc}); delete it or pass --no-cache",
                               file=p) from None
        self.hits += 1
        return VideoFeatures(video=meta["video"], features=features, fps=float(meta["fps"]),
                             n_frames=int(meta["n_frames"]), sha256=meta["sha256"], source=str(source),
                             attrs=meta["attrs"], start_frame=int(meta["start_frame"]),
                             warnings=tuple(meta["warnings"]))

    def put(self, key: str, vf) -> Path:
        """Store ``vf`` under ``key`` (atomically); returns the entry's path."""
        meta = {"video": vf.video, "fps": float(vf.fps), "n_frames": int(vf.n_frames), "sha256": vf.sha256,
                "attrs": vf.attrs, "start_frame": int(getattr(vf, "start_frame", 0)),
                "warnings": list(getattr(vf, "warnings", ()))}
        buf = io.BytesIO()
        np.savez(buf, features=np.ascontiguousarray(vf.features, dtype=np.float32),
                 meta=np.array(json.dumps(meta, sort_keys=True, default=str)))
        return atomic_write_bytes(self.path(key), buf.getvalue())
