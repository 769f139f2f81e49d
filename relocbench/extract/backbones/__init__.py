"""Backbones: ``handcrafted``, torchvision video models and per-frame image models."""
from __future__ import annotations

from ...errors import ConfigError
from .base import BACKBONES, Backbone, list_backbones, register_backbone
from . import handcrafted  # noqa: F401  (registers "handcrafted")
from . import torchvision_models  # noqa: F401  (registers the video and image models)

__all__ = ["Backbone", "make_backbone", "list_backbones", "register_backbone"]


def make_backbone(cfg) -> Backbone:
    """The backbone ``cfg.backbone`` with ``cfg.weights`` loaded (see :class:`ExtractConfig`)."""
    factory = BACKBONES.get(cfg.backbone)
    if factory is None:
        raise ConfigError(f"unknown backbone {cfg.backbone!r}; expected one of {', '.join(list_backbones())}")
    return factory(cfg)
