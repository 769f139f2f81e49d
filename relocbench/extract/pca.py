"""PCA of extracted features (scikit-learn), stored in the features file and reused.

Like the 500-d PCA of the official ActivityNet C3D release: fitted once on the rows of a set
of videos (e.g. the training split), then applied identically to every video.
``FeaturePCA.transform`` computes ``(x - mean) @ components.T`` in float64 and rounds to
float32, so a row's projection does not depend on the other rows it is batched with.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..errors import ConfigError, FeatureError

__all__ = ["FeaturePCA", "fit_pca", "PCA_GROUP", "load_pca", "even_rows"]

#: HDF5 group of a features file holding the fitted PCA (``mean``, ``components``, ``explained_variance_ratio``).
PCA_GROUP = "_relocbench_pca"

#: At most this many rows are used to fit (spread evenly over the videos).
MAX_FIT_ROWS = 200_000

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class FeaturePCA:
    mean: np.ndarray                 # [D] float64
    components: np.ndarray           # [N, D] float64
    explained_variance_ratio: np.ndarray  # [N]
    n_fit_rows: int
    n_fit_videos: int
    source: Optional[str] = field(default=None, compare=False)  # the features file it was read from

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    @property
    def input_dim(self) -> int:
        return int(self.components.shape[1])

    @property
    def sha256(self) -> str:
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.mean, dtype="<f8").tobytes())
        h.update(np.ascontiguousarray(self.components, dtype="<f8").tobytes())
        return h.hexdigest()

    def describe(self) -> str:
        """The ``pca`` attribute of the output: ``pca-N sha256:...``."""
        return f"pca-{self.n_components} sha256:{self.sha256}"

    def transform(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise FeatureError(f"PCA expects rows of {self.input_dim} values, got shape {tuple(x.shape)}",
                               file=self.source)
        return ((x.astype(np.float64) - self.mean) @ self.components.T).astype(np.float32)

    def write(self, h5file) -> None:
        g = h5file.create_group(PCA_GROUP, track_order=False)
        for name, arr in (("mean", self.mean), ("components", self.components),
                          ("explained_variance_ratio", self.explained_variance_ratio)):
            g.create_dataset(name, data=np.asarray(arr, dtype=np.float64), track_times=False)
        g.attrs["n_fit_rows"] = int(self.n_fit_rows)
        g.attrs["n_fit_videos"] = int(self.n_fit_videos)

    @classmethod
    def read(cls, h5file, where: str, what: str = "a features file written with --pca") -> "FeaturePCA":
        """The PCA of an open features file, checked: the three arrays present, of matching
        shapes, finite. Raises :class:`FeatureError` naming ``where`` (``ConfigError`` when the
        file holds no PCA at all)."""
        import h5py

        from .h5io import h5_reading, read_attr

        with h5_reading(where, what, PCA_GROUP):
            g = h5file.get(PCA_GROUP)
            if g is None:
                raise ConfigError(f"holds no fitted PCA (no '{PCA_GROUP}' group); expected {what}", file=where)
            if not isinstance(g, h5py.Group):
                raise FeatureError(f"'{PCA_GROUP}' is not a group; expected {what}", file=where)
            arrays = {}
            for name, ndim in (("mean", 1), ("components", 2), ("explained_variance_ratio", 1)):
                ds = g.get(name)
                if not isinstance(ds, h5py.Dataset):
                    raise FeatureError(f"the fitted PCA lacks the dataset {name!r}; expected {what}", file=where,
                                       item=PCA_GROUP)
                a = ds[()]
                if not isinstance(a, np.ndarray) or a.ndim != ndim or a.dtype.kind not in "fiu" or \
                        not np.isfinite(a).all():
                    raise FeatureError(f"the PCA's {name!r} is not a finite {ndim}-d numeric array (found "
                                       f"{getattr(a, 'dtype', type(a).__name__)} shape {np.shape(a)}); expected "
                                       f"{what}", file=where, item=PCA_GROUP)
                arrays[name] = a.astype(np.float64)
            n, d = arrays["components"].shape
            if n < 1 or arrays["mean"].shape != (d,) or arrays["explained_variance_ratio"].shape != (n,):
                raise FeatureError(f"the PCA's arrays disagree: components {n}x{d}, mean {arrays['mean'].shape}, "
                                   f"explained_variance_ratio {arrays['explained_variance_ratio'].shape}; expected "
                                   f"{what}", file=where, item=PCA_GROUP)
            n_rows = read_attr(g.attrs, "n_fit_rows", "count", where, what, item=PCA_GROUP)
            n_videos = read_attr(g.attrs, "n_fit_videos", "count", where, what, item=PCA_GROUP)
        return cls(mean=arrays["mean"], components=arrays["components"],
                   explained_variance_ratio=arrays["explained_variance_ratio"], n_fit_rows=n_rows,
                   n_fit_videos=n_videos, source=str(where))


def load_pca(path: PathLike) -> FeaturePCA:
    """The PCA stored in a features file (``--pca-from``), checked (see :meth:`FeaturePCA.read`)."""
    from .h5io import open_h5

    what = "a features file written with --pca (--pca-from)"
    p = Path(path)
    if not (p.exists() or p.is_symlink()):
        raise ConfigError("PCA source not found; expected a features file written with --pca (--pca-from)", file=p)
    with open_h5(p, what) as f:
        return FeaturePCA.read(f, str(p), what)


def even_rows(rows: np.ndarray, k: int) -> np.ndarray:
    """At most ``k`` evenly spaced rows of ``rows`` (all of them when there are fewer)."""
    if rows.shape[0] <= k:
        return rows
    return rows[np.floor(np.arange(k) * (rows.shape[0] / k)).astype(np.int64)]


def fit_pca(rows_per_video: Sequence[np.ndarray], n_components: int, *, max_rows: int = MAX_FIT_ROWS) -> FeaturePCA:
    """Fit a PCA with ``n_components`` on the rows of the given videos (in the given order).

    When the videos hold more than ``max_rows`` rows, each video contributes evenly spaced
    rows (the same share of its rows for every video).
    """
    from sklearn.decomposition import PCA

    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) or n_components < 1:
        raise ConfigError(f"The 'pca' parameter must be an int >= 1. Got {n_components!r} instead.")
    videos = [np.asarray(r) for r in rows_per_video]
    total = sum(int(r.shape[0]) for r in videos)
    if total == 0:
        raise ConfigError("no rows to fit the PCA on: every --pca-fit video failed or none was given")
    keep = 1.0 if total <= max_rows else max_rows / total
    x = np.concatenate([even_rows(r, max(1, int(math.floor(r.shape[0] * keep)))) for r in videos])
    x = x.astype(np.float64)
    limit = min(x.shape[0], x.shape[1])
    if n_components > limit:
        raise ConfigError(
            f"--pca {n_components} needs at least {n_components} fitting rows and input dimensions; "
            f"the --pca-fit videos give {x.shape[0]} rows of {x.shape[1]} values"
        )
    pca = PCA(n_components=int(n_components), svd_solver="full")
    pca.fit(x)
    return FeaturePCA(mean=pca.mean_.astype(np.float64), components=pca.components_.astype(np.float64),
                      explained_variance_ratio=pca.explained_variance_ratio_.astype(np.float64),
                      n_fit_rows=int(x.shape[0]), n_fit_videos=len(videos))
