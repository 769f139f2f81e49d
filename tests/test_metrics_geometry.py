"""Overlaps and AP: hand-computed oracles and hypothesis properties."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relocbench.metrics import ap_from_tp_ranks, box_iou, pairwise_box_iou, pairwise_tiou, tiou, voc_ap

from reference_evaluators import box_iou as ref_box_iou
from reference_evaluators import seg_iou, voc_ap_from_flags

coord = st.floats(-100, 100, allow_nan=False, allow_infinity=False)
unit = st.floats(0, 1, allow_nan=False, allow_infinity=False)


@st.composite
def segment(draw, min_len=0.0):
    s = draw(coord)
    return (s, s + draw(st.floats(min_len, 50)))


@st.composite
def box(draw, min_side=0.0):
    x1, y1 = draw(unit), draw(unit)
    return (x1, y1, x1 + draw(st.floats(min_side, 1)), y1 + draw(st.floats(min_side, 1)))


def test_tiou_oracle_from_the_paper():
    # reference-algorithms.md Sec. 2: [3, 7) against [5, 9) has tIoU 2/6.
    assert tiou([3, 7], [5, 9]) == pytest.approx(2 / 6, abs=1e-15)
    assert tiou([0, 10], [0, 20]) == 0.5
    assert tiou([0, 1], [2, 3]) == 0.0
    assert tiou([1, 1], [1, 1]) == 0.0  # empty union


def test_box_iou_oracle():
    assert box_iou([0, 0, 2, 1], [1, 0, 3, 1]) == pytest.approx(1 / 3)
    assert box_iou([0, 0, 1, 1], [0, 0, 0.5, 1]) == 0.5
    np.testing.assert_allclose(pairwise_box_iou([[0, 0, 1, 1]], [[0, 0, 1, 1], [2, 2, 3, 3]]), [[1.0, 0.0]])
    np.testing.assert_allclose(pairwise_tiou([[0, 2], [1, 3]], [[0, 2]]), [[1.0], [1 / 3]])


@settings(max_examples=200, deadline=None)
@given(segment(), segment())
def test_tiou_properties(a, b):
    v = float(tiou(a, b))
    assert 0.0 <= v <= 1.0
    assert v == float(tiou(b, a))
    assert v == pytest.approx(seg_iou(a, b), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(segment(min_len=1e-3))
def test_tiou_identity_and_disjoint(a):
    assert float(tiou(a, a)) == 1.0
    shifted = (a[1] + 1.0, a[1] + 2.0)
    assert float(tiou(a, shifted)) == 0.0


@settings(max_examples=200, deadline=None)
@given(box(), box())
def test_box_iou_properties(a, b):
    v = float(box_iou(a, b))
    assert 0.0 <= v <= 1.0
    assert v == float(box_iou(b, a))
    assert v == pytest.approx(ref_box_iou(a, b), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(box(min_side=1e-3))
def test_box_iou_identity_and_disjoint(a):
    assert float(box_iou(a, a)) == pytest.approx(1.0, abs=1e-12)
    right = (a[2] + 0.1, a[1], a[2] + 0.2, a[3])
    assert float(box_iou(a, right)) == 0.0


def test_voc_ap_oracles():
    # reference-algorithms.md Sec. 6: [TP, duplicate] -> 1, [FP, TP] -> 0.5, TP FP TP with 2 gt -> 0.8333.
    assert voc_ap([1.0, 0.5], [1.0, 1.0]) == 1.0
    assert voc_ap([0.0, 0.5], [0.0, 1.0]) == 0.5
    assert voc_ap([1.0, 0.5, 2 / 3], [0.5, 0.5, 1.0]) == pytest.approx(5 / 6)
    assert ap_from_tp_ranks([1, 3], 2) == pytest.approx(5 / 6)
    assert ap_from_tp_ranks([], 3) == 0.0
    assert ap_from_tp_ranks([1], 0) == 0.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), max_size=40), st.integers(0, 10))
def test_ap_from_ranks_equals_the_interpolation_loop(flags, extra):
    npos = sum(flags) + extra
    if npos == 0:
        return
    ranks = [i + 1 for i, f in enumerate(flags) if f]
    expect = voc_ap_from_flags(flags, npos)
    assert ap_from_tp_ranks(ranks, npos) == pytest.approx(expect, abs=1e-12)
    cum = np.cumsum(flags)
    if flags:
        prec = cum / np.arange(1, len(flags) + 1)
        assert voc_ap(prec, cum / npos) == pytest.approx(expect, abs=1e-12)
    assert 0.0 <= expect <= 1.0


def test_metrics_never_import_torch():
    import subprocess
    import sys

    code = ("import sys, relocbench.metrics, relocbench.predictions, relocbench.cli.evaluate; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_descending_order_tie_rules():
    from relocbench.metrics.geometry import descending_order

    score = np.array([0.5, 0.9, 0.5, 0.1, 0.5])
    assert descending_order(score).tolist() == [1, 0, 2, 4, 3]                      # equal: row order
    assert descending_order(score, later_first=True).tolist() == [1, 4, 2, 0, 3]    # equal: later row first
    assert descending_order(score, np.array([0, 0, 2, 0, 1])).tolist() == [1, 0, 4, 2, 3]   # equal: by tie
    assert descending_order(np.array([0.2, 0.7, 0.4])).tolist() == [1, 2, 0]        # distinct: no tie rule
