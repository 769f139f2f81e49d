"""Feature stores: where the per-step video features of the temporal baselines come from.

Every store has one small interface::

    store.get(video) -> float32 array [n_steps, dim]   # one row per 16-frame step
    store.dim                                           # feature dimension
    video in store                                      # cheap membership test

Stores (``open_feature_store`` picks one from a spec string):

* :class:`C3DHDF5Store` -- the official ActivityNet C3D release
  (``sub_activitynet_v1-3.c3d.hdf5``): one HDF5 group ``v_<id>`` per video holding the
  dataset ``c3d_features`` ``(T, 500)``, one row per 8 frames. Every second row is kept
  (rows 0, 2, 4, ...) so that rows match the 16-frame steps of the manifests, as the
  ECCV 2018 paper did; a release of ``T`` rows gives ``ceil(T / 2)`` steps.
* :class:`HDF5Store` -- an ``.h5`` file holding one 2-D dataset per video at its root
  (named by the video id, with or without the ``v_`` prefix), rows at a declared stride.
* :class:`ExtractedHDF5Store` -- a file written by ``relocbench extract-features``
  (``relocbench_features`` attribute): read at the ``step_frames`` it declares, in its
  own layout (one dataset per video, or the C3D release's), with no other flag.
* :class:`NpyFolderStore` -- a folder of ``<video>.npy`` files, any dimension, rows at a
  declared stride.
* :class:`SyntheticFeatures` (the default) -- deterministic features rendered on the real
  ActivityNet timelines of the manifest's ``timelines`` table (see its docstring).

**Resampling to 16-frame steps.** A store whose rows are ``stride_frames`` frames apart
(row ``i`` starts at frame ``i * stride_frames``) returns ``n = ceil(T * stride_frames / 16)``
steps; step ``j`` (frames ``16 j .. 16 j + 15``) takes row ``floor(16 j / stride_frames)``,
the row that starts at or just before the step's first frame. So stride 8 keeps every second
row (the C3D release), stride 16 is the identity, stride 4 keeps every fourth row and
stride 32 repeats every row twice.

**Errors.** A missing video, a wrong dimension, an array that is not 2-D or holds no rows,
and NaN or infinite values raise :class:`relocbench.errors.FeatureError` naming the store's
file and the video. With ``skip_missing=True``, :meth:`FeatureStore.try_get` and
:meth:`FeatureStore.get_many` count *missing* videos in ``store.report`` (a
:class:`relocbench.datasets.common.Report`) and leave them out; malformed features are
always an error (they mean the store itself is broken).
"""
from __future__ import annotations

import hashlib
import math
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import numpy as np
import pandas as pd

from .datasets.common import Report
from .errors import ConfigError, FeatureError

__all__ = [
    "STEP_FRAMES",
    "DEFAULT_CACHE_MB",
    "default_cache_mb",
    "FeatureStore",
    "C3DHDF5Store",
    "HDF5Store",
    "ExtractedHDF5Store",
    "NpyFolderStore",
    "SyntheticFeatures",
    "open_feature_store",
    "resample_rows",
    "stable_rng",
]

#: Frames per step of every temporal manifest (one C3D clip).
STEP_FRAMES = 16

PathLike = Union[str, os.PathLike]


# --------------------------------------------------------------------------- helpers
def stable_rng(*parts: Any) -> np.random.Generator:
    """A NumPy generator seeded from ``parts`` through SHA-256 (not Python's salted ``hash``).

    The same parts give the same stream on every machine and in every process (for a given
    NumPy version: PCG64 and the ziggurat normal sampler have been stable since NumPy 1.17).
    """
    text = "\x1f".join(str(p) for p in parts).encode("utf-8")
    digest = hashlib.sha256(text).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


def resample_rows(rows: np.ndarray, stride_frames: float) -> np.ndarray:
    """Map rows ``stride_frames`` frames apart onto 16-frame steps (module docstring)."""
    if not (isinstance(stride_frames, (int, float)) and stride_frames > 0 and math.isfinite(stride_frames)):
        raise ConfigError(
            f"The 'stride_frames' parameter must be a positive number of frames. Got {stride_frames!r} instead."
        )
    t = rows.shape[0]
    if stride_frames == STEP_FRAMES:
        return rows
    n = int(math.ceil(t * stride_frames / STEP_FRAMES - 1e-9))
    idx = np.floor(np.arange(n) * (STEP_FRAMES / stride_frames) + 1e-9).astype(np.int64)
    idx = np.minimum(idx, t - 1)
    return rows[idx]


def _validate(video: str, arr: np.ndarray, dim: Optional[int], where: Optional[str]) -> np.ndarray:
    if arr.ndim != 2:
        raise FeatureError(
            f"expected a 2-D feature array [steps, dim], found shape {tuple(arr.shape)}", file=where, item=video
        )
    if arr.shape[0] == 0:
        raise FeatureError("holds no feature rows", file=where, item=video)
    if dim is not None and arr.shape[1] != dim:
        raise FeatureError(
            f"expected {dim}-dimensional features, found {arr.shape[1]} (shape {tuple(arr.shape)})",
            file=where, item=video,
        )
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise FeatureError(f"expected real numbers, found dtype {arr.dtype}", file=where, item=video)
    out = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(out)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        raise FeatureError(
            f"holds {int((~finite).sum())} NaN or infinite value(s) in {bad_rows.size} row(s), "
            f"first at row {int(bad_rows[0])}; expected finite features",
            file=where, item=video,
        )
    return out


# --------------------------------------------------------------------------- interface
#: Default byte budget (MiB) of a feature store's cache; ``$RELOCBENCH_FEATURE_CACHE_MB`` overrides it.
DEFAULT_CACHE_MB = 2048.0


def _check_cache_mb(value: Any, what: str) -> float:
    try:
        mb = float(value)
    except (TypeError, ValueError):
        mb = float("nan")
    if isinstance(value, bool) or not (math.isfinite(mb) and mb >= 0):
        raise ConfigError(f"The {what!r} setting must be a number of MiB >= 0. Got {value!r} instead.")
    return mb


def default_cache_mb() -> float:
    """The feature cache budget in MiB: ``$RELOCBENCH_FEATURE_CACHE_MB`` or :data:`DEFAULT_CACHE_MB`."""
    env = os.environ.get("RELOCBENCH_FEATURE_CACHE_MB")
    return DEFAULT_CACHE_MB if env in (None, "") else _check_cache_mb(env, "RELOCBENCH_FEATURE_CACHE_MB")


class FeatureStore:
    """Base class: per-video features, one row per 16-frame step, float32.

    Subclasses implement ``_load(video) -> raw 2-D array or None if missing`` and
    ``_has(video)``. The base class validates, resamples, caches and counts skipped videos.

    The cache is an LRU of read-only arrays bounded by bytes: ``cache_mb`` MiB (default
    :data:`DEFAULT_CACHE_MB`, or ``$RELOCBENCH_FEATURE_CACHE_MB``; 0 turns it off). Training
    draws every batch's windows from a few thousand videos again and again; with the
    ActivityNet training videos (1.2 GB of float32) all cached, a batch of 128 pairs is
    collated in milliseconds instead of rendering or reading 256 videos.
    """

    #: Short name used in run records (``describe()``).
    kind = "base"

    def __init__(self, *, dim: Optional[int] = None, skip_missing: bool = False,
                 cache_mb: Optional[float] = None) -> None:
        if dim is not None and (not isinstance(dim, (int, np.integer)) or dim <= 0):
            raise ConfigError(f"The 'dim' parameter must be a positive int or None. Got {dim!r} instead.")
        self._dim = None if dim is None else int(dim)
        self.skip_missing = bool(skip_missing)
        self.cache_mb = default_cache_mb() if cache_mb is None else _check_cache_mb(cache_mb, "cache_mb")
        self._cache: "OrderedDict[str, np.ndarray]" = OrderedDict()
        self._cache_bytes = 0
        self.report = Report()

    # ---- to implement
    def _load(self, video: str) -> Optional[np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _has(self, video: str) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _infer_dim(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def source(self) -> Optional[str]:
        """The file or folder named in error messages."""
        return None

    def describe(self) -> Dict[str, Any]:
        """What a run record says about this store (kind, source, parameters)."""
        return {"kind": self.kind, "source": self.source, "dim": self.dim}

    # ---- interface
    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self._infer_dim())
        return self._dim

    def __contains__(self, video: object) -> bool:
        return isinstance(video, str) and self._has(video)

    def get(self, video: str) -> np.ndarray:
        """Features of ``video``, float32 ``[n_steps, dim]`` (read-only; copy to modify)."""
        video = str(video)
        hit = self._cache.get(video)
        if hit is not None:
            self._cache.move_to_end(video)
            return hit
        raw = self._load(video)
        if raw is None:
            raise FeatureError(
                f"video not found in the {self.kind} feature store "
                "(pass skip_missing=True / --skip-missing to skip it, counted)",
                file=self.source, item=video,
            )
        arr = _validate(video, np.asarray(raw), self.dim, self.source)
        arr.setflags(write=False)
        limit = self.cache_mb * 2**20
        if arr.nbytes <= limit:
            self._cache[video] = arr
            self._cache_bytes += arr.nbytes
            while self._cache_bytes > limit:
                self._cache_bytes -= self._cache.popitem(last=False)[1].nbytes
        return arr

    def try_get(self, video: str) -> Optional[np.ndarray]:
        """Like ``get``; with ``skip_missing`` a missing video is counted and gives ``None``."""
        if self.skip_missing and video not in self:
            self.report.add("video missing from the feature store", video)
            return None
        return self.get(video)

    def get_many(self, videos: Iterable[str]) -> Dict[str, np.ndarray]:
        """Features of each distinct video (missing ones skipped and counted with ``skip_missing``)."""
        out: Dict[str, np.ndarray] = {}
        for v in videos:
            if v in out:
                continue
            arr = self.try_get(v)
            if arr is not None:
                out[v] = arr
        return out

    def close(self) -> None:
        """Release open files (the store reopens them on the next ``get``)."""

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> Dict[str, Any]:  # picklable for DataLoader workers and DDP
        state = dict(self.__dict__)
        state["_cache"] = OrderedDict()
        state["_cache_bytes"] = 0
        state["_h5"] = None
        return state


# --------------------------------------------------------------------------- HDF5 stores
def _h5py():
    import h5py

    return h5py


class _HDF5Base(FeatureStore):
    def __init__(self, path: PathLike, *, stride_frames: float, dim: Optional[int], skip_missing: bool,
                 cache_mb: Optional[float]) -> None:
        super().__init__(dim=dim, skip_missing=skip_missing, cache_mb=cache_mb)
        self.path = Path(path)
        self.stride_frames = stride_frames
        resample_rows(np.zeros((1, 1)), stride_frames)  # validates the stride early (no I/O)
        self._h5 = None

    @property
    def source(self) -> str:
        return str(self.path)

    def describe(self) -> Dict[str, Any]:
        return {**super().describe(), "stride_frames": self.stride_frames}

    def _file(self):
        if self._h5 is None:
            if not self.path.is_file():
                raise FeatureError("feature file not found", file=self.path)
            try:
                self._h5 = _h5py().File(self.path, "r")
            except OSError as exc:
                raise FeatureError(f"not a readable HDF5 file ({exc})", file=self.path) from None
        return self._h5

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def _names(self, video: str) -> Tuple[str, ...]:
        if video.startswith("v_"):
            return (video, video[2:])
        return ("v_" + video, video)

    def _node(self, video: str):  # the HDF5 dataset of a video, or None
        raise NotImplementedError

    def _has(self, video: str) -> bool:
        return self._node(video) is not None

    def _load(self, video: str) -> Optional[np.ndarray]:
        ds = self._node(video)
        if ds is None:
            return None
        if len(ds.shape) != 2:
            raise FeatureError(
                f"expected a 2-D dataset [rows, dim], found shape {tuple(ds.shape)}", file=self.path, item=video
            )
        return resample_rows(ds[()], self.stride_frames)

    def _first_node(self):
        f = self._file()
        for name in f:
            node = self._node(name)
            if node is not None:
                return name, node
        raise FeatureError("holds no video features; cannot infer the feature dimension", file=self.path)

    def _infer_dim(self) -> int:
        name, node = self._first_node()
        if len(node.shape) != 2:
            raise FeatureError(
                f"expected a 2-D dataset [rows, dim], found shape {tuple(node.shape)}", file=self.path, item=name
            )
        return int(node.shape[1])


class C3DHDF5Store(_HDF5Base):
    """The official ActivityNet C3D release: group ``v_<id>``, dataset ``c3d_features``.

    Rows are 8 frames apart; every second row is kept (``stride_frames=8``), giving one row
    per 16-frame step. Video ids may be given with or without the ``v_`` prefix.
    """

    kind = "c3d-hdf5"

    def __init__(self, path: PathLike, *, dataset: str = "c3d_features", stride_frames: float = 8,
                 dim: Optional[int] = None, skip_missing: bool = False, cache_mb: Optional[float] = None) -> None:
        super().__init__(path, stride_frames=stride_frames, dim=dim, skip_missing=skip_missing,
                         cache_mb=cache_mb)
        self.dataset = dataset

    def _node(self, video: str):
        f = self._file()
        h5py = _h5py()
        for name in self._names(video):
            grp = f.get(name)
            if isinstance(grp, h5py.Group):
                ds = grp.get(self.dataset)
                if isinstance(ds, h5py.Dataset):
                    return ds
        return None


class HDF5Store(_HDF5Base):
    """An HDF5 file holding one 2-D dataset per video at its root, rows ``stride_frames`` apart."""

    kind = "hdf5"

    def __init__(self, path: PathLike, *, stride_frames: float = STEP_FRAMES, dim: Optional[int] = None,
                 skip_missing: bool = False, cache_mb: Optional[float] = None) -> None:
        super().__init__(path, stride_frames=stride_frames, dim=dim, skip_missing=skip_missing,
                         cache_mb=cache_mb)

    def _node(self, video: str):
        f = self._file()
        h5py = _h5py()
        for name in self._names(video):
            ds = f.get(name)
            if isinstance(ds, h5py.Dataset):
                return ds
        return None


def _declared_layout(f, path: Path) -> Optional[Dict[str, Any]]:
    """The file attributes of a ``relocbench extract-features`` output, or None for other files."""
    if "relocbench_features" not in f.attrs:
        return None
    attrs = {k: (v.decode("utf-8") if isinstance(v, bytes) else v.item() if isinstance(v, np.generic) else v)
             for k, v in f.attrs.items()}
    step = attrs.get("step_frames")
    if not isinstance(step, (int, float)) or isinstance(step, bool) or not step > 0:
        raise FeatureError(f"declares step_frames {step!r}; expected a positive number of frames", file=path)
    if attrs.get("layout", "relocbench") not in ("relocbench", "c3d"):
        raise FeatureError(f"declares layout {attrs.get('layout')!r}; expected 'relocbench' or 'c3d'", file=path)
    if not any(n != "_relocbench_pca" for n in f):
        raise FeatureError("holds no video features (every video failed? see the file's 'report' attribute: "
                           f"{attrs.get('report', '{}')[:200]})", file=path)
    return attrs


class ExtractedHDF5Store(HDF5Store):
    """A file written by ``relocbench extract-features``: read at the step size it declares.

    Layout ``relocbench``: one dataset per video, rows ``step_frames`` apart. Layout ``c3d``:
    the official release's groups, rows 8 frames apart. ``attrs`` holds the file's attributes
    (``backbone``, ``weights``, ``step_frames``, ``dim``, ``pca``, ``report``, ...).
    """

    kind = "relocbench-hdf5"

    def __init__(self, path: PathLike, attrs: Dict[str, Any], *, stride_frames: Optional[float] = None,
                 dim: Optional[int] = None, skip_missing: bool = False, cache_mb: Optional[float] = None) -> None:
        self.attrs = dict(attrs)
        self.layout = self.attrs.get("layout", "relocbench")
        declared = 8 if self.layout == "c3d" else self.attrs["step_frames"]
        super().__init__(path, stride_frames=stride_frames or declared, dim=dim, skip_missing=skip_missing,
                         cache_mb=cache_mb)

    def describe(self) -> Dict[str, Any]:
        extra = {k: self.attrs.get(k) for k in ("backbone", "weights", "step_frames", "pca", "layout")}
        return {**super().describe(), **extra}

    dataset = "c3d_features"  # the dataset of each group in the c3d layout

    def _node(self, video: str):
        if self.layout == "c3d":
            return C3DHDF5Store._node(self, video)
        return super()._node(video)


class NpyFolderStore(FeatureStore):
    """A folder of ``<video>.npy`` files (``v_<id>.npy`` accepted too), rows ``stride_frames`` apart."""

    kind = "npy-folder"

    def __init__(self, folder: PathLike, *, stride_frames: float = STEP_FRAMES, dim: Optional[int] = None,
                 skip_missing: bool = False, cache_mb: Optional[float] = None) -> None:
        super().__init__(dim=dim, skip_missing=skip_missing, cache_mb=cache_mb)
        self.folder = Path(folder)
        self.stride_frames = stride_frames
        resample_rows(np.zeros((1, 1)), stride_frames)

    @property
    def source(self) -> str:
        return str(self.folder)

    def describe(self) -> Dict[str, Any]:
        return {**super().describe(), "stride_frames": self.stride_frames}

    def _path(self, video: str) -> Optional[Path]:
        names = (video, video[2:]) if video.startswith("v_") else (video, "v_" + video)
        for n in names:
            p = self.folder / f"{n}.npy"
            if p.is_file():
                return p
        return None

    def _has(self, video: str) -> bool:
        return self._path(video) is not None

    def _read(self, p: Path, video: str, mmap: bool = False) -> np.ndarray:
        try:
            return np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise FeatureError(f"unreadable .npy file ({exc})", file=p, item=video) from None

    def _load(self, video: str) -> Optional[np.ndarray]:
        p = self._path(video)
        if p is None:
            if not self.folder.is_dir():
                raise FeatureError("feature folder not found", file=self.folder)
            return None
        arr = self._read(p, video)
        if arr.ndim != 2:
            raise FeatureError(f"expected a 2-D array [rows, dim], found shape {arr.shape}", file=p, item=video)
        return resample_rows(arr, self.stride_frames)

    def _infer_dim(self) -> int:
        if not self.folder.is_dir():
            raise FeatureError("feature folder not found", file=self.folder)
        files = sorted(self.folder.glob("*.npy"))
        if not files:
            raise FeatureError("holds no .npy files; cannot infer the feature dimension", file=self.folder)
        arr = self._read(files[0], files[0].stem, mmap=True)
        if arr.ndim != 2:
            raise FeatureError(f"expected a 2-D array [rows, dim], found shape {arr.shape}", file=files[0],
                               item=files[0].stem)
        return int(arr.shape[1])


# --------------------------------------------------------------------------- synthetic
TIMELINE_COLUMNS = ("video", "label", "start_step", "end_step", "n_steps")


class SyntheticFeatures(FeatureStore):
    """Deterministic features rendered on real timelines (the default store: runs offline).

    For every annotated segment of a video (every row of the ``timelines`` table, kept or
    not) the steps ``start_step .. end_step - 1`` carry the signal of its class; the other
    steps carry the video's background. Segments of zero steps render nothing; where
    segments overlap, their signals are averaged.

    * **Classes.** Each class has a fixed sequence of 3 to 6 latent *phase* vectors
      (the number derives from the class name). Phase ``p`` of class ``c`` is
      ``sqrt(s) G_p + sqrt(1 - s) U_{c,p}`` with ``G`` phase vectors shared by every class,
      ``U`` the class's own and ``s = class_similarity``: at ``s = 0`` classes are unrelated,
      at ``s = 1`` identical.
    * **Instances.** An instance of ``L`` steps plays its class's phases in order, stretched
      to ``L`` with a random tempo: the phase knots sit at cumulative random (log-normal)
      durations, and the signal interpolates linearly between consecutive phase vectors.
      Its amplitude varies by a random factor in [0.8, 1.2]; ``background_leak`` of the
      background stays under the action.
    * **Unannotated activity.** Real backgrounds are not static, so the steps outside every
      annotation are cut into chunks of 4 to 32 steps, each of which, with probability
      ``background_activity``, plays the phases of one of ``background_classes``
      pseudo-classes that belong to no split. A model that only tells action from
      background (SST ignores the query) is then misled; matching the query is needed.
    * **Videos.** Each video has a background scene vector, and an appearance: a
      near-identity random linear map ``x -> x + a (x U) V^T`` (rank ``appearance_rank``;
      ``a = appearance_shift`` is the standard deviation it adds per dimension to a
      unit-variance input) plus an offset of standard deviation ``a``. Noise is temporally
      correlated: a moving average of white noise over ``noise_corr_steps`` steps, scaled to
      standard deviation ``noise``.

    Phase, background and noise vectors have unit variance per dimension. Everything
    derives from ``(seed, class name)`` and ``(seed, video id)`` through SHA-256
    (:func:`stable_rng`), so any video is computed on demand in about a millisecond and is
    identical on every machine (the low-rank map is computed in float64 and rounded to
    float32, so BLAS summation order cannot show).

    Defaults (``noise=3.5``, ``appearance_shift=1.25``, ``class_similarity=0.85``,
    ``background_activity=0.5``) were set with the frame-level baseline on every fourth
    validation pair of the committed ActivityNet manifest (seed 0): it reaches an average
    mAP@1 (0.5 ... 0.9) of about 15 % against about 4 % for chance, so matching is possible
    but far from solved; a ``cgbm`` trained for only 300 steps of batch 32 reaches 26 %
    there, so the task is learnable with room to spare. Without background activity the
    frame-level baseline reaches 19 % and such a ``cgbm`` (400 steps) 78 %: too easy.
    Lower noise or similarity make it easier (noise 1.0 / shift 0.5 / similarity 0.6, no
    background activity: the frame-level baseline reaches 84 %).
    """

    kind = "synthetic"

    def __init__(
        self,
        timelines: pd.DataFrame,
        *,
        seed: int = 0,
        dim: int = 500,
        noise: float = 3.5,
        appearance_shift: float = 1.25,
        class_similarity: float = 0.85,
        appearance_rank: int = 8,
        noise_corr_steps: int = 4,
        background_leak: float = 0.3,
        background_activity: float = 0.5,
        background_classes: int = 64,
        skip_missing: bool = False,
        cache_mb: Optional[float] = None,
        source: Optional[str] = None,
    ) -> None:
        super().__init__(dim=dim, skip_missing=skip_missing, cache_mb=cache_mb)
        checks = [
            ("noise", noise, noise >= 0, "a number >= 0"),
            ("appearance_shift", appearance_shift, appearance_shift >= 0, "a number >= 0"),
            ("class_similarity", class_similarity, 0 <= class_similarity <= 1, "a number in [0, 1]"),
            ("background_leak", background_leak, background_leak >= 0, "a number >= 0"),
            ("background_activity", background_activity, 0 <= background_activity <= 1, "a number in [0, 1]"),
            ("background_classes", background_classes,
             isinstance(background_classes, int) and background_classes >= 1, "an int >= 1"),
            ("appearance_rank", appearance_rank, isinstance(appearance_rank, int) and appearance_rank >= 1,
             "an int >= 1"),
            ("noise_corr_steps", noise_corr_steps, isinstance(noise_corr_steps, int) and noise_corr_steps >= 1,
             "an int >= 1"),
            ("seed", seed, isinstance(seed, (int, np.integer)), "an int"),
        ]
        for name, val, ok, what in checks:
            if not ok or (isinstance(val, float) and not math.isfinite(val)):
                raise ConfigError(f"The {name!r} parameter of SyntheticFeatures must be {what}. Got {val!r} instead.")
        self.seed = int(seed)
        self.noise = float(noise)
        self.appearance_shift = float(appearance_shift)
        self.class_similarity = float(class_similarity)
        self.appearance_rank = int(appearance_rank)
        self.noise_corr_steps = int(noise_corr_steps)
        self.background_leak = float(background_leak)
        self.background_activity = float(background_activity)
        self.background_classes = int(background_classes)
        self._source = source
        self._videos = self._index(timelines, source)
        self._phases: Dict[str, np.ndarray] = {}
        self._shared: Optional[np.ndarray] = None

    # ---- construction
    @staticmethod
    def _index(df: pd.DataFrame, source: Optional[str]) -> Dict[str, Tuple[int, list]]:
        if not isinstance(df, pd.DataFrame):
            raise ConfigError(f"SyntheticFeatures needs the timelines table as a DataFrame. Got {type(df).__name__}.")
        missing = [c for c in TIMELINE_COLUMNS if c not in df.columns]
        if missing:
            raise FeatureError(f"the timelines table lacks columns {missing}", file=source)
        out: Dict[str, Tuple[int, list]] = {}
        videos = df["video"].astype(str).to_numpy()
        labels = df["label"].astype(str).to_numpy()
        starts = df["start_step"].to_numpy(np.int64)
        ends = df["end_step"].to_numpy(np.int64)
        nsteps = df["n_steps"].to_numpy(np.int64)
        for v, lab, s, e, n in zip(videos, labels, starts, ends, nsteps):
            if v in out:
                if out[v][0] != n:
                    raise FeatureError(
                        f"the timelines table gives two lengths for this video ({out[v][0]} and {n} steps)",
                        file=source, item=v,
                    )
            else:
                if n <= 0:
                    raise FeatureError(f"the timelines table gives the video {n} steps; expected > 0",
                                       file=source, item=v)
                out[v] = (int(n), [])
            out[v][1].append((lab, int(s), int(e)))
        for v, (_, segs) in out.items():
            segs.sort(key=lambda t: (t[1], t[2], t[0]))
        return out

    @classmethod
    def from_manifest(cls, manifest: Any, **kwargs: Any) -> "SyntheticFeatures":
        """Build from a manifest name, folder, :class:`~relocbench.manifest.Manifest` or timelines table."""
        from .manifest import Manifest, open_manifest

        if isinstance(manifest, pd.DataFrame):
            return cls(manifest, **kwargs)
        m = manifest if isinstance(manifest, Manifest) else open_manifest(manifest)
        if m.task != "temporal":
            raise FeatureError(
                f"synthetic features need a temporal manifest; this one is {m.task!r}", file=m.path
            )
        df = m.table("timelines", None)
        kwargs.setdefault("source", str(m.file_for("timelines", None)))
        return cls(df, **kwargs)

    # ---- interface
    @property
    def source(self) -> Optional[str]:
        return self._source

    def describe(self) -> Dict[str, Any]:
        return {
            "kind": self.kind, "seed": self.seed, "dim": self.dim, "noise": self.noise,
            "appearance_shift": self.appearance_shift, "class_similarity": self.class_similarity,
            "appearance_rank": self.appearance_rank, "noise_corr_steps": self.noise_corr_steps,
            "background_leak": self.background_leak, "background_activity": self.background_activity,
            "background_classes": self.background_classes,
        }

    def videos(self) -> List[str]:
        return sorted(self._videos)

    def n_steps(self, video: str) -> int:
        if video not in self._videos:
            raise FeatureError("video not in the timelines table", file=self.source, item=video)
        return self._videos[video][0]

    def _has(self, video: str) -> bool:
        return video in self._videos

    def _infer_dim(self) -> int:  # pragma: no cover - dim is always given
        return 500

    # ---- rendering
    def class_phases(self, label: str) -> np.ndarray:
        """The class's phase vectors ``[n_phases, dim]`` (3 to 6 of them), float32."""
        ph = self._phases.get(label)
        if ph is None:
            if self._shared is None:
                self._shared = stable_rng("relocbench-synthetic", self.seed, "shared-phases").standard_normal(
                    (6, self.dim), dtype=np.float32)
            rng = stable_rng("relocbench-synthetic", self.seed, "class", label)
            n = 3 + int(hashlib.sha256(f"phases\x1f{label}".encode()).digest()[0]) % 4
            own = rng.standard_normal((n, self.dim), dtype=np.float32)
            s = self.class_similarity
            ph = (math.sqrt(s) * self._shared[:n] + math.sqrt(1.0 - s) * own).astype(np.float32)
            ph.setflags(write=False)
            self._phases[label] = ph
        return ph

    @staticmethod
    def _instance(phases: np.ndarray, length: int, irng: np.random.Generator) -> np.ndarray:
        """One instance of ``length`` steps playing ``phases`` in order with a random tempo."""
        k = phases.shape[0]
        durations = np.exp(0.5 * irng.standard_normal(k - 1))
        knots = np.concatenate([[0.0], np.cumsum(durations) / durations.sum()])
        amp = np.float32(irng.uniform(0.8, 1.2))
        u = np.interp((np.arange(length) + 0.5) / length, knots, np.arange(k, dtype=np.float64))
        lo = np.minimum(np.floor(u).astype(np.int64), k - 1)
        hi = np.minimum(lo + 1, k - 1)
        f = (u - lo).astype(np.float32)[:, None]
        return amp * ((1.0 - f) * phases[lo] + f * phases[hi])

    def _background_activity(self, video: str, x: np.ndarray, act: np.ndarray, background: np.ndarray) -> None:
        """Unannotated activity: background chunks of 4..32 steps play pseudo-class phases."""
        n = x.shape[0]
        rng = stable_rng("relocbench-synthetic", self.seed, "background-activity", video)
        bounds = np.concatenate([[0], np.cumsum(rng.integers(4, 33, size=n // 4 + 1))])
        bounds = bounds[bounds < n].tolist() + [n]
        play = rng.random(len(bounds) - 1) < self.background_activity
        which = rng.integers(0, self.background_classes, size=len(bounds) - 1)
        for a, b, on, k in zip(bounds[:-1], bounds[1:], play, which):
            free = ~act[a:b]
            if not on or not free.any():
                continue
            sig = self._instance(self.class_phases(f"\x00background-{int(k)}"), b - a, rng)
            x[a:b][free] = self.background_leak * background + sig[free]

    def _load(self, video: str) -> Optional[np.ndarray]:
        if video not in self._videos:
            return None
        n, segs = self._videos[video]
        d = self.dim
        rng = stable_rng("relocbench-synthetic", self.seed, "video", video)
        background = rng.standard_normal(d, dtype=np.float32)
        x = np.broadcast_to(background, (n, d)).copy()
        acc = np.zeros((n, d), dtype=np.float32)
        cover = np.zeros(n, dtype=np.float32)
        for label, s, e in segs:
            s, e = max(0, s), min(n, e)
            if e <= s:
                continue
            irng = stable_rng("relocbench-synthetic", self.seed, "instance", video, label, s, e)
            acc[s:e] += self._instance(self.class_phases(label), e - s, irng)
            cover[s:e] += 1.0
        act = cover > 0
        if act.any():
            x[act] = self.background_leak * background + acc[act] / cover[act, None]
        if self.background_activity > 0 and not act.all():
            self._background_activity(video, x, act, background)
        a = self.appearance_shift
        if a > 0:
            # Low-rank map in float64 then rounded to float32: a reduction order that differs
            # between CPUs stays far below float32 resolution.
            r = self.appearance_rank
            u_map = rng.standard_normal((d, r)) / math.sqrt(d)
            v_map = rng.standard_normal((r, d)) / math.sqrt(r)
            offset = rng.standard_normal(d)
            # np.einsum (optimize=False) runs its own loops instead of multi-threaded BLAS,
            # which is much slower for these thin products on a busy machine.
            low = np.einsum("nd,dr->nr", x.astype(np.float64), u_map)
            x = (x + a * np.einsum("nr,rd->nd", low, v_map) + a * offset).astype(np.float32)
        if self.noise > 0:
            w = self.noise_corr_steps
            z = rng.standard_normal((n + w - 1, d), dtype=np.float32)
            ma = z[:n].copy()
            for k in range(1, w):  # moving sum of w white rows
                ma += z[k:k + n]
            x = x + np.float32(self.noise / math.sqrt(w)) * ma  # unit variance before scaling
        return x.astype(np.float32, copy=False)


# --------------------------------------------------------------------------- factory
def open_feature_store(
    spec: Union[str, os.PathLike, FeatureStore] = "synthetic",
    *,
    manifest: Any = None,
    seed: int = 0,
    skip_missing: bool = False,
    stride_frames: Optional[float] = None,
    dim: Optional[int] = None,
    **synthetic: Any,
) -> FeatureStore:
    """Open a feature store from ``spec``: ``"synthetic"`` or a path.

    * ``"synthetic"``: :class:`SyntheticFeatures` on the ``timelines`` table of ``manifest``
      (a name such as ``"activitynet"``, a folder, a Manifest or the table itself), with
      ``seed`` and the knobs in ``synthetic`` (``noise``, ``appearance_shift``,
      ``class_similarity``, ...).
    * a ``.h5`` / ``.hdf5`` file (or any HDF5 file): the official C3D layout when its groups
      hold ``c3d_features`` (stride 8 frames unless ``stride_frames`` says otherwise),
      otherwise one dataset per video (stride 16 unless told).
    * a folder: ``<video>.npy`` files (stride 16 unless told).

    >>> store = open_feature_store("synthetic", manifest="activitynet")  # doctest: +SKIP
    >>> store.get("---9CpRcKoU").shape  # doctest: +SKIP
    (26, 500)
    """
    if isinstance(spec, FeatureStore):
        return spec
    if isinstance(spec, str) and spec == "synthetic":
        if manifest is None:
            raise ConfigError("synthetic features need a manifest (its timelines table); pass manifest=...")
        return SyntheticFeatures.from_manifest(
            manifest, seed=seed, skip_missing=skip_missing, **({"dim": dim} if dim else {}), **synthetic
        )
    if synthetic:
        raise ConfigError(f"options {sorted(synthetic)} apply only to synthetic features, not to {spec!s}")
    p = Path(spec)
    if p.is_dir():
        return NpyFolderStore(p, stride_frames=stride_frames or STEP_FRAMES, dim=dim, skip_missing=skip_missing)
    if not p.exists():
        raise FeatureError(
            "feature store not found; expected 'synthetic', an HDF5 file (.h5/.hdf5) or a folder of <video>.npy",
            file=p,
        )
    h5py = _h5py()
    if not h5py.is_hdf5(str(p)):
        raise FeatureError("not an HDF5 file; expected 'synthetic', an .h5/.hdf5 file or a folder of .npy", file=p)
    with h5py.File(p, "r") as f:
        declared = _declared_layout(f, p)
        if declared is not None:
            return ExtractedHDF5Store(p, declared, stride_frames=stride_frames, dim=dim, skip_missing=skip_missing)
        layout = None
        for name in f:
            node = f[name]
            if isinstance(node, h5py.Group) and isinstance(node.get("c3d_features"), h5py.Dataset):
                layout = "c3d"
            elif isinstance(node, h5py.Dataset):
                layout = "per-video"
            if layout:
                break
    if layout == "c3d":
        return C3DHDF5Store(p, stride_frames=stride_frames or 8, dim=dim, skip_missing=skip_missing)
    if layout == "per-video":
        return HDF5Store(p, stride_frames=stride_frames or STEP_FRAMES, dim=dim, skip_missing=skip_missing)
    raise FeatureError(
        "holds neither groups v_<id>/c3d_features (official C3D layout) nor one dataset per video", file=p
    )
