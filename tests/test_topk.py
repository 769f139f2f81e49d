"""Ranked top-k predictions of the temporal baselines: hand-computed oracles, brute force,
the top-1 unchanged, sorted and deterministic outputs, the ``top_k`` config field, and the
ActivityNet proposal files written from a run."""
from __future__ import annotations

import itertools
import json
import zlib

import numpy as np
import pytest

from relocbench.engine import run_baseline
from relocbench.errors import ConfigError, InputError
from relocbench.metrics.temporal import evaluate_temporal
from relocbench.temporal.decode import decode_spans
from relocbench.temporal.framedp import (
    frame_distances,
    frame_level_baseline,
    frame_level_top_k,
    k_best_spans,
    k_best_spans_brute_force,
    min_mean_path,
)

torch = pytest.importorskip("torch")

from relocbench_baselines.temporal.cgbm import top_spans  # noqa: E402
from relocbench_baselines.temporal.proposals import main as proposals_main  # noqa: E402
from relocbench_baselines.temporal.proposals import proposal_documents, write_proposal_files  # noqa: E402
from relocbench_baselines.temporal.sst import SSTConfig, SSTModel  # noqa: E402
from relocbench_baselines.temporal.video_triplet import (  # noqa: E402
    VideoLSTMEncoder,
    VideoTripletConfig,
    search_span,
    search_spans,
)
from relocbench_baselines.temporal.zoo import TOP_K, chance_spans  # noqa: E402


def _spans(d):
    return [(int(s), int(e)) for s, e in zip(d.start_step, d.end_step)]


# --------------------------------------------------------------------------- cgbm: Eq. 12 ranking
def _table(ls, le, li):
    lp = np.zeros((1, len(ls), 4))
    lp[0, :, 0], lp[0, :, 1], lp[0, :, 2] = ls, le, li
    return lp


def test_cgbm_three_best_spans_by_hand():
    # inside log-probs 0: score(s, e) = ls[s] + le[e]. The ten spans [s, e] (e inclusive):
    # (0,0) -7, (0,1) -2, (0,2) -5, (0,3) -3, (1,1) -4, (1,2) -7, (1,3) -5, (2,2) -6, (2,3) -4, (3,3) -7.
    # Best: (0,1) -2, (0,3) -3, then -4 twice: (1,1) wins the tie (smaller start) over (2,3).
    lp = _table([-1, -3, -2, -5], [-6, -1, -4, -2], [0, 0, 0, 0])
    got = top_spans(lp, [4], 3)[0]
    assert _spans(got) == [(0, 2), (0, 4), (1, 2)]
    np.testing.assert_array_equal(got.score, [-2.0, -3.0, -4.0])
    # at most 2 steps: (0,1) -2, (1,1) -4, (2,3) -4
    assert _spans(top_spans(lp, [4], 3, max_span=2)[0]) == [(0, 2), (1, 2), (2, 4)]
    # a window of 3 valid steps: spans ending at step 3 are gone; 6 spans in all
    short = top_spans(lp, [3], 10)[0]
    assert len(short.score) == 6 and _spans(short)[:3] == [(0, 2), (1, 2), (0, 3)]


def test_cgbm_geometric_mean_of_inside_by_hand():
    # li = [0, -2, 0, 0], paper form (mean over s..e): (0,1) -2 - 1 = -3, (0,3) -3 - 2/4 = -3.5,
    # (2,3) -2 - 2 + 0 = -4, next (0,2) and (1,3) at -5.667
    lp = _table([-1, -3, -2, -5], [-6, -1, -4, -2], [0, -2, 0, 0])
    got = top_spans(lp, [4], 3)[0]
    assert _spans(got) == [(0, 2), (0, 4), (2, 4)]
    np.testing.assert_allclose(got.score, [-3.0, -3.5, -4.0], rtol=0, atol=1e-12)


def _brute_ranking(lp, n, max_span, form):
    rows = []
    for s in range(n):
        for e in range(s, min(n, s + max_span)):
            inside = lp[s:e + 1, 2] if (form == "paper" or e == s) else lp[s:e, 2]
            rows.append((-(lp[s, 0] + lp[e, 1] + float(np.mean(inside))), s, e - s))
    rows.sort()
    return [(s, s + off + 1) for _, s, off in rows], [-x for x, _, _ in rows]


@pytest.mark.parametrize("form", ["paper", "original"])
@pytest.mark.parametrize("seed", range(6))
def test_cgbm_top_spans_equal_brute_force_and_keep_the_decoded_span(seed, form):
    rng = np.random.default_rng(seed)
    b, t, max_span = 3, int(rng.integers(2, 12)), int(rng.integers(1, 8))
    lp = np.log(rng.dirichlet(np.ones(4), size=(b, t)))
    n = rng.integers(1, t + 1, size=b)
    ranked = top_spans(lp, n, 7, max_span=max_span, form=form)
    dec = decode_spans(lp, n, max_span=max_span, form=form)
    for i, got in enumerate(ranked):
        spans, scores = _brute_ranking(lp[i], int(n[i]), max_span, form)
        assert _spans(got) == spans[:7]
        np.testing.assert_allclose(got.score, scores[:7], rtol=1e-12, atol=1e-12)
        # the first is decode_spans's answer, bit for bit
        assert (int(got.start_step[0]), int(got.end_step[0])) == (int(dec.start_step[i]), int(dec.end_step[i]))
        assert got.score[0] == dec.score[i]
        assert np.all(np.diff(got.score) <= 0)


def test_cgbm_top_spans_checks_its_arguments():
    lp = np.zeros((1, 4, 4))
    with pytest.raises(ConfigError, match="The 'k' parameter must be an int >= 1. Got 0 instead."):
        top_spans(lp, [4], 0)
    with pytest.raises(ConfigError, match=r"lengths must hold one length in \[1, 4\]"):
        top_spans(lp, [5], 3)
    with pytest.raises(ConfigError, match="'form' parameter"):
        top_spans(lp, [4], 3, form="other")


# --------------------------------------------------------------------------- frame-dp: k best spans
def test_framedp_k_best_one_row_by_hand():
    # one query row: a path is a run of columns [a, e]; its mean is the mean of those cells.
    # [0.75, 0.25, 0.625]: (1,1) .25, (1,2) .4375, (0,1) .5, (0,2) 1.625/3, (2,2) .625, (0,0) .75
    d = np.array([[0.75, 0.25, 0.625]])
    got = k_best_spans(d, 10)
    spans = [(c[0][1], c[-1][1]) for _, c, _ in got]
    assert spans == [(1, 1), (1, 2), (0, 1), (0, 2), (2, 2), (0, 0)]
    np.testing.assert_allclose([m for m, _, _ in got], [0.25, 0.4375, 0.5, 1.625 / 3, 0.625, 0.75], atol=1e-15)
    assert [(c[0][1], c[-1][1]) for _, c, _ in k_best_spans(d, 3)] == spans[:3]


def test_framedp_k_best_two_rows_by_hand():
    # the diagonal (0,0)->(1,1) has mean 0: span [0, 2); then [0, 1) by (0,0)->(1,0), mean
    # 0.25, and [1, 2) by (0,1)->(1,1), mean 0.5
    d = np.array([[0.0, 1.0], [0.5, 0.0]])
    got = k_best_spans(d, 3)
    assert [(c[0][1], c[-1][1] + 1) for _, c, _ in got] == [(0, 2), (0, 1), (1, 2)]
    assert [m for m, _, _ in got] == [0.0, 0.25, 0.5]
    assert got[0][1] == [(0, 0), (1, 1)]


@pytest.mark.parametrize("seed", range(30))
def test_framedp_k_best_equals_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    q, r = int(rng.integers(1, 5)), int(rng.integers(1, 8))
    while q * r > 30:
        r -= 1
    d = rng.random((q, r))
    got = k_best_spans(d, 10)
    ref = k_best_spans_brute_force(d, 10)
    assert [(c[0][1], c[-1][1]) for _, c, _ in got] == [(a, e) for _, a, e in ref]
    np.testing.assert_allclose([m for m, _, _ in got], [m for m, _, _ in ref], rtol=0, atol=1e-12)
    # each path is a valid path whose mean is the reported one
    for m, cells, _ in got:
        assert cells[0][0] == 0 and cells[-1][0] == q - 1
        assert m == pytest.approx(float(np.mean([d[c] for c in cells])), abs=1e-12)
    # the first is min_mean_path's answer exactly
    mean, cells, _ = min_mean_path(d)
    assert got[0][0] == mean and got[0][1] == cells


def test_framedp_top_k_keeps_the_baseline_answer_and_finds_the_second_copy():
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((60, 16))
    ref[40:48] = ref[10:18] + 0.01 * rng.standard_normal((8, 16))   # a second copy of the segment
    query = ref[10:18] + 0.05 * rng.standard_normal((8, 16))
    top = frame_level_top_k(query, ref, 10)
    one = frame_level_baseline(query, ref)
    assert top[0] == one and (one.start_step, one.end_step) in {(10, 18), (40, 48)}
    assert {(10, 18), (40, 48)} <= {(r.start_step, r.end_step) for r in top}
    assert len({(r.start_step, r.end_step) for r in top}) == 10
    assert all(a.mean_distance <= b.mean_distance for a, b in zip(top, top[1:]))
    assert k_best_spans(frame_distances(query, ref), 3) == k_best_spans(frame_distances(query, ref), 3)


def test_framedp_k_best_checks_k():
    with pytest.raises(ConfigError, match="The 'k' parameter must be an int >= 1. Got 0 instead."):
        k_best_spans(np.zeros((2, 2)), 0)


# --------------------------------------------------------------------------- chance, video-triplet, sst
def test_chance_spans_first_draw_is_the_old_single_draw_and_all_distinct():
    for pid, w in (("p/0", 1), ("p/1", 3), ("x_y/0", 40)):
        rng = np.random.default_rng([7, zlib.crc32(pid.encode())])
        a = int(rng.integers(0, w + 1))
        b = int(rng.integers(0, w))
        b += b >= a
        spans = chance_spans(7, pid, w, 10)
        assert spans[0] == (min(a, b), max(a, b))
        assert len(spans) == min(10, w * (w + 1) // 2) == len(set(spans))
        assert all(0 <= s < e <= w for s, e in spans)
    # a 3-step window has 6 spans: all of them
    assert sorted(chance_spans(0, "p", 3, 10)) == [(s, e) for s, e in itertools.combinations(range(4), 2)]


def test_video_triplet_search_spans_ranks_every_span():
    torch.manual_seed(0)
    enc = VideoLSTMEncoder(VideoTripletConfig(feature_dim=6, hidden=5, max_span=4))
    query, ref = torch.randn(3, 6), torch.randn(7, 6)
    got = search_spans(enc, query, ref, top_k=30)
    enc.eval()
    with torch.no_grad():
        q = enc(query[None], torch.tensor([3]))[0]
        want = sorted(((float((enc(ref[None, s:e], torch.tensor([e - s]))[0] - q).pow(2).sum()), s, e)
                       for s in range(7) for e in range(s + 1, min(7, s + 4) + 1)))
    assert len(got) == len(want) == 22
    np.testing.assert_allclose([g.distance for g in got], [w[0] for w in want], rtol=1e-5, atol=1e-6)
    assert got[0] == search_span(enc, query, ref)
    assert [(g.start_step, g.end_step) for g in got[:3]] == [(s, e) for _, s, e in want[:3]]


def test_sst_top_k_proposals_start_with_the_single_answer():
    torch.manual_seed(0)
    model = SSTModel(SSTConfig(feature_dim=6, hidden=8, layers=1, anchors=5))
    x = torch.randn(2, 12, 6)
    lengths = torch.tensor([12, 9])
    one = model.predict(x, lengths, top_k=1)
    ten = model.predict(x, lengths, top_k=10)
    for a, b in zip(one, ten):
        assert len(b.score) == 10 and np.all(np.diff(b.score) <= 0)
        assert (b.start_step[0], b.end_step[0], b.score[0]) == (a.start_step[0], a.end_step[0], a.score[0])


# --------------------------------------------------------------------------- metrics: recall@5 is measured
def test_recall_at_5_above_recall_at_1_when_the_hit_is_ranked_second():
    import pandas as pd

    pairs = pd.DataFrame({"pair_id": ["a"], "label": ["x"], "query_start_step": [0], "query_end_step": [4],
                          "ref_start_step": [0], "ref_end_step": [20], "gt_start_step": [10], "gt_end_step": [14],
                          "ref_start_s": [0.0], "ref_end_s": [20.0], "gt_start_s": [10.0], "gt_end_s": [14.0]})
    doc = {"task": "temporal", "unit": "step",
           "results": {"a": [{"segment": [0, 4], "score": 0.9}, {"segment": [10, 14], "score": 0.5}]}}
    m = evaluate_temporal(pairs, doc)
    assert m["recall_at_k"]["1"] == 0.0 and m["recall_at_k"]["5"] == 1.0 and m["average"] == 0.0


# --------------------------------------------------------------------------- through the engine
TINY = {
    "chance": {},
    "frame-dp": {},
    "cgbm": {"steps": 2, "batch_size": 4, "hidden": 8, "rank": 2},
    "video-triplet": {"steps": 2, "batch_size": 4, "hidden": 8, "max_span": 16},
    "sst": {"steps": 2, "batch_size": 4, "hidden": 16, "layers": 1, "anchors": 16, "window": 32},
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_top_k_runs_keep_the_top_1_and_are_deterministic(name, small_manifest, tmp_path):
    one = run_baseline(name, dataset=str(small_manifest), out=tmp_path / "k1", overrides={**TINY[name], "top_k": 1})
    ten = run_baseline(name, dataset=str(small_manifest), out=tmp_path / "k10", overrides=TINY[name])
    assert json.loads((tmp_path / "k10" / "config.json").read_text())["config"]["top_k"] == TOP_K == 10
    p1 = json.loads((tmp_path / "k1" / "predictions-test.json").read_text())["results"]
    p10 = json.loads((tmp_path / "k10" / "predictions-test.json").read_text())["results"]
    assert p1.keys() == p10.keys()
    for pid, preds in p10.items():
        assert len(p1[pid]) == 1 and preds[0] == p1[pid][0]
        assert 1 <= len(preds) <= 10
        assert all(a["score"] >= b["score"] for a, b in zip(preds, preds[1:]))
        assert len({tuple(p["segment"]) for p in preds}) == len(preds)
    assert any(len(p) > 1 for p in p10.values())
    m1, m10 = one.metrics, ten.metrics
    assert m10["average"] == m1["average"] and m10["map_at_iou"] == m1["map_at_iou"]
    assert m10["recall_at_k"]["1"] == m1["recall_at_k"]["1"] <= m10["recall_at_k"]["5"]
    again = run_baseline(name, dataset=str(small_manifest), out=tmp_path / "again", overrides=TINY[name])
    assert again.metrics["average"] == m10["average"]
    assert ((tmp_path / "again" / "predictions-test.json").read_bytes()
            == (tmp_path / "k10" / "predictions-test.json").read_bytes())


def test_chance_recall_at_5_is_measured(small_manifest, tmp_path):
    res = run_baseline("chance", dataset=str(small_manifest), out=tmp_path / "c")
    assert res.metrics["recall_at_k"]["5"] > res.metrics["recall_at_k"]["1"]


@pytest.mark.parametrize("name", ["chance", "frame-dp", "cgbm", "video-triplet", "sst"])
@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "ten"])
def test_top_k_is_checked_by_the_declared_constraint(name, bad, small_manifest, tmp_path):
    with pytest.raises(ConfigError, match=r"The 'top_k' parameter must be an int >= 1\. Got .* instead\."):
        run_baseline(name, dataset=str(small_manifest), out=tmp_path / "x", overrides={"top_k": bad})
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- proposal files
def test_proposal_documents_by_hand():
    import pandas as pd

    from relocbench.predictions import predictions_from_dict

    pairs = pd.DataFrame({"pair_id": ["a", "b"], "label": ["x", "y"], "gt_start_step": [2, 0],
                          "gt_end_step": [5, 3], "gt_start_s": [2.0, 0.0], "gt_end_s": [5.0, 3.0]})
    preds = predictions_from_dict({"task": "temporal", "unit": "step", "manifest": "m", "split": "test",
                                   "results": {"a": [{"segment": [2, 5], "score": 0.5},
                                                     {"segment": [0, 1], "score": 0.25}]}})
    gt, prop, report = proposal_documents(preds, pairs, subset="test")
    assert gt["database"] == {"a": {"subset": "test", "annotations": [{"segment": [2.0, 5.0], "label": "x"}]},
                              "b": {"subset": "test", "annotations": [{"segment": [0.0, 3.0], "label": "y"}]}}
    assert prop["results"] == {"a": [{"segment": [2.0, 5.0], "score": 0.5}, {"segment": [0.0, 1.0], "score": 0.25}]}
    assert report == {"pairs": 2, "pairs without predictions (scored as misses)": 1, "proposals": 2}


def test_proposal_files_of_a_run_score_with_activitynet_proposal(small_manifest, tmp_path, capsys):
    from relocbench.metrics.api import evaluate

    run_baseline("chance", dataset=str(small_manifest), out=tmp_path / "run")
    out, report = write_proposal_files(tmp_path / "run", tmp_path / "prop", manifest=str(small_manifest))
    assert report["pairs without predictions (scored as misses)"] == 0
    res = evaluate(str(out / "proposals.json"), protocol="activitynet-proposal",
                   ground_truth=str(out / "ground-truth.json"), subset="test", max_avg_nr_proposals=10)
    assert res["n_videos"] == report["pairs"]
    assert 0.0 <= res["auc"] <= 1.0 and res["ar_at_an"]["10"] >= res["ar_at_an"]["1"]
    first = (out / "proposals.json").read_bytes()
    with pytest.raises(Exception, match="exists"):
        write_proposal_files(tmp_path / "run", tmp_path / "prop", manifest=str(small_manifest))
    assert proposals_main([str(tmp_path / "run"), "--out", str(tmp_path / "prop"), "--manifest",
                           str(small_manifest), "--force"]) == 0
    assert (out / "proposals.json").read_bytes() == first
    assert proposals_main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "p2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and "nowhere" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(InputError, match="run folder"):
        write_proposal_files(tmp_path / "nowhere", tmp_path / "p3")
