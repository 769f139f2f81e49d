"""Registers the temporal baselines (ECCV 2018, Tables 1 and 2) with relocbench's registry.

Importing this module (through the ``relocbench.baselines`` entry point) is what makes
``relocbench run-baseline NAME`` find them.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Dict, List

import numpy as np

from relocbench.baseline import Baseline, TrainConfig
from relocbench.registry import register_baseline


class TemporalBaseline(Baseline):
    """Shared plumbing of the temporal baselines: features of a pair's query and reference."""

    task = "temporal"

    def features(self, video: str, start: int, end: int) -> np.ndarray:
        return self.ctx.features.get(video)[start:end]

    def train_segments(self):
        """The training segments; with ``--skip-missing``, those whose video has features
        (the others are counted in the feature store's report)."""
        seg = self.ctx.manifest.table("segments", "train")
        if self.ctx.extras.get("skip_missing"):
            store = self.ctx.features
            keep = [v in store for v in seg["video"]]
            for v in seg["video"][[not k for k in keep]]:
                store.report.add("training segments without features (skipped)", v)
            seg = seg[keep].reset_index(drop=True)
        return seg


@dataclass
class ChanceConfig(TrainConfig):
    steps: int = 0


@register_baseline("chance")
class Chance(TemporalBaseline):
    """A span drawn uniformly at random among all spans of the reference window (seeded)."""

    Config = ChanceConfig

    def predict(self, model, pairs) -> Dict[str, List[dict]]:
        out = {}
        for r in pairs.itertuples(index=False):
            w = int(r.ref_end_step - r.ref_start_step)
            # two distinct boundaries out of w + 1, uniformly: every span [s, e) equally likely
            rng = np.random.default_rng([self.config.seed, zlib.crc32(str(r.pair_id).encode())])
            a = int(rng.integers(0, w + 1))
            b = int(rng.integers(0, w))
            b += b >= a
            out[str(r.pair_id)] = [{"segment": [min(a, b), max(a, b)], "score": 1.0}]
        return out


@dataclass
class FrameDPConfig(TrainConfig):
    steps: int = 0


@register_baseline("frame-dp")
class FrameDP(TemporalBaseline):
    """Frame-level baseline: the smallest-mean-distance monotone path, solved exactly (no training)."""

    Config = FrameDPConfig

    def predict(self, model, pairs) -> Dict[str, List[dict]]:
        from relocbench.temporal.framedp import frame_level_baseline

        out = {}
        for r in pairs.itertuples(index=False):
            q = self.features(r.query_video, int(r.query_start_step), int(r.query_end_step))
            x = self.features(r.ref_video, int(r.ref_start_step), int(r.ref_end_step))
            res = frame_level_baseline(q, x)
            out[str(r.pair_id)] = [{"segment": [res.start_step, res.end_step], "score": float(-res.mean_distance)}]
        return out
