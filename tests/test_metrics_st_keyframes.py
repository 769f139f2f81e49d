"""reloc-spatiotemporal on the committed UCF101-24 manifest: perfect predictions score 1, and a
prediction at a time that is not a scored keyframe is an error naming the pair."""
from __future__ import annotations

import pytest

from relocbench import PredictionError, load_manifest
from relocbench.metrics import evaluate_spatiotemporal


def _doc(results):
    return {"version": "relocbench/1", "task": "spatiotemporal", "manifest": "ucf24", "split": "val",
            "results": results}


def test_perfect_and_off_keyframe_predictions():
    pairs = load_manifest("ucf24", split="val", table="pairs")
    targets = load_manifest("ucf24", split="val", table="targets")
    results = {}
    for r in targets.itertuples():
        results.setdefault(r.pair_id, []).append({"time": r.time, "box": [r.x1, r.y1, r.x2, r.y2], "score": 1.0})
    m = evaluate_spatiotemporal(pairs, targets, _doc(results))
    assert m["frame_map"] == {"0.3": 1.0, "0.5": 1.0, "0.7": 1.0}
    pid = pairs["pair_id"].iloc[0]
    t0 = float(pairs["ref_keyframes"].iloc[0][0])
    results[pid] = results[pid] + [{"time": t0 + 3, "box": [0.1, 0.1, 0.2, 0.2], "score": 0.5}]
    with pytest.raises(PredictionError, match=rf"{pid!r}.*time {t0 + 3!r} is not a scored keyframe"):
        evaluate_spatiotemporal(pairs, targets, _doc(results))
