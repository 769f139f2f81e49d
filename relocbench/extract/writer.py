"""The HDF5 features file: crash-safe writing, reading back, and the journal of a running extraction.

File layout (``layout="relocbench"``): one float32 dataset ``[n_steps, dim]`` per video at
the root, named by the video id, with attributes ``fps``, ``n_frames``, ``source``, ``sha256``,
``start_frame`` and ``warnings`` (JSON list). File attributes: ``relocbench_features`` (format
version), ``backbone``, ``weights`` (sha256 of the weights file or ``none``), ``weights_note``,
``step_frames``, ``dim``, ``pca`` (``none`` or ``pca-N sha256:...``, with the fitted PCA in the
group ``_relocbench_pca``), ``layout``, ``settings`` (JSON of everything compared on
``--resume``) and ``report`` (JSON: failed videos and other counts).

``layout="c3d"`` writes the official C3D release's layout instead (group ``v_<id>`` holding
``c3d_features``, rows 8 frames apart: each step's row repeated ``step_frames / 8`` times), with
the same attributes, for code written against the release.

Crash safety: a running extraction writes each finished video as its own small file into a
journal folder beside the output (``.<name>.parts/``, each file written atomically); the
HDF5 file is assembled from the journal (and, on ``--resume``, the previous output) into a
temporary file that replaces the output in one rename. A kill at any moment leaves either
the previous output or the new one, plus the journal of every finished video. While it runs,
an extraction holds an exclusive lock (:class:`OutputLock`, ``.<name>.lock``), so a second one
into the same output stops at once.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np

from ..errors import ConfigError, FeatureError, OutputExistsError
from ..io import atomic_write_bytes, dumps_json, require_file
from ..io import refuse_special_output as _refuse_special
from .config import FORMAT_VERSION
from .pca import PCA_GROUP, FeaturePCA

__all__ = ["Entry", "FeaturesFile", "Journal", "OutputLock", "write_features_file", "read_features_file",
           "settings_json", "journal_dir", "lock_path", "refuse_special_output", "LAYOUTS", "FEATURES_FILE"]

PathLike = Union[str, os.PathLike]
LAYOUTS = ("relocbench", "c3d")
_C3D_STRIDE = 8


def settings_json(settings: Mapping[str, Any]) -> str:
    return json.dumps(dict(settings), sort_keys=True, separators=(",", ":"))


@dataclass
class Entry:
    """One video of a features file: rows (before PCA in a journal, after PCA in a file) and attributes."""

    video: str
    features: np.ndarray
    fps: float
    n_frames: int
    source: str
    sha256: str
    start_frame: int = 0
    warnings: Tuple[str, ...] = ()

    def meta(self) -> Dict[str, Any]:
        return {"video": self.video, "fps": float(self.fps), "n_frames": int(self.n_frames), "source": self.source,
                "sha256": self.sha256, "start_frame": int(self.start_frame), "warnings": list(self.warnings)}


# --------------------------------------------------------------------------- writing
def _c3d_repeat(step_frames: int) -> int:
    if step_frames % _C3D_STRIDE:
        raise ConfigError(f"--layout c3d needs --step-frames a multiple of {_C3D_STRIDE} (C3D rows are "
                          f"{_C3D_STRIDE} frames apart); got {step_frames}")
    return step_frames // _C3D_STRIDE


def write_features_file(out: PathLike, entries: Iterable[Entry], file_attrs: Mapping[str, Any], *,
                        pca: Optional[FeaturePCA] = None, report: Optional[Mapping] = None,
                        layout: str = "relocbench") -> Path:
    """Write ``entries`` (in the order given) into ``out`` through a temporary file and one rename.

    Byte-identical for identical inputs (no timestamps: ``track_times=False``).
    """
    import h5py

    if layout not in LAYOUTS:
        raise ConfigError(f"The 'layout' parameter must be one of {LAYOUTS}. Got {layout!r} instead.")
    out = Path(out)
    repeat = _c3d_repeat(int(file_attrs["step_frames"])) if layout == "c3d" else 1  # before anything is made
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w", track_order=False) as f:
            attrs = dict(file_attrs)
            attrs.update(relocbench_features=FORMAT_VERSION, layout=layout,
                         report=json.dumps(dict(report or {}), sort_keys=True))
            for key in sorted(attrs):  # a fixed order: the same attributes give the same bytes
                f.attrs[key] = attrs[key]
            if pca is not None:
                pca.write(f)
            for e in entries:
                data = np.ascontiguousarray(e.features, dtype=np.float32)
                if layout == "c3d":
                    name = e.video if e.video.startswith("v_") else "v_" + e.video
                    node = f.create_group(name)
                    node.create_dataset("c3d_features", data=np.repeat(data, repeat, axis=0), track_times=False)
                else:
                    node = f.create_dataset(e.video, data=data, track_times=False)
                meta = e.meta()
                for key in ("fps", "n_frames", "source", "sha256", "start_frame"):
                    node.attrs[key] = meta[key]
                node.attrs["video"] = e.video
                node.attrs["warnings"] = json.dumps(meta["warnings"])
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return out


def _umask() -> int:
    cur = os.umask(0)
    os.umask(cur)
    return cur


# --------------------------------------------------------------------------- reading
#: What a features file read back should be (the end of every message about one).
FEATURES_FILE = "a features file written by relocbench extract-features"


class FeaturesFile:
    """A features file written by :func:`write_features_file`, read back (for resume and merge).

    Every read is checked (:mod:`relocbench.extract.h5io`): a missing, special, foreign,
    truncated or scribbled file, a missing attribute, a ``settings`` or ``report`` attribute
    that is not JSON, a video whose rows are not a finite 2-d array of the file's width raise
    :class:`FeatureError` naming the file, the video and ``what`` the file should be.
    """

    def __init__(self, path: PathLike, what: str = FEATURES_FILE) -> None:
        self.path = Path(path)
        self.what = what

    def __enter__(self) -> "FeaturesFile":
        from .h5io import h5_reading, json_attr, open_h5, plain, read_attr

        self._f = open_h5(self.path, self.what)
        try:
            with h5_reading(self.path, self.what):
                fa = self._f.attrs
                if "relocbench_features" not in fa:
                    raise FeatureError(f"lacks the 'relocbench_features' attribute; expected {self.what}",
                                       file=self.path)
                self.attrs = {k: plain(fa[k]) for k in fa.keys()}
                self.layout = read_attr(fa, "layout", "str", self.path, self.what, default="relocbench")
                if self.layout not in LAYOUTS:
                    raise FeatureError(f"attribute 'layout' is {self.layout!r}; expected one of {list(LAYOUTS)} "
                                       f"in {self.what}", file=self.path)
                self.settings = json_attr(fa, "settings", self.path, self.what, default={})
                self.report = json_attr(fa, "report", self.path, self.what, default={})
                self.dim = read_attr(fa, "dim", "count", self.path, self.what, default=None)
                self._repeat = 1
                if self.layout == "c3d":
                    step = read_attr(fa, "step_frames", "count", self.path, self.what)
                    if step < 1 or step % _C3D_STRIDE:
                        raise FeatureError(f"attribute 'step_frames' is {step}; expected a multiple of "
                                           f"{_C3D_STRIDE} in {self.what} of the c3d layout", file=self.path)
                    self._repeat = step // _C3D_STRIDE
        except BaseException:
            self._f.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()

    def _reading(self, item: Optional[str] = None):
        from .h5io import h5_reading

        return h5_reading(self.path, self.what, item)

    @property
    def pca(self) -> Optional[FeaturePCA]:
        with self._reading(PCA_GROUP):
            return FeaturePCA.read(self._f, str(self.path), self.what) if PCA_GROUP in self._f else None

    def _names(self) -> Dict[str, str]:
        from .h5io import read_attr

        out: Dict[str, str] = {}
        with self._reading():
            for n in self._f:
                if n == PCA_GROUP:
                    continue
                with self._reading(n):
                    video = read_attr(self._f[n].attrs, "video", "str", self.path, self.what, item=n, default=n)
                if video in out:
                    raise FeatureError(f"the video {video!r} is stored twice ({out[video]} and {n}); expected "
                                       f"{self.what}", file=self.path, item=n)
                out[video] = n
        return out

    def videos(self) -> List[str]:
        return list(self._names())

    def index(self) -> Dict[str, str]:
        """``{video: source sha256}`` (rows are not read)."""
        from .h5io import read_attr

        out: Dict[str, str] = {}
        for v, n in self._names().items():
            with self._reading(n):
                out[v] = read_attr(self._f[n].attrs, "sha256", "str", self.path, self.what, item=n)
        return out

    def load(self, video: str, name: Optional[str] = None) -> Entry:
        """One video, checked: rows a finite float 2-d array (of the file's ``dim``), attributes
        of the right types."""
        import h5py

        from .h5io import json_attr, read_attr

        if name is None:
            names = self._names()
            if video not in names:
                raise FeatureError(f"video not found; expected {self.what} holding it", file=self.path, item=video)
            name = names[video]
        with self._reading(name):
            node = self._f[name]
            ds = node.get("c3d_features") if self.layout == "c3d" and isinstance(node, h5py.Group) else node
            if not isinstance(ds, h5py.Dataset):
                want = "a group holding 'c3d_features'" if self.layout == "c3d" else "a dataset [n_steps, dim]"
                found = "a group" if isinstance(node, h5py.Group) else type(node).__name__
                raise FeatureError(f"is {found}; expected {want} in {self.what}", file=self.path, item=name)
            rows = ds[()]
            if not isinstance(rows, np.ndarray) or rows.ndim != 2 or rows.dtype.kind != "f" or \
                    (self.dim is not None and rows.shape[1] != self.dim):
                raise FeatureError(f"rows are {getattr(rows, 'dtype', type(rows).__name__)} of shape "
                                   f"{np.shape(rows)}; expected float rows [n_steps, "
                                   f"{self.dim if self.dim is not None else 'dim'}] in {self.what}",
                                   file=self.path, item=name)
            rows = rows[::self._repeat]
            if not np.isfinite(rows).all():
                bad = int((~np.isfinite(rows)).any(axis=1).sum())
                raise FeatureError(f"{bad} row(s) hold NaN or infinity; expected finite features in {self.what}",
                                   file=self.path, item=name)
            a, f, w = node.attrs, self.path, self.what
            fps = read_attr(a, "fps", "positive", f, w, item=name)
            n_frames = read_attr(a, "n_frames", "count", f, w, item=name)
            source = read_attr(a, "source", "str", f, w, item=name)
            sha = read_attr(a, "sha256", "str", f, w, item=name)
            start = read_attr(a, "start_frame", "count", f, w, item=name, default=0)
            warnings = json_attr(a, "warnings", f, w, item=name, default=[], want=list)
            vid = read_attr(a, "video", "str", f, w, item=name, default=name)
        return Entry(video=vid, features=rows, fps=fps, n_frames=n_frames, source=source, sha256=sha,
                     start_frame=start, warnings=tuple(str(w) for w in warnings))

    def entries(self) -> Iterator[Entry]:
        for video, name in self._names().items():
            yield self.load(video, name)


def read_features_file(path: PathLike) -> Tuple[Dict[str, Any], Dict[str, Entry]]:
    """``(file attributes, {video: Entry})`` of a features file (loads every video)."""
    with FeaturesFile(path) as ff:
        return ff.attrs, {e.video: e for e in ff.entries()}


# --------------------------------------------------------------------------- journal
def journal_dir(out: PathLike) -> Path:
    out = Path(out)
    return out.parent / f".{out.name}.parts"


class Journal:
    """The folder of finished videos of a running extraction (raw rows, before PCA).

    ``settings.json`` holds the settings; each video is ``<sha1 of its id>.npz`` (rows and a
    JSON header), written atomically, so an interrupted run loses at most the video in flight.
    """

    def __init__(self, out: PathLike) -> None:
        self.dir = journal_dir(out)

    def exists(self) -> bool:
        return self.dir.is_dir()

    def settings(self) -> Optional[Dict[str, Any]]:
        """The settings the journal was started with (None when it holds none), checked."""
        p = self.dir / "settings.json"
        if not (p.exists() or p.is_symlink()):
            return None
        try:
            require_file(p, "journal settings file", FeatureError)
            value = json.loads(p.read_bytes().decode("utf-8"))
        except (OSError, ValueError) as exc:
            raise FeatureError(f"unreadable journal settings ({_short(exc)}); expected the JSON settings of an "
                               "interrupted extraction (pass --force to start over)", file=p) from None
        if not isinstance(value, dict):
            raise FeatureError(f"journal settings are a JSON {type(value).__name__}; expected a JSON object "
                               "(pass --force to start over)", file=p)
        return value

    def start(self, settings: Mapping[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.dir / "settings.json", dumps_json(dict(settings)).encode("utf-8"))

    def _file(self, video: str) -> Path:
        return self.dir / (hashlib.sha1(video.encode("utf-8")).hexdigest() + ".npz")

    def add(self, e: Entry) -> None:
        buf = io.BytesIO()
        np.savez(buf, features=np.ascontiguousarray(e.features, dtype=np.float32),
                 meta=np.frombuffer(json.dumps(e.meta(), sort_keys=True).encode("utf-8"), dtype=np.uint8))
        atomic_write_bytes(self._file(e.video), buf.getvalue())

    def index(self) -> Dict[str, Dict[str, Any]]:
        """``{video: header}`` of every finished video (rows are not read)."""
        out: Dict[str, Dict[str, Any]] = {}
        if not self.dir.is_dir():
            return out
        for p in sorted(self.dir.glob("*.npz")):
            meta = self._read(p, "meta")
            if p.name != self._file(meta["video"]).name:
                raise FeatureError(f"malformed journal entry: it holds the video {meta['video']!r}, whose entry is "
                                   f"{self._file(meta['video']).name}; remove it to extract that video again",
                                   file=p)
            out[meta["video"]] = meta
        return out

    def _read(self, p: Path, what: str):
        """The header (``what="meta"``) or ``(header, rows)`` of one journal entry, checked: a
        ``.npz`` archive holding ``meta`` (a JSON object with the keys of :meth:`Entry.meta`) and
        ``features`` (finite float rows, 2-d)."""
        expected = "a .npz entry written by relocbench extract-features; remove it to extract that video again"
        try:
            require_file(p, "journal entry", FeatureError)
            with np.load(p, allow_pickle=False) as z:
                meta = json.loads(z["meta"].tobytes().decode("utf-8"))
                feats = z["features"] if what != "meta" else None
        except FeatureError:
            raise
        except Exception as exc:  # any damage of the archive (zip, zlib, npy header, JSON) is reported as such
            raise FeatureError(f"unreadable journal entry ({_short(exc)}); expected {expected}", file=p) from None
        problem = _meta_problem(meta)
        if problem is None and feats is not None and not (
                feats.ndim == 2 and feats.dtype.kind == "f" and np.isfinite(feats).all()):
            problem = f"its rows are {feats.dtype} of shape {feats.shape}, not finite float rows [n_steps, dim]"
        if problem is not None:
            raise FeatureError(f"malformed journal entry: {problem}; expected {expected}", file=p)
        return meta if what == "meta" else (meta, feats)

    def load(self, video: str) -> Entry:
        meta, feats = self._read(self._file(video), "all")
        return Entry(video=meta["video"], features=feats, fps=float(meta["fps"]), n_frames=int(meta["n_frames"]),
                     source=meta["source"], sha256=meta["sha256"], start_frame=int(meta.get("start_frame", 0)),
                     warnings=tuple(str(w) for w in meta.get("warnings", ())))

    def count(self) -> int:
        return len(list(self.dir.glob("*.npz"))) if self.dir.is_dir() else 0

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def refuse_special_output(out: PathLike) -> None:
    """Refuse an existing ``out`` that is not a regular file (a folder, a device such as
    ``/dev/null``, a FIFO): replacing it with the features file would destroy it, ``--force``
    or not."""
    _refuse_special(out, option="--out", allow_dir=False)


def lock_path(out: PathLike) -> Path:
    out = Path(out)
    return out.parent / f".{out.name}.lock"


class OutputLock:
    """An exclusive lock on an extraction's output: ``.<name>.lock`` beside it, held with
    ``fcntl.flock`` for the whole run and holding the pid of its holder.

    A second extraction into the same output stops at once (:class:`OutputExistsError`:
    "another extraction is writing OUT (pid N)") instead of taking the first one's journal for
    an interrupted run. The kernel drops the lock when its process ends, however it ends, so a
    lock file left by a killed run never blocks; a finished run removes the file. Where
    ``fcntl`` does not exist (Windows) no lock is taken.
    """

    def __init__(self, out: PathLike) -> None:
        self.out = Path(out)
        self.path = lock_path(out)
        self._fd: Optional[int] = None

    def acquire(self) -> "OutputLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on Linux or macOS
            return self
        for _ in range(10):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            except OSError as exc:
                raise ConfigError(f"cannot create the lock file of the output ({exc.strerror})",
                                  file=self.path) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_pid(fd)
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise ConfigError(f"cannot lock the output ({exc.strerror})", file=self.path) from None
                raise OutputExistsError(
                    f"another extraction is writing {self.out} (pid {holder or 'unknown'}); wait for it to finish "
                    "or choose another --out") from None
            # the file may have been removed (by a run that just finished) between open and lock
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
            self._fd = fd
            return self
        raise OutputExistsError(f"could not lock {self.out}: its lock file {self.path} keeps changing (other "
                                "extractions starting and finishing?)")

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):
                if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                    os.unlink(self.path)
        finally:
            os.close(fd)

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> Optional[int]:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _meta_problem(meta: Any) -> Optional[str]:
    """What is wrong with a journal header (None when nothing is)."""
    if not isinstance(meta, dict):
        return f"its header is a JSON {type(meta).__name__}, not an object"
    for key in ("video", "source", "sha256"):
        if not isinstance(meta.get(key), str):
            return f"its header's {key!r} is {meta.get(key)!r}, not a string"
    fps = meta.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (fps > 0 and fps < float("inf")):
        return f"its header's 'fps' is {fps!r}, not a finite number > 0"
    if not _is_count(meta.get("n_frames")):
        return f"its header's 'n_frames' is {meta.get('n_frames')!r}, not a whole number >= 0"
    if not _is_count(meta.get("start_frame", 0)):
        return f"its header's 'start_frame' is {meta.get('start_frame')!r}, not a whole number >= 0"
    if not isinstance(meta.get("warnings", []), list):
        return f"its header's 'warnings' is {meta.get('warnings')!r}, not a list"
    return None
