"""Sparse image warping by a polyharmonic spline (TensorFlow Addons ``sparse_image_warp``).

Control points at ``source`` positions are moved to ``dest`` positions; the dense flow is
the spline that interpolates the flows ``dest - source`` *at the destination points* (the
inverse map), optionally with extra zero-flow points on the image border, and the output is
``out(p) = image(p - flow(p))`` sampled bilinearly with border replication. Hence at a
destination point the output equals the image at its source point.
"""
from __future__ import annotations

from typing import Tuple

import torch

from ..errors import ConfigError
from .sampling import dense_image_warp, pixel_grid
from .spline import interpolate_spline

__all__ = ["boundary_points", "sparse_image_warp"]


def boundary_points(height: int, width: int, num_boundary_points: int, *,
                    dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Zero-flow border points of TFA's ``sparse_image_warp``, ``(P, 2)`` in (row, col).

    An ``(n + 1) x (n + 1)`` grid of evenly spaced points over ``[0, H-1] x [0, W-1]``
    (``n = num_boundary_points``), keeping the ``4 n`` points that lie on the border, in
    row-major order: ``n = 1`` gives the four corners, ``n = 2`` the corners and the middle
    of each edge, and so on (``n = 0``: no points).
    """
    if isinstance(num_boundary_points, bool) or not isinstance(num_boundary_points, int) \
            or num_boundary_points < 0:
        raise ConfigError(
            "The 'num_boundary_points' parameter of boundary_points must be an int >= 0. "
            f"Got {num_boundary_points!r} instead."
        )
    if num_boundary_points == 0:
        return torch.zeros(0, 2, dtype=dtype, device=device)
    steps = num_boundary_points + 1
    rows = torch.linspace(0, height - 1, steps, dtype=torch.float64)
    cols = torch.linspace(0, width - 1, steps, dtype=torch.float64)
    grid_r, grid_c = torch.meshgrid(rows, cols, indexing="ij")
    idx = torch.arange(steps)
    ir, ic = torch.meshgrid(idx, idx, indexing="ij")
    on_border = (ir == 0) | (ir == steps - 1) | (ic == 0) | (ic == steps - 1)
    points = torch.stack((grid_r[on_border], grid_c[on_border]), dim=-1)
    return points.to(dtype=dtype, device=device)


def sparse_image_warp(image: torch.Tensor, source_control_points: torch.Tensor,
                      dest_control_points: torch.Tensor, *, interpolation_order: int = 2,
                      regularization_weight: float = 0.0, num_boundary_points: int = 0
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Warp ``image`` so that the pixels at ``source`` control points move to ``dest``.

    Args:
        image: ``(B, C, H, W)`` floating-point tensor.
        source_control_points: ``(B, N, 2)`` (row, col) pixel positions.
        dest_control_points: ``(B, N, 2)`` (row, col) pixel positions.
        interpolation_order: polyharmonic order k >= 1 (phi(r) = r^k for odd k, r^k log r for even k).
        regularization_weight: spline regularisation ``lambda >= 0``.
        num_boundary_points: ``n``; when > 0, ``4 n`` zero-flow points on the border
            (see :func:`boundary_points`) join the destination points.

    Returns:
        ``(warped, flow)``: the ``(B, C, H, W)`` warped image and the ``(B, 2, H, W)`` dense
        ``(dy, dx)`` flow, with ``warped(p) = image(p - flow(p))``. Both are differentiable in
        the image and in the control points.
    """
    func = "sparse_image_warp"
    if not isinstance(image, torch.Tensor) or image.dim() != 4:
        found = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ConfigError(
            f"The 'image' parameter of {func} must be a (batch, channels, height, width) "
            f"tensor. Got {found} instead."
        )
    b, _, h, w = image.shape
    for name, pts in (("source_control_points", source_control_points),
                      ("dest_control_points", dest_control_points)):
        if not isinstance(pts, torch.Tensor) or pts.dim() != 3 or pts.shape[0] != b \
                or pts.shape[-1] != 2:
            found = tuple(pts.shape) if isinstance(pts, torch.Tensor) else type(pts).__name__
            raise ConfigError(
                f"The '{name}' parameter of {func} must be a (batch={b}, n, 2) tensor of "
                f"(row, col) points. Got {found} instead."
            )
    if source_control_points.shape != dest_control_points.shape:
        raise ConfigError(
            f"The 'dest_control_points' parameter of {func} must have the shape of "
            f"'source_control_points' {tuple(source_control_points.shape)}. "
            f"Got {tuple(dest_control_points.shape)} instead."
        )
    # The spline is solved in float64 whatever the image dtype (it is tiny: (n + 3)^2 per
    # item, and order-2 kernels of map-sized distances lose ~1e-3 pixel in float32); the
    # dense flow is cast back to the image dtype before sampling.
    dtype = torch.float64
    dest = dest_control_points.to(dtype)
    flows = dest - source_control_points.to(dtype)
    border = boundary_points(h, w, num_boundary_points, dtype=dtype, device=image.device)
    if border.shape[0]:
        border = border.unsqueeze(0).expand(b, -1, -1)
        dest = torch.cat((dest, border), 1)
        flows = torch.cat((flows, torch.zeros_like(border)), 1)
    grid = pixel_grid(h, w, dtype=dtype, device=image.device).reshape(1, h * w, 2)
    dense = interpolate_spline(dest, flows, grid.expand(b, -1, -1), interpolation_order,
                               regularization_weight)
    dense = dense.transpose(1, 2).reshape(b, 2, h, w).to(image.dtype)
    return dense_image_warp(image, dense, padding_mode="border"), dense
