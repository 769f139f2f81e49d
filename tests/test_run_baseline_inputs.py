"""run-baseline on bad inputs: config values, config files, CLI values, split, resume,
outputs, early failures, skipped features, and the listing/--show-config commands."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import tiny_baseline  # noqa: F401  (registers "tiny-test")
from relocbench.baseline import config_to_dict
from relocbench.cli import cli
from relocbench.engine import describe_config, load_config_file, predict_pairs, run_baseline
from relocbench.errors import ConfigError, FeatureError, InputError, ManifestError
from relocbench.params import Float, Int, IntSeq, Options, check_params, declared_constraints
from relocbench.registry import LISTING_FILE, get_baseline, list_baselines, render_listing

REPO = Path(__file__).resolve().parent.parent


def _yaml(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text) if isinstance(text, str) else p.write_bytes(text)
    return p


# ----------------------------------------------------------------------------- config values

BAD_VALUES = [
    ("steps: ~\n", "steps", "an int >= 0", "None"),
    ("lr: .inf\n", "lr", "a finite float > 0", "inf"),
    ("clip_norm: .nan\n", "clip_norm", "a finite float >= 0", "nan"),
    ("weight_decay: -1\n", "weight_decay", "a finite float >= 0", "-1"),
    ("momentum: -1\n", "momentum", r"a finite float in \[0, 1\)", "-1"),
    ("lr_milestones: [a, b]\n", "lr_milestones", "a list of ints >= 1 in increasing order", r"\['a', 'b'\]"),
    ("lr_milestones: [[1]]\n", "lr_milestones", "a list of ints >= 1", r"\[\[1\]\]"),
    ("lr_milestones: [300, 100]\n", "lr_milestones", "a list of ints >= 1 in increasing order", r"\[300, 100\]"),
    ("lr_milestones: 100\n", "lr_milestones", "a list of ints", "100"),
    ("hidden: 0\n", "hidden", "an int >= 1", "0"),
    ("rank: 0\n", "rank", "an int >= 1", "0"),
    ("keep_aggregation: 0\n", "keep_aggregation", r"a finite float in \(0, 1\]", "0"),
    ("keep_matching: 1.5\n", "keep_matching", r"a finite float in \(0, 1\]", "1.5"),
    ("optimizer: rmsprop\n", "optimizer", "one of 'adam', 'sgd'", "'rmsprop'"),
    ("batch_size: 2.5\n", "batch_size", "an int >= 1", "2.5"),
    ("steps: 1.0e+400\n", "steps", "an int >= 0", "inf"),
    ("steps: 99999999999999999999999\n", "steps", "an int >= 0", "99999999999999999999999"),
    ("seed: -1\n", "seed", "an int >= 0", "-1"),
    ("select_on_val: 'yes'\n", "select_on_val", "a bool", "'yes'"),
    ("gating: 1\n", "gating", "a bool", "1"),
    ("decode_form: fast\n", "decode_form", "one of 'paper', 'original'", "'fast'"),
    ("lr: abc\n", "lr", "a finite float > 0", "'abc'"),
]


@pytest.mark.parametrize("text,field,expected,got", BAD_VALUES, ids=[b[0].strip() for b in BAD_VALUES])
def test_every_config_field_is_checked_before_anything_runs(small_manifest, tmp_path, text, field, expected, got):
    cfg = _yaml(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"c\.yaml: The '{field}' parameter must be {expected}.*Got {got} instead"):
        run_baseline("cgbm", dataset=str(small_manifest), out=tmp_path / "run", config_file=cfg, threads=1)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name,text,field", [
    ("stvr-warp", "kernel_size: 2\n", "kernel_size"),
    ("stvr-warp", "backbone_stride: 12\n", "backbone_stride"),
    ("stvr-warp", "anchor_scales: []\n", "anchor_scales"),
    ("stvr-warp", "anchor_ratios: [1.0, -2]\n", "anchor_ratios"),
    ("stvr-clip", "cell: gru\n", "cell"),
    ("sst", "dropout: 1\n", "dropout"),
    ("video-triplet", "positive_tiou: 0\n", "positive_tiou"),
])
def test_model_fields_are_checked(tmp_path, name, text, field):
    with pytest.raises(ConfigError, match=rf"c\.yaml: The '{field}' parameter must be"):
        run_baseline(name, config_file=_yaml(tmp_path, text), out=tmp_path / "run")


def test_cross_field_check_names_both_fields(tmp_path):
    cfg = _yaml(tmp_path, "positive_tiou: 0.3\nnegative_tiou: 0.5\n")
    with pytest.raises(ConfigError, match="'negative_tiou' parameter .* must be below 'positive_tiou'"):
        run_baseline("video-triplet", config_file=cfg, out=tmp_path / "run")


def test_good_values_are_converted(small_manifest, tmp_path):
    cfg = get_baseline("cgbm").default_config({"lr": "1e-3", "steps": 1e3, "lr_milestones": [100, 200]})
    assert cfg.lr == 0.001 and cfg.steps == 1000 and isinstance(cfg.steps, int) and cfg.lr_milestones == (100, 200)


def test_every_builtin_config_declares_every_field():
    for cls in list_baselines():
        if cls.name == "tiny-test":
            continue
        declared = declared_constraints(cls.Config)
        missing = [f for f in config_to_dict(cls.default_config()) if f not in declared]
        assert not missing, f"{cls.name}: {missing}"


def test_paper_configs_pass_the_checks():
    for name in ("cgbm", "cgbm-base", "cgbm-gating", "cgbm-bilinear"):
        get_baseline(name).default_config(load_config_file(REPO / "baselines/temporal/configs/paper.yaml"))
    get_baseline("stvr-warp").default_config(load_config_file(REPO / "baselines/stvr/configs/paper.yaml"))


def test_constraint_checker_oracles():
    from dataclasses import dataclass

    @dataclass
    class Conf:
        n: int = 1
        x: float = 0.5
        kind: str = "a"
        ms: tuple = ()
        parameter_constraints = {"n": Int(ge=1, le=3), "x": Float(gt=0, lt=1), "kind": Options("a", "b"),
                                 "ms": IntSeq(ge=0, increasing=True)}

    assert check_params(Conf, {"n": 3.0, "x": "0.25", "kind": "b", "ms": [0, 2]}) == \
        {"n": 3, "x": 0.25, "kind": "b", "ms": (0, 2)}
    for key, bad in [("n", 4), ("n", True), ("n", "2"), ("x", 1), ("x", 0), ("x", float("nan")), ("x", 10**400),
                     ("kind", "c"), ("kind", 1), ("ms", [1, 1]), ("ms", [-1]), ("ms", "12")]:
        with pytest.raises(ConfigError, match=rf"^f\.yaml: The '{key}' parameter must be "):
            check_params(Conf, {key: bad}, source="f.yaml")
    with pytest.raises(ConfigError, match=r"^--n: The 'n' parameter must be an int in \[1, 3\]\. Got 0 instead\.$"):
        check_params(Conf, {"n": 0}, origins={"n": "--n"}, source="f.yaml")


# ----------------------------------------------------------------------------- config files


@pytest.mark.parametrize("content,message", [
    (b"steps: 4\n\xff\xfe\n", r"c\.yaml: expected UTF-8 YAML text, found an undecodable byte at offset 9"),
    ("steps: [1\n", r"c\.yaml: malformed YAML at line \d+"),
    ("steps: 4\n  lr: 2\n", r"c\.yaml: malformed YAML at line 2"),
    ("- 1\n- 2\n", r"c\.yaml: expected a mapping of config keys to values, found a list"),
    ("steps: " + "[" * 3000 + "]" * 3000 + "\n", r"c\.yaml: malformed YAML: nested too deeply"),
    ("1: 2\n", r"c\.yaml: expected string config keys, found 1"),
    ("!!python/object:os.system {}\n", r"c\.yaml: malformed YAML"),
])
def test_config_file_problems_are_one_line_naming_the_file(tmp_path, content, message):
    cfg = _yaml(tmp_path, content)
    with pytest.raises(ConfigError, match=message):
        run_baseline("cgbm", config_file=cfg, out=tmp_path / "run")
    res = CliRunner().invoke(cli, ["run-baseline", "cgbm", "--config", str(cfg), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and res.output.startswith("Error: ") and res.output.count("\n") == 1, res.output
    assert "Traceback" not in res.output and not (tmp_path / "run").exists()


def test_json_config_file_problems(tmp_path):
    cfg = _yaml(tmp_path, b'{"steps": "\xff"}', name="c.json")
    with pytest.raises(ConfigError, match=r"c\.json: expected UTF-8 JSON text"):
        run_baseline("cgbm", config_file=cfg)
    cfg.write_text('{"steps": NaN}')
    with pytest.raises(ConfigError, match=r"c\.json: The 'steps' parameter must be an int >= 0\. Got nan"):
        run_baseline("cgbm", config_file=cfg)
    with pytest.raises(ConfigError, match=r"missing\.yaml: config file not found"):
        run_baseline("cgbm", config_file=tmp_path / "missing.yaml")


# ----------------------------------------------------------------------------- CLI values


@pytest.mark.parametrize("args,message", [
    (["--steps", "-1"], r"--steps: The 'steps' parameter must be an int >= 0\. Got -1 instead\."),
    (["--lr", "0"], r"--lr: The 'lr' parameter must be a finite float > 0\. Got 0\.0 instead\."),
    (["--lr", "inf"], r"--lr: The 'lr' parameter must be a finite float > 0\. Got inf instead\."),
    (["--batch-size", "0"], r"--batch-size: The 'batch_size' parameter must be an int >= 1\. Got 0 instead\."),
    (["--seed", "-1"], r"--seed: The 'seed' parameter must be an int >= 0\. Got -1 instead\."),
    (["--threads", "0"], r"--threads must be an int >= 1\. Got 0 instead\."),
    (["--board", "activitynet-paper"], r"--board activitynet-paper names a leaderboard section, but nothing is "
                                       r"published without --leaderboard DIR"),
    (["--score-subset", "--leaderboard", "lb"], r"--score-subset .* never published"),
])
def test_cli_values_are_checked_before_the_run(small_manifest, tmp_path, args, message):
    res = CliRunner().invoke(cli, ["run-baseline", "tiny-test", "--dataset", str(small_manifest), "--out",
                                   str(tmp_path / "run"), "--quiet", *args])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("Error: ") and len(res.output.strip().splitlines()) == 1, res.output
    import re

    assert re.search(message, res.output), res.output
    assert not (tmp_path / "run").exists() and not (tmp_path / "lb").exists()


def test_config_file_value_then_cli_value(small_manifest, tmp_path):
    cfg = _yaml(tmp_path, "steps: -3\n")
    # the command line overrides the file: its (bad) value is the one named
    with pytest.raises(ConfigError, match=r"^--steps: The 'steps' parameter"):
        run_baseline("tiny-test", dataset=str(small_manifest), config_file=cfg, overrides={"steps": -2})
    res = run_baseline("tiny-test", dataset=str(small_manifest), config_file=cfg, overrides={"steps": 2},
                       out=tmp_path / "run")
    assert res.result["training"]["steps"] == 2


# ----------------------------------------------------------------------------- split


@pytest.mark.parametrize("split,error,message", [
    ("nope", ManifestError, "has no table 'pairs' for split 'nope'"),
    ("train", ConfigError, "the train split has no fixed pairs"),
])
def test_split_is_checked_before_training(small_manifest, tmp_path, split, error, message, monkeypatch):
    trained = []
    monkeypatch.setattr(tiny_baseline.TinyTemporal, "batch", lambda self, *a: trained.append(1))
    with pytest.raises(error, match=message):
        run_baseline("tiny-test", dataset=str(small_manifest), split=split, out=tmp_path / "run")
    assert trained == [] and not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- resume


@pytest.fixture
def finished_run(small_manifest, tmp_path):
    run_dir = tmp_path / "run"
    run_baseline("tiny-test", dataset=str(small_manifest), out=run_dir, overrides={"steps": 4})
    return run_dir


def _resume(small_manifest, run_dir):
    return CliRunner().invoke(cli, ["run-baseline", "tiny-test", "--dataset", str(small_manifest), "--out",
                                    str(run_dir), "--steps", "4", "--resume", "--quiet"])


@pytest.mark.parametrize("damage,message", [
    (lambda d: (d / "config.json").write_text("[1, 2]"), r"config\.json: cannot resume: expected a JSON object in "
                                                         r"the run config, found a list"),
    (lambda d: (d / "config.json").write_text("{"), r"config\.json: malformed JSON at line 1"),
    (lambda d: (d / "checkpoint-last.pt").write_bytes(b""), r"checkpoint-last\.pt: the checkpoint is empty"),
    (lambda d: (d / "checkpoint-last.pt").write_bytes(b"garbage" * 10),
     r"checkpoint-last\.pt: not a readable torch checkpoint"),
    (lambda d: (d / "checkpoint-last.pt").write_bytes((d / "checkpoint-last.pt").read_bytes()[:300]),
     r"checkpoint-last\.pt: not a readable torch checkpoint"),
    (lambda d: torch.save({"model": {}}, d / "checkpoint-last.pt"),
     r"checkpoint-last\.pt: expected a checkpoint holding \['model', 'optimizer'"),
    (lambda d: torch.save([1, 2], d / "checkpoint-last.pt"), r"checkpoint-last\.pt: expected a checkpoint holding"),
])
def test_resume_with_damaged_files_names_the_file(small_manifest, finished_run, damage, message):
    damage(finished_run)
    res = _resume(small_manifest, finished_run)
    assert res.exit_code == 2 and "Aborted" not in res.output and "Traceback" not in res.output, res.output
    import re

    assert re.search(message, res.output), res.output
    assert (finished_run / "result.json").is_file()  # nothing of the finished run was removed


def test_damaged_best_checkpoint_names_the_file(small_manifest, finished_run):
    (finished_run / "checkpoint-best.pt").write_bytes(b"\x80\x04garbage")
    with pytest.raises(InputError, match=r"checkpoint-best\.pt: not a readable torch checkpoint"):
        run_baseline("tiny-test", dataset=str(small_manifest), out=finished_run, overrides={"steps": 4}, resume=True)


# ----------------------------------------------------------------------------- outputs


def test_unwritable_outputs_are_refused_before_the_work(small_manifest, tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(tiny_baseline.TinyTemporal, "prepare", lambda self, model: trained.append(1))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match=r"cannot be created: .*a_file is a file, not a folder"):
        run_baseline("tiny-test", dataset=str(small_manifest), out=a_file / "run")
    with pytest.raises(ConfigError, match="the run folder .* is not a folder"):
        run_baseline("tiny-test", dataset=str(small_manifest), out=a_file)
    if Path("/proc/self").is_dir():
        with pytest.raises(ConfigError, match="cannot be written"):
            run_baseline("tiny-test", dataset=str(small_manifest), out="/proc/relocbench-run")
    runner = CliRunner()
    res = runner.invoke(cli, ["run-baseline", "tiny-test", "--dataset", str(small_manifest), "--quiet", "--out",
                              str(tmp_path / "run"), "--leaderboard", str(a_file / "lb")])
    assert res.exit_code == 2 and "a_file is a file, not a folder" in res.output, res.output
    if Path("/proc/self").is_dir():
        res = runner.invoke(cli, ["run-baseline", "tiny-test", "--dataset", str(small_manifest), "--quiet", "--out",
                                  str(tmp_path / "run"), "--leaderboard", "/proc/relocbench-lb"])
        assert res.exit_code == 2 and "cannot be written" in res.output, res.output
    assert trained == [] and not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- early failures


def test_a_run_that_fails_before_its_first_checkpoint_lets_the_retry_start(small_manifest, tmp_path):
    run_dir = tmp_path / "run"
    tiny_baseline.TinyTemporal.fail_at_step = 2  # first checkpoint at step 4
    try:
        with pytest.raises(KeyboardInterrupt):
            run_baseline("tiny-test", dataset=str(small_manifest), out=run_dir)
    finally:
        tiny_baseline.TinyTemporal.fail_at_step = None
    assert not run_dir.exists()
    assert run_baseline("tiny-test", dataset=str(small_manifest), out=run_dir, overrides={"steps": 4}).result


def test_an_empty_run_folder_given_by_the_user_stays(small_manifest, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    tiny_baseline.TinyTemporal.fail_at_step = 1
    try:
        with pytest.raises(KeyboardInterrupt):
            run_baseline("tiny-test", dataset=str(small_manifest), out=run_dir)
    finally:
        tiny_baseline.TinyTemporal.fail_at_step = None
    assert run_dir.is_dir() and not any(run_dir.iterdir())


def test_a_failure_after_a_checkpoint_keeps_the_folder_for_resume(small_manifest, tmp_path):
    run_dir = tmp_path / "run"
    tiny_baseline.TinyTemporal.fail_at_step = 6
    try:
        with pytest.raises(KeyboardInterrupt):
            run_baseline("tiny-test", dataset=str(small_manifest), out=run_dir)
    finally:
        tiny_baseline.TinyTemporal.fail_at_step = None
    assert (run_dir / "checkpoint-last.pt").is_file()


# ----------------------------------------------------------------------------- skipped features


def _features(tmp_path, videos, steps=120):
    d = tmp_path / "feats"
    d.mkdir()
    for v in videos:
        np.save(d / f"{v}.npy", np.zeros((steps, 500), np.float32))
    # the time axis, declared as the command line requires: one row per 16 frames
    (d / "features.card.yaml").write_text("name: zeros\nlayout: folder\ntime_axis: {kind: clips}\n")
    return d


def test_skip_missing_prints_scored_and_missing_counts(small_manifest, tmp_path):
    from relocbench.manifest import open_manifest

    have = {f"vid{i:02d}" for i in range(6)}
    feats = _features(tmp_path, sorted(have))
    pairs = open_manifest(str(small_manifest)).table("pairs", "test")
    ok = [q in have and r in have for q, r in zip(pairs["query_video"], pairs["ref_video"])]
    lost = pairs[[not k for k in ok]]
    lost_videos = {v for v in set(lost["query_video"]) | set(lost["ref_video"]) if v not in have}
    n, k = len(pairs), int(sum(ok))
    assert 0 < k < n  # the fixture gives a real subset

    runner = CliRunner()
    base = ["run-baseline", "chance", "--dataset", str(small_manifest), "--features", str(feats), "--quiet"]
    res = runner.invoke(cli, base + ["--skip-missing", "--out", str(tmp_path / "all")])
    assert res.exit_code == 0, res.output
    assert (f"Scored {n} pairs: {k} predicted, {n - k} pairs ({len(lost_videos)} videos without features) "
            "counted as misses") in res.output
    full = json.loads((tmp_path / "all" / "result.json").read_text())
    assert full["coverage"]["scored"] == k and full["coverage"]["missing"] == n - k and "subset" not in full
    assert full["metrics"]["n_pairs"] == n and full["metrics"]["n_missing"] == n - k

    res = runner.invoke(cli, base + ["--score-subset", "--out", str(tmp_path / "sub")])
    assert res.exit_code == 0, res.output
    assert f"SUBSET: {k} of {n} pairs" in res.output and "Scored a subset" in res.output
    sub = json.loads((tmp_path / "sub" / "result.json").read_text())
    metrics = json.loads((tmp_path / "sub" / "metrics-test.json").read_text())
    assert sub["subset"]["scored"] == k and metrics["subset"]["pairs"] == n and metrics["n_pairs"] == k
    assert metrics["n_missing"] == 0
    # the same predictions: the subset's hits are the full run's hits over fewer pairs
    assert sub["metrics"]["average"] == pytest.approx(full["metrics"]["average"] * n / k)


def test_no_training_pair_left_names_the_store_and_the_count(small_manifest, tmp_path):
    feats = _features(tmp_path, ["other-video"])
    with pytest.raises(FeatureError, match=r"feats: --skip-missing left no training pair: all 12 videos of the 20 "
                                           r"training segments are missing"):
        run_baseline("tiny-test", dataset=str(small_manifest), features=str(feats), skip_missing=True,
                     out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- progress and prediction chunks


def test_progress_lines_when_not_a_terminal(small_manifest, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RELOCBENCH_PROGRESS_INTERVAL", "0")
    run_baseline("tiny-test", dataset=str(small_manifest), out=tmp_path / "run", progress=True)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert err.endswith("\n")
    assert any(x.startswith("train tiny-test: 1/12 steps (8%), loss ") and "ETA" in x for x in lines), err
    # the last validation score is shown once there is one (validation every 4 steps)
    assert any(x.startswith("train tiny-test: 5/12 steps (42%), loss ") and ", val " in x for x in lines), err
    assert any(x.startswith("train tiny-test: 12/12 steps (100%)") and "done in" in x for x in lines), err
    assert any(x.startswith("validate tiny-test at step 4: ") for x in lines), err
    assert any(x.startswith("predict tiny-test (test): ") and "done in" in x for x in lines), err


def test_quiet_run_prints_no_progress(small_manifest, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RELOCBENCH_PROGRESS_INTERVAL", "0")
    run_baseline("tiny-test", dataset=str(small_manifest), out=tmp_path / "run", progress=False)
    assert capsys.readouterr().err == ""


def test_chunked_prediction_equals_one_call(small_manifest):
    from relocbench.tasks import get_task

    cls = get_baseline("cgbm")
    cfg = cls.default_config({"hidden": 4, "rank": 2, "eval_batch_size": 3, "steps": 1})
    task = get_task("temporal")
    ctx = task.open(str(small_manifest), "synthetic", device=torch.device("cpu"), seed=0, skip_missing=False)
    b = cls(cfg, ctx)
    torch.manual_seed(0)
    model = cls.create_model(cfg).eval()
    pairs = task.pairs(ctx, "val")
    with torch.no_grad():
        whole = b.predict(model, pairs)
    chunked = predict_pairs(b, model, task, ctx, pairs, desc="p", quiet=True)
    assert len(pairs) > 3 and chunked == whole


# ----------------------------------------------------------------------------- list-baselines, --show-config, help


def test_listing_table_matches_the_registry():
    assert LISTING_FILE.read_text() == render_listing(), (
        "relocbench/baseline_listing.py is stale: regenerate it with `python -m relocbench.registry`")


def test_list_baselines_imports_no_model_and_describes_each_variant():
    code = ("import sys; from click.testing import CliRunner; from relocbench.cli import cli; "
            "r = CliRunner().invoke(cli, ['list-baselines']); print(r.output); "
            "print('TORCH', 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"COLUMNS": "250", "PATH": ""}).stdout
    assert out.rstrip().endswith("TORCH False"), out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.startswith("│ stvr-")}
    assert sorted(rows) == ["stvr-clip", "stvr-convlstm", "stvr-flow", "stvr-traj", "stvr-warp"]
    descriptions = {line.split("│")[-2].strip() for line in rows.values()}
    assert len(descriptions) == 5
    assert "999,429" in out  # cgbm's parameter count


def test_list_baselines_task_has_help():
    res = CliRunner().invoke(cli, ["list-baselines", "--help"])
    assert res.exit_code == 0 and "Only the baselines of this task" in res.output


def test_show_config_lists_fields_defaults_and_paper_values(tmp_path):
    info = describe_config("cgbm")
    rows = {r["name"]: r for r in info["fields"]}
    assert rows["batch_size"]["default"] == 32 and rows["batch_size"]["paper"] == 128
    assert rows["keep_matching"]["allowed"] == "a finite float in (0, 1]" and rows["optimizer"]["paper"] is None
    assert info["paper_config"].endswith("paper.yaml")
    assert describe_config("cgbm-base")["fields"][[r["name"] for r in info["fields"]].index("gating")]["default"] \
        is False
    res = CliRunner().invoke(cli, ["run-baseline", "cgbm", "--show-config"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "keep_matching" in res.output and "paper.yaml" in res.output and "this run" not in res.output
    cfg = _yaml(tmp_path, "hidden: 16\n")
    res = CliRunner().invoke(cli, ["run-baseline", "cgbm", "--show-config", "--config", str(cfg)],
                             env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "this run" in res.output
    res = CliRunner().invoke(cli, ["run-baseline", "cgbm", "--show-config", "--config", str(_yaml(tmp_path, "rank: 0\n",
                                                                                              "bad.yaml"))])
    assert res.exit_code == 2 and "bad.yaml: The 'rank' parameter must be an int >= 1" in res.output


def test_top_level_help_example_does_not_overwrite_the_committed_manifest():
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0
    assert "--out runs/activitynet-manifest" in res.output and "manifests/activitynet --force" not in res.output


def test_skipped_training_segments_are_counted_and_printed(small_manifest, tmp_path):
    from relocbench.manifest import open_manifest

    have = {f"vid{i:02d}" for i in range(9)}
    feats = _features(tmp_path, sorted(have))
    seg = open_manifest(str(small_manifest)).table("segments", "train")
    n_skipped = int(sum(v not in have for v in seg["video"]))
    assert n_skipped > 0
    res = CliRunner().invoke(cli, ["run-baseline", "tiny-test", "--dataset", str(small_manifest), "--features",
                                   str(feats), "--skip-missing", "--steps", "2", "--quiet", "--out",
                                   str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert f"training segments without features (skipped): {n_skipped} (e.g. vid" in res.output
    rec = json.loads((tmp_path / "run" / "result.json").read_text())
    assert rec["coverage"]["skipped"]["training segments without features (skipped)"]["count"] == n_skipped


def test_spatiotemporal_score_subset_scores_only_the_pairs_with_frames(tmp_path, monkeypatch):
    from relocbench.manifest import open_manifest
    from relocbench.video.sprites import SpritesConfig, SpriteVideos, build_sprites

    sprites = build_sprites(tmp_path / "synthetic-sprites", SpritesConfig(videos=(6, 3, 3), n_clips=6))
    pairs = open_manifest(str(sprites)).table("pairs", "test")
    gone = pairs["ref_video"].iloc[0]
    real = SpriteVideos.__contains__
    monkeypatch.setattr(SpriteVideos, "__contains__", lambda self, v: v != gone and real(self, v))
    k = int(sum(q != gone and r != gone for q, r in zip(pairs["query_video"], pairs["ref_video"])))
    assert 0 < k < len(pairs)
    tiny = {"steps": 0, "ref_clips": 2, "query_clips": 1, "width": 4, "hidden_channels": 8, "attention_dim": 8,
            "head_channels": 8, "head_dim": 16, "test_proposals": 8}
    res = run_baseline("stvr-clip", dataset=str(sprites), out=tmp_path / "r", device="cpu", overrides=tiny,
                       score_subset=True)
    assert res.coverage == {**res.coverage, "pairs": len(pairs), "scored": k, "missing": len(pairs) - k,
                            "missing_videos": 1, "subset": True}
    assert res.metrics["n_pairs"] == k and res.metrics["n_missing"] == 0 and res.result["subset"]["scored"] == k


def test_spatiotemporal_no_training_tubelet_left_names_the_source(tmp_path, monkeypatch):
    from relocbench.manifest import open_manifest
    from relocbench.video.sprites import SpritesConfig, SpriteVideos, build_sprites

    sprites = build_sprites(tmp_path / "synthetic-sprites", SpritesConfig(videos=(6, 3, 3), n_clips=6))
    tub = open_manifest(str(sprites)).table("tubelets", "train")
    monkeypatch.setattr(SpriteVideos, "__contains__", lambda self, v: False)
    with pytest.raises(FeatureError, match=rf"--skip-missing left no training pair: all {tub['video'].nunique()} "
                                           rf"videos of the {len(tub)} training tubelets are missing from the "
                                           r"SpriteVideos"):
        run_baseline("stvr-clip", dataset=str(sprites), out=tmp_path / "r", device="cpu", skip_missing=True,
                     overrides={"steps": 1})
    assert not (tmp_path / "r").exists()
