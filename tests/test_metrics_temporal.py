"""reloc-temporal: oracles, agreement with the loop implementation, properties and errors."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relocbench import ConfigError, PredictionError
from relocbench.metrics import evaluate_temporal
from relocbench.predictions import TemporalPredictions, read_predictions

from reference_evaluators import bootstrap_reference, temporal_reference


def make_pairs(rows):
    """rows: (pair_id, label, query_len, window_len, gt_start, gt_end) in steps; 1 step = 0.5 s."""
    recs = []
    for pid, lab, ql, wl, gs, ge in rows:
        recs.append({
            "pair_id": pid, "label": lab, "query_segment_id": f"q{pid}", "query_video": "qv",
            "query_start_step": 10, "query_end_step": 10 + ql, "ref_segment_id": f"r{pid}", "ref_video": "rv",
            "ref_start_step": 100, "ref_end_step": 100 + wl, "gt_start_step": gs, "gt_end_step": ge,
            "query_start_s": 5.0, "query_end_s": 5.0 + ql / 2, "ref_start_s": 50.0, "ref_end_s": 50.0 + wl / 2,
            "gt_start_s": gs / 2, "gt_end_s": ge / 2,
        })
    return pd.DataFrame(recs)


def doc(results, unit="step", **kw):
    return {"version": "relocbench/1", "task": "temporal", "unit": unit,
            "results": {pid: [{"segment": [s, e], "score": sc} for s, e, sc in lst] for pid, lst in results.items()},
            **kw}


def test_oracle_prediction_3_7_against_5_9():
    pairs = make_pairs([("p", "a", 4, 20, 5, 9)])
    res = evaluate_temporal(pairs, doc({"p": [(3, 7, 1.0)]}))
    assert res["mean_top1_tiou"] == pytest.approx(2 / 6)
    assert [res["map_at_iou"][k] for k in ("0.1", "0.2", "0.3", "0.4", "0.5")] == [1, 1, 1, 0, 0]
    assert res["average"] == 0.0


def test_iou_rule_at_the_threshold():
    pairs = make_pairs([("p", "a", 4, 20, 0, 10)])
    d = doc({"p": [(0, 5, 1.0)]})  # tIoU exactly 0.5
    assert evaluate_temporal(pairs, d)["map_at_iou"]["0.5"] == 1.0
    assert evaluate_temporal(pairs, d, iou_rule="strict")["map_at_iou"]["0.5"] == 0.0
    assert evaluate_temporal(pairs, d, iou_rule="strict")["map_at_iou"]["0.4"] == 1.0
    with pytest.raises(ConfigError, match="'iou_rule' parameter must be one of"):
        evaluate_temporal(pairs, d, iou_rule="loose")


def test_top1_is_the_best_score_first_listed_on_ties():
    pairs = make_pairs([("p", "a", 4, 20, 0, 10)])
    assert evaluate_temporal(pairs, doc({"p": [(15, 20, 0.1), (0, 10, 0.9)]}))["average"] == 1.0
    assert evaluate_temporal(pairs, doc({"p": [(15, 20, 0.9), (0, 10, 0.9)]}))["average"] == 0.0
    res = evaluate_temporal(pairs, doc({"p": [(15, 20, 0.9), (0, 10, 0.9)]}))
    assert res["recall_at_k"] == {"1": 0.0, "5": 1.0}


def test_perfect_predictions():
    rows = [(f"p{i}", "ab"[i % 2], 3 + i, 40, i, i + 5) for i in range(12)]
    pairs = make_pairs(rows)
    res = evaluate_temporal(pairs, doc({r[0]: [(r[4], r[5], 1.0)] for r in rows}))
    assert res["average"] == 1.0 and res["ap"] == pytest.approx(1.0) and res["ci95"] == [1.0, 1.0]
    assert all(v == 1.0 for v in res["map_at_iou"].values())
    assert res["recall_at_k"] == {"1": 1.0, "5": 1.0}
    assert res["breakdowns"]["per_class"]["a"]["n_pairs"] == 6


def random_case(seed, n_pairs, max_preds, grid, missing=0.0, empty=0.0, ties=False):
    rng = np.random.default_rng(seed)
    rows, results = [], {}
    labels = ["x", "y", "z"]
    for i in range(n_pairs):
        wl = int(rng.integers(5, 60))
        gs = int(rng.integers(0, wl - 1))
        ge = int(rng.integers(gs + 1, wl + 1))
        rows.append((f"p{i:04d}", labels[rng.integers(3)], int(rng.integers(1, 40)), wl, gs, ge))
        if rng.random() < missing:
            continue
        lst = []
        n = 0 if rng.random() < empty else int(rng.integers(1, max_preds + 1))
        for _ in range(n):
            if grid:
                s = int(rng.integers(0, wl))
                e = int(rng.integers(s, wl + 1))
            else:
                s = float(rng.uniform(0, wl))
                e = float(rng.uniform(s, wl))
            if rng.random() < 0.2:
                s, e = gs, ge
            sc = float(rng.integers(0, 4)) / 4 if ties else float(rng.random())
            lst.append((s, e, sc))
        results[rows[-1][0]] = lst
    return rows, results


@pytest.mark.parametrize("seed,n_pairs,max_preds,grid,missing,empty,ties,rule", [
    (0, 1, 1, False, 0, 0, False, "inclusive"),
    (1, 10, 3, False, 0, 0, False, "inclusive"),
    (2, 200, 12, False, 0.1, 0.1, False, "inclusive"),
    (3, 200, 12, True, 0.1, 0.1, False, "inclusive"),
    (4, 200, 12, True, 0.1, 0.1, False, "strict"),
    (5, 300, 40, True, 0.0, 0.0, True, "inclusive"),   # many tied scores
    (6, 500, 9, False, 0.05, 0.0, True, "strict"),
])
def test_agrees_with_the_loop_implementation(seed, n_pairs, max_preds, grid, missing, empty, ties, rule):
    rows, results = random_case(seed, n_pairs, max_preds, grid, missing, empty, ties)
    pairs = make_pairs(rows)
    res = evaluate_temporal(pairs, doc(results), iou_rule=rule, allow_missing=True)
    ref = temporal_reference([(r[0], r[1], r[4], r[5]) for r in rows], results, rule=rule)
    assert res["n_missing"] == n_pairs - len(results)
    assert res["average"] == pytest.approx(ref["average"], abs=1e-12)
    for t, v in ref["map_at_iou"].items():
        assert res["map_at_iou"][f"{t:g}"] == pytest.approx(v, abs=1e-12)
    assert res["recall_at_k"] == {str(k): pytest.approx(v, abs=1e-12) for k, v in ref["recall_at_k"].items()}
    np.testing.assert_allclose(list(res["ap_at_iou"].values()), ref["ap_at_iou"], atol=1e-9, rtol=0)
    assert res["ap"] == pytest.approx(ref["ap"], abs=1e-9)
    assert {k: v["average"] for k, v in res["breakdowns"]["per_class"].items()} == pytest.approx(
        ref["per_class_average"], abs=1e-12)
    for name in ("query_length_steps", "gt_to_window_ratio"):
        assert sum(v["n_pairs"] for v in res["breakdowns"][name].values()) == n_pairs


def test_bootstrap_is_seeded_and_agrees_with_naive_resampling():
    rows, results = random_case(11, 400, 5, False)
    pairs = make_pairs(rows)
    a = evaluate_temporal(pairs, doc(results), seed=3, n_bootstrap=2000)
    b = evaluate_temporal(pairs, doc(results), seed=3, n_bootstrap=2000)
    assert a == b
    assert a["ci95"][0] <= a["average"] <= a["ci95"][1]
    ref = temporal_reference([(r[0], r[1], r[4], r[5]) for r in rows], results)
    per_pair = [sum(v is not None and v >= t for t in (0.5, 0.6, 0.7, 0.8, 0.9)) / 5 for v in ref["top1"]]
    lo, hi = bootstrap_reference(per_pair, 2000, 0)
    assert a["ci95"][0] == pytest.approx(lo, abs=0.01)
    assert a["ci95"][1] == pytest.approx(hi, abs=0.01)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_permuting_pairs_changes_nothing(seed):
    rows, results = random_case(seed, 30, 6, seed % 2 == 0)
    pairs = make_pairs(rows)
    base = evaluate_temporal(pairs, doc(results))
    rng = np.random.default_rng(seed)
    shuffled = pairs.iloc[rng.permutation(len(pairs))].reset_index(drop=True)
    keys = list(results)
    res2 = {keys[i]: results[keys[i]] for i in rng.permutation(len(keys))}
    again = evaluate_temporal(shuffled, doc(res2))
    for k in ("average", "map_at_iou", "recall_at_k", "ap", "ap_at_iou", "breakdowns"):
        assert _close(again[k], base[k]), k


def _close(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return bool(a == pytest.approx(b, abs=1e-12))


def test_seconds_unit():
    pairs = make_pairs([("p", "a", 4, 20, 4, 10)])  # gt [2 s, 5 s) of a 10 s window
    assert evaluate_temporal(pairs, doc({"p": [(2.0, 5.0, 1.0)]}, unit="second"))["average"] == 1.0
    assert evaluate_temporal(pairs, doc({"p": [(4, 10, 1.0)]}, unit="step"))["average"] == 1.0


def test_arrays_api_matches_dict_api():
    rows, results = random_case(5, 50, 5, False)
    pairs = make_pairs(rows)
    ids = list(results)
    flat = [x for pid in ids for x in results[pid]]
    tp = TemporalPredictions.from_arrays(ids, [len(results[p]) for p in ids], [f[0] for f in flat],
                                         [f[1] for f in flat], [f[2] for f in flat])
    assert evaluate_temporal(pairs, tp) == evaluate_temporal(pairs, doc(results))


# ----------------------------------------------------------------------------- errors

PAIRS = make_pairs([("p1", "a", 4, 20, 0, 10), ("p2", "b", 4, 20, 5, 10)])


@pytest.mark.parametrize("results,match", [
    ({"p1": [(0, 10, 1)], "p2": [(0, 10, 1)], "p9": [(0, 1, 1)]}, r"pair id 'p9' is not in the ground truth"),
    ({"p1": [(5, 1, 1)], "p2": [(0, 10, 1)]}, r"pair 'p1': prediction 0: segment end 1.0 is before its start 5.0"),
    ({"p1": [(0, float("nan"), 1)], "p2": [(0, 10, 1)]}, r"pair 'p1': prediction 0: segment end must be a finite"),
    ({"p1": [(0, 1, float("inf"))], "p2": [(0, 10, 1)]}, r"score must be a finite number, found inf"),
    ({"p1": [(0, 10, 1)], "p2": [(0, 10, 1), (15, 25, 0.5)]},
     r"pair 'p2': prediction 1: segment \[15.0, 25.0\] lies outside the reference window \[0, 20.0\]"),
    ({"p1": [(0, 10, 1)]}, r"1 pair\(s\) of the ground truth have no predictions, e.g. 'p2'"),
])
def test_bad_predictions(results, match):
    with pytest.raises(PredictionError, match=match):
        evaluate_temporal(PAIRS, doc(results))


def test_clip_and_allow_missing_are_counted():
    res = evaluate_temporal(PAIRS, doc({"p1": [(-2, 10, 1)]}), clip=True, allow_missing=True)
    assert res["n_clipped"] == 1 and res["n_missing"] == 1
    assert res["average"] == 0.5  # p1 clipped to [0, 10] is perfect, p2 is a miss


def test_wrong_task_manifest_split_and_structure():
    with pytest.raises(PredictionError, match="'task' is 'spatiotemporal' but the ground truth is a 'temporal'"):
        evaluate_temporal(PAIRS, {"task": "spatiotemporal", "results": {}})
    with pytest.raises(PredictionError, match="for manifest 'ucf24' but the ground truth is manifest 'activitynet'"):
        evaluate_temporal(PAIRS, doc({}, manifest="ucf24"), manifest_name="activitynet")
    with pytest.raises(PredictionError, match="for split 'val' but the ground truth is split 'test'"):
        evaluate_temporal(PAIRS, doc({}, split="val"), split="test")
    with pytest.raises(PredictionError, match="lacks the key 'unit'"):
        evaluate_temporal(PAIRS, {"task": "temporal", "results": {}})
    with pytest.raises(PredictionError, match="'version' must be 'relocbench/1'"):
        evaluate_temporal(PAIRS, {**doc({}), "version": "2"})
    with pytest.raises(PredictionError, match=r"pair 'p1': prediction 0: 'segment' must be a list of 2 numbers"):
        evaluate_temporal(PAIRS, {"task": "temporal", "unit": "step", "results": {"p1": [{"segment": [1], "score": 1}]}})
    with pytest.raises(PredictionError, match="'unit' must be one of"):
        evaluate_temporal(PAIRS, doc({}, unit="frame"))


def test_unparsable_and_duplicate_files(tmp_path):
    f = tmp_path / "p.json"
    f.write_text('{"task": "temporal",')
    with pytest.raises(PredictionError, match=r"p.json: unparsable JSON at line 1"):
        read_predictions(f)
    f.write_text('{"task": "temporal", "unit": "step", "results": {"p1": [], "p1": []}}')
    with pytest.raises(PredictionError, match="pair id 'p1' appears more than once in 'results'"):
        read_predictions(f)
    with pytest.raises(PredictionError, match="predictions file not found"):
        read_predictions(tmp_path / "nope.json")
    f.write_text(json.dumps(doc({"p1": [(0, 10, 1)], "p2": [(5, 10, 1)]})))
    assert evaluate_temporal(PAIRS, read_predictions(f))["average"] == 1.0


def test_repeated_pair_ids_in_arrays_are_an_error():
    tp = TemporalPredictions.from_arrays(["p1", "p1", "p2"], [1, 1, 1], [0, 0, 5], [10, 10, 10], [1, 1, 1])
    with pytest.raises(PredictionError, match="pair id 'p1' appears more than once"):
        evaluate_temporal(PAIRS, tp)
