"""activitynet-detection: the oracles of reference-algorithms.md Sec. 6 and agreement with the loop."""
from __future__ import annotations

import json

import numpy as np
import pytest

from relocbench import InputError, PredictionError
from relocbench.metrics import ANET_TIOU_THRESHOLDS, activitynet_detection

from reference_evaluators import activitynet_reference


def gt_doc(anns, subset="validation", extra=None):
    db = {}
    for v, s, e, lab in anns:
        db.setdefault(v, {"subset": subset, "duration": 100.0, "annotations": []})
        db[v]["annotations"].append({"segment": [s, e], "label": lab})
    for v, sub, anns2 in extra or []:
        db[v] = {"subset": sub, "annotations": [{"segment": [s, e], "label": lab} for s, e, lab in anns2]}
    return {"version": "VERSION 1.3", "taxonomy": [], "database": db}


def pred_doc(rows):
    res = {}
    for v, s, e, lab, sc in rows:
        res.setdefault(v, []).append({"label": lab, "segment": [s, e], "score": sc})
    return {"version": "VERSION 1.3", "external_data": {}, "results": res}


def ap0(gt, pred):
    return activitynet_detection(gt_doc(gt), pred_doc(pred))["per_class"]["a"][0]


def test_oracle_tp_then_duplicate_is_1():
    assert ap0([("v", 0, 10, "a")], [("v", 0, 10, "a", 0.9), ("v", 0, 10, "a", 0.8)]) == 1.0


def test_oracle_fp_then_tp_is_half():
    assert ap0([("v", 0, 10, "a")], [("v", 50, 60, "a", 0.9), ("v", 0, 10, "a", 0.8)]) == 0.5


def test_oracle_tp_fp_tp_with_two_ground_truths():
    gt = [("v", 0, 10, "a"), ("v", 20, 30, "a")]
    pred = [("v", 0, 10, "a", 0.9), ("v", 50, 60, "a", 0.85), ("v", 20, 30, "a", 0.8)]
    assert ap0(gt, pred) == pytest.approx(0.8333333333, abs=1e-9)


def test_oracle_tiou_exactly_half():
    res = activitynet_detection(gt_doc([("v", 0, 20, "a")]), pred_doc([("v", 0, 10, "a", 1.0)]))
    assert res["mAP"] == [1.0] + [0.0] * 9
    assert res["average_mAP"] == pytest.approx(0.1, abs=1e-12)
    assert res["tiou_thresholds"] == pytest.approx(list(np.linspace(0.5, 0.95, 10)))


def test_oracle_fall_through():
    # ground truths [0,10], [0,9]; predictions [0,10] (0.9) and [0,9.5] (0.8): the second falls
    # through to [0,9] after [0,10] is taken, so AP is 1 at every threshold it clears.
    gt = [("v", 0, 10, "a"), ("v", 0, 9, "a")]
    pred = [("v", 0, 10, "a", 0.9), ("v", 0, 9.5, "a", 0.8)]
    res = activitynet_detection(gt_doc(gt), pred_doc(pred))
    assert res["per_class"]["a"][0] == 1.0
    expect = activitynet_reference([(v, lab, s, e) for v, s, e, lab in gt],
                                   [(v, lab, s, e, sc) for v, s, e, lab, sc in pred], ANET_TIOU_THRESHOLDS)
    np.testing.assert_allclose(res["per_class"]["a"], expect["per_class"]["a"], atol=1e-12)


def test_prediction_on_video_without_ground_truth_is_false_positive():
    assert ap0([("v", 0, 10, "a")], [("other", 0, 10, "a", 0.9), ("v", 0, 10, "a", 0.8)]) == 0.5


def test_class_without_predictions_has_ap_zero():
    res = activitynet_detection(gt_doc([("v", 0, 10, "a"), ("w", 0, 10, "b")]), pred_doc([("v", 0, 10, "a", 1.0)]))
    assert res["per_class"]["b"] == [0.0] * 10
    assert res["per_class"]["a"] == [1.0] * 10
    assert res["average_mAP"] == pytest.approx(0.5)


def test_empty_predictions_give_zero():
    res = activitynet_detection(gt_doc([("v", 0, 10, "a")]), {"results": {}})
    assert res["average_mAP"] == 0.0 and res["n_predictions"] == 0


def test_subset_and_blocked_videos():
    gt = gt_doc([("v", 0, 10, "a"), ("blk", 0, 10, "a")], extra=[("t", "training", [(0, 5, "z")])])
    pred = pred_doc([("v", 0, 10, "a", 0.9), ("blk", 50, 60, "a", 0.95)])
    # the blocked video's ground truth and predictions are both skipped, and counted
    res = activitynet_detection(gt, pred, blocked_videos=["blk"])
    assert res["average_mAP"] == 1.0
    assert res["skipped"] == {"ground truth on blocked videos (skipped)": 1,
                              "predictions on blocked videos (skipped)": 1}
    assert list(res["per_class"]) == ["a"]  # class "z" lives in the training subset only
    assert activitynet_detection(gt, pred)["per_class"]["a"][0] == pytest.approx(0.25)


def test_blocked_videos_file(tmp_path):
    f = tmp_path / "blocked.json"
    f.write_text(json.dumps(["blk"]))
    g = tmp_path / "blocked.txt"
    g.write_text("# comment\nblk\n")
    gt = gt_doc([("v", 0, 10, "a"), ("blk", 0, 10, "a")])
    pred = pred_doc([("v", 0, 10, "a", 0.9)])
    assert activitynet_detection(gt, pred, blocked_videos=f)["average_mAP"] == 1.0
    assert activitynet_detection(gt, pred, blocked_videos=g)["average_mAP"] == 1.0


def test_unknown_label_is_an_error():
    with pytest.raises(PredictionError, match=r"video 'v': prediction 1: label 'zzz' is not a class"):
        activitynet_detection(gt_doc([("v", 0, 10, "a")]), pred_doc([("v", 0, 1, "a", 1), ("v", 0, 1, "zzz", 1)]))


def test_bad_prediction_values_are_errors():
    with pytest.raises(PredictionError, match="end 1.0 is before its start 5.0"):
        activitynet_detection(gt_doc([("v", 0, 10, "a")]), pred_doc([("v", 5, 1, "a", 1)]))
    with pytest.raises(PredictionError, match="must be finite"):
        activitynet_detection(gt_doc([("v", 0, 10, "a")]), pred_doc([("v", 0, 1, "a", float("nan"))]))
    with pytest.raises(PredictionError, match=r"video 'v': prediction 0: expected \{'label'"):
        activitynet_detection(gt_doc([("v", 0, 10, "a")]), {"results": {"v": [{"segment": [0, 1]}]}})


def test_bad_ground_truth_files(tmp_path):
    with pytest.raises(InputError, match="no ground truth in subset 'testing'"):
        activitynet_detection(gt_doc([("v", 0, 10, "a")]), pred_doc([]), subset="testing")
    bad = tmp_path / "gt.json"
    bad.write_text("{nope")
    with pytest.raises(InputError, match="malformed JSON at line 1"):
        activitynet_detection(bad, pred_doc([]))
    with pytest.raises(InputError, match="'database'"):
        activitynet_detection({"x": 1}, pred_doc([]))


def test_files_and_duplicate_video_keys(tmp_path):
    gtf = tmp_path / "gt.json"
    gtf.write_text(json.dumps(gt_doc([("v", 0, 10, "a")])))
    pf = tmp_path / "pred.json"
    pf.write_text('{"results": {"v": [{"label": "a", "segment": [0, 10], "score": 1}]}}')
    assert activitynet_detection(gtf, pf)["average_mAP"] == 1.0
    pf.write_text('{"results": {"v": [], "v": []}}')
    with pytest.raises(PredictionError, match="'v' appears more than once"):
        activitynet_detection(gtf, pf)


def random_case(seed, n_videos, n_classes, n_gt, n_pred, grid):
    """Seeded random ground truth and predictions with the listed edge cases built in."""
    rng = np.random.default_rng(seed)
    classes = [f"c{i}" for i in range(n_classes)]

    def seg():
        if grid:  # integer grid: many tIoUs exactly at thresholds and ties between boxes
            s = int(rng.integers(0, 30))
            return float(s), float(s + rng.integers(1, 20))
        s = float(rng.uniform(0, 80))
        return s, s + float(rng.uniform(0.5, 30))

    gt = []
    for _ in range(n_gt):
        s, e = seg()
        gt.append((f"v{rng.integers(n_videos)}", classes[rng.integers(n_classes)], s, e))
    gt_classes = sorted({g[1] for g in gt})
    scores = rng.permutation(n_pred * 3 + 3) / (n_pred * 3 + 3)  # distinct
    pred = []
    for i in range(n_pred):
        r = rng.random()
        if r < 0.3 and gt:  # near a ground truth
            v, lab, s, e = gt[rng.integers(len(gt))]
            d = rng.integers(-3, 4) if grid else rng.normal(0, 2)
            pred.append((v, lab, s + d, max(s + d + 0.5, e + (rng.integers(-3, 4) if grid else rng.normal(0, 2)))))
        elif r < 0.4 and gt:  # an exact copy (perfect, and duplicates)
            v, lab, s, e = gt[rng.integers(len(gt))]
            pred.append((v, lab, s, e))
        elif r < 0.5:  # a video without any ground truth
            s, e = seg()
            pred.append((f"unknown{rng.integers(5)}", gt_classes[rng.integers(len(gt_classes))], s, e))
        else:
            s, e = seg()
            pred.append((f"v{rng.integers(n_videos)}", gt_classes[rng.integers(len(gt_classes))], s, e))
    pred = [(v, lab, float(s), float(e), float(scores[i])) for i, (v, lab, s, e) in enumerate(pred)]
    return gt, pred


def _docs(gt, pred):
    return gt_doc([(v, s, e, lab) for v, lab, s, e in gt]), pred_doc([(v, s, e, lab, sc) for v, lab, s, e, sc in pred])


@pytest.mark.parametrize("seed,n_videos,n_classes,n_gt,n_pred,grid", [
    (0, 3, 2, 5, 0, False),
    (1, 3, 2, 6, 5, False),
    (2, 10, 4, 30, 80, False),
    (3, 10, 4, 30, 80, True),
    (4, 2, 1, 12, 150, True),    # crowded: long fall-through chains, many rounds
    (5, 40, 8, 120, 400, False),
    (6, 40, 8, 120, 400, True),
])
def test_agrees_with_the_loop_implementation(seed, n_videos, n_classes, n_gt, n_pred, grid):
    gt, pred = random_case(seed, n_videos, n_classes, n_gt, n_pred, grid)
    res = activitynet_detection(*_docs(gt, pred))
    ref = activitynet_reference(gt, pred, ANET_TIOU_THRESHOLDS)
    np.testing.assert_allclose(res["mAP"], ref["mAP"], atol=1e-9, rtol=0)
    assert res["average_mAP"] == pytest.approx(ref["average_mAP"], abs=1e-9)
    assert set(res["per_class"]) == set(ref["per_class"])
    for c, aps in ref["per_class"].items():
        np.testing.assert_allclose(res["per_class"][c], aps, atol=1e-9, rtol=0)


def test_ties_follow_the_documented_rule():
    # Equal scores: the later prediction goes first. Here the later one is a miss.
    gt = [("v", "a", 0.0, 10.0)]
    pred = [("v", "a", 0.0, 10.0, 0.5), ("v", "a", 50.0, 60.0, 0.5)]
    res = activitynet_detection(*_docs(gt, pred))
    assert res["per_class"]["a"][0] == 0.5
    assert activitynet_reference(gt, pred, [0.5])["per_class"]["a"][0] == 0.5


def test_perfect_predictions_give_one_and_order_does_not_matter():
    gt, _ = random_case(7, 20, 5, 60, 0, False)
    pred = [(v, lab, s, e, 1.0 - i / 100) for i, (v, lab, s, e) in enumerate(gt)]
    assert activitynet_detection(*_docs(gt, pred))["average_mAP"] == pytest.approx(1.0, abs=1e-12)
    gt2, pred2 = random_case(8, 10, 4, 40, 120, False)
    base = activitynet_detection(*_docs(gt2, pred2))
    rng = np.random.default_rng(0)
    perm_gt = [gt2[i] for i in rng.permutation(len(gt2))]
    perm_pred = [pred2[i] for i in rng.permutation(len(pred2))]
    again = activitynet_detection(*_docs(perm_gt, perm_pred))
    assert again["average_mAP"] == pytest.approx(base["average_mAP"], abs=1e-12)
    for c in base["per_class"]:
        np.testing.assert_allclose(again["per_class"][c], base["per_class"][c], atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_the_loop_implementation_on_tied_scores(seed):
    # few distinct scores: the tie rule (later prediction first) decides most of the order
    gt, pred = random_case(seed + 10, 6, 3, 40, 300, seed % 2 == 0)
    rng = np.random.default_rng(seed)
    pred = [(v, lab, s, e, float(rng.integers(0, 4)) / 4) for v, lab, s, e, _ in pred]
    gt_d, pred_d = _docs(gt, pred)
    # "listed later" means later in the file, where a video's predictions are adjacent
    pred = [(v, r["label"], *r["segment"], r["score"]) for v, rows in pred_d["results"].items() for r in rows]
    res = activitynet_detection(gt_d, pred_d)
    ref = activitynet_reference(gt, pred, ANET_TIOU_THRESHOLDS)
    np.testing.assert_allclose(res["mAP"], ref["mAP"], atol=1e-9, rtol=0)
    for c, aps in ref["per_class"].items():
        np.testing.assert_allclose(res["per_class"][c], aps, atol=1e-9, rtol=0)
