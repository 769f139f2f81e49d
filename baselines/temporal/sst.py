"""The SST action-proposal model (Buch et al., CVPR 2017) as the ECCV 2018 baseline uses it.

A GRU (2 layers of 512) reads the window followed by one zero step (so spans can end at
the window's last step); at every output ``t`` a linear layer gives ``K`` anchor logits,
anchor ``k`` being the span ``[t - k - 1, t)`` (:mod:`relocbench.temporal.sst` documents the
convention). Training windows are 128 steps; an anchor is positive when its tIoU with the
ground truth exceeds 0.5; the loss is binary cross-entropy with per-anchor weights from
the positive rate ``w_k``: positives weigh ``1 - w_k``, negatives ``w_k``. The baseline's
answer is the highest-scoring proposal after NMS at tIoU 0.7 (it ignores the query); the
baseline writes the ``top_k`` best proposals after NMS, best first.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from relocbench.errors import ConfigError
from relocbench.temporal.decode import MAX_SPAN_STEPS
from relocbench.temporal.sst import Proposals, top_proposals

from ._common import count_parameters

__all__ = ["SSTConfig", "SSTModel", "sst_loss", "sst_parameter_count"]


@dataclass(frozen=True)
class SSTConfig:
    feature_dim: int = 500
    hidden: int = 512
    layers: int = 2
    anchors: int = MAX_SPAN_STEPS   # K: spans of 1 .. K steps
    dropout: float = 0.2            # between the GRU layers
    window: int = 128               # training window (steps)
    positive_tiou: float = 0.5
    nms_tiou: float = 0.7

    def __post_init__(self) -> None:
        for name in ("feature_dim", "hidden", "layers", "anchors", "window"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"The {name!r} parameter of SSTConfig must be an int >= 1. Got {v!r} instead.")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"The 'dropout' parameter of SSTConfig must be in [0, 1). Got {self.dropout!r}.")

    def to_dict(self) -> Dict:
        return asdict(self)


class SSTModel(nn.Module):
    """``forward(x [B, T, d]) -> logits [B, T + 1, K]`` (one extra output after a zero step)."""

    def __init__(self, config: Optional[SSTConfig] = None) -> None:
        super().__init__()
        cfg = config or SSTConfig()
        self.config = cfg
        self.gru = nn.GRU(cfg.feature_dim, cfg.hidden, cfg.layers, batch_first=True,
                          dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.scores = nn.Linear(cfg.hidden, cfg.anchors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x, x.new_zeros(x.shape[0], 1, x.shape[2])], 1)
        return self.scores(self.gru(x)[0])

    @torch.no_grad()
    def predict(self, x: torch.Tensor, lengths: torch.Tensor, *, top_k: int = 1) -> List[Proposals]:
        """The ``top_k`` proposals of each window (after NMS), in eval mode.

        Padding after a window cannot change its outputs (the GRU is causal), but the zero
        step must follow the window's own last step, so windows run one at a time.
        """
        was = self.training
        self.eval()
        out = []
        try:
            for i in range(x.shape[0]):
                n = int(lengths[i])
                scores = torch.sigmoid(self.forward(x[i:i + 1, :n]))[0]
                out.append(top_proposals(scores.double().cpu().numpy(), n + 1,
                                         nms_threshold=self.config.nms_tiou, top_k=top_k))
        finally:
            self.train(was)
        return out


def sst_loss(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
             positive_rate: torch.Tensor) -> torch.Tensor:
    """Weighted binary cross-entropy over valid (output, anchor) entries.

    ``labels`` and ``mask`` ``[B, T + 1, K]`` from
    :func:`relocbench.temporal.sst.batch_anchor_labels`; ``positive_rate [K]`` from
    :func:`relocbench.temporal.sst.anchor_positive_rate` on the training set.
    """
    labels = labels.to(logits.dtype)
    mask = mask.to(logits.dtype)
    w = positive_rate.to(logits.dtype)
    weights = (labels * (1.0 - w) + (1.0 - labels) * w) * mask
    loss = F.binary_cross_entropy_with_logits(logits, labels, weight=weights, reduction="sum")
    return loss / mask.sum().clamp(min=1.0)


def sst_parameter_count(config: Optional[SSTConfig] = None) -> int:
    return count_parameters(SSTModel(config))
