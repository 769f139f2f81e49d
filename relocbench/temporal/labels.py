"""Per-step label vectors and loss weights of the cross gated bilinear matching model.

ECCV 2018, Sec. 3.4 (reference-algorithms.md Sec. 2). The four classes are, in this order,
``start, end, inside, outside``. For a ground-truth segment ``[s, e)`` in steps (end
exclusive, so its last step is ``e - 1``):

* steps outside the segment: ``[0, 0, 0, 1]``;
* step ``s``: ``[1/2, 0, 1/2, 0]``; step ``e - 1``: ``[0, 1/2, 1/2, 0]``;
* steps strictly inside: ``[0, 0, 1, 0]``;
* a one-step segment (``e - 1 == s``): ``[1/3, 1/3, 1/3, 0]``.

Steps with a start or end label weigh ``cw`` (10 in the paper), the others 1; padded
steps of a batch weigh 0.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from ..errors import ConfigError

__all__ = ["START", "END", "INSIDE", "OUTSIDE", "LOSS_WEIGHT", "step_labels", "batch_labels"]

START, END, INSIDE, OUTSIDE = 0, 1, 2, 3
#: The paper's loss weight ``c_w`` for start and end steps.
LOSS_WEIGHT = 10.0


def batch_labels(
    lengths: np.ndarray, starts: np.ndarray, ends: np.ndarray, *, max_len: int = None, cw: float = LOSS_WEIGHT
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels ``[B, T, 4]``, weights ``[B, T]`` and validity mask ``[B, T]`` of a padded batch.

    ``lengths[b]`` is the number of valid steps of item ``b``; its segment is
    ``[starts[b], ends[b])`` with ``0 <= start < end <= length``. ``T = max_len`` or the
    largest length. Padded steps get all-zero labels, weight 0 and mask False.
    """
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    ends = np.asarray(ends, dtype=np.int64).reshape(-1)
    if not (lengths.shape == starts.shape == ends.shape):
        raise ConfigError(
            f"lengths, starts and ends must have the same length; got {lengths.size}, {starts.size}, {ends.size}"
        )
    if cw < 0 or not np.isfinite(cw):
        raise ConfigError(f"The 'cw' parameter must be a finite number >= 0. Got {cw!r} instead.")
    bad = ~((starts >= 0) & (starts < ends) & (ends <= lengths))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConfigError(
            f"item {i}: expected 0 <= start < end <= length, got start {starts[i]}, end {ends[i]}, "
            f"length {lengths[i]}"
        )
    t_max = int(lengths.max(initial=0)) if max_len is None else int(max_len)
    if lengths.size and t_max < lengths.max():
        raise ConfigError(f"max_len {t_max} is shorter than the longest item ({int(lengths.max())} steps)")
    t = np.arange(t_max)[None, :]
    s, e, n = starts[:, None], ends[:, None] - 1, lengths[:, None]
    mask = t < n
    inside = (t >= s) & (t <= e)
    single = s == e
    is_start = (t == s)
    is_end = (t == e)
    labels = np.zeros((lengths.size, t_max, 4), dtype=np.float32)
    labels[..., OUTSIDE] = mask & ~inside
    labels[..., INSIDE] = inside
    # start / end steps of segments longer than one step
    two = (is_start | is_end) & ~single
    labels[..., INSIDE] = np.where(two, 0.5, labels[..., INSIDE])
    labels[..., START] = np.where(is_start & ~single, 0.5, 0.0)
    labels[..., END] = np.where(is_end & ~single, 0.5, 0.0)
    one = is_start & single
    for k in (START, END, INSIDE):
        labels[..., k] = np.where(one, 1.0 / 3.0, labels[..., k])
    weights = np.where(mask, np.where(is_start | is_end, np.float32(cw), np.float32(1.0)), np.float32(0.0))
    return labels, weights.astype(np.float32), mask


def step_labels(n_steps: int, start: int, end: int, *, cw: float = LOSS_WEIGHT) -> Tuple[np.ndarray, np.ndarray]:
    """Labels ``[n_steps, 4]`` and weights ``[n_steps]`` of one window with segment ``[start, end)``."""
    labels, weights, _ = batch_labels(np.array([n_steps]), np.array([start]), np.array([end]), cw=cw)
    return labels[0], weights[0]
