"""A feature cache keyed by the video's content and the extraction settings.

A second query against the same long reference should not decode it again. Features of a
video (or of a range of it) are stored under ``$RELOCBENCH_CACHE/features/`` (default: the
user cache folder, ``$XDG_CACHE_HOME/relocbench`` or ``~/.cache/relocbench`` on Linux,
``~/Library/Caches/relocbench`` on macOS, ``%LOCALAPPDATA%\\relocbench\\Cache`` on Windows),
one ``.npz`` file per entry, named by the SHA-256 of (:func:`settings_doc`):

* the video file's SHA-256 (its content: a renamed or copied file hits, an edited one misses);
* the settings that shape the rows: backbone, weights (a weights or PCA file by its path,
  size and modification time), step, PCA, backbone options, the black bars cropped or not
  (:mod:`relocbench.localize.bars`), the decoded range;
* the cache format and the relocbench version (a new release recomputes).

Entries are written atomically, so an interrupted run leaves none half-written. An entry
is never trusted: before use it is checked against what it claims and against what it is
looked up for (:meth:`FeatureCache.get`):

* readable: a ``.npz`` (zip) holding ``features`` and ``meta`` (stored, not compressed, each
  member no larger than the file, checksums intact; arrays read from their bytes, never
  unpickled, sizes checked before anything is allocated);
* its ``meta`` names the source video's SHA-256 (the video it is looked up for), the cache
  key it was written under and the settings behind that key (equal to the current ones,
  field by field), the backbone and step of the extraction;
* shape: ``ceil(n_frames / step_frames)`` rows, where ``n_frames``, ``start_frame`` and
  ``fps`` agree with the video's container (opened, not decoded) and the decoded range;
  width equal to the backbone's (or the PCA's) output width; dtype float32; every value
  finite; the rows' own SHA-256 equal to the one recorded.

A bad entry is never used: it is reported on stderr in one line (naming the entry and what
was wrong), counted (``bad``), recomputed and replaced atomically.
"""
from __future__ import annotations

import io
import json
import math
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

import numpy as np

from ..io import atomic_write_bytes, sha256_bytes

__all__ = ["CACHE_ENV", "CACHE_FORMAT", "default_cache_dir", "FeatureCache", "EntryCheck", "BadEntry",
           "settings_doc", "settings_key"]

CACHE_ENV = "RELOCBENCH_CACHE"
#: Format of an entry (part of the key: entries of another format are never looked up).
CACHE_FORMAT = 2
PathLike = Union[str, os.PathLike]
#: The decoder's tolerance for a frame count differing from the container's (it refuses a
#: video decoding fewer than this fraction of the declared frames as truncated).
FRAME_COUNT_FRACTION = 0.9
_META_FIELDS = {"format": int, "key": str, "settings": dict, "video": str, "fps": (int, float), "n_frames": int,
                "sha256": str, "attrs": dict, "start_frame": int, "warnings": list, "features_sha256": str}


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


def settings_doc(video_sha256: str, settings: Dict[str, Any], start_s: Optional[float],
                 end_s: Optional[float]) -> Dict[str, Any]:
    """What the cache key covers, as plain JSON values (the entry records it)."""
    from .. import __version__

    doc = {
        "format": CACHE_FORMAT, "relocbench": __version__, "video_sha256": video_sha256,
        "backbone": settings.get("backbone"), "weights": _file_token(settings.get("weights")),
        "step_frames": settings.get("step_frames"), "pca": _file_token(settings.get("pca")),
        "options": settings.get("options") or {}, "start_s": start_s, "end_s": end_s,
    }
    if settings.get("bars"):  # frames cropped before the backbone (relocbench.localize.bars)
        doc["bars"] = settings["bars"]
    return json.loads(json.dumps(doc, sort_keys=True, default=str))


def _doc_key(doc: Dict[str, Any]) -> str:
    return sha256_bytes(json.dumps(doc, sort_keys=True, default=str).encode("utf-8"))


def settings_key(video_sha256: str, settings: Dict[str, Any], start_s: Optional[float],
                 end_s: Optional[float]) -> str:
    """The cache key (hex SHA-256) of a video's content, extraction settings and range."""
    return _doc_key(settings_doc(video_sha256, settings, start_s, end_s))


@dataclass(frozen=True)
class EntryCheck:
    """What an entry looked up for one video must hold (see :meth:`FeatureCache.get`).

    ``width`` is called only once an entry passed the checks that need no backbone (it may
    build one to learn its output width).
    """

    video_sha256: str
    settings: Dict[str, Any]
    start_s: Optional[float]
    end_s: Optional[float]
    width: Callable[[], int]

    @property
    def doc(self) -> Dict[str, Any]:
        return settings_doc(self.video_sha256, self.settings, self.start_s, self.end_s)

    @property
    def key(self) -> str:
        return _doc_key(self.doc)


class BadEntry(Exception):
    """An entry that must not be used (the reason is the message); never leaves this module."""


def _stderr_warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- reading an entry
def _npy(data: bytes, name: str) -> np.ndarray:
    """The array of a ``.npy`` member, read from its bytes without unpickling, its size
    checked against its header before anything is allocated."""
    fmt = np.lib.format
    bio = io.BytesIO(data)
    try:
        version = fmt.read_magic(bio)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(bio)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(bio)
        else:
            raise BadEntry(f"{name!r} is a .npy of format {version}, expected 1.0 or 2.0")
    except BadEntry:
        raise
    except Exception as exc:  # numpy raises ValueError/EOFError/SyntaxError on a damaged header
        raise BadEntry(f"{name!r} has a damaged .npy header ({type(exc).__name__}: {_first(exc)})") from None
    if dtype.hasobject:
        raise BadEntry(f"{name!r} holds Python objects ({dtype}), expected numbers or text")
    count = math.prod(shape)
    offset = bio.tell()
    if len(data) - offset != count * dtype.itemsize:
        raise BadEntry(f"{name!r} is truncated or padded: its header declares shape {tuple(shape)} of {dtype} "
                       f"({count * dtype.itemsize} bytes), the member holds {len(data) - offset}")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return arr.reshape(shape, order="F" if fortran else "C")


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


def _read_entry(p: Path):
    """``(features, meta)`` of an entry file; :class:`BadEntry` for anything not as written."""
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise BadEntry(f"cannot be read ({exc.strerror})") from None
    if size == 0:
        raise BadEntry("the file is empty (0 bytes)")
    members: Dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(p) as zf:
            infos = {i.filename: i for i in zf.infolist()}
            for key in ("features", "meta"):
                info = infos.get(f"{key}.npy")
                if info is None:
                    raise BadEntry(f"missing key {key!r} (holds {sorted(k[:-4] for k in infos) or 'nothing'})")
                if info.compress_type != zipfile.ZIP_STORED or info.file_size > size:
                    raise BadEntry(f"{key!r} is compressed or larger than the file ({info.file_size} bytes): "
                                   "not an entry this cache wrote")
                members[key] = _npy(zf.read(info), key)  # zipfile checks the member's CRC-32
    except BadEntry:
        raise
    except Exception as exc:  # a cache entry is disposable: any failure to read it means recompute
        raise BadEntry(f"not a readable .npz ({type(exc).__name__}: {_first(exc)})") from None
    raw = members["meta"]
    if raw.shape != () or raw.dtype.kind != "U":
        raise BadEntry(f"'meta' must be one JSON text, found shape {raw.shape} of {raw.dtype}")
    try:
        meta = json.loads(str(raw[()]))
    except ValueError as exc:
        raise BadEntry(f"'meta' is not JSON ({_first(exc)})") from None
    if not isinstance(meta, dict):
        raise BadEntry(f"'meta' must be a JSON object, found {type(meta).__name__}")
    for k, typ in _META_FIELDS.items():
        if k not in meta:
            raise BadEntry(f"'meta' lacks {k!r}")
        v = meta[k]
        if isinstance(v, bool) or not isinstance(v, typ):
            raise BadEntry(f"'meta' field {k!r} has the wrong type ({type(v).__name__})")
    return members["features"], meta


def _short(digest: str) -> str:
    return f"{digest[:12]}..."


def verify_entry(features: np.ndarray, meta: Dict[str, Any], key: str, check: EntryCheck, source: PathLike) -> None:
    """Raise :class:`BadEntry` unless the entry is what ``check`` expects for ``source``."""
    from ..extract.decode import VideoReader, frame_range

    if meta["format"] != CACHE_FORMAT:
        raise BadEntry(f"format {meta['format']}, expected {CACHE_FORMAT}")
    if meta["sha256"] != check.video_sha256:
        raise BadEntry(f"it holds the features of another video (sha256 {_short(meta['sha256'])}; "
                       f"{source} has {_short(check.video_sha256)})")
    want = check.doc
    have = meta["settings"]
    for k in sorted(set(want) | set(have)):
        if have.get(k) != want.get(k):
            raise BadEntry(f"written for other settings: {k} {have.get(k)!r}, expected {want.get(k)!r}")
    if meta["key"] != key:
        raise BadEntry(f"written under another key ({_short(meta['key'])})")
    attrs = meta["attrs"]
    step = int(check.settings.get("step_frames") or 0)
    if attrs.get("backbone") != check.settings.get("backbone") or attrs.get("step_frames") != step:
        raise BadEntry(f"its rows come from backbone {attrs.get('backbone')!r} with step_frames "
                       f"{attrs.get('step_frames')!r}, expected {check.settings.get('backbone')!r} with {step}")
    if features.dtype != np.float32 or features.ndim != 2:
        raise BadEntry(f"features of shape {features.shape} and dtype {features.dtype}, expected a 2-D float32 array")
    n_frames, start_frame, fps = meta["n_frames"], meta["start_frame"], float(meta["fps"])
    if n_frames < 1 or start_frame < 0 or step < 1:
        raise BadEntry(f"n_frames {n_frames} and start_frame {start_frame}: expected n_frames >= 1, start_frame >= 0")
    want_rows = -(-n_frames // step)
    if features.shape[0] != want_rows:
        raise BadEntry(f"{features.shape[0]} rows, expected ceil({n_frames} frames / {step}) = {want_rows}")
    if not np.isfinite(features).all():
        bad_rows = int((~np.isfinite(features)).any(axis=1).sum())
        raise BadEntry(f"{bad_rows} of {features.shape[0]} rows hold NaN or infinite values")
    if sha256_bytes(np.ascontiguousarray(features).tobytes()) != meta["features_sha256"]:
        raise BadEntry("its rows differ from the checksum recorded with them (damaged)")
    width = int(check.width())
    if features.shape[1] != width or attrs.get("dim") != width:
        raise BadEntry(f"rows of width {features.shape[1]} (recorded dim {attrs.get('dim')!r}), the "
                       f"{check.settings.get('backbone')} features asked for have width {width}")
    with VideoReader(source) as reader:  # the container's header only: nothing is decoded
        v_fps, declared = reader.fps, reader.declared_frames
    if not math.isclose(fps, v_fps, rel_tol=1e-9):
        raise BadEntry(f"recorded frame rate {fps}, the video's is {v_fps}")
    first, end = frame_range(v_fps, check.start_s, check.end_s)
    if start_frame != first:
        raise BadEntry(f"starts at frame {start_frame}, the range asks for frame {first}")
    total = start_frame + n_frames
    reached_end = declared == 0 or total >= FRAME_COUNT_FRACTION * declared  # 0: the container does not say
    if end is not None and (total > end or (total < end and not reached_end)):
        raise BadEntry(f"{n_frames} frames from frame {start_frame}, the range asks for frames "
                       f"[{first}, {end}) of a video declaring {declared}")
    if declared > 0 and (end is None or total < end) and not (
            FRAME_COUNT_FRACTION * declared <= total <= declared / FRAME_COUNT_FRACTION):
        raise BadEntry(f"{total} frames decoded to the end, the video declares {declared}")


class FeatureCache:
    """Read and write cached :class:`relocbench.extract.VideoFeatures` (module docstring).

    ``hits``, ``misses`` and ``bad`` (entries found and refused, then recomputed) count the
    lookups; ``warn`` receives the one-line report of a bad entry (default: stderr).
    """

    def __init__(self, root: Optional[PathLike] = None, *, warn: Optional[Callable[[str], None]] = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.hits = 0
        self.misses = 0
        self.bad = 0
        self.warn = warn or _stderr_warn

    def path(self, key: str) -> Path:
        return self.root / "features" / key[:2] / f"{key}.npz"

    def counts(self) -> Dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "bad": self.bad}

    def get(self, key: str, source: PathLike, check: Optional[EntryCheck] = None):
        """The cached features of ``key`` (``source``: the video's path), or ``None``.

        With ``check`` the entry is verified (module docstring) first; a bad entry counts
        as ``bad`` (and a miss), is reported through ``warn`` and gives ``None``: the
        caller recomputes and :meth:`put` replaces it.
        """
        p = self.path(key)
        if not p.is_file():
            self.misses += 1
            return None
        from ..extract import VideoFeatures

        try:
            features, meta = _read_entry(p)
            if check is not None:
                verify_entry(features, meta, key, check, source)
            vf = VideoFeatures(video=meta["video"], features=np.array(features, dtype=np.float32),
                               fps=float(meta["fps"]), n_frames=int(meta["n_frames"]), sha256=meta["sha256"],
                               source=str(source), attrs=meta["attrs"], start_frame=int(meta["start_frame"]),
                               warnings=tuple(str(w) for w in meta["warnings"]))
        except BadEntry as exc:
            self.bad += 1
            self.misses += 1
            self.warn(f"warning: {p}: bad feature cache entry for {source}: {exc}; recomputing and replacing it")
            return None
        self.hits += 1
        return vf

    def put(self, key: str, vf, check: Optional[EntryCheck] = None) -> Path:
        """Store ``vf`` under ``key`` (atomically, replacing a bad entry); returns the entry's path."""
        feats = np.ascontiguousarray(vf.features, dtype=np.float32)
        meta = {"format": CACHE_FORMAT, "key": key, "settings": check.doc if check is not None else {},
                "video": vf.video, "fps": float(vf.fps), "n_frames": int(vf.n_frames), "sha256": vf.sha256,
                "attrs": vf.attrs, "start_frame": int(getattr(vf, "start_frame", 0)),
                "warnings": list(getattr(vf, "warnings", ())), "features_sha256": sha256_bytes(feats.tobytes())}
        buf = io.BytesIO()
        np.savez(buf, features=feats, meta=np.array(json.dumps(meta, sort_keys=True, default=str)))
        return atomic_write_bytes(self.path(key), buf.getvalue(), force=True)
