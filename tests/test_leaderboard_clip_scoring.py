"""Leaderboard and the spatio-temporal clip scoring: per-pair scores of runs scored by the
authors' per-clip rule, tables split by scoring rule, records' ``clip_scoring`` validated."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from relocbench.cli import cli
from relocbench.errors import ManifestError, PredictionError
from relocbench.leaderboard import (_decode_ap, _st_pair_scores, _weighted_frame_map, board_stats, board_tables,
                                    feature_groups, group_name, load_results, render_leaderboard, validate_record)
from relocbench.leaderboard_site import render_site
from relocbench.metrics.spatiotemporal import evaluate_spatiotemporal
from relocbench.tasks import get_task

REPO = Path(__file__).resolve().parents[1]
ST = get_task("spatiotemporal")
KF, ORIG = "features not recorded, scoring: keyframe", "features not recorded, scoring: authors' per-clip rule"


class _Tables:
    """A manifest stand-in: ``table(name, split)`` of the pairs and targets frames."""

    def __init__(self, pairs, targets):
        self._t = {"pairs": pairs, "targets": targets}

    def table(self, name, split=None):
        return self._t[name]


def st_problem(seed, n_pairs=10, *, clips="random"):
    """Pairs (3 labels), targets (1-2 boxes on 1-3 keyframes) and scored predictions.

    ``clips``: ``None`` (keyframe predictions), ``"random"`` (each prediction on one random
    clip), ``"copies"`` (each prediction repeated on the three clips, next to each other)."""
    rng = np.random.default_rng(seed)
    pairs, targets, results = [], [], {}
    for p in range(n_pairs):
        pid = f"p{p:02d}"
        pairs.append({"pair_id": pid, "label": f"l{p % 3}", "ref_start": 0.0, "ref_end": 20.0})
        frames = sorted(rng.choice(np.arange(0, 20), int(rng.integers(1, 4)), replace=False).tolist())
        tg = []
        for t in frames:
            for _ in range(int(rng.integers(1, 3))):
                x, y = rng.uniform(0, 0.6, 2)
                tg.append((float(t), [x, y, x + rng.uniform(0.1, 0.4), y + rng.uniform(0.1, 0.4)]))
        targets += [{"pair_id": pid, "time": t, "x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3]} for t, b in tg]
        dets = []
        for _ in range(int(rng.integers(0, 8))):
            t, box = tg[int(rng.integers(len(tg)))]
            b = np.clip(np.array(box) + rng.normal(0, 0.08, 4), 0, 1)
            b[2:] = np.maximum(b[2:], b[:2])
            d = {"time": t, "box": b.tolist(), "score": float(rng.random())}
            if clips == "random":
                dets.append({**d, "clip": int(rng.integers(0, 3))})
            elif clips == "copies":
                dets += [{**d, "clip": c} for c in range(3)]
            else:
                dets.append(d)
        results[pid] = dets
    doc = {"version": "relocbench/1", "task": "spatiotemporal", "results": results}
    return pd.DataFrame(pairs), pd.DataFrame(targets), doc


def st_run(tmp_path, seed, baseline="stvr-warp", *, clips="random", rec_seed=0):
    """A spatio-temporal result record with per-pair scores, scored per clip unless ``clips`` is None."""
    pairs, targets, doc = st_problem(seed, clips=clips)
    scoring = "keyframe" if clips is None else "original"
    run = tmp_path / f"{baseline}-{seed}-{scoring}-{rec_seed}"
    run.mkdir()
    (run / "predictions-test.json").write_text(json.dumps(doc))
    metrics = evaluate_spatiotemporal(pairs, targets, doc, clip_scoring=scoring)
    rec = {"baseline": baseline, "task": "spatiotemporal", "dataset": "sprites", "board": "sprites",
           "seed": rec_seed, "split": "test", "metrics": metrics, "parameters": 1, "wall_time_s": 1.0,
           "hardware": {"device": "cpu"}, "config": {"steps": 1}}
    rec["per_pair"] = _st_pair_scores(rec, run, _Tables(pairs, targets))
    return rec


# ----------------------------------------------------------------------------- per-pair scores


def test_per_clip_flags_hand_computed(tmp_path):
    # one pair, one keyframe, one box: scored on three clips, the box counts 3 times; the hit on
    # clip 0 (score 0.9) is a true positive, the miss on clip 1 (0.8) a false positive, and the
    # hit on clip 2 (0.7) a second true positive: AP = (1 + 2/3) / 3
    pairs = pd.DataFrame([{"pair_id": "a", "label": "x", "ref_start": 0.0, "ref_end": 2.0}])
    targets = pd.DataFrame([{"pair_id": "a", "time": 1.0, "x1": 0.1, "y1": 0.1, "x2": 0.5, "y2": 0.5}])
    hit, miss = [0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]
    doc = {"version": "relocbench/1", "task": "spatiotemporal", "results": {"a": [
        {"time": 1.0, "box": hit, "score": 0.9, "clip": 0}, {"time": 1.0, "box": miss, "score": 0.8, "clip": 1},
        {"time": 1.0, "box": hit, "score": 0.7, "clip": 2}]}}
    (tmp_path / "predictions-test.json").write_text(json.dumps(doc))
    metrics = evaluate_spatiotemporal(pairs, targets, doc, clip_scoring="original")
    assert metrics["frame_map"]["0.5"] == pytest.approx((1 + 2 / 3) / 3, abs=1e-12)
    rec = {"baseline": "b", "task": "spatiotemporal", "split": "test", "metrics": metrics}
    pp = _st_pair_scores(rec, tmp_path, _Tables(pairs, targets))
    assert pp["npos"] == [3]
    dec = _decode_ap(pp)
    pair, tp, _ = dec["labels"][0]
    assert pair.tolist() == [0, 0, 0] and tp.tolist() == [1.0, 0.0, 1.0]
    # the same predictions read per keyframe would be refused: they name clips
    rec_kf = {**rec, "metrics": {**metrics, "clip_scoring": "keyframe"}}
    with pytest.raises(PredictionError, match="names a clip"):
        _st_pair_scores(rec_kf, tmp_path, _Tables(pairs, targets))


@pytest.mark.parametrize("clips", ["random", "copies"])
@pytest.mark.parametrize("seed", range(4))
def test_per_clip_flags_reproduce_the_frame_map(tmp_path, seed, clips):
    # _st_pair_scores raises unless its flags give the evaluator's frame-mAP at 0.5 to 1e-9
    rec = st_run(tmp_path, seed, clips=clips)
    pp = rec["per_pair"]
    assert pp["kind"] == "pooled-ap" and sum(pp["npos"]) == 3 * rec["metrics"]["n_targets"]
    got = _weighted_frame_map(_decode_ap(pp), np.ones((1, pp["n"])))[0]
    assert got == pytest.approx(rec["metrics"]["frame_map"]["0.5"], abs=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_per_clip_weighted_frame_map_equals_duplicated_pairs(tmp_path, seed):
    """A resample drawing pair i k_i times scores as the per-clip evaluator on k_i copies of it."""
    rec = st_run(tmp_path, seed)
    pairs, targets, doc = st_problem(seed)
    k = np.random.default_rng(50 + seed).integers(0, 4, len(pairs))
    k[0] = max(k[0], 1)
    rows, tg, res = [], [], {}
    for i, (p, n) in enumerate(zip(pairs.to_dict("records"), k)):
        for c in range(int(n)):
            pid = f"{p['pair_id']}c{c}"
            rows.append({**p, "pair_id": pid})
            tg += [{**t, "pair_id": pid} for t in targets[targets["pair_id"] == p["pair_id"]].to_dict("records")]
            res[pid] = doc["results"][p["pair_id"]]
    want = evaluate_spatiotemporal(pd.DataFrame(rows), pd.DataFrame(tg), {**doc, "results": res},
                                   clip_scoring="original")["frame_map"]["0.5"]
    got = _weighted_frame_map(_decode_ap(rec["per_pair"]), k[None, :].astype(float))[0]
    assert got == pytest.approx(want, abs=1e-9)


@pytest.mark.slow  # a 2-step training run of the tiny original recipe (about 10 s on one CPU core)
def test_tiny_original_recipe_run_is_published_and_ranked(tmp_path):
    from relocbench.video.sprites import SpritesConfig, build_sprites

    sprites = build_sprites(tmp_path / "synthetic-sprites", SpritesConfig(videos=(6, 3, 3), n_clips=6))
    cfg = REPO / "baselines" / "stvr" / "configs" / "original-tiny.yaml"
    lb = tmp_path / "lb"
    lb.mkdir()
    res = CliRunner().invoke(cli, ["run-baseline", "stvr-warp", "--recipe", "original", "--dataset", str(sprites),
                                   "--steps", "2", "--config", str(cfg), "--device", "cpu", "--quiet",
                                   "--out", str(tmp_path / "run"), "--leaderboard", str(lb)])
    assert res.exit_code == 0, res.output
    recs = load_results(lb)
    (board, rows), = recs.items()
    (rec,) = rows
    assert rec["metrics"]["clip_scoring"] == "original" and rec["per_pair"]["kind"] == "pooled-ap"
    n_targets = rec["metrics"]["n_targets"]
    assert n_targets > 0 and sum(rec["per_pair"]["npos"]) == 3 * n_targets   # every box on three clips
    # the paired-bootstrap scores, recomputed from the published record, give the run's frame-mAP
    got = _weighted_frame_map(_decode_ap(rec["per_pair"]), np.ones((1, rec["per_pair"]["n"])))[0]
    assert got == pytest.approx(rec["metrics"]["frame_map"]["0.5"], abs=1e-9)
    st = board_stats(ST, {"stvr-warp": rows}, "stvr-warp")["stvr-warp"]
    assert st["ci95_source"] == "bootstrap over pairs, pooled over seeds"
    res = CliRunner().invoke(cli, ["leaderboard", "--dir", str(lb)])   # the board regenerated
    assert res.exit_code == 0, res.output
    text = (lb / "README.md").read_text()
    assert "— features: rendered frames (synthetic-sprites), scoring: authors' per-clip rule" in text
    assert "scoring: keyframe" not in text
    res = CliRunner().invoke(cli, ["leaderboard", "--dir", str(lb)])   # again: the same bytes
    assert res.exit_code == 0, res.output
    assert (lb / "README.md").read_text() == text


# ----------------------------------------------------------------------------- tables by scoring rule


def test_group_name_splits_spatiotemporal_records_by_scoring_only():
    rec = {"task": "spatiotemporal", "features": {"source": "synthetic-sprites"}, "metrics": {}}
    assert group_name(rec) == "rendered frames (synthetic-sprites), scoring: keyframe"
    rec["metrics"]["clip_scoring"] = "original"
    assert group_name(rec) == "rendered frames (synthetic-sprites), scoring: authors' per-clip rule"
    assert group_name({"task": "temporal", "features": "tsp", "metrics": {"clip_scoring": "original"}}) == "tsp"


def test_records_of_different_scoring_rules_are_never_ranked_together(tmp_path):
    # the same predictions, once per keyframe and once copied on the three clips: the same numbers,
    # differing only in clip_scoring (and the per-pair record it implies)
    kf = st_run(tmp_path, 1, clips=None)
    orig = st_run(tmp_path, 1, clips="copies")
    assert kf["metrics"]["frame_map"] == pytest.approx(orig["metrics"]["frame_map"], abs=1e-12)
    assert {k for k in kf if kf[k] != orig[k]} == {"metrics", "per_pair"}
    assert {k for k in kf["metrics"] if kf["metrics"][k] != orig["metrics"][k]} <= {
        "clip_scoring", "frame_map", "per_label", "n_predictions"}   # frame-mAP equal up to rounding
    other = st_run(tmp_path, 2, "stvr-clip", clips=None)
    results = {"sprites": [kf, orig, other]}
    assert {k: [r["baseline"] for r in v] for k, v in feature_groups(results["sprites"]).items()} == {
        ORIG: ["stvr-warp"], KF: ["stvr-warp", "stvr-clip"]}
    text, figures = render_leaderboard(tmp_path, results)
    assert f"## sprites — features: {ORIG}, {KF}" in text
    assert "This board holds results on 2 sets of features and scoring rules" in text
    tables = text.split("### ")[1:]
    t_kf = next(t for t in tables if t.split("\n", 1)[0].endswith(f"— features: {KF}"))
    t_orig = next(t for t in tables if t.split("\n", 1)[0].endswith(f"— features: {ORIG}"))
    # the comparison of stvr-clip is with the keyframe-scored reference only
    c = board_stats(ST, {"stvr-warp": [kf], "stvr-clip": [other]}, "stvr-warp")["stvr-clip"]["comparison"]
    assert c["available"] and f"{100 * c['difference']:+.1f}" in t_kf and "Paired bootstrap" in t_kf
    assert "| stvr-clip | – |" in t_orig and "not run on these features" in t_orig
    assert "Paired bootstrap" not in t_orig and "| stvr-warp |" in t_orig
    assert len(figures) == 2
    index = render_site(results)["index.html"].decode()
    assert f"<caption>Features: {KF}</caption>" in index and f"<caption>Features: {ORIG.replace(chr(39), '&#x27;')}" \
        "</caption>" in index


def test_original_recipe_rows_alone_under_their_rule_are_compared_with_the_original_warp(tmp_path):
    # the compact recipe's stvr-warp and stvr-clip scored per keyframe; the original recipe's
    # stvr-warp and stvr-convlstm scored per clip: two groups, each paired within itself
    kf_warp, kf_clip = st_run(tmp_path, 1, clips=None), st_run(tmp_path, 2, "stvr-clip", clips=None)
    o_warp, o_conv = st_run(tmp_path, 3), st_run(tmp_path, 4, "stvr-convlstm")
    for r in (o_warp, o_conv):
        r["config"]["recipe"] = "original"
    groups = feature_groups([kf_warp, kf_clip, o_warp, o_conv])
    (title, rows, ref), = board_tables(ST, groups[ORIG])
    # no empty stvr-warp / stvr-convlstm rows beside their recipe rows; the others stay as placeholders
    assert rows == ["stvr-clip", "stvr-convlstm (original recipe)", "stvr-flow", "stvr-traj",
                    "stvr-warp (original recipe)"]
    assert ref == "stvr-warp (original recipe)"
    assert [(rows, ref) for _, rows, ref in board_tables(ST, groups[KF])] == [
        (["stvr-clip", "stvr-convlstm", "stvr-flow", "stvr-traj", "stvr-warp"], "stvr-warp")]
    text, _ = render_leaderboard(tmp_path, {"sprites": [kf_warp, kf_clip, o_warp, o_conv]})
    tables = text.split("### ")[1:]
    t_orig = next(t for t in tables if t.split("\n", 1)[0].endswith(f"— features: {ORIG}"))
    t_kf = next(t for t in tables if t.split("\n", 1)[0].endswith(f"— features: {KF}"))
    assert "vs stvr-warp (original recipe) (paired, 95% CI)" in t_orig and "(original recipe)" not in t_kf
    assert "| stvr-warp |" not in t_orig and "| stvr-convlstm |" not in t_orig
    row = next(line for line in t_orig.splitlines() if line.startswith("| stvr-convlstm (original recipe) |"))
    # one seed each: the paired difference of the point estimates is the difference of the frame-mAPs
    want = o_conv["metrics"]["frame_map"]["0.5"] - o_warp["metrics"]["frame_map"]["0.5"]
    assert f"| {100 * want:+.1f} [" in row
    assert "Paired bootstrap against `stvr-warp (original recipe)` over 10 test pairs" in t_orig
    assert t_orig.count("| reference |") == 1 and "| stvr-warp (original recipe) |" in t_orig


def test_a_group_without_the_full_model_has_no_paired_column(tmp_path):
    # before: every row of such a table read "reference"; now the column is left out
    clip, conv = st_run(tmp_path, 1, "stvr-clip"), st_run(tmp_path, 2, "stvr-convlstm")
    conv["config"]["recipe"] = "original"
    (_, rows, ref), = board_tables(ST, [clip, conv])
    assert ref is None and rows == ["stvr-clip", "stvr-convlstm (original recipe)", "stvr-flow", "stvr-traj",
                                    "stvr-warp"]
    text, _ = render_leaderboard(tmp_path, {"sprites": [clip, conv]})
    table = text.split("### ", 1)[1].split("Runs on", 1)[0]
    assert "reference" not in table and "(paired" not in table and "Paired bootstrap" not in table
    assert "| stvr-clip | " in table and "| stvr-convlstm (original recipe) | " in table


# ----------------------------------------------------------------------------- validation


def test_clip_scoring_of_a_record_is_validated(tmp_path):
    rec = st_run(tmp_path, 0)
    assert validate_record(rec, "f.json") is rec
    rec["metrics"]["clip_scoring"] = "per-clip"
    with pytest.raises(ManifestError, match=r"f\.json: field 'metrics\.clip_scoring': expected one of "
                                            r"'keyframe', 'original', found the string 'per-clip'"):
        validate_record(rec, "f.json")
    lb = tmp_path / "lb"
    p = lb / "results" / "sprites" / "stvr-warp" / "seed-0.json"
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps(rec))
    res = CliRunner().invoke(cli, ["leaderboard", "--dir", str(lb)])
    assert res.exit_code == 2 and "field 'metrics.clip_scoring'" in res.output and str(p) in res.output
    assert not (lb / "README.md").exists()
