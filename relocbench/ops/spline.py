"""Polyharmonic spline interpolation (TensorFlow Addons ``interpolate_spline`` semantics).

The spline through centres ``c_i`` with values ``f_i`` is

    s(x) = sum_i w_i phi(||x - c_i||^2) + v^T [x; 1]

with ``phi`` applied to the *squared* distance ``r2`` (``EPS = 1e-10``). Every integer order
``k >= 1`` is accepted, with TensorFlow Addons' kernels ``phi(r) = r^k`` (odd ``k``) and
``phi(r) = r^k log r`` (even ``k``) written in ``r2`` and guarded exactly as TFA guards them:

    order 1:       sqrt(max(r2, EPS))                        (so phi(0) = 1e-5)
    order 2:       0.5 * r2 * log(max(r2, EPS))              (phi(0) = 0)
    order 4:       0.5 * r2**2 * log(max(r2, EPS))           (phi(0) = 0)
    other even k:  0.5 * c**(k/2) * log(c), c = max(r2, EPS) (phi(0) = 0.5 EPS^(k/2) log EPS)
    odd k:         c**(k/2), c = max(r2, EPS)                (phi(0) = EPS^(k/2))

and ``(w, v)`` solve ``[[A + lambda I, B], [B^T, 0]] [w; v] = [f; 0]`` where
``A = phi(pairwise squared distances of the centres)`` and ``B = [c, 1]``; ``lambda`` is added
only when it is > 0. Everything is batched: one ``torch.linalg.solve`` for the whole batch,
differentiable in the centres, the values and the query points.
"""
from __future__ import annotations

import numbers
import sys
from typing import Tuple

import torch

from ..errors import ConfigError

__all__ = ["EPS", "SUPPORTED_ORDERS", "phi", "solve_interpolation", "apply_interpolation",
           "interpolate_spline"]

EPS = 1e-10
#: Every integer order ``k >= 1`` (``order in SUPPORTED_ORDERS`` tests it).
SUPPORTED_ORDERS = range(1, sys.maxsize)


def _check_order(order: int, func: str) -> None:
    if isinstance(order, bool) or not isinstance(order, numbers.Integral) or order < 1:
        raise ConfigError(
            f"The 'order' parameter of {func} must be an int >= 1. Got {order!r} instead."
        )


def phi(r2: torch.Tensor, order: int) -> torch.Tensor:
    """Polyharmonic kernel ``r^k`` (odd ``k``) or ``r^k log r`` (even ``k``) of squared
    distances ``r2``, with TensorFlow Addons' guards against ``r2 = 0`` (module docstring)."""
    _check_order(order, "phi")
    order = int(order)
    clamped = torch.clamp_min(r2, EPS)
    if order == 1:
        return torch.sqrt(clamped)
    if order == 2:  # the prefactor is not clamped: phi(0) = 0 exactly
        return 0.5 * r2 * torch.log(clamped)
    if order == 4:
        return 0.5 * r2.square() * torch.log(clamped)
    if order % 2 == 0:  # r^k log r = 0.5 (r2)^(k/2) log r2, both factors clamped
        return 0.5 * torch.pow(clamped, 0.5 * order) * torch.log(clamped)
    return torch.pow(clamped, 0.5 * order)


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(B, N, D), (B, M, D) -> (B, N, M)`` squared Euclidean distances.

    Computed from coordinate differences (not the ``|a|^2 - 2ab + |b|^2`` expansion) so that
    coincident points give exactly 0 and gradients stay finite.
    """
    return (a.unsqueeze(2) - b.unsqueeze(1)).square().sum(-1)


def _check_points(points: torch.Tensor, name: str, func: str) -> None:
    if not isinstance(points, torch.Tensor) or points.dim() != 3:
        found = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
        raise ConfigError(
            f"The '{name}' parameter of {func} must be a (batch, n, dims) tensor. "
            f"Got {found} instead."
        )
    if not points.is_floating_point():
        raise ConfigError(
            f"The '{name}' parameter of {func} must be a floating-point tensor. "
            f"Got dtype {points.dtype} instead."
        )


def solve_interpolation(train_points: torch.Tensor, train_values: torch.Tensor, order: int,
                        regularization_weight: float = 0.0
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Spline coefficients ``w`` ``(B, N, K)`` and ``v`` ``(B, D + 1, K)``.

    ``train_points`` is ``(B, N, D)``, ``train_values`` is ``(B, N, K)``.
    """
    func = "solve_interpolation"
    _check_order(order, func)
    _check_points(train_points, "train_points", func)
    _check_points(train_values, "train_values", func)
    if train_values.shape[:2] != train_points.shape[:2]:
        raise ConfigError(
            f"The 'train_values' parameter of {func} must have shape "
            f"{tuple(train_points.shape[:2])} + (k,) to match 'train_points'. "
            f"Got {tuple(train_values.shape)} instead."
        )
    if regularization_weight < 0:
        raise ConfigError(
            f"The 'regularization_weight' parameter of {func} must be >= 0. "
            f"Got {regularization_weight!r} instead."
        )
    b, n, d = train_points.shape
    k = train_values.shape[-1]
    dtype, device = train_points.dtype, train_points.device
    matrix_a = phi(_squared_distances(train_points, train_points), order)
    if regularization_weight > 0:
        matrix_a = matrix_a + regularization_weight * torch.eye(n, dtype=dtype, device=device)
    matrix_b = torch.cat((train_points, torch.ones(b, n, 1, dtype=dtype, device=device)), -1)
    zeros = torch.zeros(b, d + 1, d + 1, dtype=dtype, device=device)
    lhs = torch.cat((torch.cat((matrix_a, matrix_b), 2),
                     torch.cat((matrix_b.transpose(1, 2), zeros), 2)), 1)
    rhs = torch.cat((train_values.to(dtype),
                     torch.zeros(b, d + 1, k, dtype=dtype, device=device)), 1)
    w_v = torch.linalg.solve(lhs, rhs)
    return w_v[:, :n], w_v[:, n:]


def apply_interpolation(query_points: torch.Tensor, train_points: torch.Tensor,
                        w: torch.Tensor, v: torch.Tensor, order: int) -> torch.Tensor:
    """Evaluate the spline with coefficients ``(w, v)`` at ``query_points`` ``(B, M, D)``."""
    func = "apply_interpolation"
    _check_points(query_points, "query_points", func)
    if query_points.shape[0] != train_points.shape[0] \
            or query_points.shape[-1] != train_points.shape[-1]:
        raise ConfigError(
            f"The 'query_points' parameter of {func} must be a (batch={train_points.shape[0]}, "
            f"m, dims={train_points.shape[-1]}) tensor. Got {tuple(query_points.shape)} instead."
        )
    rbf = phi(_squared_distances(query_points, train_points), order) @ w
    ones = torch.ones_like(query_points[..., :1])
    return rbf + torch.cat((query_points, ones), -1) @ v


def interpolate_spline(train_points: torch.Tensor, train_values: torch.Tensor,
                       query_points: torch.Tensor, order: int,
                       regularization_weight: float = 0.0) -> torch.Tensor:
    """Fit a polyharmonic spline to ``(train_points, train_values)`` and evaluate it.

    Args:
        train_points: ``(B, N, D)`` centres.
        train_values: ``(B, N, K)`` values at the centres.
        query_points: ``(B, M, D)`` points where the spline is evaluated.
        order: polyharmonic order, any int ``k >= 1`` (1: ``r``, 2: thin-plate ``r^2 log r``,
            3: ``r^3``, ...).
        regularization_weight: ``lambda >= 0`` added to the kernel diagonal (only when > 0);
            with 0 the spline interpolates the values exactly.

    Returns:
        ``(B, M, K)`` interpolated values.
    """
    w, v = solve_interpolation(train_points, train_values, order, regularization_weight)
    return apply_interpolation(query_points, train_points, w, v, order)
