"""The cross gated bilinear matching model (Feng et al., ECCV 2018, Sec. 3) and its ablations.

Built as the original code built it (reference-algorithms.md Sec. 2):

* **Aggregation**: one LSTM (hidden ``l``) shared by query and reference over their
  features (``d``); dropout (keep 0.6) on both outputs, which are also the attention keys
  and values. Every dropout draws its mask as the original code's ``slim.dropout``
  (:class:`~._common.KeepDropout`).
* **Matching**, at every reference step ``i`` and in both directions: attention
  ``e_ij = w^T tanh(W_q h^q_j + W_p [h^r_i ; h^m_{i-1}] + b_p) + b`` (``W_q`` bias-free,
  ``h^m_{i-1}`` the previous hidden state of that direction's matching LSTM), softmax over
  the valid query steps, attended query ``hq_i = sum_j a_ij h^q_j``. *Cross gating*
  (``gating=True``): ``hq_i *= sigmoid(W_1 h^r_i + b_1)``, ``h^r_i *= sigmoid(W_2 hq_i + b_2)``.
  *Factorised bilinear* (``bilinear=True``): one shared linear map ``P: l -> l k`` (with
  bias) applied to both vectors, reshaped to ``(l, k)``, their elementwise product summed
  over ``k``; without it the two vectors are concatenated (``2 l``). The result feeds the
  matching LSTM. Both directions share attention, gating and bilinear weights and have
  their own LSTMs (run together as one batched cell); outputs are concatenated (``2 l``)
  with dropout keep 0.8.
* **Localization**: an LSTM over the ``2 l`` vectors and a linear layer to 4 logits
  (start, end, inside, outside).
* **Inference** (Sec. 3.5, Eq. 12): a span ``[s, e]`` is scored by its joint probability
  ``p_start(s) p_end(e) (prod_{i=s..e} p_inside(i))^(1 / (e - s + 1))``, in logs
  (:mod:`relocbench.temporal.decode`). The answer is the best span
  (:meth:`CrossGatedBilinearMatching.predict`); :func:`top_spans` ranks the ``k`` best
  distinct spans by the same score (``e >= s``, at most ``max_span`` steps), the first being
  the answer.

Every LSTM has hidden size ``l`` and its forget-gate bias initialised to ``forget_bias``.

Initialisation (``init``): ``"pytorch"`` keeps PyTorch's default draws (uniform
``1/sqrt(fan)`` bounds, biases included) with a trainable forget bias starting at
``forget_bias``; ``"tensorflow"`` is the original code's (:func:`tensorflow_init_`):
Glorot-uniform kernels and zero biases everywhere, and ``forget_bias`` added to the forget
gate as a constant that is never trained (TF's ``BasicLSTMCell``).
``cgbm`` (gating and bilinear), ``cgbm-base`` (neither: concatenation), ``cgbm-gating``
and ``cgbm-bilinear`` (Table 2) are configurations of this one class: :data:`VARIANTS`.

Parameter count at paper settings: 999,429 for ``cgbm`` (PyTorch LSTMs carry two bias
vectors where TensorFlow's carry one: 4 x 512 of those are the difference). With
``init="tensorflow"`` one of the two is the constant forget bias, not trained: 997,381
trainable, TensorFlow's count.

Padded batches: query and reference carry lengths. The forward LSTMs are causal, so
padding after a sequence cannot change its valid outputs; the backward matching direction
reverses each reference within its own length first; attention ignores padded query steps.
The LSTMs run over groups of similar length (``length_groups``), each cut at its own longest
sequence, and the matching loop sorts the pairs by reference length and steps only those
still inside their reference: an LSTM runs over padding only up to its group's longest
sequence, the matching never. Padded reference steps' outputs are never used.

The matching loop is one autograd function whose backward is written out
(:mod:`._cgbm_matching`): the same arithmetic, without autograd's per-step bookkeeping.
``tests/test_cgbm_equivalence.py`` holds its values and every gradient to the step-by-step
model's within 1e-6.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from relocbench.errors import ConfigError
from relocbench.temporal.decode import FORMS, MAX_SPAN_STEPS, DecodedSpans, decode_spans, span_score_table

from ._cgbm_matching import MatchingPlan, run_matching
from ._common import (KeepDropout, count_parameters, length_mask, reverse_index, reverse_padded, set_forget_bias,
                      with_reversed)

__all__ = ["CGBMConfig", "VARIANTS", "cgbm_config", "CrossGatedBilinearMatching", "cgbm_loss",
           "cgbm_parameter_count", "DualLSTMCell", "top_spans", "INITS", "POOLINGS", "glorot_bound",
           "tensorflow_init_", "set_tf_lstm_kernel_"]

#: ``init`` of :class:`CGBMConfig`: PyTorch's default draws, or the original code's TensorFlow ones.
INITS = ("pytorch", "tensorflow")
#: ``pooling`` of :func:`cgbm_loss`: mean per pair then over pairs, or over all valid steps of the batch.
POOLINGS = ("pair", "step")


@dataclass(frozen=True)
class CGBMConfig:
    """Hyperparameters of the model (paper settings by default)."""

    feature_dim: int = 500        # d
    hidden: int = 128             # l
    rank: int = 8                 # k of the factorised bilinear matching
    gating: bool = True           # cross gating
    bilinear: bool = True         # factorised bilinear matching (else concatenation)
    keep_aggregation: float = 0.6  # dropout keep probability on the aggregation outputs
    keep_matching: float = 0.8     # dropout keep probability on the matching outputs
    forget_bias: float = 1.0
    loss_weight: float = 10.0      # c_w: weight of start and end steps in the loss
    init: str = "pytorch"          # "pytorch" | "tensorflow" (module docstring)

    def __post_init__(self) -> None:
        for name in ("feature_dim", "hidden", "rank"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"The {name!r} parameter of CGBMConfig must be an int >= 1. Got {v!r} instead.")
        for name in ("keep_aggregation", "keep_matching"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 < v <= 1.0):
                raise ConfigError(f"The {name!r} parameter of CGBMConfig must be in (0, 1]. Got {v!r} instead.")
        for name in ("gating", "bilinear"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"The {name!r} parameter of CGBMConfig must be a bool. Got {getattr(self, name)!r}.")
        if not (isinstance(self.loss_weight, (int, float)) and self.loss_weight > 0 and math.isfinite(self.loss_weight)):
            raise ConfigError(f"The 'loss_weight' parameter of CGBMConfig must be > 0. Got {self.loss_weight!r}.")
        if self.init not in INITS:
            raise ConfigError(f"The 'init' parameter of CGBMConfig must be one of {INITS}. "
                              f"Got {self.init!r} instead.")

    def to_dict(self) -> Dict:
        return asdict(self)


#: The model and its Table 2 ablations, as overrides of :class:`CGBMConfig`.
VARIANTS: Dict[str, Dict[str, bool]] = {
    "cgbm": {"gating": True, "bilinear": True},
    "cgbm-base": {"gating": False, "bilinear": False},
    "cgbm-gating": {"gating": True, "bilinear": False},
    "cgbm-bilinear": {"gating": False, "bilinear": True},
}


def cgbm_config(name: str = "cgbm", **overrides) -> CGBMConfig:
    """The configuration of a named variant, with optional field overrides."""
    if name not in VARIANTS:
        raise ConfigError(f"unknown CGBM variant {name!r}; expected one of {sorted(VARIANTS)}")
    known = {f.name for f in fields(CGBMConfig)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ConfigError(f"unknown CGBMConfig field(s) {bad}; expected some of {sorted(known)}")
    return replace(CGBMConfig(), **{**VARIANTS[name], **overrides})


class DualLSTMCell(nn.Module):
    """Two independent LSTM cells (one per direction) stepped together as one batched op.

    Inputs ``x [2, B, in]`` and state ``(h, c)`` of ``[2, B, hidden]``; direction 0 uses the
    first cell's weights, direction 1 the second's. Same parameters and initialisation as
    two ``nn.LSTMCell`` (gates ``i, f, g, o``). The model holds its matching cells' parameters
    here and steps them inside its matching loop (:mod:`._cgbm_matching`, the same arithmetic
    as this ``forward``).
    """

    def __init__(self, input_size: int, hidden: int, forget_bias: float = 1.0) -> None:
        super().__init__()
        self.hidden = hidden
        bound = 1.0 / math.sqrt(hidden)
        self.weight_ih = nn.Parameter(torch.empty(2, input_size, 4 * hidden).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(2, hidden, 4 * hidden).uniform_(-bound, bound))
        self.bias_ih = nn.Parameter(torch.empty(2, 1, 4 * hidden).uniform_(-bound, bound))
        self.bias_hh = nn.Parameter(torch.empty(2, 1, 4 * hidden).uniform_(-bound, bound))
        set_forget_bias(self, forget_bias)

    def forward(self, x: torch.Tensor, state: Tuple[torch.Tensor, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        gates = torch.baddbmm(self.bias_ih + self.bias_hh, x, self.weight_ih) + torch.bmm(h, self.weight_hh)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class CrossGatedBilinearMatching(nn.Module):
    """The model; ``forward(query, query_len, ref, ref_len) -> logits [B, T_ref, 4]``."""

    def __init__(self, config: Optional[CGBMConfig] = None) -> None:
        super().__init__()
        cfg = config or CGBMConfig()
        self.config = cfg
        d, l, k = cfg.feature_dim, cfg.hidden, cfg.rank
        self.aggregation = nn.LSTM(d, l, batch_first=True)
        set_forget_bias(self.aggregation, cfg.forget_bias)
        self.drop_aggregation = KeepDropout(cfg.keep_aggregation)
        # attention: W_q (no bias), W_p [h^r ; h^m] + b_p (split in its two halves), w, b
        self.att_query = nn.Linear(l, l, bias=False)
        self.att_ref = nn.Linear(l, l, bias=True)        # the h^r half of W_p, with b_p
        self.att_match = nn.Linear(l, l, bias=False)     # the h^m half of W_p
        self.att_score = nn.Linear(l, 1, bias=True)      # w and b
        if cfg.gating:
            self.gate_query = nn.Linear(l, l)   # W_1: gates the attended query from h^r
            self.gate_ref = nn.Linear(l, l)     # W_2: gates h^r from the attended query
        if cfg.bilinear:
            self.bilinear = nn.Linear(l, l * k)
            match_in = l
        else:
            match_in = 2 * l
        self.matching = DualLSTMCell(match_in, l, cfg.forget_bias)
        self.drop_matching = KeepDropout(cfg.keep_matching)
        self.localization = nn.LSTM(2 * l, l, batch_first=True)
        set_forget_bias(self.localization, cfg.forget_bias)
        self.classifier = nn.Linear(l, 4)
        if cfg.init == "tensorflow":
            tensorflow_init_(self)

    def forward(self, query: torch.Tensor, query_len: torch.Tensor, ref: torch.Tensor,
                ref_len: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        b, tq, _ = query.shape
        tr = ref.shape[1]
        l = cfg.hidden
        if ref.shape[0] != b or query.shape[-1] != cfg.feature_dim or ref.shape[-1] != cfg.feature_dim:
            raise ConfigError(
                f"expected query [B, Tq, {cfg.feature_dim}] and reference [B, Tr, {cfg.feature_dim}]; "
                f"got {tuple(query.shape)} and {tuple(ref.shape)}"
            )
        query_len = query_len.to(query.device).long()
        ref_len = ref_len.to(ref.device).long()
        hq = self.drop_aggregation(self._run_grouped(self.aggregation, query, query_len))  # [B, Tq, l]
        hr = self.drop_aggregation(self._run_grouped(self.aggregation, ref, ref_len))      # [B, Tr, l]
        # The matching runs on the pairs sorted by reference length, longest first, so that at
        # step i the pairs still inside their reference are a prefix (n_i of them): a pair's
        # padded steps are never computed (both directions are valid at the same steps, the
        # backward one being reversed within its length). Sorted after the dropout, which
        # draws its masks in the batch's own order; the outputs are put back in that order.
        lens = ref_len.detach().cpu()
        order = torch.argsort(lens, descending=True, stable=True)
        identity = bool((order == torch.arange(b)).all())
        s_ref_len = ref_len                                               # in sorted order
        if not identity:
            dev_order = order.to(hr.device)
            hr, hq = hr.index_select(0, dev_order), hq.index_select(0, dev_order)
            query_len, s_ref_len = query_len.index_select(0, dev_order), ref_len.index_select(0, dev_order)
            lens = lens[order]
        active = (lens[None, :] > torch.arange(tr)[:, None]).sum(1).tolist()   # n_i at every step
        # both directions stacked on a leading axis: [2, B, Tr, l]; the maps of h^r that do
        # not depend on the step (W_p's h^r half, the query gate) are taken once and reversed
        # with it
        rev = reverse_index(s_ref_len, tr)
        hr2 = with_reversed(hr, s_ref_len, rev)
        # Attention runs on the valid query steps only, packed as rows [N, l] in pair order
        # (queries are padded to the longest of the batch, about twice their mean length), so
        # the rows of the first n pairs are the first ``cum[n]``. The scores of both directions
        # are scattered into a padded [2, n, Tq] matrix whose padding stays at the float
        # minimum, so softmax gives it zero weight.
        qb, qj = length_mask(query_len, tq).nonzero(as_tuple=True)        # sorted by pair, then step
        cum = [0] + torch.cumsum(query_len.detach().cpu(), 0).tolist()
        flat = qb * tq + qj                                               # [N] place in an [n, Tq] matrix
        # tanh(x) = 2 sigmoid(2 x) - 1: the scores are computed as 2 w^T sigmoid(2 x) + b - sum(w),
        # with the factor 2 folded into the keys and the per-step term (PyTorch's CPU tanh
        # costs about four times its sigmoid; the two agree to float rounding)
        keys = self.att_query(hq[qb, qj]).mul(2.0).repeat(1, 2)           # [N, 2l]: doubled, per direction
        w_score = self.att_score.weight.view(l) * 2.0
        b_score = (self.att_score.bias - self.att_score.weight.sum()).view(1)
        cell = self.matching
        plan = MatchingPlan(active=active, cum=cum, rows=qb, flat=flat, tq=tq, gating=cfg.gating,
                            bilinear=cfg.bilinear, rank=cfg.rank)
        # h^m_{i-1} enters a step twice, through W_p's h^m half (att_match) and the matching
        # cells' hidden weights: one batched matmul by both ([2, l, 4l + l]). Every term of
        # the attention's pre-activation comes doubled (the tanh above): keys, W_p's halves.
        w_hidden = torch.cat([cell.weight_hh, (self.att_match.weight.t() * 2.0).expand(2, l, l)], -1)
        ref_proj = F.linear(hr, self.att_ref.weight * 2.0, self.att_ref.bias * 2.0)
        gate_q = torch.sigmoid(self.gate_query(hr)) if cfg.gating else None
        hm = run_matching(
            plan, keys, hq, with_reversed(ref_proj, s_ref_len, rev), hr2,
            with_reversed(gate_q, s_ref_len, rev) if cfg.gating else None, w_score, b_score, w_hidden,
            cell.weight_ih, cell.bias_ih + cell.bias_hh,
            self.gate_ref.weight if cfg.gating else None, self.gate_ref.bias if cfg.gating else None,
            *(self._rank_major() if cfg.bilinear else (None, None)))
        hm = torch.cat([hm[0], reverse_padded(hm[1], s_ref_len, rev)], -1)     # [B, Tr, 2l]
        if not identity:
            hm = hm.index_select(0, torch.argsort(order).to(hm.device))   # back to the batch's order
        hl = self._run_grouped(self.localization, self.drop_matching(hm), ref_len)
        return self.classifier(hl)

    def _rank_major(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """The bilinear map's weight and bias with its ``l k`` outputs reordered from ``[l, k]``
        (this module's parameter layout, the original code's) to ``[k, l]``: summing over the
        rank then adds ``k`` contiguous rows, 2.8x faster than a sum over the innermost axis
        of 8 (measured at batch 64, one thread)."""
        l, k = self.config.hidden, self.config.rank
        w = self.bilinear.weight.view(l, k, l).transpose(0, 1).reshape(k * l, l)
        return w, self.bilinear.bias.view(l, k).t().reshape(k * l)

    #: Batches are run through an LSTM (the aggregation of queries and references, the
    #: localization) in up to this many groups of similar length, each cut at its own longest
    #: sequence (queries vary about twice as much as the length-bucketed references, whose
    #: batches are still about a quarter padding: one padded call spends that on padding).
    length_groups: int = 4

    def _run_grouped(self, lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``lstm``'s outputs ``[B, T, l]`` over ``x [B, T, in]`` at the valid steps, zeros after.

        The LSTM is causal, so a sequence's valid outputs do not depend on how far its batch
        is padded; the batch is sorted by length and cut into groups of equal size, each run
        to its own longest sequence. The padding is never read (attention gives padded query
        steps zero weight, the matching stops at each reference's length, the loss and the
        decoding mask padded reference steps).
        """
        b, t, _ = x.shape
        groups = min(self.length_groups, b)
        lens = lengths.detach().cpu()
        if groups <= 1 or int(lens.min()) == t:
            return lstm(x)[0]
        order = torch.argsort(lens, stable=True)
        parts = []
        for idx in torch.tensor_split(order, groups):
            m = max(int(lens[idx].max()), 1)
            out = lstm(x.index_select(0, idx.to(x.device))[:, :m])[0]
            parts.append(F.pad(out, (0, 0, 0, t - m)).transpose(0, 1))
        inverse = torch.argsort(order)
        # laid out time-major, as the LSTM lays out its own output: a dropout that follows
        # draws its mask in memory order, so the same seed drops the same units
        return torch.cat(parts, 1).index_select(1, inverse.to(x.device)).transpose(0, 1)

    @torch.no_grad()
    def log_probs(self, query, query_len, ref, ref_len) -> np.ndarray:
        """Per-step log-probabilities ``[B, T_ref, 4]`` (float64) of eval mode's dropout-free forward."""
        was = self.training
        self.eval()
        try:
            logits = self.forward(query, query_len, ref, ref_len)
        finally:
            self.train(was)
        return F.log_softmax(logits.double(), -1).cpu().numpy()

    @torch.no_grad()
    def predict(self, query, query_len, ref, ref_len, *, max_span: int = MAX_SPAN_STEPS,
                form: str = "paper") -> DecodedSpans:
        """Decoded spans (Eq. 12) of a batch, in eval mode's dropout-free forward."""
        return decode_spans(self.log_probs(query, query_len, ref, ref_len), ref_len.cpu().numpy(),
                            max_span=max_span, form=form)

    @torch.no_grad()
    def predict_top_k(self, query, query_len, ref, ref_len, *, top_k: int = 10, max_span: int = MAX_SPAN_STEPS,
                      form: str = "paper") -> List[DecodedSpans]:
        """The ``top_k`` best spans of every item (:func:`top_spans`); the first of each is
        :meth:`predict`'s span."""
        return top_spans(self.log_probs(query, query_len, ref, ref_len), ref_len.cpu().numpy(), top_k,
                         max_span=max_span, form=form)


def top_spans(log_probs, lengths, k: int, *, max_span: int = MAX_SPAN_STEPS, form: str = "paper"
              ) -> List[DecodedSpans]:
    """The ``k`` best distinct spans of every item by the Eq. 12 score, best first.

    ``log_probs [B, T, 4]`` and ``lengths [B]`` as for
    :func:`relocbench.temporal.decode.decode_spans`; the spans ``[s, e + 1)`` with
    ``s <= e < length`` and at most ``max_span`` steps are scored exactly as there (same
    arithmetic, so the first span and its score are ``decode_spans``'s bit for bit) and
    ranked by score; ties go to the smaller start, then the shorter span. Returns one
    :class:`DecodedSpans` of ``min(k, number of spans)`` entries per item.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"The 'k' parameter must be an int >= 1. Got {k!r} instead.")
    if isinstance(max_span, bool) or not isinstance(max_span, (int, np.integer)) or max_span < 1:
        raise ConfigError(f"The 'max_span' parameter must be an int >= 1. Got {max_span!r} instead.")
    if form not in FORMS:
        raise ConfigError(f"The 'form' parameter must be one of {FORMS}. Got {form!r} instead.")
    lp = np.asarray(log_probs, dtype=np.float64)
    if lp.ndim != 3 or lp.shape[-1] < 3:
        raise ConfigError(f"log_probs must have shape [B, T, 4] (start, end, inside, outside); got {lp.shape}")
    b, t = lp.shape[:2]
    n = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if n.shape != (b,) or ((n < 1) | (n > t)).any():
        raise ConfigError(f"lengths must hold one length in [1, {t}] per item ({b}); got {n.tolist()}")
    # the score table of decode_spans itself (same arithmetic: the first span is its answer)
    score, kk = span_score_table(lp, n, max_span, form)
    valid = np.isfinite(score)
    # stable: among equal scores the smaller flat index (start, then length) comes first,
    # as decode_spans's argmax; invalid spans sort last and are cut
    order = np.argsort(-score, axis=1, kind="stable")
    out = []
    for i in range(b):
        idx = order[i, :min(int(k), int(valid[i].sum()))]
        start = idx // kk
        out.append(DecodedSpans(start.astype(np.int64), (start + idx % kk + 1).astype(np.int64), score[i, idx]))
    return out


def cgbm_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor,
              pooling: str = "pair") -> torch.Tensor:
    """Weighted cross-entropy ``w_i CE_i`` of every valid step, pooled over the batch.

    ``pooling="pair"`` (the paper's Eq. 11): per pair ``1/r sum_i w_i CE_i`` over its ``r``
    valid steps, then the mean over pairs. ``pooling="step"`` (the original code,
    ``match.py`` lines 166-170: ``tf.boolean_mask`` by ``tf.sequence_mask(len_r)``, then
    ``tf.reduce_mean``): the mean over all valid steps of the batch, so a long reference
    weighs more than a short one. The two agree when every pair has the same length.

    ``labels [B, T, 4]`` and ``weights [B, T]`` from
    :func:`relocbench.temporal.labels.batch_labels` (weight 0 on padding); ``mask [B, T]``
    marks the valid steps.
    """
    if pooling not in POOLINGS:
        raise ConfigError(f"The 'pooling' parameter of cgbm_loss must be one of {POOLINGS}. Got {pooling!r} instead.")
    logp = F.log_softmax(logits, dim=-1)
    ce = -(labels * logp).sum(-1) * weights * mask
    if pooling == "step":
        return ce.sum() / mask.sum().clamp(min=1)
    return (ce.sum(1) / mask.sum(1).clamp(min=1)).mean()


def cgbm_parameter_count(config="cgbm") -> int:
    """Trainable parameters of a variant name or a :class:`CGBMConfig`."""
    cfg = cgbm_config(config) if isinstance(config, str) else config
    return count_parameters(CrossGatedBilinearMatching(cfg))


# --------------------------------------------------------------------------- the original initialisation


def glorot_bound(fan_in: int, fan_out: int) -> float:
    """``sqrt(6 / (fan_in + fan_out))``: the Glorot-uniform limit of a ``fan_in x fan_out`` kernel."""
    return math.sqrt(6.0 / (fan_in + fan_out))


#: TF's ``BasicLSTMCell`` orders its gate columns ``i, j, f, o`` (``j`` the candidate);
#: PyTorch orders ``i, f, g, o``: PyTorch's block ``k`` is TF's block ``_TF_GATE[k]``.
_TF_GATE = (0, 2, 1, 3)


def _torch_gate_order(kernel: torch.Tensor) -> torch.Tensor:
    """Columns of a TF LSTM kernel ``[..., 4 l]`` (``i, j, f, o``) in PyTorch's order (``i, f, g, o``)."""
    blocks = kernel.chunk(4, dim=-1)
    return torch.cat([blocks[k] for k in _TF_GATE], -1)


@torch.no_grad()
def set_tf_lstm_kernel_(lstm: nn.Module, kernel: torch.Tensor, forget_bias: float, *, direction: int = None) -> None:
    """Load a TF ``BasicLSTMCell`` into a PyTorch LSTM: ``kernel [in + l, 4 l]`` (rows ``[x ; h]``,
    columns ``i, j, f, o``), zero bias, and ``forget_bias`` as a constant.

    ``lstm`` is a one-layer ``nn.LSTM`` or a :class:`DualLSTMCell` (then ``direction`` 0 or 1).
    TF keeps one trainable bias and adds ``forget_bias`` to the forget gate at run time; here
    ``bias_hh`` is that trainable bias (zero) and ``bias_ih`` holds the constant (``forget_bias``
    on the forget slice, 0 elsewhere) with ``requires_grad`` off, so that the optimiser never
    sees it: forward values and gradients equal TF's.
    """
    k = _torch_gate_order(kernel.to(torch.float32))
    if isinstance(lstm, DualLSTMCell):
        n_in = lstm.weight_ih.shape[1]
        lstm.weight_ih[direction].copy_(k[:n_in])
        lstm.weight_hh[direction].copy_(k[n_in:])
        bias_ih, bias_hh = lstm.bias_ih, lstm.bias_hh
    else:
        n_in = lstm.weight_ih_l0.shape[1]
        lstm.weight_ih_l0.copy_(k[:n_in].t())
        lstm.weight_hh_l0.copy_(k[n_in:].t())
        bias_ih, bias_hh = lstm.bias_ih_l0, lstm.bias_hh_l0
    h = bias_hh.shape[-1] // 4
    bias_hh.zero_()
    bias_ih.zero_()
    bias_ih[..., h:2 * h] = forget_bias
    bias_ih.requires_grad_(False)


def _glorot_(t: torch.Tensor, fan_in: int, fan_out: int) -> None:
    bound = glorot_bound(fan_in, fan_out)
    t.uniform_(-bound, bound)


@torch.no_grad()
def tensorflow_init_(model: "CrossGatedBilinearMatching") -> None:
    """The original code's initialisation (TF 1.x defaults), drawn from torch's generator.

    Every kernel is Glorot-uniform, ``U(-b, b)`` with ``b = sqrt(6 / (fan_in + fan_out))`` of the
    kernel *as TF holds it*, and every bias is zero:

    * LSTMs (``BasicLSTMCell``, ``match.py`` lines 66, 74, 76, 89): one kernel over ``[x ; h]``
      of shape ``(in + l, 4 l)``, so ``b = sqrt(6 / (in + 5 l))`` for both PyTorch matrices
      ``weight_ih`` and ``weight_hh`` (not separate bounds per matrix); the forget bias is a
      constant added at run time, never trained (:func:`set_tf_lstm_kernel_`).
    * fully connected layers (``slim.fully_connected``, Xavier uniform, zero bias): the
      attention's ``fc_hq`` (``l x l``, no bias) and ``fc_g`` (``l x 1``), the gates
      ``gate_q``/``gate_r`` (``l x l``), the bilinear ``bi/fc`` (``l x l k``) and the output
      ``loc`` (``l x 4``) (``match_cell_wrapper.py`` lines 43-52, 68-71, 94-95; ``match.py``
      line 93). ``fc_hp`` is one ``2 l x l`` kernel over ``[h^r ; h^m]`` (lines 47-49):
      PyTorch's two halves (``att_ref``, ``att_match``) share its bound ``sqrt(6 / (3 l))``.
    """
    cfg = model.config
    d, l = cfg.feature_dim, cfg.hidden
    fb = float(cfg.forget_bias)
    for lstm, n_in in ((model.aggregation, d), (model.localization, 2 * l)):
        kernel = torch.empty(n_in + l, 4 * l)
        _glorot_(kernel, n_in + l, 4 * l)
        set_tf_lstm_kernel_(lstm, kernel, fb)
    n_match = model.matching.weight_ih.shape[1]
    for direction in (0, 1):
        kernel = torch.empty(n_match + l, 4 * l)
        _glorot_(kernel, n_match + l, 4 * l)
        set_tf_lstm_kernel_(model.matching, kernel, fb, direction=direction)
    for name in ("att_query", "att_score", "gate_query", "gate_ref", "bilinear", "classifier"):
        lin = getattr(model, name, None)
        if lin is not None:
            _glorot_(lin.weight, lin.in_features, lin.out_features)
            if lin.bias is not None:
                lin.bias.zero_()
    for lin in (model.att_ref, model.att_match):  # the two halves of fc_hp's [2 l, l] kernel
        _glorot_(lin.weight, 2 * l, l)
        if lin.bias is not None:
            lin.bias.zero_()
