"""HDF5 feature files: one file keyed by video id.

* :class:`HDF5Store` -- one 2-D dataset per video, found through a path template: ``{video}``
  (a dataset at the root, the default), ``v_{video}``, ``{video}/c3d_features``, ... The id
  is tried as given and with the ``v_`` prefix added or removed.
* :class:`C3DHDF5Store` -- the official ActivityNet C3D release
  (``sub_activitynet_v1-3.c3d.hdf5``): group ``v_<id>`` holding ``c3d_features`` ``(T, 500)``,
  16-frame clips every 8 frames.
* :class:`ExtractedHDF5Store` -- a file written by ``relocbench extract-features``
  (``relocbench_features`` attribute): read at the ``step_frames`` it declares.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ..errors import ConfigError, FeatureError
from .base import STEP_FRAMES, FeatureStore, PathLike, shape_triple
from .timeaxis import TimeAxis

__all__ = ["HDF5Store", "C3DHDF5Store", "ExtractedHDF5Store", "id_variants"]


#: The float32 of this machine, read without conversion (the dtype of every release's datasets).
_F32 = np.dtype(np.float32)


def _h5py():
    import h5py

    return h5py


def id_variants(video: str) -> List[str]:
    """The id as given, then with the ``v_`` prefix removed (or added)."""
    return [video, video[2:]] if video.startswith("v_") else [video, "v_" + video]


class HDF5Store(FeatureStore):
    """An HDF5 file holding one 2-D dataset per video at ``key`` (a template with ``{video}``).

    Rows are ``stride_frames`` frames apart at the video's own rate unless ``axis`` (or a
    card) declares another time axis.
    """

    kind = "hdf5"

    def __init__(self, path: PathLike, *, stride_frames: float = STEP_FRAMES, dim: Optional[int] = None,
                 skip_missing: bool = False, cache_mb: Optional[float] = None, key: str = "{video}",
                 axis: Optional[TimeAxis] = None, videos=None, card: Any = None) -> None:
        axis, legacy, self.stride_frames = self._fallback_axis(axis, stride_frames)
        super().__init__(dim=dim, skip_missing=skip_missing, cache_mb=cache_mb, axis=axis, videos=videos,
                         card=card, legacy_stride=legacy)
        self.path = Path(path)
        self.key = key
        self._h5 = None

    @property
    def source(self) -> str:
        return str(self.path)

    def describe(self) -> Dict[str, Any]:
        out = {**super().describe(), "stride_frames": self.stride_frames}
        if self.key != "{video}":
            out["key"] = self.key
        return out

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
        super().close()
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def _node(self, video: str):  # the HDF5 dataset of a video, or None
        f = self._file()
        h5py = _h5py()
        for name in id_variants(video):
            try:
                ds = f.get(self.key.format(video=name))
            except (KeyError, ValueError):
                ds = None
            if isinstance(ds, h5py.Dataset):
                return ds
        return None

    def _has(self, video: str) -> bool:
        return self._node(video) is not None

    def _load_for_steps(self, video: str) -> Optional[np.ndarray]:
        """A 2-D float32 dataset read straight into :meth:`_rows_buffer` through h5py's low-level
        API (``h5d.open`` and ``DatasetID.read``: measured on 2026-12-07, 5 us to open a dataset
        against 45 us for ``File.get``, and no array allocated per video); any other dataset
        through :meth:`_load`."""
        from h5py import h5d, h5i, h5s

        fid = self._file().id
        for name in id_variants(video):
            try:
                dsid = h5d.open(fid, self.key.format(video=name).encode("utf-8"))
            except (KeyError, ValueError):  # missing, or a group: as File.get finds no dataset there
                continue
            shape = dsid.shape
            if len(shape) != 2 or dsid.dtype != _F32 or 0 in shape:
                break  # another dtype or shape: read and reported as every dataset is
            arr = self._rows_buffer(video, int(shape[0]), int(shape[1]))
            try:
                dsid.read(h5s.ALL, h5s.ALL, arr)
            except OSError as exc:  # a damaged or truncated dataset: named, not a traceback
                where = h5i.get_name(dsid).decode("utf-8", errors="replace")
                raise FeatureError(f"unreadable HDF5 dataset {where!r} ({exc})", file=self.path, item=video) from None
            return arr
        return self._load(video)

    def _load(self, video: str) -> Optional[np.ndarray]:
        ds = self._node(video)
        if ds is None:
            return None
        try:
            arr = ds[()]
        except OSError as exc:  # a damaged or truncated dataset: named, not a traceback
            raise FeatureError(f"unreadable HDF5 dataset {ds.name!r} ({exc})", file=self.path, item=video) from None
        if arr.ndim != 2:
            raise FeatureError(
                f"expected a 2-D dataset [rows, dim], found shape {tuple(arr.shape)}", file=self.path, item=video
            )
        return arr

    def shape_of(self, video: str):
        ds = self._node(video)
        if ds is None:
            return None
        return shape_triple(ds.shape, ds.dtype)

    def videos(self) -> List[str]:
        """The video ids of the file (as the template finds them at the root)."""
        f = self._file()
        prefix = self.key.split("{video}", 1)[0]
        out = []
        for name in f:
            vid = name[len(prefix):] if prefix and name.startswith(prefix) else name
            if self._node(vid) is not None:
                out.append(vid)
        return sorted(out)

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


class C3DHDF5Store(HDF5Store):
    """The official ActivityNet C3D release: group ``v_<id>``, dataset ``c3d_features``.

    Rows are 16-frame clips every 8 frames (``stride_frames=8``); on the manifest grid step
    ``j`` (centre frame ``16 j + 8``) is row ``2 j`` (centre ``8 i + 8``). Video ids may be
    given with or without the ``v_`` prefix.
    """

    kind = "c3d-hdf5"

    def __init__(self, path: PathLike, *, dataset: str = "c3d_features", stride_frames: float = 8,
                 dim: Optional[int] = None, skip_missing: bool = False, cache_mb: Optional[float] = None,
                 axis: Optional[TimeAxis] = None, videos=None, card: Any = None) -> None:
        super().__init__(path, stride_frames=stride_frames, dim=dim, skip_missing=skip_missing, cache_mb=cache_mb,
                         key="{video}/" + dataset, axis=axis, videos=videos, card=card)
        self.dataset = dataset

    def describe(self) -> Dict[str, Any]:
        out = super().describe()
        out.pop("key", None)
        return out


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

    A ``stride_frames`` that disagrees with the declared step is a :class:`ConfigError`
    naming the file and both steps (one that agrees is accepted).

    Layout ``relocbench``: one dataset per video, rows ``step_frames`` apart. Layout ``c3d``:
    the official release's groups, rows 8 frames apart. ``attrs`` holds the file's attributes
    (``backbone``, ``weights``, ``step_frames``, ``dim``, ``pca``, ``report``, ...).
    """

    kind = "relocbench-hdf5"
    dataset = "c3d_features"  # the dataset of each group in the c3d layout

    def __init__(self, path: PathLike, attrs: Dict[str, Any], *, stride_frames: Optional[float] = None,
                 dim: Optional[int] = None, skip_missing: bool = False, cache_mb: Optional[float] = None,
                 videos=None) -> None:
        self.attrs = dict(attrs)
        self.layout = self.attrs.get("layout", "relocbench")
        declared = 8 if self.layout == "c3d" else self.attrs["step_frames"]
        if stride_frames is not None and stride_frames != declared:  # never a silent misread
            raise ConfigError(f"declares step_frames {declared!r} (relocbench_features attributes); stride_frames "
                              f"{stride_frames!r} disagrees (leave it out: the file's step is used)", file=path)
        key = "{video}/" + self.dataset if self.layout == "c3d" else "{video}"
        super().__init__(path, stride_frames=declared, dim=dim, skip_missing=skip_missing,
                         cache_mb=cache_mb, key=key, videos=videos)

    def describe(self) -> Dict[str, Any]:
        extra = {k: self.attrs.get(k) for k in ("backbone", "weights", "step_frames", "pca", "layout")}
        out = {**super().describe(), **extra}
        out.pop("key", None)
        return out
