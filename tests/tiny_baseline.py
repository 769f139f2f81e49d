"""A tiny trainable temporal baseline for the engine's tests (training, resume, DDP).

Per-step 4-way classifier (start, end, inside, outside) on the reference features only,
trained with the model's label vectors and decoded with Eq. 12: small and deterministic.
The loss is the mean over items of each item's mean over its steps, so that DDP with equal
shards computes exactly the single-process gradient.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from relocbench.baseline import TrainConfig
from relocbench.registry import register_baseline
from relocbench.temporal.data import TrainBatches, iterate_pairs
from relocbench.temporal.decode import decode_spans
from relocbench.temporal.labels import batch_labels

from relocbench_baselines.temporal.zoo import TemporalBaseline


@dataclass
class TinyConfig(TrainConfig):
    steps: int = 12
    batch_size: int = 4
    lr: float = 1e-2
    eval_every: int = 4
    hidden: int = 8
    dropout: float = 0.2


@register_baseline("tiny-test")
class TinyTemporal(TemporalBaseline):
    """Per-step linear classifier on reference features (test fixture)."""

    Config = TinyConfig
    trainable = True
    fail_at_step = None  # tests set this to simulate a killed run

    @classmethod
    def create_model(cls, config):
        return torch.nn.Sequential(torch.nn.Linear(500, config.hidden), torch.nn.Tanh(),
                                   torch.nn.Dropout(config.dropout), torch.nn.Linear(config.hidden, 4))

    def prepare(self, model):
        seg = self.train_segments()
        self._batches = TrainBatches(seg, self.ctx.features, batch_size=self.config.batch_size,
                                     seed=self.config.seed, crop_prob=0.9)

    def batch(self, step, rank=0, world_size=1):
        if self.fail_at_step is not None and step == self.fail_at_step:
            raise KeyboardInterrupt
        return self._batches(step, rank, world_size)

    def loss(self, model, batch):
        t = batch.to_torch(self.ctx.device)
        labels, weights, mask = batch_labels(batch.ref_len, batch.gt_start, batch.gt_end, max_len=t["ref"].shape[1])
        logp = torch.log_softmax(model(t["ref"]), dim=-1)
        ce = -(torch.from_numpy(labels) * logp).sum(-1) * torch.from_numpy(weights)
        m = torch.from_numpy(mask).float()
        per_item = (ce * m).sum(1) / m.sum(1)
        return per_item.mean(), {}

    def predict(self, model, pairs):
        out = {}
        for batch in iterate_pairs(pairs, self.ctx.features, 64):
            logp = torch.log_softmax(model(torch.from_numpy(batch.ref)), dim=-1).numpy()
            dec = decode_spans(logp, batch.ref_len)
            for pid, s, e, sc in zip(batch.pair_ids, dec.start_step, dec.end_step, dec.score):
                out[pid] = [{"segment": [int(s), int(e)], "score": float(sc)}]
        return out
