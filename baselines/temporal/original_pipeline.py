"""The training input stream of the original cross gated bilinear matching code.

Rebuilt from the rules of ``input_functions.py`` of github.com/fengyang0317/video_reloc
(line numbers of that file):

* **Stream** (lines 82-85): the training segments are repeated without end and shuffled
  through a buffer of 1,024 elements (``repeat()`` then ``shuffle(1024)``): a local shuffle
  of the repeated list, not a fresh permutation per epoch. The list here is the manifest's
  segments in ``segment_id`` order (the original list is its ``data/train.json`` order).
* **Reference** (``sample``, lines 31-42): each query segment draws its reference uniformly
  among the training segments of the same class whose window is at least as long as the
  query segment, *the query itself included*.
* **Crop** (lines 44-55): with probability 0.9 the reference window is cropped on both
  sides, each cut uniform among the cuts that keep the reference segment inside.
* **Batches** (lines 93-104): ``group_by_window`` with key ``window length // bucket_span``
  (30) and window ``batch_size`` (128): elements of the stream wait in the bucket of their
  key; a bucket that holds ``batch_size`` elements is emitted as the next batch (padded to
  its longest window, lines 59-67). A batch can therefore mix passes over the list, and
  every batch's windows differ in length by less than ``bucket_span`` steps.

The stream is generated in passes of ``len(segments)`` elements, pass ``k`` drawing from a
generator seeded by ``(seed, k)``; batch ``s`` is the ``s``-th emitted batch, so a batch
depends on ``(seed, step)`` alone (a resumed run regenerates the passes before its step,
which takes milliseconds per pass) and every DDP rank sees the same global batch (rank
``r`` of ``w`` takes rows ``r, r + w, ...``).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import pandas as pd

from relocbench.errors import ConfigError, ManifestError
from relocbench.temporal.data import PairBatch, collate_pairs
from relocbench.temporal.sampler import PAIR_COLUMNS

__all__ = ["OriginalTrainStream", "SHUFFLE_BUFFER"]

#: ``dataset.shuffle(1024)`` of input_functions.py line 85.
SHUFFLE_BUFFER = 1024

_NEEDED = ["segment_id", "video", "label", "start_step", "end_step", "window_start_step", "window_end_step"]


class OriginalTrainStream:
    """Step-indexed training batches drawn as the original code drew them (module docstring)."""

    def __init__(self, segments: pd.DataFrame, store, *, batch_size: int, seed: int, crop_prob: float = 0.9,
                 bucket_span: int = 30, shuffle_buffer: int = SHUFFLE_BUFFER) -> None:
        missing = [c for c in _NEEDED if c not in segments.columns]
        if missing:
            raise ManifestError(f"segments table lacks columns {missing} needed by the training stream")
        if len(segments) == 0:
            raise ManifestError("segments table is empty: no training pair can be drawn")
        for name, v in (("batch_size", batch_size), ("bucket_span", bucket_span), ("shuffle_buffer", shuffle_buffer)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"The {name!r} parameter of OriginalTrainStream must be an int >= 1. "
                                  f"Got {v!r} instead.")
        if not 0.0 <= crop_prob <= 1.0:
            raise ConfigError(f"The 'crop_prob' parameter of OriginalTrainStream must be in [0, 1]. "
                              f"Got {crop_prob!r} instead.")
        seg = segments.sort_values("segment_id").reset_index(drop=True)
        self._seg = seg
        self.store = store
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.crop_prob = float(crop_prob)
        self.bucket_span = int(bucket_span)
        self.shuffle_buffer = int(shuffle_buffer)
        n = len(seg)
        self._ws = seg["window_start_step"].to_numpy(np.int64)
        self._we = seg["window_end_step"].to_numpy(np.int64)
        self._s = seg["start_step"].to_numpy(np.int64)
        self._e = seg["end_step"].to_numpy(np.int64)
        codes = pd.factorize(seg["label"], sort=True)[0].astype(np.int64)
        wlen = self._we - self._ws
        qlen = self._e - self._s
        # candidates of a query: one contiguous run of the segments sorted by (class, window
        # length), from the first window of its class at least as long as the query segment
        # to the end of its class
        big = int(wlen.max()) + 1
        key = codes * big + wlen
        self._by_key = np.argsort(key, kind="stable")
        sorted_key = key[self._by_key]
        self._lo = np.searchsorted(sorted_key, codes * big + qlen, side="left")
        self._hi = np.searchsorted(sorted_key, codes * big + big, side="left")
        if (self._hi <= self._lo).any():
            i = int(np.flatnonzero(self._hi <= self._lo)[0])
            raise ManifestError(f"segment {seg['segment_id'][i]!r}: its window is shorter than the segment itself")
        self._n = n
        # stream state: the shuffle buffer (indices into the segment list), the next list
        # position, the pending buckets and the emitted batches
        self._buffer: List[int] = []
        self._next = 0
        self._pass = 0
        self._buckets: Dict[int, List[Tuple[int, int]]] = {}
        self._frames: List[pd.DataFrame] = []
        self._batches: List[List[Tuple[int, int]]] = []

    def __len__(self) -> int:
        return self._n

    def _draw_pass(self) -> None:
        """One pass of ``n`` stream elements: shuffle buffer, reference draw, crop, buckets."""
        k = self._pass
        n = self._n
        rng = np.random.default_rng([self.seed, k, 0x0816])
        # the shuffle buffer of tf.data: fill, then output a uniform slot and refill it with
        # the next element of the repeated list
        picks = rng.random(n)
        q = np.empty(n, dtype=np.int64)
        buf = self._buffer
        nxt = self._next
        while len(buf) < self.shuffle_buffer:
            buf.append(nxt % n)
            nxt += 1
        size = len(buf)
        for i in range(n):
            j = int(picks[i] * size)
            q[i] = buf[j]
            buf[j] = nxt % n
            nxt += 1
        self._next = nxt
        # the reference: uniform among the candidates of the query (itself included)
        lo, hi = self._lo[q], self._hi[q]
        r = self._by_key[lo + np.floor(rng.random(n) * (hi - lo)).astype(np.int64)]
        ws, we, s, e = self._ws[r], self._we[r], self._s[r], self._e[r]
        crop = rng.random(n) < self.crop_prob
        u1, u2 = rng.random(n), rng.random(n)
        ws = np.where(crop, ws + np.floor(u1 * (s - ws + 1)).astype(np.int64), ws)
        we = np.where(crop, e + np.floor(u2 * (we - e + 1)).astype(np.int64), we)
        seg = self._seg
        ids = seg["segment_id"].to_numpy()
        frame = pd.DataFrame({
            "pair_id": [f"train-p{k}/{i}" for i in range(n)],
            "label": seg["label"].to_numpy()[q],
            "query_segment_id": ids[q],
            "query_video": seg["video"].to_numpy()[q],
            "query_start_step": self._s[q],
            "query_end_step": self._e[q],
            "ref_segment_id": ids[r],
            "ref_video": seg["video"].to_numpy()[r],
            "ref_start_step": ws,
            "ref_end_step": we,
            "gt_start_step": s - ws,
            "gt_end_step": e - ws,
        }, columns=PAIR_COLUMNS)
        self._frames.append(frame)
        keys = ((we - ws) // self.bucket_span).tolist()
        for i, key in enumerate(keys):
            bucket = self._buckets.setdefault(key, [])
            bucket.append((k, i))
            if len(bucket) == self.batch_size:
                self._batches.append(bucket)
                self._buckets[key] = []
        self._pass += 1

    def rows(self, step: int, rank: int = 0, world_size: int = 1) -> pd.DataFrame:
        """The pairs of global batch ``step`` (this rank's share), in stream order."""
        while len(self._batches) <= step:
            self._draw_pass()
        members = self._batches[step][rank::world_size]  # in stream order: increasing (pass, index)
        parts = [self._frames[k].iloc[[i for p, i in members if p == k]]
                 for k in sorted({p for p, _ in members})]
        return (pd.concat(parts) if len(parts) > 1 else parts[0]).reset_index(drop=True)

    def __call__(self, step: int, rank: int = 0, world_size: int = 1) -> PairBatch:
        return collate_pairs(self.rows(step, rank, world_size), self.store)
