"""Training speed alone and beside one busy process, with and without relocbench's OpenMP setting.

PyTorch's CPU thread pool is GNU OpenMP (libgomp). Its threads spin-wait at every barrier
for a while (with ``OMP_WAIT_POLICY=ACTIVE``: as long as they must) before sleeping; when
another process holds one of the cores, a spinning thread keeps that core's time slice
while the thread it waits for is descheduled, and every small parallel op pays for it.
``import relocbench`` sets ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep at once) when the
user has not chosen a policy and torch is not yet imported (libgomp reads the variable
once, when torch loads it).

Each row is one fresh training process (the default config's shapes: ``cgbm`` on the
ActivityNet manifest with synthetic features, batch 32; ``stvr-convlstm`` on
``synthetic-sprites``, batch 4; batches collated before the timing) under one wait policy:

* ``ACTIVE``: ``OMP_WAIT_POLICY=ACTIVE`` in the child's environment (spin until work comes);
* ``default``: libgomp's own default when the variable is unset, reproduced with
  ``GOMP_SPINCOUNT=300000`` (which relocbench leaves alone) -- what relocbench did before;
* ``relocbench``: neither set; ``import relocbench`` sets ``PASSIVE``;
* ``spin30k``, ``spin3k``: libgomp's spin-then-sleep with ``GOMP_SPINCOUNT`` 30000 / 3000
  (shorter spins; measured on 2026-12-07 they did not hold the speed beside a busy core).

After ``--warmup`` untimed steps the process runs ``2 * --rounds`` blocks of ``--steps``
steps, alternately alone and beside a burner (one process spinning on one core, started
before its block and stopped after it, never longer than ``--limit`` seconds), so that a
change of background load hits both alike. The table prints the median step time of each
kind of block, the ratio busy / alone (target: at most 2.0 for ``relocbench``) and the
1-minute load average measured beside every figure (the machine may be shared: the load
says how many other runnable processes there were). A block slower than ``--limit`` ends
its run and prints as ``>limit/steps``.

    python benchmarks/bench_busy.py --quick            # at most about 6 minutes on 2 cores
    python benchmarks/bench_busy.py --threads 1,2 --modes ACTIVE,default,relocbench --rounds 3
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional

MODES = {"ACTIVE": {"OMP_WAIT_POLICY": "ACTIVE"}, "default": {"GOMP_SPINCOUNT": "300000"}, "relocbench": {},
         # libgomp's spin-then-sleep with shorter spins (what relocbench could set instead of PASSIVE)
         "spin30k": {"GOMP_SPINCOUNT": "30000"}, "spin3k": {"GOMP_SPINCOUNT": "3000"}}
CLEARED = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

CHILD = r"""
import json, os, statistics, sys, time
import relocbench  # sets the wait policy when unset (before torch loads libgomp)
import torch
from relocbench.engine import _make_optimizer, keep_freed_memory
from relocbench.registry import get_baseline
from relocbench.tasks import get_task

name, dataset, threads, warmup, steps, blocks, overrides = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
    int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), json.loads(sys.argv[7])
torch.set_num_threads(threads)
keep_freed_memory()
cls = get_baseline(name)
cfg = cls.default_config(overrides)
ctx = get_task(cls.task).open(dataset, "synthetic", device=torch.device("cpu"), seed=0, skip_missing=False)
torch.manual_seed(0)
model = cls.create_model(cfg)
base = cls(cfg, ctx)
base.prepare(model)
opt, _ = _make_optimizer(cfg, model.parameters())
model.train()
# collated up front, so that only the training steps are timed
batches = [base.batch(s) for s in range(warmup + steps * blocks)]


def step(b):
    loss, _ = base.loss(model, b)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
    opt.step()


for b in batches[:warmup]:
    step(b)
print(json.dumps({"policy": os.environ.get("OMP_WAIT_POLICY"), "threads": torch.get_num_threads()}), flush=True)
for k in range(blocks):  # the parent starts the burner (or not), then says go
    sys.stdin.readline()
    times = []
    for b in batches[warmup + k * steps: warmup + (k + 1) * steps]:
        t = time.perf_counter()
        step(b)
        times.append(time.perf_counter() - t)
    print(json.dumps({"median": statistics.median(times), "total": sum(times)}), flush=True)
"""

#: (baseline, dataset, config overrides): the default config's shapes.
CASES = {
    "cgbm": ("cgbm", "activitynet", {}),
    "stvr-convlstm": ("stvr-convlstm", "synthetic-sprites", {}),
}


def _burn(seconds: float) -> None:
    """Spin on one core for at most ``seconds``."""
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        for _ in range(10_000):
            x += 1


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


class _TimedOut(Exception):
    pass


def _fmt(x: float, limit_s: float, steps: int) -> str:
    return f"{x:.3f}" if x != float("inf") else f">{limit_s / steps:.1f}"


def run_session(case: str, mode: str, threads: int, rounds: int, warmup: int, steps: int,
                limit_s: float) -> Dict[str, List[Dict]]:
    """One fresh training process under ``mode``: ``rounds`` blocks of ``steps`` timed steps
    alone and as many beside a burner, alternated (alone, busy, alone, busy, ...)."""
    name, dataset, overrides = CASES[case]
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(MODES[mode])
    cmd = [sys.executable, "-c", CHILD, name, dataset, str(threads), str(warmup), str(steps), str(2 * rounds),
           json.dumps(overrides)]
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lines: "queue.Queue[str]" = queue.Queue()
    threading.Thread(target=lambda: ([lines.put(x) for x in proc.stdout], lines.put("")), daemon=True).start()

    def next_line(what: str, timeout: float = limit_s) -> str:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise _TimedOut(what) from None
        if not line.strip():
            raise RuntimeError(f"{case} ({mode}) stopped (exit status {proc.wait()})")
        return line

    out: Dict[str, List[Dict]] = {"alone": [], "busy": []}
    try:
        head = next_line("starting", 2 * limit_s + 30)  # loading, collating, the warm-up steps
        if not head.strip():
            raise RuntimeError(f"{case} ({mode}) did not start (exit status {proc.wait()})")
        out["info"] = [json.loads(head)]
        for k in range(2 * rounds):
            busy = k % 2 == 1
            burner: Optional[mp.Process] = None
            try:
                if busy:
                    burner = mp.get_context("spawn").Process(target=_burn, args=(limit_s,), daemon=True)
                    burner.start()
                    time.sleep(0.5)  # the burner is spinning before the first timed step
                proc.stdin.write("go\n")
                proc.stdin.flush()
                line = next_line("a block of steps")
            finally:
                if burner is not None:
                    burner.terminate()
                    burner.join(5)
            res = json.loads(line)
            res["load"] = _load()
            out["busy" if busy else "alone"].append(res)
        proc.stdin.close()
        proc.wait(30)
    except _TimedOut as exc:  # recorded as "> limit": this run stops, the benchmark goes on
        if "info" not in out:  # the warm-up steps alone (alone: no burner yet) were too slow
            out["info"] = [{"policy": MODES[mode].get("OMP_WAIT_POLICY"), "threads": threads}]
        kind = "busy" if len(out["alone"]) > len(out["busy"]) else "alone"
        out[kind].append({"median": float("inf"), "total": float("inf"), "load": _load(), "timed_out": True})
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    ap.add_argument("--modes", default="ACTIVE,default,relocbench", help="comma-separated: " + ", ".join(MODES))
    ap.add_argument("--threads", default="2", help="torch threads, comma-separated (e.g. 1,2)")
    ap.add_argument("--steps", type=int, default=10, help="timed training steps per block")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    ap.add_argument("--rounds", type=int, default=3, help="alone/busy block pairs per row (the median is kept)")
    ap.add_argument("--limit", type=float, default=120.0,
                    help="seconds a block (and its burner) may take at most; a slower one ends its run, printed as "
                         "'>limit/steps' s/step")
    ap.add_argument("--quick", action="store_true",
                    help="blocks of 6 steps, 2 rounds (24 timed steps per run), modes ACTIVE and relocbench, "
                         "--limit 30")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.rounds, args.modes, args.limit = 6, 2, "ACTIVE,relocbench", 30.0
    cases = [c for c in args.cases.split(",") if c]
    modes = [m for m in args.modes.split(",") if m]
    threads = [int(t) for t in args.threads.split(",") if t]
    for x in cases:
        if x not in CASES:
            ap.error(f"unknown case {x!r}; choose from {', '.join(CASES)}")
    for x in modes:
        if x not in MODES:
            ap.error(f"unknown mode {x!r}; choose from {', '.join(MODES)}")
    print(f"bench_busy: {os.cpu_count()} CPUs, {args.steps} timed steps after {args.warmup} untimed, "
          f"{args.rounds} round(s), measured on {time.strftime('%Y-%m-%d %H:%M')}; load before: {_load():.2f}")
    cols = ["case", "threads", "policy", "alone s/step", "load", "busy s/step", "load", "busy/alone"]
    print("  ".join(cols), flush=True)
    for case in cases:
        for t in threads:
            for mode in modes:
                res = run_session(case, mode, t, args.rounds, args.warmup, args.steps, args.limit)
                alone, busy = res["alone"], res["busy"]
                a = statistics.median(r["median"] for r in alone) if alone else float("inf")
                b = statistics.median(r["median"] for r in busy) if busy else float("inf")
                la = max((r["load"] for r in alone), default=float("nan"))
                lb = max((r["load"] for r in busy), default=float("nan"))
                spin = MODES[mode].get("GOMP_SPINCOUNT")
                policy = res["info"][0]["policy"] or f"unset ({'GOMP_SPINCOUNT=' + spin if spin else '-'})"
                ratio = f"{b / a:.2f}x" if a != float("inf") and b != float("inf") else "-"
                la, lb = (f"{x:.2f}" if x == x else "-" for x in (la, lb))
                print(f"{case}  {t}  {mode} [{policy}]  {_fmt(a, args.limit, args.steps)}  {la}  "
                      f"{_fmt(b, args.limit, args.steps)}  {lb}  {ratio}", flush=True)


if __name__ == "__main__":
    main()
