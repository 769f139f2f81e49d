"""``activitynet-proposal``: equal to the loop implementation of the official rules, oracles, errors, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from relocbench.cli import cli
from relocbench.errors import ConfigError, InputError, PredictionError
from relocbench.metrics.api import evaluate, summary_tables
from relocbench.metrics.proposal import activitynet_proposal

from reference_evaluators import activitynet_proposal_reference, activitynet_proposal_video_loop

THR = [float(x) for x in np.linspace(0.5, 0.95, 10)]


def make_case(seed, n_videos=12, max_props=30, *, extra_video=True, ties=False, empty_frac=0.15, zero_len=False):
    """GT doc, proposals doc and the row lists of both in file order."""
    rng = np.random.default_rng(seed)
    db, gt_rows, results, prop_rows = {}, [], {}, []
    for v in range(n_videos):
        vid = f"v{v:03d}"
        anns = []
        for _ in range(int(rng.integers(1, 4))):
            s = float(rng.uniform(0, 80))
            e = s if zero_len and rng.random() < 0.2 else s + float(rng.uniform(1, 30))
            anns.append({"segment": [s, e], "label": "a"})
            gt_rows.append((vid, s, e))
        db[vid] = {"subset": "validation", "annotations": anns}
        db[f"train{v}"] = {"subset": "training", "annotations": [{"segment": [0, 1], "label": "b"}]}
        if rng.random() < empty_frac:
            continue
        lst = []
        for _ in range(int(rng.integers(1, max_props + 1))):
            if rng.random() < 0.4:
                s, e = anns[rng.integers(len(anns))]["segment"]
                s, e = s + float(rng.normal(0, 2)), e + float(rng.normal(0, 2))
                e = max(e, s)
            else:
                s = float(rng.uniform(0, 80))
                e = s + float(rng.uniform(0, 30))
            sc = float(rng.integers(0, 4)) / 4 if ties else float(rng.random())
            lst.append({"segment": [s, e], "score": sc})
        results[vid] = lst
    if extra_video:
        results["no_gt"] = [{"segment": [0.0, 5.0], "score": 0.5}] * 7
    for vid, lst in results.items():
        prop_rows += [(vid, r["segment"][0], r["segment"][1], r["score"]) for r in lst]
    return {"database": db}, {"results": results}, gt_rows, prop_rows


def assert_equal_to_reference(fast, ref):
    np.testing.assert_allclose(fast["recall"], ref["recall"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(fast["average_recall"], ref["average_recall"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(fast["average_nr_proposals"], ref["average_nr_proposals"], rtol=1e-12, atol=0)
    assert fast["auc"] == pytest.approx(ref["auc"], abs=1e-9)
    assert fast["n_proposals_kept"] == ref["n_proposals_kept"]
    assert set(fast["ar_at_an"]) == {"1", "5", "10", "100"}
    for k, v in ref["ar_at_an"].items():
        if v is None:
            assert fast["ar_at_an"][k] is None, k
        else:
            assert fast["ar_at_an"][k] == pytest.approx(v, abs=1e-9), k


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("budget", [100, 5, 2.5, 1, None])
def test_equals_reference_loop(seed, budget):
    gt, pr, gt_rows, prop_rows = make_case(seed, ties=seed % 2 == 1)
    fast = activitynet_proposal(gt, pr, max_avg_nr_proposals=budget)
    ref = activitynet_proposal_reference(gt_rows, prop_rows, THR, budget)
    assert_equal_to_reference(fast, ref)


@pytest.mark.parametrize("seed,budget", [(0, 100), (1, 3), (2, None)])
def test_video_loop_equals_reference_loop(seed, budget):
    # the per-video numpy loop timed by the benchmark follows the same rules
    gt, pr, gt_rows, prop_rows = make_case(seed, ties=True)
    loop = activitynet_proposal_video_loop(gt_rows, prop_rows, THR, budget)
    ref = activitynet_proposal_reference(gt_rows, prop_rows, THR, budget)
    np.testing.assert_allclose(loop["recall"], ref["recall"], rtol=0, atol=1e-12)
    assert loop["auc"] == pytest.approx(ref["auc"], abs=1e-12)


@pytest.mark.parametrize("n_videos,max_props", [(1, 1), (3, 200), (40, 8)])
def test_equals_reference_loop_sizes(n_videos, max_props):
    gt, pr, gt_rows, prop_rows = make_case(7, n_videos, max_props, empty_frac=0.0 if n_videos == 1 else 0.2)
    assert_equal_to_reference(activitynet_proposal(gt, pr), activitynet_proposal_reference(gt_rows, prop_rows, THR))


def test_equals_reference_with_threshold_zero_and_zero_length_segments():
    # At tIoU 0 the official phantom proposal of a video without proposals is a hit; 0/0 never is.
    thr = [0.0, 0.3, 0.7, 1.0]
    gt, pr, gt_rows, prop_rows = make_case(3, 20, 10, empty_frac=0.3, zero_len=True)
    pr["results"]["v000"] = [{"segment": [gt_rows[0][1]] * 2, "score": 1.0}]
    prop_rows = [(v, r["segment"][0], r["segment"][1], r["score"]) for v, lst in pr["results"].items() for r in lst]
    fast = activitynet_proposal(gt, pr, tiou_thresholds=thr, max_avg_nr_proposals=3)
    assert_equal_to_reference(fast, activitynet_proposal_reference(gt_rows, prop_rows, thr, 3))


# ----------------------------------------------------------------------------- oracles


def doc(gt_by_video, props_by_video):
    gt = {"database": {v: {"subset": "validation", "annotations": [{"segment": list(s), "label": "x"} for s in segs]}
                       for v, segs in gt_by_video.items()}}
    pr = {"results": {v: [{"segment": list(s), "score": sc} for s, sc in lst] for v, lst in props_by_video.items()}}
    return gt, pr


def test_oracle_one_video_three_proposals():
    # Budget 3 for 3 proposals keeps all; point j looks at int(3 * j / 100) of them:
    # none below j=34, the best (hit of gt 1) from 34, all three (gt 2 too) only at j=100.
    gt, pr = doc({"v": [(0, 10), (20, 30)]}, {"v": [((0, 10), 0.9), ((50, 60), 0.8), ((20, 30), 0.7)]})
    r = activitynet_proposal(gt, pr, max_avg_nr_proposals=3)
    avg = np.array(r["average_recall"])
    assert (avg[:33] == 0).all() and (avg[33:99] == 0.5).all() and avg[99] == 1.0
    np.testing.assert_allclose(r["average_nr_proposals"], 3 * np.arange(1, 101) / 100)
    # trapezoids: 0.03 * 0.25 + 65 * 0.03 * 0.5 + 0.03 * 0.75 = 1.005; divided by 3 proposals
    assert r["auc"] == pytest.approx(0.335, abs=1e-12)
    # AN = 1 lies between 0.99 (AR 0) and 1.02 (AR 0.5): a third of the way
    assert r["ar_at_an"] == {"1": pytest.approx(1 / 6, abs=1e-12), "5": None, "10": None, "100": None}
    assert r["n_proposals_kept"] == 3


def test_oracle_budget_ratio_and_unscored_video():
    # 2 videos, 5 proposals (one on a video without ground truth), budget 1 per video:
    # ratio 1 * 2 / 5 = 0.4, so video a keeps int(3 * 0.4) = 1 proposal (its best, tIoU 0.5),
    # video b keeps int(1 * 0.4) = 0. Curve points j / 50 of the kept; AN = j / 100.
    gt, pr = doc({"a": [(0, 10)], "b": [(0, 4)]},
                 {"a": [((0, 10), 0.5), ((0, 5), 0.9), ((100, 110), 0.1)], "b": [((0, 4), 1.0)],
                  "c": [((0, 1), 0.3)]})
    r = activitynet_proposal(gt, pr, max_avg_nr_proposals=1)
    assert r["n_proposals_kept"] == 1 and r["n_proposals"] == 5
    rec = np.array(r["recall"])
    assert (rec[0, :49] == 0).all() and (rec[0, 49:] == 0.5).all()   # tIoU 0.5: 0.5 >= 0.5 from j = 50
    assert (rec[1:] == 0).all()
    assert r["ar_at_an"]["1"] == pytest.approx(0.05) and r["ar_at_an"]["5"] is None
    assert r["auc"] == pytest.approx(0.00025 + 50 * 0.01 * 0.05, abs=1e-12)
    assert r["skipped"]["proposals on videos without ground truth (not scored, counted in the budget)"] == 1


@pytest.mark.parametrize("first,expected", [((0, 10), 0.0), ((20, 30), 1.0)])
def test_oracle_tie_rule_later_proposal_first(first, expected):
    # Equal scores: the one listed later is ranked first; the budget keeps only one.
    other = (20, 30) if first == (0, 10) else (0, 10)
    gt, pr = doc({"v": [(0, 10)]}, {"v": [(first, 0.5), (other, 0.5)]})
    assert activitynet_proposal(gt, pr, max_avg_nr_proposals=1)["ar_at_an"]["1"] == expected


def test_oracle_perfect_and_blocked():
    gt, pr = doc({"a": [(0, 10)], "b": [(5, 6)]}, {"a": [((0, 10), 0.1)], "b": [((5, 6), 0.2)]})
    r = activitynet_proposal(gt, pr)
    assert r["ar_at_an"]["1"] == 1.0 and r["ar_at_an"]["100"] == 1.0
    assert r["auc"] == pytest.approx(0.99)    # the curve runs from AN 1 to 100 at recall 1
    rb = activitynet_proposal(gt, pr, blocked_videos=["b"])
    assert rb["n_videos"] == 1 and rb["skipped"]["proposals on blocked videos (skipped)"] == 1
    assert rb["skipped"]["ground truth on blocked videos (skipped)"] == 1


def test_labels_in_proposals_are_ignored_and_file_input(tmp_path):
    gt, pr = doc({"a": [(0, 10)]}, {"a": [((0, 10), 0.1)]})
    pr["results"]["a"][0]["label"] = "anything"
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pr.json").write_text(json.dumps(pr))
    r = evaluate(tmp_path / "pr.json", protocol="activitynet-proposal", ground_truth=tmp_path / "gt.json")
    assert r["protocol"] == "activitynet-proposal" and r["ar_at_an"]["1"] == 1.0
    titles = [t for t, _, _ in summary_tables(r)]
    assert titles[0].startswith("activitynet-proposal")


# ----------------------------------------------------------------------------- properties


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), budget=st.sampled_from([100, 10, None]))
def test_recall_monotone_in_an_and_threshold(seed, budget):
    gt, pr, _, _ = make_case(seed, n_videos=6, max_props=12)
    r = activitynet_proposal(gt, pr, max_avg_nr_proposals=budget)
    rec = np.array(r["recall"])
    assert (np.diff(rec, axis=1) >= 0).all()        # more proposals never lose a recalled ground truth
    assert (np.diff(rec, axis=0) <= 0).all()        # a stricter tIoU never recalls more
    assert (np.diff(r["average_nr_proposals"]) > 0).all()
    assert 0.0 <= r["auc"] <= 1.0


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_order_of_videos_in_files_does_not_matter(seed):
    gt, pr, _, _ = make_case(seed, n_videos=5, max_props=8)
    rev = {"results": dict(reversed(list(pr["results"].items())))}
    revgt = {"database": dict(reversed(list(gt["database"].items())))}
    a = activitynet_proposal(gt, pr, max_avg_nr_proposals=10)
    b = activitynet_proposal(revgt, rev, max_avg_nr_proposals=10)
    np.testing.assert_allclose(a["recall"], b["recall"], atol=1e-12)
    assert a["auc"] == pytest.approx(b["auc"], abs=1e-12)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("entry,match", [
    ({"segment": [0, 1]}, r"video 'a': prediction 1: expected \{'segment': \[start, end\], 'score': s\}"),
    ({"segment": [0], "score": 1}, r"video 'a': prediction 1: 'segment' must be a list of 2 numbers"),
    ({"segment": [0, 1], "score": "high"}, r"video 'a': prediction 1: 'score' must be a number"),
    ({"segment": [3, 1], "score": 1}, r"video 'a': prediction 1: segment end 1.0 is before its start 3.0"),
    ({"segment": [0, float("nan")], "score": 1}, r"video 'a': prediction 1: segment and score must be finite"),
])
def test_bad_proposal_entries(entry, match):
    gt, pr = doc({"a": [(0, 10)]}, {"a": [((0, 10), 0.1)]})
    pr["results"]["a"].append(entry)
    with pytest.raises(PredictionError, match=match) as ei:
        activitynet_proposal(gt, pr)
    assert "\n" not in str(ei.value)


def test_bad_documents_and_parameters(tmp_path):
    gt, pr = doc({"a": [(0, 10)]}, {"a": [((0, 10), 0.1)]})
    with pytest.raises(PredictionError, match="expected an ActivityNet predictions object with a 'results' mapping"):
        activitynet_proposal(gt, {"proposals": {}})
    with pytest.raises(PredictionError, match=r"video 'a': expected a list of predictions, found an object"):
        activitynet_proposal(gt, {"results": {"a": {"segment": [0, 1]}}})
    with pytest.raises(PredictionError, match="expected at least one proposal, found none"):
        activitynet_proposal(gt, {"results": {}})
    with pytest.raises(PredictionError, match="no proposal on a ground-truth video is within the budget"):
        activitynet_proposal(gt, {"results": {"zz": [{"segment": [0, 1], "score": 1}]}})
    with pytest.raises(InputError, match="no ground truth in subset 'testing'"):
        activitynet_proposal(gt, pr, subset="testing")
    with pytest.raises(ConfigError, match="The 'max_avg_nr_proposals' parameter must be a number >= 0"):
        activitynet_proposal(gt, pr, max_avg_nr_proposals=-1)
    with pytest.raises(ConfigError, match="Got 'ten' instead"):
        activitynet_proposal(gt, pr, max_avg_nr_proposals="ten")
    with pytest.raises(ConfigError, match="The 'tiou_thresholds' parameter must hold numbers in"):
        activitynet_proposal(gt, pr, tiou_thresholds=[1.5])
    f = tmp_path / "dup.json"
    f.write_text('{"results": {"a": [], "a": []}}')
    with pytest.raises(PredictionError, match="appears more than once"):
        activitynet_proposal(gt, f)


# ----------------------------------------------------------------------------- CLI


def write_docs(tmp_path, gt, pr):
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pr.json").write_text(json.dumps(pr))
    return str(tmp_path / "gt.json"), str(tmp_path / "pr.json")


def test_cli_writes_json_with_the_documented_keys(tmp_path):
    gt, pr, gt_rows, prop_rows = make_case(11)
    g, p = write_docs(tmp_path, gt, pr)
    out = tmp_path / "scores.json"
    res = CliRunner().invoke(cli, ["evaluate", p, "--protocol", "activitynet-proposal", "--ground-truth", g,
                                   "--max-avg-nr-proposals", "10", "--output-json", str(out),
                                   "--plot", str(tmp_path / "ar.png")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ar.png").read_bytes()[:4] == b"\x89PNG"
    assert "AR@1" in res.output and "AUC" in res.output
    got = json.loads(out.read_text())
    for key in ("auc", "ar_at_an", "average_recall", "average_nr_proposals", "recall"):
        assert key in got
    assert set(got["ar_at_an"]) == {"1", "5", "10", "100"}
    ref = activitynet_proposal_reference(gt_rows, prop_rows, THR, 10)
    assert got["auc"] == pytest.approx(ref["auc"], abs=1e-9)


def test_cli_bad_input_exit_2_one_line(tmp_path):
    gt, pr = doc({"a": [(0, 10)]}, {"a": [((0, 10), 0.1)]})
    pr["results"]["a"].append({"segment": [0, 10]})
    g, p = write_docs(tmp_path, gt, pr)
    res = CliRunner().invoke(cli, ["evaluate", p, "--protocol", "activitynet-proposal", "--ground-truth", g])
    assert res.exit_code == 2
    assert res.output.strip().startswith("Error: ") and len(res.output.strip().splitlines()) == 1
    assert "pr.json: video 'a': prediction 1: expected {'segment': [start, end], 'score': s}" in res.output
    res = CliRunner().invoke(cli, ["evaluate", p, "--protocol", "activitynet-proposal"])
    assert res.exit_code == 2 and "needs --ground-truth" in res.output


@pytest.mark.parametrize("block", [1, 3, 17])
@pytest.mark.parametrize("seed", range(3))
def test_pairs_scored_in_blocks_give_the_same_curve(monkeypatch, seed, block):
    """The (ground truth, proposal) pairs and the curve cuts are built a block at a time (memory);
    any block size gives the result of one block, and the loop implementation's."""
    import relocbench.metrics.proposal as proposal

    gt, pr, gt_rows, prop_rows = make_case(seed, n_videos=25, ties=seed == 1, zero_len=seed == 2)
    whole = activitynet_proposal(gt, pr, tiou_thresholds=[0.0, 0.5, 0.9])
    monkeypatch.setattr(proposal, "_PAIR_BLOCK", block)
    blocked = activitynet_proposal(gt, pr, tiou_thresholds=[0.0, 0.5, 0.9])
    assert blocked == whole
    assert_equal_to_reference(blocked, activitynet_proposal_reference(gt_rows, prop_rows, [0.0, 0.5, 0.9], 100))


def test_a_video_listed_without_annotations_is_not_a_ground_truth_video():
    # the videos are those with at least one annotation; proposals on an annotation-less
    # video count in the budget only
    gt, pr, gt_rows, prop_rows = make_case(11)
    gt["database"]["bare"] = {"subset": "validation", "annotations": []}
    pr["results"]["bare"] = [{"segment": [1.0, 4.0], "score": 0.9}] * 3
    prop_rows += [("bare", 1.0, 4.0, 0.9)] * 3
    fast = activitynet_proposal(gt, pr)
    assert fast["n_videos"] == len({v for v, _, _ in gt_rows})
    assert_equal_to_reference(fast, activitynet_proposal_reference(gt_rows, prop_rows, THR, 100))
