"""Leaderboard: per-seed records, mean ± std, pooled intervals, paired comparisons, README, --seeds."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from relocbench.cli import cli
from relocbench.errors import ConfigError, ManifestError, OutputExistsError
from relocbench.leaderboard import (board_stats, fmt_comparison, load_results, pair_ids_sha256, parse_seeds,
                                    publish_result, run_seeds, write_leaderboard)
from relocbench.tasks import get_task

THR = ("0.5", "0.6", "0.7", "0.8", "0.9")


def temporal_record(baseline, seed, hits, *, board="tiny", with_pairs=True):
    """A temporal record whose metrics follow from per-pair hit counts (0..5 thresholds cleared)."""
    hits = np.asarray(hits)
    n = hits.size
    m = {t: float(np.mean(hits > k)) for k, t in enumerate(THR)}
    rec = {"baseline": baseline, "task": "temporal", "dataset": board, "board": board, "seed": seed, "split": "test",
           "metrics": {"map_at_iou": m, "average": float(hits.mean() / 5), "average_thresholds": [0.5, 0.6, 0.7, 0.8,
                                                                                                  0.9],
                       "ci95": [0.0, 1.0]},
           "parameters": 10, "wall_time_s": 1.0, "hardware": {"device": "cpu"}, "config": {"steps": 0, "seed": seed}}
    if with_pairs:
        rec["per_pair"] = {"metric": "average", "split": "test", "n": n, "levels": 5,
                           "pair_ids_sha256": pair_ids_sha256([f"p{i}" for i in range(n)]),
                           "hits": "".join(map(str, hits.tolist()))}
    return rec


def write(lb, rec, legacy=False):
    p = (lb / "results" / rec["board"] / f"{rec['baseline']}.json" if legacy
         else lb / "results" / rec["board"] / rec["baseline"] / f"seed-{rec['seed']}.json")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(rec))
    return p


TASK = get_task("temporal")


# ----------------------------------------------------------------------------- statistics oracles


def test_mean_std_over_seeds_and_pooled_interval():
    # seeds with Average 0.2 and 0.4: mean 0.3, sample std 0.1 * sqrt(2)
    runs = {"a": [temporal_record("a", 0, [1] * 10), temporal_record("a", 1, [2] * 10)]}
    st = board_stats(TASK, runs, None)["a"]
    assert st["headline"]["mean"] == pytest.approx(0.3)
    assert st["headline"]["std"] == pytest.approx(0.1 * np.sqrt(2))
    assert st["columns"]["0.5"]["mean"] == 1.0 and st["columns"]["0.6"]["mean"] == 0.5
    # every pair scores (0.2 + 0.4) / 2 = 0.3 once pooled over seeds: the interval is a point
    assert st["ci95"] == pytest.approx([0.3, 0.3]) and "pooled over seeds" in st["ci95_source"]


def test_paired_comparison_oracles():
    ref = [temporal_record("cgbm", 0, [5] * 8)]
    runs = {"cgbm": ref, "same": [temporal_record("same", 0, [5] * 8)], "zero": [temporal_record("zero", 0, [0] * 8)]}
    st = board_stats(TASK, runs, "cgbm")
    assert st["cgbm"]["comparison"] is None
    same, zero = st["same"]["comparison"], st["zero"]["comparison"]
    assert same["difference"] == 0 and same["ci95"] == [0, 0] and same["p_value"] == 1.0 and not same["significant"]
    assert zero["difference"] == -1.0 and zero["ci95"] == [-1.0, -1.0] and zero["p_value"] == 0.0
    assert zero["significant"] and zero["n_pairs"] == 8
    assert fmt_comparison(same).endswith("not significant") and "p < 0.0001" in fmt_comparison(zero)


def test_paired_bootstrap_two_pairs_distribution():
    # d = [0, 1]: resampled means 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4, so P(d* <= 0) = 1/4
    # and the two-sided p-value is 2 * 1/4 = 0.5 (up to the 10,000 draws); the interval is [0, 1].
    runs = {"cgbm": [temporal_record("cgbm", 0, [0, 0])], "b": [temporal_record("b", 0, [0, 5])]}
    c = board_stats(TASK, runs, "cgbm")["b"]["comparison"]
    assert c["difference"] == 0.5 and c["ci95"] == [0.0, 1.0] and not c["significant"]
    assert c["p_value"] == pytest.approx(0.5, abs=0.03)


def test_comparison_pools_seeds_per_pair():
    # reference 1.0 everywhere; row: seed 0 hits nothing, seed 1 everything -> pooled 0.5 per pair
    runs = {"cgbm": [temporal_record("cgbm", 0, [5] * 6)],
            "b": [temporal_record("b", 0, [0] * 6), temporal_record("b", 1, [5] * 6)]}
    c = board_stats(TASK, runs, "cgbm")["b"]["comparison"]
    assert c["difference"] == -0.5 and c["ci95"] == [-0.5, -0.5] and c["significant"]


def test_comparison_unavailable_without_per_pair_scores_or_on_other_pairs():
    runs = {"cgbm": [temporal_record("cgbm", 0, [5] * 4)], "old": [temporal_record("old", 0, [1] * 4, with_pairs=False)],
            "other": [temporal_record("other", 0, [1] * 5)]}
    st = board_stats(TASK, runs, "cgbm")
    assert st["old"]["comparison"] == {"reference": "cgbm", "available": False,
                                       "reason": "per-pair scores not published for every seed"}
    assert st["other"]["comparison"]["reason"] == "different test pairs"
    assert st["old"]["ci95"] == [0.0, 1.0] and st["old"]["ci95_source"] == "the run's bootstrap"


def test_bootstrap_is_deterministic():
    rng = np.random.default_rng(3)
    runs = {"cgbm": [temporal_record("cgbm", 0, rng.integers(0, 6, 50))],
            "b": [temporal_record("b", 0, rng.integers(0, 6, 50))]}
    assert board_stats(TASK, runs, "cgbm") == board_stats(TASK, runs, "cgbm")


# ----------------------------------------------------------------------------- records on disk


def test_load_results_reads_both_layouts_and_refuses_duplicates(tmp_path):
    write(tmp_path, temporal_record("a", 0, [1, 2]), legacy=True)
    write(tmp_path, temporal_record("a", 1, [1, 2]))
    write(tmp_path, temporal_record("a", 2, [1, 2]))
    recs = load_results(tmp_path)["tiny"]
    assert [(r["baseline"], r["seed"]) for r in recs] == [("a", 0), ("a", 1), ("a", 2)]
    assert recs[0]["_file"] == "results/tiny/a.json" and recs[1]["_file"] == "results/tiny/a/seed-1.json"
    write(tmp_path, temporal_record("a", 0, [1, 2]))
    with pytest.raises(ManifestError, match=r"seed-0.json: seed 0 of 'a' is also in results/tiny/a.json"):
        load_results(tmp_path)


def test_load_results_checks_file_names(tmp_path):
    p = write(tmp_path, temporal_record("a", 1, [1]))
    p.rename(p.with_name("seed-4.json"))
    with pytest.raises(ManifestError, match="record of seed 1 in a file named for seed 4"):
        load_results(tmp_path)


def test_bad_per_pair_record_is_named(tmp_path):
    rec = temporal_record("cgbm", 0, [1, 2])
    rec["per_pair"]["hits"] = "1"
    write(tmp_path, rec)
    write(tmp_path, temporal_record("b", 0, [1, 2]))
    with pytest.raises(ManifestError, match=r"seed-0.json: per_pair of 'cgbm' seed 0: expected 2 digits 0-5, found 1 characters"):
        write_leaderboard(tmp_path)


def test_publish_over_a_single_file_of_the_same_seed(tmp_path):
    legacy = write(tmp_path, temporal_record("a", 0, [1, 2]), legacy=True)
    with pytest.raises(OutputExistsError, match="holds seed 0 of 'a' already"):
        publish_result(temporal_record("a", 0, [1, 2]), tmp_path)
    publish_result(temporal_record("a", 1, [1, 2]), tmp_path)      # another seed: both stay
    assert legacy.is_file()
    p = publish_result(temporal_record("a", 0, [3, 3]), tmp_path, force=True)   # moved into the per-seed layout
    assert not legacy.is_file() and p == tmp_path / "results" / "tiny" / "a" / "seed-0.json"
    with pytest.raises(OutputExistsError):
        publish_result(temporal_record("a", 0, [3, 3]), tmp_path)


@pytest.mark.parametrize("text,ok", [("0,1,2", [0, 1, 2]), ("3", [3]), ("1,1", None), ("a,b", None), ("", None),
                                     ("-1", None)])
def test_parse_seeds(text, ok):
    if ok is None:
        with pytest.raises(ConfigError, match="--seeds takes"):
            parse_seeds(text)
    else:
        assert parse_seeds(text) == ok


# ----------------------------------------------------------------------------- README


def test_readme_marks_differences_that_are_not_significant(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 6, 300)
    near = np.clip(base + rng.integers(-1, 2, 300), 0, 5)
    for s in (0, 1):
        write(tmp_path, temporal_record("cgbm", s, base))
        write(tmp_path, temporal_record("cgbm-base", s, near))
        write(tmp_path, temporal_record("chance", s, np.zeros(300, int)))
    write(tmp_path, temporal_record("frame-dp", 0, base, with_pairs=False), legacy=True)
    text = write_leaderboard(tmp_path).read_text()
    stats = board_stats(TASK, {"cgbm": [temporal_record("cgbm", 0, base)],
                               "cgbm-base": [temporal_record("cgbm-base", 0, near)]}, "cgbm")
    assert not stats["cgbm-base"]["comparison"]["significant"]
    row = next(ln for ln in text.splitlines() if ln.startswith("| cgbm-base |"))
    assert "not significant" in row and " ± 0.0 |" in row and "| 2 |" in row
    row = next(ln for ln in text.splitlines() if ln.startswith("| chance |"))
    assert "not significant" not in row and "p < 0.0001" in row
    assert "significant for `chance`." in text                         # Table 1 (frame-dp has no per-pair scores)
    assert "pooled over seeds, 10,000 resamples): no difference is significant." in text   # Table 2: cgbm-base
    assert "No paired comparison for `frame-dp`" in text
    # the paper's rows: a table of their own, labelled with the paper's features
    assert "### Table 1: baselines (ECCV 2018 Table 1 layout) — paper, C3D" in text
    assert "| *paper, C3D: Chance* | *16.2* |" in text and "paper: Chance" not in text
    assert "### Table 1: baselines (ECCV 2018 Table 1 layout) — features: features not recorded" in text
    # regenerating gives the same bytes
    before = {p.name: p.read_bytes() for p in (tmp_path / "figures").iterdir()}
    assert write_leaderboard(tmp_path).read_text() == text
    assert {p.name: p.read_bytes() for p in (tmp_path / "figures").iterdir()} == before


# ----------------------------------------------------------------------------- real tiny runs


def test_run_seeds_publishes_per_pair_scores(small_manifest, tmp_path):
    lines = []
    res = run_seeds("chance", "0,1", dataset=str(small_manifest), out=tmp_path / "runs",
                    leaderboard_dir=tmp_path / "lb", echo=lines.append, threads=1)
    assert [r.run_dir for r in res] == [tmp_path / "runs" / "seed-0", tmp_path / "runs" / "seed-1"]
    for k in (0, 1):
        rec = json.loads((tmp_path / "lb" / "results" / "manifest" / "chance" / f"seed-{k}.json").read_text())
        pp = rec["per_pair"]
        assert rec["seed"] == k and pp["n"] == rec["metrics"]["n_pairs"] and len(pp["hits"]) == pp["n"]
        assert sum(map(int, pp["hits"])) / (5 * pp["n"]) == pytest.approx(rec["metrics"]["average"], abs=1e-12)
    assert any(ln.startswith("seed 1: published") for ln in lines)
    text = write_leaderboard(tmp_path / "lb").read_text()
    assert "| chance |" in text and "| 2 |" in text
    with pytest.raises(ConfigError, match="give --seed or --seeds, not both"):
        run_seeds("chance", [0], overrides={"seed": 1}, dataset=str(small_manifest), out=tmp_path / "x")


def test_cli_seeds(small_manifest, tmp_path):
    runner = CliRunner()
    args = ["run-baseline", "chance", "--dataset", str(small_manifest), "--out", str(tmp_path / "r"), "--quiet",
            "--threads", "1", "--seeds", "0,2", "--leaderboard", str(tmp_path / "lb")]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "seed-2" / "result.json").is_file()
    assert sorted(p.name for p in (tmp_path / "lb" / "results" / "manifest" / "chance").iterdir()) == \
        ["seed-0.json", "seed-2.json"]
    res = runner.invoke(cli, args[:-4] + ["--seeds", "0,x"])
    assert res.exit_code == 2 and res.output.startswith("Error: --seeds takes")
    res = runner.invoke(cli, args[:-2] + ["--seed", "3"])
    assert res.exit_code == 2 and "give --seed or --seeds, not both" in res.output


# ----------------------------------------------------------------------------- spatio-temporal (pooled AP)


class _Tables:
    """A manifest stand-in: ``table(name, split)`` of the pairs and targets frames."""

    def __init__(self, pairs, targets):
        self._t = {"pairs": pairs, "targets": targets}

    def table(self, name, split=None):
        return self._t[name]


def st_problem(seed, n_pairs=12, *, copies=None):
    """Pairs (4 labels), targets (1-2 boxes on 1-3 keyframes) and scored predictions; with
    ``copies`` (per pair, an int), every pair repeated that many times next to itself."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    pairs, targets, results = [], [], {}
    base = []
    for p in range(n_pairs):
        lab = f"l{p % 4}"
        frames = sorted(rng.choice(np.arange(0, 20), int(rng.integers(1, 4)), replace=False).tolist())
        tg = []
        for t in frames:
            for _ in range(int(rng.integers(1, 3))):
                x, y = rng.uniform(0, 0.6, 2)
                tg.append((float(t), [x, y, x + rng.uniform(0.1, 0.4), y + rng.uniform(0.1, 0.4)]))
        dets = []
        for _ in range(int(rng.integers(0, 7))):
            t, box = tg[int(rng.integers(len(tg)))]
            b = np.clip(np.array(box) + rng.normal(0, 0.08, 4), 0, 1)
            b[2:] = np.maximum(b[2:], b[:2])
            dets.append({"time": t if rng.random() < 0.85 else float(rng.integers(0, 20)), "box": b.tolist(),
                         "score": float(rng.random())})
        base.append((lab, tg, dets))
    reps = copies if copies is not None else [1] * n_pairs
    for p, (lab, tg, dets) in enumerate(base):
        for c in range(int(reps[p])):
            pid = f"p{p:03d}" + (f"c{c}" if copies is not None else "")
            pairs.append({"pair_id": pid, "label": lab, "ref_start": 0.0, "ref_end": 20.0})
            targets += [{"pair_id": pid, "time": t, "x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3]} for t, b in tg]
            results[pid] = dets
    doc = {"version": "relocbench/1", "task": "spatiotemporal", "results": results}
    return pd.DataFrame(pairs), pd.DataFrame(targets), doc


def st_run(tmp_path, seed, baseline="stvr-warp", rec_seed=0, **kw):
    """(result record with per_pair, evaluator metrics) of one synthetic spatio-temporal run."""
    from relocbench.leaderboard import _st_pair_scores
    from relocbench.metrics.spatiotemporal import evaluate_spatiotemporal

    pairs, targets, doc = st_problem(seed, **kw)
    run = tmp_path / f"{baseline}-{seed}-{rec_seed}"
    run.mkdir()
    (run / "predictions-test.json").write_text(json.dumps(doc))
    metrics = evaluate_spatiotemporal(pairs, targets, doc)
    rec = {"baseline": baseline, "task": "spatiotemporal", "dataset": "sprites", "board": "sprites",
           "seed": rec_seed, "split": "test", "metrics": metrics, "parameters": 1, "wall_time_s": 1.0,
           "hardware": {"device": "cpu"}, "config": {"steps": 1}}
    rec["per_pair"] = _st_pair_scores(rec, run, _Tables(pairs, targets))
    return rec, metrics


@pytest.mark.parametrize("seed", range(5))
def test_st_flags_reproduce_the_frame_map(tmp_path, seed):
    # _st_pair_scores raises unless its flags give the evaluator's frame-mAP at 0.5 to 1e-9
    rec, metrics = st_run(tmp_path, seed)
    pp = rec["per_pair"]
    assert pp["kind"] == "pooled-ap" and pp["n"] == 12 and sum(pp["npos"]) == metrics["n_targets"]


@pytest.mark.parametrize("seed", range(4))
def test_weighted_frame_map_equals_duplicated_pairs(tmp_path, seed):
    """A resample that draws pair i k_i times scores as the evaluator does on k_i copies of it."""
    from relocbench.leaderboard import _decode_ap, _weighted_frame_map
    from relocbench.metrics.spatiotemporal import evaluate_spatiotemporal

    rec, _ = st_run(tmp_path, seed)
    k = np.random.default_rng(100 + seed).integers(0, 4, 12)
    k[0] = max(k[0], 1)
    pairs, targets, doc = st_problem(seed, copies=k)
    want = evaluate_spatiotemporal(pairs, targets, doc)["frame_map"]["0.5"]
    got = _weighted_frame_map(_decode_ap(rec["per_pair"]), k[None, :].astype(float))[0]
    assert got == pytest.approx(want, abs=1e-9)


def test_st_paired_comparison_pooled_over_seeds(tmp_path):
    st_task = get_task("spatiotemporal")
    ref = [st_run(tmp_path, 1, "stvr-warp", s)[0] for s in (0, 1)]
    same = [st_run(tmp_path, 1, "stvr-clip", 0)[0]]
    other = [st_run(tmp_path, 2, "stvr-flow", 0)[0]]
    st = board_stats(st_task, {"stvr-warp": ref, "stvr-clip": same, "stvr-flow": other}, "stvr-warp")
    c = st["stvr-clip"]["comparison"]
    assert c["difference"] == 0 and c["ci95"] == [0, 0] and not c["significant"] and c["n_bootstrap"] == 1000
    assert st["stvr-warp"]["headline"]["mean"] == pytest.approx(ref[0]["metrics"]["frame_map"]["0.5"])
    lo, hi = st["stvr-warp"]["ci95"]
    assert lo <= ref[0]["metrics"]["frame_map"]["0.5"] <= hi
    f = st["stvr-flow"]["comparison"]
    assert f["available"] and f["difference"] == pytest.approx(other[0]["metrics"]["frame_map"]["0.5"]
                                                               - ref[0]["metrics"]["frame_map"]["0.5"], abs=1e-12)


def test_publish_without_per_pair_scores_says_why(small_manifest, tmp_path, caplog):
    res = run_seeds("chance", [0], dataset=str(small_manifest), out=tmp_path / "runs", threads=1)
    rec = dict(res[0].result, manifest_sha256="0" * 64)
    with caplog.at_level("WARNING", logger="relocbench.leaderboard"):
        p = publish_result(rec, tmp_path / "lb", run_dir=res[0].run_dir, manifest=str(small_manifest))
    got = json.loads(p.read_text())
    assert "per_pair" not in got and got["per_pair_unavailable"].startswith("manifest ")
    assert "published without per-pair scores" in caplog.text


def test_run_seeds_checks_every_record_before_running(small_manifest, tmp_path):
    write(tmp_path / "lb", temporal_record("chance", 1, [0], board="manifest"))
    with pytest.raises(OutputExistsError, match=r"seed-1.json"):
        run_seeds("chance", "0,1", dataset=str(small_manifest), out=tmp_path / "runs", leaderboard_dir=tmp_path / "lb")
    assert not (tmp_path / "runs").exists()


def test_a_subset_score_is_never_published(tmp_path):
    rec = temporal_record("tiny", 0, [5, 0, 3])
    rec["subset"] = {"pairs": 3, "scored": 2, "missing": 1, "subset": True}
    with pytest.raises(ConfigError, match=r"'tiny' was scored on a subset of the pairs \(--score-subset\)"):
        publish_result(rec, tmp_path / "lb")
    rec2 = temporal_record("tiny", 0, [5, 0, 3])
    rec2["metrics"]["subset"] = {"scored": 2}
    with pytest.raises(ConfigError, match="never published"):
        publish_result(rec2, tmp_path / "lb")
    assert not (tmp_path / "lb").exists()
    assert publish_result(temporal_record("tiny", 0, [5, 0, 3]), tmp_path / "lb").is_file()


def test_published_temporal_runs_carry_the_proposal_metric(small_manifest, tmp_path):
    # the record's proposal metric is the one `relocbench evaluate --protocol activitynet-proposal`
    # gives on the files the export module writes from the same run
    from relocbench.metrics.proposal import activitynet_proposal
    from relocbench_baselines.temporal.proposals import write_proposal_files

    res = run_seeds("chance", "3", dataset=str(small_manifest), out=tmp_path / "runs",
                    leaderboard_dir=tmp_path / "lb", echo=lambda _: None, threads=1)
    rec = json.loads((tmp_path / "lb" / "results" / "manifest" / "chance" / "seed-3.json").read_text())
    p = rec["proposals"]
    out, _ = write_proposal_files(res[0].run_dir, tmp_path / "props", manifest=str(small_manifest))
    ref = activitynet_proposal(out / "ground-truth.json", out / "proposals.json", subset="test",
                               max_avg_nr_proposals=10)
    assert p["protocol"] == "activitynet-proposal" and p["max_avg_nr_proposals"] == 10
    assert p["auc"] == pytest.approx(ref["auc"], abs=1e-12) and 0 < p["auc"] < 1
    assert p["ar_at_an"] == ref["ar_at_an"] and p["ar_at_an"]["100"] is None
    assert p["ar_at_an"]["1"] <= p["ar_at_an"]["5"] <= p["ar_at_an"]["10"]
    assert p["n_videos"] == rec["metrics"]["n_pairs"]
