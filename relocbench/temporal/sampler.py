"""The training pair sampler of the ECCV 2018 protocol (reference-algorithms.md Sec. 2).

Each epoch, every training segment is a query paired with a random *other* segment of the
same class (the query itself only when its class has a single segment, counted in
``self_pairs``); with probability ``crop_prob`` the reference window is cropped on both
sides at random, keeping the reference segment inside. Everything derives from
``(seed, epoch)``, so an epoch's pairs are identical on every machine and after a resume.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from ..errors import ConfigError, ManifestError

__all__ = ["PairSampler", "PAIR_COLUMNS"]

PAIR_COLUMNS = [
    "pair_id", "label", "query_segment_id", "query_video", "query_start_step", "query_end_step",
    "ref_segment_id", "ref_video", "ref_start_step", "ref_end_step", "gt_start_step", "gt_end_step",
]

_NEEDED = ["segment_id", "video", "label", "start_step", "end_step", "window_start_step", "window_end_step"]


@dataclass
class PairSampler:
    """Random training pairs from a ``segments`` table.

    >>> sampler = PairSampler(load_manifest("activitynet", "train", "segments"), seed=0)  # doctest: +SKIP
    >>> pairs = sampler.epoch(0)   # a DataFrame, one row per query, PAIR_COLUMNS
    """

    segments: pd.DataFrame
    seed: int = 0
    crop_prob: float = 0.9
    shuffle: bool = True

    def __post_init__(self) -> None:
        missing = [c for c in _NEEDED if c not in self.segments.columns]
        if missing:
            raise ManifestError(f"segments table lacks columns {missing} needed by the pair sampler")
        if not 0.0 <= self.crop_prob <= 1.0:
            raise ConfigError(f"crop_prob must be in [0, 1], got {self.crop_prob}")
        if len(self.segments) == 0:
            raise ManifestError("segments table is empty: no training pair can be drawn")
        seg = self.segments.sort_values("segment_id").reset_index(drop=True)
        self._seg = seg
        labels = seg["label"].to_numpy()
        uniq, inverse = np.unique(labels, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        counts = np.bincount(inverse, minlength=len(uniq))
        self._members = order                      # segment indices grouped by class
        self._first = np.concatenate([[0], np.cumsum(counts)[:-1]])[inverse]
        self._count = counts[inverse]
        self._rank = np.empty(len(seg), dtype=np.int64)
        self._rank[order] = np.arange(len(seg)) - np.concatenate([[0], np.cumsum(counts)[:-1]])[inverse[order]]
        self.self_pairs = int((self._count == 1).sum())

    def __len__(self) -> int:
        return len(self._seg)

    def epoch(self, epoch: int, rng: Optional[np.random.Generator] = None) -> pd.DataFrame:
        """The pairs of one epoch (a DataFrame with PAIR_COLUMNS, step units)."""
        rng = rng if rng is not None else np.random.default_rng([int(self.seed), int(epoch), 0x5A11])
        n = len(self._seg)
        seg = self._seg
        q = rng.permutation(n) if self.shuffle else np.arange(n)
        cnt = self._count[q]
        # a uniform draw among the other members of the class: skip the query's own rank
        draw = np.floor(rng.random(n) * np.maximum(cnt - 1, 1)).astype(np.int64)
        draw = np.where(cnt > 1, draw + (draw >= self._rank[q]), 0)
        r = self._members[self._first[q] + draw]
        ws = seg["window_start_step"].to_numpy()[r]
        we = seg["window_end_step"].to_numpy()[r]
        s = seg["start_step"].to_numpy()[r]
        e = seg["end_step"].to_numpy()[r]
        crop = rng.random(n) < self.crop_prob
        u1, u2 = rng.random(n), rng.random(n)
        new_ws = ws + np.floor(u1 * (s - ws + 1)).astype(np.int64)
        new_we = e + np.floor(u2 * (we - e + 1)).astype(np.int64)
        ws = np.where(crop, new_ws, ws)
        we = np.where(crop, new_we, we)
        ids = seg["segment_id"].to_numpy()
        return pd.DataFrame({
            "pair_id": [f"train-e{epoch}/{k}" for k in range(n)],
            "label": seg["label"].to_numpy()[q],
            "query_segment_id": ids[q],
            "query_video": seg["video"].to_numpy()[q],
            "query_start_step": seg["start_step"].to_numpy()[q],
            "query_end_step": seg["end_step"].to_numpy()[q],
            "ref_segment_id": ids[r],
            "ref_video": seg["video"].to_numpy()[r],
            "ref_start_step": ws,
            "ref_end_step": we,
            "gt_start_step": s - ws,
            "gt_end_step": e - ws,
        }, columns=PAIR_COLUMNS)
