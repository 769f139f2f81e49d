"""The training pair sampler."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from relocbench import ConfigError, ManifestError
from relocbench.temporal.sampler import PAIR_COLUMNS, PairSampler


def _segments(labels, rng):
    rows = []
    for i, lab in enumerate(labels):
        ws = int(rng.integers(0, 20))
        s = ws + int(rng.integers(0, 30))
        e = s + int(rng.integers(1, 33))
        we = e + int(rng.integers(0, 40))
        rows.append({"segment_id": f"v{i}_{s}_{e}", "video": f"v{i}", "label": lab, "start_step": s,
                     "end_step": e, "window_start_step": ws, "window_end_step": we})
    return pd.DataFrame(rows)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from("ABCD"), min_size=1, max_size=30), st.integers(0, 2**31 - 1),
       st.sampled_from([0.0, 0.5, 1.0]))
def test_pairs_are_valid(labels, seed, crop_prob):
    seg = _segments(labels, np.random.default_rng(seed))
    sampler = PairSampler(seg, seed=seed, crop_prob=crop_prob)
    pairs = sampler.epoch(1)
    assert list(pairs.columns) == PAIR_COLUMNS and len(pairs) == len(seg)
    by_id = seg.set_index("segment_id")
    ref = by_id.loc[pairs["ref_segment_id"]]
    assert (ref["label"].to_numpy() == pairs["label"].to_numpy()).all()
    counts = seg["label"].value_counts()
    multi = counts.loc[pairs["label"]].to_numpy() > 1
    assert (pairs["query_segment_id"].to_numpy()[multi] != pairs["ref_segment_id"].to_numpy()[multi]).all()
    # the crop keeps the segment inside and stays inside the original window
    assert (pairs["ref_start_step"].to_numpy() >= ref["window_start_step"].to_numpy()).all()
    assert (pairs["ref_end_step"].to_numpy() <= ref["window_end_step"].to_numpy()).all()
    assert (pairs["gt_start_step"] >= 0).all()
    assert (pairs["gt_end_step"] <= pairs["ref_end_step"] - pairs["ref_start_step"]).all()
    assert (pairs["gt_end_step"] - pairs["gt_start_step"] == ref["end_step"].to_numpy() - ref["start_step"].to_numpy()).all()
    if crop_prob == 0.0:
        assert (pairs["ref_start_step"].to_numpy() == ref["window_start_step"].to_numpy()).all()
    assert sampler.self_pairs == int((counts == 1).sum())


def test_deterministic_per_epoch_and_varies_across_epochs():
    seg = _segments(list("AAAABBBBCC") * 5, np.random.default_rng(0))
    a, b = PairSampler(seg, seed=1), PairSampler(seg, seed=1)
    pd.testing.assert_frame_equal(a.epoch(3), b.epoch(3))
    assert not a.epoch(3)["ref_segment_id"].equals(a.epoch(4)["ref_segment_id"])


def test_references_are_uniform_over_the_other_members():
    seg = _segments(list("AAAA"), np.random.default_rng(0))
    s = PairSampler(seg, seed=0, shuffle=False)
    hits = {}
    for ep in range(600):
        p = s.epoch(ep)
        for q, r in zip(p["query_segment_id"], p["ref_segment_id"]):
            hits[(q, r)] = hits.get((q, r), 0) + 1
    assert all(q != r for q, r in hits)
    assert len(hits) == 12 and min(hits.values()) > 150  # 200 expected for each


def test_crop_probability():
    seg = _segments(list("AB") * 200, np.random.default_rng(1))
    seg["window_start_step"] = 0
    seg["start_step"] = 50
    seg["end_step"] = 60
    seg["window_end_step"] = 200
    p = PairSampler(seg, seed=0, crop_prob=0.9).epoch(0)
    uncropped = ((p["ref_start_step"] == 0) & (p["ref_end_step"] == 200)).mean()
    assert 0.05 < uncropped < 0.16


def test_bad_input():
    with pytest.raises(ManifestError, match="lacks columns"):
        PairSampler(pd.DataFrame({"video": ["a"]}))
    seg = _segments(list("AA"), np.random.default_rng(0))
    with pytest.raises(ConfigError, match="crop_prob must be in"):
        PairSampler(seg, crop_prob=1.5)
