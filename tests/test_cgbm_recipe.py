"""The cgbm family's ``original`` recipe: the released code's loss pooling, initialisation,
decoding and training stream, each against a hand-computed oracle; the recipe from the
command line and from Python; ``--recipe`` refused for baselines without recipes."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from relocbench.cli import cli  # noqa: E402
from relocbench.engine import baselines_with_recipes, resolve_config, run_baseline  # noqa: E402
from relocbench.errors import ConfigError  # noqa: E402
from relocbench.temporal.decode import decode_spans, span_score_table  # noqa: E402
from relocbench.temporal.labels import batch_labels  # noqa: E402
from relocbench_baselines.temporal.cgbm import (  # noqa: E402
    VARIANTS,
    CrossGatedBilinearMatching,
    DualLSTMCell,
    cgbm_config,
    cgbm_loss,
    glorot_bound,
    set_tf_lstm_kernel_,
    top_spans,
)
from relocbench_baselines.temporal.original_pipeline import OriginalTrainStream  # noqa: E402

torch.set_num_threads(1)
FAMILY = ("cgbm", "cgbm-base", "cgbm-gating", "cgbm-bilinear")
TINY_YAML = "hidden: 8\nrank: 2\neval_batch_size: 16\n"


# --------------------------------------------------------------------------- 1. loss pooling
def test_step_pooling_is_the_mean_over_all_valid_steps_of_the_batch():
    """Pair A: 3 steps, segment [1, 2) (a one-step segment: weight 10 on step 1); pair B: 5
    steps, segment [1, 4) (weight 10 on steps 1 and 3). Uniform logits: every valid step's
    cross-entropy is ln 4, so the weighted sums are 12 ln 4 (A) and 23 ln 4 (B). Padded
    steps of A hold large random logits that must not count."""
    labels, weights, mask = batch_labels(np.array([3, 5]), np.array([1, 1]), np.array([2, 4]), cw=10.0)
    assert weights.tolist() == [[1, 10, 1, 0, 0], [1, 10, 1, 10, 1]]
    logits = torch.zeros(2, 5, 4)
    logits[0, 3:] = 50.0 * torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    args = (logits, torch.from_numpy(labels), torch.from_numpy(weights), torch.from_numpy(mask).float())
    ln4 = math.log(4.0)
    per_pair = (12 / 3 + 23 / 5) / 2 * ln4      # 4.3 ln 4: the paper's Eq. 11, then the batch mean
    per_step = (12 + 23) / (3 + 5) * ln4        # 4.375 ln 4: match.py's reduce_mean over valid steps
    assert float(cgbm_loss(*args)) == pytest.approx(per_pair, rel=1e-6)
    assert float(cgbm_loss(*args, pooling="pair")) == pytest.approx(per_pair, rel=1e-6)
    assert float(cgbm_loss(*args, pooling="step")) == pytest.approx(per_step, rel=1e-6)
    assert abs(per_step - per_pair) > 0.1


def test_the_two_poolings_agree_on_equal_lengths():
    g = torch.Generator().manual_seed(1)
    labels, weights, mask = batch_labels(np.array([6, 6, 6]), np.array([0, 2, 4]), np.array([3, 5, 6]))
    logits = torch.randn(3, 6, 4, generator=g)
    args = (logits, torch.from_numpy(labels), torch.from_numpy(weights), torch.from_numpy(mask).float())
    assert float(cgbm_loss(*args, pooling="step")) == pytest.approx(float(cgbm_loss(*args, pooling="pair")),
                                                                     rel=1e-6)


def test_unknown_pooling_is_refused():
    z = torch.zeros(1, 2, 4)
    with pytest.raises(ConfigError, match=r"'pooling' parameter of cgbm_loss must be one of \('pair', 'step'\)"):
        cgbm_loss(z, z, torch.ones(1, 2), torch.ones(1, 2), pooling="batch")


# --------------------------------------------------------------------------- 2. initialisation
D, L, K = 20, 16, 4


def _expected_bounds(name):
    """The Glorot limit of every kernel as the original code holds it (TF layouts)."""
    cfg = cgbm_config(name)
    match_in = L if cfg.bilinear else 2 * L
    b = {
        "aggregation.weight_ih_l0": glorot_bound(D + L, 4 * L),   # one (in + l, 4 l) kernel over [x ; h]
        "aggregation.weight_hh_l0": glorot_bound(D + L, 4 * L),
        "matching.weight_ih": glorot_bound(match_in + L, 4 * L),
        "matching.weight_hh": glorot_bound(match_in + L, 4 * L),
        "localization.weight_ih_l0": glorot_bound(2 * L + L, 4 * L),
        "localization.weight_hh_l0": glorot_bound(2 * L + L, 4 * L),
        "att_query.weight": glorot_bound(L, L),
        "att_ref.weight": glorot_bound(2 * L, L),                  # fc_hp: one (2 l, l) kernel
        "att_match.weight": glorot_bound(2 * L, L),
        "att_score.weight": glorot_bound(L, 1),
        "classifier.weight": glorot_bound(L, 4),
    }
    if cfg.gating:
        b["gate_query.weight"] = b["gate_ref.weight"] = glorot_bound(L, L)
    if cfg.bilinear:
        b["bilinear.weight"] = glorot_bound(L, L * K)
    return b


def _tf_model(name, seed=0):
    torch.manual_seed(seed)
    return CrossGatedBilinearMatching(cgbm_config(name, feature_dim=D, hidden=L, rank=K, init="tensorflow"))


@pytest.mark.parametrize("name", FAMILY)
def test_tensorflow_init_bounds_spread_and_zero_biases(name):
    model = _tf_model(name)
    bounds = _expected_bounds(name)
    params = dict(model.named_parameters())
    kernels = {n for n in params if "weight" in n}
    assert kernels == set(bounds)
    for n, bound in bounds.items():
        w = params[n].detach()
        assert float(w.abs().max()) <= bound, n
        if w.numel() >= 256:   # U(-b, b): the largest draw is near b and the spread is b / sqrt(3)
            assert float(w.abs().max()) > 0.95 * bound, n
            assert float(w.std()) == pytest.approx(bound / math.sqrt(3), rel=0.12), n
    # the combined kernel's bound, not PyTorch's per-matrix one: weight_hh alone (l x 4 l) would
    # be drawn up to sqrt(6 / (5 l)) = 0.274 > sqrt(6 / (d + 5 l)) = 0.245
    assert glorot_bound(L, 4 * L) > bounds["aggregation.weight_hh_l0"]
    for n, p in params.items():
        if "bias" in n and p.requires_grad:
            assert torch.count_nonzero(p) == 0, n
    # the constant forget bias: 1.0 on PyTorch's forget slice (i, f, g, o), 0 elsewhere, not trained
    for n in ("aggregation.bias_ih_l0", "matching.bias_ih", "localization.bias_ih_l0"):
        p = params[n]
        assert not p.requires_grad, n
        gates = p.detach().reshape(-1, 4, L)
        assert torch.all(gates[:, 1] == 1.0) and torch.count_nonzero(gates[:, [0, 2, 3]]) == 0, n


def test_tensorflow_init_is_seeded_and_differs_from_pytorch_init():
    a, b = _tf_model("cgbm", 3), _tf_model("cgbm", 3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    torch.manual_seed(3)
    c = CrossGatedBilinearMatching(cgbm_config("cgbm", feature_dim=D, hidden=L, rank=K))
    assert all(p.requires_grad for p in c.parameters())
    assert torch.count_nonzero(c.classifier.bias) > 0


def test_constant_forget_bias_gets_no_gradient():
    model = _tf_model("cgbm")
    g = torch.Generator().manual_seed(0)
    q, r = torch.randn(2, 4, D, generator=g), torch.randn(2, 7, D, generator=g)
    model(q, torch.tensor([4, 2]), r, torch.tensor([7, 5])).square().sum().backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.count_nonzero(p.grad) > 0, n
        else:
            assert n.split(".")[-1] in ("bias_ih", "bias_ih_l0") and p.grad is None, n


def _tf_basic_lstm(x, kernel, forget_bias):
    """TF's BasicLSTMCell over ``x [T, in]`` in float64: ``[i, j, f, o] = [x ; h] K`` (zero
    bias), ``c = c sigmoid(f + forget_bias) + sigmoid(i) tanh(j)``, ``h = tanh(c) sigmoid(o)``."""
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    n = kernel.shape[1] // 4
    h, c, out = np.zeros(n), np.zeros(n), []
    for t in range(x.shape[0]):
        i, j, f, o = np.split(np.concatenate([x[t], h]) @ kernel, 4)
        c = c * sig(f + forget_bias) + sig(i) * np.tanh(j)
        h = np.tanh(c) * sig(o)
        out.append(h)
    return np.stack(out)


def test_forward_adds_the_constant_forget_bias_like_tensorflow():
    """A TF kernel loaded into nn.LSTM and into the matching cell gives TF's outputs with the
    +1.0 on the forget gate (a forget bias of 0 gives other values from the second step on)."""
    rng = np.random.default_rng(0)
    n_in, n = 3, 2
    kernel = rng.uniform(-1, 1, size=(n_in + n, 4 * n))
    x = rng.normal(size=(4, n_in))
    want = _tf_basic_lstm(x, kernel, 1.0)
    assert np.abs(want[1:] - _tf_basic_lstm(x, kernel, 0.0)[1:]).max() > 1e-2
    lstm = torch.nn.LSTM(n_in, n, batch_first=True)
    set_tf_lstm_kernel_(lstm, torch.from_numpy(kernel), 1.0)
    got = lstm(torch.from_numpy(x).float()[None])[0][0].detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    cell = DualLSTMCell(n_in, n)
    for d in (0, 1):
        set_tf_lstm_kernel_(cell, torch.from_numpy(kernel), 1.0, direction=d)
    h = c = torch.zeros(2, 1, n)
    for t in range(x.shape[0]):
        h, c = cell(torch.from_numpy(x[t]).float().expand(2, 1, n_in), (h, c))
        np.testing.assert_allclose(h[0, 0].detach().numpy(), want[t], atol=1e-6)
        np.testing.assert_allclose(h[1, 0].detach().numpy(), want[t], atol=1e-6)


# --------------------------------------------------------------------------- 3. decoding
def test_original_decoding_averages_inside_over_s_to_e_minus_1():
    """4 steps; only start 0 is likely. Scores of the spans starting at 0 (e the last step):

    =====  =====================  ====================
    e      paper: mean in[0..e]    original: in[0..e-1]
    =====  =====================  ====================
    0      0 - 5 + 0 = -5          0 - 5 + in[0] = -5
    1      0 - 5 + 0 = -5          0 - 5 + 0 = -5
    2      0 - 1 + 0 = -1          0 - 1 + 0 = -1
    3      0 - 0.9 - 3/4 = -1.65   0 - 0.9 + 0 = -0.9
    =====  =====================  ====================

    so the paper decodes [0, 3) and the original code [0, 4) (its last step's low inside
    log-probability is left out)."""
    lp = np.zeros((4, 4))
    lp[:, 0] = [0, -5, -5, -5]       # log p_start
    lp[:, 1] = [-5, -5, -1, -0.9]    # log p_end
    lp[:, 2] = [0, 0, 0, -3]         # log p_inside
    table, k = span_score_table(lp[None], np.array([4]), 64, "original")
    np.testing.assert_allclose(table[0, :4], [-5, -5, -1, -0.9])
    assert table[0, 1 * k] == pytest.approx(-5 - 5 + 0)   # [1, 2): one step, its own inside
    paper = decode_spans(lp, form="paper")
    original = decode_spans(lp, form="original")
    assert (int(paper.start_step), int(paper.end_step), float(paper.score)) == (0, 3, pytest.approx(-1.0))
    assert (int(original.start_step), int(original.end_step), float(original.score)) == (0, 4, pytest.approx(-0.9))
    first = top_spans(lp[None], np.array([4]), 3, form="original")[0]
    assert (int(first.start_step[0]), int(first.end_step[0])) == (0, 4)


# --------------------------------------------------------------------------- 4. the recipe
@pytest.mark.parametrize("name", FAMILY)
def test_recipe_sets_the_original_values_in_one_place(name):
    _, paper = resolve_config(name)
    _, orig = resolve_config(name, overrides={"recipe": "original"})
    assert (paper.recipe, paper.loss_pooling, paper.init, paper.decode_form, paper.input_pipeline) == \
        ("paper", "pair", "pytorch", "paper", "relocbench")
    assert (orig.recipe, orig.loss_pooling, orig.init, orig.decode_form, orig.input_pipeline, orig.bucket_span) == \
        ("original", "step", "tensorflow", "original", "original", 30)
    assert (orig.batch_size, orig.steps, orig.lr, orig.clip_norm, orig.eval_every, orig.optimizer) == \
        (128, 1000, 1e-3, 5.0, 100, "adam")
    assert (orig.gating, orig.bilinear) == (paper.gating, paper.bilinear)


def test_explicit_values_win_over_the_recipe(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("recipe: original\nbatch_size: 16\ndecode_form: paper\n")
    _, cfg = resolve_config("cgbm", config_file=f, overrides={"steps": 7})
    assert (cfg.recipe, cfg.loss_pooling, cfg.batch_size, cfg.decode_form, cfg.steps) == \
        ("original", "step", 16, "paper", 7)
    _, cfg = resolve_config("cgbm", config_file=f, overrides={"recipe": "paper"})
    assert (cfg.recipe, cfg.loss_pooling, cfg.batch_size, cfg.steps) == ("paper", "pair", 16, 500)


def test_show_config_prints_the_recipe_values():
    res = CliRunner().invoke(cli, ["run-baseline", "cgbm", "--recipe", "original", "--show-config"],
                             terminal_width=200)
    assert res.exit_code == 0, res.output
    for field, value in (("recipe", "original"), ("loss_pooling", "step"), ("init", "tensorflow"),
                         ("decode_form", "original"), ("input_pipeline", "original"), ("bucket_span", "30"),
                         ("batch_size", "128"), ("steps", "1000")):
        assert re.search(rf"\b{field}\b[^\n]*\b{value}\s*\W*$", res.output, re.M), field


@pytest.mark.parametrize("name", FAMILY)
def test_recipe_original_runs_from_the_command_line(name, small_manifest, tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_YAML)
    out = tmp_path / name
    res = CliRunner().invoke(cli, ["run-baseline", name, "--recipe", "original", "--steps", "2", "--batch-size", "4",
                                   "--config", str(cfg), "--dataset", str(small_manifest), "--out", str(out),
                                   "--quiet"])
    assert res.exit_code == 0, res.output
    run = json.loads((out / "config.json").read_text())["config"]
    assert (run["recipe"], run["loss_pooling"], run["init"], run["decode_form"], run["input_pipeline"]) == \
        ("original", "step", "tensorflow", "original", "original")
    assert (run["steps"], run["batch_size"], run["hidden"]) == (2, 4, 8)
    state = torch.load(out / "checkpoint-last.pt", weights_only=False)
    model = state["model"]
    # trained two steps: the trainable biases moved, the constant forget bias did not
    assert torch.all(model["aggregation.bias_ih_l0"].view(4, 8)[1] == 1.0)
    assert torch.count_nonzero(model["aggregation.bias_ih_l0"].view(4, 8)[[0, 2, 3]]) == 0
    assert torch.count_nonzero(model["aggregation.bias_hh_l0"]) > 0
    n_trainable = sum(1 for k in model if not k.endswith(("bias_ih", "bias_ih_l0")))
    assert len(state["optimizer"]["param_groups"][0]["params"]) == n_trainable


def test_recipe_original_from_python(small_manifest, tmp_path):
    res = run_baseline("cgbm", dataset=str(small_manifest), out=tmp_path / "r",
                       overrides={"recipe": "original", "steps": 2, "batch_size": 4, "hidden": 8, "rank": 2,
                                  "eval_batch_size": 16})
    cfg = res.result["config"]
    assert (cfg["recipe"], cfg["loss_pooling"], cfg["init"], cfg["decode_form"]) == \
        ("original", "step", "tensorflow", "original")
    assert res.result["training"]["steps"] == 2 and 0.0 <= res.metrics["average"] <= 1.0


def test_recipe_refused_for_a_baseline_without_recipes(small_manifest, tmp_path):
    res = CliRunner().invoke(cli, ["run-baseline", "chance", "--recipe", "original", "--dataset", str(small_manifest),
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    head = "Error: --recipe original: baseline 'chance' has no recipes; recipes exist for "
    assert len(lines) == 1 and lines[0].startswith(head)
    named = lines[0][len(head):].split(", ")
    assert set(FAMILY) <= set(named) and named == baselines_with_recipes() and "chance" not in named
    assert not (tmp_path / "o").exists()
    f = tmp_path / "c.yaml"
    f.write_text("recipe: original\n")
    with pytest.raises(ConfigError, match=r"recipe: original: baseline 'frame-dp' has no recipes; recipes exist "
                                          r"for ") as err:
        resolve_config("frame-dp", config_file=f)
    assert str(f) in str(err.value) and set(FAMILY) <= set(str(err.value).split("recipes exist for ")[1].split(", "))


def test_unknown_recipe_is_refused():
    res = CliRunner().invoke(cli, ["run-baseline", "cgbm", "--recipe", "fast", "--show-config"])
    assert res.exit_code == 2
    assert "--recipe" in res.output and "one of 'paper', 'original'" in res.output and "'fast'" in res.output


# --------------------------------------------------------------------------- 5. the training stream
def _segments(windows, labels=None):
    n = len(windows)
    return pd.DataFrame({
        "segment_id": [f"s{i}" for i in range(n)], "video": [f"v{i}" for i in range(n)],
        "label": labels if labels is not None else [f"c{i}" for i in range(n)],
        "start_step": [1] * n, "end_step": [3] * n,
        "window_start_step": [0] * n, "window_end_step": list(windows),
    })


def test_stream_buckets_by_window_length_like_group_by_window():
    """Every segment its own class (so its own reference), no crop, buffer 1 (list order):
    windows 10, 40, 15, 45, 20 have keys 0, 1, 0, 1, 0 with span 30; with batch 2 the
    stream s0 s1 s2 s3 s4 s0 s1 ... fills bucket 0 at s2, bucket 1 at s3, bucket 0 again
    at the next pass's s0, and so on."""
    stream = OriginalTrainStream(_segments([10, 40, 15, 45, 20]), None, batch_size=2, seed=0, crop_prob=0.0,
                                 bucket_span=30, shuffle_buffer=1)
    got = [stream.rows(k)["query_segment_id"].tolist() for k in range(5)]
    assert got == [["s0", "s2"], ["s1", "s3"], ["s4", "s0"], ["s1", "s3"], ["s2", "s4"]]
    r = stream.rows(2)
    assert r["ref_segment_id"].tolist() == r["query_segment_id"].tolist()
    assert (r["gt_start_step"].tolist(), r["gt_end_step"].tolist()) == ([1, 1], [3, 3])


def test_stream_draws_same_class_references_long_enough_itself_included():
    """Class a: windows 4, 10, 30 and a query segment of 2 steps: any of the three; class b:
    windows 5 and 3 with segments [1, 5) (4 steps) and [1, 3): the 4-step query can only draw
    itself (the other window is 3 steps)."""
    seg = _segments([4, 10, 30, 5, 3], labels=["a", "a", "a", "b", "b"])
    seg.loc[3, "end_step"] = 5
    stream = OriginalTrainStream(seg, None, batch_size=5, seed=0, crop_prob=0.0, bucket_span=1000)
    rows = pd.concat([stream.rows(k) for k in range(200)])
    pairs = set(zip(rows["query_segment_id"], rows["ref_segment_id"]))
    assert {(q, r) for q, r in pairs if q == "s3"} == {("s3", "s3")}
    assert {r for q, r in pairs if q == "s0"} == {"s0", "s1", "s2"}
    assert {r for q, r in pairs if q == "s4"} == {"s3", "s4"}
    assert all(q[0] == r[0] for q, r in zip(rows["label"], rows["label"]))


def test_stream_batches_depend_on_seed_and_step_alone(small_manifest):
    from relocbench import load_manifest

    seg = load_manifest(small_manifest, "train", "segments")
    a = OriginalTrainStream(seg, None, batch_size=4, seed=3)
    first = [a.rows(k) for k in range(12)]
    fresh = OriginalTrainStream(seg, None, batch_size=4, seed=3)
    assert fresh.rows(11).equals(first[11])     # a resumed run regenerates the same batch
    other = OriginalTrainStream(seg, None, batch_size=4, seed=4)
    assert not all(other.rows(k).equals(first[k]) for k in range(12))
    for r in first:
        w = r["ref_end_step"] - r["ref_start_step"]
        assert len(r) == 4 and (w // 30).nunique() == 1
        assert ((r["gt_start_step"] >= 0) & (r["gt_end_step"] <= w) & (r["gt_start_step"] < r["gt_end_step"])).all()
    # ranks split the global batch
    assert pd.concat([a.rows(5, 0, 2), a.rows(5, 1, 2)])["pair_id"].sort_values().tolist() == \
        first[5]["pair_id"].sort_values().tolist()


def test_stream_refuses_bad_settings():
    with pytest.raises(ConfigError, match="'bucket_span' parameter of OriginalTrainStream must be an int >= 1"):
        OriginalTrainStream(_segments([10]), None, batch_size=2, seed=0, bucket_span=0)


# --------------------------------------------------------------------------- 6. checkpoint selection
def test_validation_score_follows_the_recipes_tiou_rule(small_manifest):
    """Predictions of tIoU exactly 0.5 (the first half of an even-length segment) clear
    t = 0.5 under ``>= t`` only; exact ones clear every threshold. The Average over t = 0.5
    ... 0.9 is then (0.2 n_half + n_exact) / n inclusive and n_exact / n strict."""
    from relocbench.engine import resolve_config as resolve
    from relocbench.tasks import get_task

    task = get_task("temporal")
    ctx = task.open(str(small_manifest), "synthetic", device=torch.device("cpu"), seed=0, skip_missing=False)
    pairs = task.pairs(ctx, "val")
    results, n_half = {}, 0
    for r in pairs.itertuples(index=False):
        s, e = int(r.gt_start_step), int(r.gt_end_step)
        if (e - s) % 2 == 0:
            e, n_half = s + (e - s) // 2, n_half + 1
        results[str(r.pair_id)] = [{"segment": [s, e], "score": 1.0}]
    n = len(pairs)
    assert 0 < n_half < n
    cls, paper = resolve("cgbm")
    _, original = resolve("cgbm", overrides={"recipe": "original"})
    assert (paper.val_iou_rule, original.val_iou_rule) == ("inclusive", "strict")
    inclusive = cls(paper, ctx).validation_score(pairs, results)
    assert inclusive == pytest.approx((0.2 * n_half + (n - n_half)) / n)
    assert inclusive == pytest.approx(task.headline(task.score(ctx, pairs, results, split="val")))
    assert cls(original, ctx).validation_score(pairs, results) == pytest.approx((n - n_half) / n)


def test_recipe_original_trains_on_the_original_stream(small_manifest):
    from relocbench.tasks import get_task
    from relocbench.temporal.data import TrainBatches

    task = get_task("temporal")
    ctx = task.open(str(small_manifest), "synthetic", device=torch.device("cpu"), seed=0, skip_missing=False)
    for recipe, kind in (("paper", TrainBatches), ("original", OriginalTrainStream)):
        cls, cfg = resolve_config("cgbm-base", overrides={"recipe": recipe, "batch_size": 4})
        base = cls(cfg, ctx)
        base.prepare(None)
        assert type(base._batches) is kind
    batch = base.batch(3)
    assert len(batch) == 4 and len(set((batch.ref_len // 30).tolist())) == 1


def test_step_pooling_over_ranks_equals_one_process():
    """Two ranks of a distributed run each hold half the batch (lengths 3 + 7 and 5 + 9
    steps); the mean of their rescaled losses (what DDP's gradient averaging sees) is the
    one-process mean over all 24 valid steps."""
    from types import SimpleNamespace

    from relocbench.temporal.data import PairBatch

    cls, cfg = resolve_config("cgbm", overrides={"recipe": "original", "hidden": 8, "rank": 2, "feature_dim": 6})
    torch.manual_seed(0)
    model = cls.create_model(cfg).eval()
    g = np.random.default_rng(0)
    lens, starts, ends = [3, 5, 7, 9], [0, 1, 2, 3], [2, 4, 5, 9]

    def batch(idx):
        t = max(lens[i] for i in idx)
        ref = np.zeros((len(idx), t, 6), np.float32)
        for j, i in enumerate(idx):
            ref[j, :lens[i]] = g.normal(size=(lens[i], 6))
        return PairBatch([str(i) for i in idx], g.normal(size=(len(idx), 4, 6)).astype(np.float32),
                         np.full(len(idx), 4), ref, np.array([lens[i] for i in idx]),
                         np.array([starts[i] for i in idx]), np.array([ends[i] for i in idx]))

    halves = [batch([0, 2]), batch([1, 3])]
    pad = [np.pad(h.ref, ((0, 0), (0, 9 - h.ref.shape[1]), (0, 0))) for h in halves]
    whole = PairBatch(["0", "2", "1", "3"], np.concatenate([h.query for h in halves]), np.full(4, 4),
                      np.concatenate(pad), *[np.concatenate([getattr(h, k) for h in halves])
                                            for k in ("ref_len", "gt_start", "gt_end")])
    one = SimpleNamespace(device=torch.device("cpu"), world_size=1, extras={})
    two = SimpleNamespace(device=torch.device("cpu"), world_size=2, extras={}, global_sum=lambda v: (24.0,))
    with torch.no_grad():
        want = float(cls(cfg, one).loss(model, whole)[0])
        ranks = [float(cls(cfg, two).loss(model, h)[0]) for h in halves]
        alone = float(cls(cfg, one).loss(model, halves[0])[0])
    assert np.mean(ranks) == pytest.approx(want, rel=1e-5)
    assert alone != pytest.approx(want, rel=1e-3)
