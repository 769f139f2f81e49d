"""The temporal models: CGBM and its ablations, the video-level LSTM and SST (tiny configs)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from relocbench_baselines.temporal._common import reverse_padded, set_forget_bias  # noqa: E402
from relocbench_baselines.temporal.cgbm import (  # noqa: E402
    VARIANTS,
    CGBMConfig,
    CrossGatedBilinearMatching,
    DualLSTMCell,
    cgbm_config,
    cgbm_loss,
    cgbm_parameter_count,
)
from relocbench_baselines.temporal.sst import SSTConfig, SSTModel, sst_loss, sst_parameter_count  # noqa: E402
from relocbench_baselines.temporal.video_triplet import (  # noqa: E402
    VideoLSTMEncoder,
    VideoTripletConfig,
    sample_triplet_spans,
    search_span,
    triplet_loss,
    video_triplet_parameter_count,
)
from relocbench.errors import ConfigError  # noqa: E402
from relocbench.temporal.labels import batch_labels  # noqa: E402
from relocbench.temporal.sst import anchor_positive_rate, batch_anchor_labels, span_tiou  # noqa: E402

torch.set_num_threads(1)
D = 6


def tiny(name="cgbm", **kw):
    return cgbm_config(name, feature_dim=D, hidden=5, rank=2, **kw)


def _batch(seed=0, b=3, tq=4, tr=9):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, tq, D, generator=g)
    r = torch.randn(b, tr, D, generator=g)
    ql = torch.tensor([tq, 2, 3][:b])
    rl = torch.tensor([tr, 5, 7][:b])
    return q, ql, r, rl


# --------------------------------------------------------------------------- helpers
def test_reverse_padded_is_an_involution():
    x = torch.arange(10.0).view(2, 5, 1)
    lengths = torch.tensor([5, 3])
    y = reverse_padded(x, lengths)
    assert y[0, :, 0].tolist() == [4, 3, 2, 1, 0]
    assert y[1, :, 0].tolist() == [7, 6, 5, 8, 9]
    assert torch.equal(reverse_padded(y, lengths), x)


def test_dual_cell_equals_two_lstm_cells():
    torch.manual_seed(0)
    dual = DualLSTMCell(4, 3, forget_bias=1.0)
    cells = [torch.nn.LSTMCell(4, 3) for _ in range(2)]
    with torch.no_grad():
        for k, cell in enumerate(cells):
            cell.weight_ih.copy_(dual.weight_ih[k].T)
            cell.weight_hh.copy_(dual.weight_hh[k].T)
            cell.bias_ih.copy_(dual.bias_ih[k, 0])
            cell.bias_hh.copy_(dual.bias_hh[k, 0])
    x, h, c = torch.randn(2, 5, 4), torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    h2, c2 = dual(x, (h, c))
    for k, cell in enumerate(cells):
        hk, ck = cell(x[k], (h[k], c[k]))
        torch.testing.assert_close(h2[k], hk)
        torch.testing.assert_close(c2[k], ck)
    # forget-gate bias: input bias 1, hidden bias 0 on the f slice
    assert torch.all(dual.bias_ih[..., 3:6] == 1.0) and torch.all(dual.bias_hh[..., 3:6] == 0.0)


def test_set_forget_bias_on_nn_lstm():
    lstm = torch.nn.LSTM(4, 3)
    set_forget_bias(lstm, 1.0)
    assert torch.all(lstm.bias_ih_l0[3:6] == 1.0) and torch.all(lstm.bias_hh_l0[3:6] == 0.0)


# --------------------------------------------------------------------------- CGBM
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_cgbm_forward_shapes(name):
    torch.manual_seed(0)
    model = CrossGatedBilinearMatching(tiny(name))
    q, ql, r, rl = _batch()
    logits = model(q, ql, r, rl)
    assert logits.shape == (3, 9, 4) and torch.isfinite(logits).all()
    spans = model.predict(q, ql, r, rl)
    assert (spans.end_step <= rl.numpy()).all() and (spans.start_step < spans.end_step).all()
    # the ranked spans start with the decoded one (same score, bit for bit) and are distinct
    ranked = model.predict_top_k(q, ql, r, rl, top_k=5, max_span=4)
    one = model.predict(q, ql, r, rl, max_span=4)
    for i, top in enumerate(ranked):
        assert (top.start_step[0], top.end_step[0], top.score[0]) == (one.start_step[i], one.end_step[i],
                                                                       one.score[i])
        assert len(set(zip(top.start_step.tolist(), top.end_step.tolist()))) == len(top.score) == 5
        assert np.all(np.diff(top.score) <= 0) and np.all(top.end_step - top.start_step <= 4)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_cgbm_padding_does_not_change_valid_outputs(name):
    torch.manual_seed(1)
    model = CrossGatedBilinearMatching(tiny(name)).eval()
    q, ql, r, rl = _batch(seed=2)
    batched = model(q, ql, r, rl)
    for i in range(3):
        nq, nr = int(ql[i]), int(rl[i])
        alone = model(q[i:i + 1, :nq], ql[i:i + 1], r[i:i + 1, :nr], rl[i:i + 1])
        torch.testing.assert_close(batched[i, :nr], alone[0], rtol=1e-5, atol=1e-5)
    # garbage in the padding changes nothing either
    q2, r2 = q.clone(), r.clone()
    q2[1, 2:] = 1e3
    r2[1, 5:] = -1e3
    torch.testing.assert_close(model(q2, ql, r2, rl)[1, :5], batched[1, :5], rtol=1e-5, atol=1e-5)


def _lstm_cell(x, h, c, w_ih, w_hh, b):
    """One LSTM step written out (gates i, f, g, o): ``w_ih [4l, in]``, ``w_hh [4l, l]``."""
    i, f, g, o = (w_ih @ x + w_hh @ h + b).chunk(4)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _lstm(xs, lstm):
    """An nn.LSTM layer run step by step over ``xs [T, in]`` (one sequence, no padding)."""
    w_ih, w_hh = lstm.weight_ih_l0, lstm.weight_hh_l0
    b = lstm.bias_ih_l0 + lstm.bias_hh_l0
    h = c = torch.zeros(w_hh.shape[1], dtype=w_hh.dtype)
    out = []
    for x in xs:
        h, c = _lstm_cell(x, h, c, w_ih, w_hh, b)
        out.append(h)
    return torch.stack(out)


def _reference_cgbm(model, q, r):
    """The model's equations for one pair (query ``[Tq, d]``, reference ``[Tr, d]``), read
    straight off the module docstring: per step, per direction, no batching or packing."""
    cfg, l = model.config, model.config.hidden
    hq, hr = _lstm(q, model.aggregation), _lstm(r, model.aggregation)
    cell = model.matching
    outs = []
    for direction, steps in ((0, range(len(r))), (1, reversed(range(len(r))))):
        w_ih, w_hh = cell.weight_ih[direction].T, cell.weight_hh[direction].T
        b = (cell.bias_ih[direction] + cell.bias_hh[direction])[0]
        h = c = torch.zeros(l, dtype=w_hh.dtype)
        out = [None] * len(r)
        for i in steps:
            e = torch.stack([model.att_score(torch.tanh(model.att_query(hq[j]) + model.att_ref(hr[i])
                                                        + model.att_match(h)))[0] for j in range(len(q))])
            a = torch.softmax(e, 0)
            att = (a[:, None] * hq).sum(0)
            ri = hr[i]
            if cfg.gating:
                att, ri = att * torch.sigmoid(model.gate_query(hr[i])), ri * torch.sigmoid(model.gate_ref(att))
            if cfg.bilinear:
                t = (model.bilinear(att).view(l, cfg.rank) * model.bilinear(ri).view(l, cfg.rank)).sum(-1)
            else:
                t = torch.cat([att, ri])
            h, c = _lstm_cell(t, h, c, w_ih, w_hh, b)
            out[i] = h
        outs.append(torch.stack(out))
    return model.classifier(_lstm(torch.cat(outs, -1), model.localization))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_cgbm_equals_its_equations_pair_by_pair(name):
    """The batched forward (packed attention over valid query steps, both directions as one
    batch, padded references reversed in place) equals the readable per-pair equations, and
    so do its gradients."""
    torch.manual_seed(3)
    model = CrossGatedBilinearMatching(tiny(name)).double().eval()
    q, ql, r, rl = (x.double() if x.is_floating_point() else x for x in _batch(seed=4))
    ql = torch.tensor([4, 1, 3])
    batched = model(q, ql, r, rl)
    for i in range(3):
        nq, nr = int(ql[i]), int(rl[i])
        expected = _reference_cgbm(model, q[i, :nq], r[i, :nr])
        torch.testing.assert_close(batched[i, :nr], expected, rtol=1e-10, atol=1e-10)
    weights = torch.randn(batched.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    mask = (torch.arange(9)[None, :] < rl[:, None]).double()[..., None]
    grads = torch.autograd.grad((batched * weights * mask).sum(), list(model.parameters()))
    ref_total = sum((_reference_cgbm(model, q[i, :int(ql[i])], r[i, :int(rl[i])]) * weights[i, :int(rl[i])]).sum()
                    for i in range(3))
    ref_grads = torch.autograd.grad(ref_total, list(model.parameters()), allow_unused=True)
    for (pname, _), g, g_ref in zip(model.named_parameters(), grads, ref_grads):
        if g_ref is None:  # the attention score's bias: softmax cancels it
            assert pname == "att_score.bias" and g.abs().max() < 1e-12, pname
        else:
            torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-10, msg=pname)


def test_cgbm_dropout_only_in_training():
    torch.manual_seed(0)
    model = CrossGatedBilinearMatching(tiny())
    q, ql, r, rl = _batch()
    model.eval()
    torch.testing.assert_close(model(q, ql, r, rl), model(q, ql, r, rl))
    model.train()
    assert not torch.allclose(model(q, ql, r, rl), model(q, ql, r, rl))


def test_ablations_differ_only_where_they_should():
    names = {v: {n: tuple(p.shape) for n, p in CrossGatedBilinearMatching(tiny(v)).named_parameters()}
             for v in VARIANTS}
    gating = {"gate_query.weight", "gate_query.bias", "gate_ref.weight", "gate_ref.bias"}
    bilinear = {"bilinear.weight", "bilinear.bias"}
    full = set(names["cgbm"])
    assert set(names["cgbm-base"]) == full - gating - bilinear
    assert set(names["cgbm-gating"]) == full - bilinear
    assert set(names["cgbm-bilinear"]) == full - gating
    # concatenation doubles the matching LSTM's input; nothing else changes shape
    for v in VARIANTS:
        for n, shape in names[v].items():
            if n == "matching.weight_ih":
                assert shape == ((2, 5, 20) if VARIANTS[v]["bilinear"] else (2, 10, 20))
            else:
                assert shape == names["cgbm"][n]
    assert [VARIANTS[v] for v in ("cgbm", "cgbm-base", "cgbm-gating", "cgbm-bilinear")] == [
        {"gating": True, "bilinear": True}, {"gating": False, "bilinear": False},
        {"gating": True, "bilinear": False}, {"gating": False, "bilinear": True},
    ]


def test_cgbm_parameter_count_at_paper_settings():
    d, l, k = 500, 128, 8
    lstm = lambda i: 4 * l * (i + l) + 8 * l  # noqa: E731  (PyTorch LSTMs have two bias vectors)
    attention = l * l + (l * l + l) + l * l + (l + 1)
    gates = 2 * (l * l + l)
    bil = l * l * k + l * k
    common = lstm(d) + attention + lstm(2 * l) + (4 * l + 4)
    assert cgbm_parameter_count("cgbm") == common + gates + bil + 2 * lstm(l)
    assert cgbm_parameter_count("cgbm-base") == common + 2 * lstm(2 * l)
    assert cgbm_parameter_count("cgbm-gating") == common + gates + 2 * lstm(2 * l)
    assert cgbm_parameter_count("cgbm-bilinear") == common + bil + 2 * lstm(l)
    assert cgbm_parameter_count("cgbm") == 999_429
    c = CGBMConfig()
    assert (c.hidden, c.rank, c.feature_dim, c.keep_aggregation, c.keep_matching, c.forget_bias,
            c.loss_weight) == (128, 8, 500, 0.6, 0.8, 1.0, 10.0)


def test_cgbm_config_errors():
    with pytest.raises(ConfigError, match="unknown CGBM variant 'cgbm-x'"):
        cgbm_config("cgbm-x")
    with pytest.raises(ConfigError, match=r"unknown CGBMConfig field\(s\) \['hiden'\]"):
        cgbm_config("cgbm", hiden=3)
    with pytest.raises(ConfigError, match="'keep_matching' parameter of CGBMConfig must be in"):
        CGBMConfig(keep_matching=0.0)
    with pytest.raises(ConfigError, match="'hidden' parameter"):
        CGBMConfig(hidden=0)
    with pytest.raises(ConfigError, match=r"'init' parameter of CGBMConfig must be one of \('pytorch', "
                                          r"'tensorflow'\)\. Got 'keras' instead"):
        CGBMConfig(init="keras")
    model = CrossGatedBilinearMatching(tiny())
    with pytest.raises(ConfigError, match="expected query"):
        model(torch.zeros(1, 2, D + 1), torch.tensor([2]), torch.zeros(1, 3, D), torch.tensor([3]))


def test_cgbm_loss_hand_value_and_mask():
    labels, weights, mask = batch_labels([2, 1], [0, 0], [1, 1], cw=10.0)
    logits = torch.zeros(2, 2, 4)  # uniform: CE of any label row = log 4
    loss = cgbm_loss(logits, torch.tensor(labels), torch.tensor(weights), torch.tensor(mask))
    # item 0: (10 + 1) log 4 / 2 steps; item 1: 10 log 4 / 1 step
    assert float(loss) == pytest.approx(((11 / 2) + 10) / 2 * np.log(4), rel=1e-6)
    junk = logits.clone()
    junk[1, 1] = 50.0  # a padded step
    assert float(cgbm_loss(junk, torch.tensor(labels), torch.tensor(weights), torch.tensor(mask))) == pytest.approx(
        float(loss), rel=1e-6)


@pytest.mark.parametrize("name", ["cgbm", "cgbm-base"])
def test_cgbm_overfits_a_tiny_batch(name):
    torch.manual_seed(0)
    model = CrossGatedBilinearMatching(tiny(name, keep_aggregation=1.0, keep_matching=1.0))
    q, ql, r, rl = _batch(seed=3)
    labels, weights, mask = (torch.tensor(a) for a in batch_labels(rl.numpy(), [2, 1, 3], [5, 3, 4], max_len=9))
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    first = None
    for _ in range(120):
        opt.zero_grad()
        loss = cgbm_loss(model(q, ql, r, rl), labels, weights, mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        first = float(loss.detach()) if first is None else first
    assert float(loss.detach()) < 0.5 * first
    spans = model.predict(q, ql, r, rl)
    assert spans.start_step.tolist() == [2, 1, 3] and spans.end_step.tolist() == [5, 3, 4]


# --------------------------------------------------------------------------- video-level
def test_triplet_loss_oracle():
    a = torch.tensor([[1.0, 0.0]])
    n = torch.tensor([[0.0, 1.0]])
    assert float(triplet_loss(a, a, n, 0.2)) == 0.0                    # 0 - 2 + 0.2 < 0
    assert float(triplet_loss(a, n, a, 0.2)) == pytest.approx(2.2)     # 2 - 0 + 0.2


def test_search_span_equals_brute_force():
    torch.manual_seed(0)
    cfg = VideoTripletConfig(feature_dim=D, hidden=4, max_span=5)
    enc = VideoLSTMEncoder(cfg)
    query, ref = torch.randn(3, D), torch.randn(11, D)
    got = search_span(enc, query, ref)
    with torch.no_grad():
        qe = enc(query[None], torch.tensor([3]))[0]
        best = (float("inf"), None)
        for s in range(11):
            for e in range(s + 1, min(11, s + 5) + 1):
                d = float((enc(ref[None, s:e], torch.tensor([e - s]))[0] - qe).pow(2).sum())
                if d < best[0] - 1e-9:
                    best = (d, (s, e))
    assert (got.start_step, got.end_step) == best[1]
    assert got.distance == pytest.approx(best[0], abs=1e-5)
    assert got.end_step - got.start_step <= 5


def test_encoder_ignores_padding():
    torch.manual_seed(0)
    enc = VideoLSTMEncoder(VideoTripletConfig(feature_dim=D, hidden=4))
    x = torch.randn(2, 6, D)
    lengths = torch.tensor([6, 3])
    emb = enc(x, lengths)
    torch.testing.assert_close(emb[1], enc(x[1:2, :3], torch.tensor([3]))[0])
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))


def test_sample_triplet_spans():
    rng = np.random.default_rng(0)
    for _ in range(20):
        pos, neg = sample_triplet_spans(rng, 40, 10, 20, max_span=16)
        assert span_tiou(*pos, 10, 20) > 0.8 and span_tiou(*neg, 10, 20) < 0.2
        assert pos[1] - pos[0] <= 16 and neg[1] - neg[0] <= 16
    pos, neg = sample_triplet_spans(rng, 1, 0, 1)
    assert pos == (0, 1) and neg is None
    with pytest.raises(ConfigError, match="gt_start < gt_end"):
        sample_triplet_spans(rng, 5, 3, 3)


def test_video_triplet_overfits():
    torch.manual_seed(0)
    enc = VideoLSTMEncoder(VideoTripletConfig(feature_dim=D, hidden=8))
    g = torch.Generator().manual_seed(1)
    a, p, n = (torch.randn(4, 5, D, generator=g) for _ in range(3))
    lengths = torch.full((4,), 5)
    opt = torch.optim.Adam(enc.parameters(), lr=2e-2)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = triplet_loss(enc(a, lengths), enc(p, lengths), enc(n, lengths), 0.2)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    assert video_triplet_parameter_count() == 4 * 128 * (500 + 128) + 8 * 128


# --------------------------------------------------------------------------- SST
def test_sst_shapes_padding_and_parameters():
    torch.manual_seed(0)
    model = SSTModel(SSTConfig(feature_dim=D, hidden=8, anchors=3)).eval()
    x = torch.randn(2, 7, D)
    x[1, 4:] = 0.0  # zero padding: output 4 of item 1 reads the zero step, as alone
    logits = model(x)
    assert logits.shape == (2, 8, 3)
    alone = model(x[1:2, :4])
    torch.testing.assert_close(logits[1, :5], alone[0])
    h, d = 512, 500
    gru = 3 * h * (d + h) + 6 * h + 3 * h * (h + h) + 6 * h
    assert sst_parameter_count() == gru + h * 64 + 64


def test_sst_loss_hand_value():
    logits = torch.zeros(1, 2, 2)        # p = 0.5 everywhere: BCE = log 2
    labels = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[[1.0, 1.0], [1.0, 0.0]]])
    rate = torch.tensor([0.25, 0.5])
    # weights: positive (anchor 0) 0.75, negatives 0.25 (anchor 0) and 0.5 (anchor 1)
    expected = (0.75 + 0.5 + 0.25) * np.log(2) / 3
    assert float(sst_loss(logits, labels, mask, rate)) == pytest.approx(expected, rel=1e-6)


def test_sst_overfits_and_predicts_the_ground_truth():
    torch.manual_seed(0)
    cfg = SSTConfig(feature_dim=D, hidden=16, anchors=4, dropout=0.0)
    model = SSTModel(cfg)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 10, D, generator=g)
    lengths = np.array([10, 10, 10])
    gs, ge = np.array([2, 5, 0]), np.array([5, 8, 3])
    labels, mask = batch_anchor_labels(lengths + 1, gs, ge, 4)
    rate = torch.tensor(anchor_positive_rate(labels, mask))
    labels, mask = torch.tensor(labels), torch.tensor(mask)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss = sst_loss(model(x), labels, mask, rate)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.3 * losses[0]
    best = model.predict(x, torch.tensor(lengths))
    # the top proposal is a positive anchor (tIoU > 0.5 with the ground truth)
    for p, s, e in zip(best, gs, ge):
        assert span_tiou(p.start_step[0], p.end_step[0], s, e) > 0.5


def test_reverse_padded_passes_the_reversed_gradient_back():
    torch.manual_seed(0)
    lengths = torch.tensor([3, 1, 4])
    x = torch.randn(3, 4, 2, requires_grad=True)
    g = torch.randn(3, 4, 2)
    reverse_padded(x, lengths).backward(g)
    # the gradient of a permutation is the inverse permutation of the output's gradient
    expected = torch.zeros_like(g)
    for b, n in enumerate(lengths.tolist()):
        for t in range(4):
            expected[b, n - 1 - t if t < n else t] = g[b, t]
    assert torch.equal(x.grad, expected)


def test_keep_dropout_keeps_units_with_the_keep_probability_and_rescales_them():
    from relocbench_baselines.temporal._common import KeepDropout

    drop = KeepDropout(0.6)
    x = torch.ones(200_000, requires_grad=True)
    torch.manual_seed(0)
    y = drop(x)
    kept = y != 0
    # Bernoulli(0.6): the kept fraction within 5 standard deviations of 0.6
    assert abs(float(kept.float().mean()) - 0.6) < 5 * (0.6 * 0.4 / x.numel()) ** 0.5
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.6))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient is the same scaled mask
    torch.manual_seed(0)
    assert torch.equal(drop(x), y)          # torch's seed fixes the masks
    drop.eval()
    assert drop(x) is x
    assert KeepDropout(1.0)(x) is x
