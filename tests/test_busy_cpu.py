"""The OpenMP wait policy: ``import relocbench`` and the CLI set ``OMP_WAIT_POLICY=PASSIVE``
before torch is imported, unless the user chose one (or torch came first). Subprocess tests:
the environment of a fresh interpreter is what libgomp reads."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from relocbench._openmp import USER_SETTINGS, choose_wait_policy

PROBE = "import os, sys; {before}; print(os.environ.get('OMP_WAIT_POLICY')); print('torch' in sys.modules)"


def run(code: str, **env_extra: str):
    env = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS}
    env.update(env_extra)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_import_sets_passive_when_unset_and_imports_no_torch():
    assert run(PROBE.format(before="import relocbench")) == ["PASSIVE", "False"]


def test_cli_sets_passive_before_any_command():
    code = ("import os, sys\nfrom relocbench.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n"
            "    pass\nprint(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules, 'numpy' in sys.modules)")
    out = run(code)
    assert out[-3:] == ["PASSIVE", "False", "False"]


def test_module_entry_point_passes_passive_to_what_it_starts():
    # python -m relocbench (as torchrun starts every rank) imports relocbench first: a process
    # started from it (a spawn worker, a torchrun rank) inherits the setting
    code = ("import runpy, subprocess, sys\nsys.argv = ['relocbench', '--version']\ntry:\n"
            "    runpy.run_module('relocbench', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print(subprocess.run([sys.executable, '-c', 'import os; print(os.environ.get(\"OMP_WAIT_POLICY\"))'],"
            " capture_output=True, text=True).stdout.strip())")
    assert run(code)[-1] == "PASSIVE"


@pytest.mark.parametrize("name, value", [("OMP_WAIT_POLICY", "ACTIVE"), ("OMP_WAIT_POLICY", "active"),
                                         ("GOMP_SPINCOUNT", "300000"), ("KMP_BLOCKTIME", "200")])
def test_a_users_own_setting_is_left_alone(name, value):
    out = run("import os, relocbench; print(os.environ.get('OMP_WAIT_POLICY')); print(os.environ.get(%r))" % name,
              **{name: value})
    assert out[-1] == value
    if name != "OMP_WAIT_POLICY":
        assert out[0] == "None"  # a GOMP_SPINCOUNT / KMP_BLOCKTIME of the user's: no policy added beside it


@pytest.mark.slow  # imports torch
def test_nothing_is_set_when_torch_came_first():
    assert run(PROBE.format(before="import torch, relocbench")) == ["None", "True"]


SPIN = """
import time, relocbench, torch
torch.set_num_threads(2)
x = torch.rand(2_000_000)
for _ in range(10):
    (x * 2).sum()  # parallel regions: the pool's worker thread is started
c = time.process_time()
time.sleep(0.5)  # between parallel regions: a spinning worker burns CPU here, a passive one sleeps
print(time.process_time() - c)
"""


@pytest.mark.slow
def test_torchs_openmp_threads_sleep_between_parallel_regions():
    # libgomp read the variable when torch loaded it: measured, not assumed. The ACTIVE run
    # shows that the measurement sees spinning.
    passive = float(run(SPIN)[-1])
    active = float(run(SPIN, OMP_WAIT_POLICY="ACTIVE")[-1])
    assert passive < 0.05, passive
    assert active > 0.1, active


def test_choose_wait_policy_in_a_given_environment():
    env = {}
    assert choose_wait_policy(env, modules={}) == "PASSIVE" and env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_WAIT_POLICY": ""}
    assert choose_wait_policy(env, modules={}) is None and env == {"OMP_WAIT_POLICY": ""}
    env = {}
    assert choose_wait_policy(env, modules={"torch": object()}) is None and env == {}


# ---------------------------------------------------------------------------- thread count
@pytest.mark.parametrize("env,device,name,expected", [
    ({"OMP_WAIT_POLICY": "PASSIVE"}, "cpu", "cgbm", 1),            # the baseline's own count
    ({"OMP_WAIT_POLICY": "passive"}, "cpu", "cgbm-base", 1),
    ({"OMP_WAIT_POLICY": "PASSIVE"}, "cpu", "sst", None),          # no count of its own: torch's
    ({"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "2"}, "cpu", "cgbm", None),  # the user's count
    ({"OMP_WAIT_POLICY": "ACTIVE"}, "cpu", "cgbm", None),          # spinning threads scale: torch's
    ({}, "cpu", "cgbm", None),                                     # torch came first: libgomp spins
    ({"OMP_WAIT_POLICY": "PASSIVE"}, "cuda", "cgbm", None),        # not a CPU run
])
def test_default_cpu_threads_follow_the_wait_policy_and_the_users_choice(monkeypatch, env, device, name, expected):
    from relocbench.cli.baselines import _default_cpu_threads

    for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert _default_cpu_threads(name, device) == expected


def test_run_baseline_records_the_baselines_thread_count(monkeypatch, tmp_path):
    """A CPU run of cgbm without --threads under passive waits trains on one thread (its
    result.json says so); --threads wins."""
    torch = pytest.importorskip("torch")
    from click.testing import CliRunner

    from relocbench.cli import cli

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("hidden: 4\nrank: 1\neval_every: 0\nselect_on_val: false\neval_batch_size: 256\n")
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # what the process holds before the run: the run must choose 1 itself
    try:
        for extra, threads in (([], 1), (["--threads", "2"], 2)):
            out = tmp_path / f"run{threads}"
            res = CliRunner().invoke(cli, ["run-baseline", "cgbm", "--steps", "1", "--batch-size", "2", "--device",
                                           "cpu", "--quiet", "--config", str(cfg), "--out", str(out), *extra])
            assert res.exit_code == 0, res.output
            import json

            assert json.loads((out / "result.json").read_text())["hardware"]["threads"] == threads
    finally:
        torch.set_num_threads(before)
