"""reloc-spatiotemporal: frame-mAP per combined label, against the loop implementation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from relocbench import PredictionError
from relocbench.metrics import evaluate_spatiotemporal

from reference_evaluators import spatiotemporal_reference


def make_tables(pairs, targets):
    """pairs: (pair_id, label, ref_start, ref_end); targets: (pair_id, time, (x1, y1, x2, y2))."""
    p = pd.DataFrame([{"pair_id": pid, "label": lab, "query_tubelet_id": f"q{pid}", "query_video": "qv",
                       "query_start": 0.0, "query_end": 3.0, "ref_video": "rv", "ref_start": float(rs),
                       "ref_end": float(re), "target_tubelet_ids": [f"t{pid}"]} for pid, lab, rs, re in pairs])
    t = pd.DataFrame([{"pair_id": pid, "time": float(tm), "x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3]}
                      for pid, tm, b in targets], columns=["pair_id", "time", "x1", "y1", "x2", "y2"])
    return p, t


def doc(results):
    return {"task": "spatiotemporal",
            "results": {pid: [{"time": t, "box": list(b), "score": s} for t, b, s in lst] for pid, lst in results.items()}}


BOX = (0.1, 0.1, 0.5, 0.5)


def test_perfect_predictions_give_one():
    pairs, targets = make_tables([("a", "11,59", 900, 910), ("b", "12", 900, 910)],
                                 [("a", 902, BOX), ("a", 903, BOX), ("b", 905, (0.2, 0.2, 0.9, 0.9))])
    res = evaluate_spatiotemporal(pairs, targets, doc({"a": [(902, BOX, 0.9), (903, BOX, 0.8)],
                                                       "b": [(905, (0.2, 0.2, 0.9, 0.9), 0.7)]}))
    assert res["frame_map"] == {"0.3": 1.0, "0.5": 1.0, "0.7": 1.0}
    assert res["per_label"] == {"11,59": {"0.3": 1.0, "0.5": 1.0, "0.7": 1.0}, "12": {"0.3": 1.0, "0.5": 1.0, "0.7": 1.0}}


def test_keyframe_without_targets_is_a_false_positive_and_thresholds_differ():
    pairs, targets = make_tables([("a", "x", 0, 10)], [("a", 2, (0.0, 0.0, 1.0, 1.0))])
    # IoU 0.6: a hit at 0.3 and 0.5, a miss at 0.7; the higher-scored box at t=3 has no target
    res = evaluate_spatiotemporal(pairs, targets, doc({"a": [(3, BOX, 0.9), (2, (0.0, 0.0, 0.6, 1.0), 0.5)]}))
    assert res["frame_map"] == {"0.3": 0.5, "0.5": 0.5, "0.7": 0.0}


def random_case(seed, n_pairs, n_targets, n_preds):
    rng = np.random.default_rng(seed)
    labels = ["1", "2,3", "4"]
    pairs = [(f"p{i}", labels[rng.integers(3)], 900, 920) for i in range(n_pairs)]

    def rbox():
        x, y = rng.uniform(0, 0.6, 2)
        return (float(x), float(y), float(x + rng.uniform(0.05, 0.4)), float(y + rng.uniform(0.05, 0.4)))

    targets = [(pairs[rng.integers(n_pairs)][0], float(900 + rng.integers(0, 21)), rbox()) for _ in range(n_targets)]
    results = {p[0]: [] for p in pairs}
    for _ in range(n_preds):
        if rng.random() < 0.5 and targets:
            pid, t, b = targets[rng.integers(len(targets))]
            b = tuple(float(x) for x in np.clip(np.array(b) + rng.normal(0, 0.05, 4), 0, 1))
            b = (min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3]))
        else:
            pid, t, b = pairs[rng.integers(n_pairs)][0], float(900 + rng.integers(0, 21)), rbox()
        results[pid].append((t, b, float(rng.random())))
    return pairs, targets, results


@pytest.mark.parametrize("seed,n_pairs,n_targets,n_preds", [(0, 1, 1, 0), (1, 3, 5, 10), (2, 20, 80, 400), (3, 50, 300, 2000)])
def test_agrees_with_the_loop_implementation(seed, n_pairs, n_targets, n_preds):
    pairs, targets, results = random_case(seed, n_pairs, n_targets, n_preds)
    p, t = make_tables(pairs, targets)
    res = evaluate_spatiotemporal(p, t, doc(results))
    ref = spatiotemporal_reference([(a, b) for a, b, _, _ in pairs], targets, results)
    for th, v in ref["frame_map"].items():
        assert res["frame_map"][f"{th:g}"] == pytest.approx(v, abs=1e-9)
    for lab, aps in ref["per_label"].items():
        assert list(res["per_label"][lab].values()) == pytest.approx(aps, abs=1e-9)
    rng = np.random.default_rng(seed)
    again = evaluate_spatiotemporal(p.iloc[rng.permutation(len(p))], t.iloc[rng.permutation(len(t))],
                                    doc({k: results[k] for k in reversed(list(results))}))
    assert again["frame_map"] == pytest.approx(res["frame_map"], abs=1e-12)


@pytest.mark.parametrize("block", [1, 2, 7])
def test_candidates_scored_in_small_blocks_agree(monkeypatch, block):
    import relocbench.metrics.frame_ap as fa

    pairs, targets, results = random_case(3, 50, 300, 2000)
    p, t = make_tables(pairs, targets)
    whole = evaluate_spatiotemporal(p, t, doc(results))
    monkeypatch.setattr(fa, "_BLOCK", block)
    assert evaluate_spatiotemporal(p, t, doc(results)) == whole


def test_errors_clip_and_missing():
    pairs, targets = make_tables([("a", "x", 0, 10), ("b", "y", 0, 10)], [("a", 2, BOX), ("b", 2, BOX)])
    with pytest.raises(PredictionError, match=r"pair 'a': prediction 0: time 11.0 lies outside the reference window"):
        evaluate_spatiotemporal(pairs, targets, doc({"a": [(11, BOX, 1)], "b": []}))
    with pytest.raises(PredictionError, match=r"box \[0.1, 0.1, 1.5, 0.5\] is outside \[0, 1\]"):
        evaluate_spatiotemporal(pairs, targets, doc({"a": [(2, (0.1, 0.1, 1.5, 0.5), 1)], "b": []}))
    with pytest.raises(PredictionError, match=r"ends before it starts"):
        evaluate_spatiotemporal(pairs, targets, doc({"a": [(2, (0.5, 0.1, 0.1, 0.5), 1)], "b": []}))
    with pytest.raises(PredictionError, match=r"no predictions, e.g. 'b'"):
        evaluate_spatiotemporal(pairs, targets, doc({"a": []}))
    with pytest.raises(PredictionError, match="'task' is 'temporal'"):
        evaluate_spatiotemporal(pairs, targets, {"task": "temporal", "unit": "step", "results": {}})
    res = evaluate_spatiotemporal(pairs, targets, doc({"a": [(2, (0.1, 0.1, 0.5, 0.5), 1), (3, (-0.2, 0, 0.5, 1.2), 0.5)]}),
                                  clip=True, allow_missing=True)
    assert res["n_clipped"] == 1 and res["n_missing"] == 1
    assert res["per_label"]["x"]["0.5"] == 1.0 and res["per_label"]["y"]["0.5"] == 0.0
