"""Settings of a feature extraction (:class:`ExtractConfig`) and what one video gives (:class:`VideoFeatures`)."""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Union

import numpy as np

from ..errors import ConfigError

__all__ = ["ExtractConfig", "VideoFeatures", "FORMAT_VERSION", "MAX_STEP_FRAMES", "resolve_device"]

#: Value of the ``relocbench_features`` file attribute (format version of the HDF5 output).
FORMAT_VERSION = 1

#: Largest ``step_frames``: far beyond any video's frame count (a day at 24,000 fps), and an
#: int32, so the file attribute stays a plain integer.
MAX_STEP_FRAMES = 2 ** 31 - 1

PathLike = Union[str, os.PathLike]


@dataclass
class ExtractConfig:
    """What to extract and how.

    * ``backbone``: ``"handcrafted"`` (default, no weights), a torchvision video model
      (``r3d_18``, ``mc3_18``, ``r2plus1d_18``, ``s3d``, ``mvit_v1_b``, ``mvit_v2_s``,
      ``swin3d_t``, ...) or a per-frame image model (``resnet50``, ``resnet18``, ...).
    * ``weights``: ``"auto"`` (torchvision's cached file; an error saying where to put it when
      it is not on disk), a path to a state dict, or ``"none"`` (random, seeded; for tests,
      marked in the output).
    * ``step_frames``: frames per output row (step ``j`` covers frames ``step*j .. step*j+step-1``).
    * ``device``: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    * ``batch_size``: clips (video models) or frames (image models) per forward pass.
    * ``pca``: ``None``, a fitted :class:`relocbench.extract.pca.FeaturePCA`, or a path to a
      features file whose fitted PCA is reused (``--pca-from``). Fitting a new PCA is done by
      :func:`relocbench.extract.extract_videos` with ``pca_components``/``pca_fit``.
    * ``options``: backbone options (handcrafted: ``flow`` = ``"dis"`` or ``"farneback"``;
      torchvision models: ``crop_size``, ``resize_size`` to override the weights' input size,
      recorded in the output).
    """

    backbone: str = "handcrafted"
    weights: str = "auto"
    step_frames: int = 16
    device: str = "auto"
    batch_size: int = 8
    pca: Any = None
    options: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.backbone, str) or not self.backbone:
            raise ConfigError(f"The 'backbone' parameter must be a non-empty string. Got {self.backbone!r} instead.")
        if isinstance(self.weights, os.PathLike):
            self.weights = os.fspath(self.weights)
        if not isinstance(self.weights, str) or not self.weights:
            raise ConfigError(
                f"The 'weights' parameter must be 'auto', 'none' or a file path. Got {self.weights!r} instead."
            )
        if isinstance(self.step_frames, bool) or not isinstance(self.step_frames, (int, np.integer)) \
                or not 1 <= self.step_frames <= MAX_STEP_FRAMES:
            raise ConfigError(
                f"The 'step_frames' parameter must be an int in [1, {MAX_STEP_FRAMES}]. Got {self.step_frames!r} "
                "instead."
            )
        self.step_frames = int(self.step_frames)
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, (int, np.integer)) \
                or self.batch_size < 1:
            raise ConfigError(f"The 'batch_size' parameter must be an int >= 1. Got {self.batch_size!r} instead.")
        self.batch_size = int(self.batch_size)
        if not isinstance(self.device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(
                f"The 'device' parameter must be 'auto', 'cpu', 'cuda' or 'cuda:N'. Got {self.device!r} instead."
            )
        if isinstance(self.pca, os.PathLike):
            self.pca = os.fspath(self.pca)
        if not isinstance(self.options, Mapping):
            raise ConfigError(f"The 'options' parameter must be a dict. Got {self.options!r} instead.")
        self.options = dict(self.options)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda[:N]`` checked to exist."""
    if device == "cpu":
        return "cpu"
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA device; use --device cpu or auto")
    idx = int(device.split(":")[1]) if ":" in device else 0
    if idx >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r} asked for, but torch sees {torch.cuda.device_count()} CUDA device(s)")
    return device


@dataclass
class VideoFeatures:
    """Features of one video (or of the part between ``start_s`` and ``end_s``).

    ``features`` is float32 ``[n_steps, dim]`` with ``n_steps = ceil(n_frames / step_frames)``;
    row ``j`` covers decoded frames ``start_frame + step_frames*j ..`` (+ ``step_frames - 1``).
    ``n_frames`` counts the frames decoded (of the part, when cut); ``fps`` is the stream's
    average rate; ``sha256`` the source file's; ``attrs`` the settings that produced the rows
    (``backbone``, ``weights``, ``step_frames``, ``dim``, ``pca`` and backbone details);
    ``warnings`` what the decoder noticed (variable frame rate, rotation applied, frame count
    differing from the container's).
    """

    video: str
    features: np.ndarray
    fps: float
    n_frames: int
    sha256: str
    source: str
    attrs: Dict[str, Any]
    start_frame: int = 0
    warnings: tuple = ()

    @property
    def n_steps(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps if self.fps > 0 and math.isfinite(self.fps) else float("nan")
