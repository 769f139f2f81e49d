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
the previous output or the new one, plus the journal of every finished video.
"""
from __future__ import annotations

import contextlib
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

from ..errors import ConfigError, FeatureError
from ..io import atomic_write_bytes, dumps_json
from .config import FORMAT_VERSION
from .pca import PCA_GROUP, FeaturePCA

__all__ = ["Entry", "FeaturesFile", "Journal", "write_features_file", "read_features_file", "settings_json",
           "journal_dir", "LAYOUTS"]

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
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    repeat = _c3d_repeat(int(file_attrs["step_frames"])) if layout == "c3d" else 1
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
class FeaturesFile:
    """A features file written by :func:`write_features_file`, read back (for resume and merge)."""

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)

    def __enter__(self) -> "FeaturesFile":
        import h5py

        if not self.path.is_file():
            raise FeatureError("features file not found", file=self.path)
        if not h5py.is_hdf5(str(self.path)):
            raise FeatureError("not an HDF5 file; expected a features file of relocbench extract-features",
                               file=self.path)
        self._f = h5py.File(self.path, "r")
        if "relocbench_features" not in self._f.attrs:
            self._f.close()
            raise FeatureError("lacks the 'relocbench_features' attribute; expected a file written by "
                               "relocbench extract-features", file=self.path)
        self.attrs = {k: _plain(v) for k, v in self._f.attrs.items()}
        self.layout = self.attrs.get("layout", "relocbench")
        self.settings = json.loads(self.attrs.get("settings", "{}"))
        self.report = json.loads(self.attrs.get("report", "{}"))
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()

    @property
    def pca(self) -> Optional[FeaturePCA]:
        return FeaturePCA.read(self._f, str(self.path)) if PCA_GROUP in self._f else None

    def videos(self) -> List[str]:
        return [str(self._f[n].attrs.get("video", n)) for n in self._f if n != PCA_GROUP]

    def _names(self) -> Dict[str, str]:
        return {str(self._f[n].attrs.get("video", n)): n for n in self._f if n != PCA_GROUP}

    def index(self) -> Dict[str, str]:
        """``{video: source sha256}`` (rows are not read)."""
        return {v: str(self._f[n].attrs["sha256"]) for v, n in self._names().items()}

    def load(self, video: str, name: Optional[str] = None) -> Entry:
        name = name or self._names()[video]
        node = self._f[name]
        ds = node["c3d_features"] if self.layout == "c3d" else node
        repeat = _c3d_repeat(int(self.attrs["step_frames"])) if self.layout == "c3d" else 1
        a = node.attrs
        return Entry(video=str(a.get("video", name)), features=ds[()][::repeat], fps=float(a["fps"]),
                     n_frames=int(a["n_frames"]), source=str(a["source"]), sha256=str(a["sha256"]),
                     start_frame=int(a.get("start_frame", 0)),
                     warnings=tuple(json.loads(a.get("warnings", "[]"))))

    def entries(self) -> Iterator[Entry]:
        for video, name in self._names().items():
            yield self.load(video, name)


def _plain(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.generic):
        return v.item()
    return v


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
        p = self.dir / "settings.json"
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None

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
            out[meta["video"]] = meta
        return out

    def _read(self, p: Path, what: str):
        try:
            with np.load(p, allow_pickle=False) as z:
                if what == "meta":
                    return json.loads(z["meta"].tobytes().decode("utf-8"))
                return json.loads(z["meta"].tobytes().decode("utf-8")), z["features"]
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise FeatureError(f"unreadable journal file ({exc}); remove it to extract that video again",
                               file=p) from None

    def load(self, video: str) -> Entry:
        meta, feats = self._read(self._file(video), "all")
        return Entry(video=meta["video"], features=feats, fps=meta["fps"], n_frames=meta["n_frames"],
                     source=meta["source"], sha256=meta["sha256"], start_frame=meta.get("start_frame", 0),
                     warnings=tuple(meta.get("warnings", ())))

    def count(self) -> int:
        return len(list(self.dir.glob("*.npz"))) if self.dir.is_dir() else 0

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
