"""The interface every backbone implements, and the registry ``make_backbone`` reads."""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List

import numpy as np

from ...errors import ConfigError

__all__ = ["Backbone", "register_backbone", "list_backbones", "BACKBONES", "WEIGHTS_NOTE_RANDOM"]

#: ``weights_note`` of a model whose weights are random (``--weights none``).
WEIGHTS_NOTE_RANDOM = "random initialisation (seed 0), not a trained model: for tests only"


class Backbone:
    """Turns a stream of decoded frames (BGR ``uint8`` ``[H, W, 3]``) into one row per step.

    ``rows(frames, fps, step_frames)`` consumes the frames once, in order, keeping only what
    a step (or a clip around it) needs, and returns float32 ``[ceil(n / step_frames), dim]``.
    ``attrs()`` describes the settings that produced the rows (written into the output and
    compared on ``--resume``): at least ``backbone``, ``weights`` (sha256 of the weights file
    or ``"none"``), ``weights_note`` and ``dim``.
    """

    name = "base"
    dim = 0

    def rows(self, frames: Iterator[np.ndarray], fps: float, step_frames: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def attrs(self) -> Dict[str, Any]:  # pragma: no cover
        raise NotImplementedError


#: name -> factory(config) -> Backbone. Filled by the backbone modules.
BACKBONES: Dict[str, Callable[..., Backbone]] = {}


def register_backbone(*names: str) -> Callable:
    """Decorator registering a factory ``f(config) -> Backbone`` under ``names``."""

    def deco(fn: Callable) -> Callable:
        for n in names:
            BACKBONES[n] = fn
        return fn

    return deco


def list_backbones() -> List[str]:
    return sorted(BACKBONES)


def check_rows(rows: List[np.ndarray], dim: int, name: str) -> np.ndarray:
    if not rows:
        raise ConfigError(f"backbone {name!r} produced no rows")  # the decoder raises first on 0 frames
    out = np.stack(rows).astype(np.float32, copy=False)
    if out.shape[1] != dim:
        raise ConfigError(f"backbone {name!r} produced {out.shape[1]}-d rows, expected {dim}")
    return out
