"""Differentiable warping operators used by the spatio-temporal baselines.

PyTorch ports, with identical semantics, of TensorFlow Addons' ``interpolate_spline``,
``sparse_image_warp``, ``dense_image_warp`` and ``interpolate_bilinear`` (see
reference-algorithms.md, Sec. 5), for channels-first ``(B, C, H, W)`` images and
``(row, col)`` point coordinates.
"""
from .sampling import bilinear_sample, dense_image_warp, pixel_grid
from .sparse_warp import boundary_points, sparse_image_warp
from .spline import EPS, SUPPORTED_ORDERS, apply_interpolation, interpolate_spline, phi, \
    solve_interpolation

__all__ = [
    "EPS",
    "SUPPORTED_ORDERS",
    "apply_interpolation",
    "bilinear_sample",
    "boundary_points",
    "dense_image_warp",
    "interpolate_spline",
    "phi",
    "pixel_grid",
    "solve_interpolation",
    "sparse_image_warp",
]
