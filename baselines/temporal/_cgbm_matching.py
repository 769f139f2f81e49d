"""cgbm's matching loop as one autograd function, its backward written out.

The loop of :class:`~.cgbm.CrossGatedBilinearMatching` (attention over the query, cross
gating, factorised bilinear matching and both directions' matching LSTM cells, at every
reference step) runs hundreds of small steps per batch. Left to autograd, each step records a
few dozen nodes whose backward allocates, zero-fills and adds up gradients one small tensor
at a time: on a CPU that bookkeeping costs about as much as the arithmetic. Here the forward
keeps what each step's backward needs, and the backward walks the steps in reverse with the
same arithmetic. The weights that multiply a per-step input (the cells' input and hidden
weights, the attention's values) get their gradients from one product over all steps at
the end, from the per-step gradients written into one buffer as the steps pass (a product
over thousands of rows runs at the matmul's full rate, dozens of small ones do not); the
other weights accumulate theirs in place, step by step.

The pairs are sorted by reference length, longest first, so at step ``i`` the pairs still
inside their reference are the first ``n_i`` (:class:`MatchingPlan`); attention reads the
valid query steps only, packed as rows ``[N, l]`` in pair order (the first ``n`` pairs' rows
are the first ``cum[n]``).

Shapes: ``keys [N, 2 l]`` (``2 W_q h^q_j``, twice side by side: one row per direction, so
that adding them to a step's ``[m, 2, l]`` rows needs no broadcast and their gradient is a
plain sum), ``values [B, Tq, l]`` (``h^q``), ``ref_proj``,
``ref``, ``gate_q`` of ``[2, B, Tr, l]`` (twice ``W_p``'s ``h^r`` half with its bias, ``h^r``
and the query gate ``sigmoid(W_1 h^r + b_1)`` of both directions), ``w_score [l]`` and
``b_score [1]`` (the attention score's doubled weight and shifted bias: ``tanh(x) = 2
sigmoid(2 x) - 1``), ``w_hidden [2, l, 4 l + l]`` (the cells' hidden weights beside twice
``W_p``'s ``h^m`` half: every term of the attention's pre-activation comes doubled),
``w_ih [2, in, 4 l]``, ``bias [2, 1, 4 l]``, ``w_gate``/``b_gate`` (``W_2``,
``b_2``), ``w_bil``/``b_bil`` (``P: l -> l k``, its ``l k`` outputs ordered rank-major:
``[k, l]``, so that the sum over the rank adds whole contiguous rows; the module's
``nn.Linear`` orders them ``[l, k]``). Returns the matching states
``[2, B, Tr, l]``, zero after each reference's length.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

__all__ = ["MatchingPlan", "run_matching"]


@dataclass
class MatchingPlan:
    """What the loop steps over: ``active[i]`` pairs at step ``i`` (non-increasing), ``cum[n]``
    valid query rows of the first ``n`` pairs, ``rows``/``flat`` (each query row's pair and its
    place in a ``[n, Tq]`` matrix), the query's padded length and the variant."""

    active: List[int]
    cum: List[int]
    rows: torch.Tensor
    flat: torch.Tensor
    tq: int
    gating: bool
    bilinear: bool
    rank: int


def run_matching(plan: MatchingPlan, keys, values, ref_proj, ref, gate_q, w_score, b_score, w_hidden, w_ih,
                 bias, w_gate, b_gate, w_bil, b_bil) -> torch.Tensor:
    """The matching states ``[2, B, Tr, l]`` (module docstring); differentiable in every tensor."""
    tensors = (keys, values, ref_proj, ref, gate_q, w_score, b_score, w_hidden, w_ih, bias, w_gate, b_gate,
               w_bil, b_bil)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return _Matching.apply(plan, *tensors)
    return _forward(plan, *tensors, saved=None)


def _forward(plan, keys, values, ref_proj, ref, gate_q, w_score, b_score, w_hidden, w_ih, bias, w_gate, b_gate,
             w_bil, b_bil, *, saved: Optional[list]) -> torch.Tensor:
    _, b, tr, l = ref.shape
    tq, k = plan.tq, plan.rank
    out = ref.new_zeros(2, b, tr, l)
    h = ref.new_zeros(2, b, l)
    c = ref.new_zeros(2, b, l)
    u_buf = ref.new_empty(b, 2, l)
    # the cells' bias beside a zero one for W_p's h^m half: the hidden product carries it
    bias_hidden = torch.cat([bias, bias.new_zeros(2, 1, l)], -1)
    # attention scores of padded query steps stay at the float minimum: zero weight
    e_pad = ref.new_full((2, b * tq), torch.finfo(ref.dtype).min)
    if saved is not None:
        # every step's attention weights, pair-major, zero where a pair has ended: the
        # backward's gradient of the values is one batched product over all steps
        saved.append(ref.new_zeros(b, tr, 2, tq))
    for i in range(tr):
        n = plan.active[i]
        if n == 0:
            break
        m = plan.cum[n]
        h_prev, c_prev = h[:, :n], c[:, :n]
        hw = torch.baddbmm(bias_hidden, h_prev, w_hidden)                  # [2, n, 4l + l]
        # u = ref_proj + h W_p^m (both doubled by the caller), written pair-major ([n, 2, l])
        # as attention reads it: per-pair sums are row sums of its [m, 2, l] rows
        u = u_buf[:n]
        torch.add(ref_proj[:, :n, i], hw[..., 4 * l:], out=u.transpose(0, 1))
        s = u.index_select(0, plan.rows[:m])
        s.add_(keys[:m].view(m, 2, l)).sigmoid_()
        score = torch.mv(s.view(-1, l), w_score).view(m, 2).t() + b_score  # [2, m]
        alpha = torch.softmax(e_pad[:, :n * tq].index_copy(1, plan.flat[:m], score).view(2, n, tq), -1)
        att = torch.bmm(alpha.transpose(0, 1), values[:n]).transpose(0, 1)  # [2, n, l]
        if saved is not None:
            saved[0][:n, i] = alpha.transpose(0, 1)
        r = ref[:, :n, i]
        gr = None
        if plan.gating:  # both gates from the ungated vectors
            gr = torch.sigmoid(F.linear(att, w_gate, b_gate))
            att_g, r_g = att * gate_q[:, :n, i], r * gr
        else:
            att_g, r_g = att, r
        x = proj = None
        if plan.bilinear:
            x = torch.stack([att_g, r_g], 0)                               # [2 (query, ref), 2, n, l]
            proj = F.linear(x, w_bil, b_bil).view(2, 2, n, k, l)
            t = (proj[0] * proj[1]).sum(-2)
        else:
            t = torch.cat([att_g, r_g], -1)
        gates = torch.baddbmm(hw[..., :4 * l], t, w_ih)                    # i, f, g, o
        act = torch.sigmoid(gates)
        g = torch.tanh(gates[..., 2 * l:3 * l])
        c = torch.addcmul(act[..., l:2 * l] * c_prev, act[..., :l], g)
        tc = torch.tanh(c)
        h = act[..., 3 * l:] * tc
        out[:, :n, i] = h
        if saved is not None:
            saved.append((h_prev, c_prev, s, att, gr, x, proj, t, act, g, tc))
    return out


class _Matching(torch.autograd.Function):

    @staticmethod
    def forward(ctx, plan, *tensors):
        ctx.plan = plan
        ctx.saved = []
        ctx.save_for_backward(*tensors)
        return _forward(plan, *tensors, saved=ctx.saved)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out):
        plan, saved = ctx.plan, ctx.saved
        if saved is None:  # each step's activations are freed as the backward passes it
            raise RuntimeError("cgbm's matching loop was already backpropagated once: run the forward again "
                               "(retain_graph does not keep its per-step activations)")
        (keys, values, ref_proj, ref, gate_q, w_score, b_score, w_hidden, w_ih, bias, w_gate, b_gate,
         w_bil, b_bil) = ctx.saved_tensors
        need = ctx.needs_input_grad[1:]
        l, k, tq = ref.shape[-1], plan.rank, plan.tq
        alphas, steps = saved[0], saved[1:]

        def buf(t, i):
            return torch.zeros_like(t) if need[i] else None

        d_keys, d_ref_proj, d_ref, d_gate_q = (buf(t, i) for i, t in
                                               zip((0, 2, 3, 4), (keys, ref_proj, ref, gate_q)))
        d_w_score, d_b_score = torch.zeros_like(w_score), torch.zeros_like(b_score)
        # The weights that multiply a per-step input (the cells' input and hidden weights, the
        # attention's values) get their gradients from one product over all steps at the end,
        # not a small one per step: every step's gate and ``u`` gradients are written into
        # ``d_hw`` ([2, S, 4 l + l], S the active pairs summed over the steps, step by step in
        # order), its ``d_att`` into ``d_att_all`` ([B, Tr, 2, l], zero where a pair has ended).
        offsets = [0]
        for st in steps:
            offsets.append(offsets[-1] + st[3].shape[1])
        d_hw_all = ref.new_empty(2, offsets[-1], 5 * l)
        d_att_all = ref.new_zeros(alphas.shape[:-1] + (l,)) if need[1] else None
        # the linear maps' weight gradients are accumulated transposed ([in, out]: inputs^T
        # times output gradients, the faster of the two products at these shapes, 0.82x for
        # the bilinear map at batch 64 on one thread) and transposed back at the end
        d_w_gate_t = w_gate.new_zeros(w_gate.shape[::-1]) if plan.gating else None
        d_b_gate = torch.zeros_like(b_gate) if plan.gating else None
        d_w_bil_t = w_bil.new_zeros(w_bil.shape[::-1]) if plan.bilinear else None
        d_b_bil = torch.zeros_like(b_bil) if plan.bilinear else None
        h_prevs = [st[0] for st in steps]
        ts = [st[7] for st in steps]
        sigmoid_bw, tanh_bw = torch.ops.aten.sigmoid_backward.grad_input, torch.ops.aten.tanh_backward.grad_input
        dh = dc = None
        for i in reversed(range(len(steps))):
            h_prev, c_prev, s, att, gr, x, proj, t, act, g, tc = steps[i]
            steps[i] = None  # free what this step kept as soon as it is used
            n, m = att.shape[1], s.shape[0]
            d_hw = d_hw_all[:, offsets[i]:offsets[i + 1]]                         # [2, n, 4l + l]
            # gradients reaching h_i and c_i: the output, and step i + 1 (its first rows)
            if dh is None:
                dh_i = g_out[:, :n, i]
                dc_i = torch.zeros_like(dh_i)
            elif dh.shape[1] == n:
                dh_i, dc_i = dh.add_(g_out[:, :n, i]), dc
            else:
                dh_i = g_out[:, :n, i].clone()
                dh_i[:, :dh.shape[1]] += dh
                dc_i = torch.zeros_like(dh_i)
                dc_i[:, :dc.shape[1]] = dc
            # the LSTM cells: the gates' gradients (i, f, g, o) written in place
            i_g, f_g, o_g = act[..., :l], act[..., l:2 * l], act[..., 3 * l:]
            dct = dc_i.add_(torch.ops.aten.tanh_backward(dh_i * o_g, tc))
            sigmoid_bw(dct * g, i_g, grad_input=d_hw[..., :l])
            sigmoid_bw(dct * c_prev, f_g, grad_input=d_hw[..., l:2 * l])
            tanh_bw(dct * i_g, g, grad_input=d_hw[..., 2 * l:3 * l])
            sigmoid_bw(dh_i * tc, o_g, grad_input=d_hw[..., 3 * l:4 * l])
            d_gates = d_hw[..., :4 * l]
            dt = torch.bmm(d_gates, w_ih.transpose(1, 2))
            # bilinear matching (or concatenation)
            if plan.bilinear:
                g_proj = torch.empty_like(proj)
                torch.mul(proj[1], dt.unsqueeze(-2), out=g_proj[0])
                torch.mul(proj[0], dt.unsqueeze(-2), out=g_proj[1])
                g_proj = g_proj.view(4 * n, l * k)
                d_w_bil_t.addmm_(x.reshape(4 * n, l).t(), g_proj)
                d_b_bil += g_proj.sum(0)
                dx = torch.mm(g_proj, w_bil).view(2, 2, n, l)
                d_att_g, d_r_g = dx[0], dx[1]
            else:
                d_att_g, d_r_g = dt[..., :l], dt[..., l:]
            # cross gating
            if plan.gating:
                if d_gate_q is not None:
                    torch.mul(d_att_g, att, out=d_gate_q[:, :n, i])
                if d_ref is not None:
                    torch.mul(d_r_g, gr, out=d_ref[:, :n, i])
                dz = torch.ops.aten.sigmoid_backward(d_r_g * ref[:, :n, i], gr).view(2 * n, l)
                d_w_gate_t.addmm_(att.reshape(2 * n, l).t(), dz)
                d_b_gate += dz.sum(0)
                d_att = torch.addmm((d_att_g * gate_q[:, :n, i]).view(2 * n, l), dz, w_gate).view(2, n, l)
            else:
                d_att = d_att_g
                if d_ref is not None:
                    d_ref[:, :n, i] = d_r_g
            # attention
            d_att = d_att.transpose(0, 1)                                          # [n, 2, l]
            if d_att_all is not None:
                d_att_all[:n, i] = d_att
            alpha = alphas[:n, i].transpose(0, 1)                                  # [2, n, tq]
            d_alpha = torch.bmm(d_att, values[:n].transpose(1, 2)).transpose(0, 1)  # [2, n, tq]
            d_e = alpha * (d_alpha - (alpha * d_alpha).sum(-1, keepdim=True))
            d_score = d_e.reshape(2, n * tq).index_select(1, plan.flat[:m]).t().contiguous()  # [m, 2]
            d_b_score += d_score.sum()
            d_w_score.addmv_(s.view(-1, l).t(), d_score.view(-1))
            d_pre = torch.ops.aten.sigmoid_backward(d_score.unsqueeze(-1) * w_score, s)  # [m, 2, l]
            if d_keys is not None:
                d_keys[:m] += d_pre.view(m, 2 * l)
            # u = ref_proj + h W_p^m: both get u's gradient, the sum of its pair's rows
            d_u = d_hw[..., 4 * l:]
            # (summed into a contiguous [n, 2, l] first: index_add_ into a strided view takes
            # a per-row path, ten times slower)
            d_u.copy_(s.new_zeros(n, 2, l).index_add_(0, plan.rows[:m], d_pre).transpose(0, 1))
            if d_ref_proj is not None:
                d_ref_proj[:, :n, i] = d_u
            if i == 0:
                break  # h_{-1} = c_{-1} = 0: nothing flows further back
            dh = torch.bmm(d_hw, w_hidden.transpose(1, 2))
            dc = dct.mul_(f_g)
        ctx.saved = None
        d_gates_all = d_hw_all[..., :4 * l]
        d_bias = d_gates_all.sum(1, keepdim=True)
        d_w_ih = torch.bmm(torch.cat(ts, 1).transpose(1, 2), d_gates_all)
        # step 0's previous state is zero: its rows add nothing
        d_w_hidden = (torch.bmm(torch.cat(h_prevs[1:], 1).transpose(1, 2), d_hw_all[:, offsets[1]:])
                      if len(h_prevs) > 1 else torch.zeros_like(w_hidden))
        d_values = None
        if d_att_all is not None:
            b, tr = alphas.shape[:2]
            d_values = torch.bmm(alphas.view(b, tr * 2, tq).transpose(1, 2), d_att_all.view(b, tr * 2, l))
        d_w_gate = d_w_gate_t.t() if plan.gating else None
        d_w_bil = d_w_bil_t.t() if plan.bilinear else None
        grads = (d_keys, d_values, d_ref_proj, d_ref, d_gate_q, d_w_score, d_b_score, d_w_hidden, d_w_ih, d_bias,
                 d_w_gate, d_b_gate, d_w_bil, d_b_bil)
        return (None,) + tuple(d if need[j] else None for j, d in enumerate(grads))
