"""Features from real videos: decoding, backbones, PCA, the HDF5 output, sharding and Slurm.

>>> from relocbench.extract import ExtractConfig, extract_video, extract_videos  # doctest: +SKIP
>>> cfg = ExtractConfig(backbone="handcrafted", step_frames=16)                  # doctest: +SKIP
>>> vf = extract_video("clip.mp4", cfg)                                          # doctest: +SKIP
>>> vf.features.shape, vf.fps, vf.n_frames                                       # doctest: +SKIP
((7, 521), 25.0, 100)
>>> extract_videos(["a.mp4", "b.mkv"], cfg, out="features.h5")                   # doctest: +SKIP

The output is read by ``relocbench.features.open_feature_store("features.h5")``.
"""
from __future__ import annotations

from .api import ExtractSummary, extract_video, extract_videos, video_ids
from .backbones import Backbone, list_backbones, make_backbone
from .config import ExtractConfig, VideoFeatures
from .pca import FeaturePCA, fit_pca, load_pca
from .shard import extract_distributed, merge_features, parse_shard

__all__ = [
    "ExtractConfig",
    "VideoFeatures",
    "ExtractSummary",
    "extract_video",
    "extract_videos",
    "extract_distributed",
    "merge_features",
    "make_backbone",
    "list_backbones",
    "Backbone",
    "FeaturePCA",
    "fit_pca",
    "load_pca",
    "parse_shard",
    "video_ids",
]
