"""Small pieces the temporal models share: LSTM initialisation, masks, parameter counts."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["count_parameters", "set_forget_bias", "length_mask", "reverse_padded"]


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


@torch.no_grad()
def set_forget_bias(lstm: nn.Module, value: float) -> None:
    """Initialise the forget-gate bias of an ``nn.LSTM`` / ``nn.LSTMCell`` to ``value``.

    PyTorch keeps two biases (input and hidden) with gates ordered ``i, f, g, o``; the input
    bias's forget slice is set to ``value`` and the hidden bias's to 0, so their sum (the
    effective bias) is ``value``, like TensorFlow's ``forget_bias``-initialised LSTM.
    """
    for name, p in lstm.named_parameters():
        if name.startswith("bias_"):
            h = p.shape[-1] // 4
            p[..., h:2 * h] = value if name.startswith("bias_ih") else 0.0


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Boolean ``[B, max_len]``: True at the valid steps."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of ``x [B, T, ...]`` within its own length; padding stays at the end.

    The map is its own inverse, so it also undoes itself.
    """
    t = x.shape[1]
    steps = torch.arange(t, device=x.device)[None, :]
    idx = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    idx = idx.view(idx.shape[0], t, *([1] * (x.dim() - 2))).expand_as(x)
    return torch.gather(x, 1, idx)
