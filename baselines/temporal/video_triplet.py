"""The video-level baseline (ECCV 2018, Sec. 5.1): an LSTM segment encoder and the triplet loss.

A segment is encoded by an LSTM; its L2-normalised last hidden state is the embedding.
Training uses the triplet loss of FaceNet (Schroff et al. 2015) with the query as anchor,
a reference sub-segment with tIoU > 0.8 to the ground truth as positive and one with
tIoU < 0.2 as negative (:func:`sample_triplet_spans`). At test time every reference
sub-segment of at most ``max_span`` steps is compared with the query and the closest wins
(:func:`search_spans` ranks the ``top_k`` closest, the first being that one).

The exhaustive search is batched: the encoder runs once per start ``s`` over
``ref[s : s + max_span]`` (all starts as one batch) and the hidden state after step ``k``
*is* the embedding of span ``[s, s + k + 1)``, so every end is read from one pass.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from relocbench.errors import ConfigError
from relocbench.temporal.decode import MAX_SPAN_STEPS
from relocbench.temporal.sst import span_tiou

from ._common import count_parameters, set_forget_bias

__all__ = ["VideoTripletConfig", "VideoLSTMEncoder", "triplet_loss", "search_span", "search_spans", "SearchResult",
           "sample_triplet_spans", "video_triplet_parameter_count"]


@dataclass(frozen=True)
class VideoTripletConfig:
    feature_dim: int = 500
    hidden: int = 128
    margin: float = 0.2           # FaceNet's margin on squared distances of unit vectors
    forget_bias: float = 1.0
    max_span: int = MAX_SPAN_STEPS
    positive_tiou: float = 0.8    # positives: tIoU > 0.8 with the ground truth
    negative_tiou: float = 0.2    # negatives: tIoU < 0.2

    def __post_init__(self) -> None:
        for name in ("feature_dim", "hidden", "max_span"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"The {name!r} parameter of VideoTripletConfig must be an int >= 1. Got {v!r}.")
        if not self.margin > 0:
            raise ConfigError(f"The 'margin' parameter of VideoTripletConfig must be > 0. Got {self.margin!r}.")
        if not 0 <= self.negative_tiou < self.positive_tiou <= 1:
            raise ConfigError(
                "VideoTripletConfig needs 0 <= negative_tiou < positive_tiou <= 1; "
                f"got {self.negative_tiou!r} and {self.positive_tiou!r}"
            )

    def to_dict(self) -> Dict:
        return asdict(self)


class VideoLSTMEncoder(nn.Module):
    """``forward(x [B, T, d], lengths [B]) -> [B, hidden]`` unit embeddings of each segment."""

    def __init__(self, config: Optional[VideoTripletConfig] = None) -> None:
        super().__init__()
        self.config = config or VideoTripletConfig()
        self.lstm = nn.LSTM(self.config.feature_dim, self.config.hidden, batch_first=True)
        set_forget_bias(self.lstm, self.config.forget_bias)

    def prefix_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """Unit embedding after every step: ``[B, T, hidden]`` (step ``k`` = prefix ``[0, k + 1)``)."""
        return F.normalize(self.lstm(x)[0], dim=-1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = self.lstm(x)[0]                                  # causal: padding cannot leak back
        last = (lengths.to(h.device).long() - 1).clamp(min=0)
        h = h[torch.arange(h.shape[0], device=h.device), last]
        return F.normalize(h, dim=-1)


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                 margin: float = 0.2) -> torch.Tensor:
    """``mean(max(0, |a - p|^2 - |a - n|^2 + margin))`` over the batch."""
    dp = (anchor - positive).pow(2).sum(-1)
    dn = (anchor - negative).pow(2).sum(-1)
    return F.relu(dp - dn + margin).mean()


class SearchResult(NamedTuple):
    start_step: int
    end_step: int
    distance: float


@torch.no_grad()
def search_span(encoder: VideoLSTMEncoder, query: torch.Tensor, ref: torch.Tensor,
                max_span: Optional[int] = None) -> SearchResult:
    """The reference span ``[s, e)`` (at most ``max_span`` steps) closest to the query.

    ``query [Tq, d]`` and ``ref [Tr, d]`` are one pair's features. Ties go to the smallest
    start, then the shortest span.
    """
    return search_spans(encoder, query, ref, max_span, top_k=1)[0]


@torch.no_grad()
def search_spans(encoder: VideoLSTMEncoder, query: torch.Tensor, ref: torch.Tensor,
                 max_span: Optional[int] = None, *, top_k: int = 10) -> List[SearchResult]:
    """The ``top_k`` reference spans closest to the query, closest first (:func:`search_span`'s
    answer first); ties go to the smallest start, then the shortest span."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ConfigError(f"The 'top_k' parameter must be an int >= 1. Got {top_k!r} instead.")
    k = int(max_span or encoder.config.max_span)
    was = encoder.training
    encoder.eval()
    try:
        q = encoder(query[None], torch.tensor([query.shape[0]]))[0]
        tr = ref.shape[0]
        k = min(k, tr)
        padded = torch.cat([ref, ref.new_zeros(k - 1, ref.shape[1])], 0)
        windows = padded.unfold(0, k, 1).permute(0, 2, 1)   # [Tr, k, d]: window s = ref[s : s + k]
        emb = encoder.prefix_embeddings(windows)            # [Tr, k, hidden]
    finally:
        encoder.train(was)
    dist = (emb - q).pow(2).sum(-1)                         # [Tr, k]
    ends = torch.arange(tr)[:, None] + torch.arange(k)[None, :]
    dist = dist.masked_fill(ends.to(dist.device) >= tr, float("inf")).cpu()
    flat = dist.reshape(-1).numpy()
    # stable: equal distances keep the flat order (start, then length), as argmin's first minimum
    order = np.argsort(flat, kind="stable")[:min(int(top_k), int(np.isfinite(flat).sum()))]
    out = []
    for best in order.tolist():
        s, off = divmod(best, k)
        out.append(SearchResult(s, s + off + 1, float(dist[s, off])))
    return out


def sample_triplet_spans(rng: np.random.Generator, window_steps: int, gt_start: int, gt_end: int, *,
                         max_span: int = MAX_SPAN_STEPS, positive_tiou: float = 0.8,
                         negative_tiou: float = 0.2) -> Tuple[Optional[Tuple[int, int]], Optional[Tuple[int, int]]]:
    """A positive span (tIoU > ``positive_tiou``) and a negative one (tIoU < ``negative_tiou``).

    Drawn uniformly among all spans of at most ``max_span`` steps in a window of
    ``window_steps`` steps; either is ``None`` when no span qualifies (the caller counts it).
    """
    if not 0 <= gt_start < gt_end <= window_steps:
        raise ConfigError(f"expected 0 <= gt_start < gt_end <= window_steps; got {gt_start}, {gt_end}, {window_steps}")
    s = np.arange(window_steps)[:, None]
    e = s + np.arange(1, max_span + 1)[None, :]
    ok = e <= window_steps
    s, e = np.broadcast_to(s, e.shape)[ok], e[ok]
    iou = span_tiou(s, e, gt_start, gt_end)
    out = []
    for sel in (iou > positive_tiou, iou < negative_tiou):
        idx = np.flatnonzero(sel)
        if idx.size == 0:
            out.append(None)
        else:
            j = int(idx[rng.integers(idx.size)])
            out.append((int(s[j]), int(e[j])))
    return out[0], out[1]


def video_triplet_parameter_count(config: Optional[VideoTripletConfig] = None) -> int:
    return count_parameters(VideoLSTMEncoder(config))
