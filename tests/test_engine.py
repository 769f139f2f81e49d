"""The shared engine: run folder, training loop, checkpoint selection, resume, DDP, CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import tiny_baseline  # noqa: F401  (registers "tiny-test")
from relocbench import ConfigError, OutputExistsError
from relocbench.cli import cli
from relocbench.engine import resolve_device, run_baseline, share_chunks

HERE = Path(__file__).resolve().parent


def test_run_folder_and_result(small_manifest, tmp_path):
    res = run_baseline("tiny-test", dataset=str(small_manifest), out=tmp_path / "run")
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == ["checkpoint-best.pt", "checkpoint-last.pt", "config.json", "log.jsonl",
                     "metrics-test.json", "predictions-test.json", "result.json"]
    r = res.result
    assert r["baseline"] == "tiny-test" and r["dataset"] == "manifest" and r["config"]["steps"] == 12
    assert r["parameters"] == 500 * 8 + 8 + 8 * 4 + 4
    assert r["training"]["steps"] == 12 and r["training"]["best_step"] in (4, 8, 12)
    assert 0.0 <= r["metrics"]["average"] <= 1.0
    assert set(r["metrics"]["map_at_iou"]) == {f"0.{i}" for i in range(1, 10)}
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log if "val_score" in x] == [4, 8, 12]
    pred = json.loads((tmp_path / "run" / "predictions-test.json").read_text())
    assert pred["task"] == "temporal" and pred["unit"] == "step" and len(pred["results"]) == r["metrics"]["n_pairs"]


def test_same_seed_same_metrics(small_manifest, tmp_path):
    a = run_baseline("tiny-test", dataset=str(small_manifest), out=tmp_path / "a")
    b = run_baseline("tiny-test", dataset=str(small_manifest), out=tmp_path / "b")
    assert a.metrics == b.metrics
    assert (tmp_path / "a" / "predictions-test.json").read_bytes() == (tmp_path / "b" / "predictions-test.json").read_bytes()


def test_resume_after_a_kill_matches_an_uninterrupted_run(small_manifest, tmp_path):
    full = run_baseline("tiny-test", dataset=str(small_manifest), out=tmp_path / "full")
    tiny_baseline.TinyTemporal.fail_at_step = 10
    try:
        with pytest.raises(KeyboardInterrupt):
            run_baseline("tiny-test", dataset=str(small_manifest), out=tmp_path / "killed")
    finally:
        tiny_baseline.TinyTemporal.fail_at_step = None
    assert not (tmp_path / "killed" / "result.json").exists()
    state = torch.load(tmp_path / "killed" / "checkpoint-last.pt", weights_only=False)
    assert state["step"] == 8
    with pytest.raises(OutputExistsError, match="pass --resume"):
        run_baseline("tiny-test", dataset=str(small_manifest), out=tmp_path / "killed")
    resumed = run_baseline("tiny-test", dataset=str(small_manifest), out=tmp_path / "killed", resume=True)
    assert resumed.metrics == full.metrics
    a = torch.load(tmp_path / "full" / "checkpoint-last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "killed" / "checkpoint-last.pt", weights_only=False)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_refuses_a_different_config(small_manifest, tmp_path):
    run_baseline("tiny-test", dataset=str(small_manifest), out=tmp_path / "r")
    with pytest.raises(ConfigError, match="made with a different config"):
        run_baseline("tiny-test", dataset=str(small_manifest), out=tmp_path / "r", resume=True, overrides={"lr": 0.5})


def test_config_file_overrides_and_errors(small_manifest, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("steps: 4\nhidden: 3\n")
    res = run_baseline("tiny-test", dataset=str(small_manifest), out=tmp_path / "r", config_file=cfg)
    assert res.result["config"]["hidden"] == 3 and res.result["training"]["steps"] == 4
    cfg.write_text("stepz: 4\n")
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['stepz'\]"):
        run_baseline("tiny-test", dataset=str(small_manifest), out=tmp_path / "r2", config_file=cfg)
    cfg.write_text("steps: many\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: The 'steps' parameter must be an int >= 0\. "
                                          r"Got 'many' instead\."):
        run_baseline("tiny-test", dataset=str(small_manifest), out=tmp_path / "r3", config_file=cfg)
    cfg.write_text("steps: [1\n")
    with pytest.raises(ConfigError, match="malformed YAML at line"):
        run_baseline("tiny-test", dataset=str(small_manifest), out=tmp_path / "r4", config_file=cfg)


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="--device must be auto, cpu, cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda")


def test_unknown_baseline():
    with pytest.raises(ConfigError, match="unknown baseline 'nope'"):
        run_baseline("nope")


def test_cli_run_baseline_and_leaderboard(small_manifest, tmp_path):
    runner = CliRunner()
    args = ["run-baseline", "chance", "--dataset", str(small_manifest), "--out", str(tmp_path / "run"), "--quiet",
            "--leaderboard", str(tmp_path / "lb")]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "Average" in res.output and (tmp_path / "lb" / "results" / "manifest" / "chance" / "seed-0.json").is_file()
    res = runner.invoke(cli, args[:-2])
    assert res.exit_code == 2 and "pass --resume to continue it or --force" in res.output
    run2 = ["run-baseline", "chance", "--dataset", str(small_manifest), "--out", str(tmp_path / "run2"), "--quiet"]
    # the published record (seed 0) exists already: refused before the run, not after it
    res = runner.invoke(cli, run2 + ["--leaderboard", str(tmp_path / "lb")])
    assert res.exit_code == 2 and "seed-0.json: exists already" in res.output and not (tmp_path / "run2").exists()
    assert runner.invoke(cli, run2 + ["--seed", "1"]).exit_code == 0
    res = runner.invoke(cli, ["leaderboard", "--dir", str(tmp_path / "lb")])
    assert res.exit_code == 0, res.output
    readme = (tmp_path / "lb" / "README.md").read_text()
    assert "| chance |" in readme and "*paper, C3D: Chance*" in readme and "| frame-dp | –" in readme
    assert (tmp_path / "lb" / "figures" / "manifest-thresholds.png").is_file()
    assert (tmp_path / "lb" / "figures" / "manifest-examples.png").is_file()
    # a finished run published into its own board (section), then refused twice without --force
    pub = ["leaderboard", "--dir", str(tmp_path / "lb"), "--publish", str(tmp_path / "run2"), "--board", "manifest-b"]
    res = runner.invoke(cli, pub)
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "lb" / "results" / "manifest-b" / "chance" / "seed-1.json").read_text())
    assert rec["board"] == "manifest-b" and rec["dataset"] == "manifest" and rec["seed"] == 1
    readme = (tmp_path / "lb" / "README.md").read_text()
    assert readme.index("## manifest — features: ") < readme.index("## manifest-b — features: ")
    assert runner.invoke(cli, pub).exit_code == 2
    res = runner.invoke(cli, pub[:-2] + ["--board", "../up"])
    assert res.exit_code == 2 and "plain folder name" in res.output
    res = runner.invoke(cli, ["leaderboard", "--dir", str(tmp_path / "lb"), "--publish", str(tmp_path)])
    assert res.exit_code == 2 and "no result.json here" in res.output
    # a bad board name is refused before the run, not after it
    res = runner.invoke(cli, ["run-baseline", "chance", "--dataset", str(small_manifest), "--out",
                              str(tmp_path / "run3"), "--quiet", "--leaderboard", str(tmp_path / "lb"), "--board", "a/b"])
    assert res.exit_code == 2 and "plain folder name" in res.output and not (tmp_path / "run3").exists()


def test_list_baselines_prints_parameter_counts():
    res = CliRunner().invoke(cli, ["list-baselines", "--task", "temporal"])
    assert res.exit_code == 0, res.output
    assert "chance" in res.output and "frame-dp" in res.output


def test_torchrun_port_zero_is_refused_before_joining(monkeypatch):
    from relocbench.engine import Distributed

    for k, v in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": "0"}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match=r"MASTER_PORT is 0: torchrun needs a real port \(--master_port 29500\)"):
        Distributed(torch.device("cpu"))  # joining would wait for a rank that never comes


def test_ddp_two_cpu_processes_match_single_process(small_manifest, tmp_path):
    """torchrun with 2 gloo processes: rank 0 writes, and the weights equal a 1-process run."""
    # no dropout: each rank draws its own masks, so only a deterministic model can match exactly
    single = run_baseline("tiny-test", dataset=str(small_manifest), out=tmp_path / "single",
                          overrides={"eval_every": 0, "dropout": 0.0})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(HERE.parent)]), OMP_NUM_THREADS="1")
    code = ("import tiny_baseline; from relocbench.engine import run_baseline; "
            f"run_baseline('tiny-test', dataset={str(small_manifest)!r}, out={str(tmp_path / 'ddp')!r}, "
            "overrides={'eval_every': 0, 'dropout': 0.0})")
    script = tmp_path / "ddp_entry.py"
    script.write_text(code + "\n")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29533", str(script)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(tmp_path / "single" / "checkpoint-last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "ddp" / "checkpoint-last.pt", weights_only=False)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    assert json.loads((tmp_path / "ddp" / "result.json").read_text())["metrics"]["n_pairs"] == single.metrics["n_pairs"]


_SHARED_VALIDATION = """
import os, tiny_baseline
from relocbench.engine import run_baseline
calls = {calls!r}
predict = tiny_baseline.TinyTemporal.predict
def counted(self, model, pairs):  # how many pairs each rank predicts, call by call
    with open(os.path.join(calls, "rank-" + os.environ["RANK"]), "a") as f:
        f.write(str(len(pairs)) + "\\n")
    return predict(self, model, pairs)
tiny_baseline.TinyTemporal.predict = counted
tiny_baseline.TinyTemporal.prediction_chunk = lambda self: 3  # several chunks in a small split
run_baseline("tiny-test", dataset={dataset!r}, out={out!r}, overrides={{"eval_every": 4, "dropout": 0.0}})
"""


def _val_scores(run_dir):
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [(r["step"], r["val_score"], r["best_step"]) for r in rows if "val_score" in r]


def test_ddp_ranks_share_the_validation_and_keep_the_one_process_scores(small_manifest, tmp_path, monkeypatch):
    """Under torchrun every rank predicts its share of the validation pairs and of the test
    split (chunks shared out by their reference steps, :func:`share_chunks`); rank 0 scores the
    merged predictions: the same validation scores, kept checkpoint and test predictions as one
    process, and the record says it ran on 2 processes."""
    from relocbench.manifest import open_manifest
    from relocbench.tasks import get_task

    monkeypatch.setattr(tiny_baseline.TinyTemporal, "prediction_chunk", lambda self: 3)
    single = run_baseline("tiny-test", dataset=str(small_manifest), out=tmp_path / "single",
                          overrides={"eval_every": 4, "dropout": 0.0})
    calls = tmp_path / "calls"
    calls.mkdir()
    script = tmp_path / "ddp_entry.py"
    script.write_text(_SHARED_VALIDATION.format(calls=str(calls), dataset=str(small_manifest),
                                                out=str(tmp_path / "ddp")))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(HERE.parent)]), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29537", str(script)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    man = open_manifest(str(small_manifest))
    task = get_task("temporal")

    def rank1_share(split):
        chunks = task.prediction_chunks(None, man.table("pairs", split), 3)
        owner = share_chunks([task.prediction_work(c) for c in chunks], 2)
        return sum(len(c) for c, r in zip(chunks, owner) if r == 1), len(chunks)

    (val1, n_chunks), (test1, _) = rank1_share("val"), rank1_share("test")
    assert n_chunks > 2, "the validation split must span several chunks of 3 pairs for the test to mean anything"
    n_val, n_test = len(man.table("pairs", "val")), len(man.table("pairs", "test"))
    assert 0 < val1 < n_val and 0 < test1 < n_test
    rank1 = [int(x) for x in (calls / "rank-1").read_text().split()]
    rank0 = [int(x) for x in (calls / "rank-0").read_text().split()]
    passes = len(_val_scores(tmp_path / "ddp"))
    assert passes == 3  # steps 4, 8, 12
    # rank 1 predicted its share of each validation pass and of the test split, rank 0 the rest
    assert sum(rank1) == passes * val1 + test1
    assert sum(rank0) == passes * (n_val - val1) + (n_test - test1)
    assert _val_scores(tmp_path / "ddp") == _val_scores(tmp_path / "single")
    record = json.loads((tmp_path / "ddp" / "result.json").read_text())
    assert record["hardware"]["processes"] == 2 and "processes" not in single.result["hardware"]
    assert record["metrics"]["average"] == pytest.approx(single.metrics["average"], abs=1e-9)
    ddp_pred = json.loads((tmp_path / "ddp" / "predictions-test.json").read_text())
    one_pred = json.loads((tmp_path / "single" / "predictions-test.json").read_text())
    # the same pairs and spans (DDP's averaged gradients train weights equal to float rounding)
    got, want = ddp_pred["results"], one_pred["results"]
    assert sorted(got) == sorted(want) and len(got) == n_test
    for pid, spans in want.items():
        assert [s["segment"] for s in got[pid]] == [s["segment"] for s in spans]
        assert [s["score"] for s in got[pid]] == pytest.approx([s["score"] for s in spans], rel=1e-5)


def test_share_chunks_gives_the_largest_first_to_the_least_loaded_rank():
    # 10 -> rank 0 (load 10); then 4, 3, 2, 1 each to rank 1, the less loaded (4, 7, 9, 10)
    assert share_chunks([1, 2, 3, 4, 10], 2) == [1, 1, 1, 1, 0]
    assert share_chunks([5, 5], 2) == [0, 1]                  # equal work: lower index to the lower rank
    assert share_chunks([3, 3, 3], 2) == [0, 1, 0]
    assert share_chunks([2, 7, 1], 1) == [0, 0, 0]
    assert share_chunks([], 3) == []
    # round-robin would give rank 0 the chunks 0, 2, 4 (work 9 of 12); balanced: 6 and 6
    work = [1, 1, 2, 2, 6]
    owner = share_chunks(work, 2)
    assert [sum(w for w, r in zip(work, owner) if r == k) for k in (0, 1)] == [6, 6]


_FAULTS = """
import resource, numpy as np
from relocbench.engine import keep_freed_memory
def faults():  # minor page faults of allocating, touching and freeing 64 MiB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.ones(8 * 2**20)
    del a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
kept = keep_freed_memory()
faults()
print(kept, faults())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or __import__("platform").libc_ver()[0] != "glibc",
                    reason="the allocator setting applies to glibc only")
@pytest.mark.parametrize("env,kept", [("1", True), ("0", False)])
def test_keep_freed_memory_reuses_large_blocks(env, kept):
    """With the setting, a freed 64 MiB block is reused without new page faults; without it
    (RELOCBENCH_KEEP_MEMORY=0, glibc's default) it is returned to the kernel and faults again."""
    out = subprocess.run([sys.executable, "-c", _FAULTS], capture_output=True, text=True, check=True,
                         env={**os.environ, "RELOCBENCH_KEEP_MEMORY": env}).stdout.split()
    # returned to the kernel, 64 MiB faults in again: at least 32 faults (2 MiB transparent
    # huge pages), 16,384 with 4 KiB pages; kept, it faults not at all
    assert out[0] == str(kept)
    assert (int(out[1]) <= 4) if kept else (int(out[1]) >= 32), out
