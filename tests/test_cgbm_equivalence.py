"""cgbm's forward values and gradients equal the plain step-by-step form of the model.

``_reference_forward`` is the model as it was checked against the original TensorFlow
graph (to 1e-6), written step by step from the module's own parameters: attention, cross
gating, bilinear matching and both matching LSTM cells computed separately at every
reference step. The module's forward (which precomputes and fuses what does not depend on
the recurrent state) must give the same logits and the same gradient for every parameter
within 1e-6, for both recipes' initialisations and loss poolings, every variant, on a batch
of mixed query and reference lengths, in eval mode and in train mode (same dropout draws).
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from relocbench.temporal.labels import batch_labels  # noqa: E402
from relocbench_baselines.temporal._common import length_mask, reverse_padded  # noqa: E402
from relocbench_baselines.temporal.cgbm import CrossGatedBilinearMatching, cgbm_config, cgbm_loss  # noqa: E402

torch.set_num_threads(1)
ATOL = 1e-6
#: the two recipes' model-side differences (baselines/temporal/zoo.py CGBM_RECIPES)
RECIPES = {"paper": ("pytorch", "pair"), "original": ("tensorflow", "step")}
Q_LEN = [3, 7, 5, 1, 7]
R_LEN = [9, 4, 12, 1, 12]


def _reference_cell(cell, x, h, c):
    """One step of both directions' LSTM cells, as two separate cells (gates ``i, f, g, o``)."""
    hs, cs = [], []
    for k in range(2):
        gates = x[k] @ cell.weight_ih[k] + cell.bias_ih[k, 0] + h[k] @ cell.weight_hh[k] + cell.bias_hh[k, 0]
        i, f, g, o = gates.chunk(4, dim=-1)
        ck = torch.sigmoid(f) * c[k] + torch.sigmoid(i) * torch.tanh(g)
        hs.append(torch.sigmoid(o) * torch.tanh(ck))
        cs.append(ck)
    return torch.stack(hs), torch.stack(cs)


def _reference_forward(m, query, query_len, ref, ref_len):
    """The model's equations at every reference step, with padded queries masked in the softmax."""
    cfg = m.config
    b, tq, _ = query.shape
    tr, l = ref.shape[1], cfg.hidden
    hq = m.drop_aggregation(m.aggregation(query)[0])
    hr = m.drop_aggregation(m.aggregation(ref)[0])
    hr2 = torch.cat([hr, reverse_padded(hr, ref_len)], 0)
    hq2 = torch.cat([hq, hq], 0)
    qmask = torch.cat([length_mask(query_len, tq)] * 2, 0)
    keys = m.att_query(hq2)                                            # [2B, Tq, l]
    h = hr.new_zeros(2, b, l)
    c = hr.new_zeros(2, b, l)
    outs = []
    for i in range(tr):
        r_i = hr2[:, i]
        u = m.att_ref(r_i) + m.att_match(h.reshape(2 * b, l))
        e = m.att_score(torch.tanh(keys + u[:, None, :])).squeeze(-1)
        e = e.masked_fill(~qmask, float("-inf"))
        att = (torch.softmax(e, -1)[..., None] * hq2).sum(1)
        if cfg.gating:
            # each vector gated from the other's ungated value
            att, r_i = att * torch.sigmoid(m.gate_query(r_i)), r_i * torch.sigmoid(m.gate_ref(att))
        if cfg.bilinear:
            pq = m.bilinear(att).view(-1, l, cfg.rank)
            pr = m.bilinear(r_i).view(-1, l, cfg.rank)
            t = (pq * pr).sum(-1)
        else:
            t = torch.cat([att, r_i], -1)
        h, c = _reference_cell(m.matching, t.view(2, b, -1), h, c)
        outs.append(h)
    hm = torch.stack(outs, 2)
    hm = torch.cat([hm[0], reverse_padded(hm[1], ref_len)], -1)
    return m.classifier(m.localization(m.drop_matching(hm))[0])


def _batch(d, seed=0):
    g = torch.Generator().manual_seed(seed)
    ql, rl = torch.tensor(Q_LEN), torch.tensor(R_LEN)
    query = torch.randn(len(Q_LEN), max(Q_LEN), d, generator=g)
    ref = torch.randn(len(R_LEN), max(R_LEN), d, generator=g)
    gs = np.array([2, 0, 5, 0, 0])
    ge = np.array([6, 3, 11, 1, 12])
    return query, ql, ref, rl, gs, ge


def _loss_and_grads(model, fwd, batch, pooling, train, seed):
    query, ql, ref, rl, gs, ge = batch
    model.train(train)
    model.zero_grad()
    torch.manual_seed(seed)  # the same dropout draws for both forms
    logits = fwd(query, ql, ref, rl)
    labels, weights, mask = batch_labels(rl.numpy(), gs, ge, max_len=logits.shape[1], cw=10.0)
    loss = cgbm_loss(logits, torch.from_numpy(labels), torch.from_numpy(weights),
                     torch.from_numpy(mask).to(logits.dtype), pooling=pooling)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return logits.detach(), grads


@pytest.mark.parametrize("recipe", sorted(RECIPES))
@pytest.mark.parametrize("variant", ["cgbm", "cgbm-base", "cgbm-gating", "cgbm-bilinear"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_forward_and_gradients_equal_the_step_by_step_model(recipe, variant, train):
    init, pooling = RECIPES[recipe]
    torch.manual_seed(3)
    model = CrossGatedBilinearMatching(cgbm_config(variant, feature_dim=6, hidden=8, rank=3, init=init))
    batch = _batch(6)
    ref_logits, ref_grads = _loss_and_grads(model, lambda *a: _reference_forward(model, *a), batch, pooling,
                                            train, seed=11)
    logits, grads = _loss_and_grads(model, model, batch, pooling, train, seed=11)
    valid = length_mask(batch[3], logits.shape[1])
    # padded reference steps' logits are never used (the loss and decoding mask them)
    torch.testing.assert_close(logits[valid], ref_logits[valid], atol=ATOL, rtol=0)
    assert set(grads) == set(ref_grads)
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], atol=ATOL, rtol=0, msg=name)
    # the gradients are not trivially zero: every trainable parameter receives one
    assert all(float(g.abs().max()) > 0 for g in grads.values())


def test_the_reference_sees_a_change_of_any_step():
    """The comparison can fail: a model whose bilinear map is perturbed after the reference
    ran gives different logits beyond the tolerance."""
    torch.manual_seed(3)
    model = CrossGatedBilinearMatching(cgbm_config("cgbm", feature_dim=6, hidden=8, rank=3)).eval()
    query, ql, ref, rl, _, _ = _batch(6)
    with torch.no_grad():
        before = _reference_forward(model, query, ql, ref, rl)
        model.bilinear.bias.add_(1e-3)
        after = model(query, ql, ref, rl)
    assert float((after - before).abs().max()) > 10 * ATOL


def test_a_second_backward_through_the_matching_says_why_it_cannot():
    """The matching loop frees each step's activations as its backward passes; a second
    backward through the same forward (``retain_graph=True``) raises a clear error instead of
    computing from freed state, and a fresh forward backpropagates again."""
    torch.manual_seed(3)
    model = CrossGatedBilinearMatching(cgbm_config("cgbm", feature_dim=6, hidden=8, rank=3)).train()
    query, ql, ref, rl, _, _ = _batch(6)
    out = model(query, ql, ref, rl).square().sum()
    out.backward(retain_graph=True)
    first = model.bilinear.weight.grad.clone()
    with pytest.raises(RuntimeError, match="already backpropagated once"):
        out.backward()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    model(query, ql, ref, rl).square().sum().backward()
    assert float(model.bilinear.weight.grad.abs().max()) > 0 and first.shape == model.bilinear.weight.grad.shape
