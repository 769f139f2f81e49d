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
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

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
            raise FeatureError(f"PCA expects rows of {self.input_dim} values, got shape {tuple(x.shape)}")
        return ((x.astype(np.float64) - self.mean) @ self.components.T).astype(np.float32)

    def write(self, h5file) -> None:
        g = h5file.create_group(PCA_GROUP, track_order=False)
        for name, arr in (("mean", self.mean), ("components", self.components),
                          ("explained_variance_ratio", self.explained_variance_ratio)):
            g.create_dataset(name, data=np.asarray(arr, dtype=np.float64), track_times=False)
        g.attrs["n_fit_rows"] = int(self.n_fit_rows)
        g.attrs["n_fit_videos"] = int(self.n_fit_videos)

    @classmethod
    def read(cls, h5file, where: str) -> "FeaturePCA":
        g = h5file.get(PCA_GROUP)
        if g is None:
            raise ConfigError(f"holds no fitted PCA (no '{PCA_GROUP}' group); expected a features file "
                              "written with --pca", file=where)
        return cls(mean=g["mean"][()], components=g["components"][()],
                   explained_variance_ratio=g["explained_variance_ratio"][()],
                   n_fit_rows=int(g.attrs["n_fit_rows"]), n_fit_videos=int(g.attrs["n_fit_videos"]))


def load_pca(path: PathLike) -> FeaturePCA:
    """The PCA stored in a features file (``--pca-from``)."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise ConfigError("PCA source not found; expected a features file written with --pca", file=p)
    if not h5py.is_hdf5(str(p)):
        raise ConfigError("not an HDF5 file; expected a features file written with --pca", file=p)
    with h5py.File(p, "r") as f:
        return FeaturePCA.read(f, str(p))


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
