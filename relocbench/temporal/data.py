"""Batches of (query, reference) feature pairs for the temporal baselines.

Training batches come from the pair sampler: the pairs of epoch ``e`` are grouped into
batches of similar reference length (sorted by window length inside chunks of
``bucket_batches`` batches, as the original code bucketed its windows to limit padding),
and the batch order is shuffled; global step ``s`` reads batch ``s mod n_batches`` of epoch
``s // n_batches``. Everything derives from ``(seed, epoch)``, so a batch depends on the
step alone (exact resume) and every DDP rank agrees on it; rank ``r`` of ``w`` takes rows
``r, r + w, ...`` of the global batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import pandas as pd

from ..errors import FeatureError
from .sampler import PairSampler

__all__ = ["PairBatch", "collate_pairs", "TrainBatches"]


@dataclass
class PairBatch:
    """Padded numpy arrays of one batch (time-major padding at the end)."""

    pair_ids: List[str]
    query: np.ndarray  # [B, Lq, D] float32
    query_len: np.ndarray  # [B] int64
    ref: np.ndarray  # [B, Lr, D] float32
    ref_len: np.ndarray  # [B] int64
    gt_start: np.ndarray  # [B] int64, relative to the reference window
    gt_end: np.ndarray  # [B] int64, exclusive

    def __len__(self) -> int:
        return len(self.pair_ids)

    def to_torch(self, device):
        import torch

        return {
            "query": torch.from_numpy(self.query).to(device),
            "query_len": torch.from_numpy(self.query_len).to(device),
            "ref": torch.from_numpy(self.ref).to(device),
            "ref_len": torch.from_numpy(self.ref_len).to(device),
            "gt_start": torch.from_numpy(self.gt_start).to(device),
            "gt_end": torch.from_numpy(self.gt_end).to(device),
        }


def _slice(store, video: str, start: int, end: int, item: str) -> np.ndarray:
    feats = store.get(video)
    if end > feats.shape[0]:
        raise FeatureError(
            f"{item}: needs steps [{start}, {end}) of video {video!r}, but the store has {feats.shape[0]} steps",
            file=getattr(store, "source", None) if isinstance(getattr(store, "source", None), str) else None,
        )
    return feats[start:end]


def collate_pairs(rows: pd.DataFrame, store) -> PairBatch:
    """Pad the query and reference features of ``rows`` (a pairs table slice)."""
    qs, rs = [], []
    for r in rows.itertuples(index=False):
        qs.append(_slice(store, r.query_video, int(r.query_start_step), int(r.query_end_step), f"pair {r.pair_id} query"))
        rs.append(_slice(store, r.ref_video, int(r.ref_start_step), int(r.ref_end_step), f"pair {r.pair_id} reference"))
    dim = store.dim
    b = len(qs)
    lq = np.array([q.shape[0] for q in qs], dtype=np.int64)
    lr = np.array([x.shape[0] for x in rs], dtype=np.int64)
    query = np.zeros((b, max(lq.max(initial=1), 1), dim), dtype=np.float32)
    ref = np.zeros((b, max(lr.max(initial=1), 1), dim), dtype=np.float32)
    for i, (q, x) in enumerate(zip(qs, rs)):
        query[i, : q.shape[0]] = q
        ref[i, : x.shape[0]] = x
    return PairBatch(
        pair_ids=[str(p) for p in rows["pair_id"]], query=query, query_len=lq, ref=ref, ref_len=lr,
        gt_start=np.array(rows["gt_start_step"], dtype=np.int64), gt_end=np.array(rows["gt_end_step"], dtype=np.int64),
    )


class TrainBatches:
    """Step-indexed training batches from the training segments (see the module docstring)."""

    def __init__(self, segments: pd.DataFrame, store, *, batch_size: int, seed: int,
                 crop_prob: float = 0.9, bucket_batches: int = 16) -> None:
        self.sampler = PairSampler(segments, seed=seed, crop_prob=crop_prob)
        self.store = store
        self.batch_size = min(batch_size, len(self.sampler))
        self.seed = seed
        self.bucket = max(1, bucket_batches) * self.batch_size
        self.n_batches = len(self.sampler) // self.batch_size
        self._epoch: Optional[int] = None
        self._plan: List[np.ndarray] = []
        self._pairs: Optional[pd.DataFrame] = None

    def _make_plan(self, epoch: int) -> None:
        pairs = self.sampler.epoch(epoch)
        rng = np.random.default_rng([self.seed, epoch, 0xB0C7])
        wlen = (pairs["ref_end_step"] - pairs["ref_start_step"]).to_numpy()
        order = np.arange(len(pairs))  # the sampler already shuffled the queries
        batches = []
        for c in range(0, len(order), self.bucket):
            chunk = order[c:c + self.bucket]
            chunk = chunk[np.argsort(wlen[chunk], kind="stable")]
            for b in range(0, len(chunk) - self.batch_size + 1, self.batch_size):
                batches.append(chunk[b:b + self.batch_size])
        perm = rng.permutation(len(batches))
        self._plan = [batches[i] for i in perm][: self.n_batches]
        self._pairs = pairs
        self._epoch = epoch

    def rows(self, step: int, rank: int = 0, world_size: int = 1) -> pd.DataFrame:
        epoch, k = divmod(step, self.n_batches)
        if epoch != self._epoch:
            self._make_plan(epoch)
        idx = self._plan[k][rank::world_size]
        return self._pairs.iloc[idx]

    def __call__(self, step: int, rank: int = 0, world_size: int = 1) -> PairBatch:
        return collate_pairs(self.rows(step, rank, world_size), self.store)


def iterate_pairs(pairs: pd.DataFrame, store, batch_size: int) -> Sequence[PairBatch]:
    """Evaluation batches over a fixed pairs table, sorted by window length to limit padding."""
    wlen = (pairs["ref_end_step"] - pairs["ref_start_step"]).to_numpy()
    order = np.argsort(wlen, kind="stable")
    for b in range(0, len(order), batch_size):
        yield collate_pairs(pairs.iloc[order[b:b + batch_size]], store)
