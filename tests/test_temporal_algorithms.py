"""Label vectors, Eq. 12 decoding, the frame-level DP and SST's proposal enumeration."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from relocbench.errors import ConfigError
from relocbench.temporal.decode import (
    FORMS,
    MAX_SPAN_STEPS,
    decode_spans,
    decode_spans_brute_force,
)
from relocbench.temporal.framedp import (
    frame_distances,
    frame_level_baseline,
    min_mean_path,
    min_mean_path_brute_force,
    min_sum_path,
)
from relocbench.temporal.labels import batch_labels, step_labels
from relocbench.temporal.sst import (
    anchor_labels,
    anchor_positive_rate,
    anchor_spans,
    batch_anchor_labels,
    nms_1d,
    span_tiou,
    top_proposals,
)

OUT = [0, 0, 0, 1]
THIRD = 1.0 / 3.0


# --------------------------------------------------------------------------- labels
def test_labels_oracle_one_step_segment():
    labels, weights = step_labels(6, 2, 3)
    expected = np.array([OUT, OUT, [THIRD, THIRD, THIRD, 0], OUT, OUT, OUT], dtype=np.float32)
    np.testing.assert_allclose(labels, expected)
    np.testing.assert_array_equal(weights, [1, 1, 10, 1, 1, 1])


def test_labels_longer_segment():
    labels, weights = step_labels(7, 1, 5)
    expected = [OUT, [.5, 0, .5, 0], [0, 0, 1, 0], [0, 0, 1, 0], [0, .5, .5, 0], OUT, OUT]
    np.testing.assert_allclose(labels, expected)
    np.testing.assert_array_equal(weights, [1, 10, 1, 1, 10, 1, 1])
    two, w2 = step_labels(2, 0, 2)
    np.testing.assert_allclose(two, [[.5, 0, .5, 0], [0, .5, .5, 0]])
    np.testing.assert_array_equal(w2, [10, 10])


def test_batch_labels_padding_and_rows_sum_to_one():
    labels, weights, mask = batch_labels([3, 5], [0, 4], [3, 5], cw=7.0)
    assert labels.shape == (2, 5, 4)
    np.testing.assert_array_equal(mask, [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(weights, [[7, 1, 7, 0, 0], [1, 1, 1, 1, 7]])
    np.testing.assert_allclose(labels.sum(-1), mask.astype(float), atol=1e-6)
    np.testing.assert_array_equal(labels[0, 3:], 0)
    np.testing.assert_allclose(labels[1, 4], [THIRD, THIRD, THIRD, 0])


def test_batch_labels_errors():
    with pytest.raises(ConfigError, match=r"item 1: expected 0 <= start < end <= length, got start 2, end 2"):
        batch_labels([4, 4], [0, 2], [1, 2])
    with pytest.raises(ConfigError, match="max_len 3 is shorter"):
        batch_labels([4], [0], [1], max_len=3)
    with pytest.raises(ConfigError, match="same length"):
        batch_labels([4, 4], [0], [1])


# --------------------------------------------------------------------------- decoding
def _log_softmax(x):
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("t", [1, 2, 5, 40, 90])
def test_decoder_matches_brute_force(form, t):
    rng = np.random.default_rng(t)
    lp = _log_softmax(3 * rng.standard_normal((4, t, 4)))
    n = rng.integers(1, t + 1, size=4)
    n[0] = t
    fast = decode_spans(lp, n, form=form)
    slow = decode_spans_brute_force(lp, n, form=form)
    np.testing.assert_array_equal(fast.start_step, slow.start_step)
    np.testing.assert_array_equal(fast.end_step, slow.end_step)
    np.testing.assert_allclose(fast.score, slow.score, rtol=1e-10, atol=1e-10)


def test_decoder_hand_oracle_and_forms():
    # start at 1, end at 3 are clearly best; inside is high on 1..3 but low at 3 itself,
    # so the paper's mean (over 1..3) and the original's (over 1..2) differ in score.
    p = np.full((5, 4), 0.01)
    p[:, 3] = 0.97
    p[1] = [0.6, 0.01, 0.38, 0.01]
    p[2] = [0.01, 0.01, 0.97, 0.01]
    p[3] = [0.01, 0.8, 0.01, 0.18]
    lp = np.log(p)
    paper = decode_spans(lp, form="paper")
    orig = decode_spans(lp, form="original")
    assert (int(paper.start_step), int(paper.end_step)) == (1, 4)
    assert (int(orig.start_step), int(orig.end_step)) == (1, 4)
    np.testing.assert_allclose(paper.score, np.log(.6) + np.log(.8) + np.mean(np.log([.38, .97, .01])))
    np.testing.assert_allclose(orig.score, np.log(.6) + np.log(.8) + np.mean(np.log([.38, .97])))


def test_no_decoded_span_exceeds_64_steps():
    t = 200
    lp = np.log(np.full((2, t, 4), 0.25))
    lp[:, 0, 0] = 0.0       # certain start at 0
    lp[:, t - 1, 1] = 0.0   # certain end at the last step, far beyond 64 steps
    out = decode_spans(lp)
    assert ((out.end_step - out.start_step) <= MAX_SPAN_STEPS).all()
    short = decode_spans(lp, max_span=5)
    assert ((short.end_step - short.start_step) <= 5).all()


def test_decoder_respects_lengths_and_errors():
    lp = np.log(np.full((1, 10, 4), 0.25))
    lp[0, 8, 0] = lp[0, 9, 1] = 0.0   # best span lies in the padding
    out = decode_spans(lp, [6])
    assert out.end_step[0] <= 6
    with pytest.raises(ConfigError, match=r"item 0: length 11 is outside \[1, 10\]"):
        decode_spans(lp, [11])
    with pytest.raises(ConfigError, match="form"):
        decode_spans(lp, form="other")
    with pytest.raises(ConfigError, match="shape"):
        decode_spans(np.zeros(5))


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 12), st.just(4)),
              elements=st.floats(-8, 0, allow_nan=False)))
def test_decoder_property_equals_brute_force(lp):
    fast = decode_spans(lp, max_span=7)
    slow = decode_spans_brute_force(lp, max_span=7)
    # ties may pick different spans; the best score must agree
    np.testing.assert_allclose(fast.score, slow.score, rtol=1e-9, atol=1e-9)
    assert ((fast.end_step - fast.start_step) <= 7).all()


# --------------------------------------------------------------------------- frame-level DP
def test_framedp_oracle():
    e = np.eye(4)
    res = frame_level_baseline(e[[0, 1, 2]], e[[3, 3, 0, 1, 2, 3]])
    assert (res.start_step, res.end_step) == (2, 5)
    assert res.mean_distance == pytest.approx(0.0, abs=1e-12)


def test_framedp_distances_are_normalised():
    d = frame_distances(np.array([[2.0, 0.0], [0.0, 3.0]]), np.array([[5.0, 0.0]]))
    np.testing.assert_allclose(d, [[0.0], [np.sqrt(2.0)]], atol=1e-12)
    with pytest.raises(ConfigError, match="one dim"):
        frame_distances(np.zeros((2, 3)), np.zeros((2, 4)))


def test_min_sum_path_hand_example():
    # a horizontal run on row 1 through negative cells beats the diagonal
    cost = np.array([[1.0, 5.0, 5.0], [5.0, -1.0, -1.0]])
    total, cells = min_sum_path(cost)
    assert cells == [(0, 0), (1, 1), (1, 2)]
    assert total == pytest.approx(-1.0)


@pytest.mark.parametrize("seed", range(40))
def test_framedp_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    q, r = int(rng.integers(1, 5)), int(rng.integers(1, 7))
    while q * r > 30:
        r -= 1
    d = rng.random((q, r))
    mean, cells, _ = min_mean_path(d)
    bmean, bcells = min_mean_path_brute_force(d)
    assert mean == pytest.approx(bmean, abs=1e-12)
    assert cells == bcells


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 6)), elements=st.floats(0, 4, allow_nan=False)),
    st.floats(-3, 3, allow_nan=False),
    st.floats(0.1, 10, allow_nan=False),
)
def test_framedp_properties(d, shift, scale):
    if d.size > 30:
        d = d[:, : 30 // d.shape[0]]
    mean, cells, _ = min_mean_path(d)
    bmean, _ = min_mean_path_brute_force(d)
    assert mean == pytest.approx(bmean, abs=1e-9)
    # a valid path: starts in row 0, ends in the last row, moves by (1,1), (0,1) or (1,0)
    assert cells[0][0] == 0 and cells[-1][0] == d.shape[0] - 1
    for (i0, j0), (i1, j1) in zip(cells, cells[1:]):
        assert (i1 - i0, j1 - j0) in {(1, 1), (0, 1), (1, 0)}
    assert mean == pytest.approx(float(np.mean([d[c] for c in cells])), abs=1e-9)
    # the optimum is unchanged by adding a constant or scaling the table
    moved, _, _ = min_mean_path(d * scale + shift)
    assert moved == pytest.approx(mean * scale + shift, abs=1e-7)


def test_framedp_on_features_finds_the_copy():
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((40, 16))
    query = ref[10:18] + 0.05 * rng.standard_normal((8, 16))
    res = frame_level_baseline(query, ref)
    assert (res.start_step, res.end_step) == (10, 18)


def test_framedp_query_longer_than_reference():
    rng = np.random.default_rng(0)
    d = rng.random((5, 2))
    mean, cells, _ = min_mean_path(d)
    bmean, bcells = min_mean_path_brute_force(d)
    assert mean == pytest.approx(bmean) and cells == bcells


# --------------------------------------------------------------------------- SST enumeration
def test_sst_oracle_three_steps_two_anchors():
    starts, ends, valid = anchor_spans(3, 2)
    spans = sorted(zip(starts[valid].tolist(), ends[valid].tolist()))
    assert spans == [(0, 1), (0, 2), (1, 2)]


def test_sst_anchor_count():
    starts, ends, valid = anchor_spans(10, 4)
    assert valid.sum() == sum(min(t, 4) for t in range(10))
    assert ((ends - starts)[valid] == np.broadcast_to(np.arange(1, 5), (10, 4))[valid]).all()


def test_span_tiou_oracle():
    assert span_tiou(3, 7, 5, 9) == pytest.approx(2 / 6)
    assert span_tiou(0, 1, 2, 3) == 0.0


def test_sst_labels_and_positive_rate():
    labels, valid = anchor_labels(5, 3, [1], [3])
    positives = sorted(zip(*np.nonzero(labels)))
    # [1,3) (t=3,k=1), [0,3) (t=3,k=2, tIoU 2/3), [1,4) (t=4,k=2, tIoU 2/3)
    assert positives == [(3, 1), (3, 2), (4, 2)]
    blabels, bmask = batch_anchor_labels([5, 3], [1, 0], [3, 1], 3)
    np.testing.assert_array_equal(blabels[0], labels)
    assert bmask[1, 3:].sum() == 0 and blabels[1].sum() == 1   # only [0,1) at t=1
    rate = anchor_positive_rate(blabels, bmask)
    # anchor 0: valid at t=1..4 (item 0) and t=1..2 (item 1); positive only [0,1) of item 1.
    # anchor 1: t=2..4 and t=2 ([0,2) has tIoU 0.5 with [0,1): not > 0.5); positive [1,3).
    # anchor 2: t=3..4 of item 0 only, both positive.
    np.testing.assert_allclose(rate, [1 / 6, 1 / 4, 1.0])


def test_nms_matches_torchvision():
    torch = pytest.importorskip("torch")
    tv_ops = pytest.importorskip("torchvision.ops")
    rng = np.random.default_rng(0)
    s = rng.integers(0, 30, size=60).astype(float)
    e = s + rng.integers(1, 12, size=60)
    sc = rng.random(60)
    boxes = torch.tensor(np.stack([s, np.zeros(60), e, np.ones(60)], 1), dtype=torch.float64)
    want = tv_ops.nms(boxes, torch.tensor(sc), 0.7).numpy()
    np.testing.assert_array_equal(nms_1d(s, e, sc, threshold=0.7), want)


def test_top_proposals():
    scores = np.zeros((4, 2))
    scores[3, 1] = 0.9   # [1, 3)
    scores[3, 0] = 0.8   # [2, 3): tIoU 0.5 with [1, 3), kept at 0.7
    scores[2, 1] = 0.85  # [0, 2)
    top = top_proposals(scores, top_k=3)
    assert list(zip(top.start_step.tolist(), top.end_step.tolist())) == [(1, 3), (0, 2), (2, 3)]
    strict = top_proposals(scores, top_k=3, nms_threshold=0.4)
    assert list(zip(strict.start_step.tolist(), strict.end_step.tolist())) == [(1, 3), (0, 2)]
    with pytest.raises(ConfigError, match="no proposal"):
        top_proposals(np.zeros((1, 2)))
