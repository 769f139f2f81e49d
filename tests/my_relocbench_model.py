"""window-match: slide a window over the reference, keep the ones most like the query."""
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from relocbench.baseline import Baseline, TrainConfig
from relocbench.params import Float, Int
from relocbench.registry import register_baseline


@dataclass
class WindowMatchConfig(TrainConfig):
    steps: int = 0        # nothing to train
    top_k: int = 5        # segments written per pair, best first
    scale: float = 1.0    # segment length, in query lengths

    parameter_constraints: ClassVar[dict] = {"top_k": Int(ge=1), "scale": Float(gt=0, le=4)}


@register_baseline("window-match")
class WindowMatch(Baseline):
    """Cosine similarity of the mean query feature with every window of the reference."""

    task = "temporal"
    Config = WindowMatchConfig

    def predict(self, model, pairs):
        out = {}
        for r in pairs.itertuples(index=False):
            query = self.ctx.features.get(r.query_video)[r.query_start_step:r.query_end_step].mean(0)
            ref = np.asarray(self.ctx.features.get(r.ref_video)[r.ref_start_step:r.ref_end_step], np.float64)
            n = min(len(ref), max(1, round(self.config.scale * (r.query_end_step - r.query_start_step))))
            csum = np.concatenate([np.zeros((1, ref.shape[1])), np.cumsum(ref, axis=0)])
            means = (csum[n:] - csum[:-n]) / n                      # every window of n steps
            sim = means @ query / (np.linalg.norm(means, axis=1) * np.linalg.norm(query) + 1e-12)
            best = np.argsort(-sim, kind="stable")[: self.config.top_k]
            out[str(r.pair_id)] = [{"segment": [int(s), int(s) + n], "score": float(sim[s])} for s in best]
        return out
