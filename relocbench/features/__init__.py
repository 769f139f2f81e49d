"""Feature stores: where the per-step video features of the temporal baselines come from.

Every store has one small interface::

    store.get(video) -> float32 array [n_steps, dim]   # one row per 16-frame step
    store.dim                                           # feature dimension
    video in store                                      # cheap membership test

A feature source is a file layout plus a time axis, both declared (a preset or a feature
card), never guessed from the row count:

* layouts: one HDF5 file keyed by video id (:class:`HDF5Store`, :class:`C3DHDF5Store`,
  :class:`ExtractedHDF5Store` for ``relocbench extract-features`` files) or a folder of
  per-video ``.npy`` / ``.npz`` / ``.pt`` / ``.pth`` / ``.csv`` files (:class:`FolderStore`,
  :class:`NpyFolderStore`), in :mod:`.hdf5` and :mod:`.folder`;
* time axes (:class:`TimeAxis`, :mod:`.timeaxis`): ``clips`` (clips of ``clip_frames``
  every ``stride_frames`` frames at ``fps``) or ``resized`` (``rows`` rows over the video);
* cards and presets (:class:`FeatureCard`, :data:`PRESETS`, :mod:`.cards`);
* :class:`SyntheticFeatures` (the default, :mod:`.synthetic`): deterministic features
  rendered on the real ActivityNet timelines of the manifest's ``timelines`` table.

**On the manifest grid.** With the manifest's durations (``open_feature_store(...,
manifest=...)``) step ``j`` of a video (native frames ``16 j .. 16 j + 15``) gets the rows
linearly interpolated at its centre ``(16 j + 8) * duration / n_frames`` s, and a video
whose rows do not cover its duration (beyond one clip stride) is a :class:`FeatureError`
naming the file, the video, the rows found and the rows expected.

**Undeclared features (Python only).** An HDF5 file or ``.npy`` folder opened without a
card keeps the former rule: rows ``stride_frames`` frames apart (8 for the official C3D
layout, else 16) at the video's own rate, clips of 16 frames. Without a manifest, step ``j``
takes row ``floor(16 j / stride_frames)`` (:func:`resample_rows`), a release of ``T`` rows
giving ``ceil(T * stride_frames / 16)`` steps.

**Speed.** Each read costs the file read, one pass of the finite check and the mapping. The
mapping of a row count onto a video's steps is planned once (:func:`~.timeaxis.grid_plan`,
cached): rows that sit on the step centres (native rate, stride 16 from frame 0) are returned
as read, without a copy; whole row indices (the C3D release's rows ``2 j``) are one gather;
only other axes interpolate, in cache-sized blocks. Every path returns the general rule's
values bit for bit (``tests/test_features_grid.py``). ``.npy`` files under 256 MiB are read,
not memory-mapped; an HDF5 file stays open between reads. ``benchmarks/bench_features.py``
compares a store with a plain read loop.

**Errors.** A missing video, a wrong dimension, an array that is not 2-D or holds no rows,
rows that do not cover the video, and NaN or infinite values raise
:class:`relocbench.errors.FeatureError` naming the store's file and the video. With
``skip_missing=True``, :meth:`FeatureStore.try_get` and :meth:`FeatureStore.get_many` count
*missing* videos in ``store.report`` (a :class:`relocbench.datasets.common.Report`) and
leave them out; malformed or mismatched features are always an error.
"""
from __future__ import annotations

from .base import DEFAULT_CACHE_MB, STEP_FRAMES, FeatureStore, data_sha256, default_cache_mb, resample_rows, stable_rng
from .cards import PRESETS, FeatureCard, find_card, load_card, preset
from .factory import check_declared, open_feature_store, resolve_card, store_from_card
from .folder import FolderStore, NpyFolderStore
from .hdf5 import C3DHDF5Store, ExtractedHDF5Store, HDF5Store
from .inspection import inspect_features
from .synthetic import TIMELINE_COLUMNS, SyntheticFeatures
from .timeaxis import TimeAxis, VideoInfo, video_infos

__all__ = [
    "STEP_FRAMES",
    "DEFAULT_CACHE_MB",
    "default_cache_mb",
    "FeatureStore",
    "C3DHDF5Store",
    "HDF5Store",
    "ExtractedHDF5Store",
    "NpyFolderStore",
    "FolderStore",
    "SyntheticFeatures",
    "TIMELINE_COLUMNS",
    "open_feature_store",
    "resample_rows",
    "stable_rng",
    "TimeAxis",
    "VideoInfo",
    "video_infos",
    "FeatureCard",
    "PRESETS",
    "preset",
    "load_card",
    "find_card",
    "resolve_card",
    "check_declared",
    "store_from_card",
    "data_sha256",
    "inspect_features",
]
