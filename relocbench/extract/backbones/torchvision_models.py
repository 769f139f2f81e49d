"""torchvision backbones: Kinetics-400 video models and per-frame ImageNet models.

Weights are resolved in a fixed order and the output says which was used:

* ``--weights FILE``: a state dict (``torch.load(..., weights_only=True)``), recorded by its sha256;
* ``--weights auto``: torchvision's own cached file (``$TORCH_HOME/hub/checkpoints/<file name of
  the weights' URL>``) when it is on disk; otherwise an error saying where to put it. Nothing is
  ever downloaded;
* ``--weights none``: random weights (``torch.manual_seed(0)``), marked ``weights = none`` with a
  ``weights_note`` saying so: for tests only.

Input handling comes from the weights' own metadata: the transforms (resize, crop, mean and
std) of ``weights.transforms()``, and for video models the clip length of their evaluation
(``clip_len`` in the weights' documentation: 16 frames for the ResNet-3D family and the
MViTs, 32 for Swin3D, 128 for S3D). Video models: step ``j`` gets one clip of ``clip_len``
consecutive frames centred on the step (frame indices clamped at the video's ends); image
models: every frame of the step, features averaged. Features are the penultimate layer (the
classifier replaced by an identity).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from ...errors import ConfigError
from ...io import sha256_file
from ..config import resolve_device
from .base import WEIGHTS_NOTE_RANDOM, Backbone, check_rows, register_backbone

__all__ = ["TorchvisionVideo", "TorchvisionImage", "resolve_weights", "VIDEO_MODELS", "IMAGE_MODELS"]

#: Video models and the attribute holding their classifier (replaced by an identity).
VIDEO_MODELS = {"r3d_18": "fc", "mc3_18": "fc", "r2plus1d_18": "fc", "s3d": "classifier", "mvit_v1_b": "head",
                "mvit_v2_s": "head", "swin3d_t": "head", "swin3d_s": "head", "swin3d_b": "head"}
#: Image models and their classifier attribute.
IMAGE_MODELS = {"resnet18": "fc", "resnet34": "fc", "resnet50": "fc", "resnet101": "fc", "resnet152": "fc",
                "resnext50_32x4d": "fc", "wide_resnet50_2": "fc", "mobilenet_v3_small": "classifier",
                "mobilenet_v3_large": "classifier", "efficientnet_b0": "classifier", "convnext_tiny": "classifier",
                "vit_b_16": "heads"}


def _torch():
    import torch

    return torch


def _default_weights(name: str):
    import torchvision.models as M

    return M.get_model_weights(name).DEFAULT


def resolve_weights(name: str, spec: str) -> Tuple[Optional[Dict[str, Any]], str, str]:
    """``(state dict or None, weights id, note)`` for ``--weights spec`` of model ``name``."""
    torch = _torch()
    enum = _default_weights(name)
    if spec == "none":
        return None, "none", WEIGHTS_NOTE_RANDOM
    if spec == "auto":
        from torch.hub import get_dir

        fname = os.path.basename(enum.url)
        path = Path(get_dir()) / "checkpoints" / fname
        if not path.is_file():
            raise ConfigError(
                f"no cached weights for {name} ({enum}): put {fname} (from {enum.url}) at {path}, "
                "or pass --weights FILE (a state dict) or --weights none (random, for tests)"
            )
        note = f"torchvision {enum} (cached file {path})"
    else:
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"weights file not found; expected a state dict for {name} (or --weights auto/none)",
                              file=path)
        note = f"state dict {path.name}"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; one message for all
        raise ConfigError(f"not a readable state dict for {name} ({type(exc).__name__}: {exc})", file=path) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"expected a state dict (a dict of tensors) for {name}, found {type(state).__name__}",
                          file=path)
    return state, sha256_file(path), note


def _as_list(v) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _clip_len(enum) -> int:
    m = re.search(r"clip_len=(\d+)", enum.meta.get("_docs", ""))
    if not m:
        raise ConfigError(f"the metadata of {enum} does not state the clip length (clip_len) it was evaluated with")
    return int(m.group(1))


class _TorchvisionBase(Backbone):
    heads: Dict[str, str] = {}

    def __init__(self, name: str, weights: str, device: str, batch_size: int, options: Dict[str, Any]) -> None:
        import torchvision.models as M

        torch = _torch()
        extra = set(options) - {"crop_size", "resize_size"}
        if extra:
            raise ConfigError(f"unknown option(s) {sorted(extra)} for backbone {name!r}; expected crop_size, "
                              "resize_size")
        self.name = name
        self.enum = _default_weights(name)
        state, self.weights_id, self.weights_note = resolve_weights(name, weights)
        torch.manual_seed(0)
        model = M.get_model(name, weights=None)
        if state is not None:
            try:
                model.load_state_dict(state)
            except RuntimeError as exc:
                first = str(exc).strip().splitlines()
                raise ConfigError(f"the weights do not fit {name}: {' '.join(first[:2])[:300]}") from None
        head = self.heads[name]
        setattr(model, head, torch.nn.Identity())
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        self.batch_size = batch_size
        tf = self.enum.transforms()
        self.crop = [int(x) for x in _as_list(options.get("crop_size", tf.crop_size))]
        self.resize = [int(x) for x in _as_list(options.get("resize_size", tf.resize_size))]
        self.mean = [float(x) for x in tf.mean]
        self.std = [float(x) for x in tf.std]
        preset = type(tf)  # torchvision's VideoClassification / ImageClassification
        if self.video:
            self.crop = self.crop * 2 if len(self.crop) == 1 else self.crop
            self.transform = preset(crop_size=self.crop, resize_size=self.resize, mean=tf.mean, std=tf.std,
                                    interpolation=tf.interpolation)
        else:  # ImageClassification takes one int for each size
            self.transform = preset(crop_size=self.crop[0], resize_size=self.resize[0], mean=tf.mean, std=tf.std,
                                    interpolation=tf.interpolation, antialias=tf.antialias)
        self.sizes_overridden = bool({"crop_size", "resize_size"} & set(options))
        self.dim = self._probe_dim()

    def _probe_dim(self) -> int:
        torch = _torch()
        with torch.no_grad():
            x = torch.zeros(self._probe_shape(), device=self.device)
            return int(self.model(x).reshape(1, -1).shape[1])

    def attrs(self) -> Dict[str, Any]:
        return {"backbone": self.name, "weights": self.weights_id, "weights_note": self.weights_note,
                "dim": self.dim, "weights_meta": str(self.enum), "crop_size": list(self.crop),
                "resize_size": list(self.resize), "mean": self.mean, "std": self.std}

    def _prepare(self, frames_rgb: "Any"):
        """uint8 ``[T, H, W, 3]`` RGB -> float ``[T, 3, crop, crop]`` through the weights' own transform."""
        torch = _torch()
        x = torch.from_numpy(frames_rgb).permute(0, 3, 1, 2)
        if self.video:
            return self.transform(x).permute(1, 0, 2, 3)  # VideoClassification gives [3, T, h, w]
        return self.transform(x)

    def _forward(self, batch):
        torch = _torch()
        with torch.no_grad():
            return self.model(batch.to(self.device)).reshape(batch.shape[0], -1).float().cpu().numpy()


class TorchvisionVideo(_TorchvisionBase):
    heads = VIDEO_MODELS
    video = True

    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.clip_len = _clip_len(self.enum)

    def _probe_shape(self):
        return (1, 3, _clip_len(self.enum), self.crop[0], self.crop[-1])

    def attrs(self) -> Dict[str, Any]:
        return {**super().attrs(), "clip_len": self.clip_len}

    def rows(self, frames: Iterator[np.ndarray], fps: float, step_frames: int) -> np.ndarray:
        """One clip of ``clip_len`` frames centred on each step, batched ``batch_size`` clips at a time.

        Frames are kept preprocessed (resized, cropped, normalised) in a window that holds the
        frames of the clips not yet run: ``clip_len + step_frames`` frames at most.
        """
        import cv2

        torch = _torch()
        L = self.clip_len
        buf: Dict[int, Any] = {}
        out: List[np.ndarray] = []
        clips: List[Any] = []
        n = 0
        next_step = 0

        def clip_for(j: int, last: int):
            centre = step_frames * j + (step_frames - 1) / 2.0
            first = int(np.floor(centre - (L - 1) / 2.0 + 1e-9))
            idx = np.clip(np.arange(first, first + L), 0, last)
            return torch.stack([buf[int(i)] for i in idx], dim=1)  # [3, L, h, w]

        def need(j: int) -> int:  # last frame index clip j reads
            centre = step_frames * j + (step_frames - 1) / 2.0
            return int(np.floor(centre - (L - 1) / 2.0 + 1e-9)) + L - 1

        def flush(force: bool = False):
            if clips and (force or len(clips) >= self.batch_size):
                out.extend(self._forward(torch.stack(clips)))
                clips.clear()

        for frame in frames:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            buf[n] = self._prepare(rgb[None])[0]
            n += 1
            while need(next_step) <= n - 1:
                clips.append(clip_for(next_step, n - 1))
                next_step += 1
                flush()
                lo = need(next_step) - L + 1
                for i in [i for i in buf if i < lo and i < n - 1]:
                    del buf[i]
        n_steps = -(-n // step_frames)
        while next_step < n_steps:
            clips.append(clip_for(next_step, n - 1))
            next_step += 1
            flush()
        flush(force=True)
        return check_rows(out, self.dim, self.name)


class TorchvisionImage(_TorchvisionBase):
    heads = IMAGE_MODELS
    video = False

    def _probe_shape(self):
        return (1, 3, self.crop[0], self.crop[-1])

    def rows(self, frames: Iterator[np.ndarray], fps: float, step_frames: int) -> np.ndarray:
        """Every frame through the model (``batch_size`` frames a pass), averaged per step."""
        import cv2

        torch = _torch()
        sums: Dict[int, np.ndarray] = {}
        counts: Dict[int, int] = {}
        batch: List[Any] = []
        owners: List[int] = []
        n = 0

        def flush():
            if batch:
                feats = self._forward(torch.stack(batch)).astype(np.float64)
                for j, f in zip(owners, feats):
                    sums[j] = sums.get(j, 0.0) + f
                    counts[j] = counts.get(j, 0) + 1
                batch.clear()
                owners.clear()

        for frame in frames:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            batch.append(self._prepare(rgb[None])[0])
            owners.append(n // step_frames)
            n += 1
            if len(batch) >= self.batch_size:
                flush()
        flush()
        return check_rows([(sums[j] / counts[j]).astype(np.float32) for j in sorted(sums)], self.dim, self.name)


def _factory(cls) -> Callable:
    def make(cfg):
        return cls(cfg.backbone, cfg.weights, cfg.device, cfg.batch_size, cfg.options)

    return make


register_backbone(*VIDEO_MODELS)(_factory(TorchvisionVideo))
register_backbone(*IMAGE_MODELS)(_factory(TorchvisionImage))
