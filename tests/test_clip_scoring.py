"""reloc-spatiotemporal with ``clip_scoring="original"``: the CVPR 2019 code's per-clip scoring
(each keyframe three images, its boxes counted three times), by hand, against the keyframe
scoring and against the original's loop form (``original_mean_ap``); the ``clip`` field of a
predictions file; ``evaluate --clip-scoring original``."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from relocbench import ConfigError, PredictionError
from relocbench.cli import cli
from relocbench.metrics import evaluate_spatiotemporal
from relocbench.metrics.frame_ap import CLIPS_PER_KEYFRAME, original_mean_ap
from relocbench.predictions import predictions_from_dict, read_predictions

A = (0.0, 0.0, 0.5, 0.5)
B = (0.5, 0.5, 1.0, 1.0)
B_LOW = (0.5, 0.5, 1.0, 0.7)  # IoU 0.1 / 0.25 = 0.4 with B
FAR = (0.6, 0.0, 0.9, 0.3)  # IoU 0 with A and B


def tables(pairs, targets):
    """pairs: (pair_id, label, ref_start, ref_end); targets: (pair_id, time, box)."""
    p = pd.DataFrame([{"pair_id": pid, "label": lab, "ref_start": float(rs), "ref_end": float(re)}
                      for pid, lab, rs, re in pairs])
    t = pd.DataFrame([{"pair_id": pid, "time": float(tm), "x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3]}
                      for pid, tm, b in targets], columns=["pair_id", "time", "x1", "y1", "x2", "y2"])
    return p, t


def doc(results, clips=True):
    """results: {pair: [(time, box, score, clip)]}; ``clips=False`` leaves the clip out."""
    return {"task": "spatiotemporal",
            "results": {pid: [{"time": t, "box": list(b), "score": s, **({"clip": c} if clips else {})}
                              for t, b, s, c in lst] for pid, lst in results.items()}}


# --------------------------------------------------------------------------- by hand
def test_one_keyframe_with_two_boxes_and_three_clips_by_hand():
    pairs, targets = tables([("p", "a", 0, 10)], [("p", 1, A), ("p", 1, B)])
    preds = {"p": [(1, A, 0.9, 0), (1, B, 0.6, 0),  # clip 0: both boxes found
                   (1, A, 0.8, 1), (1, FAR, 0.7, 1),  # clip 1: A again (its own image: a hit), one miss
                   (1, B_LOW, 0.5, 2)]}  # clip 2: B at IoU 0.4
    res = evaluate_spatiotemporal(pairs, targets, doc(preds), clip_scoring="original")
    # 2 boxes x 3 clips = 6 instances. Ranks 0.9 T, 0.8 T, 0.7 F, 0.6 T, 0.5 (T only at 0.3):
    # at 0.5 and 0.7 precisions 1, 1, 3/4 at the hits -> (1 + 1 + 3/4) / 6 = 11/24;
    # at 0.3 also 4/5 at rank 5, which lifts the 3/4 before it (interpolated precision)
    # -> (1 + 1 + 4/5 + 4/5) / 6 = 0.6
    assert res["frame_map"] == pytest.approx({"0.3": 0.6, "0.5": 11 / 24, "0.7": 11 / 24}, abs=1e-12)
    assert res["clip_scoring"] == "original" and res["n_targets"] == 2 and res["n_predictions"] == 5
    # the original's loop form gives the same numbers
    gt = [np.array([A, B])]
    dets = [(np.array([A, B]), [0.9, 0.6]), (np.array([A, FAR]), [0.8, 0.7]), (np.array([B_LOW]), [0.5])]
    for th, want in (("0.3", 0.6), ("0.5", 11 / 24), ("0.7", 11 / 24)):
        got = original_mean_ap([{"label": "a", "gt": gt, "detections": dets}], iou_threshold=float(th))
        assert got["mean_ap"] == pytest.approx(want, abs=1e-12)
    # the keyframe scoring of the same boxes (clips dropped): one image, 2 instances; ranks
    # 0.9 T, 0.8 F (A taken), 0.7 F, 0.6 T, 0.5 F -> (1 + 2/4) / 2 = 3/4 at 0.5
    kf = evaluate_spatiotemporal(pairs, targets, doc(preds, clips=False))
    assert kf["frame_map"]["0.5"] == pytest.approx(0.75, abs=1e-12) and kf["clip_scoring"] == "keyframe"


def test_copies_ranked_apart_by_a_tie_change_the_ap():
    """The relation to the keyframe scoring is equality only when the copies of a prediction
    rank together: a hit and a miss of equal score, listed clip by clip, interleave."""
    pairs, targets = tables([("p", "a", 0, 10)], [("p", 1, A)])
    kf = evaluate_spatiotemporal(pairs, targets, doc({"p": [(1, A, 0.5, 0), (1, FAR, 0.5, 0)]}, clips=False))
    assert kf["frame_map"]["0.5"] == 1.0  # the hit ranks first: AP 1
    by_clip = {"p": [(1, box, 0.5, c) for c in range(3) for box in (A, FAR)]}
    res = evaluate_spatiotemporal(pairs, targets, doc(by_clip), clip_scoring="original")
    # hits at ranks 1, 3, 5 of 3 instances: (1 + 2/3 + 3/5) / 3 = 34/45
    assert res["frame_map"]["0.5"] == pytest.approx(34 / 45, abs=1e-12)
    together = {"p": [(1, box, 0.5, c) for box in (A, FAR) for c in range(3)]}
    res = evaluate_spatiotemporal(pairs, targets, doc(together), clip_scoring="original")
    assert res["frame_map"]["0.5"] == 1.0


# --------------------------------------------------------------------------- random cases
def random_case(rng, n_pairs, n_keyframes, n_dets, score_levels=None):
    """Pairs of ``n_keyframes`` keyframes (times 0..), 0-2 boxes each; up to ``n_dets``
    detections per clip near a box or anywhere. Scores distinct unless ``score_levels``."""
    def rbox():
        x, y = rng.uniform(0, 0.6, 2)
        return (float(x), float(y), float(x + rng.uniform(0.05, 0.4)), float(y + rng.uniform(0.05, 0.4)))

    def near(b):
        d = rng.normal(0, 0.05, 4)
        x1, y1 = min(b[0] + d[0], b[2] + d[2]), min(b[1] + d[1], b[3] + d[3])
        return (float(x1), float(y1), float(max(b[0] + d[0], b[2] + d[2])), float(max(b[1] + d[1], b[3] + d[3])))

    labels = ["1", "2,3", "4"]
    pairs, targets, loops = [], [], []
    results = {}
    for i in range(n_pairs):
        pid, lab = f"p{i}", labels[int(rng.integers(3))]
        pairs.append((pid, lab, 0, n_keyframes - 1))
        gt, dets, preds = [], [], []
        for t in range(n_keyframes):
            boxes = [rbox() for _ in range(int(rng.integers(0, 3)))]
            targets += [(pid, t, b) for b in boxes]
            gt.append(np.array(boxes).reshape(-1, 4))
            for c in range(CLIPS_PER_KEYFRAME):
                clip_dets = []
                for _ in range(int(rng.integers(0, n_dets + 1))):
                    b = near(boxes[int(rng.integers(len(boxes)))]) if boxes and rng.random() < 0.7 else rbox()
                    b = tuple(float(np.clip(v, 0, 1)) for v in b)
                    s = (float(rng.integers(score_levels)) / score_levels if score_levels
                         else float(rng.uniform(0.01, 1)))
                    clip_dets.append((b, s))
                preds += [(t, b, s, c) for b, s in clip_dets]
                dets.append((np.array([b for b, _ in clip_dets]).reshape(-1, 4), [s for _, s in clip_dets]))
        results[pid] = preds
        loops.append({"label": lab, "gt": gt, "detections": dets})
    return pairs, targets, results, loops


@pytest.mark.parametrize("seed,n_pairs,n_keyframes,n_dets", [(0, 1, 1, 2), (1, 3, 2, 3), (2, 8, 4, 4), (3, 20, 6, 5)])
def test_agrees_with_the_original_loop_form(seed, n_pairs, n_keyframes, n_dets):
    rng = np.random.default_rng(seed)
    pairs, targets, results, loops = random_case(rng, n_pairs, n_keyframes, n_dets)
    if not targets:
        targets = [("p0", 0, A)]
        loops[0]["gt"][0] = np.array([A])
    p, t = tables(pairs, targets)
    res = evaluate_spatiotemporal(p, t, doc(results), clip_scoring="original")
    for th in ("0.3", "0.5", "0.7"):
        want = original_mean_ap(loops, iou_threshold=float(th))
        np.testing.assert_allclose(res["frame_map"][th], want["mean_ap"], rtol=0, atol=1e-12)
        for lab, ap in want["ap_per_label"].items():
            np.testing.assert_allclose(res["per_label"][lab][th], ap, rtol=0, atol=1e-12)
    assert len(res["labels_without_targets"]) == original_mean_ap(loops)["labels_without_ground_truth"]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 6), st.booleans())
def test_identical_clips_equal_the_keyframe_scoring(seed, n_pairs, ties):
    """Every clip carrying the keyframe's detections, each prediction's copies listed together:
    the same AP as the keyframe scoring (ties included); with distinct scores the listing order
    does not matter."""
    rng = np.random.default_rng(seed)
    pairs, targets, results, _ = random_case(rng, n_pairs, 3, 3, score_levels=4 if ties else None)
    if not targets:
        targets = [("p0", 0, A)]
    kf_results = {pid: [d for d in lst if d[3] == 0] for pid, lst in results.items()}  # clip 0's detections
    together = {pid: [(t, b, s, c) for t, b, s, _ in lst for c in range(3)] for pid, lst in kf_results.items()}
    p, t = tables(pairs, targets)
    kf = evaluate_spatiotemporal(p, t, doc(kf_results, clips=False))
    orig = evaluate_spatiotemporal(p, t, doc(together), clip_scoring="original")
    for th in kf["frame_map"]:
        np.testing.assert_allclose(orig["frame_map"][th], kf["frame_map"][th], rtol=0, atol=1e-12)
    if not ties:
        by_clip = {pid: [(t, b, s, c) for c in range(3) for t, b, s, _ in lst] for pid, lst in kf_results.items()}
        orig2 = evaluate_spatiotemporal(p, t, doc(by_clip), clip_scoring="original")
        for th in kf["frame_map"]:
            np.testing.assert_allclose(orig2["frame_map"][th], kf["frame_map"][th], rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- the clip field
def test_clip_field_required_by_the_original_scoring_and_refused_by_the_keyframe_one():
    pairs, targets = tables([("p", "a", 0, 10), ("q", "a", 0, 10)], [("p", 1, A)])
    with_clip = doc({"p": [(1, A, 0.9, 0)], "q": [(1, A, 0.8, 2)]})
    with pytest.raises(PredictionError, match=r"pair 'q': prediction 0: the prediction names a clip \(2\) but the "
                                              r"scoring is per keyframe \(1 such prediction\(s\)\)"):
        evaluate_spatiotemporal(pairs, targets, predictions_from_dict({**with_clip, "results": {
            "p": [{"time": 1, "box": list(A), "score": 0.9}], "q": with_clip["results"]["q"]}}))
    with pytest.raises(PredictionError, match=r"f\.json: pair 'p': prediction 0: the prediction names a clip"):
        evaluate_spatiotemporal(pairs, targets, predictions_from_dict(with_clip, source="f.json"))
    mixed = doc({"p": [(1, A, 0.9, 0)], "q": [(1, A, 0.8, 1)]})
    del mixed["results"]["q"][0]["clip"]
    with pytest.raises(PredictionError, match=r"f\.json: pair 'q': prediction 0: the prediction names no clip "
                                              r"\(1 such prediction\(s\)\); --clip-scoring original"):
        evaluate_spatiotemporal(pairs, targets, predictions_from_dict(mixed, source="f.json"),
                                clip_scoring="original")
    with pytest.raises(PredictionError, match=r"pair 'p': prediction 0: the prediction names no clip \(2 such"):
        evaluate_spatiotemporal(pairs, targets, doc({"p": [(1, A, 0.9, 0)], "q": [(1, A, 0.8, 1)]}, clips=False),
                                clip_scoring="original")
    with pytest.raises(ConfigError, match=r"The 'clip_scoring' parameter must be one of \['keyframe', 'original'\]. "
                                          r"Got 'clips' instead."):
        evaluate_spatiotemporal(pairs, targets, with_clip, clip_scoring="clips")
    # no predictions at all: nothing lacks a clip
    empty = evaluate_spatiotemporal(pairs, targets, doc({"p": [], "q": []}), clip_scoring="original")
    assert empty["frame_map"]["0.5"] == 0.0


@pytest.mark.parametrize("value,shown", [(3, "3"), (-1, "-1"), (1.0, "1.0"), (True, "true"), ("1", "the string '1'"),
                                         (None, "null")])
def test_a_clip_that_is_not_an_integer_0_to_2_is_named(value, shown, tmp_path):
    d = doc({"p": [(1, A, 0.9, 0), (1, A, 0.8, 1)]})
    d["results"]["p"][1]["clip"] = value
    with pytest.raises(PredictionError, match=rf"^f\.json: pair 'p': prediction 1: 'clip' must be an integer 0, 1 "
                                              rf"or 2 \(the keyframe's clip\), found {shown}$"):
        predictions_from_dict(d, source="f.json")


def test_clip_column_of_a_large_file_read_in_chunks(tmp_path):
    """A file large enough to be read in slices: the typed slices and the checked ones give the
    same column, and a bad clip deep in it is named."""
    res = {f"p{i}": [{"time": float(t), "box": [0.1, 0.1, 0.5, 0.5], "score": 0.5, "clip": (i + t) % 3}
                     for t in range(20)] for i in range(2500)}
    path = tmp_path / "preds.json"
    path.write_text(json.dumps({"task": "spatiotemporal", "results": res}))
    got = read_predictions(path)
    want = np.array([(i + t) % 3 for i in range(2500) for t in range(20)])
    assert got.clip.dtype == np.int64 and np.array_equal(got.clip, want)
    del res["p7"][4]["clip"]  # one entry without: -1 there
    path.write_text(json.dumps({"task": "spatiotemporal", "results": res}))
    got = read_predictions(path)
    assert np.flatnonzero(got.clip < 0).tolist() == [7 * 20 + 4]
    res["p2400"][3]["clip"] = 5
    path.write_text(json.dumps({"task": "spatiotemporal", "results": res}))
    with pytest.raises(PredictionError, match=r"pair 'p2400': prediction 3: 'clip' must be an integer 0, 1 or 2"):
        read_predictions(path)
    for lst in res.values():
        for e in lst:
            e.pop("clip", None)
    path.write_text(json.dumps({"task": "spatiotemporal", "results": res}))
    assert read_predictions(path).clip is None


# --------------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def sprites(tmp_path_factory):
    from relocbench.video.sprites import SpritesConfig, build_sprites

    return build_sprites(tmp_path_factory.mktemp("clip-scoring") / "synthetic-sprites",
                         SpritesConfig(videos=(6, 3, 3), n_clips=6))


def test_evaluate_clip_scoring_original_from_the_command_line(sprites, tmp_path):
    from relocbench.manifest import open_manifest

    m = open_manifest(str(sprites))
    targets = m.table("targets", "test")
    pairs = m.table("pairs", "test")
    results = {str(pid): [] for pid in pairs["pair_id"]}
    for row in targets.itertuples(index=False):  # every box, on each of its keyframe's clips, and one miss
        for c in range(3):
            results[row.pair_id].append({"time": float(row.time), "box": [row.x1, row.y1, row.x2, row.y2],
                                         "score": 0.9, "clip": c})
    first = str(targets["pair_id"].iloc[0])
    results[first].append({"time": float(targets["time"].iloc[0]), "box": [0.0, 0.0, 0.01, 0.01], "score": 0.95,
                           "clip": 1})
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps({"task": "spatiotemporal", "results": results}))
    out = tmp_path / "scores.json"
    res = CliRunner().invoke(cli, ["evaluate", str(preds), "--manifest", str(sprites), "--split", "test",
                                   "--clip-scoring", "original", "--output-json", str(out)])
    assert res.exit_code == 0, res.output
    assert "frame-mAP (original clip scoring)" in res.output
    got = json.loads(out.read_text())
    assert got["clip_scoring"] == "original" and got["n_predictions"] == 3 * len(targets) + 1
    want = evaluate_spatiotemporal(pairs, targets, predictions_from_dict(json.loads(preds.read_text())),
                                   clip_scoring="original")
    assert got["frame_map"] == want["frame_map"] and got["frame_map"]["0.5"] < 1.0
    # the same file under the default scoring: refused in one line, naming the file and the prediction
    res = CliRunner().invoke(cli, ["evaluate", str(preds), "--manifest", str(sprites), "--split", "test"])
    assert res.exit_code == 2
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and str(preds) in lines[0] and "prediction 0: the prediction names a clip" in lines[0]
    res = CliRunner().invoke(cli, ["evaluate", str(preds), "--protocol", "reloc-temporal", "--manifest",
                                   str(sprites), "--clip-scoring", "original"])
    assert res.exit_code == 2 and "--clip-scoring original applies to the reloc-spatiotemporal protocol only" \
        in res.output


def test_one_implementation_of_the_original_rule():
    """The zoo's scoring functions are the metrics' own functions (the metrics never import the zoo)."""
    from relocbench.metrics import frame_ap
    from relocbench_baselines.stvr import original

    for name in ("count_ground_truth", "clip_true_positives", "original_mean_ap"):
        assert getattr(original, name) is getattr(frame_ap, name)
    assert original.CLIPS_PER_SECOND == frame_ap.CLIPS_PER_KEYFRAME == 3
