"""Border-replicating bilinear sampling and dense-flow warping of channels-first images.

Coordinates are pixel indices in ``(row, col)`` order, as in TensorFlow Addons'
``interpolate_bilinear(indexing="ij")`` and ``dense_image_warp``: pixel ``(i, j)`` is the
centre of row ``i`` and column ``j``, so the corners of an ``H x W`` image are ``(0, 0)`` and
``(H - 1, W - 1)``. Flows are ``(B, 2, H, W)`` tensors whose channel 0 is the row (y)
displacement and channel 1 the column (x) displacement.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError

__all__ = ["bilinear_sample", "dense_image_warp", "pixel_grid"]

_PADDING_MODES = ("border", "zeros")


def _check_image(image: torch.Tensor, name: str, func: str) -> None:
    if not isinstance(image, torch.Tensor) or image.dim() != 4:
        found = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ConfigError(
            f"The '{name}' parameter of {func} must be a (batch, channels, height, width) "
            f"tensor. Got {found} instead."
        )
    if not image.is_floating_point():
        raise ConfigError(
            f"The '{name}' parameter of {func} must be a floating-point tensor. "
            f"Got dtype {image.dtype} instead."
        )


def _check_padding(padding_mode: str, func: str) -> None:
    if padding_mode not in _PADDING_MODES:
        raise ConfigError(
            f"The 'padding_mode' parameter of {func} must be one of {list(_PADDING_MODES)}. "
            f"Got {padding_mode!r} instead."
        )


def _normalise(coord: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel index -> grid_sample coordinate in [-1, 1] (align_corners=True)."""
    if size == 1:
        return torch.zeros_like(coord)
    return coord * (2.0 / (size - 1)) - 1.0


def _sample(image: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
            padding_mode: str) -> torch.Tensor:
    """Sample ``image`` (B, C, H, W) at ``rows``/``cols`` of shape (B, Ho, Wo)."""
    height, width = image.shape[-2:]
    # grid_sample wants (x, y) = (col, row): the swap of TFA's (row, col) order.
    grid = torch.stack((_normalise(cols, width), _normalise(rows, height)), dim=-1)
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear",
                         padding_mode=padding_mode, align_corners=True)


def bilinear_sample(image: torch.Tensor, query_points: torch.Tensor, *,
                    padding_mode: str = "border") -> torch.Tensor:
    """Bilinearly sample ``image`` at fractional ``(row, col)`` query points.

    Args:
        image: ``(B, C, H, W)`` floating-point tensor.
        query_points: ``(B, N, 2)`` tensor of ``(row, col)`` pixel coordinates.
        padding_mode: ``"border"`` replicates the border (TFA ``interpolate_bilinear``:
            per axis, floor clamped to ``[0, size - 2]`` and fraction clamped to ``[0, 1]``);
            ``"zeros"`` treats pixels outside the image as zero.

    Returns:
        ``(B, N, C)`` tensor of sampled values, differentiable in the image and in the
        query points.
    """
    func = "bilinear_sample"
    _check_image(image, "image", func)
    _check_padding(padding_mode, func)
    if query_points.dim() != 3 or query_points.shape[-1] != 2 \
            or query_points.shape[0] != image.shape[0]:
        raise ConfigError(
            f"The 'query_points' parameter of {func} must be a (batch={image.shape[0]}, N, 2) "
            f"tensor of (row, col) points. Got {tuple(query_points.shape)} instead."
        )
    rows = query_points[..., 0].unsqueeze(1)  # (B, 1, N)
    cols = query_points[..., 1].unsqueeze(1)
    out = _sample(image, rows, cols, padding_mode)  # (B, C, 1, N)
    return out[:, :, 0, :].transpose(1, 2)


def pixel_grid(height: int, width: int, *, dtype: torch.dtype = torch.float32,
               device=None) -> torch.Tensor:
    """``(H, W, 2)`` tensor whose entry ``[i, j]`` is ``(i, j)`` (row, col)."""
    rows = torch.arange(height, dtype=dtype, device=device)
    cols = torch.arange(width, dtype=dtype, device=device)
    grid_r, grid_c = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack((grid_r, grid_c), dim=-1)


def dense_image_warp(image: torch.Tensor, flow: torch.Tensor, *,
                     padding_mode: str = "border") -> torch.Tensor:
    """Warp ``image`` by a dense flow: ``out[b, :, i, j] = image[b, :, i - dy, j - dx]``.

    This is TFA's ``dense_image_warp`` for channels-first tensors: ``flow`` is
    ``(B, 2, H, W)`` with ``(dy, dx)`` = ``flow[:, 0], flow[:, 1]``, and the image is sampled
    bilinearly at ``p - flow(p)``, replicating the border by default (``"zeros"`` for the
    zero padding of TrajGRU-style links).
    """
    func = "dense_image_warp"
    _check_image(image, "image", func)
    _check_padding(padding_mode, func)
    b, _, h, w = image.shape
    if flow.shape != (b, 2, h, w):
        raise ConfigError(
            f"The 'flow' parameter of {func} must have shape {(b, 2, h, w)} (batch, (dy, dx), "
            f"height, width) matching the image. Got {tuple(flow.shape)} instead."
        )
    grid = pixel_grid(h, w, dtype=flow.dtype, device=flow.device)
    rows = grid[..., 0] - flow[:, 0]
    cols = grid[..., 1] - flow[:, 1]
    return _sample(image, rows, cols, padding_mode)
