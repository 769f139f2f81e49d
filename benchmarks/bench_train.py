"""Training and inference speed of the temporal baselines at paper settings on this machine.

    .venv/bin/python benchmarks/bench_train.py [--steps 20] [--baseline cgbm] [--threads 1] [--ranks 2]
    .venv/bin/python benchmarks/bench_train.py --only-ranks --ranks 2 --steps 40

What a 1,000-step paper-budget run of ``cgbm`` costs here (target: at most 10 minutes on an
idle 2-core CPU), from its parts measured in this run, on the committed ActivityNet manifest
with synthetic features:

* rendering the training videos' features once (the feature store's cache keeps them; a
  batch of 128 pairs then collates in milliseconds) and the same collation with the cache
  off (the plain reference: every batch renders its 256 videos);
* training steps at paper settings (batch 128, Adam, clip 5) with windows bucketed by length
  as the original code did, and the same steps drawn unbucketed (the plain reference);
* inference on the validation pairs (the run selects its checkpoint on them every
  ``eval_every`` = 100 steps: 10 passes; two are timed, the run's first pass counted as the
  first, the nine others as the second) and pairs per second on the test split.

For the cgbm family, the ``paper`` and ``original`` recipes' training steps are timed side by
side (``--only-recipes`` times just these): both models train on the very same batches
(same shapes), one step of each in turn (which goes first alternates), so that a change of
machine load hits both alike; the load average is printed before and after. The recipes
differ in the loss pooling and the initialisation (a step's arithmetic is the same), so
their step times should be equal. The first timed batch is then profiled (untimed): its
aten calls and matmul FLOPs, and the achieved fraction of the matmul roofline
(:func:`step_profile`).

With ``--ranks N`` (``--only-ranks``: just these rows) the step of an N-process
data-parallel run (``torchrun --nproc_per_node N relocbench run-baseline ...``: each rank
computes its share of every global batch on ``--threads`` threads, DDP averages the
gradients over gloo) is timed against the one-process step on the same global batches,
alternated step by step (:func:`time_ranks`), and the run is estimated from it. A 2048 x 2048
matmul's rate and a 256 MiB copy's are measured before and after the ranks run
(:func:`matmul_rate`, :func:`copy_rate`): the minutes of two runs of this script compare only
where the machine ran alike.

A step's time grows with its batch's valid reference steps, which vary a lot from batch to
batch (the longest reference of a batch: median 35 steps, mean 58 over 300 batches of the
ActivityNet stream; a few batches of 300-step windows cost ten times a typical one): the
estimates scale the timed steps' mean by the run's mean valid reference steps per batch
over the timed batches' (:func:`batch_work`, a ratio estimator).

The timed training steps of the estimate are spread evenly over the run's ``--budget`` steps
after ``--skip`` untimed ones (:func:`spread_steps`); the recipe rows time consecutive steps
after ``--skip`` (both recipes on the same batches).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import relocbench  # noqa: F401  (first: the OpenMP wait policy the CLI runs under, set before torch loads)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="cgbm")
    ap.add_argument("--steps", type=int, default=20, help="Timed training steps per row.")
    ap.add_argument("--skip", type=int, default=1, help="Untimed warm-up steps before the timed ones.")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: what run-baseline gives the cgbm family on a CPU)")
    ap.add_argument("--budget", type=int, default=1000, help="Steps of the extrapolated run (paper budget).")
    ap.add_argument("--batch-size", type=int, default=128, help="Global batch (paper: 128).")
    ap.add_argument("--no-plain", action="store_true", help="Skip the plain reference rows (unbucketed, uncached).")
    ap.add_argument("--no-test", action="store_true", help="Skip the test-split inference row (not part of the estimate).")
    ap.add_argument("--only-recipes", action="store_true",
                    help="Only the paper vs original recipe step times (cgbm family).")
    ap.add_argument("--ranks", type=int, default=1,
                    help="Also time the step of a data-parallel run over this many processes of --threads "
                         "threads each (torchrun's DDP over gloo), alternated with the one-process step, "
                         "and estimate that run (default 1: no such rows).")
    ap.add_argument("--only-ranks", action="store_true", help="Only the --ranks rows and their estimate.")
    args = ap.parse_args(argv)

    import torch

    from relocbench.baseline import RunContext
    from relocbench.engine import _make_optimizer, keep_freed_memory
    from relocbench.features import open_feature_store
    from relocbench.manifest import open_manifest
    from relocbench.registry import get_baseline

    torch.set_num_threads(args.threads)
    kept = keep_freed_memory()  # what run-baseline does on CPU
    man = open_manifest("activitynet")
    cls = get_baseline(args.baseline)
    cfg = cls.default_config({"batch_size": args.batch_size})
    rows = []

    def context(cache_mb=None):
        store = open_feature_store("synthetic", manifest=man, seed=0, cache_mb=cache_mb)
        return RunContext(dataset="activitynet", manifest=man, features=store, device=torch.device("cpu"))

    ctx = context()
    if args.only_ranks:
        if args.ranks < 2:
            ap.error("--only-ranks needs --ranks 2 or more")
        _print_rows(args, kept, time_ranks(args, cls, cfg))
        return
    if args.only_recipes:
        _print_rows(args, kept, time_recipes(args, cls, ctx))
        return
    train_videos = sorted(set(man.table("segments", "train")["video"]))
    t0 = time.perf_counter()
    for v in train_videos:
        ctx.features.get(v)
    t_render = time.perf_counter() - t0
    mib = sum(ctx.features.get(v).nbytes for v in train_videos) / 2**20
    rows.append(["render + cache training features", f"{len(train_videos):,} videos", f"{mib:,.0f} MiB",
                 f"{t_render:.1f} s", "once per run"])

    def time_collate(c, label, note):
        base = cls(cfg, c)
        base.prepare(None)
        t0 = time.perf_counter()
        for step in range(args.skip, args.skip + args.steps):
            base.batch(step)
        dt = (time.perf_counter() - t0) / args.steps
        rows.append([f"collate a batch ({label})", f"batch {cfg.batch_size}", f"{dt * 1000:.0f} ms",
                     f"{dt * args.budget / 60:.1f} min", note])
        return dt

    t_col = time_collate(ctx, "cache warm", "")
    if not args.no_plain:
        t_plain = time_collate(context(cache_mb=0), "no cache, plain", "")
        rows[-2][4] = f"{t_plain / t_col:.0f}x faster than uncached"

    def time_training(bucketed: bool) -> float:
        torch.manual_seed(0)
        model = cls.create_model(cfg)
        base = cls(cfg, ctx)
        base.prepare(model)
        if not bucketed:
            base._batches.bucket = base._batches.batch_size  # one batch per chunk: no length sorting
            base._batches._epoch = None
        opt, _ = _make_optimizer(cfg, model.parameters())
        model.train()
        for step in range(args.skip):  # warm-up (untimed)
            loss, _ = base.loss(model, base.batch(step))
            loss.backward()
            opt.zero_grad()
        t0 = time.perf_counter()
        pad = []
        for step in spread_steps(args):
            b = base.batch(step)
            if hasattr(b, "ref_len"):
                pad.append(float(b.ref_len.mean() / b.ref_len.max()))
            train_step(base, model, opt, b, cfg.clip_norm)
        dt = (time.perf_counter() - t0) / args.steps
        fill = f"{100 * np.mean(pad):.0f}% of padded steps valid" if pad else ""
        timed, run = batch_work(base, spread_steps(args)), batch_work(base, range(args.budget))
        scale = run / timed if timed and run else 1.0
        if timed and run:
            fill += (f"; mean {1000 * dt:.0f} ms over batches of {timed:,.0f} valid reference steps, "
                     f"the run's {run:,.0f}: scaled by {scale:.2f}")
        rows.append([f"train step ({'bucketed' if bucketed else 'unbucketed, plain'})",
                     f"batch {cfg.batch_size}", f"{1 / (dt * scale):.3f} steps/s",
                     f"{dt * scale * args.budget / 60:.1f} min", fill])
        return dt * scale

    t_b = time_training(True)
    if not args.no_plain:
        t_u = time_training(False)
        rows[-2][4] += f"; {t_u / t_b:.2f}x faster than unbucketed"

    model = cls.create_model(cfg)
    base = cls(cfg, ctx)
    base.prepare(model)
    model.eval()
    evals = validations(args, cfg)
    t_vals = 0.0
    for split in ("val",) if args.no_test else ("val", "test"):
        pairs = man.table("pairs", split)
        passes = []
        for _ in range(2 if split == "val" else 1):  # a run's first pass is its coldest
            t0 = time.perf_counter()
            with torch.no_grad():
                base.predict(model, pairs)
            passes.append(time.perf_counter() - t0)
        dt = passes[-1]
        if split == "val":
            t_vals = validation_time(passes, evals)
        rows.append([f"predict ({split} pairs)", f"{len(pairs)} pairs", f"{len(pairs) / dt:.1f} pairs/s",
                     f"{t_vals / 60:.1f} min" if split == "val" else "",
                     (f"first pass {passes[0]:.1f} s, then {dt:.1f} s a pass; {evals} passes per run"
                      if split == "val" else f"{dt:.1f} s per pass")])

    total = t_render + args.budget * t_b + t_vals
    rows.append([f"{args.budget:,}-step run ({args.baseline}, estimate)", "", "", f"{total / 60:.1f} min",
                 "render + steps + validations (target <= 10 min on an idle 2-core CPU)"])
    if args.ranks > 1:
        rows += time_ranks(args, cls, cfg, t_render=t_render)
    if getattr(cls, "recipes", None):
        rows += time_recipes(args, cls, ctx)
    _print_rows(args, kept, rows)


def time_ranks(args, cls, cfg, *, t_render=None):
    """Rows: the training step of a ``--ranks``-process data-parallel run (what ``torchrun
    --nproc_per_node N relocbench run-baseline ...`` does: each rank computes its share of
    every global batch on ``--threads`` threads, DDP averages the gradients over gloo)
    against the one-process step on the same global batches, alternated step by step.

    Every rank renders the training features into its own cache first (as each rank of a
    run does). The timed steps are spread evenly over the run's ``--budget`` steps. Each round: a barrier, one DDP step on all ranks (timed on rank 0 from the
    barrier to the end of its optimiser step), a barrier, then one one-process step of the
    full global batch on rank 0 (its own model and optimiser) while the other ranks wait in
    the next barrier (gloo waits in a blocking read, leaving their cores idle). The estimate
    adds the validation passes (each rank predicts its share of the pairs, as in a run:
    :func:`relocbench.engine.predict_pairs`) and the rendering.
    """
    import os
    import socket

    import torch.multiprocessing as tmp

    with socket.socket() as sock:  # a free port for the ranks to meet on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = tmp.get_context("spawn")
    results = ctx.SimpleQueue()
    load0, rate0, bus0 = os.getloadavg(), matmul_rate(), copy_rate()
    tmp.start_processes(_rank_worker, args=(args.ranks, port, vars(args), results), nprocs=args.ranks,
                        join=True, start_method="spawn")
    load1, rate1, bus1 = os.getloadavg(), matmul_rate(), copy_rate()
    res = results.get()
    ddp, one, rend = res["ddp"], res["one"], res["render"]
    scale = res["run_work"] / res["timed_work"] if res["timed_work"] and res["run_work"] else 1.0
    t_ddp, t_one = float(np.mean(ddp)) * scale, float(np.mean(one)) * scale
    load = f"load average {load0[0]:.2f} -> {load1[0]:.2f}"
    longest = (f"timed batches: {res['timed_work']:,.0f} valid reference steps on average, the run's "
               f"{args.budget:,}: {res['run_work']:,.0f}; step times scaled by {scale:.2f} (batch_work)")
    rows = [
        [f"train step (1 process, {args.threads} thread{'s' if args.threads > 1 else ''})",
         f"batch {args.batch_size}", f"{1 / t_one:.3f} steps/s", f"{t_one * args.budget / 60:.1f} min",
         f"median {1000 * float(np.median(one)):.0f} ms (unscaled); alternated with the row below; {load}"],
        [f"train step ({args.ranks} ranks x {args.threads} thread{'s' if args.threads > 1 else ''}, DDP)",
         f"batch {args.batch_size} ({args.batch_size // args.ranks} a rank)", f"{1 / t_ddp:.3f} steps/s",
         f"{t_ddp * args.budget / 60:.1f} min",
         f"median {1000 * float(np.median(ddp)):.0f} ms (unscaled); {t_ddp / t_one:.2f}x the one-process step; {load}"],
    ]
    rows.append(["batches timed", f"{len(one)} steps", "", "", longest])
    rows.append(["machine now (before, after the ranks)", "2048x2048 matmul; 256 MiB copy",
                 f"{rate0:.0f}, {rate1:.0f} GFLOP/s; {bus0:.1f}, {bus1:.1f} GB/s", "",
                 f"{args.threads} thread{'s' if args.threads > 1 else ''}: the machine's compute and memory-bus rates "
                 "during this run, to set runs of this script side by side"])
    evals = validations(args, cfg)
    t_vals = validation_time(res["val"], evals)
    rows.append([f"predict (val pairs, shared by {args.ranks} ranks)", "", "", f"{t_vals / 60:.1f} min",
                 f"first pass {res['val'][0]:.1f} s, then {res['val'][1]:.1f} s a pass; {evals} passes per run"])
    total = (t_render if t_render is not None else rend) + args.budget * t_ddp + t_vals
    rows.append([f"{args.budget:,}-step run ({args.baseline}, {args.ranks} ranks, estimate)", "", "",
                 f"{total / 60:.1f} min",
                 f"torchrun --nproc_per_node {args.ranks} relocbench run-baseline {args.baseline} --threads "
                 f"{args.threads} ... (target <= 10 min on an idle 2-core CPU)"])
    return rows


def _rank_worker(rank, world, port, opts, results):
    """One rank of :func:`time_ranks` (a spawned process)."""
    import os
    import time as _time

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from relocbench.baseline import RunContext
    from types import SimpleNamespace

    from relocbench.engine import _make_optimizer, keep_freed_memory, predict_pairs
    from relocbench.features import open_feature_store
    from relocbench.manifest import open_manifest
    from relocbench.registry import get_baseline
    from relocbench.tasks import get_task

    torch.set_num_threads(opts["threads"])
    keep_freed_memory()
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        man = open_manifest("activitynet")
        cls = get_baseline(opts["baseline"])
        cfg = cls.default_config({"batch_size": opts["batch_size"]})
        store = open_feature_store("synthetic", manifest=man, seed=0)
        t0 = _time.perf_counter()
        for v in sorted(set(man.table("segments", "train")["video"])):
            store.get(v)
        t_render = _time.perf_counter() - t0

        def make(world_size):
            c = RunContext(dataset="activitynet", manifest=man, features=store, device=torch.device("cpu"),
                           rank=rank if world_size > 1 else 0, world_size=world_size)
            torch.manual_seed(0)
            model = cls.create_model(cfg)
            base = cls(cfg, c)
            base.prepare(model)
            opt, _ = _make_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
            model.train()
            return model, base, opt

        m_ddp, b_ddp, o_ddp = make(world)
        w_ddp = DDP(m_ddp)
        m_one, b_one, o_one = make(1) if rank == 0 else (None, None, None)
        times = {"ddp": [], "one": []}
        skip, steps = opts["skip"], opts["steps"]
        # the timed steps spread evenly over the run's (the warm-up ones first): their
        # batches' lengths are a sample of the whole run's
        spread = spread_steps(SimpleNamespace(**opts))
        plan = list(range(skip)) + spread
        for k, s in enumerate(plan):
            batch = b_ddp.batch(s, rank, world)
            dist.barrier()
            t0 = _time.perf_counter()
            train_step(b_ddp, m_ddp, o_ddp, batch, cfg.clip_norm, wrapped=w_ddp)
            dt = _time.perf_counter() - t0
            if k >= skip:
                times["ddp"].append(dt)
            dist.barrier()
            if rank == 0:
                full = b_one.batch(s)
                t0 = _time.perf_counter()
                train_step(b_one, m_one, o_one, full, cfg.clip_norm)
                if k >= skip:
                    times["one"].append(_time.perf_counter() - t0)
        # a validation pass as the run does it: every rank predicts its share of the chunks
        # (two passes: a run's first pass meets its shapes for the first time, the others not)
        dist.barrier()
        m_ddp.eval()
        shared = SimpleNamespace(enabled=True, rank=rank, world_size=world)
        t_val = []
        for _ in range(2):
            t0 = _time.perf_counter()
            predict_pairs(b_ddp, m_ddp, get_task(cls.task), b_ddp.ctx, man.table("pairs", "val"), desc="val",
                          quiet=True, dist=shared)
            t_val.append(_time.perf_counter() - t0)
        if rank == 0:
            times["timed_work"] = batch_work(b_one, spread)
            times["run_work"] = batch_work(b_one, range(opts["budget"]))
            results.put({**times, "render": t_render, "val": t_val})
    finally:
        dist.destroy_process_group()


def train_step(base, model, opt, batch, clip_norm, wrapped=None) -> None:
    """One optimiser step as the engine takes it: loss (through ``wrapped``, a DDP wrapper,
    when given), backward, global-norm clip, step."""
    import torch

    loss, _ = base.loss(wrapped if wrapped is not None else model, batch)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    opt.step()


def batch_work(base, steps):
    """Mean number of valid reference steps per global batch over ``steps`` (``None`` when the
    baseline's training stream does not list its rows).

    A cgbm step's time grows with it (the matching steps only the pairs inside their
    reference, the LSTMs run in length groups), and the run's batches vary a lot (a few of
    300-step windows cost ten times a typical one): the estimates scale a sample's mean step
    time by the run's mean work over the sample's (a ratio estimator), which a few dozen timed
    steps would otherwise miss by a third either way.
    """
    rows = getattr(getattr(base, "_batches", None), "rows", None)
    if rows is None:
        return None
    work = []
    for s in steps:
        w = rows(s)
        work.append(float((w["ref_end_step"] - w["ref_start_step"]).sum()))
    return float(np.mean(work)) if work else None


def validations(args, cfg) -> int:
    """Validation passes of a ``--budget``-step run: every ``eval_every`` steps and after the
    last step (as the engine does); one pass at the end when ``eval_every`` is 0."""
    every = int(getattr(cfg, "eval_every", 0) or 0) or args.budget
    return args.budget // every + (1 if args.budget % every else 0)


def validation_time(passes, evals: int) -> float:
    """A run's validation time from two timed passes: its first pass as the first (cold: new
    shapes, fresh allocations), the other ``evals - 1`` as the second."""
    return passes[0] + max(0, evals - 1) * passes[-1] if evals else 0.0


def spread_steps(args):
    """The timed training steps: ``--steps`` of them spread evenly over the run's ``--budget``
    steps after the ``--skip`` warm-up ones (a step's time grows with its batch's longest
    reference, so the first steps alone are not a sample of the run's)."""
    return np.linspace(args.skip, max(args.skip, args.budget - 1), args.steps).round().astype(int).tolist()


def time_recipes(args, cls, ctx):
    """Rows: the training step time of each recipe of ``cls``, on the same batches, alternated."""
    import os

    import torch

    from relocbench.engine import _make_optimizer, resolve_config

    names = sorted(getattr(cls, "recipes", {}) or {}, key=lambda r: (r != "paper", r))
    if not names:
        return [["recipes", "", "", "", f"{args.baseline} has no recipes"]]
    runs = {}
    for r in names:
        _, cfg = resolve_config(args.baseline, overrides={"recipe": r, "batch_size": args.batch_size})
        torch.manual_seed(0)
        model = cls.create_model(cfg)
        base = cls(cfg, ctx)
        opt, _ = _make_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
        model.train()
        runs[r] = (cfg, model, base, opt)
    # the same batches for every recipe: the first recipe's pipeline (shapes identical for all)
    feeder = cls(runs[names[0]][0], ctx)
    feeder.prepare(None)
    batches = [feeder.batch(step) for step in range(args.skip + args.steps)]

    def one_step(r, b):
        cfg, model, base, opt = runs[r]
        t0 = time.perf_counter()
        train_step(base, model, opt, b, cfg.clip_norm)
        return time.perf_counter() - t0

    for b in batches[:args.skip]:  # warm-up (untimed)
        for r in names:
            one_step(r, b)
    load0 = os.getloadavg()
    times = {r: [] for r in names}
    for i, b in enumerate(batches[args.skip:]):
        for r in (names if i % 2 == 0 else names[::-1]):
            times[r].append(one_step(r, b))
    load1 = os.getloadavg()
    rows = []
    ref = float(np.mean(times[names[0]]))
    for r in names:
        dt = float(np.mean(times[r]))
        rows.append([f"train step (recipe {r})", f"batch {args.batch_size}", f"{1 / dt:.3f} steps/s",
                     f"{dt * args.budget / 60:.1f} min",
                     f"median {1000 * float(np.median(times[r])):.0f} ms; {dt / ref:.3f}x {names[0]}'s time; "
                     f"load average {load0[0]:.2f} -> {load1[0]:.2f}"])
    # each recipe's own input pipeline: how full its padded batches are (what sets its shapes)
    for r in names:
        cfg, _, base, _ = runs[r]
        base.prepare(None)
        fill = []
        for step in range(50):
            w = base._batches.rows(step)
            w = (w["ref_end_step"] - w["ref_start_step"]).to_numpy()
            fill.append(w.mean() / w.max())
        rows.append([f"input pipeline (recipe {r}: {cfg.input_pipeline})", f"batch {args.batch_size}", "", "",
                     f"{100 * float(np.mean(fill)):.0f}% of padded reference steps valid (50 batches)"])
    rows += step_profile(args, runs[names[0]], batches[args.skip], times[names[0]][0])
    return rows


def step_profile(args, run, batch, step_s):
    """Rows: aten calls of one training step, its matmul FLOPs and the achieved fraction of
    this machine's matmul roofline (a 2048 x 2048 float32 matmul's GFLOP/s, best of 5).

    The FLOPs are counted by ``torch.utils.flop_counter`` (matmuls and convolutions, forward
    and backward) with oneDNN off for the counting pass only, so that the LSTMs decompose into
    counted matmuls; the achieved rate is those FLOPs over the timed step of that same batch
    (``step_s``: the first timed step, one sample of a noisy clock on a shared machine).
    """
    import torch
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    cfg, model, base, opt = run

    def fwd_bwd():
        opt.zero_grad()
        loss, _ = base.loss(model, batch)
        loss.backward()

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fwd_bwd()
    calls = sum(1 for e in prof.events() if e.name.startswith("aten::"))
    counter = FlopCounterMode(display=False)
    with torch.backends.mkldnn.flags(enabled=False), counter:
        fwd_bwd()
    opt.zero_grad()
    flops = counter.get_total_flops()
    peak = matmul_rate()
    got = flops / step_s / 1e9
    shape = f"query {batch.query.shape[1]}, ref {batch.ref.shape[1]}" if hasattr(batch, "ref") else ""
    return [["aten calls (one step, forward + backward)", f"batch {args.batch_size}, {shape}", f"{calls:,} calls",
             "", "torch.profiler, all nesting levels"],
            ["matmul roofline (one step)", f"{flops / 1e9:.1f} GFLOP", f"{got:.1f} GFLOP/s", f"step {step_s:.2f} s",
             f"{100 * got / peak:.0f}% of a 2048x2048 matmul's {peak:.1f} GFLOP/s (same threads)"]]


def matmul_rate() -> float:
    """GFLOP/s of a 2048 x 2048 float32 matmul on this process's threads, best of 5: the
    machine's speed at the moment (on a shared or virtual machine it drifts between runs)."""
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * 2048 ** 3 / best / 1e9


def copy_rate() -> float:
    """GB/s of copying a 256 MiB float32 tensor (read and write counted), best of 3: the
    memory bus's speed at the moment, which a cache-resident matmul does not see."""
    import torch

    a = torch.ones(64 * 2**20)
    b = torch.empty_like(a)
    b.copy_(a)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        b.copy_(a)
        best = min(best, time.perf_counter() - t0)
    return 2 * a.numel() * 4 / best / 1e9


def _print_rows(args, kept, rows):
    cols = ["row", "input", "speed", f"per {args.budget:,} steps", "note"]
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows)]
    print(f"Temporal baselines: speed on this machine ({args.threads} threads, {args.steps} timed steps"
          f"{', freed memory kept' if kept else ''})")
    for line in [cols, ["-" * w for w in widths], *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip())


if __name__ == "__main__":
    main()
